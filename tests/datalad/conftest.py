"""Fixtures of the DataLad tests: real datalad + git-annex from the venv, tiny real datasets.

Datasets are made by ``datalad run`` of tests/datalad/fake_generate.py (write_fake_dataset,
10 clusters) through :func:`benchmark.dataset.release.ensure_dataset`, once per session, and
released once to a RIA store in a temporary folder; tests that damage a dataset work on
their own clone.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from _datalad_helpers import FAKE_CMD, PRESET


@pytest.fixture(scope="session", autouse=True)
def datalad_env(tmp_path_factory):
    """Identity, PATH (git-annex) and an expected-version file of the session's own."""
    tmp = tmp_path_factory.mktemp("env")
    values = {
        "PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", ""),
        "GIT_AUTHOR_NAME": "clustermass tests", "GIT_AUTHOR_EMAIL": "tests@clustermass.invalid",
        "GIT_COMMITTER_NAME": "clustermass tests", "GIT_COMMITTER_EMAIL": "tests@clustermass.invalid",
        # never touch the project's datalad/expected_version.json from a test
        "CLUSTERMASS_EXPECTED_VERSION": str(tmp / "expected_version.json"),
        "CLUSTERMASS_BUILD": str(tmp / "build"),
    }
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    yield values
    for key, value in old.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


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
