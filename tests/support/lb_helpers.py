"""Helpers of the leaderboard tests: tiny real Keras predictors, entry files, a catalog-only dataset.

(A uniquely named module, not conftest: several test folders have a conftest.py.)
"""

from __future__ import annotations

import os

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("MPLBACKEND", "Agg")

NPIX = 128


def radius_pix() -> np.ndarray:
    c = (NPIX - 1) / 2
    yy, xx = np.mgrid[0:NPIX, 0:NPIX]
    return np.hypot(yy - c, xx - c)


class KerasPredictor:
    """The harness's Predictor protocol around a real Keras model (counts -> log10 M).

    ``with_gradient=False`` hides the gradient, as for a model without one.
    """

    def __init__(self, model, with_gradient: bool = True):
        self.model = model
        self.with_gradient = with_gradient

    def predict(self, counts, aux):
        x = np.asarray(counts, dtype=np.float32)[..., None]
        return np.asarray(self.model(x, training=False)).reshape(-1)

    def gradient(self, counts, aux):
        if not self.with_gradient:
            return None
        import tensorflow as tf

        x = tf.convert_to_tensor(np.asarray(counts, dtype=np.float32)[..., None])
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = tf.reduce_sum(self.model(x, training=False))
        return tape.gradient(y, x).numpy()[..., 0]


def masked_log_counts_model(mask: np.ndarray):
    """Keras model log10 M = 13 + log10(1 + sum(counts * mask)): only masked pixels matter."""
    import keras

    inp = keras.Input((NPIX, NPIX, 1))
    weights = keras.ops.convert_to_tensor(mask.astype("float32")[None, :, :, None])
    s = keras.ops.sum(inp * weights, axis=(1, 2, 3))
    out = 13.0 + keras.ops.log(1.0 + s) / np.log(10.0)
    return keras.Model(inp, out)


def masked_input_model(mask: np.ndarray):
    """Keras network on the standardised input x: Dense(1)(mean of x over the masked pixels).

    The Dense layer starts at weight 1, bias 0, so the output is exactly the masked mean of x;
    it gives the network weights for the random-weights control to re-initialise.
    """
    import keras

    inp = keras.Input((NPIX, NPIX, 1))
    weights = keras.ops.convert_to_tensor(mask.astype("float32")[None, :, :, None] / float(mask.sum()))
    s = keras.ops.sum(inp * weights, axis=(1, 2))  # (N, 1)
    dense = keras.layers.Dense(1)
    out = dense(s)
    dense.set_weights([np.ones((1, 1), "float32"), np.zeros(1, "float32")])
    return keras.Model(inp, out)


def harness_predictor(mask: np.ndarray, log_mean: float = 0.4, log_std: float = 0.5):
    """A harness fold model like the reference CNN's, built to use only the pixels in ``mask``.

    A real :class:`benchmark.models.cnn.KerasRegressor` (normalisation: standardised
    log10(1 + N) with ``log_mean``/``log_std``; target mean 13, std 1) around
    :func:`masked_input_model`, behind the harness's :class:`benchmark.training.Predictor`:
    log10 M = 13 + mean over the mask of (log10(1 + N) - log_mean) / log_std.
    """
    from benchmark.models.cnn import KerasRegressor
    from benchmark.training import Predictor

    model = KerasRegressor()
    model.normalisation = {"transform": "log10(1 + counts)", "image_log_mean": log_mean,
                           "image_log_std": log_std, "y_mean": 13.0, "y_std": 1.0, "use_redshift": False}
    model.keras_model = masked_input_model(mask)
    return Predictor(model, {"truth_columns": []})


