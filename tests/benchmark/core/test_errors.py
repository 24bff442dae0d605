"""The error hierarchy: one ValueError subclass for all bad input."""

from __future__ import annotations

import pytest

from benchmark.core.errors import (ClusterMassError, DatasetError, EntryError, SplitsError,
                                   SubmissionError, format_problems)


@pytest.mark.parametrize("cls", [DatasetError, SplitsError, SubmissionError, EntryError])
def test_every_error_is_a_clustermass_error_and_a_value_error(cls):
    assert issubclass(cls, ClusterMassError)
    assert issubclass(cls, ValueError)


@pytest.mark.parametrize("cls", [DatasetError, SplitsError, SubmissionError, EntryError])
def test_callers_catching_clustermass_error_catch_each_kind(cls):
    def refuse():
        raise cls("bad input: fix it")

    with pytest.raises(ClusterMassError, match="bad input: fix it") as info:
        refuse()
    assert type(info.value) is cls


def test_kinds_are_distinct():
    kinds = [DatasetError, SplitsError, SubmissionError, EntryError]
    for a in kinds:
        for b in kinds:
            assert issubclass(a, b) == (a is b)


def test_format_problems():
    msg = format_problems("2 problems", ["a", "b"], "Fix it.")
    assert msg == "2 problems:\n  - a\n  - b\nFix it."


def test_format_problems_without_fix():
    assert format_problems("1 problem", ["a"]) == "1 problem:\n  - a"
