"""A tiny real dataset, generated once per session and shared by the generation and report tests."""
from pathlib import Path

import pytest

from pipeline.config import load_preset
from pipeline.generate import generate

#: the ``ci`` preset shrunk to 10 clusters x 1 epoch x 3 projections (30 images, seconds)
SMALL = {"population": {"n_clusters": 10, "n_epochs": 1}}


@pytest.fixture(scope="session")
def serial_dataset(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("serial")
    generate(load_preset("ci", **SMALL), out, workers=1, progress=False)
    return out
