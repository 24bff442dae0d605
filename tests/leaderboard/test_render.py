"""The static leaderboard site and its Markdown table."""

from __future__ import annotations

import json
import re
import shutil

import pytest

from lb_helpers import CatalogOnlyDataset, write_entries
from leaderboard.render import esc, load_board, md_escape, render_site, safe_url

EVIL = '<script>window.__pwned=1</script><img src=x onerror="window.__pwned=2">'


@pytest.fixture(scope="module")
def entries_dir(fake_dataset, tmp_path_factory):
    d = tmp_path_factory.mktemp("entries")
    diag = {"core_sensitivity": 0.05, "core_sensitivity_method": "gradient",
            "n_images": 4,
            "r_edges_r500c": [0, 0.1, 0.2, 0.5, 1.0],
            "deepdream": {"iter1": {"mean": [0, 0.01, 0.2, 0.3], "std": [0, 0.01, 0.1, 0.1]},
                          "iter2": {"mean": [0, 0.02, 0.4, 0.6], "std": [0, 0.01, 0.1, 0.2]}},
            "saliency_profile": {"median": [0.1, 0.5, 1.2, 1.0]},
            "outliers": [{"image_id": EVIL, "fold": 1, "reasons": [EVIL]}]}
    specs = [
        ("cnn", "CNN " + EVIL, 0.05, {
            "metadata": {"authors": [EVIL, "B. | Pipe"], "homepage": "javascript:alert(document.cookie)",
                         "paper_url": "https://arxiv.org/abs/1810.07703", "hardware": EVIL,
                         "code_url": "http://example.org/\"onmouseover=\"alert(1)",
                         "notes": "[click](javascript:alert(1)) | </td></tr></table><script>x()</script>"},
            "diagnostics": diag}),
        ("lx", "L_X [core-excised](http://evil) | x", 0.08, None),
        ("mean", "training mean", 0.3, {"kind": "baseline"}),
    ]
    write_entries(d, fake_dataset, specs)
    # An entry scored on another dataset version is shown, flagged.
    mean = json.loads((d / "mean.json").read_text())
    mean["dataset"]["version"] = "9.9.9-other"
    (d / "mean.json").write_text(json.dumps(mean))
    pngs = d / "cnn.diagnostics"
    pngs.mkdir()
    (pngs / "deepdream_profile.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 64)
    (pngs / "not_really.png").write_text("<svg onload=alert(1)>")
    return d


@pytest.fixture(scope="module")
def site(entries_dir, fake_dataset, tmp_path_factory):
    return render_site(entries_dir, fake_dataset, tmp_path_factory.mktemp("site") / "site")


def test_site_layout(site):
    root = site.parent
    assert site.name == "index.html"
    for rel in ("assets/sort.js", "assets/style.css", "LEADERBOARD.md", "entries/cnn.html",
                "entries/lx.html", "entries/mean.html", "entries/cnn/deepdream_profile.png"):
        assert (root / rel).is_file(), rel
    assert not (root / "entries/cnn/not_really.png").exists()  # not a PNG: not copied
    html = site.read_text()
    # No network: every src/href is relative or an escaped submitter link.
    for url in re.findall(r'(?:src|href)="([^"]+)"', html):
        assert not url.startswith(("http:", "https:", "//")), url


def test_submitter_text_is_escaped(site):
    root = site.parent
    for page in [site, *sorted((root / "entries").glob("*.html"))]:
        html = page.read_text()
        # The only scripts are the site's own file.
        assert re.findall(r"<script[^>]*>", html) == ['<script src="' + ("../" if page != site else "")
                                                      + 'assets/sort.js" defer>']
        assert "<img src=x" not in html and "onerror=\"window" not in html
        assert 'href="javascript:' not in html.lower()
        assert 'onmouseover="alert' not in html
    cnn = (root / "entries/cnn.html").read_text()
    assert esc(EVIL) in cnn  # shown, as text
    assert 'href="https://arxiv.org/abs/1810.07703"' in cnn
    assert "javascript:alert(document.cookie)" in cnn  # text only
    assert "Content-Security-Policy" in cnn


def test_table_contents(site, fake_dataset):
    html = site.read_text()
    rows = re.findall(r"<tr>(.*?)</tr>", html.split("<tbody>")[1])
    assert len(rows) == 3
    assert "CNN" in rows[0] and "training mean" in rows[2]  # ranked by scatter
    assert "other dataset version" in rows[2] and "trusted" in rows[2]
    assert "0.05" in rows[0] and "(gradient)" in rows[0]
    for header in ("Scatter", "Bias", "Fold scatter", "Best fold", "Worst fold", "Core sensitivity",
                   "Dataset", "Date"):
        assert header in html


def test_entry_page_figures(site):
    cnn = (site.parent / "entries/cnn.html").read_text()
    for title in ("Error PDF", "Predicted vs true", "Scatter per test fold", "Bias and scatter by mass",
                  "Residuals by physical state", "DeepDream: dN/N after ascent", "Saliency"):
        assert f"<title>{title}" in cnn, title
    assert 'src="cnn/deepdream_profile.png"' in cnn


def test_markdown_is_escaped(site):
    md = (site.parent / "LEADERBOARD.md").read_text()
    lines = [line for line in md.splitlines() if line.startswith("| ")]
    assert len(lines) == 4  # header + 3 entries
    for line in lines:
        assert line.count(" | ") == 10  # submitted pipes cannot add columns
    assert "<script>" not in md and "](http://evil)" not in md
    assert md_escape("a|b") == "a\\|b"


def test_refuses_to_clear_a_foreign_folder(entries_dir, fake_dataset, tmp_path):
    from benchmark.core.errors import EntryError

    (tmp_path / "mine.txt").write_text("keep")
    with pytest.raises(EntryError, match="not a rendered leaderboard site"):
        render_site(entries_dir, fake_dataset, tmp_path)
    assert (tmp_path / "mine.txt").read_text() == "keep"
    site = render_site(entries_dir, fake_dataset, tmp_path / "site")
    assert render_site(entries_dir, fake_dataset, tmp_path / "site") == site  # re-render in place


def test_urls_only_http():
    assert safe_url("https://example.org/x") == "https://example.org/x"
    for bad in ("javascript:alert(1)", "JaVaScRiPt:alert(1)", "data:text/html,x", "file:///etc/passwd",
                "//evil.org", "http:///nohost", " java\nscript:x", 42, None):
        assert safe_url(bad) is None, bad


def test_per_image_errors_join_the_truth(entries_dir, fake_dataset):
    import pandas as pd

    from leaderboard.render import per_image_errors

    pred = pd.read_csv(entries_dir / "lx.predictions.csv", dtype={"image_id": str})
    df, problems = per_image_errors(pred, fake_dataset.catalog)
    assert problems == [] and len(df) == len(fake_dataset.catalog)
    assert 0.04 < df["eps"].std() < 0.12  # the lx entry's predictions carry 0.08 dex of noise
    df, problems = per_image_errors(pred.iloc[:50], fake_dataset.catalog)
    assert len(df) == 50 and any("have no prediction" in p for p in problems)


def test_render_site_rejects_what_the_validator_rejects(entries_dir, fake_dataset, tmp_path):
    from benchmark.core.errors import EntryError

    d = tmp_path / "entries"
    shutil.copytree(entries_dir, d)
    entry = json.loads((d / "lx.json").read_text())
    entry["metrics"] = {"headline": {"scatter_frac": 0.1}, "pooled": {}}  # no harness score
    (d / "lx.json").write_text(json.dumps(entry))
    with pytest.raises(EntryError, match="lx.json"):
        render_site(d, fake_dataset, tmp_path / "site")


def test_invalid_entries_raise_one_error(entries_dir, fake_dataset, tmp_path):
    from benchmark.core.errors import EntryError

    d = tmp_path / "entries"
    shutil.copytree(entries_dir, d)
    (d / "broken.json").write_text("{not json")
    (d / "list.json").write_text("[1, 2]")
    with pytest.raises(EntryError, match="2 invalid") as err:
        render_site(d, fake_dataset, tmp_path / "site")
    assert "broken.json" in str(err.value) and "list.json" in str(err.value)
    assert len(load_board(d, strict=False)) == 3


def test_predictions_cannot_escape_the_entries_folder(entries_dir, fake_dataset, tmp_path):
    from benchmark.core.errors import EntryError
    from benchmark.entries import Entry
    from leaderboard.render import read_predictions

    d = tmp_path / "entries"
    shutil.copytree(entries_dir, d)
    entry = json.loads((d / "lx.json").read_text())
    entry["predictions_file"] = "../../../etc/passwd"
    (d / "lx.json").write_text(json.dumps(entry))
    with pytest.raises(EntryError, match="predictions_file"):
        render_site(d, fake_dataset, tmp_path / "site")
    assert "lx" not in {le.slug for le in load_board(d, strict=False)}
    # The renderer's own guard, behind the schema's.
    df, problems = read_predictions(Entry.from_json(entry, source=d / "lx.json"))
    assert df is None and "leaves the entries folder" in problems[0]


@pytest.mark.bench
def test_bench_render_50_entries(benchmark, fake_dataset, tmp_path):
    specs = [(f"entry{i:02d}", f"Entry {i} <b>bold</b>", (0.04, 0.08, 0.15)[i % 3], None) for i in range(50)]
    d = write_entries(tmp_path / "entries", fake_dataset, specs)
    site = benchmark.pedantic(render_site, args=(d, fake_dataset, tmp_path / "site"), rounds=3, iterations=1)
    assert len(list((tmp_path / "site/entries").glob("*.html"))) == 50
    assert site.is_file()


@pytest.mark.bench
def test_bench_render_50_entries_study_size(benchmark, tmp_path):
    # 50 entries on a catalog of the study's size (7,896 images per entry).
    ds = CatalogOnlyDataset()
    specs = [(f"entry{i:02d}", f"Entry {i}", (0.04, 0.06, 0.1)[i % 3], None) for i in range(50)]
    d = write_entries(tmp_path / "entries", ds, specs, n_boot=20)
    benchmark.pedantic(render_site, args=(d, ds, tmp_path / "site"), rounds=2, iterations=1)
    assert len(list((tmp_path / "site/entries").glob("*.html"))) == 50


def test_uncertainty_columns_and_oracle_floor(fake_dataset, tmp_path):
    # An entry with calibrated error bars, an oracle with a smaller scatter, a point entry.
    import numpy as np
    import pandas as pd

    from benchmark.entries import make_entry, write_entry, write_predictions
    from benchmark.metrics import score

    cat = fake_dataset.catalog
    d = tmp_path / "entries"
    rng = np.random.default_rng(4)
    for slug, noise, sigma, meta in (("unc", 0.06, 0.06, {}), ("floor", 0.02, 0.02, {"oracle": True}),
                                     ("point", 0.04, None, {})):
        pred = pd.DataFrame({"image_id": cat["image_id"], "seed": 0,
                             "log10_m500c_pred": cat["log10_m500c"] + rng.normal(0, noise, len(cat))})
        if sigma is not None:
            pred["log10_m500c_sigma"] = sigma
        entry = make_entry(slug.title(), "baseline", score(pred, cat, fake_dataset.splits, n_boot=0),
                           fake_dataset, metadata=meta, slug=slug)
        write_predictions(d / entry.predictions_file, pred)
        write_entry(d / f"{slug}.json", entry)
    site = render_site(d, fake_dataset, tmp_path / "site")
    html = site.read_text()
    for header in ("CRPS (dex)", "Log score", "68% coverage", "95% coverage"):
        assert f">{header}</th>" in html, header
    assert "continuous ranked probability score" in html  # the explanation below the table
    rows = re.findall(r"<tr>(.*?)</tr>", html.split("<tbody>")[1])
    assert "oracle, not observable" in rows[0] and ">floor<" in rows[0]  # the floor, unranked
    assert '<td data-sort="1.5">1</td>' not in html and ">1</td>" in rows[1] and ">2</td>" in rows[2]
    # Ranked by scatter: point (0.04 dex) before unc (0.06 dex); only unc has error bars.
    assert re.findall(r'<td data-sort="([^"]*)">', rows[1])[-4:] == ["", "", "", ""]
    assert "" not in re.findall(r'<td data-sort="([^"]*)">', rows[2])[-4:]
    page = (site.parent / "entries/unc.html").read_text()
    assert "<title>PIT histogram" in page and "<title>Reliability diagram" in page
    assert "No uncertainties" in (site.parent / "entries/point.html").read_text()
    md = (site.parent / "LEADERBOARD.md").read_text()
    assert "## Uncertainty track" in md and "(oracle, not observable)" in md


def test_uncertainty_intervals_reach_the_entry_page(fake_dataset, tmp_path):
    import numpy as np
    import pandas as pd

    from benchmark.entries import load_entries, make_entry, write_entry, write_predictions
    from benchmark.metrics import score

    cat = fake_dataset.catalog
    rng = np.random.default_rng(5)
    pred = pd.DataFrame({"image_id": cat["image_id"], "seed": 0, "log10_m500c_sigma": 0.05,
                         "log10_m500c_pred": cat["log10_m500c"] + rng.normal(0, 0.05, len(cat))})
    d = tmp_path / "entries"
    entry = make_entry("Unc", "baseline", score(pred, cat, fake_dataset.splits, n_boot=40),
                       fake_dataset, slug="unc")
    write_predictions(d / entry.predictions_file, pred)
    write_entry(d / "unc.json", entry)
    loaded = load_entries(d)[0].score
    lo, hi = loaded.uncertainty_ci68("crps_dex")
    assert lo < loaded.uncertainty_stat("crps_dex") < hi
    site = render_site(d, fake_dataset, tmp_path / "site")
    page = (site.parent / "entries/unc.html").read_text()
    assert "68% interval (bootstrap over clusters)" in page
    assert f"{lo:.4f}–{hi:.4f}" in page


def _shift_set(name, ratio, **extra):
    """A ``metrics.testsets`` member as score_testsets writes it (``extra``: the intervals,
    absent from entries written before them)."""
    return {"name": name, "kind": "shift", "change": "less <b>exposure</b>", "status": "scored",
            "reason": None, "n_images": 126, "n_models": 10, "scatter_frac_mean": 0.1 * ratio,
            "scatter_frac_std": 0.01, "bias_dex_mean": 0.0, "bias_dex_std": 0.001,
            "in_domain_scatter_frac_mean": 0.1, "ratio": ratio, **extra}


def test_shift_ratios_show_their_interval_and_old_entries_render(fake_dataset, tmp_path):
    from benchmark.entries import load_entry

    d = write_entries(tmp_path / "entries", fake_dataset,
                      [("new", "New", 0.05, None), ("old", "Old", 0.08, None)])
    sets = {"new": {"exposure": _shift_set("exposure", 1.25, scatter_frac_ci68=[0.11, 0.14],
                                           ratio_ci68=[1.1, 1.41]),
                    "physics": _shift_set("physics", 0.97, scatter_frac_ci68=None,
                                          ratio_ci68=None)},
            # written before the intervals: no such keys at all
            "old": {"exposure": _shift_set("exposure", 1.6), "z": _shift_set("z", 1.3)}}
    for slug, members in sets.items():
        doc = json.loads((d / f"{slug}.json").read_text())
        doc["metrics"]["testsets"] = members
        (d / f"{slug}.json").write_text(json.dumps(doc))
    old = load_entry(d / "old.json").score.testset("exposure")
    assert old.ratio == 1.6 and old.ratio_ci68 is None and old.scatter_frac_ci68 is None
    assert load_entry(d / "new.json").score.testset("exposure").ratio_ci68 == (1.1, 1.41)
    site = render_site(d, fake_dataset, tmp_path / "site")
    rows = re.findall(r"<tr>(.*?)</tr>", site.read_text().split("<tbody>")[1])
    # Worst shift: the interval beside the point ratio, sorted by the point ratio.
    assert '<td data-sort="1.25">1.25 (1.10-1.41) <span class="muted">(exposure)</span>' in rows[0]
    assert '<td data-sort="1.6">1.60 <span class="muted">(exposure)</span>' in rows[1]
    page = (site.parent / "entries/new.html").read_text()
    assert '<td data-sort="1.25">1.25 (1.10-1.41)</td>' in page
    assert '<td data-sort="0.97">0.97</td>' in page
    assert "68% interval from a bootstrap over the set&#x27;s clusters" in page
    assert "less &lt;b&gt;exposure&lt;/b&gt;" in page
    assert '<td data-sort="1.3">1.30</td>' in (site.parent / "entries/old.html").read_text()
    md = (site.parent / "LEADERBOARD.md").read_text()
    assert "exposure 12.5%, bias +0.000, ratio 1.25 \\(1.10\\-1.41\\)" in md
    assert "exposure 16.0%, bias +0.000, ratio 1.60;" in md


def test_index_overlays_every_entry_error_pdf_with_its_gaussian(site):
    figure = site.read_text().split("<h2>Error PDFs</h2>")[1]
    assert "<title>Error PDFs of all entries</title>" in figure
    # Per entry a histogram and its dashed Gaussian, in the entry's colour; and the zero line.
    assert figure.count("<polyline") == 2 * 3 + 1
    assert figure.count('stroke-dasharray="4,3"') == 3
    legend = re.findall(r'font-size="10" fill="#222">([^<]*)</text>', figure)
    assert legend[0].startswith(esc("CNN " + EVIL)[:40]) and legend[-1].startswith("training mean")
    assert "<script>window" not in figure and "<img src=x" not in figure
