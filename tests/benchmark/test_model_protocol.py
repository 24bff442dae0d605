"""Every baseline follows the harness's model protocol (in the spirit of scikit-learn's check_estimator).

The same checks run on each entry of :data:`benchmark.models.BASELINES`, on fold 0 of the
small fake dataset: ``make_model(config)`` gives an object whose ``fit(train, val)`` returns
itself and whose ``predict(data)`` returns one finite float per image; predictions are the
same for the same seed, survive ``save``/``load_model``, never read the targets, and bad
input ends in a :class:`ClusterMassError`. The CNN runs one epoch of a tiny network.
"""
from __future__ import annotations

import importlib

import numpy as np
import pytest

from benchmark.core.errors import ClusterMassError
from benchmark.models import BASELINES
from benchmark.training import FoldData
from fakes import fold_parts

# One epoch of a small network: the protocol, not the recipe, is under test.
# ensemble_members: two members suffice for the protocol (other CNN entries ignore the key).
CHEAP_CNN = {"max_epochs": 1, "patience": 1, "lr_patience": 1, "filters": [2, 2, 2],
             "dense_units": [4, 2], "augment": False, "batch_size": 16, "ensemble_members": 2}
# The truth columns baselines declare: lx_truth (r500c_arcmin) and the oracles.
TRUTH_COLUMNS = ("r500c_arcmin", "gas_fraction", "r500c_kpc", "t500_kev", "lx_cex_erg_s")


_SOURCES_DIR: list[str] = []  # the fake dataset's folder, set by the fold fixture


def _config(name: str, seed: int = 0) -> dict:
    module_name, config = BASELINES[name]
    config = dict(config, random_seed=seed)
    if module_name.endswith(".cnn"):
        config.update(CHEAP_CNN)
    if config.get("point_sources") == "truth":
        config["sources_dataset_dir"] = _SOURCES_DIR[0]  # as the harness's run_entry sets it
    return config


def _module(name: str):
    return importlib.import_module(BASELINES[name][0])


@pytest.fixture(scope="module")
def fold(fake_dataset):
    """FoldData (train, val, test) of fold 0; the test part carries no targets."""
    _SOURCES_DIR[:] = [str(fake_dataset.root)]
    return fold_parts(fake_dataset, 0, TRUTH_COLUMNS)


@pytest.fixture(scope="module", params=sorted(BASELINES))
def fitted(request, fold):
    """(name, model fitted with seed 0, its test predictions) of each baseline."""
    name = request.param
    train, val, test = fold
    model = _module(name).make_model(_config(name))
    returned = model.fit(train, val)
    return name, model, returned, model.predict(test)


def test_fit_returns_the_model(fitted):
    _, model, returned, _ = fitted
    assert returned is model


def test_predict_gives_one_finite_float_per_image(fitted, fold):
    _, _, _, pred = fitted
    pred = np.asarray(pred)
    assert pred.shape == (len(fold[2]),)
    assert pred.dtype.kind == "f" and np.all(np.isfinite(pred))
    assert 12.0 < pred.mean() < 16.0  # log10 M500c in Msun


def test_same_seed_same_predictions(fitted, fold):
    name, _, _, pred = fitted
    train, val, test = fold
    again = _module(name).make_model(_config(name)).fit(train, val).predict(test)
    np.testing.assert_allclose(again, pred, rtol=0, atol=1e-5)


def test_save_and_load_give_the_same_predictions(fitted, fold, tmp_path):
    name, model, _, pred = fitted
    model.save(tmp_path)
    loaded = _module(name).load_model(tmp_path)
    np.testing.assert_allclose(loaded.predict(fold[2]), pred, rtol=0, atol=1e-5)


def test_predict_never_reads_the_targets(fitted, fold):
    _, model, _, pred = fitted
    test = fold[2]
    hidden = FoldData(test.images, test.aux, np.full(len(test), np.nan))
    np.testing.assert_array_equal(model.predict(hidden), pred)


def test_a_model_rebound_to_a_copy_of_its_dataset_predicts_the_same(fitted, fold, tmp_path):
    """The optional ``for_dataset(root)`` hook returns a fitted model of the same kind that
    reads the other folder, and leaves the original bound where it was."""
    import shutil

    _, model, _, pred = fitted
    if not hasattr(model, "for_dataset"):
        pytest.skip("no for_dataset hook: the harness predicts every test set with the model")
    copy = shutil.copytree(_SOURCES_DIR[0], tmp_path / "copy")
    before = dict(getattr(model, "config", {}))
    bound = model.for_dataset(copy)
    assert type(bound) is type(model)
    np.testing.assert_array_equal(bound.predict(fold[2]), pred)
    assert dict(getattr(model, "config", {})) == before
    if before.get("sources_dataset_dir"):  # a model that reads the dataset reads the copy now
        assert bound.config["sources_dataset_dir"] == str(copy)


def test_bad_input_is_a_clustermass_error(fitted, fold, tmp_path):
    name, _, _, _ = fitted
    train, val, test = fold
    module = _module(name)
    with pytest.raises(ClusterMassError):
        module.make_model(_config(name)).predict(test)  # not fitted
    with pytest.raises(ClusterMassError):
        module.make_model(_config(name)).fit(FoldData(train.images, train.aux, None), val)
    with pytest.raises(ClusterMassError):
        module.load_model(tmp_path / "empty")  # nothing saved there
