"""The sandbox of code submissions: truth-blind inputs, no view of the host, limits.

Every test runs real bubblewrap (installed by `make test`) on tiny arrays.
"""
from __future__ import annotations

import json
import socket
import textwrap
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from benchmark import sandbox
from benchmark.core.errors import ClusterMassError, SubmissionError
from submissions import POWER_LAW as HONEST
from submissions import POWER_LAW_PREDICT


def part(n, start, rng, with_y=True):
    counts = rng.poisson(20.0 * (1 + np.arange(n))[:, None, None], size=(n, 8, 8))
    aux = pd.DataFrame({"image_id": [f"c{start + i:04d}_e0_x" for i in range(n)],
                        "redshift": np.full(n, 0.2), "pixel_arcsec": np.full(n, 7.92)})
    y = 13.5 + 0.7 * np.log10(counts.sum(axis=(1, 2))) if with_y else None
    return SimpleNamespace(images=counts.astype(np.float32), aux=aux, y=y)


@pytest.fixture
def fold(tmp_path):
    rng = np.random.default_rng(0)
    return part(12, 0, rng), part(4, 100, rng), part(6, 200, rng, with_y=False)


def submit(tmp_path, source, name="model.py"):
    folder = tmp_path / "submission"
    folder.mkdir(exist_ok=True)
    (folder / name).write_text(textwrap.dedent(source))
    return folder / name


def run(tmp_path, fold, source, **kwargs):
    scratch = tmp_path / "scratch"
    tokens = sandbox.write_fold_inputs(scratch, *fold, config={"epochs": 1}, seed=7)
    sandbox.run_fold(submit(tmp_path, source), scratch, **kwargs)
    return scratch, tokens, sandbox.read_fold_predictions(scratch, tokens)


def test_the_sandbox_starts_here():
    assert sandbox.probe() is None


def test_honest_submission_predictions_map_back_to_image_ids(tmp_path, fold):
    _, tokens, pred = run(tmp_path, fold, HONEST)
    train, _, test = fold
    slope, offset = np.polyfit(np.log10(train.images.sum(axis=(1, 2))), train.y, 1)
    expected = pd.Series(offset + slope * np.log10(test.images.sum(axis=(1, 2))),
                         index=test.aux["image_id"])
    np.testing.assert_allclose(pred["log10_m500c_pred"], expected[pred["image_id"]].to_numpy(),
                               rtol=1e-5)
    assert sorted(pred["image_id"]) == sorted(test.aux["image_id"])


def test_test_inputs_carry_no_target_no_ids_and_a_shuffled_order(tmp_path, fold):
    scratch = tmp_path / "scratch"
    tokens = sandbox.write_fold_inputs(scratch, *fold, config={}, seed=1)
    with np.load(scratch / "in" / "test.npz") as npz:
        assert set(npz.files) == {"images", "aux_image_id", "aux_redshift", "aux_pixel_arcsec"}
        seen = set(npz["aux_image_id"])
    assert not seen & set(fold[2].aux["image_id"])
    with np.load(scratch / "in" / "train.npz") as npz:
        assert "y" in npz.files and not set(npz["aux_image_id"]) & set(fold[0].aux["image_id"])
    orders = {tuple(sandbox.write_fold_inputs(tmp_path / f"s{i}", *fold, {}, 1)["image_id"])
              for i in range(6)}
    assert len(orders) > 1  # the order is not a function of the public seed
    assert json.loads((scratch / "in" / "config.json").read_text()) == {"random_seed": 1}
    assert list(tokens.columns) == ["token", "image_id"]


def test_submission_sees_nothing_of_the_host(tmp_path, fold):
    """Only the Python installation is mounted (at its own path, which pyvenv.cfg names)."""
    secret = tmp_path / "data" / "catalog.csv"
    secret.parent.mkdir()
    secret.write_text("image_id,log10_m500c\nc0200_e0_x,14.5\n")
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]
    spy = HONEST + f"""
import os, socket, json
def attempts():
    seen = {{}}
    for name, action in [
        ("catalog", lambda: open({str(secret)!r}).read()),
        ("host_folder", lambda: os.listdir({str(tmp_path)!r})),
        ("repository", lambda: open({str(sandbox.CHILD_SCRIPT.parents[1] / "pyproject.toml")!r})),
        ("sandbox_code", lambda: open({str(sandbox.CHILD_SCRIPT.with_name("sandbox.py"))!r})),
        ("home", lambda: open(os.path.expanduser("~root/.bash_history"))),
        ("network", lambda: socket.create_connection(("127.0.0.1", {port}), timeout=2)),
        ("write_submission", lambda: open("/submission/x", "w")),
    ]:
        try:
            action()
            seen[name] = True
        except Exception:
            seen[name] = False
    json.dump(seen, open("/scratch/out/seen.json", "w"))
os.makedirs("/scratch/out", exist_ok=True)
attempts()
"""
    scratch, _, _ = run(tmp_path, fold, spy)
    listener.close()
    seen = json.loads((scratch / "out" / "seen.json").read_text())
    assert seen == {"catalog": False, "host_folder": False, "repository": False,
                    "sandbox_code": False, "home": False, "network": False,
                    "write_submission": False}


