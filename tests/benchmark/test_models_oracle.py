"""The physical floor: oracle power laws of truth proxies, on the fake dataset."""

from __future__ import annotations

import numpy as np
import pytest

from benchmark.core.errors import ClusterMassError
from benchmark.models import BASELINES, ORACLES, oracle
from benchmark.training import ALLOWED_AUX_COLUMNS, FoldData, _entry_metadata
from fakes import fold_parts

TRUTH = ("gas_fraction", "r500c_kpc", "t500_kev", "lx_cex_erg_s")


@pytest.fixture(scope="module")
def fold(fake_dataset):
    """FoldData (train, val, test) of fold 0; the test part carries no targets."""
    return fold_parts(fake_dataset, 0, TRUTH)


@pytest.mark.parametrize("name", sorted(ORACLES))
def test_oracle_follows_the_protocol(name, fold, fake_dataset, tmp_path):
    assert name in BASELINES and BASELINES[name][0] == "benchmark.models.oracle"
    train, val, test = fold
    model = oracle.make_model(BASELINES[name][1])
    assert set(model.truth_columns) <= set(TRUTH)
    assert model.fit(train, val) is model
    pred = model.predict(test)
    assert pred.shape == (len(test),) and np.all(np.isfinite(pred))
    hidden = FoldData(test.images, test.aux, np.full(len(test), np.nan))
    np.testing.assert_array_equal(model.predict(hidden), pred)
    model.save(tmp_path)
    np.testing.assert_allclose(oracle.load_model(tmp_path).predict(test), pred, atol=1e-12)
    sigma = model.predict_sigma(test)
    assert sigma.shape == pred.shape and np.all(sigma > 0)
    with pytest.raises(ClusterMassError):
        oracle.make_model(BASELINES[name][1]).predict(test)
    with pytest.raises(ClusterMassError, match="truth column"):
        model.predict(FoldData(test.images, test.aux.drop(columns=list(model.truth_columns)), None))


def test_gas_mass_oracle_scatter_is_the_gas_fraction_scatter(fold, fake_dataset):
    # The fake draws gas_fraction = 0.11 (M / 3e14)^0.2 x lognormal(0, 0.05) (fakes.py):
    # at fixed M, log10 M_gas scatters by 0.05 / ln 10 dex, and log10 M = (log10 M_gas - c)
    # / 1.2 scatters by 0.05 / ln 10 / 1.2 = 0.018 dex.
    train, val, test = fold
    model = oracle.make_model({"kind": "mgas"}).fit(train, val)
    assert model.params["coef"][1] == pytest.approx(1 / 1.2, abs=0.05)
    assert model.params["scatter_train_dex"] == pytest.approx(0.05 / np.log(10) / 1.2, rel=0.3)
    y = fake_dataset.catalog["log10_m500c"].to_numpy()[fake_dataset.fold_indices(0)["test"]]
    assert np.std(model.predict(test) - y) < 0.04


def test_unknown_kind_is_refused():
    with pytest.raises(ClusterMassError, match="unknown"):
        oracle.make_model({"kind": "magic"})


def test_entries_are_marked_oracle_not_observable():
    run = {"model_ref": {"kind": "baseline"}, "truth_columns": ["gas_fraction", "r500c_kpc"],
           "seeds": [0], "aux_columns": list(ALLOWED_AUX_COLUMNS), "config": {},
           "fit_seconds_total": 0.1}
    meta = _entry_metadata("oracle_mgas", run)
    assert meta["oracle"] is True and meta["uses_truth"]
    assert "oracle, not observable" in meta["notes"] and "Oracle" in meta["display_name"]
    assert "oracle" not in _entry_metadata("lx_truth", {**run, "truth_columns": ["r500c_arcmin"]})
