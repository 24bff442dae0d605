"""The error hierarchy: one ValueError subclass for all bad input."""

from __future__ import annotations

import pytest

from benchmark.core.errors import (ClusterMassError, DatasetError, EntryError, SplitsError,
                              SubmissionError, format_problems)


@pytest.mark.parametrize("cls", [DatasetError, SplitsError, SubmissionError, EntryError])
def test_hierarchy(cls):
    assert issubclass(cls, ClusterMassError) and issubclass(cls, ValueError)
    with pytest.raises(ValueError):
        raise cls("x")


def test_format_problems():
    msg = format_problems("2 problems", ["a", "b"], "Fix it.")
    assert msg == "2 problems:\n  - a\n  - b\nFix it."
