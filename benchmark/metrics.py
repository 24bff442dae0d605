"""Bias and scatter of log10 M500c predictions, as the README's Benchmark section defines them.

Per image, ``eps = log10 M_pred - log10 M_true`` (dex). For any set of images:

- bias: ``bias_mean_dex`` = mean(eps), ``bias_median_dex`` = median(eps);
- scatter, three ways, each in dex and as a fractional mass scatter ``ln(10) * sigma_dex``
  (keys ``*_frac``, labelled "fractional"):

  * ``sigma_gauss_dex``: sigma of the best-fit Gaussian to the histogram of eps, as the
    study did (its centre is ``gauss_mu_dex``). The fit is a least-squares fit of
    ``A exp(-(x - mu)^2 / 2 sigma^2)`` to the bin counts (``scipy.optimize.curve_fit``).
    Binning (documented in :data:`DEFINITIONS`): ``nb`` bins (Rice rule
    ``ceil(2 n^(1/3))``, made odd, clipped to 9..61) spanning ``median +- 4 w``, where
    ``w`` is the robust half-width below (floored at 1e-3 dex), so the bins follow the
    core of the distribution and far outliers do not widen them. Needs >= 10 images,
    else null. When at least 68% of eps are identical (``w`` = 0) sigma is 0.
  * ``sigma_std_dex``: the standard deviation (ddof = 1);
  * ``sigma_robust_dex``: half the 16-84 percentile range.

- outliers: ``outlier_frac`` = fraction with ``|eps| > 3 sigma_gauss_dex`` of the same set;
- quantiles use the inverted-CDF definition (numpy ``method="inverted_cdf"``), computed
  with exact integer arithmetic so the bootstrap and the point estimates agree.

:func:`score` reports these pooled over all scored images, per fold, as mean +- std over
folds with the best and worst fold, in bins of true mass and of redshift, split by
cool-core and merger state, and, for entries with several seeds, per seed with mean +- std
over seeds. 68% intervals come from a bootstrap over *clusters* (all views of a cluster
move together), resampled within each fold so fold sizes are kept and the pooled and
per-fold statistics come from the same resamples; the bootstrap is vectorised: a
resample is a matrix of cluster multiplicities, and every statistic is computed from
cumulative weights over the sorted eps of each group (histograms are the bins of the
full sample; Gaussian fits of all resamples are one batched Levenberg-Marquardt solve).
The same bootstrap serves other scorers through :func:`cluster_multiplicities`,
:func:`bootstrap_scatter` and :func:`ci68` (the shift track's intervals,
:func:`benchmark.testsets_scoring.score_testsets`).

Uncertainty track (:func:`score_uncertainty`; ``uncertainty`` is null for point
predictions): predictions may carry a Gaussian ``log10_m500c_sigma`` or the quantiles
``log10_m500c_q16/q50/q84`` (turned into the Gaussian of the same median and 16-84 width).
Scores, pooled, per fold and per mass bin, averaged over seeds: the CRPS and the log score
of ``scoringrules`` (Gneiting & Raftery 2007, JASA 102, 359), the coverage of the central
68% and 95% intervals, the PIT histogram (Gneiting, Balabdaoui & Raftery 2007, JRSSB 69,
243) and the reliability diagram (observed vs nominal coverage of central intervals).
The pooled CRPS, log score and coverages get 68% intervals from the same bootstrap over
clusters (same resamples; ``uncertainty.pooled_ci68``, :func:`bootstrap_uncertainty`).
"""

from __future__ import annotations

import math
import statistics
import warnings

import numpy as np
import pandas as pd

from benchmark.core.errors import DatasetError, SubmissionError, format_problems, head_list
from benchmark.core.io import json_safe
# The prediction columns are defined once, with the submission format (a sibling this module
# may import: the layers contract lists them as non-independent); re-exported here.
from benchmark.submission import QUANTILE_COLUMNS, SIGMA_COLUMN, UNCERTAINTY_COLUMNS

__all__ = [
    "score",
    "residuals",
    "summarize",
    "fit_gaussian",
    "fit_gaussian_batch",
    "gaussian_binning",
    "quantile",
    "DEFINITIONS",
    "STAT_KEYS",
    "METRICS_VERSION",
    "LN10",
    "SIGMA_COLUMN",
    "QUANTILE_COLUMNS",
    "UNCERTAINTY_COLUMNS",
    "UNC_KEYS",
    "uncertainty_kind",
    "gaussian_from_quantiles",
    "predictive_gaussians",
    "pit",
    "pit_histogram",
    "central_coverage",
    "reliability",
    "summarize_uncertainty",
    "image_scores",
    "bootstrap_uncertainty",
    "cluster_groups",
    "cluster_multiplicities",
    "bootstrap_scatter",
    "ci68",
    "UNC_BOOT_KEYS",
    "score_uncertainty",
]

METRICS_VERSION = "2"  # 2: the uncertainty track (``uncertainty``; null without one)
LN10 = math.log(10.0)
MIN_FIT = 10
N_SIGMA_OUTLIER = 3.0
ROBUST_FLOOR_DEX = 1e-3
N_MASS_BINS = 5
N_REDSHIFT_BINS = 4

# Optional prediction columns of the uncertainty track (dex; benchmark.submission): a
# Gaussian sigma (SIGMA_COLUMN), or the 16th, 50th and 84th percentiles of the predictive
# distribution of log10 M500c (QUANTILE_COLUMNS).
Z84 = statistics.NormalDist().inv_cdf(0.84)  # 0.9945: a Gaussian's q84 is mu + Z84 sigma
N_PIT_BINS = 10
#: Nominal central-interval levels of the reliability diagram.
RELIABILITY_LEVELS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.68, 0.7, 0.8, 0.9, 0.95)
#: Statistics of the uncertainty track for every set of images.
UNC_KEYS = ("crps_dex", "log_score", "coverage_68", "coverage_95", "sigma_mean_dex", "z_std")
#: Statistics of the uncertainty track with bootstrap intervals (``uncertainty.pooled_ci68``).
UNC_BOOT_KEYS = ("crps_dex", "log_score", "coverage_68", "coverage_95")

#: Statistics reported for every set of images (dex unless *_frac; counts are n_images).
STAT_KEYS = (
    "bias_mean_dex", "bias_median_dex", "gauss_mu_dex",
    "sigma_gauss_dex", "sigma_std_dex", "sigma_robust_dex",
    "scatter_gauss_frac", "scatter_std_frac", "scatter_robust_frac",
    "outlier_frac",
)
_DEX_TO_FRAC = {"sigma_gauss_dex": "scatter_gauss_frac", "sigma_std_dex": "scatter_std_frac",
                "sigma_robust_dex": "scatter_robust_frac"}
# Which direction is "best" when naming the best and worst fold.
_BEST = {"bias_mean_dex": "abs", "bias_median_dex": "abs", "gauss_mu_dex": "abs"}

