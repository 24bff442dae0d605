"""The uncertainty track: scores checked against independent computations, malformed
uncertainties refused by id, and a prediction file with sigmas through validation, scoring,
entry files and rendering."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm

from benchmark import entries, metrics, submission
from benchmark.core.errors import SubmissionError
from benchmark.metrics import score

N = 7896  # the study's size (make_catalog's default)


def _pred(cat, mu, sigma=None, quantiles=None):
    df = pd.DataFrame({"image_id": cat["image_id"], "log10_m500c_pred": mu})
    if sigma is not None:
        df["log10_m500c_sigma"] = sigma
    if quantiles is not None:
        for col, q in zip(metrics.QUANTILE_COLUMNS, quantiles):
            df[col] = q
    return df


@pytest.fixture(scope="module")
def full(make_catalog):
    return make_catalog()


@pytest.fixture(scope="module")
def calibrated(full):
    """Truth + N(0, 0.05) noise, each image's sigma 0.05: a perfectly calibrated Gaussian."""
    cat, splits = full
    rng = np.random.default_rng(11)
    mu = cat["log10_m500c"].to_numpy() + rng.normal(0, 0.05, len(cat))
    return cat, splits, mu, score(_pred(cat, mu, 0.05), cat, splits, n_boot=0)


def test_column_names_agree_across_modules():
    assert submission.UNCERTAINTY_COLUMNS == metrics.UNCERTAINTY_COLUMNS
    assert entries.UNCERTAINTY_COLUMNS == metrics.UNCERTAINTY_COLUMNS
    assert submission.SIGMA_COLUMN == metrics.SIGMA_COLUMN


def test_point_predictions_have_no_uncertainty(full):
    cat, splits = full
    r = score(_pred(cat, cat["log10_m500c"]), cat, splits, n_boot=0)
    assert r["uncertainty"] is None


def test_calibrated_gaussian_gives_uniform_pit_and_nominal_coverage(calibrated):
    _, _, _, r = calibrated
    u = r["uncertainty"]
    assert u["kind"] == "gaussian"
    n = u["pooled"]["n_images"]
    assert n == N
    # Binomial sampling error of a fraction p over n images; 4 sigma bounds.
    for p, key in ((0.68, "coverage_68"), (0.95, "coverage_95")):
        assert abs(u["pooled"][key] - p) < 4 * math.sqrt(p * (1 - p) / n), key
    for frac in u["pit_hist"]:
        assert abs(frac - 0.1) < 4 * math.sqrt(0.1 * 0.9 / n)
    levels, observed = u["reliability"]["levels"], u["reliability"]["observed"]
    assert np.allclose(observed, levels, atol=4 * math.sqrt(0.25 / n))
    assert u["pooled"]["z_std"] == pytest.approx(1.0, abs=0.03)
    assert u["pooled"]["sigma_mean_dex"] == pytest.approx(0.05)


def test_crps_and_log_score_match_closed_forms(calibrated):
    cat, _, mu, r = calibrated
    y, s = cat["log10_m500c"].to_numpy(), 0.05
    z = (y - mu) / s
    # Gneiting & Raftery (2007), eq. 21: CRPS of N(mu, s) at y.
    crps = s * (z * (2 * norm.cdf(z) - 1) + 2 * norm.pdf(z) - 1 / math.sqrt(math.pi))
    assert r["uncertainty"]["pooled"]["crps_dex"] == pytest.approx(crps.mean(), rel=1e-10)
    logs = -norm.logpdf(y, mu, s)
    assert r["uncertainty"]["pooled"]["log_score"] == pytest.approx(logs.mean(), rel=1e-10)


def test_per_fold_and_mass_bins_partition_the_images(calibrated):
    cat, splits, _, r = calibrated
    u = r["uncertainty"]
    assert [f["fold"] for f in u["folds"]] == list(range(splits.n_folds))
    assert sum(f["n_images"] for f in u["folds"]) == len(cat)
    assert sum(b["n_images"] for b in u["mass_bins"]) == len(cat)
    assert len(u["mass_bins"]) == len(r["mass_bins"]["bins"])
    fold0 = cat["fold"].to_numpy() == 0
    assert u["folds"][0]["n_images"] == int(fold0.sum())


def test_overconfident_sigmas_are_caught(calibrated):
    cat, splits, mu, _ = calibrated
    u = score(_pred(cat, mu, 0.025), cat, splits, n_boot=0)["uncertainty"]
    # Truth ~ N(mu, 0.05) but sigma 0.025: |z| < 0.9945 / 2 -> coverage ~ 0.32.
    assert u["pooled"]["coverage_68"] == pytest.approx(2 * norm.cdf(0.9945 / 2) - 1, abs=0.02)
    assert u["pooled"]["z_std"] == pytest.approx(2.0, abs=0.06)
    assert u["pit_hist"][0] > 0.2 and u["pit_hist"][-1] > 0.2  # U shape


def test_gaussian_quantiles_score_as_the_gaussian(calibrated):
    cat, splits, mu, r = calibrated
    q = (mu - 0.05 * metrics.Z84, mu, mu + 0.05 * metrics.Z84)
    u = score(_pred(cat, mu, quantiles=q), cat, splits, n_boot=0)["uncertainty"]
    assert u["kind"] == "quantiles"
    for k in metrics.UNC_KEYS:
        assert u["pooled"][k] == pytest.approx(r["uncertainty"]["pooled"][k], rel=1e-9), k


