"""The published full-size entries stay valid, complete and readable by the renderer."""
from pathlib import Path

import pytest

from leaderboard.render import load_entries

PUBLISHED = Path(__file__).resolve().parents[2] / "leaderboard" / "entries"
FOLDERS = sorted(p for p in PUBLISHED.iterdir() if p.is_dir())


def test_there_are_published_entries():
    assert FOLDERS, f"no published entry folders under {PUBLISHED}"


@pytest.mark.parametrize("folder", FOLDERS, ids=lambda p: p.name)
def test_published_entries_load_strictly_with_predictions_for_every_image(folder):
    entries = load_entries([folder], strict=True)
    assert {e.slug for e in entries} >= {"reference", "lx-iterative", "lx-truth", "mean", "total-counts"}
    for e in entries:
        metrics = e.entry["metrics"]
        assert metrics["complete"] and metrics["n_folds"] == 10
        assert e.predictions is not None and len(e.predictions) == metrics["n_images"], e.problems
        assert e.entry["dataset"]["name"] == f"clustermass-{folder.name}"
