"""The ``datalad/`` folder: the ``cfg_clustermass`` procedure and ``record_version.py``."""
from __future__ import annotations

import json
import os
import subprocess
import sys

from benchmark.core import settings
from benchmark.dataset.release import (content_fingerprint, create_dataset, ensure_dataset,
                                       procedures_dir)
from datalad_fixtures import FAKE_CMD, PRESET


def git(path, *args) -> str:
    return subprocess.run(["git", "-C", str(path), *args], capture_output=True, text=True,
                          check=True).stdout.strip()


def test_procedure_is_discoverable():
    assert procedures_dir() == settings.current().source_dir / "datalad" / "procedures"
    out = subprocess.run(
        ["datalad", "-c", f"datalad.locations.extra-procedures={procedures_dir()}",
         "run-procedure", "--discover"], capture_output=True, text=True, check=True).stdout
    assert "cfg_clustermass" in out


def test_procedure_lays_out_a_new_dataset(tmp_path):
    root = tmp_path / "ci"
    create_dataset(root)
    attrs = (root / ".gitattributes").read_text()
    assert attrs.startswith("# clustermass dataset layout") and "images/** annex.largefiles=anything" in attrs
    assert attrs.count("annex.backend") == 1
    template = settings.current().datalad_dir / "dataset_README.md"
    assert (root / "README.md").read_text() == template.read_text()
    assert git(root, "status", "--porcelain") == ""
    assert git(root, "log", "-1", "--format=%s").startswith("[clustermass] Configure dataset")


def test_record_version_script(tmp_path):
    root = tmp_path / "data" / PRESET
    ensure_dataset(PRESET, root, generate_cmd=FAKE_CMD, expected_path=tmp_path / "none.json")
    git(root, "tag", "-a", "v1.0", "-m", "v1.0")
    path = tmp_path / "expected.json"
    script = settings.current().datalad_dir / "record_version.py"
    subprocess.run([sys.executable, str(script), str(root), "--preset", PRESET, "--tag", "v1.0",
                    "--url", "ria+file:///x#~a@v1.0"],
                   check=True, capture_output=True, cwd=tmp_path,
                   env=dict(os.environ, CLUSTERMASS_EXPECTED_VERSION=str(path)))
    entry = json.loads(path.read_text())["presets"][PRESET]
    assert entry["release"] == {"dataset_id": git(root, "config", "-f", ".datalad/config", "datalad.dataset.id"),
                                "tag": "v1.0", "commit": git(root, "rev-parse", "HEAD"),
                                "url": "ria+file:///x#~a@v1.0"}
    assert entry["fingerprint"] == content_fingerprint(root) and entry["version"] == "0.0.0-fake"
