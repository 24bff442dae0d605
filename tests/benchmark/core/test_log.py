"""The CLI's log set-up shows library records as plain lines (benchmark.core.log)."""

from __future__ import annotations

import io
import logging

from benchmark.core.log import PROJECT_LOGGERS, setup_logging


def test_library_records_reach_the_stream_plainly():
    stream = io.StringIO()
    setup_logging(logging.INFO, stream)
    try:
        logging.getLogger("pipeline.generate").info("wrote %d clusters", 3)
        logging.getLogger("benchmark.training").warning("fold %d resumed", 2)
        logging.getLogger("benchmark.training").debug("hidden")
        logging.getLogger("somebody.else").info("not ours")
    finally:
        for name in PROJECT_LOGGERS:
            logging.getLogger(name).handlers.clear()
            logging.getLogger(name).propagate = True
    assert stream.getvalue() == "wrote 3 clusters\nwarning: fold 2 resumed\n"
