"""What the DataLad tests share: the stand-in generation command and an isolated environment.

A conftest imports :func:`datalad_env` to make it a fixture of its folder's tests.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

#: Stand-in generation command: write_fake_dataset with 10 clusters into the current folder.
FAKE_CMD = f"{sys.executable} {Path(__file__).resolve().parent / 'fake_generate.py'} . 10"
PRESET = "ci"


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
