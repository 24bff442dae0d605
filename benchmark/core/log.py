"""Logging: library modules log through ``logging.getLogger(__name__)``; the CLI shows it.

Library code never prints: a caller that embeds the pipeline or the harness decides what to
show. The ``clustermass`` command calls :func:`setup_logging` once, which sends the project's
records to standard error as plain lines (``INFO`` without a prefix, others with their level).
"""
from __future__ import annotations

import logging
import sys

__all__ = ["setup_logging", "PROJECT_LOGGERS"]

#: The top-level loggers of the project's packages.
PROJECT_LOGGERS = ("benchmark", "pipeline", "leaderboard", "clustermass")


class _PlainFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        message = super().format(record)
        return message if record.levelno == logging.INFO else f"{record.levelname.lower()}: {message}"


def setup_logging(level: int = logging.INFO, stream=None) -> None:
    """Show the project's log records on ``stream`` (standard error by default)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(_PlainFormatter("%(message)s"))
    for name in PROJECT_LOGGERS:
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(level)
        logger.propagate = False
