"""Writing files so that an interrupted run never leaves half of one, and strict JSON.

Every file the project writes (images, cards, splits, entries, fitted models, logs of record)
goes through :func:`atomic_path` or one of the helpers built on it: the bytes are written to
a temporary sibling, flushed, then moved over the target in one ``os.replace``.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from benchmark.core.errors import ClusterMassError

__all__ = ["atomic_path", "atomic_directory", "write_bytes", "write_text", "write_json",
           "json_safe", "dumps_json", "nonfinite_paths", "refuse_nonfinite"]


@contextlib.contextmanager
def atomic_path(path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; move it over ``path`` only if the block succeeds.

    The temporary name starts with a dot and ends in ``.tmp`` so that globs for the real files
    never match it, and carries the process id so that concurrent writers never share it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}.",
                                    suffix=".tmp")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


@contextlib.contextmanager
def atomic_directory(path) -> Iterator[Path]:
    """Yield a temporary folder beside ``path``; it replaces ``path`` only if the block succeeds.

    An existing ``path`` is removed first, after the new folder is complete.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}.",
                                suffix=".tmp"))
    try:
        yield tmp
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def write_bytes(path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically, flushed to disk; return ``path``."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
    return Path(path)


def write_text(path, text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically; return ``path``."""
    return write_bytes(path, text.encode("utf-8"))


def json_safe(value: Any, default=None) -> Any:
    """Plain JSON values from NumPy scalars, arrays, tuples, paths; NaN and inf become None.

    Strict JSON (RFC 8259) has no NaN: browsers and most other languages refuse it, so a
    missing or undefined number is written as ``null``.

    Parameters
    ----------
    value
        The data to convert.
    default : callable, optional
        Turns a value that is not JSON data into one (as ``json.dumps``'s ``default``, e.g.
        ``str``); without it such a value raises ``TypeError``.
    """
    if isinstance(value, dict):
        return {str(k): json_safe(v, default) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v, default) for v in value]
    if isinstance(value, np.ndarray):
        return json_safe(value.tolist(), default)
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        value = float(value)
        return value if math.isfinite(value) else None
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if value is None or isinstance(value, str):
        return value
    if default is not None:
        return json_safe(default(value))
    raise TypeError(f"{type(value).__name__} is not JSON data: {value!r}")


def nonfinite_paths(value: Any, where: str = "") -> list[str]:
    """Where ``value`` holds a NaN or an infinity, as ``key.key[index]`` paths.

    Parameters
    ----------
    value
        Nested dicts, lists, tuples, arrays and numbers.
    where
        The path of ``value`` itself (the prefix of every path returned).

    Returns
    -------
    list of str
        One path per non-finite number; empty when every number is finite.
    """
    if isinstance(value, dict):
        return [p for k, v in value.items()
                for p in nonfinite_paths(v, f"{where}.{k}" if where else str(k))]
    if isinstance(value, (list, tuple, np.ndarray)):
        return [p for i, v in enumerate(value) for p in nonfinite_paths(v, f"{where}[{i}]")]
    if isinstance(value, (float, np.floating)) and not math.isfinite(value):
        return [where or "(the value itself)"]
    return []


def refuse_nonfinite(value: Any, what: str) -> None:
    """Raise one clear error when ``value`` holds a NaN or an infinity.

    For files where a non-finite number means a failed computation, not a missing value:
    writing it as ``null`` would hide the failure, and strict JSON cannot carry NaN.

    Raises
    ------
    ClusterMassError
        Naming ``what`` and the paths of the non-finite numbers.
    """
    paths = nonfinite_paths(value)
    if paths:
        raise ClusterMassError(
            f"{what} holds NaN or infinite numbers at {', '.join(paths[:10])}: strict JSON "
            "cannot carry them and they mean a failed computation; fix it and re-run.")


def dumps_json(value: Any, *, indent: int | None = 2, sort_keys: bool = True,
               default=None) -> str:
    """Strict JSON text of ``value`` (see :func:`json_safe`, also for ``default``),
    newline-terminated."""
    return json.dumps(json_safe(value, default), indent=indent, sort_keys=sort_keys,
                      allow_nan=False) + "\n"


def write_json(path, value: Any, *, indent: int | None = 2, sort_keys: bool = True,
               default=None) -> Path:
    """Write ``value`` as strict JSON to ``path`` atomically; return ``path``."""
    return write_text(path, dumps_json(value, indent=indent, sort_keys=sort_keys,
                                       default=default))
