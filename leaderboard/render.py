"""Render the leaderboard as a static site (``index.html`` + one page per entry) and Markdown.

Input: entry files (``<slug>.json``, one per entry, written by ``benchmark.entries``) with
their predictions beside them (``<slug>.predictions.csv``: image_id, log10_m500c_pred,
optional seed) and, optionally, the interpretation-diagnostics plots of code entries in
``<slug>.diagnostics/*.png`` (written by :func:`benchmark.diagnostics.run_diagnostics`).

Entries are read and validated by :func:`benchmark.entries.load_entries`: the table and the
figures take their numbers from each entry's harness-computed :class:`~benchmark.entries.Score`.
The only thing the renderer joins from outside the entry files is the truth of each image
(the dataset's catalog, passed in by the caller), for the predicted-vs-true figure. Figures:
error PDF with its Gaussian fit (as in the study's figure), predicted vs true mass,
per-fold scatter, mass-binned bias and scatter, residuals by cool-core and merger state,
and the diagnostics.

Safety: everything a submitter wrote (names, authors, metadata, links) is passed through
:func:`html.escape`; links are kept only with an http or https scheme; file names on the
site come from the validated slug, never from submitted text; pages carry a strict
Content-Security-Policy (scripts only from the site's own ``assets/sort.js``). The site
works from disk: no server, no CDN, no external fonts.
"""

from __future__ import annotations

import html
import json
import math
import os
import re
import shutil
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd

from benchmark.core.errors import EntryError
from benchmark.core.io import write_text
from benchmark.entries import Entry, Score, load_entries
from leaderboard.svg import COLORS, Axes

__all__ = ["render_site", "load_board", "table_row", "LoadedEntry", "esc", "safe_url"]

LN10 = math.log(10.0)
#: The uncertainty track's columns: key -> (header, one-sentence explanation).
UNCERTAINTY_STATS = {
    "crps_dex": ("CRPS (dex)", "CRPS: the continuous ranked probability score of each "
                 "image's predictive Gaussian at the true log10 M500c, averaged (dex; lower is "
                 "better; a point forecast's CRPS is its mean |ε|)."),
    "log_score": ("Log score", "Log score: the mean negative log predictive density of the "
                  "true log10 M500c (lower is better; punishes overconfident error bars hard)."),
    "coverage_68": ("68% coverage", "68% coverage: the share of true masses inside the "
                    "predicted central 68% interval (calibrated error bars give 68%)."),
    "coverage_95": ("95% coverage", "95% coverage: the same for the central 95% interval "
                    "(calibrated: 95%)."),
}
ORACLE_BADGE = ('<span class="badge oracle" title="computed from the simulation truth; shown '
                'as the physical floor, never ranked">oracle, not observable</span>')
ASSETS = Path(__file__).with_name("assets")
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "base-uri 'none'; form-action 'none'")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
PNG_STEM = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,79}$")  # plot names the diagnostics write
SITE_MARKER = ".leaderboard-site"  # marks a folder render_site may rebuild


# --------------------------------------------------------------------------------------
# escaping
# --------------------------------------------------------------------------------------
def esc(value) -> str:
    """HTML-escape any value (quotes too: safe inside attributes)."""
    return html.escape("" if value is None else str(value), quote=True)


def safe_url(value) -> str | None:
    """The URL if its scheme is http or https and it has a host, else None."""
    if not isinstance(value, str):
        return None
    url = value.strip()
    if any(ord(ch) < 32 for ch in url):
        return None
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        return None
    return url


def link(value, text=None) -> str:
    """An <a> for a safe http(s) URL, else the escaped text alone."""
    url = safe_url(value)
    label = esc(text if text is not None else value)
    if url is None:
        return label
    return f'<a href="{esc(url)}" rel="noopener noreferrer nofollow">{label}</a>'


_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+!|~>-])")


def md_escape(value) -> str:
    """Text safe inside a Markdown table cell: HTML-escaped, Markdown punctuation escaped."""
    text = " ".join(str("" if value is None else value).split())
    return _MD_SPECIAL.sub(r"\\\1", html.escape(text, quote=True))


# --------------------------------------------------------------------------------------
# loading
# --------------------------------------------------------------------------------------
@dataclass
class LoadedEntry:
    """One entry with its predictions and what the site computes from them.

    ``slug`` names the entry's page: the entry's own slug, with ``-2``, ``-3``, ... when
    entries of several folders share one.
    """

    entry: Entry
    slug: str
    predictions: pd.DataFrame | None
    problems: list[str] = field(default_factory=list)
    errors: pd.DataFrame | None = None
    row: dict = field(default_factory=dict)

    @property
    def path(self) -> Path:
        """The entry file."""
        return self.entry.source


def read_predictions(entry: Entry) -> tuple[pd.DataFrame | None, list[str]]:
    """The predictions beside an entry file, or None and why not."""
    path = entry.source
    name = entry.predictions_file
    if name:
        cand = (path.parent / name).resolve()
        # Never read outside the entries folder, whatever the entry file says.
        if path.parent.resolve() not in cand.parents:
            return None, [f"predictions path {name!r} leaves the entries folder"]
    else:
        cand = path.with_name(path.name[: -len(".json")] + ".predictions.csv")
    if not cand.is_file():
        return None, [f"no predictions file {cand.name} beside the entry"]
    try:
        df = pd.read_csv(cand, dtype={"image_id": str})
    except (OSError, ValueError) as exc:
        return None, [f"unreadable predictions {cand.name}: {exc}"]
    if not {"image_id", "log10_m500c_pred"} <= set(df.columns):
        return None, [f"{cand.name} lacks the columns image_id, log10_m500c_pred"]
    return df, []


def load_board(sources, strict: bool = True) -> list[LoadedEntry]:
    """The entries of the folders given (:func:`benchmark.entries.load_entries`), with predictions.

    Parameters
    ----------
    sources : path or list of paths
        Folders of entry files (or single entry files); folders that do not exist are
        skipped (a results folder nothing was trained into yet).
    strict : bool
        Raise one :class:`~benchmark.core.errors.EntryError` listing every invalid entry file;
        with False, invalid entries are dropped.

    Returns
    -------
    list of LoadedEntry, with unique page slugs.
    """
    sources = [sources] if isinstance(sources, (str, os.PathLike)) else list(sources)
    board, seen = [], set()
    for entry in load_entries([p for p in map(Path, sources) if p.exists()], strict=strict):
        slug, i = entry.slug, 2
        while slug in seen:
            slug, i = f"{entry.slug}-{i}", i + 1
        seen.add(slug)
        board.append(LoadedEntry(entry, slug, *read_predictions(entry)))
    return board


