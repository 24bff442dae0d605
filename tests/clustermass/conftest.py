"""The CLI sets up the project's logging on each call; each test gets the state it found back."""
import logging

import pytest

from benchmark.core.log import PROJECT_LOGGERS


@pytest.fixture(autouse=True)
def _restore_project_logging():
    loggers = [logging.getLogger(name) for name in PROJECT_LOGGERS]
    saved = [(lg.handlers[:], lg.level, lg.propagate) for lg in loggers]
    yield
    for lg, (handlers, level, propagate) in zip(loggers, saved):
        lg.handlers[:], lg.level, lg.propagate = handlers, level, propagate


@pytest.fixture(autouse=True)
def _own_roots(tmp_path_factory, monkeypatch):
    """Every CLI test gets its own data, results and expected-version roots (settings), so
    what this checkout holds (a local `make data`, results, or the versions `make release`
    records in datalad/expected_version.json) never changes a test's outcome. A test that
    needs other roots sets them itself."""
    own = tmp_path_factory.mktemp("roots")
    monkeypatch.setenv("CLUSTERMASS_DATA", str(own / "data"))
    monkeypatch.setenv("CLUSTERMASS_RESULTS", str(own / "results"))
    monkeypatch.setenv("CLUSTERMASS_EXPECTED_VERSION", str(own / "expected_version.json"))
