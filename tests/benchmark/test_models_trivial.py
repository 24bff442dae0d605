"""The trivial baselines: the training mean and a power law in the total counts."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from benchmark.core.errors import ClusterMassError
from benchmark.models import trivial
from benchmark.training import FoldData


def counts_sample(n: int, seed: int, slope: float = 1.5, npix: int = 16) -> FoldData:
    """Poisson images whose expected total counts are 10^(slope (log10 M - 13)) x 50."""
    rng = np.random.default_rng(seed)
    y = rng.uniform(13.8, 15.2, n)
    total = 50.0 * 10 ** (slope * (y - 13.0))
    images = rng.poisson(total[:, None, None] / npix**2, (n, npix, npix)).astype(np.float32)
    aux = pd.DataFrame({"image_id": [f"i{seed}_{i}" for i in range(n)], "redshift": 0.2,
                        "pixel_arcsec": 8.0})
    return FoldData(images, aux, y)


def test_mean_predicts_the_training_mean_for_every_image():
    train, test = counts_sample(30, 0), counts_sample(7, 1)
    model = trivial.make_model({"kind": "mean"}).fit(train)
    np.testing.assert_array_equal(model.predict(test), np.full(7, train.y.mean()))
    assert model.params["n_train"] == 30


def test_total_counts_recovers_the_power_law():
    model = trivial.make_model({"kind": "total_counts"}).fit(counts_sample(200, 2))
    # log10 N = 1.5 log10 M + const, so log10 M = a + log10 N / 1.5.
    assert model.params["b"] == pytest.approx(1 / 1.5, rel=0.02)
    test = counts_sample(50, 3)
    assert np.std(model.predict(test) - test.y) < 0.02


def test_an_empty_image_counts_as_one_photon():
    model = trivial.make_model({"kind": "total_counts"}).fit(counts_sample(50, 4))
    empty = FoldData(np.zeros((2, 16, 16), np.float32), counts_sample(2, 5).aux, None)
    np.testing.assert_allclose(model.predict(empty), model.params["a"])


def test_save_writes_the_parameters_and_load_reads_them(tmp_path):
    model = trivial.make_model({"kind": "total_counts"}).fit(counts_sample(40, 6))
    model.save(tmp_path)
    assert json.loads((tmp_path / trivial.PARAMS_FILE).read_text()) == model.params
    assert [p.name for p in tmp_path.iterdir()] == [trivial.PARAMS_FILE]  # no temporary left
    again = trivial.load_model(tmp_path)
    test = counts_sample(5, 7)
    np.testing.assert_array_equal(again.predict(test), model.predict(test))


def test_refusals():
    with pytest.raises(ClusterMassError, match="unknown"):
        trivial.make_model({"kind": "median"})
    with pytest.raises(ClusterMassError, match="not fitted"):
        trivial.make_model({"kind": "mean"}).predict(counts_sample(3, 8))
    with pytest.raises(ClusterMassError, match="not fitted"):
        trivial.make_model({"kind": "mean"}).save("unused")
    with pytest.raises(ClusterMassError, match="targets"):
        trivial.make_model({"kind": "mean"}).fit(FoldData(np.zeros((2, 4, 4)), None, None))


def test_saved_parameters_keep_their_bytes_and_a_nan_fit_is_refused(tmp_path):
    model = trivial.make_model({"kind": "total_counts"}).fit(counts_sample(40, 9))
    model.save(tmp_path / "good")
    # Fitted-model files are fingerprinted: finite values keep json.dumps's bytes, no newline.
    assert (tmp_path / "good" / trivial.PARAMS_FILE).read_text() == \
        json.dumps(model.params, indent=2, sort_keys=True)
    model.params["b"] = float("nan")
    with pytest.raises(ClusterMassError, match=r"trivial_params.json holds NaN .* at b"):
        model.save(tmp_path / "bad")
    assert not (tmp_path / "bad" / trivial.PARAMS_FILE).exists()