DEFINITIONS = {
    "eps": "log10(M500c_pred / Msun) - log10(M500c_true / Msun), per image, dex",
    "bias_mean_dex": "mean of eps (dex)",
    "bias_median_dex": "median of eps (dex; inverted-CDF quantile)",
    "gauss_mu_dex": "centre of the best-fit Gaussian to the histogram of eps (dex)",
    "sigma_gauss_dex": "sigma of the best-fit Gaussian to the histogram of eps (dex): "
                       "least squares on bin counts; bins: ceil(2 n^(1/3)) made odd, clipped "
                       "to 9..61, spanning median +- 4 w, w = sigma_robust_dex floored at "
                       "1e-3 dex; >= 10 images needed",
    "sigma_std_dex": "standard deviation of eps, ddof=1 (dex)",
    "sigma_robust_dex": "half the 16-84 percentile range of eps (dex)",
    "scatter_gauss_frac": "fractional mass scatter ln(10) * sigma_gauss_dex",
    "scatter_std_frac": "fractional mass scatter ln(10) * sigma_std_dex",
    "scatter_robust_frac": "fractional mass scatter ln(10) * sigma_robust_dex",
    "outlier_frac": "fraction of images with |eps| > 3 sigma_gauss_dex of the same set",
    "ci68": "16th-84th percentiles of a bootstrap over clusters (resampled within folds)",
    "folds": "per test fold; fold summary: mean and std (ddof=1) over folds, best and worst",
    "seeds": "statistics are computed per seed and averaged; std over seeds (ddof=1)",
    "uncertainty": "null for point predictions. Each image's predictive law is a Gaussian: "
                   "N(log10_m500c_pred, log10_m500c_sigma), or for quantiles N(q50, "
                   "(q84 - q16) / (2 x 0.9945)) (same median and 16-84 width; asymmetry "
                   "not scored)",
    "crps_dex": "mean continuous ranked probability score of the predictive Gaussian at the "
                "true log10 M500c (scoringrules.crps_normal; dex; lower is better; equals "
                "the mean |eps| for a point forecast)",
    "log_score": "mean negative log predictive density at the truth "
                 "(scoringrules.logs_normal; per dex; lower is better)",
    "coverage_68": "fraction of true masses inside the central 68% predictive interval "
                   "(calibrated: 0.68)",
    "coverage_95": "fraction of true masses inside the central 95% predictive interval "
                   "(calibrated: 0.95)",
    "sigma_mean_dex": "mean predicted sigma (dex)",
    "z_std": "standard deviation (ddof=1) of (truth - mu) / sigma (calibrated: 1; > 1: "
             "sigmas too small)",
    "pit_hist": "fractions of PIT = Phi((truth - mu) / sigma) in 10 equal bins of [0, 1] "
                "(calibrated: 0.1 each; U shape: overconfident; hump: underconfident)",
    "reliability": "observed coverage of the central predictive interval at each nominal "
                   "level (calibrated: the diagonal)",
    "uncertainty.pooled_ci68": "16th-84th percentiles of crps_dex, log_score, coverage_68 and "
                               "coverage_95 (pooled) over the bootstrap over clusters of ci68 "
                               "(same resamples; null without a bootstrap)",
}


# ---------------------------------------------------------------------------------------
# Basic statistics
# ---------------------------------------------------------------------------------------

