"""The leaderboard shows both core-sensitivity figures, ranks by the one it names, and shows
the comparison with the null control; published entries keep rendering."""

from __future__ import annotations

import html
from pathlib import Path

import pytest

from benchmark.dataset.loader import ClusterMassDataset
from benchmark.diagnostics import NullLogPredictor, entry_summary, run_diagnostics
from benchmark.entries import load_entry
from fakes import write_fake_dataset
from lb_helpers import write_entries
from leaderboard.render import CORE_DEFINITIONS, _core_figures, render_site

PUBLISHED = Path(__file__).resolve().parents[2] / "leaderboard" / "entries"


@pytest.fixture(scope="module")
def fake_dataset(tmp_path_factory):
    root = write_fake_dataset(tmp_path_factory.mktemp("fake") / "data", n_clusters=20, n_epochs=2, seed=3)
    return ClusterMassDataset(root)


def test_published_reference_ranks_by_occlusion_with_gradient_beside():
    # Written before both figures were stored side by side: they come from its detail.
    cells = _core_figures(load_entry(PUBLISHED / "full-0.1.0" / "reference.json"))
    assert cells["core_method"] == "occlusion"
    assert cells["core_ratio"] == pytest.approx(0.723, abs=1e-3)
    assert cells["core_gradient"] == pytest.approx(0.309, abs=1e-3)


def test_entry_without_detail_shows_its_own_number(fake_dataset, tmp_path):
    d = write_entries(tmp_path / "e", fake_dataset, [("old", "Old", 0.1, {"diagnostics": {
        "core_sensitivity": 0.4, "core_sensitivity_method": "gradient"}})])
    cells = _core_figures(load_entry(d / "old.json"))
    assert cells == {"core_ratio": 0.4, "core_method": "gradient", "core_gradient": None}


def test_page_shows_controls_answer_and_definitions(fake_dataset, tmp_path):
    s = run_diagnostics(tmp_path / "run", fake_dataset, 2, folds=range(3), controls=("null",), n_boot=100,
                        load_predictor=lambda out_dir, k: NullLogPredictor(), write=False)
    d = write_entries(tmp_path / "e", fake_dataset, [("null", "Null", 0.1, {"diagnostics": entry_summary(s)})])
    site = render_site(d, fake_dataset, tmp_path / "site")
    index = site.read_text()
    assert html.escape(CORE_DEFINITIONS, quote=True) in index and "Core sensitivity (occlusion; gradient)" in index
    assert "· gradient" in index
    page = (site.parent / "entries" / "null.html").read_text()
    assert "Does the model use the core less than photons alone would suggest? <b>undetermined</b>" in page
    assert "DeepDream relative to the null control" in page and "steps in counts" in page
    assert "control (same clusters)" in page
    md = (site.parent / "LEADERBOARD.md").read_text()
    assert "Core sensitivity (occlusion; gradient)" in md and "Gradient (shown beside it)" in md
