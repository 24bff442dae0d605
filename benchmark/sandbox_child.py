"""The child side of a sandboxed fold: runs a code submission on what the fold allows.

Usage: ``child.py MODULE SCRATCH [--serve]``. This file runs *inside* the sandbox
(:mod:`benchmark.sandbox`) as a plain script: it imports NumPy, pandas and the submission,
and of the project only the reference Keras recipe, for a submission that defines
``build_keras_model`` alone (its modules, :data:`benchmark.sandbox.RECIPE_MODULES`, are the
only ones mounted). It reads ``SCRATCH/in/{train,val,test}.npz`` and
``SCRATCH/in/config.json``, calls ``make_model(config)``, ``fit(train, val)`` and ``predict(test)`` (and ``predict_sigma(test)``
when the model has one), and writes ``SCRATCH/out/predictions.npy`` (one float per test
image, in the order of ``test.npz``), ``SCRATCH/out/sigma.npy`` when the model gives sigmas,
and ``SCRATCH/out/model.json`` (whether the model has gradients, its input normalisation).

With ``--serve`` the child then answers requests for the interpretation diagnostics until
told to stop: the harness writes ``SCRATCH/req/N.npz`` (``op`` ``predict`` or ``gradient``,
``images`` and the allowed auxiliary columns under opaque tokens), the child writes
``SCRATCH/resp/N.npy``. The harness has read the predictions before it sends the first
request, so nothing the requests show can change them.

An exception in the submission ends the child with exit status 3 and the traceback on
standard error, which the parent quotes.
"""
import dataclasses
import importlib.util
import json
import math
import os
import sys
import time
import traceback
from pathlib import Path

import numpy as np
import pandas as pd

EXIT_SUBMISSION_FAILED = 3
#: Seconds between two looks for the next request (the harness writes them one at a time).
POLL_SECONDS = 0.005


@dataclasses.dataclass
class FoldData:
    """One part of a fold as the submission sees it (the same fields as the harness's)."""

    images: np.ndarray
    aux: pd.DataFrame
    y: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.images)


def read_npz(path: Path) -> FoldData:
    with np.load(path, allow_pickle=False) as npz:
        aux = pd.DataFrame({k[len("aux_"):]: npz[k] for k in npz.files if k.startswith("aux_")})
        y = npz["y"] if "y" in npz.files else None
        return FoldData(images=npz["images"], aux=aux, y=y)


def load_part(scratch: Path, name: str) -> FoldData:
    return read_npz(scratch / "in" / f"{name}.npz")


