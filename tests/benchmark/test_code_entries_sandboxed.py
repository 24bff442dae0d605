"""Code entries beyond fit and predict: diagnostics inside the sandbox, Dask, sigmas.

Real bubblewrap, real Dask, a tiny fake dataset. The diagnosed model is a NumPy model with
an analytic gradient, so the sandboxed diagnostics can be compared with the same model's
in-process ones.
"""
from __future__ import annotations

import json
import os
import textwrap

import numpy as np
import pandas as pd
import pytest

from benchmark import sandbox
from benchmark.core.errors import ClusterMassError, SubmissionError
from benchmark.dataset.loader import ClusterMassDataset
from benchmark.diagnostics import diagnose_in_sandbox, run_diagnostics
from benchmark.training import (SANDBOX_ANSWERS_FILE, fold_dir, load_fold_predictor,
                                run_code_entry, run_entry)
from fakes import write_fake_dataset
from submissions import POWER_LAW

pytestmark = pytest.mark.skipif(sandbox.probe() is not None, reason="bubblewrap cannot start")

#: log10 M = a + b log10(1 + sum w N), w a Gaussian weight around the centre; the gradient
#: is analytic, d/dN = b w / ((1 + S) ln 10).
WEIGHTED = """
import numpy as np

def _weights(npix):
    y, x = np.indices((npix, npix)) - (npix - 1) / 2.0
    return np.exp(-(x ** 2 + y ** 2) / (2 * 20.0 ** 2))

class Weighted:
    def fit(self, train, val):
        w = _weights(train.images.shape[1])
        x = np.log10(1.0 + (train.images * w).sum(axis=(1, 2)))
        self.b, self.a = np.polyfit(x, train.y, 1)
        return self

    def _s(self, images):
        return 1.0 + (np.asarray(images, dtype=np.float64) * _weights(images.shape[1])).sum(axis=(1, 2))

    def predict(self, data):
        return self.a + self.b * np.log10(self._s(data.images))
{extra}
    def gradient(self, data):
        s = self._s(data.images)
        return self.b * _weights(data.images.shape[1])[None] / (s[:, None, None] * np.log(10.0))

def make_model(config):
    return Weighted()
"""
SIGMA = """
    def predict_sigma(self, data):
        return np.full(len(data.images), {value})
"""
#: Reads the catalog on its second predict call: the first diagnostics request.
SNOOP = """
    calls = 0

    def predict(self, data):
        Weighted.calls += 1
        if Weighted.calls > 1:
            open({catalog!r}).read()
        return self.a + self.b * np.log10(self._s(data.images))
"""


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = write_fake_dataset(tmp_path_factory.mktemp("fake"), n_clusters=20, n_epochs=1, seed=4)
    return ClusterMassDataset(root)


def module(tmp_path, source, name="model.py"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(source))
    return path


def weighted(tmp_path, extra=""):
    return module(tmp_path, WEIGHTED.replace("{extra}", extra))


def test_diagnostics_run_in_the_sandbox_equal_the_in_process_ones(dataset, tmp_path):
    path = weighted(tmp_path)
    boxed, plain = tmp_path / "boxed", tmp_path / "plain"
    run_code_entry(path, dataset, boxed, seeds=(0,), folds=[0, 1], progress=False,
                   diagnose=diagnose_in_sandbox)
    run_entry(path, dataset, plain, seeds=(0,), folds=[0, 1], progress=False)
    record = json.loads((fold_dir(boxed, 0) / "fold.json").read_text())
    assert record["diagnostics"]["has_gradient"] and record["diagnostics"]["n_requests"] > 2
    assert (fold_dir(boxed, 0) / SANDBOX_ANSWERS_FILE).is_file()
    kw = dict(folds=[0, 1], controls=("null",), n_boot=50, write=False)
    got, want = run_diagnostics(boxed, dataset, **kw), run_diagnostics(plain, dataset, **kw)
    assert got["has_gradient"] and want["has_gradient"]
    for key in ("core_sensitivity_gradient", "core_sensitivity"):
        assert got[key] == pytest.approx(want[key], rel=1e-6), key
    assert got["deepdream"].keys() == want["deepdream"].keys()
    for it, stats in want["deepdream"].items():
        np.testing.assert_allclose(np.array(got["deepdream"][it]["mean"], dtype=float),
                                   np.array(stats["mean"], dtype=float), rtol=1e-5,
                                   equal_nan=True)
    np.testing.assert_allclose(np.array(got["saliency_profile"]["mean"], dtype=float),
                               np.array(want["saliency_profile"]["mean"], dtype=float),
                               rtol=1e-5, equal_nan=True)
    assert any("never left its sandbox" in note for note in got["notes"])
    assert not any("never left its sandbox" in note for note in want["notes"])


