"""The fold-by-fold runner: split rules, allowed inputs, atomic resumable folds, predictors."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from benchmark.dataset.loader import ClusterMassDataset
from fakes import write_fake_dataset
from benchmark.core.errors import ClusterMassError
from benchmark.training import (
    ALLOWED_AUX_COLUMNS, fold_dir, load_code_submission, load_fold_predictor, run_entry,
)

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = write_fake_dataset(tmp_path_factory.mktemp("fake"), n_clusters=20, n_epochs=1, seed=3)
    return ClusterMassDataset(root)


SPY = '''
"""A code submission that records what the harness shows it."""
import json, os, time
import numpy as np

# Read at call time: the harness caches a submission module by its content.
def log_path():
    return os.environ["SPY_LOG"]


class Spy:
    def __init__(self, config):
        self.config = config

    def fit(self, train, val):
        self.mean = float(np.mean(train.y))
        entry = {"fold": self.config["random_seed"] % 1000,
                 "train_ids": list(train.aux["image_id"]), "val_ids": list(val.aux["image_id"]),
                 "aux_columns": list(train.aux.columns), "dtype": str(train.images.dtype),
                 "shape": list(train.images.shape), "val_has_y": val.y is not None}
        with open(log_path(), "a") as fh:
            fh.write(json.dumps(entry) + "\\n")
        if entry["fold"] == int(os.environ.get("SPY_SLEEP_FOLD", "-1")):
            time.sleep(60)

    def predict(self, data):
        with open(log_path(), "a") as fh:
            fh.write(json.dumps({"test_ids": list(data.aux["image_id"]),
                                 "test_has_y": data.y is not None}) + "\\n")
        return np.full(len(data.images), self.mean)


def make_model(config):
    return Spy(config)
'''


@pytest.fixture
def spy(tmp_path, monkeypatch):
    path = tmp_path / "spy_submission.py"
    path.write_text(SPY)
    log = tmp_path / "spy.log"
    monkeypatch.setenv("SPY_LOG", str(log))
    return path, log


def read_log(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines()]


def test_folds_follow_the_rules_and_models_see_only_allowed_inputs(dataset, spy, tmp_path):
    path, log = spy
    preds = run_entry(str(path), dataset, tmp_path / "out", progress=False)
    cat = dataset.catalog
    # Every image predicted exactly once, out of fold, in catalog order.
    assert list(preds.columns) == ["image_id", "log10_m500c_pred", "seed"]
    assert preds["image_id"].tolist() == cat["image_id"].tolist()
    fold_of = dict(zip(cat["image_id"], cat["fold"]))
    cluster_of = dict(zip(cat["image_id"], cat["cluster_id"]))
    entries = read_log(log)
    fits = [e for e in entries if "train_ids" in e]
    tests = [e for e in entries if "test_ids" in e]
    assert len(fits) == len(tests) == 10
    for fit, test in zip(fits, tests):
        k = fit["fold"]
        assert {fold_of[i] for i in test["test_ids"]} == {k}
        assert {fold_of[i] for i in fit["val_ids"]} == {(k + 1) % 10}
        assert not {fold_of[i] for i in fit["train_ids"]} & {k, (k + 1) % 10}
        train_clusters = {cluster_of[i] for i in fit["train_ids"]}
        assert not train_clusters & {cluster_of[i] for i in test["test_ids"] + fit["val_ids"]}
        assert tuple(fit["aux_columns"]) == ALLOWED_AUX_COLUMNS
        assert fit["dtype"] == "float32" and fit["shape"][1:] == [128, 128]
        assert fit["val_has_y"] and not test["test_has_y"]
        # The prediction is the training mean: neither val nor test targets were used.
        train_rows = cat[~cat["fold"].isin([k, (k + 1) % 10])]
        got = preds.set_index("image_id").loc[test["test_ids"], "log10_m500c_pred"]
        np.testing.assert_allclose(got, train_rows["log10_m500c"].mean(), rtol=1e-7)
    record = json.loads((fold_dir(tmp_path / "out", 3) / "fold.json").read_text())
    assert record["truth_columns"] == [] and record["validation_fold"] == 4
    assert record["model_ref"]["kind"] == "file" and record["loader"] == "pickle"
    saved = pd.read_csv(tmp_path / "out" / "predictions.csv")
    assert len(saved) == len(cat)


def test_truth_columns_are_passed_only_when_declared_and_recorded(dataset, tmp_path):
    run_entry("lx_truth", dataset, tmp_path / "truth", folds=[0, 1], progress=False)
    record = json.loads((fold_dir(tmp_path / "truth", 1) / "fold.json").read_text())
    assert record["truth_columns"] == ["r500c_arcmin"]
    run = json.loads((tmp_path / "truth" / "run.json").read_text())
    assert run["uses_truth"] and run["truth_columns"] == ["r500c_arcmin"]
    run_entry("lx_iterative", dataset, tmp_path / "iter", folds=[0], progress=False)
    assert json.loads((tmp_path / "iter" / "run.json").read_text())["truth_columns"] == []


def test_a_model_may_not_declare_the_target(dataset, tmp_path):
    path = tmp_path / "cheat.py"
    path.write_text("TRUTH_COLUMNS = ('log10_m500c',)\n"
                    "def make_model(config):\n    raise AssertionError('never built')\n")
    with pytest.raises(ClusterMassError):
        run_entry(str(path), dataset, tmp_path / "out", folds=[0], progress=False)
    path.write_text(textwrap.dedent("""
        import numpy as np
        TRUTH_COLUMNS = ('log10_m500c',)
        class M:
            def fit(self, train, val): pass
            def predict(self, data): return np.zeros(len(data.images))
        def make_model(config): return M()
    """))
    with pytest.raises(ClusterMassError, match="truth columns"):
        run_entry(str(path), dataset, tmp_path / "out2", folds=[0], progress=False)


def test_resume_skips_complete_folds_and_redoes_broken_ones(dataset, spy, tmp_path):
    path, log = spy
    out = tmp_path / "out"
    first = run_entry(str(path), dataset, out, folds=[0, 1, 2], progress=False)
    stamp = (fold_dir(out, 0) / "fold.json").stat().st_mtime_ns
    # A killed run leaves a temporary folder; a damaged fold lacks its record.
    (out / "seed_0" / ".fold_2.tmp-99999999-dead").mkdir()
    (fold_dir(out, 1) / "fold.json").unlink()
    log.unlink()
    again = run_entry(str(path), dataset, out, folds=[0, 1, 2], progress=False)
    refit = [e["fold"] for e in read_log(log) if "train_ids" in e]
    assert refit == [1]  # fold 0 and 2 skipped, fold 1 retrained
    assert (fold_dir(out, 0) / "fold.json").stat().st_mtime_ns == stamp
    assert not list((out / "seed_0").glob(".fold_*"))
    pd.testing.assert_frame_equal(first, again)
    with pytest.raises(ClusterMassError, match="another model, config"):
        run_entry(str(path), dataset, out, folds=[0], config={"changed": 1}, progress=False)


def test_a_killed_run_resumes_where_it_stopped(dataset, spy, tmp_path):
    path, log = spy
    out = tmp_path / "out"
    code = (f"from benchmark.training import run_entry; "
            f"run_entry({str(path)!r}, {str(dataset.root)!r}, {str(out)!r}, folds=[0, 1], "
            f"progress=False)")
    env = dict(os.environ, SPY_SLEEP_FOLD="1",
               PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.Popen([sys.executable, "-c", code], env=env)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # wait until fold 1 is training
            if log.exists() and any(e.get("fold") == 1 for e in read_log(log)):
                break
            assert proc.poll() is None, "the training process ended early"
            time.sleep(0.2)
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert (fold_dir(out, 0) / "fold.json").is_file()
    assert not fold_dir(out, 1).exists()
    log.unlink()
    preds = run_entry(str(path), dataset, out, folds=[0, 1], progress=False)
    assert [e["fold"] for e in read_log(log) if "train_ids" in e] == [1]
    assert len(preds) == int(dataset.catalog["fold"].isin([0, 1]).sum())


def test_seeds_give_one_block_each(dataset, tmp_path):
    preds = run_entry("mean", dataset, tmp_path / "out", seeds=(0, 1), progress=False)
    assert preds["seed"].tolist() == [0] * len(dataset.catalog) + [1] * len(dataset.catalog)
    assert (tmp_path / "out" / "seed_1" / "fold_9" / "fold.json").is_file()


def test_non_keras_predictor_has_no_gradient(dataset, tmp_path):
    run_entry("lx_iterative", dataset, tmp_path / "out", folds=[2], progress=False)
    predictor = load_fold_predictor(tmp_path / "out", 2)
    idx = dataset.fold_indices(2)["test"]
    pred = predictor.predict(dataset.images(indices=idx), dataset.aux(idx))
    saved = pd.read_csv(fold_dir(tmp_path / "out", 2) / "predictions.csv")
    np.testing.assert_allclose(pred, saved["log10_m500c_pred"], atol=1e-6)
    assert predictor.gradient(dataset.images(indices=idx), dataset.aux(idx)) is None
    with pytest.raises(ClusterMassError, match="no complete fold"):
        load_fold_predictor(tmp_path / "out", 3)


def test_reference_cnn_fold_uses_training_statistics_and_gives_gradients(dataset, tmp_path):
    out = tmp_path / "cnn"
    run_entry("reference", dataset, out, folds=[0], progress=False,
              config={"max_epochs": 1, "dense_units": [16, 8, 4]})
    directory = fold_dir(out, 0)
    assert {"model.keras", "normalisation.json", "predictions.csv", "fold.json"} <= {
        p.name for p in directory.iterdir()}
    stats = json.loads((directory / "normalisation.json").read_text())
    parts = dataset.fold_indices(0)
    images = dataset.images().astype(np.float64)
    logx = np.log10(1 + images)
    y = dataset.catalog["log10_m500c"].to_numpy()
    train = parts["train"]
    assert stats["image_log_mean"] == pytest.approx(logx[train].mean(), rel=1e-6)
    assert stats["y_mean"] == pytest.approx(y[train].mean(), rel=1e-9)
    for other in (np.arange(len(y)), np.concatenate([train, parts["val"]])):
        assert stats["y_mean"] != pytest.approx(y[other].mean(), rel=1e-6)  # no leak
    record = json.loads((directory / "fold.json").read_text())
    assert record["training"]["monitor"] == "val_loss" and record["loader"] == "keras_recipe"

    predictor = load_fold_predictor(out, 0)
    test = parts["test"]
    pred = predictor.predict(dataset.images(indices=test), dataset.aux(test))
    saved = pd.read_csv(directory / "predictions.csv")
    np.testing.assert_allclose(pred, saved["log10_m500c_pred"], atol=1e-5)
    grad = predictor.gradient(dataset.images(indices=test[:2]), dataset.aux(test[:2]))
    assert grad.shape == (2, 128, 128) and np.all(np.isfinite(grad)) and np.any(grad != 0)


def test_a_schedule_of_another_preset_overrides_the_dataset_preset(dataset, tmp_path):
    run_entry("reference", dataset, tmp_path / "cnn", folds=[0], progress=False, preset="full",
              schedule="ci", config={"dense_units": [16, 8, 4]})
    record = json.loads((fold_dir(tmp_path / "cnn", 0) / "fold.json").read_text())
    assert record["config"]["preset"] == "full"
    assert (record["config"]["max_epochs"], record["config"]["patience"]) == (2, 1)
    assert len(record["training"]["history"]["loss"]) <= 2
    with pytest.raises(ClusterMassError, match="unknown training schedule 'slow'"):
        run_entry("reference", dataset, tmp_path / "other", folds=[0], progress=False, schedule="slow")
    assert not (tmp_path / "other" / "seed_0").exists()


def test_build_keras_model_submission_is_wrapped_with_the_recipe(dataset, tmp_path):
    path = tmp_path / "tiny_keras.py"
    path.write_text(textwrap.dedent("""
        import keras
        def build_keras_model(input_shape):
            x = keras.Input(input_shape)
            h = keras.layers.Conv2D(2, 3, strides=4, activation="relu")(x)
            h = keras.layers.GlobalAveragePooling2D()(h)
            return keras.Model(x, keras.layers.Dense(1)(h))
    """))
    module = load_code_submission(path)
    preds = run_entry(module, dataset, tmp_path / "out", folds=[5], progress=False,
                      config={"max_epochs": 1})
    assert len(preds) == int((dataset.catalog["fold"] == 5).sum())
    predictor = load_fold_predictor(tmp_path / "out", 5)
    assert predictor.has_gradient


def test_code_submission_errors_are_clear(tmp_path):
    with pytest.raises(ClusterMassError, match="not a .py file"):
        load_code_submission(tmp_path / "missing.py")
    empty = tmp_path / "empty.py"
    empty.write_text("x = 1\n")
    with pytest.raises(ClusterMassError, match="neither make_model"):
        load_code_submission(empty)
    broken = tmp_path / "broken.py"
    broken.write_text("import not_a_real_package_xyz\n")
    with pytest.raises(ClusterMassError, match="failed to import"):
        load_code_submission(broken)
    with pytest.raises(ClusterMassError, match="neither a baseline"):
        run_entry("no_such_entry", tmp_path, tmp_path / "out")


def test_train_baselines_writes_valid_entries(dataset, tmp_path):
    from benchmark.entries import load_entry
    from benchmark.training import train_baselines

    written = train_baselines(dataset.root, tmp_path / "results", ["mean", "lx_truth"],
                              progress=False)
    assert [p.name for p in written] == ["mean.json", "lx-truth.json"]
    truth = load_entry(written[1])
    assert truth.kind == "baseline" and truth.trusted
    assert truth.metadata["uses_truth"] and truth.metadata["truth_columns"] == ["r500c_arcmin"]
    mean = load_entry(written[0])
    assert not mean.metadata["uses_truth"]
    assert mean.score.n_images == len(dataset.catalog)
    assert (tmp_path / "results" / "entries" / "mean.predictions.csv").is_file()
    # The diagnostics find the trained folds beside the entry's slug.
    assert (tmp_path / "results" / "runs" / "lx-truth" / "seed_0" / "fold_9" / "fold.json").is_file()
    # Subset of folds: trained, but no entry (an entry needs every image).
    assert train_baselines(dataset.root, tmp_path / "r2", ["total_counts"], folds=[0],
                           progress=False) == []
    with pytest.raises(ClusterMassError, match="unknown entries"):
        train_baselines(dataset.root, tmp_path / "r3", ["resnet"], progress=False)


def test_hardware_names_the_gpus_tensorflow_sees():
    import tensorflow as tf

    from benchmark.training import _hardware

    gpus = tf.config.list_physical_devices("GPU")
    text = _hardware()
    assert f"CPU x{os.cpu_count()}" in text
    assert ("GPU:" in text) == bool(gpus)


NAN_SUMMARY = '''
"""A model whose training summary holds an undefined validation loss (no validation epoch)."""
import numpy as np


class NoValidation:
    def __init__(self, config):
        self.training_summary = {"best_val_loss": float("nan"), "loss": float("inf"),
                                 "n_params": np.int64(1), "device": object()}

    def fit(self, train, val):
        self.mean = float(np.mean(train.y))

    def predict(self, data):
        return np.full(len(data.images), self.mean)


def make_model(config):
    return NoValidation(config)
'''


def _strict_loads(text: str):
    def refuse(constant):
        raise ValueError(f"{constant} is not strict JSON")
    return json.loads(text, parse_constant=refuse)


def test_run_records_with_a_nan_metric_are_strict_json(dataset, tmp_path):
    path = tmp_path / "no_validation.py"
    path.write_text(NAN_SUMMARY)
    out = tmp_path / "out"
    run_entry(str(path), dataset, out, folds=[0], progress=False)
    record = _strict_loads((fold_dir(out, 0) / "fold.json").read_text())
    assert record["training"]["best_val_loss"] is None and record["training"]["loss"] is None
    assert record["training"]["n_params"] == 1
    assert record["training"]["device"].startswith("<object object")
    assert _strict_loads((out / "run.json").read_text())["n_params"] == 1