def test_failing_submission_is_quoted(tmp_path, fold):
    with pytest.raises(SubmissionError, match="(?s)failed in the sandbox.*ZeroDivisionError"):
        run(tmp_path, fold, HONEST.replace("return CountsPowerLaw(config)", "return 1 / 0"))


@pytest.mark.parametrize("source, limits, match", [
    ("x = bytearray(3 << 30)\n", sandbox.Limits(memory_gib=1.5), "memory limit"),
    ("while True:\n    pass\n", sandbox.Limits(cpu_seconds=1, wall_seconds=60), "CPU-time"),
    ("import time\ntime.sleep(60)\n", sandbox.Limits(wall_seconds=2), "wall-time"),
])
def test_limits_end_the_child_with_a_clear_error(tmp_path, fold, source, limits, match):
    with pytest.raises(SubmissionError, match=match):
        run(tmp_path, fold, source + HONEST, limits=limits)


@pytest.mark.parametrize("body, match", [
    ("return np.zeros(2)", "shape"),
    ("return np.full(len(data), np.nan)", "non-finite"),
])
def test_malformed_predictions_are_refused(tmp_path, fold, body, match):
    bad = HONEST.replace(POWER_LAW_PREDICT, body)
    with pytest.raises(SubmissionError, match=match):
        run(tmp_path, fold, bad)


