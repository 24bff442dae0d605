"""The rendered site in a real headless browser (Debian's chromium, DevTools over a pipe).

Install: ``apt-get install -y chromium`` (the test needs only the browser; no driver and
no Python package: the DevTools protocol runs over ``--remote-debugging-pipe``).
"""

from __future__ import annotations

import pytest

from cdp_pipe import Chromium, find_chromium
from lb_helpers import write_entries
from leaderboard.render import render_site

CHROMIUM = find_chromium()
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not installed (apt-get install -y chromium): browser test skipped")

EVIL = '<script>window.__pwned=1</script><img src=x onerror="window.__pwned=2"><svg onload="window.__pwned=3">'


@pytest.fixture(scope="module")
def site(fake_dataset, tmp_path_factory):
    d = tmp_path_factory.mktemp("entries")
    diag = {"core_sensitivity": 0.4, "core_sensitivity_method": "occlusion", "n_images": 2,
            "r_edges_r500c": [0, 0.15, 0.5, 1.0],
            "deepdream": {"iter1": {"mean": [0, 0.2, 0.3], "std": [0, 0.1, 0.1]}},
            "outliers": [{"image_id": EVIL, "fold": 0, "reasons": [EVIL]}]}
    specs = [("evil", "Evil " + EVIL[:80], 0.06,
              {"metadata": {"authors": [EVIL], "hardware": EVIL, "homepage": "javascript:window.__pwned=4",
                            "code_url": "https://example.org/code"},
               "diagnostics": diag}),
             ("good", "Good model", 0.03, None),
             ("bad", "Bad model", 0.2, {"kind": "baseline"})]
    write_entries(d, fake_dataset, specs)
    return render_site(d, fake_dataset, tmp_path_factory.mktemp("site") / "site")


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    b = Chromium(CHROMIUM, tmp_path_factory.mktemp("chromium-profile"))
    yield b
    b.close()


NAMES = "Array.from(document.querySelectorAll('#leaderboard tbody tr td:nth-child(2) a')).map(a => a.textContent)"


def test_index_loads_sorts_and_runs_no_injected_script(site, browser):
    browser.open(site.as_uri())
    assert browser.errors() == []
    assert browser.evaluate("document.documentElement.getAttribute('data-sort-ready')") == "1"
    assert browser.evaluate("typeof window.__pwned") == "undefined"
    assert browser.evaluate(NAMES) == ["Good model", "Evil " + EVIL[:80], "Bad model"]  # by scatter
    header = "document.querySelector(\"th[data-key='name']\")"
    browser.evaluate(f"{header}.click()")
    assert browser.evaluate(f"{header}.getAttribute('aria-sort')") == "ascending"
    assert browser.evaluate(NAMES) == ["Bad model", "Evil " + EVIL[:80], "Good model"]
    browser.evaluate(f"{header}.click()")
    assert browser.evaluate(f"{header}.getAttribute('aria-sort')") == "descending"
    assert browser.evaluate(NAMES)[0] == "Good model"
    scatter = "document.querySelector(\"th[data-key='scatter']\")"
    browser.evaluate(f"{scatter}.click(); {scatter}.click()")  # descending scatter: worst first
    assert browser.evaluate(NAMES)[0] == "Bad model"
    assert browser.evaluate("document.querySelectorAll('script').length") == 1
    assert browser.errors() == []


def test_entry_page_plots_and_escaping(site, browser):
    browser.open((site.parent / "entries" / "evil.html").as_uri())
    assert browser.errors() == []
    assert browser.evaluate("typeof window.__pwned") == "undefined"
    titles = browser.evaluate("Array.from(document.querySelectorAll('svg.plot > title')).map(t => t.textContent)")
    for t in ("Error PDF", "Predicted vs true", "Scatter per test fold", "Bias and scatter by mass",
              "Residuals by physical state", "DeepDream: dN/N after ascent"):
        assert t in titles
    # Plots are drawn (non-empty boxes with content).
    sizes = browser.evaluate("Array.from(document.querySelectorAll('svg.plot')).map("
                             "s => [s.getBoundingClientRect().width, s.querySelectorAll('*').length])")
    assert all(w > 100 and n > 20 for w, n in sizes)
    # The submitted markup is shown as text, not parsed.
    assert browser.evaluate("document.body.textContent.includes('<script>window.__pwned=1</script>')")
    assert browser.evaluate("document.querySelectorAll('img[src=x], svg[onload]').length") == 0
    hrefs = browser.evaluate("Array.from(document.links).map(a => a.protocol)")
    assert set(hrefs) <= {"file:", "https:", "http:"}
    # The per-fold table sorts too.
    browser.evaluate("document.querySelector('#folds th').click(); document.querySelector('#folds th').click()")
    first = browser.evaluate("document.querySelector('#folds tbody tr td').textContent")
    assert first == "9"
    assert browser.errors() == []