def per_image_errors(pred: pd.DataFrame, catalog: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """The per-image errors of the predictions against the truth, and what does not match.

    Parameters
    ----------
    pred : DataFrame
        image_id, log10_m500c_pred (, seed); with several seeds the first is plotted.
    catalog : DataFrame
        The dataset's catalog (truth).

    Returns
    -------
    DataFrame (image_id, log10_m500c_pred, the catalog's truth columns, eps), list of str
    """
    problems = []
    if "seed" in pred.columns and pred["seed"].nunique() > 1:
        pred = pred[pred["seed"] == sorted(pred["seed"].unique())[0]]
    cols = [c for c in ("image_id", "cluster_id", "log10_m500c", "fold", "cool_core", "merger", "redshift")
            if c in catalog.columns]
    df = pred[["image_id", "log10_m500c_pred"]].merge(catalog[cols], on="image_id", how="inner")
    if len(df) < len(pred):
        problems.append(f"{len(pred) - len(df)} predicted image ids are not in this dataset")
    if len(df) < len(catalog):
        problems.append(f"{len(catalog) - len(df)} images of this dataset have no prediction")
    df = df[np.isfinite(df["log10_m500c_pred"].to_numpy(dtype=float))].copy()
    df["eps"] = df["log10_m500c_pred"].astype(float) - df["log10_m500c"].astype(float)
    return df, problems


# --------------------------------------------------------------------------------------
# entry fields
# --------------------------------------------------------------------------------------
def _num(v) -> float | None:
    try:
        v = float(v)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def _obj(d: Mapping, key: str) -> Mapping[str, Any]:
    # Objects inside the open parts of an entry (metrics sections, diagnostics).
    value = d.get(key)
    return value if isinstance(value, dict) else {}


#: The core-sensitivity column: which figure it ranks by, each defined in one sentence.
CORE_DEFINITIONS = (
    "Core sensitivity, ranked by occlusion: the share of the summed |Δ log10 M| from dimming each radial "
    "ring's photons by 20% that comes from rings inside 0.15 R500c, divided by the share of photons there "
    "(1: every photon weighs alike; ~0: the core is ignored). "
    "Gradient (shown beside it): the same ratio with the sensitivity |∂ log10 M/∂N · N| summed pixel by "
    "pixel inside 0.15 R500c (local and per pixel, so it can differ from occlusion when the response is "
    "non-linear or pixels of opposite sign cancel within a ring)."
)


def _core_figures(e: Entry) -> dict:
    """The core-sensitivity cells: ranked by occlusion (every model has it), gradient beside.

    Entries written before both were stored side by side carry them in
    ``core_sensitivity_detail`` (R < 0.15 R500c); without that the stored number and its
    method are shown as they are.
    """
    diag = e.diagnostics or {}
    detail = _obj(_obj(diag, "core_sensitivity_detail"), "0.15")
    occl, grad = _num(detail.get("occlusion")), _num(detail.get("gradient"))
    if occl is not None:
        return {"core_ratio": occl, "core_method": "occlusion", "core_gradient": grad}
    return {"core_ratio": e.core_sensitivity, "core_method": diag.get("core_sensitivity_method"),
            "core_gradient": None}


#: One line on each column of the extra test sets (shift track, hidden set).
SHIFT_DEFINITIONS = (
    "Hidden: the cross-validated scatter's counterpart on the maintainer's hidden test set "
    "(the same population observed anew from a secret seed): mean ± std over the fold models "
    "of each model's scatter on all hidden images; 'not scored' for uploaded predictions, "
    "which come without fold models. "
    "Shift sets (data/<preset>/testsets/): each changes one thing (gas physics, cool-core "
    "share, exposure, redshift). Shifted scatter and bias: mean ± std over the fold models "
    "(every seed and fold) of each model's scatter (ln 10 x Gaussian sigma) and mean bias "
    "(dex) on the set; ratio: shifted scatter over the same models' in-domain per-fold "
    "scatter (1 = no loss; 1.4 = 40% worse), in brackets its 68% interval from a bootstrap "
    "over the set's clusters and, independently, the parent's (a set has ~40 clusters, so "
    "ratios near 1 are within sampling). Worst shift: the set with the largest ratio."
)


def _prediction_only(e: Entry) -> bool:
    return e.kind == "submission" and e.metadata.get("kind") != "code"


def _testset_cells(e: Entry) -> dict:
    """The row's hidden-set figure and each shift set's (scatter, std, bias, ratio) or the
    reason it is not scored."""
    out = {"hidden": None, "shift": {}}
    for t in e.score.testsets:
        cell = {"scored": t.scored, "reason": t.reason, "scatter": t.scatter_frac,
                "scatter_std": t.scatter_frac_std, "bias": t.bias_dex,
                "bias_std": t.bias_dex_std, "ratio": t.ratio, "ratio_ci": t.ratio_ci68,
                "change": t.change,
                "n_images": t.n_images}
        if t.hidden:
            out["hidden"] = cell
        else:
            out["shift"][t.name] = cell
    if out["hidden"] is None and _prediction_only(e):
        out["hidden"] = {"scored": False, "reason": "uploaded predictions: no fold models"}
    ratios = [(c["ratio"], n) for n, c in out["shift"].items() if c["ratio"] is not None]
    if ratios:
        ratio, name = max(ratios)
        out["worst_shift"] = (ratio, name, out["shift"][name]["ratio_ci"])
    else:
        out["worst_shift"] = None
    return out


def _ratio_text(ratio: float | None, ci=None) -> str:
    """A shift ratio with its 68% interval, as plain text: ``1.25 (1.10-1.41)``."""
    if ratio is None:
        return ""
    return f"{ratio:.2f}" + ("" if ci is None else f" ({ci[0]:.2f}-{ci[1]:.2f})")


def _hidden_text(cell) -> tuple[str, float | None]:
    """(HTML-free text, sort value) of a row's hidden column."""
    if cell is None:
        return "", None
    if not cell["scored"] or cell.get("scatter") is None:
        return "not scored", None
    std = "" if cell.get("scatter_std") is None else f" ± {_pct(cell['scatter_std'])}"
    return f"{_pct(cell['scatter'])}{std}", cell["scatter"]


def table_row(le: LoadedEntry, dataset_version: str | None, dataset_splits: str | None = None) -> dict:
    """The leaderboard row of one entry (numbers from its harness score)."""
    e, sc = le.entry, le.entry.score
    version, splits = e.dataset["version"], e.dataset["splits_sha256"]
    return {
        "name": e.name, "slug": le.slug,
        "scatter_frac": sc.scatter_frac,
        "scatter_ci_frac": None if sc.scatter_frac_ci68 is None else list(sc.scatter_frac_ci68),
        "bias_dex": sc.bias_dex,
        "fold_mean_frac": sc.fold_mean_frac,
        "fold_std_frac": sc.fold_std_frac,
        "best_fold": sc.best_fold, "worst_fold": sc.worst_fold,
        **_core_figures(e),
        "dataset_version": version,
        "stale": ((dataset_version is not None and version != str(dataset_version))
                  or (dataset_splits is not None and splits != dataset_splits)),
        "date": e.created[:19].replace("T", " "),
        "kind": e.kind,
        "trusted": e.trusted,
        "n_seeds": len(sc.seeds) or None,
        "oracle": e.oracle,
        **{k: sc.uncertainty_stat(k) for k in UNCERTAINTY_STATS},
        **_testset_cells(e),
    }


# --------------------------------------------------------------------------------------
# HTML
# --------------------------------------------------------------------------------------
def _pct(v, digits=1) -> str:
    return "" if v is None else f"{100 * v:.{digits}f}%"


def _page(title: str, body: str, root: str) -> str:
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f'<meta http-equiv="Content-Security-Policy" content="{esc(CSP)}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta name="referrer" content="no-referrer">'
        f"<title>{esc(title)}</title>"
        f'<link rel="stylesheet" href="{root}assets/style.css">'
        f'<script src="{root}assets/sort.js" defer></script></head>\n<body>\n{body}\n</body></html>\n'
    )


