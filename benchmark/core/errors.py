"""Exceptions of the clustermass benchmark.

Every piece of bad input (a dataset that is incomplete, a splits file whose checksum does
not match, a malformed submission, an invalid entry file) ends in one
:class:`ClusterMassError` that names the problem and the fix. It subclasses
:class:`ValueError`, so callers that already catch ``ValueError`` keep working.
"""

from __future__ import annotations

__all__ = [
    "ClusterMassError",
    "DatasetError",
    "SplitsError",
    "SubmissionError",
    "EntryError",
    "format_problems",
]


class ClusterMassError(ValueError):
    """Bad input to the benchmark; the message names the problem and how to fix it."""


class DatasetError(ClusterMassError):
    """A dataset on disk is missing, incomplete, not fetched or inconsistent."""


class SplitsError(ClusterMassError):
    """A splits file is malformed, does not match its checksum, or leaks clusters."""


class SubmissionError(ClusterMassError):
    """A submitted predictions file or its metadata is invalid."""


class EntryError(ClusterMassError):
    """A leaderboard entry file does not follow the entry schema."""


def format_problems(header: str, problems: list[str], fix: str | None = None) -> str:
    """Join several problems into one readable multi-line message.

    Parameters
    ----------
    header : str
        First line, e.g. ``"submission has 3 problems"``.
    problems : list of str
        One line per problem.
    fix : str, optional
        Closing line saying how to fix them.

    Returns
    -------
    str
    """
    lines = [header + ":"] + [f"  - {p}" for p in problems]
    if fix:
        lines.append(fix)
    return "\n".join(lines)


def head_list(items, n: int = 10) -> str:
    """The first ``n`` items joined by commas, then how many more: problems name a few
    offenders, never thousands of ids."""
    items = list(items)
    shown = ", ".join(str(i) for i in items[:n])
    return shown + (f", ... and {len(items) - n} more" if len(items) > n else "")
