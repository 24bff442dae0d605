"""Atomic writes and strict JSON (benchmark.core.io)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from benchmark.core.errors import ClusterMassError
from benchmark.core.io import (atomic_directory, atomic_path, dumps_json, json_safe,
                               nonfinite_paths, refuse_nonfinite, write_bytes, write_json,
                               write_text)


def test_write_bytes_and_text_create_parents(tmp_path):
    assert write_bytes(tmp_path / "a" / "b.bin", b"\x00\x01").read_bytes() == b"\x00\x01"
    assert write_text(tmp_path / "c.txt", "é\n").read_bytes() == "é\n".encode()


def test_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = write_text(tmp_path / "card.json", "old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["card.json"]


def test_temporary_is_a_hidden_sibling(tmp_path):
    with atomic_path(tmp_path / "x.h5") as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(".x.h5.") and tmp.suffix == ".tmp"
        tmp.write_bytes(b"1")
    assert (tmp_path / "x.h5").read_bytes() == b"1"


def test_atomic_directory_replaces_only_when_complete(tmp_path):
    target = tmp_path / "fold_0"
    with atomic_directory(target) as tmp:
        (tmp / "model.json").write_text("1")
    with pytest.raises(RuntimeError):
        with atomic_directory(target) as tmp:
            (tmp / "model.json").write_text("2")
            raise RuntimeError("killed")
    assert (target / "model.json").read_text() == "1"
    assert [p.name for p in tmp_path.iterdir()] == ["fold_0"]


def test_json_safe_makes_numpy_plain_and_nan_null():
    value = {1: np.float32(0.5), "a": np.arange(3), "b": (np.int64(2), np.bool_(True)),
             "c": float("nan"), "d": -math.inf, "p": Path("x/y"), "n": None}
    assert json_safe(value) == {"1": 0.5, "a": [0, 1, 2], "b": [2, True], "c": None,
                                "d": None, "p": "x/y", "n": None}


def test_json_safe_refuses_unknown_objects():
    with pytest.raises(TypeError, match="object is not JSON data"):
        json_safe({"x": object()})


def test_write_json_is_strict_sorted_and_newline_terminated(tmp_path):
    path = write_json(tmp_path / "e.json", {"b": np.nan, "a": [np.float64(1.5)]})
    text = path.read_text()
    assert text == '{\n  "a": [\n    1.5\n  ],\n  "b": null\n}\n'
    assert json.loads(text) == {"a": [1.5], "b": None}
    assert dumps_json({"b": 1, "a": 2}, indent=None, sort_keys=False) == '{"b": 1, "a": 2}\n'


def test_json_safe_default_turns_foreign_values_into_json():
    assert json_safe({"x": [object]}, default=lambda v: v.__name__) == {"x": ["object"]}
    assert dumps_json({"t": complex(1, 2), "n": math.nan}, indent=None, default=str) == \
        '{"n": null, "t": "(1+2j)"}\n'


def test_nonfinite_paths_name_every_nan_and_infinity():
    value = {"a": {"b": [1.0, math.nan]}, "c": np.array([np.inf, 2.0]), "d": "nan", "e": 3}
    assert nonfinite_paths(value) == ["a.b[1]", "c[0]"]
    assert nonfinite_paths({"a": [1, 2.5], "b": None}) == []
    assert nonfinite_paths(math.nan) == ["(the value itself)"]


def test_refuse_nonfinite_names_what_and_where():
    refuse_nonfinite({"a": 1.0}, "the fit")
    with pytest.raises(ClusterMassError, match=r"the fit holds NaN or infinite numbers at a\[0\]"):
        refuse_nonfinite({"a": [np.float32("nan")]}, "the fit")