def _figure_html(svg: str, caption: str) -> str:
    return f"<figure>{svg}<figcaption>{esc(caption)}</figcaption></figure>"


def _figure_grid(figs: list[tuple[str, str]]) -> str:
    """(svg, caption) figures side by side."""
    return '<div class="figs">' + "".join(_figure_html(svg, cap) for svg, cap in figs) + "</div>"


def _pdf_overlay_figure(board: list[LoadedEntry]) -> tuple[str, str] | None:
    """The study's figure for the whole board: every entry's error PDF (unit area) with its
    best-fit Gaussian (dashed, same colour), in ranking order, oracles marked."""
    curves = []
    for le in sorted(board, key=lambda le: (le.row.get("scatter_frac") is None,
                                            le.row.get("scatter_frac") or 0.0)):
        pdf = le.entry.score.section("pdf")
        edges, counts = _nums(pdf.get("bin_edges_dex") or []), _nums(pdf.get("counts") or [])
        widths = np.diff(edges)
        total = np.nansum(counts * widths) if len(counts) == len(widths) else 0.0
        if len(edges) < 2 or not total > 0:
            continue
        gauss = pdf.get("gauss") or {}
        curves.append((le, edges, counts / total, _num(gauss.get("mu_dex")), _num(gauss.get("sigma_dex"))))
    if not curves:
        return None
    lo = max(-0.6, min(float(c[1][0]) for c in curves))
    hi = min(0.6, max(float(c[1][-1]) for c in curves))
    top = max(float(np.nanmax(c[2])) for c in curves) * 1.1
    ax = Axes((lo, hi), (0, top), width=720, height=420, title="Error PDFs of all entries",
              ylabel="probability density (1/dex)", xlabel="ε = log10 M_pred − log10 M_true (dex)")
    xs = np.linspace(lo, hi, 300)
    for i, (le, edges, density, mu, sig) in enumerate(curves):
        color = COLORS[i % len(COLORS)]
        scatter = le.row.get("scatter_frac")
        label = (le.entry.name[:40] + (" (oracle)" if le.row.get("oracle") else "")
                 + ("" if scatter is None else f": {_pct(scatter)}"))
        ax.step_hist(edges, density, color, 1.2, label=label)
        if mu is not None and sig and sig > 0:
            ax.line(xs, np.exp(-0.5 * ((xs - mu) / sig) ** 2) / (sig * math.sqrt(2 * math.pi)), color, 1, "4,3")
    ax.vline(0)
    return (ax.to_svg(),
            "Each entry's out-of-fold error PDF (all images, normalised to unit area) and, dashed in "
            "the same colour, its best-fit Gaussian, whose width is the scatter of the table (the "
            "study's figure, for every entry at once). Oracles are the physical floor.")


def _index_html(rows: list[dict], dataset_info: dict, figure: tuple[str, str] | None = None) -> str:
    """The index page: the ranked table, what its columns mean, the board's error PDFs."""
    ths = _index_header()
    trs = [_index_row(i, r) for i, r in _ranked(rows)]
    info = " · ".join(f"{esc(k)}: {esc(v if k != 'splits_sha256' else str(v)[:12])}"
                      for k, v in dataset_info.items() if v is not None)
    body = (
        "<h1>clustermass leaderboard</h1>"
        f'<p class="muted">{info}</p>'
        f'<table class="sortable" id="leaderboard"><thead><tr>{ths}</tr></thead><tbody>{"".join(trs)}</tbody></table>'
        + _index_notes()
    )
    if figure:
        body += "<h2>Error PDFs</h2>" + _figure_html(figure[0], figure[1])
    return _page("clustermass leaderboard", body, "")


def _index_header() -> str:
    """The index table's <th> cells: each names its sort type and key for sort.js."""
    head = [("#", "number", "rank"), ("Entry", "text", "name"), ("Scatter (Gauss, ln10 σ)", "number", "scatter"),
            ("Hidden", "number", "hidden"), ("Worst shift (ratio)", "number", "shift"),
            ("Bias (dex)", "number", "bias"), ("Fold scatter mean ± std", "number", "fold"),
            ("Best fold", "number", "best"), ("Worst fold", "number", "worst"),
            ("Core sensitivity (occlusion; gradient)", "number", "core"),
            *((h, "number", k) for k, (h, _) in UNCERTAINTY_STATS.items()),
            ("Dataset", "text", "dataset"), ("Date", "text", "date")]
    return "".join(f'<th data-type="{t}" data-key="{k}" class="{"text" if t == "text" else ""}">{esc(h)}</th>'
                   for h, t, k in head)


def _index_row(i, r: dict) -> str:
    """One <tr> of the index: each cell's text, and in data-sort the raw value sort.js orders by."""
    ci = r["scatter_ci_frac"]
    ci_txt = f' <span class="muted">[{_pct(ci[0])}, {_pct(ci[1])}]</span>' if ci else ""
    fold = ("" if r["fold_mean_frac"] is None else
            f"{_pct(r['fold_mean_frac'])} ± {_pct(r['fold_std_frac'])}")
    best, worst = _fold_extreme_html(r["best_fold"]), _fold_extreme_html(r["worst_fold"])
    core = _core_cell_html(r)
    stale = ' <span class="badge warn">other dataset version</span>' if r["stale"] else ""
    kind = _kind_badges(r)
    bias_txt = "" if r["bias_dex"] is None else f"{r['bias_dex']:+.3f}"
    hidden_txt, hidden_sort = _hidden_text(r.get("hidden"))
    shifted = r.get("worst_shift")
    shift_txt = ("" if shifted is None else
                 f'{esc(_ratio_text(shifted[0], shifted[2]))} '
                 f'<span class="muted">({esc(shifted[1])})</span>')
    return (
        "<tr>"
        f'<td data-sort="{i}">{_rank_text(i, r)}</td>'
        f'<td class="text" data-sort="{esc(r["name"])}"><a href="entries/{esc(r["slug"])}.html">{esc(r["name"])}</a>{kind}</td>'
        f'<td data-sort="{_sort_value(r["scatter_frac"])}">{_pct(r["scatter_frac"])}{ci_txt}</td>'
        f'<td data-sort="{_sort_value(hidden_sort)}">{esc(hidden_txt)}</td>'
        f'<td data-sort="{_sort_value(shifted[0] if shifted else None)}">{shift_txt}</td>'
        f'<td data-sort="{_sort_value(r["bias_dex"])}">{bias_txt}</td>'
        f'<td data-sort="{_sort_value(r["fold_mean_frac"])}">{fold}</td>'
        f'<td data-sort="{_sort_value(r["best_fold"][1] if r["best_fold"] else None)}">{best}</td>'
        f'<td data-sort="{_sort_value(r["worst_fold"][1] if r["worst_fold"] else None)}">{worst}</td>'
        f'<td data-sort="{_sort_value(r["core_ratio"])}">{core}</td>'
        + "".join(f'<td data-sort="{_sort_value(r.get(k))}">{_unc_text(k, r.get(k))}</td>'
                  for k in UNCERTAINTY_STATS) +
        f'<td class="text" data-sort="{esc(r["dataset_version"] or "")}">{esc(r["dataset_version"] or "")}{stale}</td>'
        f'<td class="text" data-sort="{esc(r["date"] or "")}">{esc(r["date"] or "")}</td>'
        "</tr>"
    )