def test_without_bwrap_the_sandbox_says_why_and_unsandboxed_still_runs(tmp_path, fold,
                                                                       monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no bwrap here
    sandbox.probe.cache_clear()
    try:
        assert "bubblewrap is not installed" in sandbox.probe()
        with pytest.raises(sandbox.SandboxUnavailable, match="--unsandboxed"):
            run(tmp_path, fold, HONEST)
        (tmp_path / "u").mkdir()
        _, _, pred = run(tmp_path / "u", fold, HONEST, unsandboxed=True)
        assert len(pred) == 6
    finally:
        sandbox.probe.cache_clear()


KERAS = """
import numpy as np
import keras

class Model:
    def __init__(self, config):
        keras.utils.set_random_seed(config["random_seed"])
        self.net = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(2, 3),
                                     keras.layers.Flatten(), keras.layers.Dense(1)])
        self.net.compile("adam", "mse")

    def fit(self, train, val):
        self.net.fit(np.log1p(train.images)[..., None], train.y, epochs=2, verbose=0,
                     validation_data=(np.log1p(val.images)[..., None], val.y))
        return self

    def predict(self, data):
        return self.net.predict(np.log1p(data.images)[..., None], verbose=0)[:, 0]

def make_model(config):
    return Model(config)
"""


def test_a_keras_submission_trains_inside_the_sandbox(tmp_path, fold):
    _, _, pred = run(tmp_path, fold, KERAS, limits=sandbox.Limits(memory_gib=8))
    assert len(pred) == 6 and np.all(np.isfinite(pred["log10_m500c_pred"]))


KERAS_BUILDER = """
import json, os
import keras

def build_keras_model(input_shape):
    x = keras.Input(input_shape)
    h = keras.layers.Conv2D(2, 3, activation="relu")(x)
    h = keras.layers.GlobalAveragePooling2D()(h)
    return keras.Model(x, keras.layers.Dense(1)(h))

os.makedirs("/scratch/out", exist_ok=True)
json.dump({"runner": sorted(os.listdir("/runner")),
           "recipe": sorted(os.path.relpath(os.path.join(d, f), "/runner/recipe/benchmark")
                            for d, _, files in os.walk("/runner/recipe/benchmark") for f in files)},
          open("/scratch/out/mounts.json", "w"))
"""


def test_a_build_keras_model_module_trains_with_the_recipe_inside_the_sandbox(tmp_path, fold):
    """The recipe's modules are the only harness code the child sees, and they suffice."""
    scratch = tmp_path / "scratch"
    recipe = {"max_epochs": 1, "patience": 1, "lr_patience": 1, "batch_size": 4}
    tokens = sandbox.write_fold_inputs(scratch, *fold, config={"keras_recipe": recipe}, seed=3)
    sandbox.run_fold(submit(tmp_path, KERAS_BUILDER), scratch,
                     limits=sandbox.Limits(memory_gib=8))
    pred = sandbox.read_fold_predictions(scratch, tokens)
    assert len(pred) == 6 and np.all(np.isfinite(pred["log10_m500c_pred"]))
    mounts = json.loads((scratch / "out" / "mounts.json").read_text())
    assert mounts == {"runner": ["child.py", "recipe"], "recipe": sorted(sandbox.RECIPE_MODULES)}
    info = sandbox.read_model_info(scratch)
    assert info["has_gradient"] and info["normalisation"]["transform"]


def test_a_module_with_neither_entry_point_fails_with_one_clear_error(tmp_path, fold):
    with pytest.raises(SubmissionError, match="neither make_model.*nor build_keras_model"):
        run(tmp_path, fold, "x = 1\n")


def test_a_bare_module_is_copied_alone(tmp_path, fold):
    """A module lying beside a dataset does not bring the dataset into the sandbox."""
    (tmp_path / "submission").mkdir()
    (tmp_path / "submission" / "data").mkdir()
    (tmp_path / "submission" / "data" / "catalog.csv").write_text("image_id,log10_m500c\n")
    spy = HONEST + """
import os, json
os.makedirs("/scratch/out", exist_ok=True)
json.dump(sorted(os.listdir("/submission")), open("/scratch/out/listing.json", "w"))
"""
    scratch, _, _ = run(tmp_path, fold, spy)
    assert json.loads((scratch / "out" / "listing.json").read_text()) == ["model.py"]


def test_a_folder_carrying_dataset_files_is_refused(tmp_path, fold):
    folder = tmp_path / "sub"
    (folder / "weights").mkdir(parents=True)
    (folder / "model.py").write_text(textwrap.dedent(HONEST))
    (folder / "weights" / "catalog.csv").write_text("image_id,log10_m500c\n")
    scratch = tmp_path / "scratch"
    sandbox.write_fold_inputs(scratch, *fold, config={}, seed=1)
    with pytest.raises(SubmissionError, match="holds dataset files.*catalog.csv"):
        sandbox.run_fold(folder / "model.py", scratch, folder=folder)


@pytest.mark.parametrize("overwrite, match", [
    ('np.save(OUT, np.array(["14.0"] * 6))', "dtype"),
    ('os.remove(OUT); os.symlink("/etc/hostname", OUT)', "not a regular file"),
])
def test_the_output_file_is_read_defensively(tmp_path, fold, overwrite, match):
    """A child that rewrites its output after the runner saved it gets one clear error."""
    tamper = HONEST + f"""
import atexit, os
OUT = "/scratch/out/predictions.npy"
atexit.register(lambda: ({overwrite.replace(';', ',')}))
"""
    with pytest.raises(SubmissionError, match=match):
        run(tmp_path, fold, tamper)


def test_the_config_reaches_the_child_as_strict_json(tmp_path, fold):
    sandbox.write_fold_inputs(tmp_path / "ok", *fold, config={"rate": 0.5}, seed=3)
    text = (tmp_path / "ok" / "in" / "config.json").read_text()
    assert json.loads(text) == {"rate": 0.5, "random_seed": 3}
    with pytest.raises(ClusterMassError, match=r"config holds NaN .* at rate"):
        sandbox.write_fold_inputs(tmp_path / "bad", *fold, config={"rate": float("nan")}, seed=3)
    assert not (tmp_path / "bad").exists()


def test_the_recipe_modules_are_the_whole_import_closure_of_the_keras_recipe():
    """The list the sandbox mounts, checked against what models/cnn.py imports of the project
    (at module level and inside functions), followed recursively."""
    import ast
    from pathlib import Path

    package = Path(sandbox.__file__).resolve().parent

    def module_file(name: str) -> str:
        rel = Path(*name.split(".")[1:])
        return str(rel / "__init__.py") if (package / rel).is_dir() else f"{rel}.py"

    def project_imports(path: Path) -> set[str]:
        names = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module)
            elif isinstance(node, ast.Import):
                names.update(a.name for a in node.names)
        return {n for n in names if n == "benchmark" or n.startswith("benchmark.")}

    seen, todo = set(), ["benchmark.models.cnn"]
    while todo:
        name = todo.pop()
        parts = name.split(".")
        for i in range(1, len(parts) + 1):  # a module's packages run their __init__ too
            rel = "__init__.py" if i == 1 else module_file(".".join(parts[:i]))
            if rel not in seen:
                seen.add(rel)
                todo.extend(project_imports(package / rel))
    assert seen == set(sandbox.RECIPE_MODULES)
