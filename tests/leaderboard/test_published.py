"""The published full-size entries stay valid, complete and readable by the renderer."""
import json
from pathlib import Path

import pytest

from benchmark.core.io import dumps_json
from benchmark.entries import load_entry

from leaderboard.render import load_board

PUBLISHED = Path(__file__).resolve().parents[2] / "leaderboard" / "entries"
FOLDERS = sorted(p for p in PUBLISHED.iterdir() if p.is_dir())


def test_there_are_published_entries():
    assert FOLDERS, f"no published entry folders under {PUBLISHED}"


@pytest.mark.parametrize("folder", FOLDERS, ids=lambda p: p.name)
def test_published_entries_load_strictly_with_predictions_for_every_image(folder):
    board = load_board([folder], strict=True)
    assert {e.slug for e in board} >= {"reference", "lx-iterative", "lx-truth", "mean", "total-counts"}
    for e in board:
        score = e.entry.score
        assert score.complete and score.document["n_folds"] == 10
        assert e.predictions is not None and len(e.predictions) == score.n_images, e.problems
        preset, version = folder.name.rsplit("-", 1)  # folders are named <preset>-<version>
        assert e.entry.dataset["name"] == f"clustermass-{preset}"
        assert e.entry.dataset["version"] == version


@pytest.mark.parametrize("folder", FOLDERS, ids=lambda p: p.name)
def test_published_entries_round_trip_unchanged(folder):
    # Typed entries give back the JSON of the files exactly: rewriting one changes nothing.
    for path in sorted(folder.glob("*.json")):
        entry = load_entry(path)
        assert entry.to_json() == json.loads(path.read_text())
        assert dumps_json(entry.to_json(), indent=1, sort_keys=False) == path.read_text()