def _sort_value(v) -> str:
    """A number as a data-sort attribute (empty for none)."""
    return "" if v is None else esc(f"{v:.6g}")


def _fold_extreme_html(fold: tuple[int, float] | None) -> str:
    """A best or worst fold: its scatter, then which fold."""
    return "" if fold is None else f"{_pct(fold[1])} <span class=\"muted\">(fold {fold[0]})</span>"


def _core_cell_html(r: dict) -> str:
    """The core-sensitivity cell: the ranked ratio with its method, the gradient beside."""
    core = ("" if r["core_ratio"] is None else
            f"{r['core_ratio']:.2f} <span class=\"muted\">({esc(r['core_method'])})</span>")
    if r.get("core_gradient") is not None:
        core += f' <span class="muted">· gradient {r["core_gradient"]:.2f}</span>'
    return core


def _kind_badges(r: dict) -> str:
    """Badges after an entry's name: its kind, trusted, oracle."""
    kind = f' <span class="badge">{esc(r["kind"])}</span>' if r.get("kind") else ""
    if r.get("trusted"):
        kind += ' <span class="badge" title="trained by the harness">trusted</span>'
    if r.get("oracle"):
        kind += " " + ORACLE_BADGE
    return kind


def _index_notes() -> str:
    """The paragraph under the index table: what each column means."""
    return (
        '<p class="muted">Scatter: σ of the best-fit Gaussian to ε = log10 M_pred − log10 M_true over all images '
        "(out of fold), as a fractional mass scatter ln(10)·σ; brackets: 68% bootstrap interval over clusters. "
        "Bias: mean ε. Fold columns: the same scatter per test fold (a best fold never stands alone). "
        + esc(CORE_DEFINITIONS) + " " + esc(SHIFT_DEFINITIONS) + " "
        + " ".join(esc(text) for _, text in UNCERTAINTY_STATS.values())
        + " Uncertainty columns are empty for entries that give no error bars. "
        "Oracle rows (computed from the simulation truth, not observable) show the physical "
        "floor: they sort with every column but take no rank. "
        "Click a column header to sort.</p>"
    )


def _ranked(rows: list[dict]) -> list[tuple[int, dict]]:
    """(rank, row) by scatter; oracle rows (the floor) keep their place but take no rank."""
    order = sorted(rows, key=lambda r: (r["scatter_frac"] is None, r["scatter_frac"] or 0))
    out, rank = [], 0
    for r in order:
        rank += not r.get("oracle")
        out.append((rank if not r.get("oracle") else rank + 0.5, r))
    return out


def _rank_text(i, row: dict) -> str:
    return "floor" if row.get("oracle") else str(i)


def _unc_text(key: str, value) -> str:
    if value is None:
        return ""
    return _pct(value) if key.startswith("coverage") else f"{value:.4f}"


def _nums(values) -> np.ndarray:
    return np.array([np.nan if _num(v) is None else _num(v) for v in values], dtype=float)


def _figures(score: Score, df: pd.DataFrame | None) -> list[tuple[str, str]]:
    """(svg, caption) of the entry's figures, from its score and per-image errors."""
    figs = (_error_pdf_figure(score.section("pdf")), _pred_vs_true_figure(df), _fold_scatter_figure(score),
            _mass_bins_figure(score), _physical_state_figure(score))
    return [f for f in figs if f]


def _error_pdf_figure(pdf: Mapping) -> tuple[str, str] | None:
    """The entry's error histogram with its best-fit Gaussian (the study's figure)."""
    edges, counts = _nums(pdf.get("bin_edges_dex") or []), _nums(pdf.get("counts") or [])
    gauss = pdf.get("gauss") or {}
    amp, mu, sig = (_num(gauss.get(k)) for k in ("amplitude", "mu_dex", "sigma_dex"))
    if not (len(edges) > 1 and len(counts) == len(edges) - 1):
        return None
    top = max(np.nanmax(counts), amp or 0) * 1.15 or 1
    ax = Axes((edges[0], edges[-1]), (0, top), title="Error PDF", ylabel="images per bin",
              xlabel="ε = log10 M_pred − log10 M_true (dex)")
    ax.step_hist(edges, counts, COLORS[0], label=f"all images (seed {pdf.get('seed', 0)})")
    if None not in (amp, mu, sig) and sig > 0:
        xs = np.linspace(edges[0], edges[-1], 200)
        ax.line(xs, amp * np.exp(-0.5 * ((xs - mu) / sig) ** 2), COLORS[1],
                label=f"Gaussian: μ={mu:+.3f}, σ={sig:.3f} dex")
        cap = f"Error PDF with its best-fit Gaussian: scatter ln(10)σ = {100 * LN10 * sig:.1f}%."
    else:
        cap = "Error PDF (too few images for a Gaussian fit)."
    ax.vline(0)
    return ax.to_svg(), cap


def _pred_vs_true_figure(df: pd.DataFrame | None) -> tuple[str, str] | None:
    """Predicted against true mass of every image, as a density."""
    if df is None or not len(df):
        return None
    t, p = df["log10_m500c"].to_numpy(float), df["log10_m500c_pred"].to_numpy(float)
    # Half a percent of wild predictions at either end must not squash the plot.
    lo = float(np.floor(min(t.min(), np.percentile(p, 0.5)) * 10) / 10)
    hi = float(np.ceil(max(t.max(), np.percentile(p, 99.5)) * 10) / 10)
    ax = Axes((lo, hi), (lo, hi), title="Predicted vs true", xlabel="true log10 M500c",
              ylabel="predicted log10 M500c")
    ax.density(t, p, bins=50)
    ax.line([lo, hi], [lo, hi], "#d62728", 1, "4,3")
    return ax.to_svg(), f"{len(df)} images, shaded by density (log scale); dashed: 1:1."


def _fold_scatter_figure(score: Score) -> tuple[str, str] | None:
    """One bar per test fold with the mean over folds: a best fold never stands alone."""
    rows = score.fold_rows
    if not rows:
        return None
    folds = [int(r["fold"]) for r in rows]
    key, what = _fold_scatter_key(rows)
    vals = 100 * _nums([r.get(key) for r in rows])
    top = np.nanmax(vals) * 1.25 if np.isfinite(vals).any() else 1.0
    ax = Axes((-0.7, len(folds) - 0.3), (0, top), title="Scatter per test fold", xlabel="test fold",
              ylabel="scatter (%)")
    ax.bars(range(len(folds)), vals, 0.7, COLORS[0],
            labels=[f"fold {k}: {v:.1f}%" for k, v in zip(folds, vals)])
    summary = _obj(score.section("fold_summary"), key)
    mean, std = _num(summary.get("mean")), _num(summary.get("std"))
    if mean is not None:
        ax.hline(100 * mean, COLORS[1])
        ax.note(f"mean {100 * mean:.1f}%" + ("" if std is None else f" ± {100 * std:.1f}%"))
    return (ax.to_svg(xticks=list(range(len(folds))), xticklabels=[str(k) for k in folds]),
            f"{what} of each test fold; line: mean over folds.")


