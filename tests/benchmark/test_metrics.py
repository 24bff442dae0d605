"""Metrics on archetype predictors with known answers, and independent recomputations."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.optimize import curve_fit

from benchmark.core.errors import ClusterMassError
from benchmark.metrics import (LN10, STAT_KEYS, _boot_group, bootstrap_scatter, ci68,
                               cluster_groups, cluster_multiplicities, fit_gaussian, fit_gaussian_batch,
                               gaussian_binning, quantile, score, summarize)


@pytest.fixture(scope="module")
def full(make_catalog):
    return make_catalog()


@pytest.fixture(scope="module")
def small(make_catalog):
    return make_catalog(n_clusters=40, n_epochs=2, seed=1, z_values=(0.1, 0.2, 0.3, 0.45))


def pred_of(cat, values, seed=None):
    df = pd.DataFrame({"image_id": cat["image_id"], "log10_m500c_pred": values})
    if seed is not None:
        df["seed"] = seed
    return df


def test_perfect_predictor_scores_zero(full):
    cat, splits = full
    r = score(pred_of(cat, cat["log10_m500c"]), cat, splits, n_boot=50)
    for k in STAT_KEYS:
        assert r["pooled"][k] == 0.0, k
        assert r["pooled_ci68"][k] == [0.0, 0.0], k
    assert all(f["sigma_gauss_dex"] == 0.0 for f in r["folds"])
    assert r["headline"]["scatter_frac"] == 0.0 and r["complete"]
    json.dumps(r, allow_nan=False)


def test_constant_predictor(full):
    cat, splits = full
    m = cat["log10_m500c"].to_numpy()
    r = score(pred_of(cat, np.full(len(cat), 14.5)), cat, splits, n_boot=0)
    eps = 14.5 - m
    assert r["pooled"]["bias_mean_dex"] == pytest.approx(eps.mean(), abs=1e-12)
    assert r["pooled"]["bias_median_dex"] == pytest.approx(
        np.quantile(eps, 0.5, method="inverted_cdf"), abs=1e-12)
    assert r["pooled"]["sigma_std_dex"] == pytest.approx(m.std(ddof=1), rel=1e-10)
    assert r["pooled_ci68"]["bias_mean_dex"] == [None, None]  # n_boot=0: no intervals


def test_offset_and_gaussian_noise_recovered(full):
    cat, splits = full
    rng = np.random.default_rng(5)
    bias, sigma = -0.02, 0.052  # ~12% fractional scatter, as the study's CNN
    pred = cat["log10_m500c"] + bias + rng.normal(0, sigma, len(cat))
    r = score(pred_of(cat, pred), cat, splits, n_boot=200)
    p = r["pooled"]
    assert p["bias_mean_dex"] == pytest.approx(bias, abs=0.002)
    assert p["bias_median_dex"] == pytest.approx(bias, abs=0.003)
    assert p["gauss_mu_dex"] == pytest.approx(bias, abs=0.003)
    for k in ("sigma_gauss_dex", "sigma_std_dex", "sigma_robust_dex"):
        assert p[k] == pytest.approx(sigma, rel=0.05), k
    for dex, frac in (("sigma_gauss_dex", "scatter_gauss_frac"),
                      ("sigma_std_dex", "scatter_std_frac"),
                      ("sigma_robust_dex", "scatter_robust_frac")):
        assert p[frac] == pytest.approx(LN10 * p[dex], rel=1e-12)
    # 3-sigma outliers of a Gaussian: 0.27%.
    assert p["outlier_frac"] == pytest.approx(0.0027, abs=0.002)
    lo, hi = r["pooled_ci68"]["sigma_gauss_dex"]
    assert lo < p["sigma_gauss_dex"] < hi
    # Every fold recovers the noise; the summary names best and worst fold.
    fs = r["fold_summary"]["sigma_gauss_dex"]
    assert fs["best"] <= fs["mean"] <= fs["worst"]
    assert fs["mean"] == pytest.approx(sigma, rel=0.06)
    assert r["fold_summary"]["sigma_gauss_dex"]["best_fold"] in range(10)
    for b in r["mass_bins"]["bins"]:
        assert b["bias_mean_dex"] == pytest.approx(bias, abs=0.006)
        assert b["sigma_std_dex"] == pytest.approx(sigma, rel=0.1)


def test_fractional_label_and_definitions(full):
    cat, splits = full
    r = score(pred_of(cat, cat["log10_m500c"] + 0.01), cat, splits, n_boot=0)
    assert "ln(10)" in r["definitions"]["scatter_gauss_frac"]
    assert "ln(10)" in r["headline"]["label"]


def test_independent_groupby_computation(full):
    cat, splits = full
    rng = np.random.default_rng(2)
    # Cluster-correlated errors plus image noise and a mass trend.
    per_cluster = rng.normal(0, 0.04, cat["cluster_id"].max() + 1)
    eps = (per_cluster[cat["cluster_id"]] + rng.normal(0, 0.03, len(cat))
           + 0.1 * (cat["log10_m500c"] - 14.5))
    r = score(pred_of(cat, cat["log10_m500c"] + eps), cat, splits, n_boot=0)
    df = cat.assign(eps=eps.to_numpy())
    g = df.groupby("fold")["eps"]
    ref = pd.DataFrame({
        "mean": g.mean(), "std": g.std(ddof=1),
        "median": g.apply(lambda s: np.quantile(s, 0.5, method="inverted_cdf")),
        "robust": g.apply(lambda s: (np.quantile(s, 0.84, method="inverted_cdf")
                                     - np.quantile(s, 0.16, method="inverted_cdf")) / 2),
        "n": g.size()})
    for row in r["folds"]:
        k = row["fold"]
        assert row["n_images"] == ref.loc[k, "n"]
        assert row["n_clusters"] == len(splits.test_clusters(k))
        assert row["bias_mean_dex"] == pytest.approx(ref.loc[k, "mean"], abs=1e-12)
        assert row["sigma_std_dex"] == pytest.approx(ref.loc[k, "std"], rel=1e-10)
        assert row["bias_median_dex"] == pytest.approx(ref.loc[k, "median"], abs=1e-12)
        assert row["sigma_robust_dex"] == pytest.approx(ref.loc[k, "robust"], abs=1e-12)
    means = ref["mean"].to_numpy()
    assert r["fold_summary"]["bias_mean_dex"]["mean"] == pytest.approx(means.mean())
    assert r["fold_summary"]["sigma_std_dex"]["std"] == pytest.approx(ref["std"].std(ddof=1))
    cc = df.groupby("cool_core")["eps"].mean()
    assert r["by_cool_core"]["1"]["bias_mean_dex"] == pytest.approx(cc[1], abs=1e-12)
    mg = df.groupby("merger")["eps"].std(ddof=1)
    assert r["by_merger"]["0"]["sigma_std_dex"] == pytest.approx(mg[0], rel=1e-10)
    # Mass bins: the trend of eps with mass shows in the binned bias.
    biases = [b["bias_mean_dex"] for b in r["mass_bins"]["bins"]]
    assert biases == sorted(biases)
    edges = r["mass_bins"]["edges"]
    assert sum(b["n_images"] for b in r["mass_bins"]["bins"]) == len(cat)
    first = df[(df.log10_m500c >= edges[0]) & (df.log10_m500c < edges[1])]["eps"]
    assert r["mass_bins"]["bins"][0]["bias_mean_dex"] == pytest.approx(first.mean())


def test_gaussian_fit_matches_curve_fit_and_batch():
    rng = np.random.default_rng(3)
    eps = np.concatenate([rng.normal(0.01, 0.05, 3000), rng.normal(0.2, 0.1, 150)])
    fit = fit_gaussian(eps)
    assert fit["ok"] and fit["sigma_dex"] == pytest.approx(0.05, rel=0.05)
    edges = gaussian_binning(np.sort(eps))
    assert len(edges) - 1 == 31 and np.allclose(edges[[0, -1]] - np.median(eps),
                                                 [-4 * 0.05, 4 * 0.05], atol=0.02)
    centers = (edges[:-1] + edges[1:]) / 2
    counts = np.histogram(eps, edges)[0].astype(float)
    ref, _ = curve_fit(lambda x, a, m, s: a * np.exp(-0.5 * ((x - m) / s) ** 2), centers,
                       counts, p0=[counts.max(), 0, 0.04])
    assert fit["sigma_dex"] == pytest.approx(abs(ref[2]), rel=1e-5)
    # The batched Levenberg-Marquardt finds the same minimum from various starts.
    p0 = np.array([[counts.max(), 0.0, 0.03], [counts.max() * 2, 0.02, 0.08],
                   [10.0, -0.02, 0.05]])
    batch = fit_gaussian_batch(np.tile(counts, (3, 1)), centers, p0)
    np.testing.assert_allclose(batch[:, 2], abs(ref[2]), rtol=1e-5)
    np.testing.assert_allclose(batch[:, 1], ref[1], atol=1e-6)


def test_gaussian_fit_too_few_and_degenerate():
    assert math.isnan(fit_gaussian([0.1, 0.2])["sigma_dex"])
    s = summarize([0.1, 0.2, 0.3])
    assert math.isnan(s["sigma_gauss_dex"]) and math.isnan(s["outlier_frac"])
    assert s["bias_mean_dex"] == pytest.approx(0.2)
    deg = summarize(np.r_[np.zeros(80), np.linspace(-1, 1, 20)])
    assert deg["sigma_gauss_dex"] == 0.0 and deg["sigma_robust_dex"] == 0.0


def test_quantile_inverted_cdf():
    rng = np.random.default_rng(4)
    for n in (1, 2, 7, 10, 99, 100, 101, 1000):
        x = np.sort(rng.normal(size=n))
        for p in (16, 50, 84):
            assert quantile(x, p) == np.quantile(x, p / 100, method="inverted_cdf")


def test_bootstrap_is_over_clusters(full):
    cat, splits = full
    rng = np.random.default_rng(6)
    # All views of a cluster share one error: 329 independent values, not 7,896.
    per_cluster = rng.normal(0, 0.1, cat["cluster_id"].max() + 1)
    pred = cat["log10_m500c"] + per_cluster[cat["cluster_id"]]
    r = score(pred_of(cat, pred), cat, splits, n_boot=400, rng_seed=1)
    lo, hi = r["pooled_ci68"]["bias_mean_dex"]
    half = (hi - lo) / 2
    expect = 0.1 / math.sqrt(329)  # ~0.0055; an image bootstrap would give ~0.0011
    assert 0.7 * expect < half < 1.3 * expect


def test_vectorised_bootstrap_equals_explicit_resampling(small):
    cat, splits = small
    rng = np.random.default_rng(7)
    eps = rng.normal(0.01, 0.08, len(cat)) + rng.standard_t(3, len(cat)) * 0.01
    cpos, fold_of_cluster = cluster_groups(cat["cluster_id"], cat["fold"])
    mult = cluster_multiplicities(fold_of_cluster, 15, np.random.default_rng(0))
    # Stratified: each fold keeps its number of clusters in every resample.
    for f in range(10):
        assert (mult[:, fold_of_cluster == f].sum(axis=1) == (fold_of_cluster == f).sum()).all()
    point = summarize(eps)
    edges = fit_gaussian(eps)["edges"]
    boot = _boot_group(eps, cpos, mult, point, edges)
    centers = (edges[:-1] + edges[1:]) / 2
    for b in range(len(mult)):
        res = np.repeat(eps, mult[b, cpos])  # the resample, written out image by image
        ref = summarize(res)
        for k in ("bias_mean_dex", "bias_median_dex", "sigma_std_dex", "sigma_robust_dex"):
            assert boot[k][b] == pytest.approx(ref[k], abs=1e-12), k
        counts = np.array([((res >= lo) & (res < hi)).sum() for lo, hi in
                           zip(edges[:-1], edges[1:])], float)
        popt, _ = curve_fit(lambda x, a, m, s: a * np.exp(-0.5 * ((x - m) / s) ** 2),
                            centers, counts, p0=[counts.max(), np.median(res), 0.08])
        assert boot["sigma_gauss_dex"][b] == pytest.approx(abs(popt[2]), rel=1e-4)
        thr = 3 * boot["sigma_gauss_dex"][b]
        assert boot["outlier_frac"][b] == pytest.approx(np.mean(np.abs(res) > thr), abs=1e-12)


def test_bootstrap_scatter_equals_explicit_resampling(small):
    cat, _ = small
    rng = np.random.default_rng(9)
    eps = rng.normal(-0.02, 0.07, len(cat))
    cpos, one_group = cluster_groups(cat["cluster_id"])
    n_clusters = len(one_group)
    mult = cluster_multiplicities(one_group, 6, np.random.default_rng(3))
    assert (mult.sum(axis=1) == n_clusters).all()  # one group: all clusters, any mix
    mult = np.vstack([np.ones(n_clusters, mult.dtype), mult])  # row 0: the sample itself
    # One fold's images with the multiplicities of every cluster, as the shift track uses it.
    sel = cat["fold"].to_numpy() == 2
    for e, pos in ((eps, cpos), (eps[sel], cpos[sel])):
        boot = bootstrap_scatter(e, pos, mult)
        assert boot.shape == (7,)
        assert boot[0] == pytest.approx(summarize(e)["scatter_gauss_frac"], rel=1e-4)
        edges = fit_gaussian(e)["edges"]
        centers = (edges[:-1] + edges[1:]) / 2
        for b in range(len(mult)):
            res = np.repeat(e, mult[b, pos])  # the resample, written out image by image
            counts = np.histogram(res, edges)[0].astype(float)
            popt, _ = curve_fit(lambda x, a, m, s: a * np.exp(-0.5 * ((x - m) / s) ** 2),
                                centers, counts, p0=[counts.max(), np.median(res), 0.07])
            # The full sample's bins (summarize() would bin each resample anew).
            assert boot[b] == pytest.approx(LN10 * abs(popt[2]), rel=1e-4)


def test_bootstrap_scatter_is_undefined_where_the_fit_is():
    mult = cluster_multiplicities(np.zeros(3, int), 4, np.random.default_rng(0))
    assert np.isnan(bootstrap_scatter(np.full(6, 0.1), np.arange(6) % 3, mult)).all()
    assert np.isnan(ci68(np.full(4, np.nan))).all()
    assert ci68(np.arange(101.0)) == [16.0, 84.0]


def test_seeds_mean_and_std(small):
    cat, splits = small
    rng = np.random.default_rng(8)
    a = cat["log10_m500c"] + rng.normal(0, 0.05, len(cat))
    b = cat["log10_m500c"] + rng.normal(0.02, 0.07, len(cat))
    both = pd.concat([pred_of(cat, a, 0), pred_of(cat, b, 3)])
    r = score(both, cat, splits, n_boot=30)
    ra = score(pred_of(cat, a), cat, splits, n_boot=0)
    rb = score(pred_of(cat, b), cat, splits, n_boot=0)
    assert r["seeds"] == [0, 3] and r["seed_summary"]["n_seeds"] == 2
    for k in ("bias_mean_dex", "sigma_std_dex", "sigma_gauss_dex"):
        va, vb = ra["pooled"][k], rb["pooled"][k]
        assert r["pooled"][k] == pytest.approx((va + vb) / 2)
        assert r["seed_summary"]["std"][k] == pytest.approx(np.std([va, vb], ddof=1))
    same = score(pd.concat([pred_of(cat, a, 0), pred_of(cat, a, 1)]), cat, splits, n_boot=0)
    assert same["seed_summary"]["std"]["sigma_std_dex"] == 0.0
    assert same["pooled"]["sigma_std_dex"] == pytest.approx(ra["pooled"]["sigma_std_dex"])


def test_redshift_bins(small):
    cat, splits = small
    r = score(pred_of(cat, cat["log10_m500c"] + 0.1 * cat["redshift"]), cat, splits, n_boot=0)
    bins = r["redshift_bins"]["bins"]
    assert len(bins) >= 3
    for b in bins:
        assert 0.1 * b["lo"] - 1e-9 <= b["bias_mean_dex"] <= 0.1 * b["hi"] + 1e-9


def test_partial_folds(small):
    cat, splits = small
    sel = cat["fold"].isin([0, 1])
    r = score(pred_of(cat[sel], cat.loc[sel, "log10_m500c"]), cat, splits, n_boot=10,
              folds=[0, 1])
    assert r["folds_scored"] == [0, 1] and not r["complete"]
    assert r["n_images"] == int(sel.sum())


@pytest.mark.parametrize("mutate, msg", [
    (lambda d: d.iloc[1:], "without a prediction"),
    (lambda d: pd.concat([d, d.iloc[:2]]), "more than once"),
    (lambda d: d.assign(log10_m500c_pred=np.where(np.arange(len(d)) == 3, np.nan,
                                                  d.log10_m500c_pred)), "non-finite"),
    (lambda d: pd.concat([d, d.iloc[:1].assign(image_id="bogus")]), "not among"),
    (lambda d: d.drop(columns="log10_m500c_pred"), "lack columns"),
    (lambda d: d.assign(seed="a"), "seed"),
])
def test_score_refuses_bad_predictions(small, mutate, msg):
    cat, splits = small
    with pytest.raises(ClusterMassError, match=msg):
        score(mutate(pred_of(cat, cat["log10_m500c"])), cat, splits, n_boot=0)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), shift=st.floats(-1, 1),
       sigma=st.floats(1e-3, 0.5), n_clusters=st.integers(10, 40))
def test_property_shift_and_units(make_catalog, seed, shift, sigma, n_clusters):
    cat, splits = make_catalog(n_clusters=n_clusters, n_epochs=1, seed=seed % 1000)
    rng = np.random.default_rng(seed)
    eps = rng.normal(0, sigma, len(cat))
    r0 = score(pred_of(cat, cat["log10_m500c"] + eps), cat, splits, n_boot=20)
    r1 = score(pred_of(cat, cat["log10_m500c"] + eps + shift), cat, splits, n_boot=20)
    p0, p1 = r0["pooled"], r1["pooled"]
    assert p1["bias_mean_dex"] == pytest.approx(p0["bias_mean_dex"] + shift, abs=1e-9)
    assert p1["bias_median_dex"] == pytest.approx(p0["bias_median_dex"] + shift, abs=1e-9)
    assert p1["sigma_std_dex"] == pytest.approx(p0["sigma_std_dex"], rel=1e-6)
    assert p1["sigma_robust_dex"] == pytest.approx(p0["sigma_robust_dex"], abs=1e-9)
    if p0["sigma_gauss_dex"] is not None and p1["sigma_gauss_dex"] is not None:
        assert p1["sigma_gauss_dex"] == pytest.approx(p0["sigma_gauss_dex"], rel=1e-3)
    for p in (p0, p1):
        lo, hi = eps.min() + min(0, shift) - 1e-9, eps.max() + max(0, shift) + 1e-9
        assert lo <= p["bias_mean_dex"] <= hi
        assert p["sigma_robust_dex"] >= 0 and p["sigma_std_dex"] >= 0
        if p["sigma_gauss_dex"] is not None:
            assert p["scatter_gauss_frac"] == pytest.approx(LN10 * p["sigma_gauss_dex"])
            assert 0 <= p["outlier_frac"] <= 1
        for k, (lo, hi) in r0["pooled_ci68"].items():
            assert lo is None or lo <= hi
    json.dumps(r1, allow_nan=False)


# -- bootstrap of the uncertainty track ------------------------------------------------------

def _with_sigma(cat, mu, sigma):
    return pd.DataFrame({"image_id": cat["image_id"], "log10_m500c_pred": mu,
                         "log10_m500c_sigma": sigma})


def test_uncertainty_bootstrap_equals_explicit_resampling(small):
    from scipy.stats import norm

    from benchmark.metrics import UNC_BOOT_KEYS, bootstrap_uncertainty

    cat, _ = small
    rng = np.random.default_rng(8)
    truth = cat["log10_m500c"].to_numpy()
    gauss = {s: (truth + rng.normal(0, 0.06, len(cat)), rng.uniform(0.03, 0.09, len(cat)))
             for s in (0, 1)}
    cpos, fold_of_cluster = cluster_groups(cat["cluster_id"], cat["fold"])
    mult = cluster_multiplicities(fold_of_cluster, 50, np.random.default_rng(2))
    ci = bootstrap_uncertainty(gauss, truth, cpos, mult)
    assert set(ci) == set(UNC_BOOT_KEYS)

    def closed_forms(y, mu, sigma):  # Gneiting & Raftery 2007 eq. 5; the Gaussian density
        z = (y - mu) / sigma
        crps = sigma * (z * (2 * norm.cdf(z) - 1) + 2 * norm.pdf(z) - 1 / math.sqrt(math.pi))
        inside = np.abs(2 * norm.cdf(z) - 1)
        return {"crps_dex": crps, "log_score": -norm.logpdf(y, mu, sigma),
                "coverage_68": inside <= 0.68, "coverage_95": inside <= 0.95}

    resampled = {k: [] for k in UNC_BOOT_KEYS}
    for b in range(len(mult)):
        w = mult[b, cpos]  # each image as often as its cluster was drawn
        per_seed = [closed_forms(np.repeat(truth, w), np.repeat(m, w), np.repeat(s, w))
                    for m, s in gauss.values()]
        for k in UNC_BOOT_KEYS:
            resampled[k].append(np.mean([np.mean(d[k]) for d in per_seed]))
    for k in UNC_BOOT_KEYS:
        expect = np.percentile(resampled[k], [16, 84])
        np.testing.assert_allclose(ci[k], expect, rtol=1e-9, atol=1e-12, err_msg=k)


def test_uncertainty_bootstrap_resamples_clusters_not_images(full):
    cat, splits = full
    rng = np.random.default_rng(9)
    # One error per cluster shared by its 24 views: 329 independent outcomes, not 7,896.
    per_cluster = rng.normal(0, 0.05, cat["cluster_id"].max() + 1)
    mu = cat["log10_m500c"] + per_cluster[cat["cluster_id"]]
    r = score(_with_sigma(cat, mu, 0.05), cat, splits, n_boot=400, rng_seed=3)
    unc = r["uncertainty"]
    lo, hi = unc["pooled_ci68"]["coverage_68"]
    assert lo <= unc["pooled"]["coverage_68"] <= hi
    p = unc["pooled"]["coverage_68"]
    clusters = math.sqrt(p * (1 - p) / 329)  # ~0.026; images would give ~0.005
    assert 0.7 * clusters < (hi - lo) / 2 < 1.3 * clusters
    for key in ("crps_dex", "log_score", "coverage_95"):
        lo, hi = unc["pooled_ci68"][key]
        assert lo < unc["pooled"][key] < hi, key


def test_uncertainty_without_bootstrap_has_null_intervals(small):
    cat, splits = small
    r = score(_with_sigma(cat, cat["log10_m500c"] + 0.01, 0.05), cat, splits, n_boot=0)
    assert r["uncertainty"]["pooled_ci68"] is None
    json.dumps(r, allow_nan=False)  # the entry's JSON stays strict


def test_uncertainty_scores_follow_the_residuals_alignment(small):
    cat, splits = small
    rng = np.random.default_rng(10)
    mu = cat["log10_m500c"].to_numpy() + rng.normal(0, 0.05, len(cat))
    sigma = rng.uniform(0.03, 0.08, len(cat))
    shuffled = _with_sigma(cat, mu, sigma).sample(frac=1.0, random_state=4)
    a = score(_with_sigma(cat, mu, sigma), cat, splits, n_boot=20)["uncertainty"]
    b = score(shuffled, cat, splits, n_boot=20)["uncertainty"]
    assert a == b  # row order of the submission does not matter


def test_cluster_groups_give_each_image_its_cluster_and_each_cluster_its_fold():
    cpos, folds = cluster_groups(["c7", "c2", "c7", "c9"], [3, 1, 3, 0])
    assert cpos.tolist() == [1, 0, 1, 2]  # clusters sorted: c2, c7, c9
    assert folds.tolist() == [1, 3, 0]
    assert cluster_groups(["b", "a", "b"])[1].tolist() == [0, 0]  # one group
