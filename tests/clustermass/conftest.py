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