def _fold_scatter_key(rows: list[Mapping]) -> tuple[str, str]:
    """(per-fold statistic, its description) the fold figure shows."""
    if not np.isfinite(_nums([r.get("scatter_gauss_frac") for r in rows])).any():
        # Folds too small for a Gaussian fit: show the standard deviation instead.
        return "scatter_std_frac", "standard deviation (ln10 σ_std)"
    return "scatter_gauss_frac", "Gaussian-fit scatter (ln10 σ)"


def _mass_bins_figure(score: Score) -> tuple[str, str] | None:
    """Mean error and Gaussian scatter in bins of true mass."""
    bins = [b for b in (score.section("mass_bins").get("bins") or []) if isinstance(b, dict)]
    if not bins:
        return None
    c = _nums([b.get("center") for b in bins])
    bias = _nums([b.get("bias_mean_dex") for b in bins])
    sig = _nums([b.get("sigma_gauss_dex") for b in bins])
    span = _residual_span(bias, sig)
    ax = Axes((_num(bins[0].get("lo")) or c[0] - 0.1, _num(bins[-1].get("hi")) or c[-1] + 0.1),
              (-1.3 * span, 1.3 * span), title="Bias and scatter by mass", xlabel="true log10 M500c",
              ylabel="ε (dex)")
    ax.hline(0)
    ax.errorbar(c, bias, sig, COLORS[0], label="mean ε ± Gaussian σ")
    return ax.to_svg(), "Mass bins (quantiles of the true mass): mean ε, bar: Gaussian-fit scatter."


def _physical_state_figure(score: Score) -> tuple[str, str] | None:
    """Mean error ± standard deviation of each cool-core and merger state."""
    groups = _physical_state_groups(score)
    if not groups:
        return None
    mean = _nums([g.get("bias_mean_dex") for _, g in groups])
    sd = _nums([g.get("sigma_std_dex") for _, g in groups])
    span = _residual_span(mean, sd)
    ax = Axes((-0.6, len(groups) - 0.4), (-1.3 * span, 1.3 * span), title="Residuals by physical state",
              ylabel="ε (dex)")
    ax.hline(0)
    ax.errorbar(range(len(groups)), mean, sd, COLORS[2])
    labels = [f"{n} ({g.get('n_images', '?')})" for n, g in groups]
    return (ax.to_svg(xticks=list(range(len(groups))), xticklabels=labels),
            "Mean ε ± standard deviation, cool-core vs non-cool-core and merging vs relaxed.")


def _physical_state_groups(score: Score) -> list[tuple[str, Mapping]]:
    """(label, statistics) of each state the score has: non-CC, cool core, relaxed, merger."""
    groups = []
    for key, names in (("by_cool_core", ("non-CC", "cool core")), ("by_merger", ("relaxed", "merger"))):
        split = score.section(key)
        for val, name in enumerate(names):
            if isinstance(split.get(str(val)), dict):
                groups.append((name, split[str(val)]))
    return groups


def _residual_span(mean: np.ndarray, spread: np.ndarray) -> float:
    """Half the height of a residual plot: room for every mean ± spread, 0.1 dex when none is finite."""
    span = np.nanmax(np.abs(mean) + np.nan_to_num(spread)) if np.isfinite(mean).any() else 0.1
    return span if span > 0 else 0.1


def _pit_figure(pit_hist) -> tuple[str, str] | None:
    """The PIT histogram (fractions per bin of [0, 1]) against the flat line of calibration."""
    frac = _nums(pit_hist or [])
    if len(frac) == 0 or not np.isfinite(frac).any():
        return None
    n = len(frac)
    ax = Axes((0, 1), (0, max(np.nanmax(frac), 1.0 / n) * 1.3), title="PIT histogram",
              xlabel="PIT = Φ((truth − μ) / σ)", ylabel="fraction of images")
    ax.bars((np.arange(n) + 0.5) / n, frac, 0.9 / n, COLORS[0])
    ax.hline(1.0 / n, color=COLORS[1])
    return (ax.to_svg(), "Where each true mass falls in its predictive distribution. Flat (dashed "
                         "line): calibrated; U shape: error bars too small; hump: too large.")


def _reliability_figure(rel: Mapping) -> tuple[str, str] | None:
    """Observed vs nominal coverage of the central predictive intervals."""
    levels, observed = _nums(rel.get("levels") or []), _nums(rel.get("observed") or [])
    if len(levels) == 0 or len(levels) != len(observed):
        return None
    ax = Axes((0, 1), (0, 1), title="Reliability diagram", xlabel="nominal coverage",
              ylabel="observed coverage")
    ax.line([0, 1], [0, 1], "#888", 1, "3,3", label="calibrated")
    ax.line(levels, observed, COLORS[0])
    ax.points(levels, observed, COLORS[0], label="central intervals")
    return (ax.to_svg(), "Share of true masses inside the central predictive interval of each "
                         "nominal level; below the diagonal: overconfident.")


def _uncertainty_html(score: Score) -> str:
    """The entry page's uncertainty track: pooled scores, per fold, PIT and reliability."""
    unc = score.uncertainty
    if not unc:
        return ('<h2>Uncertainty</h2><p class="muted">No uncertainties: this entry gives point '
                "predictions only.</p>")
    heads = "".join(f'<th data-type="number">{esc(h)}</th>' for h, _ in UNCERTAINTY_STATS.values())

    def cells(stats):
        return "".join(f"<td>{_unc_text(k, _num(stats.get(k)))}</td>" for k in UNCERTAINTY_STATS)

    rows = [("all", _obj(unc, "pooled"))] + [(f"fold {r.get('fold')}", r) for r in unc.get("folds") or []
                                             if isinstance(r, dict)]
    rows += [(f"log M {_num(b.get('lo')) or 0:.2f}-{_num(b.get('hi')) or 0:.2f}", b)
             for b in unc.get("mass_bins") or [] if isinstance(b, dict)]
    body = "".join(f'<tr><td class="text">{esc(name)}</td>{cells(st)}</tr>' for name, st in rows)
    intervals = {k: score.uncertainty_ci68(k) for k in UNCERTAINTY_STATS}
    if any(intervals.values()):
        body += ('<tr><td class="text">all: 68% interval (bootstrap over clusters)</td>'
                 + "".join(f"<td>{_unc_text(k, v[0])}–{_unc_text(k, v[1])}</td>" if v else "<td></td>"
                           for k, v in intervals.items()) + "</tr>")
    figs = [f for f in (_pit_figure(unc.get("pit_hist")), _reliability_figure(_obj(unc, "reliability"))) if f]
    return (f'<h2>Uncertainty</h2><p class="muted">Predictive law: {esc(unc.get("kind"))}. '
            + " ".join(esc(t) for _, t in UNCERTAINTY_STATS.values()) + "</p>"
            f'<table class="sortable" id="uncertainty"><thead><tr><th class="text" data-type="text">images</th>'
            f"{heads}</tr></thead><tbody>{body}</tbody></table>"
            + (_figure_grid(figs) if figs else ""))


def _fmt3(v) -> str:
    v = _num(v)
    return "n/a" if v is None else f"{v:.3f}"


