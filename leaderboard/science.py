"""The science check: the reference CNN against the L_X baselines, per fold and pooled, and
both against the study they reproduce (Ntampaka et al. 2019, ApJ 876, 82).

Input: the entry files of one preset (``results/<preset>/entries``), nothing else. Output:
``science.md`` (tables and the verdicts, in or out of the study's range) and
``science_folds.svg`` (scatter per test fold, the study's figures drawn as reference lines).

The numbers of the study are fixed here, with where they come from, and never used to tune
anything: this page reports whatever the entries measured.
"""
from __future__ import annotations

import dataclasses
import math
from pathlib import Path

from benchmark.core.errors import EntryError
from benchmark.core.io import write_text
from benchmark.entries import Entry, load_entries
from leaderboard.svg import COLORS, Axes

__all__ = ["STUDY", "SCIENCE_SLUGS", "ScienceRow", "science_rows", "write_science_check"]


@dataclasses.dataclass(frozen=True)
class StudyFigure:
    """One figure of the study: a range of fractional scatters and where it is stated."""

    low: float
    high: float
    source: str

    def verdict(self, value: float | None) -> str:
        if value is None or not math.isfinite(value):
            return "not measured"
        if value < self.low:
            return "below the study's range"
        if value > self.high:
            return "above the study's range"
        return "within the study's range"

    @property
    def middle(self) -> float:
        return 0.5 * (self.low + self.high)

    def text(self) -> str:
        if self.low == self.high:
            return f"~{100 * self.low:.0f}%"
        return f"{100 * self.low:.0f}-{100 * self.high:.0f}%"


#: The study's figures (Ntampaka et al. 2019, ApJ 876, 82; sections 4-5 and their Figure 3).
#: "~12%" and "~8%" are read as +-1 percentage point: the study quotes them to the percent.
STUDY = {
    "cnn_pooled": StudyFigure(0.11, 0.13, "Ntampaka+19: CNN mass scatter ~12% over all folds"),
    "cnn_best_fold": StudyFigure(0.07, 0.09, "Ntampaka+19: ~8% in the best test fold"),
    "lx_core_excised": StudyFigure(0.15, 0.18, "Ntampaka+19: core-excised L_X 15-18%"),
}

#: The entries the check compares: slug -> (role, label). Oracles are the physical floor.
SCIENCE_SLUGS = {
    "reference": ("cnn", "Reference CNN"),
    "lx-iterative": ("lx", "Core-excised L_X (iterative R500c)"),
    "lx-truth": ("lx", "Core-excised L_X (true R500c)"),
    "oracle-mgas": ("floor", "Oracle: gas mass"),
    "oracle-yx": ("floor", "Oracle: Y_X"),
    "oracle-lx-t": ("floor", "Oracle: L_X with T"),
}


@dataclasses.dataclass(frozen=True)
class ScienceRow:
    """One entry's figures for the check (fractions, not per cent)."""

    slug: str
    role: str
    label: str
    pooled: float | None
    pooled_ci68: tuple[float, float] | None
    fold_scatter: dict[int, float]
    fold_mean: float | None
    fold_std: float | None
    dataset_version: str | None

    @property
    def best_fold(self) -> tuple[int, float] | None:
        if not self.fold_scatter:
            return None
        k = min(self.fold_scatter, key=self.fold_scatter.get)
        return k, self.fold_scatter[k]


def _row(entry: Entry) -> ScienceRow:
    role, label = SCIENCE_SLUGS[entry.slug]
    folds = {int(r["fold"]): float(r["scatter_gauss_frac"]) for r in entry.score.fold_rows
             if isinstance(r.get("scatter_gauss_frac"), (int, float))
             and math.isfinite(r["scatter_gauss_frac"])}
    return ScienceRow(entry.slug, role, label, entry.score.scatter_frac, entry.score.scatter_frac_ci68,
                      folds, entry.score.fold_mean_frac, entry.score.fold_std_frac,
                      entry.dataset.get("version"))


def science_rows(entries_dir) -> list[ScienceRow]:
    """The check's entries found in ``entries_dir``, in :data:`SCIENCE_SLUGS` order.

    Raises
    ------
    EntryError
        When the reference CNN or the iterative core-excised L_X entry is missing, or the
        entries were scored on different dataset versions.
    """
    if not Path(entries_dir).is_dir():
        raise EntryError(f"No entries in {entries_dir}: run `make baselines` and `make reference` "
                         "for this preset first.")
    found = {e.slug: e for e in load_entries(entries_dir) if e.slug in SCIENCE_SLUGS}
    missing = [s for s in ("reference", "lx-iterative") if s not in found]
    if missing:
        raise EntryError(f"The science check needs the entries {missing} in {entries_dir}: "
                         "run `make baselines` and `make reference` for this preset first.")
    rows = [_row(found[s]) for s in SCIENCE_SLUGS if s in found]
    versions = sorted({str(r.dataset_version) for r in rows})
    if len(versions) > 1:
        raise EntryError(f"The entries in {entries_dir} were scored on different dataset versions "
                         f"{versions}: re-run the baselines and the reference on one version.")
    return rows


def _pct(value: float | None) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{100 * value:.1f}%"


