"""Fixtures of the leaderboard tests: a tiny fake dataset and tiny real Keras predictors."""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("MPLBACKEND", "Agg")

from lb_helpers import KerasPredictor, masked_log_counts_model, radius_pix  # noqa: E402


@pytest.fixture(scope="session")
def fake_dataset(tmp_path_factory):
    """A small valid dataset on disk (tests/support/fakes.py), opened."""
    from benchmark.dataset.loader import ClusterMassDataset
    from fakes import write_fake_dataset

    root = write_fake_dataset(tmp_path_factory.mktemp("fake") / "data", n_clusters=20, n_epochs=2, seed=3)
    return ClusterMassDataset(root)


@pytest.fixture(scope="session")
def predictors():
    """Predictors by name: 'outer' (only R >= 12 pix), 'core' (only R < 2 pix), 'total'."""
    r = radius_pix()
    return {
        "outer": KerasPredictor(masked_log_counts_model(r >= 12)),
        "core": KerasPredictor(masked_log_counts_model(r < 2)),
        "total": KerasPredictor(masked_log_counts_model(np.ones_like(r, dtype=bool))),
    }