def _diag_core_html(diag: Mapping, row: dict) -> str:
    """Both core-sensitivity figures, the answer against the null control, controls, notes."""
    grad = "" if row.get("core_gradient") is None else f", gradient <b>{_fmt3(row['core_gradient'])}</b>"
    out = [f"<p>Core sensitivity ratio (R &lt; 0.15 R500c): {esc(row.get('core_method'))} "
           f"<b>{_fmt3(row.get('core_ratio'))}</b>{grad}; images: {esc(diag.get('n_images'))}.</p>",
           f'<p class="muted">{esc(CORE_DEFINITIONS)}</p>']
    use = _obj(diag, "core_use_vs_null")
    if use:
        ci = use.get("ci95") if isinstance(use.get("ci95"), list) and len(use["ci95"]) == 2 else [None, None]
        out.append(f"<p>{esc(str(use.get('question', '')).capitalize())} <b>{esc(use.get('answer'))}</b> "
                   f"(index {_fmt3(use.get('value'))}, 95% interval {_fmt3(ci[0])}-{_fmt3(ci[1])}, "
                   f"by {esc(use.get('answered_by'))}; 1: as photons alone).</p>"
                   f'<p class="muted">{esc(use.get("definition", ""))}</p>')
    ctl = _obj(diag, "controls")
    if ctl:
        trs = "".join(
            f'<tr><td class="text">{esc(name)}</td><td class="text">{esc(_obj(ctl, name).get("what"))}</td>'
            f'<td>{_fmt3(_obj(_obj(_obj(ctl, name), "core_sensitivity_detail"), "0.15").get("occlusion"))}</td>'
            f'<td>{_fmt3(_obj(_obj(_obj(ctl, name), "core_sensitivity_detail"), "0.15").get("gradient"))}</td></tr>'
            for name in ctl)
        out.append('<table><thead><tr><th class="text">control (same clusters)</th><th class="text">what</th>'
                   "<th>core sens. (occlusion)</th><th>core sens. (gradient)</th></tr></thead>"
                   f"<tbody>{trs}</tbody></table>")
    notes = [n for n in diag.get("notes") or [] if isinstance(n, str)]
    if notes:
        out.append("<ul>" + "".join(f"<li>{esc(n)}</li>" for n in notes) + "</ul>")
    return "".join(out)


def _diag_figures(diag: dict) -> list[tuple[str, str]]:
    """SVG figures drawn from a diagnostics summary (run_diagnostics)."""
    figs = []
    edges = diag.get("r_edges_r500c")
    if not isinstance(edges, list) or len(edges) < 2:
        return figs
    e = np.array([np.nan if v is None else v for v in edges], float)
    rc = 0.5 * (e[1:] + e[:-1])

    def arr(x):
        return np.array([np.nan if v is None else v for v in (x or [])], float)

    dd = diag.get("deepdream")
    if isinstance(dd, dict) and dd:
        series = [(k, arr(v.get("mean")), arr(v.get("std"))) for k, v in dd.items() if isinstance(v, dict)]
        series = [s for s in series if s[1].shape == rc.shape]
        if series:
            hi = max(np.nanmax(np.abs(m) + np.nan_to_num(s)) for _, m, s in series if np.isfinite(m).any())
            ax = Axes((0, e[-1]), (-0.1 * hi, 1.1 * hi), title="DeepDream: dN/N after ascent",
                      xlabel="R / R500c", ylabel="dN / N")
            for i, (k, m, s) in enumerate(series):
                ax.errorbar(rc, m, s, COLORS[i], label=f"{k}: mean ± std")
                ax.line(rc, m, COLORS[i])
            ax.vline(0.15)
            ax.vline(0.2)
            ax.hline(0)
            n_out = len(diag.get("outliers") or [])
            ax.note(f"{n_out} image(s) flagged", 0)
            space = diag.get("deepdream_space") or "counts"
            figs.append((ax.to_svg(), "Fractional change of photons under gradient ascent towards higher mass "
                                      f"(first and second iteration, steps in {space}), averaged over test "
                                      "clusters; dotted: 0.15 and 0.2 R500c."))
    rel = _obj(_obj(diag, "relative_to_null"), "iter1")
    ratio, lo, hi = arr(rel.get("ratio")), arr(rel.get("lo")), arr(rel.get("hi"))
    if ratio.shape == rc.shape == lo.shape == hi.shape and np.isfinite(ratio).any():
        top = np.nanmax(np.concatenate([hi[np.isfinite(hi)], ratio[np.isfinite(ratio)], [1.0]]))
        ax = Axes((0, e[-1]), (0, 1.15 * top), title="DeepDream relative to the null control",
                  xlabel="R / R500c", ylabel="dN/N (model) / dN/N (null)")
        ax.line(rc, ratio, COLORS[0], label="model / null, first step")
        ax.line(rc, lo, COLORS[0], width=0.8, dash="2,2", label="95% bootstrap over clusters")
        ax.line(rc, hi, COLORS[0], width=0.8, dash="2,2")
        ax.hline(1.0)
        ax.vline(0.15)
        ax.vline(0.2)
        figs.append((ax.to_svg(), "The model's dN/N per radial bin over that of the null control (mean "
                                  "log10(1+N) over pixels) on the same clusters with the same step: 1 is what "
                                  "photons alone give; below 1 in the core: the model uses the core less."))
    sal = diag.get("saliency_profile")
    if isinstance(sal, dict):
        m = arr(sal.get("median"))
        if m.shape == rc.shape and np.isfinite(m).any() and np.nanmax(m) > 0:
            ax = Axes((0, e[-1]), (0, np.nanmax(m) * 1.2), title="Saliency |df/dx|", xlabel="R / R500c",
                      ylabel="relative |d log10 M / d N|")
            ax.line(rc, m, COLORS[3], label="median over images")
            ax.vline(0.15)
            ax.vline(0.2)
            figs.append((ax.to_svg(), "Radial profile of the gradient magnitude (image mean = 1)."))
    return figs


def _meta_html(entry: Entry) -> str:
    """Metadata list: every value escaped, only http(s) values become links."""
    meta = entry.metadata
    items = []
    for key in sorted(meta, key=str):
        val = meta[key]
        if isinstance(val, (list, tuple)):
            text = ", ".join(link(v) if safe_url(v) else esc(v) for v in val)
        elif isinstance(val, dict):
            text = esc(json.dumps(val, sort_keys=True)[:500])
        elif safe_url(val):
            text = link(val)
        else:
            text = esc(val)
        items.append(f"<dt>{esc(key)}</dt><dd>{text}</dd>")
    for key, v in (("kind", entry.kind), ("trusted (trained by the harness)", entry.trusted),
                   ("dataset version", entry.dataset["version"]), ("dataset tag", entry.dataset["tag"]),
                   ("dataset commit", entry.dataset["commit"]),
                   ("splits sha256", entry.dataset["splits_sha256"]),
                   ("harness version", entry.harness_version), ("created", entry.created)):
        if v is not None:
            items.append(f"<dt>{esc(key)}</dt><dd><code>{esc(v)}</code></dd>")
    return f'<dl class="meta">{"".join(items)}</dl>'


def _copy_diag_pngs(le: LoadedEntry, dest: Path) -> list[str]:
    """Copy the entry's diagnostics PNGs (regular files with a PNG signature) into dest.

    Only files whose names are plain plot names (:data:`PNG_STEM`) are copied, under the
    same name.
    """
    src = le.path.with_name(le.path.name[: -len(".json")] + ".diagnostics")
    if not src.is_dir() or src.is_symlink():
        return []
    names = []
    for p in sorted(src.glob("*.png")):
        if p.is_symlink() or not p.is_file() or not PNG_STEM.match(p.stem):
            continue
        with open(p, "rb") as fh:
            if fh.read(8) != PNG_MAGIC:
                continue
        dest.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(p, dest / p.name)
        names.append(p.name)
    return names