def quantile(x_sorted: np.ndarray, percent: int) -> float:
    """Inverted-CDF quantile of sorted values at an integer percent (exact arithmetic)."""
    n = len(x_sorted)
    k = -(-percent * n // 100) - 1  # smallest k with (k + 1) * 100 >= percent * n
    return float(x_sorted[max(k, 0)])


def gaussian_binning(x_sorted: np.ndarray) -> np.ndarray:
    """Bin edges of the Gaussian fit for sorted eps (see module docstring)."""
    n = len(x_sorted)
    med = quantile(x_sorted, 50)
    w = max((quantile(x_sorted, 84) - quantile(x_sorted, 16)) / 2, ROBUST_FLOOR_DEX)
    nb = int(np.clip(math.ceil(2 * n ** (1 / 3)), 9, 61))
    nb += 1 - nb % 2
    return np.linspace(med - 4 * w, med + 4 * w, nb + 1)


def _hist_sorted(x_sorted: np.ndarray, edges: np.ndarray) -> np.ndarray:
    # Bins [e_j, e_j+1), from positions in the sorted values (as the bootstrap does).
    pos = np.searchsorted(x_sorted, edges, side="left")
    return np.diff(pos).astype(float)


def _gauss(x, amp, mu, sigma):
    return amp * np.exp(-0.5 * ((x - mu) / sigma) ** 2)


def fit_gaussian(eps) -> dict:
    """Best-fit Gaussian to the histogram of ``eps`` (``scipy.optimize.curve_fit``).

    Returns
    -------
    dict
        ``amplitude, mu_dex, sigma_dex`` (NaN when the fit is impossible), ``edges``,
        ``counts``, ``ok``.
    """
    from scipy.optimize import OptimizeWarning, curve_fit

    x = np.sort(np.asarray(eps, dtype=float))
    out = {"amplitude": math.nan, "mu_dex": math.nan, "sigma_dex": math.nan,
           "edges": np.zeros(0), "counts": np.zeros(0), "ok": False}
    if len(x) < MIN_FIT:
        return out
    edges = gaussian_binning(x)
    counts = _hist_sorted(x, edges)
    out.update(edges=edges, counts=counts)
    med = quantile(x, 50)
    w = (quantile(x, 84) - quantile(x, 16)) / 2
    if w <= 0:
        # At least 68% of eps identical: the best Gaussian is a spike at that value.
        out.update(amplitude=float(counts.max()), mu_dex=med, sigma_dex=0.0, ok=True)
        return out
    centers = (edges[:-1] + edges[1:]) / 2
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", OptimizeWarning)
            popt, _ = curve_fit(_gauss, centers, counts, p0=[counts.max(), med, w], maxfev=4000)
    except (RuntimeError, ValueError):
        return out
    sigma = abs(float(popt[2]))
    if not np.all(np.isfinite(popt)) or sigma > 10 * (edges[-1] - edges[0]):
        return out
    out.update(amplitude=float(popt[0]), mu_dex=float(popt[1]), sigma_dex=sigma, ok=True)
    return out


def fit_gaussian_batch(counts: np.ndarray, centers: np.ndarray, p0: np.ndarray,
                       n_iter: int = 100) -> np.ndarray:
    """Least-squares Gaussian fits of many histograms at once (Levenberg-Marquardt).

    Parameters
    ----------
    counts : (B, nb) array
        Bin counts of B histograms sharing the bin ``centers``.
    centers : (nb,) array
    p0 : (B, 3) array
        Starting ``(amplitude, mu, sigma)`` per histogram.

    Returns
    -------
    (B, 3) array
        ``(amplitude, mu, |sigma|)``; the same minimum as :func:`fit_gaussian`.
    """
    y = np.asarray(counts, dtype=float)
    p = np.array(p0, dtype=float)
    x = np.asarray(centers, dtype=float)[None, :]
    # The amplitude is linear: start from its least-squares value for the start mu, sigma.
    g0 = np.exp(-0.5 * ((x - p[:, 1:2]) / p[:, 2:3]) ** 2)
    p[:, 0] = np.einsum("bn,bn->b", g0, y) / np.maximum(np.einsum("bn,bn->b", g0, g0), 1e-300)

    def resid(par, yy):
        z = (x - par[:, 1:2]) / par[:, 2:3]
        g = np.exp(-0.5 * z * z)
        return yy - par[:, 0:1] * g, g, z

    r, g, z = resid(p, y)
    cost = np.einsum("ij,ij->i", r, r)
    lam = np.full(len(p), 1e-3)
    eye = np.eye(3)[None]
    act = np.arange(len(p))  # rows still iterating; converged rows drop out
    for _ in range(n_iter):
        if len(act) == 0:
            break
        pa, ra, ga, za, la = p[act], r[act], g[act], z[act], lam[act]
        a, s = pa[:, 0:1], pa[:, 2:3]
        j1 = a * ga * za / s  # d model / d (amplitude, mu, sigma) = (g, j1, j1 z)
        jac = (ga, j1, j1 * za)
        jtj = np.empty((len(act), 3, 3))
        for i in range(3):
            for j in range(i, 3):
                jtj[:, i, j] = jtj[:, j, i] = np.einsum("bn,bn->b", jac[i], jac[j])
        jtr = np.stack([np.einsum("bn,bn->b", ji, ra) for ji in jac], axis=1)
        damp = jtj + la[:, None, None] * (jtj * eye + 1e-12 * eye)
        try:
            step = np.linalg.solve(damp, jtr[..., None])[..., 0]
        except np.linalg.LinAlgError:
            break
        trial = pa + step
        trial[:, 2] = np.where(trial[:, 2] == 0, 1e-12, trial[:, 2])
        r_t, g_t, z_t = resid(trial, y[act])
        cost_t = np.einsum("ij,ij->i", r_t, r_t)
        better = cost_t < cost[act]
        upd = act[better]
        p[upd], r[upd], g[upd], z[upd] = trial[better], r_t[better], g_t[better], z_t[better]
        cost[upd] = cost_t[better]
        lam[act] = np.where(better, la / 3, la * 4)
        # A row has converged when its proposed step (accepted or not) moves no parameter
        # by more than 1e-9 of its scale (amplitude: itself; mu and sigma: sigma), as
        # MINPACK's xtol in curve_fit; rejected steps shrink as lambda grows.
        scale = np.abs(pa[:, [0, 2, 2]]) + 1e-300
        moving = (np.abs(step) > 1e-9 * scale).any(axis=1) & (lam[act] < 1e16)
        act = act[moving]
    p[:, 2] = np.abs(p[:, 2])
    return p


def summarize(eps) -> dict:
    """Every statistic of :data:`STAT_KEYS` for one set of eps, plus ``n_images``.

    Values are floats, or NaN where undefined (e.g. a Gaussian fit of < 10 images).
    """
    x = np.sort(np.asarray(eps, dtype=float))
    n = len(x)
    out = {k: math.nan for k in STAT_KEYS}
    out["n_images"] = n
    if n == 0:
        return out
    fit = fit_gaussian(x)
    out["bias_mean_dex"] = float(x.mean())
    out["bias_median_dex"] = quantile(x, 50)
    out["gauss_mu_dex"] = fit["mu_dex"]
    out["sigma_gauss_dex"] = fit["sigma_dex"]
    out["sigma_std_dex"] = float(x.std(ddof=1)) if n > 1 else math.nan
    out["sigma_robust_dex"] = (quantile(x, 84) - quantile(x, 16)) / 2
    for dex, frac in _DEX_TO_FRAC.items():
        out[frac] = LN10 * out[dex]
    if math.isfinite(fit["sigma_dex"]):
        out["outlier_frac"] = float(np.mean(np.abs(x) > N_SIGMA_OUTLIER * fit["sigma_dex"]))
    return out


# ---------------------------------------------------------------------------------------
# Vectorised bootstrap
# ---------------------------------------------------------------------------------------

def cluster_groups(cluster_ids, folds=None) -> tuple[np.ndarray, np.ndarray]:
    """The bootstrap's units: each image's cluster (a column of the multiplicities) and each
    cluster's fold.

    Parameters
    ----------
    cluster_ids : (n,) array
        The cluster of each image.
    folds : (n,) int array, optional
        The fold of each image (all views of a cluster share one); default: one group.

    Returns
    -------
    cluster_pos : (n,) int array
        Column of each image's cluster, clusters in sorted order.
    fold_of_cluster : (n_clusters,) int array
        For :func:`cluster_multiplicities`.
    """
    clusters, cluster_pos = np.unique(np.asarray(cluster_ids), return_inverse=True)
    fold_of_cluster = np.zeros(len(clusters), dtype=np.int64)
    if folds is not None:
        fold_of_cluster[cluster_pos] = np.asarray(folds)
    return cluster_pos, fold_of_cluster


def cluster_multiplicities(fold_of_cluster: np.ndarray, n_boot: int,
                           rng: np.random.Generator) -> np.ndarray:
    """How often each resample of a bootstrap over clusters draws each cluster.

    Clusters are drawn with replacement within each fold, so every resample keeps the
    number of clusters of every fold (one fold for all: a plain bootstrap over clusters).

    Parameters
    ----------
    fold_of_cluster : (n_clusters,) int array
        The group (fold) of each cluster; resampling happens within groups.
    n_boot : int
        Number of resamples.
    rng : numpy.random.Generator

    Returns
    -------
    (n_boot, n_clusters) int32 array
        Multiplicities; row ``b`` is resample ``b``.
    """
    mult = np.zeros((n_boot, len(fold_of_cluster)), dtype=np.int32)
    for f in np.unique(fold_of_cluster):
        cols = np.flatnonzero(fold_of_cluster == f)
        m = len(cols)
        draws = rng.integers(0, m, size=(n_boot, m))
        flat = (draws + (np.arange(n_boot) * m)[:, None]).ravel()
        mult[:, cols] = np.bincount(flat, minlength=n_boot * m).reshape(n_boot, m)
    return mult


def _boot_group(eps: np.ndarray, cpos: np.ndarray, mult: np.ndarray, point: dict,
                edges: np.ndarray) -> dict:
    """Bootstrap distributions (arrays of length B) of the statistics of one group."""
    n_boot = mult.shape[0]
    out = {}
    # Means and variances from per-cluster sums: cheap matrix-vector products.
    n_c = np.bincount(cpos, minlength=mult.shape[1]).astype(float)
    s1 = np.bincount(cpos, weights=eps, minlength=mult.shape[1])
    s2 = np.bincount(cpos, weights=eps * eps, minlength=mult.shape[1])
    tot = mult @ n_c
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = (mult @ s1) / tot
        var = ((mult @ s2) - tot * mean * mean) / (tot - 1)
    out["bias_mean_dex"] = mean
    out["sigma_std_dex"] = np.sqrt(np.maximum(var, 0))
    # Quantiles, histograms, outliers: cumulative weights over the sorted eps. One
    # cumsum over the flattened (B, n) weights gives a globally increasing array G, so
    # every row's quantile is one np.searchsorted and counts are differences of G.
    order = np.argsort(eps, kind="stable")
    x = eps[order]
    n = len(x)
    w = np.take(mult, cpos[order], axis=1)  # C-contiguous, so ravel() is a view
    dtype = np.int64 if w.size * int(mult.max(initial=1)) > 2**31 - 1 else np.int32
    g_cum = np.empty(w.size + 1, dtype=dtype)
    g_cum[0] = 0
    np.cumsum(w.ravel(), out=g_cum[1:])
    del w
    rows = np.arange(n_boot, dtype=dtype)
    start = g_cum[rows * n]
    total = g_cum[rows * n + n] - start

    def at(k):  # cumulative weight of the first k sorted values, per row (k: (B,) or (B, m))
        return g_cum[(rows * n).reshape((-1,) + (1,) * (np.ndim(k) - 1)) + k]

    def q(percent):
        need = -(-percent * total.astype(np.int64) // 100)  # ceil(p T / 100), exact
        # Same dtype as g_cum, else searchsorted silently converts the whole array.
        target = (start + np.maximum(need, 1)).astype(g_cum.dtype)
        k = np.searchsorted(g_cum, target, side="left") - rows * n - 1
        return x[np.clip(k, 0, n - 1)]

    q16, q50, q84 = q(16), q(50), q(84)
    robust = (q84 - q16) / 2
    out["bias_median_dex"] = q50
    out["sigma_robust_dex"] = robust
    if math.isfinite(point["sigma_gauss_dex"]) and len(edges):
        if point["sigma_gauss_dex"] == 0:
            mu, sig = np.full(n_boot, point["gauss_mu_dex"]), np.zeros(n_boot)
        else:
            pos = np.searchsorted(x, edges, side="left")
            counts = np.diff(at(np.broadcast_to(pos, (n_boot, len(pos)))), axis=1).astype(float)
            centers = (edges[:-1] + edges[1:]) / 2
            p0 = np.stack([counts.max(axis=1), q50,
                           np.maximum(robust, ROBUST_FLOOR_DEX)], axis=1)
            fit = fit_gaussian_batch(counts, centers, p0)
            mu, sig = fit[:, 1], fit[:, 2]
        out["gauss_mu_dex"], out["sigma_gauss_dex"] = mu, sig
        thr = N_SIGMA_OUTLIER * sig
        hi = np.searchsorted(x, thr, side="right")
        lo = np.searchsorted(x, -thr, side="left")
        inside = at(hi) - at(lo)
        out["outlier_frac"] = (total - inside) / total
    else:
        for k in ("gauss_mu_dex", "sigma_gauss_dex", "outlier_frac"):
            out[k] = np.full(n_boot, math.nan)
    for dex, frac in _DEX_TO_FRAC.items():
        out[frac] = LN10 * out[dex]
    return out


def _boot_own_bins(eps: np.ndarray, cpos: np.ndarray, mult: np.ndarray, point: dict) -> dict:
    """:func:`_boot_group` with the histogram bins of the group's own full sample."""
    return _boot_group(eps, cpos, mult, point, fit_gaussian(eps)["edges"])


def ci68(samples) -> list:
    """The 68% interval of bootstrap samples: ``[16th, 84th]`` percentiles.

    Non-finite samples are left out; ``[nan, nan]`` when none is finite.
    """
    s = np.asarray(samples, dtype=float)
    s = s[np.isfinite(s)]
    if len(s) == 0:
        return [math.nan, math.nan]
    lo, hi = np.percentile(s, [16, 84])
    return [float(lo), float(hi)]


def bootstrap_scatter(eps, cluster_pos, mult) -> np.ndarray:
    """Gaussian-fit scatter fraction (``scatter_gauss_frac``) of every bootstrap resample.

    Parameters
    ----------
    eps : (n,) array
        Residuals of one set of images (dex).
    cluster_pos : (n,) int array
        Column of ``mult`` (the cluster) of each image; the images may be a subset (e.g.
        one fold) of the clusters that ``mult`` resamples.
    mult : (B, n_clusters) int array
        Cluster multiplicities of the resamples (:func:`cluster_multiplicities`).

    Returns
    -------
    (B,) array
        ln(10) x sigma of the best-fit Gaussian per resample, with the histogram bins of
        the full set (as :func:`score` does); NaN everywhere when the set's own fit is
        undefined (fewer than 10 images).
    """
    eps = np.asarray(eps, dtype=float)
    point = summarize(eps)
    if not math.isfinite(point["sigma_gauss_dex"]):
        return np.full(mult.shape[0], math.nan)
    boot = _boot_own_bins(eps, np.asarray(cluster_pos), mult, point)
    return boot["scatter_gauss_frac"]


# ---------------------------------------------------------------------------------------
# Uncertainty track
# ---------------------------------------------------------------------------------------

def uncertainty_kind(pred: pd.DataFrame) -> str | None:
    """``"gaussian"`` (a sigma column), ``"quantiles"`` (q16, q50, q84) or None (point only).

    Raises
    ------
    SubmissionError
        When both kinds, or only some of the quantiles, are given.
    """
    cols = set(pred.columns)
    has_sigma = SIGMA_COLUMN in cols
    quant = [c for c in QUANTILE_COLUMNS if c in cols]
    if has_sigma and quant:
        raise SubmissionError(f"predictions carry both {SIGMA_COLUMN} and quantiles {quant}: "
                              "give either a Gaussian sigma or the three quantiles, not both")
    if quant and len(quant) != len(QUANTILE_COLUMNS):
        missing = [c for c in QUANTILE_COLUMNS if c not in cols]
        raise SubmissionError(f"quantile predictions lack {missing}: give all of "
                              f"{list(QUANTILE_COLUMNS)}")
    return "gaussian" if has_sigma else ("quantiles" if quant else None)


def gaussian_from_quantiles(q16, q50, q84) -> tuple[np.ndarray, np.ndarray]:
    """The Gaussian with the same median and 16-84 width: ``(q50, (q84 - q16) / (2 z84))``.

    ``z84`` = Phi^-1(0.84) ~ 0.9945, so a Gaussian's own quantiles give back its sigma;
    the asymmetry of skewed quantiles is not scored.
    """
    q16, q50, q84 = (np.asarray(q, dtype=float) for q in (q16, q50, q84))
    return q50, (q84 - q16) / (2.0 * Z84)


def uncertainty_problems(mu: np.ndarray, sigma: np.ndarray, ids) -> list[str]:
    """Why per-image Gaussians cannot be scored (non-finite, zero or negative sigma), by id."""
    ids = np.asarray(ids, dtype=object)
    problems = []
    bad_mu = ~np.isfinite(mu)
    if bad_mu.any():
        problems.append(f"{int(bad_mu.sum())} non-finite predictive centre(s): "
                        f"{head_list(ids[bad_mu])}")
    with np.errstate(invalid="ignore"):
        bad = ~np.isfinite(sigma) | (sigma <= 0)
    if bad.any():
        problems.append(f"{int(bad.sum())} sigma(s) not finite and > 0 (dex): "
                        f"{head_list(ids[bad])}")
    return problems


def predictive_gaussians(pred: pd.DataFrame, catalog: pd.DataFrame) -> dict | None:
    """Per seed, the predictive Gaussian ``(mu, sigma)`` (dex) of every catalog image.

    Gaussian entries: ``mu = log10_m500c_pred``, ``sigma = log10_m500c_sigma``; quantile
    entries: :func:`gaussian_from_quantiles`. Arrays follow the catalog's order (call
    :func:`residuals` first: it checks ids, duplicates and coverage).

    Returns
    -------
    dict of seed -> (mu, sigma), or None for predictions without uncertainties.

    Raises
    ------
    SubmissionError
        Listing the images whose uncertainty is malformed.
    """
    kind = uncertainty_kind(pred)
    if kind is None:
        return None
    ids = catalog["image_id"].to_numpy(dtype=object)
    cols = ("log10_m500c_pred", SIGMA_COLUMN) if kind == "gaussian" else QUANTILE_COLUMNS
    # Coverage problems (duplicates, unknown or missing ids) are residuals()'s to report.
    aligned, _ = _aligned_by_seed(pred, ids, cols)
    out, problems = {}, []
    for seed, (values, _present) in aligned.items():
        if kind == "quantiles":
            with np.errstate(invalid="ignore"):
                cross = ~((values[0] < values[1]) & (values[1] < values[2]))
            cross &= np.isfinite(np.stack(values)).all(axis=0)
            if cross.any():
                problems.append(f"seed {seed}: {int(cross.sum())} image(s) whose quantiles "
                                f"are not q16 < q50 < q84: {head_list(ids[cross])}")
            mu, sigma = gaussian_from_quantiles(*values)
        else:
            mu, sigma = values
        problems += [f"seed {seed}: {p}" for p in uncertainty_problems(mu, sigma, ids)]
        out[seed] = (mu, sigma)
    _raise_problems("uncertainties", problems)
    return out


def pit(y: np.ndarray, mu: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """Probability integral transform: the predictive CDF at the truth, Phi((y - mu) / sigma)."""
    from scipy.stats import norm

    return norm.cdf(np.asarray(y, float), loc=mu, scale=sigma)


def pit_histogram(u: np.ndarray, n_bins: int = N_PIT_BINS) -> list[float]:
    """Fractions of PIT values in ``n_bins`` equal bins of [0, 1] (calibrated: all 1/n_bins)."""
    counts = np.histogram(np.asarray(u, float), bins=n_bins, range=(0.0, 1.0))[0]
    return (counts / max(len(u), 1)).tolist()


def central_coverage(u: np.ndarray, level: float) -> float:
    """Fraction of truths inside the central ``level`` interval of their predictive law."""
    u = np.asarray(u, float)
    return float(np.mean(np.abs(2.0 * u - 1.0) <= level)) if len(u) else math.nan


def reliability(u: np.ndarray, levels=RELIABILITY_LEVELS) -> list[float]:
    """Observed coverage of the central intervals at each nominal ``level`` (the diagonal
    is perfect calibration; below it: intervals too narrow)."""
    return [central_coverage(u, lv) for lv in levels]


def image_scores(y: np.ndarray, mu: np.ndarray, sigma: np.ndarray) -> dict:
    """Per image: CRPS (dex), log score (per dex), and whether the truth lies inside the central
    68% and 95% intervals (1.0 or 0.0); the means of these are the pooled scores.

    CRPS and the log score come from ``scoringrules`` (``crps_normal``, ``logs_normal``: the
    negative log density); lower is better for both.
    """
    import scoringrules as sr

    y, mu, sigma = (np.asarray(a, float) for a in (y, mu, sigma))
    inside = np.abs(2.0 * pit(y, mu, sigma) - 1.0)
    return {"crps_dex": np.asarray(sr.crps_normal(y, mu, sigma), float),
            "log_score": np.asarray(sr.logs_normal(y, mu, sigma), float),
            "coverage_68": (inside <= 0.68).astype(float),
            "coverage_95": (inside <= 0.95).astype(float)}


def summarize_uncertainty(y: np.ndarray, mu: np.ndarray, sigma: np.ndarray) -> dict:
    """Every statistic of :data:`UNC_KEYS` for one set of images, plus ``n_images``.

    CRPS, log score and coverages are means of :func:`image_scores`; ``z_std`` is the
    standard deviation of the standardised residuals.
    """
    y, mu, sigma = (np.asarray(a, float) for a in (y, mu, sigma))
    out = {k: math.nan for k in UNC_KEYS}
    out["n_images"] = int(len(y))
    if len(y) == 0:
        return out
    out.update({k: float(np.mean(v)) for k, v in image_scores(y, mu, sigma).items()})
    z = (y - mu) / sigma
    out.update(sigma_mean_dex=float(np.mean(sigma)),
               z_std=float(np.std(z, ddof=1)) if len(z) > 1 else math.nan)
    return out


def bootstrap_uncertainty(gauss_by_seed: dict, truth: np.ndarray, cpos: np.ndarray,
                          mult: np.ndarray) -> dict:
    """68% intervals of the pooled CRPS, log score and 68%/95% coverages over clusters.

    A cluster's views are correlated (same gas, same mass), so the resampling unit is the
    cluster, as for the point scores (and with the same draws, ``mult``). Every statistic is
    a mean over images, so a resample's value is ``(mult @ per-cluster sums) / (mult @
    per-cluster counts)``; each resample averages the seeds, as the point estimate does.

    Parameters
    ----------
    gauss_by_seed : dict of seed -> (mu, sigma)
        In the order of ``truth``.
    truth : array
        True log10 M500c of the scored images.
    cpos : int array
        Cluster index (0..n_clusters-1) of each image.
    mult : (n_boot, n_clusters) int array
        How often each resample draws each cluster.

    Returns
    -------
    dict
        :data:`UNC_BOOT_KEYS` -> ``[16th, 84th]`` percentiles of the resampled values.
    """
    n_c = np.bincount(cpos, minlength=mult.shape[1]).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        weight = 1.0 / (mult @ n_c)
    boot = {k: np.zeros(mult.shape[0]) for k in UNC_BOOT_KEYS}
    for mu, sigma in gauss_by_seed.values():
        per_image = image_scores(truth, mu, sigma)
        for k in UNC_BOOT_KEYS:
            sums = np.bincount(cpos, weights=per_image[k], minlength=mult.shape[1])
            boot[k] += (mult @ sums) * weight / len(gauss_by_seed)
    return {k: ci68(boot[k]) for k in UNC_BOOT_KEYS}


def _mean_unc(per_seed: list[dict]) -> dict:
    return _mean_over_seeds(per_seed, UNC_KEYS)


def score_uncertainty(gauss_by_seed: dict, truth: np.ndarray, fold: np.ndarray,
                      mass_edges: np.ndarray, kind: str, cpos: np.ndarray | None = None,
                      mult: np.ndarray | None = None) -> dict:
    """The uncertainty track of :func:`score`: pooled, per fold and per mass bin.

    Parameters
    ----------
    gauss_by_seed : dict of seed -> (mu, sigma)
        From :func:`predictive_gaussians`, in the order of ``truth``.
    truth : array
        True log10 M500c of the scored images.
    fold : array
        Test fold of each image.
    mass_edges : array
        Edges of the mass bins (those of the point scores).
    kind : {"gaussian", "quantiles"}
    cpos, mult : arrays, optional
        Cluster index of each image and the bootstrap's cluster multiplicities
        (:func:`bootstrap_uncertainty`); without them ``pooled_ci68`` is null.

    Returns
    -------
    dict
        ``kind``, ``pooled`` (:data:`UNC_KEYS`), ``pooled_ci68`` (:data:`UNC_BOOT_KEYS` ->
        [lo, hi], bootstrap over clusters, or None), ``pit_hist`` (fractions in
        :data:`N_PIT_BINS` bins, mean over seeds), ``reliability`` (nominal ``levels``,
        ``observed`` coverage, mean over seeds), ``folds`` and ``mass_bins``.
    """
    def over_seeds(sel):
        return _mean_unc([summarize_uncertainty(truth[sel], m[sel], s[sel])
                          for m, s in gauss_by_seed.values()])

    every = np.ones(len(truth), bool)
    pits = [pit(truth, m, s) for m, s in gauss_by_seed.values()]
    mass_rows = []
    for i in range(len(mass_edges) - 1):
        last = i == len(mass_edges) - 2
        sel = (truth >= mass_edges[i]) & ((truth <= mass_edges[i + 1]) if last
                                          else (truth < mass_edges[i + 1]))
        mass_rows.append({"lo": float(mass_edges[i]), "hi": float(mass_edges[i + 1]),
                          **over_seeds(sel)})
    return {
        "kind": kind,
        "pooled": over_seeds(every),
        "pooled_ci68": (None if mult is None or cpos is None
                        else bootstrap_uncertainty(gauss_by_seed, truth, cpos, mult)),
        "pit_hist": np.mean([pit_histogram(u) for u in pits], axis=0).tolist(),
        "reliability": {"levels": list(RELIABILITY_LEVELS),
                        "observed": np.mean([reliability(u) for u in pits], axis=0).tolist()},
        "folds": [{"fold": int(f), **over_seeds(fold == f)} for f in np.unique(fold)],
        "mass_bins": mass_rows,
    }


# ---------------------------------------------------------------------------------------
# Scoring
# ---------------------------------------------------------------------------------------

def residuals(pred: pd.DataFrame, catalog: pd.DataFrame, image_ids=None) -> dict:
    """eps per seed, aligned to ``image_ids`` (default: every catalog image).

    Returns
    -------
    dict of seed -> ndarray
        eps in the order of ``image_ids``.

    Raises
    ------
    SubmissionError
        Listing missing, duplicate, unknown or non-finite predictions.
    """
    if not isinstance(pred, pd.DataFrame):
        raise SubmissionError("predictions must be a pandas DataFrame with columns image_id, "
                              "log10_m500c_pred[, seed]; see `clustermass format`")
    missing_cols = [c for c in ("image_id", "log10_m500c_pred") if c not in pred.columns]
    if missing_cols:
        raise SubmissionError(f"predictions lack columns {missing_cols}; see "
                              "`clustermass format`")
    cat_ids = catalog["image_id"].to_numpy(dtype=object)
    ids = cat_ids if image_ids is None else np.asarray(image_ids, dtype=object)
    cat_pos = pd.Index(cat_ids).get_indexer(ids)
    if (cat_pos < 0).any():
        raise SubmissionError(f"image ids not in the catalog: {head_list(ids[cat_pos < 0])}")
    truth = catalog["log10_m500c"].to_numpy(dtype=float)[cat_pos]
    aligned, problems = _aligned_by_seed(pred, ids, ("log10_m500c_pred",))
    out = {}
    for seed, ((values,), present) in aligned.items():
        bad = ids[~np.isfinite(values) & present]
        if len(bad):
            problems.append(f"seed {seed}: {len(bad)} non-finite prediction(s): {head_list(bad)}")
        out[seed] = values - truth
    _raise_problems("predictions", problems)
    return out


def _seeds_of(pred: pd.DataFrame) -> np.ndarray:
    """The ``seed`` column as int64 (0 for every row without one)."""
    if "seed" not in pred.columns:
        return np.zeros(len(pred), dtype=np.int64)
    try:
        return pred["seed"].astype(np.int64).to_numpy()
    except (TypeError, ValueError):
        raise SubmissionError("column 'seed' must hold integers") from None


def _aligned_by_seed(pred: pd.DataFrame, ids: np.ndarray, columns) -> tuple[dict, list[str]]:
    """Per seed, ``columns`` of ``pred`` aligned to ``ids``, and what stops them being scored.

    Returns
    -------
    aligned : dict of seed -> (tuple of arrays, present)
        One float array per column in the order of ``ids`` (NaN where no prediction) and the
        mask of ids that have one.
    problems : list of str
        Images predicted more than once, ids not among ``ids``, ids without a prediction.
    """
    target = pd.Index(ids)
    seeds = _seeds_of(pred)
    all_pid = pred["image_id"].to_numpy(dtype=object)
    values = [pd.to_numeric(pred[c], errors="coerce").to_numpy(dtype=float) for c in columns]
    aligned, problems = {}, []
    for seed in np.unique(seeds).tolist():
        sel = seeds == seed
        pid = all_pid[sel]
        pos = target.get_indexer(pid)  # position of each prediction among scored ids
        dup = pd.unique(pid[pd.Series(pid).duplicated().to_numpy()])
        if len(dup):
            problems.append(f"seed {seed}: {len(dup)} image(s) predicted more than once: "
                            f"{head_list(dup)}")
        if (pos < 0).any():
            unknown = sorted({str(v) for v in pid[pos < 0]})
            problems.append(f"seed {seed}: {len(unknown)} image id(s) not among the images "
                            f"scored: {head_list(unknown)}")
        known = pos >= 0
        present = np.zeros(len(ids), bool)
        present[pos[known]] = True
        if not present.all():
            miss = ids[~present]
            problems.append(f"seed {seed}: {len(miss)} image(s) without a prediction: "
                            f"{head_list(miss)}")
        arrays = []
        for v in values:
            a = np.full(len(ids), np.nan)
            a[pos[known]] = v[sel][known]
            arrays.append(a)
        aligned[int(seed)] = (tuple(arrays), present)
    return aligned, problems


def _raise_problems(what: str, problems: list[str]) -> None:
    if problems:
        raise SubmissionError(format_problems(
            f"{what} cannot be scored ({len(problems)} problem(s))", problems,
            "Validate first with benchmark.submission.validate_predictions; nothing was scored."))




def _bin_edges(values: np.ndarray, n_bins: int) -> np.ndarray:
    # Equal-count edges of the true values (fixed by the catalog, so equal for all entries).
    uniq = np.unique(values)
    if len(uniq) <= 1:
        return np.array([values.min(), values.max()]) if len(values) else np.zeros(0)
    edges = np.unique(np.round(np.quantile(values, np.linspace(0, 1, n_bins + 1)), 4))
    edges[0], edges[-1] = min(edges[0], values.min()), max(edges[-1], values.max())
    return edges


def _binned(eps_by_seed: dict, values: np.ndarray, edges: np.ndarray) -> list:
    rows = []
    for i in range(len(edges) - 1):
        last = i == len(edges) - 2
        sel = (values >= edges[i]) & ((values <= edges[i + 1]) if last else
                                      (values < edges[i + 1]))
        stats = _mean_over_seeds([summarize(e[sel]) for e in eps_by_seed.values()])
        rows.append({"lo": float(edges[i]), "hi": float(edges[i + 1]),
                     "center": float((edges[i] + edges[i + 1]) / 2), **stats})
    return rows


def _mean_over_seeds(per_seed: list[dict], keys=None) -> dict:
    """Mean of each statistic over seeds (NaN when a seed has none)."""
    out = {"n_images": per_seed[0]["n_images"]}
    for k in STAT_KEYS if keys is None else keys:
        out[k] = _finite_mean([d[k] for d in per_seed])
    return out


def _finite_mean(vals) -> float:
    """The mean, or NaN unless every value is finite."""
    vals = np.asarray(vals, dtype=float)
    return float(np.mean(vals)) if np.all(np.isfinite(vals)) else math.nan


def _std(vals) -> float:
    vals = np.asarray(vals, dtype=float)
    if len(vals) < 2 or not np.all(np.isfinite(vals)):
        return math.nan
    return float(np.std(vals, ddof=1))


def _best_worst(values: dict, key: str) -> dict:
    folds = [f for f, v in values.items() if math.isfinite(v)]
    if not folds:
        return {"best": math.nan, "best_fold": None, "worst": math.nan, "worst_fold": None}
    keyf = (lambda f: abs(values[f])) if _BEST.get(key) == "abs" else (lambda f: values[f])
    best, worst = min(folds, key=keyf), max(folds, key=keyf)
    return {"best": values[best], "best_fold": int(best),
            "worst": values[worst], "worst_fold": int(worst)}


_SCORED_CATALOG_COLUMNS = ("image_id", "cluster_id", "log10_m500c", "redshift", "cool_core",
                           "merger")


def _check_catalog_columns(catalog: pd.DataFrame) -> None:
    miss = [c for c in _SCORED_CATALOG_COLUMNS if c not in catalog.columns]
    if miss:
        raise DatasetError(f"catalog lacks columns {miss}")


def _scored_rows(catalog: pd.DataFrame, splits,
                 folds=None) -> tuple[list[int], pd.DataFrame, np.ndarray]:
    """The scored folds (all by default), the catalog rows of their test images and the fold
    of each row."""
    fold_all = splits.folds_of(catalog["cluster_id"].to_numpy())
    scored = list(range(splits.n_folds)) if folds is None else sorted({int(f) for f in folds})
    for f in scored:
        splits._check_k(f)
    keep = np.isin(fold_all, scored)
    return scored, catalog[keep].reset_index(drop=True), fold_all[keep]


def _summaries_per_seed(eps_by_seed: dict, fold: np.ndarray,
                        scored: list[int]) -> tuple[list[dict], list[dict]]:
    """Per seed, :func:`summarize` of all scored images, and of each fold's (fold -> dict)."""
    pooled, by_fold = [], []
    for eps in eps_by_seed.values():
        pooled.append(summarize(eps))
        by_fold.append({f: summarize(eps[fold == f]) for f in scored})
    return pooled, by_fold


def _cluster_draws(fold_of_cluster: np.ndarray, n_boot: int,
                   rng_seed: int) -> np.ndarray | None:
    """:func:`cluster_multiplicities` of ``n_boot`` resamples; None when ``n_boot`` is 0."""
    if not (n_boot and n_boot > 0):
        return None
    return cluster_multiplicities(fold_of_cluster, int(n_boot),
                                  np.random.default_rng(rng_seed))


def _boot_over_seeds(eps_by_seed: dict, per_seed_pooled: list[dict],
                     per_seed_folds: list[dict], fold: np.ndarray, scored: list[int],
                     cpos: np.ndarray, mult: np.ndarray, n_boot: int) -> tuple[dict, dict]:
    """Bootstrap distributions of the pooled (B,) and per-fold (B, n_folds) statistics.

    Every seed sees the same resamples and a resample's value is the mean over seeds, as
    the point estimates are. ``n_boot`` is :func:`score`'s own, not ``len(mult)``, so that
    a non-integer one is still refused (``np.zeros``).
    """
    n_seeds = len(eps_by_seed)
    boot_pooled = {k: np.zeros(n_boot) for k in STAT_KEYS}
    boot_folds = {k: np.zeros((n_boot, len(scored))) for k in STAT_KEYS}
    for eps, point, point_folds in zip(eps_by_seed.values(), per_seed_pooled, per_seed_folds):
        b = _boot_own_bins(eps, cpos, mult, point)
        for k in STAT_KEYS:
            boot_pooled[k] += b[k] / n_seeds
        for j, f in enumerate(scored):
            sel = fold == f
            # The fold's own clusters, resampled within the fold by the same draws.
            bf = _boot_own_bins(eps[sel], cpos[sel], mult, point_folds[f])
            for k in STAT_KEYS:
                boot_folds[k][:, j] += bf[k] / n_seeds
    return boot_pooled, boot_folds


def _no_intervals() -> dict:
    return {k: [math.nan, math.nan] for k in STAT_KEYS}


def _bootstrap_intervals(mult: np.ndarray | None, n_boot: int, eps_by_seed: dict,
                         per_seed_pooled: list[dict], per_seed_folds: list[dict],
                         fold: np.ndarray, scored: list[int],
                         cpos: np.ndarray) -> tuple[dict, dict]:
    """68% intervals of the pooled statistics and of their means over folds (NaN when
    ``mult`` is None: no bootstrap)."""
    if mult is None:
        return _no_intervals(), _no_intervals()
    boot_pooled, boot_folds = _boot_over_seeds(eps_by_seed, per_seed_pooled, per_seed_folds,
                                               fold, scored, cpos, mult, n_boot)
    return ({k: ci68(boot_pooled[k]) for k in STAT_KEYS},
            {k: ci68(boot_folds[k].mean(axis=1)) for k in STAT_KEYS})


def _fold_table(fold_stats: dict, cluster_ids: np.ndarray, fold: np.ndarray) -> list[dict]:
    """One row per scored fold: the fold, its number of clusters and its statistics."""
    return [{"fold": int(f), "n_clusters": int(len(np.unique(cluster_ids[fold == f]))),
             **stats} for f, stats in fold_stats.items()]


def _fold_summary(fold_stats: dict, fold_mean_ci: dict) -> dict:
    """Per statistic: mean and std over folds, the best and worst fold, and the 68% interval
    of the mean over folds."""
    out = {}
    for k in STAT_KEYS:
        vals = {f: stats[k] for f, stats in fold_stats.items()}
        arr = np.array(list(vals.values()), dtype=float)
        out[k] = {"mean": _finite_mean(arr), "std": _std(arr), **_best_worst(vals, k),
                  "mean_ci68": fold_mean_ci[k]}
    return out


def _seed_summary(seeds: list, per_seed_pooled: list[dict], per_seed_folds: list[dict]) -> dict:
    """The pooled statistics of every seed and their spread over seeds (pooled and of the
    mean over folds)."""
    return {
        "n_seeds": len(seeds),
        "per_seed": [{"seed": s, **d} for s, d in zip(seeds, per_seed_pooled)],
        "std": {k: _std([d[k] for d in per_seed_pooled]) for k in STAT_KEYS},
        "fold_mean_std": {k: _std([np.mean([stats[k] for stats in d.values()])
                                   for d in per_seed_folds])
                          for k in STAT_KEYS},
    }


def _split_by(eps_by_seed: dict, values: np.ndarray) -> dict:
    """Statistics (mean over seeds) of the images of each value of a categorical column."""
    return {str(int(v)): _mean_over_seeds([summarize(eps[values == v])
                                           for eps in eps_by_seed.values()])
            for v in np.unique(values)}


def _pdf(eps: np.ndarray, seed: int) -> dict:
    """The histogram of one seed's eps and its Gaussian fit (the study's figure)."""
    fit = fit_gaussian(eps)
    return {"seed": seed, "bin_edges_dex": fit["edges"],
            "counts": [int(c) for c in fit["counts"]],
            "gauss": {"amplitude": fit["amplitude"], "mu_dex": fit["mu_dex"],
                      "sigma_dex": fit["sigma_dex"]}}


def _headline(pooled: dict, pooled_ci: dict, gauss_over_folds: dict) -> dict:
    """The numbers a leaderboard shows: pooled Gaussian-fit scatter and mean bias, with
    ``gauss_over_folds`` the fold summary of ``scatter_gauss_frac``."""
    g = gauss_over_folds
    return {
        "scatter_frac": pooled["scatter_gauss_frac"],
        "scatter_frac_ci68": pooled_ci["scatter_gauss_frac"],
        "scatter_frac_fold_mean": g["mean"],
        "scatter_frac_fold_std": g["std"],
        "scatter_frac_best_fold": g["best"],
        "scatter_frac_worst_fold": g["worst"],
        "bias_dex": pooled["bias_mean_dex"],
        "bias_dex_ci68": pooled_ci["bias_mean_dex"],
        "label": "scatter_frac = ln(10) x sigma of the best-fit Gaussian to eps (pooled); "
                 "bias in dex",
    }


def _result_head(splits, scored: list[int], seeds: list, n_images: int, n_clusters: int,
                 n_boot: int, rng_seed: int) -> dict:
    """The keys that open :func:`score`'s result: what was scored, and how."""
    return {
        "metrics_version": METRICS_VERSION,
        "definitions": DEFINITIONS,
        "n_images": int(n_images),
        "n_clusters": int(n_clusters),
        "n_folds": int(splits.n_folds),
        "splits_sha256": splits.sha256(),
        "folds_scored": scored,
        "complete": len(scored) == splits.n_folds,
        "seeds": seeds,
        "n_boot": int(n_boot or 0),
        "rng_seed": int(rng_seed),
    }


def score(pred: pd.DataFrame, catalog: pd.DataFrame, splits, n_boot: int = 1000,
          rng_seed: int = 0, folds=None) -> dict:
    """Score out-of-fold predictions against the truth of the catalog.

    Parameters
    ----------
    pred : DataFrame
        Columns ``image_id``, ``log10_m500c_pred`` and optionally ``seed`` and either
        ``log10_m500c_sigma`` or the three :data:`QUANTILE_COLUMNS`; exactly one
        finite prediction per scored image and seed (validate with
        :func:`benchmark.submission.validate_predictions` first for full messages).
    catalog : DataFrame
        The dataset catalog (``image_id, cluster_id, log10_m500c, redshift, cool_core,
        merger``).
    splits : benchmark.dataset.splits.Splits
    n_boot : int
        Bootstrap resamples of clusters (0: no intervals).
    rng_seed : int
        Seed of the bootstrap.
    folds : sequence of int, optional
        Score only the test images of these folds (default all; ``complete`` says which).

    Returns
    -------
    dict
        JSON-serialisable (NaN written as null); see :data:`DEFINITIONS` and the keys
        ``pooled``, ``pooled_ci68``, ``folds``, ``fold_summary``, ``seed_summary``,
        ``mass_bins``, ``redshift_bins``, ``uncertainty`` (:func:`score_uncertainty`, or
        None for point predictions), ``by_cool_core``, ``by_merger``, ``pdf``,
        ``headline``.
    """
    _check_catalog_columns(catalog)
    scored, cat, fold = _scored_rows(catalog, splits, folds)
    eps_by_seed = residuals(pred, cat)
    gauss_by_seed = predictive_gaussians(pred, cat)
    seeds = list(eps_by_seed)
    cid = cat["cluster_id"].to_numpy()
    cpos, fold_of_cluster = cluster_groups(cid, fold)

    per_seed_pooled, per_seed_folds = _summaries_per_seed(eps_by_seed, fold, scored)
    pooled = _mean_over_seeds(per_seed_pooled)
    fold_stats = {f: _mean_over_seeds([d[f] for d in per_seed_folds]) for f in scored}
    # Bootstrap over clusters (within folds), averaged over seeds per resample.
    mult = _cluster_draws(fold_of_cluster, n_boot, rng_seed)
    pooled_ci, fold_mean_ci = _bootstrap_intervals(mult, n_boot, eps_by_seed, per_seed_pooled,
                                                   per_seed_folds, fold, scored, cpos)
    fold_summary = _fold_summary(fold_stats, fold_mean_ci)

    logm = cat["log10_m500c"].to_numpy(dtype=float)
    z = cat["redshift"].to_numpy(dtype=float)
    mass_edges = _bin_edges(logm, N_MASS_BINS)
    z_edges = _bin_edges(z, N_REDSHIFT_BINS)
    result = {
        **_result_head(splits, scored, seeds, len(cat), len(fold_of_cluster), n_boot,
                       rng_seed),
        "pooled": pooled,
        "pooled_ci68": pooled_ci,
        "folds": _fold_table(fold_stats, cid, fold),
        "fold_summary": fold_summary,
        "seed_summary": _seed_summary(seeds, per_seed_pooled, per_seed_folds),
        "mass_bins": {"variable": "log10_m500c", "edges": mass_edges,
                      "bins": _binned(eps_by_seed, logm, mass_edges)},
        "redshift_bins": {"variable": "redshift", "edges": z_edges,
                          "bins": _binned(eps_by_seed, z, z_edges)},
        "uncertainty": (None if gauss_by_seed is None else score_uncertainty(
            gauss_by_seed, logm, fold, mass_edges, uncertainty_kind(pred), cpos, mult)),
        "by_cool_core": _split_by(eps_by_seed, cat["cool_core"].to_numpy()),
        "by_merger": _split_by(eps_by_seed, cat["merger"].to_numpy()),
        "pdf": _pdf(eps_by_seed[seeds[0]], seeds[0]),
        "headline": _headline(pooled, pooled_ci, fold_summary["scatter_gauss_frac"]),
    }
    return json_safe(result)
