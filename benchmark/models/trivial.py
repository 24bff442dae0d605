"""Trivial entries that keep the metrics honest: ``mean`` and ``total_counts``.

* ``mean``: every image gets the mean log10 M500c of the training folds. Its scatter is
  the spread of the masses themselves, the number any real method must beat by far.
* ``total_counts``: ``log10 M = a + b log10(total counts)`` fitted on the training folds:
  the crudest X-ray mass proxy (no background subtraction, no aperture, core included).
  A method that does not beat it has learned nothing beyond the photon count.
"""
from __future__ import annotations


import numpy as np

from benchmark.core.errors import ClusterMassError
from benchmark.models import read_params, write_params

__all__ = ["TrivialModel", "make_model", "load_model", "KINDS"]

KINDS = ("mean", "total_counts")
PARAMS_FILE = "trivial_params.json"


class TrivialModel:
    """Training-fold mean (``kind="mean"``) or a power law in total counts."""

    def __init__(self, config: dict | None = None):
        kind = (config or {}).get("kind", "mean")
        if kind not in KINDS:
            raise ClusterMassError(f"trivial kind {kind!r} is unknown: use one of {KINDS}.")
        self.kind = kind
        self.params: dict | None = None

    @staticmethod
    def _log_counts(images) -> np.ndarray:
        total = np.asarray(images, dtype=np.float64).reshape(len(images), -1).sum(axis=1)
        return np.log10(np.maximum(total, 1.0))  # an empty image counts as one photon

    def fit(self, train, val=None) -> "TrivialModel":
        """Fit on the training images (``val`` is not used)."""
        if train.y is None:
            raise ClusterMassError("fit needs the training targets (y).")
        y = np.asarray(train.y, dtype=np.float64)
        params = {"kind": self.kind, "n_train": int(len(y)), "y_mean": float(y.mean())}
        if self.kind == "total_counts":
            b, a = np.polyfit(self._log_counts(train.images), y, 1)
            params.update(a=float(a), b=float(b))
        self.params = params
        return self

    def predict(self, data) -> np.ndarray:
        """log10 M500c for every image of ``data``."""
        if self.params is None:
            raise ClusterMassError("the model is not fitted: call fit() or load_model(dir).")
        n = len(data.images)
        if self.kind == "mean":
            return np.full(n, self.params["y_mean"])
        return self.params["a"] + self.params["b"] * self._log_counts(data.images)

    def save(self, directory) -> None:
        """Write trivial_params.json into ``directory``."""
        if self.params is None:
            raise ClusterMassError("the model is not fitted: nothing to save.")
        write_params(directory, PARAMS_FILE, self.params)


def make_model(config: dict | None = None) -> TrivialModel:
    """A trivial model; ``config["kind"]`` is ``"mean"`` or ``"total_counts"``."""
    return TrivialModel(config)


def load_model(directory) -> TrivialModel:
    """Load a model written by :meth:`TrivialModel.save`."""
    params = read_params(directory, PARAMS_FILE, "trivial")
    model = TrivialModel({"kind": params["kind"]})
    model.params = params
    return model