def _shift_html(row: dict) -> str:
    """The entry's table of the extra test sets (empty when it has none)."""
    cells = dict(row.get("shift") or {})
    if row.get("hidden") is not None:
        cells["hidden"] = row["hidden"]
    if not cells:
        return ""

    def pm(v, sd, fmt):
        if v is None:
            return ""
        return fmt(v) + ("" if sd is None else f" ± {fmt(sd)}")

    body = []
    for name, c in cells.items():
        if not c["scored"]:
            body.append(f'<tr><td class="text">{esc(name)}</td><td class="text">'
                        f'{esc(c.get("change") or "")}</td><td colspan="3" class="text">not '
                        f'scored: {esc(c.get("reason") or "")}</td></tr>')
            continue
        body.append(
            f'<tr><td class="text">{esc(name)}</td><td class="text">{esc(c.get("change") or "")}'
            f'</td><td>{pm(c["scatter"], c["scatter_std"], _pct)}</td>'
            f'<td>{pm(c["bias"], c["bias_std"], lambda v: f"{v:+.3f}")}</td>'
            f'<td data-sort="{_sort_value(c["ratio"])}">{esc(_ratio_text(c["ratio"], c.get("ratio_ci")))}'
            '</td></tr>')
    return ('<h2>Shift track and hidden set</h2><table class="sortable" id="shift"><thead><tr>'
            '<th class="text" data-type="text">set</th><th class="text" data-type="text">what '
            'changes</th><th data-type="number">scatter</th><th data-type="number">bias (dex)'
            '</th><th data-type="number">ratio to in-domain (68% interval)</th></tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table><p class="muted">{esc(SHIFT_DEFINITIONS)}</p>')


def _entry_html(le: LoadedEntry, row: dict, png_names: list[str]) -> str:
    """An entry's page: metadata, metrics, per fold, uncertainty, test sets, figures, diagnostics."""
    score = le.entry.score
    name = row["name"]
    parts = [f'<p><a href="../index.html">← leaderboard</a></p><h1>{esc(name)}</h1>', _meta_html(le.entry)]
    if le.problems:
        parts.append('<p class="badge warn">' + esc("; ".join(le.problems)) + "</p>")
    parts += _metrics_parts(score)
    parts += _folds_parts(score)
    parts.append(_uncertainty_html(score))
    parts.append(_shift_html(row))
    figs = _figures(score, le.errors)
    if figs:
        parts.append("<h2>Figures</h2>" + _figure_grid(figs))
    parts += _diagnostics_parts(le, row, png_names)
    return _page(f"{name} · clustermass", "\n".join(parts), "../")


def _metrics_parts(score: Score) -> list[str]:
    """The pooled metrics table (none without pooled statistics)."""
    pooled = score.section("pooled")
    if not pooled:
        return []
    ci = score.section("pooled_ci68")

    def cell(key, frac_key=None):
        return _pooled_cell(pooled, ci, key, frac_key)

    return [
        "<h2>Metrics</h2><table><tbody>"
        f'<tr><th class="text">images / clusters / seeds</th><td>{esc(score.n_images)} / '
        f'{esc(score.n_clusters)} / {len(score.seeds)}</td></tr>'
        f'<tr><th class="text">bias, mean</th><td>{cell("bias_mean_dex")}</td></tr>'
        f'<tr><th class="text">bias, median</th><td>{cell("bias_median_dex")}</td></tr>'
        f'<tr><th class="text">scatter, Gaussian fit</th><td>{cell("sigma_gauss_dex", "scatter_gauss_frac")}</td></tr>'
        f'<tr><th class="text">scatter, standard deviation</th><td>{cell("sigma_std_dex", "scatter_std_frac")}</td></tr>'
        f'<tr><th class="text">scatter, robust (16-84%/2)</th><td>{cell("sigma_robust_dex", "scatter_robust_frac")}</td></tr>'
        f'<tr><th class="text">outliers (|ε| &gt; 3σ)</th><td>{_pct(_num(pooled.get("outlier_frac")))}</td></tr>'
        "</tbody></table>"
    ]


def _pooled_cell(pooled: Mapping, ci: Mapping, key: str, frac_key: str | None = None) -> str:
    """A pooled statistic in dex, its fractional scatter beside, then its 68% interval: the
    interval of the fraction when there is one, else of the dex value."""
    v = _num(pooled.get(key))
    if v is None:
        return ""
    txt = f"{v:+.4f} dex" if key.startswith("bias") else f"{v:.4f} dex"
    if frac_key and _num(pooled.get(frac_key)) is not None:
        txt += f" ({_pct(_num(pooled.get(frac_key)))})"
    c = ci.get(frac_key or key)
    if isinstance(c, list) and len(c) == 2 and None not in c:
        txt += (f' <span class="muted">[68%: {_pct(c[0])}, {_pct(c[1])}]</span>' if frac_key else
                f' <span class="muted">[68%: {c[0]:+.4f}, {c[1]:+.4f}]</span>')
    return txt


def _folds_parts(score: Score) -> list[str]:
    """The per-fold table (none without fold rows)."""
    rows = score.fold_rows
    if not rows:
        return []
    body = "".join(
        f"<tr><td>{esc(r.get('fold'))}</td><td>{esc(r.get('n_images'))}</td><td>{_signed4(r.get('bias_mean_dex'))}</td>"
        f"<td>{_pct(_num(r.get('scatter_gauss_frac')))}</td><td>{_pct(_num(r.get('scatter_std_frac')))}</td></tr>"
        for r in rows)
    return ['<h2>Per fold</h2><table class="sortable" id="folds"><thead><tr>'
            '<th data-type="number">fold</th><th data-type="number">images</th>'
            '<th data-type="number">bias (dex)</th><th data-type="number">scatter (Gauss)</th>'
            '<th data-type="number">scatter (std)</th></tr></thead>'
            f"<tbody>{body}</tbody></table>"]


def _signed4(v) -> str:
    v = _num(v)
    return "" if v is None else f"{v:+.4f}"


def _diagnostics_parts(le: LoadedEntry, row: dict, png_names: list[str]) -> list[str]:
    """The interpretation diagnostics: the summary's numbers, figures and flagged images, then
    the copied PNGs (none when the entry has neither)."""
    diag = le.entry.diagnostics
    if not (diag or png_names):
        return []
    parts = ["<h2>Interpretation diagnostics</h2>"]
    if diag:
        parts.append(_diag_core_html(diag, row))
        dfigs = _diag_figures(diag)
        if dfigs:
            parts.append(_figure_grid(dfigs))
        outl = diag.get("outliers") or []
        if outl:
            parts.append(_outliers_html(outl))
    if png_names:
        parts.append(_diag_pngs_html(le.slug, png_names))
    return parts


def _outliers_html(outl: list) -> str:
    """The flagged images (the first 50) with why, folded away."""
    items = "".join(f"<li>{esc(o.get('image_id'))} (fold {esc(o.get('fold'))}): "
                    f"{esc('; '.join(map(str, o.get('reasons') or [])))}</li>" for o in outl[:50])
    return f"<details><summary>{len(outl)} flagged image(s)</summary><ul>{items}</ul></details>"


