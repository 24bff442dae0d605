"""``datalad rerun`` of the generation step reproduces byte-identical files (ci preset)."""
from __future__ import annotations

import subprocess

import pytest

from benchmark.dataset.release import ensure_dataset


def git(path, *args) -> str:
    return subprocess.run(["git", "-C", str(path), *args], capture_output=True, text=True,
                          check=True).stdout.strip()


@pytest.mark.slow
def test_rerun_of_generation_is_byte_identical(tmp_path):
    root = tmp_path / "data" / "ci"
    ensure_dataset("ci", root, expected_path=tmp_path / "none.json")  # the real `clustermass generate`
    run_commit = git(root, "rev-parse", "HEAD")
    assert git(root, "log", "-1", "--format=%s").startswith("[DATALAD RUNCMD] Generate")
    # Replay the recorded command on the state before it, on a branch of its own.
    subprocess.run(["datalad", "rerun", "--onto", f"{run_commit}~1", "--branch", "rerun-check", run_commit],
                   cwd=root, check=True, capture_output=True, text=True)
    assert git(root, "rev-parse", "HEAD") != run_commit  # it did run again
    # Same tree = same git blobs and same SHA256E annex keys = byte-identical files.
    changed = git(root, "diff", "--name-only", run_commit, "rerun-check")
    assert changed == "", f"rerun produced different files: {changed}"