def test_several_seeds_average(full):
    cat, splits = full
    y = cat["log10_m500c"].to_numpy()
    df = pd.concat([_pred(cat, y, 0.05).assign(seed=0), _pred(cat, y, 0.1).assign(seed=1)])
    u = score(df, cat, splits, n_boot=0)["uncertainty"]
    assert u["pooled"]["sigma_mean_dex"] == pytest.approx(0.075)
    # A perfect centre: CRPS of N(y, s) at y is s (sqrt 2 - 1) / sqrt(pi); mean over seeds.
    c = (math.sqrt(2) - 1) / math.sqrt(math.pi)
    assert u["pooled"]["crps_dex"] == pytest.approx(c * 0.075, rel=1e-9)


@pytest.mark.parametrize("column, value, message", [
    ("log10_m500c_sigma", -0.1, "not in (0"),
    ("log10_m500c_sigma", 0.0, "not in (0"),
    ("log10_m500c_sigma", np.nan, "log10_m500c_sigma value(s) missing"),
    ("log10_m500c_sigma", 9.0, "not in (0"),
])
def test_malformed_sigma_is_refused_by_id(fake_dataset, column, value, message):
    cat = fake_dataset.catalog
    df = _pred(cat, cat["log10_m500c"], 0.05)
    df.loc[[3, 7], column] = value
    with pytest.raises(SubmissionError) as err:
        submission.validate_predictions(df, cat)
    text = str(err.value)
    assert message in text and cat["image_id"][3] in text and cat["image_id"][7] in text
    assert "2 " in text


def test_crossing_and_partial_quantiles_are_refused(fake_dataset):
    cat = fake_dataset.catalog
    y = cat["log10_m500c"].to_numpy()
    q16, q50, q84 = y - 0.05, y.copy(), y + 0.05
    q16[5] = y[5] + 0.1  # q16 > q50
    df = _pred(cat, y, quantiles=(q16, q50, q84))
    with pytest.raises(SubmissionError, match="quantiles cross") as err:
        submission.validate_predictions(df, cat)
    assert cat["image_id"][5] in str(err.value)
    with pytest.raises(SubmissionError, match="missing: give all of"):
        submission.validate_predictions(df.drop(columns="log10_m500c_q84"), cat)
    with pytest.raises(SubmissionError, match="not both"):
        submission.validate_predictions(df.assign(log10_m500c_sigma=0.05), cat)
    # The scorer refuses the same on its own, for callers that skip validation.
    with pytest.raises(SubmissionError, match="not q16 < q50 < q84"):
        score(df, cat, fake_dataset.splits, n_boot=0)
    with pytest.raises(SubmissionError, match="sigma"):
        score(_pred(cat, y, 0.0), cat, fake_dataset.splits, n_boot=0)


def test_round_trip_through_validation_scoring_entry_and_site(fake_dataset, tmp_path):
    from leaderboard.render import render_site

    cat = fake_dataset.catalog
    rng = np.random.default_rng(2)
    raw = _pred(cat, cat["log10_m500c"] + rng.normal(0, 0.05, len(cat)), 0.05).astype(str)
    clean = submission.validate_predictions(raw, cat)
    assert list(clean.columns) == ["image_id", "seed", "log10_m500c_pred", "log10_m500c_sigma"]
    metrics_ = score(clean, cat, fake_dataset.splits, n_boot=20)
    entry = entries.make_entry("With errors", "submission", metrics_, fake_dataset, slug="unc")
    d = tmp_path / "entries"
    entries.write_predictions(d / entry.predictions_file, clean)
    entries.write_entry(d / "unc.json", entry)
    loaded = entries.load_entry(d / "unc.json")
    assert loaded.score.uncertainty_stat("coverage_68") == metrics_["uncertainty"]["pooled"]["coverage_68"]
    back = pd.read_csv(d / entry.predictions_file, dtype={"image_id": str})
    assert np.allclose(back["log10_m500c_sigma"], 0.05)
    # Re-scoring the written predictions gives the written scores.
    again = score(back, cat, fake_dataset.splits, n_boot=20)["uncertainty"]["pooled"]
    assert again["crps_dex"] == pytest.approx(metrics_["uncertainty"]["pooled"]["crps_dex"], abs=1e-6)
    site = render_site(d, fake_dataset, tmp_path / "site")
    html = (site.parent / "entries/unc.html").read_text()
    assert "<title>PIT histogram" in html and "<title>Reliability diagram" in html
    assert "CRPS (dex)" in site.read_text()


def test_entry_schema_refuses_a_malformed_uncertainty(fake_dataset):
    from benchmark.core.errors import EntryError

    cat = fake_dataset.catalog
    m = score(_pred(cat, cat["log10_m500c"], 0.05), cat, fake_dataset.splits, n_boot=0)
    m = json.loads(json.dumps(m))
    m["uncertainty"]["kind"] = "ensemble"
    with pytest.raises(EntryError, match="uncertainty.kind"):
        entries.make_entry("x", "submission", m, fake_dataset)


@pytest.mark.bench
def test_bench_score_with_uncertainty(benchmark, full):
    cat, splits = full
    rng = np.random.default_rng(0)
    df = _pred(cat, cat["log10_m500c"] + rng.normal(0, 0.05, len(cat)), 0.05)
    r = benchmark.pedantic(score, args=(df, cat, splits), kwargs={"n_boot": 1000}, rounds=3,
                           iterations=1)
    assert r["uncertainty"]["pooled"]["n_images"] == N