def _diag_pngs_html(slug: str, png_names: list[str]) -> str:
    """The diagnostics PNGs copied beside the page (:func:`_copy_diag_pngs`)."""
    return '<div class="figs">' + "".join(
        f'<figure><img class="diag" src="{esc(slug)}/{esc(n)}" alt="{esc(n)}"></figure>'
        for n in png_names) + "</div>"


def _markdown(rows: list[dict], dataset_info: dict) -> str:
    lines = ["# clustermass leaderboard", ""]
    info = ", ".join(f"{md_escape(k)}: {md_escape(v if k != 'splits_sha256' else str(v)[:12])}"
                     for k, v in dataset_info.items() if v is not None)
    if info:
        lines += [info, ""]
    lines += ["| # | Entry | Scatter | 68% CI | Bias (dex) | Folds mean ± std | Best fold | Worst fold | "
              "Core sensitivity (occlusion; gradient) | Dataset | Date |",
              "|---:|---|---:|---|---:|---|---:|---:|---|---|---|"]
    for i, r in _ranked(rows):
        ci = r["scatter_ci_frac"]
        cells = [
            _rank_text(i, r), md_escape(r["name"]) + (" (oracle, not observable)" if r.get("oracle") else ""),
            _pct(r["scatter_frac"]),
            "" if not ci else f"{_pct(ci[0])} to {_pct(ci[1])}",
            "" if r["bias_dex"] is None else f"{r['bias_dex']:+.3f}",
            "" if r["fold_mean_frac"] is None else f"{_pct(r['fold_mean_frac'])} ± {_pct(r['fold_std_frac'])}",
            "" if r["best_fold"] is None else f"{_pct(r['best_fold'][1])} (fold {r['best_fold'][0]})",
            "" if r["worst_fold"] is None else f"{_pct(r['worst_fold'][1])} (fold {r['worst_fold'][0]})",
            "" if r["core_ratio"] is None else f"{r['core_ratio']:.2f} ({md_escape(r['core_method'])})"
            + ("" if r.get("core_gradient") is None else f"; gradient {r['core_gradient']:.2f}"),
            md_escape(r["dataset_version"] or ""), md_escape(r["date"] or ""),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Scatter: ln(10) x sigma of the best-fit Gaussian to log10 M_pred - log10 M_true "
              "(out of fold); CI: bootstrap over clusters. Rank 'floor': an oracle computed from "
              "the simulation truth (not observable), never ranked.", ""]
    lines += [CORE_DEFINITIONS, ""]
    lines += _markdown_uncertainty(rows)
    lines += _markdown_shift(rows)
    return "\n".join(lines)


def _markdown_shift(rows: list[dict]) -> list[str]:
    """The hidden set and the shift track as a list (entries with test-set scores only)."""
    with_sets = [r for _, r in _ranked(rows) if r.get("shift") or r.get("hidden")]
    if not with_sets:
        return []
    lines = ["## Hidden set and shift track", ""]
    for r in with_sets:
        parts = [f"hidden {_hidden_text(r.get('hidden'))[0] or 'n/a'}"]
        for name, c in (r.get("shift") or {}).items():
            if not c["scored"] or c["scatter"] is None:
                parts.append(f"{md_escape(name)} not scored")
                continue
            bias = "" if c["bias"] is None else f", bias {c['bias']:+.3f}"
            ratio = ("" if c["ratio"] is None else
                     f", ratio {md_escape(_ratio_text(c['ratio'], c.get('ratio_ci')))}")
            parts.append(f"{md_escape(name)} {_pct(c['scatter'])}{bias}{ratio}")
        lines.append(f"- {md_escape(r['name'])}: " + "; ".join(parts))
    lines += ["", SHIFT_DEFINITIONS, ""]
    return lines


def _markdown_uncertainty(rows: list[dict]) -> list[str]:
    """The uncertainty track as a list (entries with error bars only)."""
    with_unc = [r for _, r in _ranked(rows) if r.get("crps_dex") is not None]
    if not with_unc:
        return []
    lines = ["## Uncertainty track", ""]
    for r in with_unc:
        stats = ", ".join(f"{h} {_unc_text(k, r.get(k)) or 'n/a'}"
                          for k, (h, _) in UNCERTAINTY_STATS.items())
        lines.append(f"- {md_escape(r['name'])}: {stats}")
    lines += [""] + [text for _, text in UNCERTAINTY_STATS.values()] + [""]
    return lines


# --------------------------------------------------------------------------------------
# entry point
# --------------------------------------------------------------------------------------
def _truth_and_info(dataset) -> tuple[pd.DataFrame, dict]:
    if isinstance(dataset, pd.DataFrame):
        return dataset, {}
    card = dataset.card or {}
    info = {"dataset": card.get("name"), "version": card.get("version"), "source": card.get("source"),
            "renderer": card.get("renderer"), "images": card.get("n_images"),
            "splits_sha256": card.get("splits_sha256")}
    return dataset.catalog, info


def _prepare_site(out: Path) -> None:
    marker = out / SITE_MARKER
    if out.exists() and any(out.iterdir()) and not marker.exists():
        raise EntryError(f"{out} is a non-empty folder that is not a rendered leaderboard site; "
                         "choose an empty or new folder for --out")
    if out.exists():
        # Only our own outputs are removed: stale pages must not survive a re-render.
        for sub in ("entries", "assets"):
            shutil.rmtree(out / sub, ignore_errors=True)
    (out / "entries").mkdir(parents=True, exist_ok=True)
    write_text(marker, "written by leaderboard.render.render_site; the folder is rebuilt on each render\n")
    shutil.copytree(ASSETS, out / "assets", dirs_exist_ok=True)


def render_site(entries_dir, dataset, out_dir="leaderboard/site", *, strict: bool = True) -> Path:
    """Render the static leaderboard site and its Markdown table.

    Parameters
    ----------
    entries_dir : path or list of paths
        Folder(s) of entry files ``<slug>.json`` with ``<slug>.predictions.csv`` beside.
    dataset : catalog DataFrame, or a loaded dataset (anything with ``catalog`` and ``card``)
        The truth of each image for the figures; a dataset's card also gives the dataset
        version, against which entries of other versions are flagged.
    out_dir : path
        Site folder; it is rebuilt (old entry pages removed).
    strict : bool
        Raise on invalid entry files (default) or skip them.

    Returns
    -------
    Path of ``index.html``.
    """
    catalog, info = _truth_and_info(dataset)
    out = Path(out_dir)
    board = load_board(entries_dir, strict=strict)
    _prepare_site(out)
    rows = []
    for le in board:
        if le.predictions is not None:
            le.errors, problems = per_image_errors(le.predictions, catalog)
            le.problems += problems
        le.row = table_row(le, info.get("version"), info.get("splits_sha256"))
        pngs = _copy_diag_pngs(le, out / "entries" / le.slug)
        write_text(out / "entries" / f"{le.slug}.html", _entry_html(le, le.row, pngs))
        rows.append(le.row)
    index = write_text(out / "index.html", _index_html(rows, info, _pdf_overlay_figure(board)))
    write_text(out / "LEADERBOARD.md", _markdown(rows, info))
    return index