def load_submission(path: Path):
    spec = importlib.util.spec_from_file_location("submission", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["submission"] = module
    spec.loader.exec_module(module)
    if not (callable(getattr(module, "make_model", None))
            or callable(getattr(module, "build_keras_model", None))):
        raise TypeError(f"{path.name} defines neither make_model(config) nor "
                        "build_keras_model(input_shape)")
    return module


def make_model(module, config: dict):
    """The submission's model: its own ``make_model``, else its Keras network trained with
    the reference recipe (mounted read-only; the schedule comes in ``keras_recipe``)."""
    if callable(getattr(module, "make_model", None)):
        return module.make_model(config)
    from benchmark.models.cnn import KerasRegressor

    recipe = {k: v for k, v in config.items() if k != "keras_recipe"}
    recipe.update(config.get("keras_recipe") or {})
    return KerasRegressor(recipe, builder=module.build_keras_model)


def predict_with_sigma(model, data: FoldData):
    """The model's predictions and its sigmas (None without): ``predict_mean_and_sigma``,
    else ``predict`` (which may return ``(mean, sigma)``) and ``predict_sigma``."""
    if callable(getattr(model, "predict_mean_and_sigma", None)):
        mean, sigma = model.predict_mean_and_sigma(data)
    else:
        mean, sigma = model.predict(data), None
        if isinstance(mean, tuple) and len(mean) == 2:
            mean, sigma = mean
        elif callable(getattr(model, "predict_sigma", None)):
            sigma = model.predict_sigma(data)
    mean = np.asarray(mean, dtype=np.float64).reshape(-1)
    return mean, None if sigma is None else np.asarray(sigma, dtype=np.float64).reshape(-1)


def has_gradient(model) -> bool:
    """Whether the model gives d log10 M / d counts (the harness's Predictor rule)."""
    return (callable(getattr(model, "gradient", None))
            or callable(getattr(model, "predict_tensor", None))
            or (getattr(model, "keras_model", None) is not None
                and callable(getattr(model, "preprocess", None))))


def gradient(model, data: FoldData, batch_size: int = 64) -> np.ndarray:
    """d log10 M / d counts of every image, float32 (N, npix, npix)."""
    if callable(getattr(model, "gradient", None)):
        return np.asarray(model.gradient(data), dtype=np.float32).reshape(data.images.shape)
    import tensorflow as tf

    out = np.empty_like(data.images, dtype=np.float32)
    for start in range(0, len(data), batch_size):
        sl = slice(start, start + batch_size)
        c = tf.convert_to_tensor(data.images[sl])
        a = data.aux.iloc[sl].reset_index(drop=True)
        with tf.GradientTape() as tape:
            tape.watch(c)
            if callable(getattr(model, "predict_tensor", None)):
                y = model.predict_tensor(c, a)
            else:
                y = model.keras_model(model.preprocess(c, a), training=False)
            total = tf.reduce_sum(y)  # each output depends on its own image only
        out[sl] = tape.gradient(total, c).numpy()
    return out


def model_info(model) -> dict:
    """What the diagnostics need to know of the model: JSON of plain numbers and strings."""
    info = {"has_gradient": has_gradient(model)}
    norm = getattr(model, "normalisation", None)
    if isinstance(norm, dict):
        plain = {str(k): v for k, v in norm.items()
                 if isinstance(v, str) or (isinstance(v, (int, float)) and math.isfinite(v))}
        info["normalisation"] = plain
    return info


def save(path: Path, array: np.ndarray) -> None:
    """Write an array atomically: the harness never sees half a file."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        np.save(fh, array, allow_pickle=False)
    os.replace(tmp, path)


def serve(model, scratch: Path) -> None:
    """Answer the harness's diagnostic requests, in order, until ``req/stop`` appears."""
    requests, responses = scratch / "req", scratch / "resp"
    n = 0
    while True:
        path = requests / f"{n}.npz"
        if not path.exists():
            if (requests / "stop").exists():
                return
            time.sleep(POLL_SECONDS)
            continue
        data = read_npz(path)
        with np.load(path, allow_pickle=False) as npz:
            op = str(npz["op"])
        if op == "predict":
            result, _ = predict_with_sigma(model, data)
        else:
            result = gradient(model, data)
        save(responses / f"{n}.npy", result)
        path.unlink()
        n += 1


def main(module_path: str, scratch: str, mode: str = "") -> int:
    scratch = Path(scratch)
    config = json.loads((scratch / "in" / "config.json").read_text())
    out = scratch / "out"
    out.mkdir(exist_ok=True)
    try:
        module = load_submission(Path(module_path))
        model = make_model(module, config)
        model.fit(load_part(scratch, "train"), load_part(scratch, "val"))
        predictions, sigma = predict_with_sigma(model, load_part(scratch, "test"))
        info = model_info(model)
    except Exception:  # noqa: BLE001 - any failure of the submission is reported, not raised
        traceback.print_exc()
        return EXIT_SUBMISSION_FAILED
    if sigma is not None:
        save(out / "sigma.npy", sigma)
    # Strict JSON: model_info keeps finite numbers only, so a NaN here is a bug and raises.
    (out / "model.json").write_text(json.dumps(info, allow_nan=False))
    save(out / "predictions.npy", predictions)  # last: it tells the harness the fold is done
    if mode == "--serve":
        try:
            serve(model, scratch)
        except Exception:  # noqa: BLE001
            traceback.print_exc()
            return EXIT_SUBMISSION_FAILED
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:4]))
