"""Fixtures of the leaderboard tests: a tiny fake dataset and tiny real Keras predictors."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("MPLBACKEND", "Agg")

from lb_helpers import diagnostics_dataset, masked_predictors  # noqa: E402


@pytest.fixture(scope="session")
def fake_dataset(tmp_path_factory):
    """A small valid dataset on disk (tests/support/fakes.py), opened."""
    return diagnostics_dataset(tmp_path_factory)


@pytest.fixture(scope="session")
def predictors():
    return masked_predictors()