def tiny_cnn(seed: int = 0):
    """A small conv net on log counts (a real trainable model with gradients)."""
    import keras

    keras.utils.set_random_seed(seed)
    inp = keras.Input((NPIX, NPIX, 1))
    x = keras.layers.Lambda(lambda t: keras.ops.log1p(t))(inp)
    # elu, not relu: no dead units, so every image has a non-zero gradient.
    x = keras.layers.Conv2D(4, 5, strides=4, activation="elu")(x)
    x = keras.layers.MaxPooling2D(4)(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(8, activation="elu")(x)
    out = keras.layers.Dense(1)(x)
    return keras.Model(inp, out)


def write_entries(directory, dataset, specs, n_boot: int = 50, seed: int = 0):
    """Write entry files + predictions for ``specs`` = [(slug, name, noise_dex, extra)].

    Predictions are the truth plus Gaussian noise; the metrics come from the harness's
    :func:`benchmark.metrics.score` (computed once per noise level) and the entries from
    :func:`benchmark.entries.make_entry` (validated). ``extra`` may hold ``metadata``,
    ``diagnostics``, ``kind``; any other key is set on the entry after validation.
    """
    import json
    from pathlib import Path

    import pandas as pd

    from benchmark.entries import make_entry, write_entry, write_predictions
    from benchmark.metrics import score

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    cat = dataset.catalog
    cache = {}
    for slug, name, noise, extra in specs:
        extra = dict(extra or {})
        if noise not in cache:
            rng = np.random.default_rng(seed + int(noise * 1000))
            pred = pd.DataFrame({"image_id": cat["image_id"], "seed": 0,
                                 "log10_m500c_pred": cat["log10_m500c"] + rng.normal(0.0, noise, len(cat))})
            cache[noise] = (pred, score(pred, cat, dataset.splits, n_boot=n_boot))
        pred, metrics = cache[noise]
        meta = {"authors": ["A. Tester"], **extra.pop("metadata", {})}
        entry = make_entry(name, extra.pop("kind", "submission"), metrics, dataset, metadata=meta, slug=slug,
                           diagnostics=extra.pop("diagnostics", None), created="2026-11-25T10:00:00Z")
        write_predictions(directory / entry.predictions_file, pred)
        if extra:
            # Deliberately off-schema edits (tests of the renderer's own defences).
            (directory / f"{slug}.json").write_text(json.dumps({**entry.to_json(), **extra}))
        else:
            write_entry(directory / f"{slug}.json", entry)
    return directory


class CatalogOnlyDataset:
    """The parts of a ClusterMassDataset that entries and the renderer read (no images).

    Lets the renderer's benchmark run at the study's size (329 clusters x 24 views) without
    writing 7,896 images.
    """

    def __init__(self, n_clusters: int = 329, n_epochs: int = 8, seed: int = 0):
        import pandas as pd

        from benchmark.dataset.splits import make_splits

        rng = np.random.default_rng(seed)
        m0 = rng.uniform(14.0, 15.2, n_clusters)
        rows = [{"image_id": f"c{c:04d}_e{e}_{p}", "cluster_id": c, "epoch": e, "projection": p,
                 "redshift": 0.1 + 0.02 * e, "log10_m500c": m0[c] - 0.04 * e,
                 "cool_core": int(c % 3 == 0), "merger": int(e % 4 == 1)}
                for c in range(n_clusters) for e in range(n_epochs) for p in "xyz"]
        self.catalog = pd.DataFrame(rows)
        self.splits = make_splits(np.arange(n_clusters), m0, n_folds=10, seed=seed)
        self.catalog["fold"] = [self.splits.fold_of(c) for c in self.catalog["cluster_id"]]
        self.version = "1.0.0-bench"
        self.card = {"name": "bench", "version": self.version, "splits_sha256": self.splits.sha256(),
                     "n_images": len(self.catalog), "source": "synthetic"}


def diagnostics_dataset(tmp_path_factory):
    """20 clusters x 2 epochs (seed 3): small enough for gradient ascent on every fold."""
    from benchmark.dataset.loader import ClusterMassDataset
    from fakes import write_fake_dataset

    root = write_fake_dataset(tmp_path_factory.mktemp("fake") / "data", n_clusters=20,
                              n_epochs=2, seed=3)
    return ClusterMassDataset(root)


def masked_predictors() -> dict:
    """Predictors by name: 'outer' (only R >= 12 pix), 'core' (only R < 2 pix), 'total'."""
    r = radius_pix()
    return {
        "outer": KerasPredictor(masked_log_counts_model(r >= 12)),
        "core": KerasPredictor(masked_log_counts_model(r < 2)),
        "total": KerasPredictor(masked_log_counts_model(np.ones_like(r, dtype=bool))),
    }