def _fold_table(rows: list[ScienceRow]) -> list[str]:
    folds = sorted({k for r in rows for k in r.fold_scatter})
    lines = ["| test fold | " + " | ".join(r.label for r in rows) + " |",
             "| --- |" + " --- |" * len(rows)]
    for k in folds:
        lines.append(f"| {k} | " + " | ".join(_pct(r.fold_scatter.get(k)) for r in rows) + " |")
    lines.append("| pooled | " + " | ".join(_pooled_text(r) for r in rows) + " |")
    lines.append("| fold mean ± std | " + " | ".join(
        f"{_pct(r.fold_mean)} ± {_pct(r.fold_std)}" for r in rows) + " |")
    return lines


def _pooled_text(row: ScienceRow) -> str:
    if row.pooled_ci68 is None:
        return _pct(row.pooled)
    lo, hi = row.pooled_ci68
    return f"{_pct(row.pooled)} ({_pct(lo)}-{_pct(hi)})"


def _verdicts(rows: list[ScienceRow]) -> list[str]:
    by_slug = {r.slug: r for r in rows}
    cnn, lx = by_slug["reference"], by_slug["lx-iterative"]
    best = cnn.best_fold
    checks = [
        ("CNN, pooled", cnn.pooled, STUDY["cnn_pooled"]),
        (f"CNN, best fold ({best[0]})" if best else "CNN, best fold", best[1] if best else None,
         STUDY["cnn_best_fold"]),
        ("Core-excised L_X (iterative R500c), pooled", lx.pooled, STUDY["lx_core_excised"]),
    ]
    lines = ["| figure | measured | the study | verdict |", "| --- | --- | --- | --- |"]
    lines += [f"| {what} | {_pct(value)} | {fig.text()} ({fig.source}) | {fig.verdict(value)} |"
              for what, value, fig in checks]
    return lines


def _comparison_sentence(rows: list[ScienceRow]) -> str:
    by_slug = {r.slug: r for r in rows}
    cnn, lx = by_slug["reference"].pooled, by_slug["lx-iterative"].pooled
    if not (cnn and lx):
        return "The CNN and the core-excised L_X cannot be compared: a pooled scatter is missing."
    ratio = cnn / lx
    study_ratio = STUDY["cnn_pooled"].middle / STUDY["lx_core_excised"].middle
    wins = sum(1 for k, v in by_slug["reference"].fold_scatter.items()
               if k in by_slug["lx-iterative"].fold_scatter and v < by_slug["lx-iterative"].fold_scatter[k])
    n = len(set(by_slug["reference"].fold_scatter) & set(by_slug["lx-iterative"].fold_scatter))
    return (f"The CNN's pooled scatter is {ratio:.2f} times the core-excised L_X's (the study: "
            f"~{study_ratio:.2f}); the CNN has the smaller scatter in {wins} of {n} test folds.")


def _figure(rows: list[ScienceRow]) -> str:
    folds = sorted({k for r in rows for k in r.fold_scatter})
    values = [100 * v for r in rows for v in r.fold_scatter.values()]
    top = max(values + [100 * STUDY["lx_core_excised"].high]) * 1.2
    ax = Axes((-0.5, max(folds, default=0) + 0.5), (0, top), width=560, height=320,
              title="Scatter per test fold against the study", xlabel="test fold",
              ylabel="mass scatter (%)")
    for i, row in enumerate(rows):
        ks = sorted(row.fold_scatter)
        ax.points(ks, [100 * row.fold_scatter[k] for k in ks], COLORS[i % len(COLORS)],
                  label=row.label)
    for key, dash in (("cnn_pooled", "6,3"), ("lx_core_excised", "2,3")):
        fig = STUDY[key]
        for level in {fig.low, fig.high}:
            ax.hline(100 * level, "#777777", dash=dash)
    return ax.to_svg()


def write_science_check(entries_dir, out_dir, report_markdown: Path | None = None) -> Path:
    """Write ``science.md`` and ``science_folds.svg`` into ``out_dir``; return the Markdown path.

    Parameters
    ----------
    entries_dir : path
        A preset's entry files.
    out_dir : path
        Where the page and the figure go.
    report_markdown : path, optional
        The dataset's ``report/observables.md`` (``make report``): its table, with the L_X
        scatter decomposition, is linked from the page to explain the figures.
    """
    rows = science_rows(entries_dir)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / "science_folds.svg", _figure(rows))
    lines = [
        f"# Science check (dataset version {rows[0].dataset_version})", "",
        "Gaussian-fit mass scatter ln(10) σ of each test fold and pooled over all folds "
        "(68% bootstrap interval over clusters in brackets). Oracles use the simulation truth: "
        "they are the physical floor, not observable.", "",
        *_fold_table(rows), "", "## Against the study", "", *_verdicts(rows), "",
        _comparison_sentence(rows), "", "![scatter per fold](science_folds.svg)", "",
    ]
    if report_markdown is not None and Path(report_markdown).is_file():
        lines += ["## The population behind these numbers", "",
                  f"Observables and the decomposition of the L_X scatter: `{report_markdown}`.", ""]
    return write_text(out / "science.md", "\n".join(lines))
