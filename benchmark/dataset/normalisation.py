"""Training-fold normalisation of images, targets and redshifts: one implementation for all.

The reference CNN (:mod:`benchmark.models.cnn`) and the framework loaders
(:mod:`benchmark.dataset.frameworks`) both take their inputs through these functions, so a
PyTorch, JAX or TensorFlow user sees exactly the numbers the reference network trains on.

* images: ``x = log10(1 + N)`` (counts span ~4 decades from the core to the background; the
  log keeps the outskirts visible and the +1 keeps empty pixels finite), then standardised
  with one scalar mean and standard deviation over all pixels of the *training* images only
  (a per-pixel mean would not be invariant under the rotations the reference augments with;
  statistics from validation or test images would leak).
* target: log10 M500c [Msun] standardised with the training mean and std.
* redshift: standardised with training statistics; a constant redshift (the default
  single-z dataset) gets std 1 so that it is harmless.

The statistics are a JSON-ready dict (what the reference CNN saves as ``normalisation.json``).
"""
from __future__ import annotations

import numpy as np

from benchmark.core.errors import ClusterMassError

__all__ = [
    "TRANSFORM",
    "log_counts",
    "fit_normalisation",
    "safe_std",
    "standardise_images",
    "standardise_redshift",
    "standardise_target",
    "target_from_standardised",
]

#: The image transform, as recorded in the statistics.
TRANSFORM = "log10(1 + counts)"


def log_counts(counts) -> np.ndarray:
    """``log10(1 + N)`` as float32 (N, H, W, 1); negative counts are refused.

    Parameters
    ----------
    counts : array (N, H, W) or (H, W)
        Photon counts.

    Returns
    -------
    ndarray float32 (N, H, W, 1)
    """
    counts = np.asarray(counts, dtype=np.float32)
    if counts.ndim == 2:
        counts = counts[None]
    if counts.ndim != 3:
        raise ClusterMassError(
            f"images have shape {counts.shape}: expected (N, height, width) photon counts."
        )
    if counts.size and float(counts.min()) < 0:
        raise ClusterMassError("images contain negative counts: pass photon counts (>= 0).")
    return np.log10(1.0 + counts)[..., None]


def safe_std(value: float) -> float:
    """``value``, or 1.0 when it is (numerically) zero.

    A constant input (e.g. one redshift for every image) must not divide by zero.
    """
    value = float(value)
    return value if value > 1e-8 else 1.0


def fit_normalisation(images, y, redshift=None) -> dict:
    """Normalisation statistics from *training* images and targets only.

    Parameters
    ----------
    images : array (N, H, W)
        Training photon counts.
    y : array (N,)
        Training log10 M500c [Msun].
    redshift : array (N,), optional
        Training redshifts (redshift variant).

    Returns
    -------
    dict
        JSON-ready: transform, image_log_mean/std, y_mean/std, n_train, fitted_on, and
        redshift_mean/std when ``redshift`` is given.
    """
    x = log_counts(images).astype(np.float64)
    y = np.asarray(y, dtype=np.float64)
    stats = {
        "transform": TRANSFORM,
        "image_log_mean": float(x.mean()),
        "image_log_std": safe_std(x.std()),
        "y_mean": float(y.mean()),
        "y_std": safe_std(y.std()),
        "n_train": int(len(y)),
        "fitted_on": "training folds only",
    }
    if redshift is not None:
        z = np.asarray(redshift, dtype=np.float64)
        stats["redshift_mean"] = float(z.mean())
        stats["redshift_std"] = safe_std(z.std())
    return stats


def standardise_images(counts, stats: dict) -> np.ndarray:
    """Standardised log counts, float32 (N, H, W, 1), with :func:`fit_normalisation`'s statistics."""
    x = log_counts(counts)
    return ((x - stats["image_log_mean"]) / stats["image_log_std"]).astype(np.float32)


def standardise_redshift(aux, stats: dict) -> np.ndarray:
    """Standardised redshift, float32 (N, 1), from anything with a ``"redshift"`` column.

    Raises
    ------
    ClusterMassError
        When the statistics were fitted without redshifts.
    """
    if "redshift_mean" not in stats:
        raise ClusterMassError("the normalisation was fitted without redshifts: pass the "
                               "training redshifts to fit_normalisation (use_redshift=True).")
    z = np.asarray(aux["redshift"], dtype=np.float64)
    return ((z - stats["redshift_mean"]) / stats["redshift_std"]).astype(np.float32)[:, None]


def standardise_target(log10_m500c_msun, stats: dict) -> np.ndarray:
    """Standardised target, float32 (N,), from log10 M500c [Msun]."""
    y = np.asarray(log10_m500c_msun, dtype=np.float64)
    return ((y - stats["y_mean"]) / stats["y_std"]).astype(np.float32)


def target_from_standardised(y_std, stats: dict) -> np.ndarray:
    """log10 M500c [Msun], float64 (N,), from standardised predictions (the inverse)."""
    return np.asarray(y_std, dtype=np.float64) * stats["y_std"] + stats["y_mean"]
