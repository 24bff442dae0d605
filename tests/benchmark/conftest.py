"""Shared fixtures of the benchmark tests: tiny fake datasets written by the tests."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest

from benchmark.dataset.loader import ClusterMassDataset
from fakes import write_fake_dataset
from benchmark.dataset.splits import make_splits


@pytest.fixture(scope="session")
def fake_dataset_root(tmp_path_factory):
    """A read-only-by-convention fake dataset (30 clusters x 2 epochs x 3 views)."""
    return write_fake_dataset(tmp_path_factory.mktemp("fake") / "data", n_clusters=30,
                              n_epochs=2, seed=0)


@pytest.fixture(scope="session")
def fake_dataset(fake_dataset_root):
    """The opened fake dataset (do not modify files under its root)."""
    return ClusterMassDataset(fake_dataset_root)


@pytest.fixture
def fake_dataset_copy(fake_dataset_root, tmp_path):
    """A private copy of the fake dataset that a test may damage."""
    dst = tmp_path / "data"
    shutil.copytree(fake_dataset_root, dst)
    return dst


def _make_catalog(n_clusters=329, n_epochs=8, seed=0, z_values=(0.17,)):
    """A catalog with the full study's shape (no image files are needed to score)."""
    rng = np.random.default_rng(seed)
    m0 = rng.uniform(13.75, 15.2, n_clusters)
    cc = rng.random(n_clusters) < 0.4
    rows = []
    for c in range(n_clusters):
        for e in range(n_epochs):
            merger = int(rng.random() < 0.25)
            z = z_values[(c + e) % len(z_values)]
            for p in "xyz":
                rows.append((f"c{c:04d}_e{e}_{p}", c, e, m0[c] - 0.06 * e, z, int(cc[c]), merger))
    cat = pd.DataFrame(rows, columns=["image_id", "cluster_id", "epoch", "log10_m500c",
                                      "redshift", "cool_core", "merger"])
    splits = make_splits(np.arange(n_clusters), m0)
    cat["fold"] = splits.folds_of(cat["cluster_id"])
    return cat, splits


@pytest.fixture(scope="session")
def make_catalog():
    """Factory of in-memory catalogs (+ splits) with the study's shape, no image files."""
    return _make_catalog
