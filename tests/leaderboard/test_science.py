"""The science check page: per-fold and pooled figures from entry files, verdicts against the
study's ranges, and a clear error when an entry is missing."""
from __future__ import annotations

import math

import pytest

from benchmark.core.errors import EntryError
from benchmark.entries import load_entries
from lb_helpers import CatalogOnlyDataset, write_entries
from leaderboard.science import STUDY, science_rows, write_science_check

LN10 = math.log(10.0)


@pytest.fixture(scope="module")
def dataset():
    return CatalogOnlyDataset(n_clusters=60, n_epochs=8)


def _entries(tmp_path, dataset, cnn_frac, lx_frac):
    specs = [("reference", "Reference CNN", cnn_frac / LN10, {"kind": "baseline"}),
             ("lx-iterative", "Core-excised L_X", lx_frac / LN10, {"kind": "baseline"}),
             ("mean", "Training mean", 0.3, {"kind": "baseline"})]
    return write_entries(tmp_path / "entries", dataset, specs)


def test_rows_carry_the_entries_own_fold_figures(tmp_path, dataset):
    directory = _entries(tmp_path, dataset, 0.12, 0.165)
    rows = {r.slug: r for r in science_rows(directory)}
    assert set(rows) == {"reference", "lx-iterative"}  # the trivial baseline is not part of it
    entries = {e.slug: e for e in load_entries(directory)}
    for slug, row in rows.items():
        score = entries[slug].score
        assert row.pooled == score.scatter_frac
        assert sorted(row.fold_scatter) == list(range(10))
        assert row.fold_scatter == {int(r["fold"]): r["scatter_gauss_frac"] for r in score.fold_rows}
        assert row.best_fold == min(row.fold_scatter.items(), key=lambda kv: kv[1])


def test_verdicts_follow_the_measured_scatter(tmp_path, dataset):
    page = write_science_check(_entries(tmp_path, dataset, 0.12, 0.165), tmp_path / "out")
    text = page.read_text()
    rows = {r.slug: r for r in science_rows(tmp_path / "entries")}
    expected = STUDY["cnn_pooled"].verdict(rows["reference"].pooled)
    assert f"| CNN, pooled | {100 * rows['reference'].pooled:.1f}% |" in text
    assert expected in text.split("| CNN, pooled |")[1].splitlines()[0]
    lx_line = text.split("| Core-excised L_X (iterative R500c), pooled |")[1].splitlines()[0]
    assert STUDY["lx_core_excised"].verdict(rows["lx-iterative"].pooled) in lx_line
    assert "(the study: ~0.73)" in text  # 12% against the middle of 15-18%
    assert (tmp_path / "out" / "science_folds.svg").read_text().startswith("<svg")


def test_a_far_worse_cnn_is_reported_above_the_range(tmp_path, dataset):
    text = write_science_check(_entries(tmp_path, dataset, 0.30, 0.165), tmp_path / "out").read_text()
    assert "above the study's range" in text.split("| CNN, pooled |")[1].splitlines()[0]
    assert "smaller scatter in 0 of 10 test folds" in text


def test_study_figure_verdicts():
    fig = STUDY["lx_core_excised"]
    assert fig.verdict(0.16) == "within the study's range"
    assert fig.verdict(0.10) == "below the study's range"
    assert fig.verdict(0.25) == "above the study's range"
    assert fig.verdict(None) == "not measured"


def test_missing_reference_is_one_clear_error(tmp_path, dataset):
    directory = write_entries(tmp_path / "entries", dataset,
                              [("lx-iterative", "L_X", 0.07, {"kind": "baseline"})])
    with pytest.raises(EntryError, match=r"\['reference'\].*make reference"):
        science_rows(directory)