def test_other_diagnostics_settings_are_refused_for_a_sandboxed_fold(dataset, tmp_path):
    run_code_entry(weighted(tmp_path), dataset, tmp_path / "run", seeds=(0,), folds=[2],
                   progress=False, diagnose=diagnose_in_sandbox)
    with pytest.raises(ClusterMassError, match="default diagnostics settings"):
        run_diagnostics(tmp_path / "run", dataset, folds=[2], step_size=0.3, controls=(),
                        write=False)


def test_a_model_without_gradients_gets_occlusion_diagnostics(dataset, tmp_path):
    run_code_entry(module(tmp_path, POWER_LAW), dataset, tmp_path / "run", seeds=(0,),
                   folds=[3], progress=False, diagnose=diagnose_in_sandbox)
    summary = run_diagnostics(tmp_path / "run", dataset, folds=[3], controls=("null",),
                              n_boot=20, write=False)
    assert not summary["has_gradient"]
    # A power law of the total counts weighs every photon alike: a ratio near one.
    assert summary["core_sensitivity"] == pytest.approx(1.0, abs=0.3)
    assert any("no gradients" in note for note in summary["notes"])


def test_reading_the_truth_while_diagnosed_fails_and_writes_no_fold(dataset, tmp_path):
    catalog = str(dataset.root / "catalog.csv")
    path = weighted(tmp_path, SNOOP.replace("{catalog!r}", repr(catalog)))
    with pytest.raises(SubmissionError, match="FileNotFoundError"):
        run_code_entry(path, dataset, tmp_path / "run", seeds=(0,), folds=[0], progress=False,
                       diagnose=diagnose_in_sandbox)
    assert not (fold_dir(tmp_path / "run", 0) / "fold.json").exists()


def test_folds_on_a_dask_local_cluster_equal_the_serial_run(dataset, tmp_path):
    path = weighted(tmp_path, SIGMA.replace("{value}", "0.1"))
    serial = run_code_entry(path, dataset, tmp_path / "serial", seeds=(0, 1), folds=[0, 1],
                            progress=False, diagnose=diagnose_in_sandbox)
    spread = run_code_entry(path, dataset, tmp_path / "dask", seeds=(0, 1), folds=[0, 1],
                            progress=False, diagnose=diagnose_in_sandbox, jobs=2)
    pd.testing.assert_frame_equal(serial, spread, check_exact=True)
    assert ((tmp_path / "serial" / "predictions.csv").read_bytes()
            == (tmp_path / "dask" / "predictions.csv").read_bytes())
    for name in ("serial", "dask"):  # seed 0 was diagnosed in both, seed 1 in neither
        assert (fold_dir(tmp_path / name, 1, 0) / SANDBOX_ANSWERS_FILE).is_file()
        assert not (fold_dir(tmp_path / name, 1, 1) / SANDBOX_ANSWERS_FILE).exists()
    assert getattr(load_fold_predictor(tmp_path / "dask", 1), "sandboxed", False)
    pids = {json.loads((fold_dir(tmp_path / "dask", k, seed) / "fold.json").read_text())
            ["process"]["pid"] for k in (0, 1) for seed in (0, 1)}
    assert os.getpid() not in pids  # the folds ran on the cluster's workers


def test_predict_sigma_comes_back_through_the_sandbox(dataset, tmp_path):
    path = weighted(tmp_path, SIGMA.replace("{value}", "0.125"))
    preds = run_code_entry(path, dataset, tmp_path / "run", seeds=(0,), folds=[0, 1],
                           progress=False)
    assert np.all(preds["log10_m500c_sigma"] == 0.125) and len(preds) > 0


def test_a_mean_and_sigma_pair_from_predict_is_accepted(dataset, tmp_path):
    source = POWER_LAW.replace("return self.offset + self.slope",
                               "return self.offset + 0 * data.images.sum(axis=(1, 2)), "
                               "0.2 + 0 * self.slope * data.images.sum(axis=(1, 2))")
    preds = run_code_entry(module(tmp_path, source), dataset, tmp_path / "run", seeds=(0,),
                           folds=[0], progress=False)
    assert np.all(preds["log10_m500c_sigma"] == 0.2)


@pytest.mark.parametrize("value, message", [("-0.1", "not finite and in"),
                                            ("np.nan", "not finite and in"),
                                            ("[0.1, 0.2]", "one sigma")])
