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

__all__ = ["atomic_path", "atomic_directory", "write_bytes", "write_text", "write_json",
           "json_safe", "dumps_json"]


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


def json_safe(value: Any) -> Any:
    """Plain JSON values from NumPy scalars, arrays, tuples, paths; NaN and inf become None.

    Strict JSON (RFC 8259) has no NaN: browsers and most other languages refuse it, so a
    missing or undefined number is written as ``null``.
    """
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, np.ndarray):
        return json_safe(value.tolist())
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
    raise TypeError(f"{type(value).__name__} is not JSON data: {value!r}")


def dumps_json(value: Any, *, indent: int | None = 2, sort_keys: bool = True) -> str:
    """Strict JSON text of ``value`` (see :func:`json_safe`), newline-terminated."""
    return json.dumps(json_safe(value), indent=indent, sort_keys=sort_keys, allow_nan=False) + "\n"


def write_json(path, value: Any, *, indent: int | None = 2, sort_keys: bool = True) -> Path:
    """Write ``value`` as strict JSON to ``path`` atomically; return ``path``."""
    return write_text(path, dumps_json(value, indent=indent, sort_keys=sort_keys))
