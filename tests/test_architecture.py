"""The one-way house (ARCHITECTURE.md), enforced.

- ``lint-imports`` checks the import-linter contracts of pyproject.toml: each layer imports
  only the layers below it; generation and the harness do not know each other; rendering
  reads entry files only.
- Library code (everything but the CLI) logs instead of printing, reads folders and
  ``CLUSTERMASS_*`` variables through :mod:`benchmark.core.settings`, and never guesses a
  folder from its own file's location.
"""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LIBRARY = ("benchmark", "pipeline", "leaderboard")
SETTINGS = ROOT / "benchmark" / "core" / "settings.py"


def library_modules():
    return sorted(p for pkg in LIBRARY for p in (ROOT / pkg).rglob("*.py"))


def _calls(tree, predicate):
    return [node.lineno for node in ast.walk(tree) if isinstance(node, ast.Call)
            and predicate(node.func)]


def test_import_contracts_are_kept():
    lint = Path(sys.executable).with_name("lint-imports")
    res = subprocess.run([str(lint), "--no-cache"], cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "0 broken" in res.stdout and "kept" in res.stdout


def test_a_broken_layer_is_caught(tmp_path):
    """The contracts are live: an upward import in a copy of the tree breaks them."""
    import shutil

    for name in ("pyproject.toml", *LIBRARY, "clustermass"):
        src = ROOT / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, tmp_path / name)
    bad = tmp_path / "benchmark" / "core" / "errors.py"
    bad.write_text(bad.read_text() + "\nimport pipeline.generate  # noqa\n")
    lint = Path(sys.executable).with_name("lint-imports")
    res = subprocess.run([str(lint), "--no-cache"], cwd=tmp_path, capture_output=True, text=True,
                         env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"})
    assert res.returncode != 0
    assert "benchmark.core.errors -> pipeline.generate" in res.stdout


@pytest.mark.parametrize("path", library_modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_library_code_logs_instead_of_printing(path):
    tree = ast.parse(path.read_text(), filename=str(path))
    prints = _calls(tree, lambda f: isinstance(f, ast.Name) and f.id == "print")
    assert not prints, f"{path.relative_to(ROOT)} prints at lines {prints}: use a module logger"


@pytest.mark.parametrize("path", library_modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_folder_guessing_from_file_location(path):
    tree = ast.parse(path.read_text(), filename=str(path))
    guesses = [node.lineno for node in ast.walk(tree) if isinstance(node, ast.Attribute)
               and node.attr == "parents" and "__file__" in ast.unparse(node.value)]
    assert not guesses, (f"{path.relative_to(ROOT)} guesses folders from __file__ at lines "
                         f"{guesses}: use benchmark.core.settings")


@pytest.mark.parametrize("path", [p for p in library_modules() if p != SETTINGS],
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_clustermass_variables_are_read_in_settings_only(path):
    tree = ast.parse(path.read_text(), filename=str(path))
    reads = [node.lineno for node in ast.walk(tree)
             if isinstance(node, (ast.Call, ast.Subscript))
             and "os.environ" in ast.unparse(node)
             and "CLUSTERMASS_" in ast.unparse(node)
             and not (isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Store))]
    assert not reads, (f"{path.relative_to(ROOT)} reads CLUSTERMASS_* at lines {reads}: "
                       "use benchmark.core.settings.current()")