def test_a_malformed_sigma_is_refused_with_one_clear_error(dataset, tmp_path, value, message):
    extra = SIGMA.replace("np.full(len(data.images), {value})",
                          f"np.full(len(data.images), {value})" if "[" not in value
                          else f"np.array({value})")
    with pytest.raises(ClusterMassError, match=message):
        run_code_entry(weighted(tmp_path, extra), dataset, tmp_path / "run", seeds=(0,),
                       folds=[0], progress=False)
    assert not (fold_dir(tmp_path / "run", 0) / "fold.json").exists()


def test_the_protocol_states_the_sigma_bound_the_harness_checks():
    from benchmark.submission import MAX_SIGMA_DEX

    assert sandbox.MAX_SIGMA_DEX == MAX_SIGMA_DEX
    text = sandbox.code_protocol()
    assert "predict_sigma" in text and "gradient(data)" in text and "Dask" in text


def test_a_diagnostics_answer_past_the_wall_time_limit_stops_the_child(dataset, tmp_path):
    source = WEIGHTED.replace("{extra}", "").replace(
        "    def gradient(self, data):\n",
        "    def gradient(self, data):\n        import time\n        time.sleep(3600)\n")
    with pytest.raises(SubmissionError, match="wall-time limit"):
        run_code_entry(module(tmp_path, source), dataset, tmp_path / "run", seeds=(0,),
                       folds=[0], progress=False, diagnose=diagnose_in_sandbox,
                       limits=sandbox.Limits(wall_seconds=30))
    assert not (fold_dir(tmp_path / "run", 0) / "fold.json").exists()


def test_unsandboxed_code_entries_are_diagnosed_the_same_way(dataset, tmp_path):
    run_code_entry(weighted(tmp_path), dataset, tmp_path / "run", seeds=(0,), folds=[4],
                   progress=False, diagnose=diagnose_in_sandbox, unsandboxed=True)
    record = json.loads((fold_dir(tmp_path / "run", 4) / "fold.json").read_text())
    assert record["sandbox"].startswith("none") and record["diagnostics"]["has_gradient"]
    summary = run_diagnostics(tmp_path / "run", dataset, folds=[4], controls=(), write=False)
    assert summary["has_gradient"]


def test_the_entry_of_a_code_submission_says_its_diagnostics_ran_sandboxed(dataset, tmp_path):
    from benchmark.diagnostics import diagnose_entry
    from benchmark.entries import load_entry
    from benchmark.evaluate import evaluate_submission

    folder = tmp_path / "weighted"
    folder.mkdir()
    weighted(folder)
    entry_path = evaluate_submission(folder, dataset.root, tmp_path / "results", seeds=(0,))
    diagnose_entry(tmp_path / "results" / "runs" / "weighted", dataset, entry_path=entry_path,
                   controls=("null",), n_boot=20)
    diagnostics = load_entry(entry_path).diagnostics
    assert diagnostics["has_gradient"] and "deepdream" in diagnostics
    assert any("never left its sandbox" in note for note in diagnostics["notes"])


KERAS_BUILDER = """
import keras

def build_keras_model(input_shape):
    x = keras.Input(input_shape)
    h = keras.layers.Conv2D(2, 3, strides=4, activation="relu")(x)
    h = keras.layers.GlobalAveragePooling2D()(h)
    return keras.Model(x, keras.layers.Dense(1)(h))
"""


def test_a_keras_network_alone_trains_with_the_recipe(dataset, tmp_path):
    from benchmark.models.cnn import training_schedule

    preds = run_code_entry(module(tmp_path, KERAS_BUILDER), dataset, tmp_path / "run",
                           seeds=(0,), folds=[2], progress=False, schedule="ci")
    assert len(preds) > 0 and np.all(np.isfinite(preds["log10_m500c_pred"]))
    record = json.loads((fold_dir(tmp_path / "run", 2, 0) / "fold.json").read_text())
    assert record["config"]["keras_recipe"] == training_schedule("ci")


def test_the_recipe_schedule_defaults_to_the_datasets_preset(dataset, tmp_path):
    from benchmark.models.cnn import training_schedule

    run_code_entry(weighted(tmp_path), dataset, tmp_path / "run", seeds=(0,), folds=[3],
                   progress=False)
    record = json.loads((fold_dir(tmp_path / "run", 3, 0) / "fold.json").read_text())
    assert record["config"]["keras_recipe"] == training_schedule(dataset.card.get("preset"))
