"""Fixtures of the release tests: real datalad + git-annex from the venv, tiny real datasets.

Datasets are made by ``datalad run`` of tests/support/fake_generate.py (write_fake_dataset,
10 clusters) through :func:`benchmark.dataset.release.ensure_dataset`, once per session, and
released once to a RIA store in a temporary folder; tests that damage a dataset work on
their own clone.
"""
from __future__ import annotations

import logging

import pytest

from datalad_fixtures import FAKE_CMD, PRESET, datalad_env  # noqa: F401 (a fixture)


@pytest.fixture(scope="session")
def generated(tmp_path_factory):
    """A dataset regenerated with ``datalad run`` (the maintainer's dataset); do not modify."""
    from benchmark.dataset.release import ensure_dataset

    root = tmp_path_factory.mktemp("maintainer") / "data" / PRESET
    ensure_dataset(PRESET, root, generate_cmd=FAKE_CMD)
    return root


@pytest.fixture(scope="session")
def store(tmp_path_factory):
    return tmp_path_factory.mktemp("ria") / "store"


@pytest.fixture(scope="session")
def released(generated, store):
    """Clone URL of ``generated`` released as v1.0 to ``store``."""
    from benchmark.dataset.release import release

    return release(generated, store, "v1.0", preset=PRESET)


@pytest.fixture(scope="session")
def fetched(released, tmp_path_factory):
    """``released`` fetched by ``ensure_dataset(source=...)`` (make data with DATASET_SOURCE); read only."""
    from benchmark.dataset.release import ensure_dataset

    root = tmp_path_factory.mktemp("user") / "data" / PRESET
    ensure_dataset(PRESET, root, source=released)
    return root


@pytest.fixture(scope="session")
def regenerated_copy(released, tmp_path_factory):
    """Another regeneration of the released content: same files, another dataset id; read only."""
    from benchmark.dataset.release import ensure_dataset

    root = tmp_path_factory.mktemp("other-user") / "data" / PRESET
    ensure_dataset(PRESET, root, generate_cmd=FAKE_CMD)
    return root


@pytest.fixture
def release_log(caplog, monkeypatch):
    """The release module's log records, also after a CLI call set up the project's logging."""
    project = logging.getLogger("benchmark")
    monkeypatch.setattr(project, "propagate", True)
    monkeypatch.setattr(project, "handlers", [])
    caplog.set_level(logging.INFO, logger="benchmark.dataset.release")
    return caplog


@pytest.fixture(scope="session")
def archived(generated, released, store, tmp_path_factory):
    """The plain archive of release v1.0 (``make release`` writes it beside the store)."""
    from benchmark.dataset.release import release

    folder = tmp_path_factory.mktemp("archives")
    release(generated, store, "v1.0", preset=PRESET, archive_dir=folder)
    return folder / "clustermass-fake-v1.0.tar.gz"
