"""Interpretation diagnostics for any model the harness can run.

Every fold model is evaluated on clusters of its own test fold (it never saw them). Four
diagnostics, all as functions of the projected radius in units of R500c:

(a) DeepDream-style ascent: change the input image in the direction that raises the
    predicted mass and measure the fractional change of photons dN/N in radial bins after
    the first and the second iteration (the study saw photons added beyond ~0.2 R500c).
    One iteration is::

        x <- clip(x + step_size * mean(x) * g / mean(|g|), 0, inf)

    with ``g = d log10 M / d counts`` at the current image. The gradient is normalised by
    its mean absolute value over the image, so with the default ``step_size = 0.1`` the
    average pixel moves by 10 % of the image's mean count per pixel; photons stay
    non-negative (clip). Images whose largest (5x5-smoothed) change lies beyond
    ``outlier_r500c`` (1 R500c) are flagged off-centre; images whose predicted mass did not
    rise are flagged too.
(b) Saliency: radial profile of |d log10 M / d counts|, normalised per image to a mean of 1.
(c) Occlusion (model-agnostic, no gradients needed): the core inside 0.15 and 0.2 R500c is
    replaced by the mean count per pixel of the surrounding annulus (r_core to 1.5 r_core,
    "annulus") or by the image's background level (median of the pixels beyond 1.5 R500c,
    "background"), and the change of the predicted log10 M is recorded. Ring dimming scales
    the photons of one radial ring at a time by ``1 - ring_dimming`` and records |delta
    log10 M|; it is the finite-difference version of gradient x input summed over the ring.
(d) ``core_sensitivity_ratio`` = (share of the model's sensitivity inside 0.15 R500c) /
    (share of photons inside 0.15 R500c), median over the diagnosed images. Sensitivity is
    |gradient x input| when the model has gradients (method ``"gradient"``), otherwise the
    ring-dimming |delta log10 M| (method ``"occlusion"``). A model that weighs every photon
    alike (e.g. log of the total counts) scores 1; a model that ignores the core scores ~0.

Entry points: :func:`run_diagnostics` (all folds of a trained entry), :func:`diagnose_entry`
(the same, attached to the entry file for the leaderboard); :func:`diagnose_predictor`
does one batch of images with one predictor.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import pandas as pd

from benchmark.core.errors import ClusterMassError
from benchmark.core.io import json_safe, write_text
from benchmark.entries import load_entry, write_entry

__all__ = [
    "DEFAULT_R_EDGES_R500C",
    "RING_EDGES_R500C",
    "radius_r500c",
    "radial_sum",
    "deepdream_step",
    "occlude_core",
    "diagnose_predictor",
    "summarise",
    "select_test_images",
    "run_diagnostics",
    "plot_diagnostics",
    "entry_summary",
    "diagnose_entry",
]

# Radial bins for the profiles (R/R500c): fine inside the core, coarser outside.
DEFAULT_R_EDGES_R500C = np.array(
    [0.0, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.25, 1.5, 2.0]
)
# Rings for ring dimming; the last ring is open so that every pixel belongs to one ring.
RING_EDGES_R500C = np.array([0.0, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, np.inf])
CORE_R500C = (0.15, 0.2)


class DiagnosticsError(ClusterMassError):
    """Diagnostics cannot run on the inputs given (message says what to fix)."""


# --------------------------------------------------------------------------------------
# geometry
# --------------------------------------------------------------------------------------
def radius_r500c(npix: int, r500c_pix: np.ndarray) -> np.ndarray:
    """Projected radius of every pixel in units of R500c.

    Parameters
    ----------
    npix : int
        Image side in pixels; the cluster centre is at pixel ((npix-1)/2, (npix-1)/2).
    r500c_pix : array (N,)
        R500c of each image in pixels.

    Returns
    -------
    array (N, npix, npix)
    """
    c = (npix - 1) / 2.0
    yy, xx = np.mgrid[0:npix, 0:npix]
    r_pix = np.hypot(yy - c, xx - c)
    r500c_pix = np.asarray(r500c_pix, dtype=float)
    if np.any(~np.isfinite(r500c_pix)) or np.any(r500c_pix <= 0):
        raise DiagnosticsError(
            "R500c in pixels must be finite and positive for every image; "
            "check r500c_arcmin in the catalog and pixel_arcsec in the dataset card"
        )
    return r_pix[None, :, :] / r500c_pix[:, None, None]


def radial_sum(values: np.ndarray, r_r500c: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Sum ``values`` per image in radial bins.

    Parameters
    ----------
    values, r_r500c : array (N, npix, npix)
    edges : array (B+1,)
        Bin edges in R/R500c; pixels outside [edges[0], edges[-1]) are ignored.

    Returns
    -------
    array (N, B)
    """
    n = values.shape[0]
    nb = len(edges) - 1
    idx = np.digitize(r_r500c, edges) - 1  # bin b holds edges[b] <= r < edges[b+1]
    valid = (idx >= 0) & (idx < nb)
    flat = (np.arange(n)[:, None, None] * nb + idx)[valid]
    out = np.bincount(flat, weights=values[valid], minlength=n * nb)
    return out.reshape(n, nb)


def _bin_pixel_counts(r_r500c: np.ndarray, edges: np.ndarray) -> np.ndarray:
    return radial_sum(np.ones_like(r_r500c), r_r500c, edges)


# --------------------------------------------------------------------------------------
# the three image operations
# --------------------------------------------------------------------------------------
def deepdream_step(counts: np.ndarray, grad: np.ndarray, step_size: float = 0.1) -> np.ndarray:
    """One gradient-ascent step on photon-count images (see module docstring).

    Parameters
    ----------
    counts, grad : array (N, npix, npix)
        Images (counts) and d log10 M / d counts at them.
    step_size : float
        Mean absolute change per pixel as a fraction of the image's mean count per pixel.

    Returns
    -------
    array (N, npix, npix), float64, non-negative
    """
    counts = np.asarray(counts, dtype=np.float64)
    grad = np.asarray(grad, dtype=np.float64)
    g_scale = np.mean(np.abs(grad), axis=(1, 2), keepdims=True)
    # A model whose gradient vanishes everywhere leaves the image unchanged.
    g_unit = np.divide(grad, g_scale, out=np.zeros_like(grad), where=g_scale > 0)
    mean_counts = np.mean(counts, axis=(1, 2), keepdims=True)
    return np.clip(counts + step_size * mean_counts * g_unit, 0.0, None)


def occlude_core(
    counts: np.ndarray, r_r500c: np.ndarray, r_core_r500c: float, mode: str = "annulus"
) -> np.ndarray:
    """Replace the core (R < r_core) by a flat level.

    Parameters
    ----------
    counts, r_r500c : array (N, npix, npix)
    r_core_r500c : float
        Core radius in units of R500c.
    mode : {"annulus", "background"}
        ``annulus``: mean count per pixel in r_core <= R < 1.5 r_core (the local level around
        the core, so the core's excess is removed); ``background``: median count per pixel
        beyond 1.5 R500c (the image's background; falls back to the outermost 10 % of pixels
        when the cluster fills the field).

    Returns
    -------
    array (N, npix, npix), float64
    """
    counts = np.asarray(counts, dtype=np.float64)
    out = counts.copy()
    core = r_r500c < r_core_r500c
    for i in range(counts.shape[0]):
        if mode == "annulus":
            ring = (r_r500c[i] >= r_core_r500c) & (r_r500c[i] < 1.5 * r_core_r500c)
            level = counts[i][ring].mean() if ring.any() else 0.0
        elif mode == "background":
            outer = r_r500c[i] >= 1.5
            if outer.sum() < 0.05 * outer.size:
                outer = r_r500c[i] >= np.quantile(r_r500c[i], 0.9)
            level = float(np.median(counts[i][outer]))
        else:
            raise DiagnosticsError(f"unknown occlusion mode {mode!r}; use 'annulus' or 'background'")
        out[i][core[i]] = level
    return out


def _dim_rings(counts: np.ndarray, r_r500c: np.ndarray, ring_edges: np.ndarray, dimming: float):
    """Stack of images, ring j of image i scaled by (1 - dimming): shape (N * R, npix, npix)."""
    n_rings = len(ring_edges) - 1
    idx = np.digitize(r_r500c, ring_edges) - 1
    stack = np.repeat(counts[:, None], n_rings, axis=1)
    for j in range(n_rings):
        stack[:, j][idx == j] *= 1.0 - dimming
    return stack.reshape((-1,) + counts.shape[1:])


# --------------------------------------------------------------------------------------
# one batch of images through one predictor
# --------------------------------------------------------------------------------------
def _predict(predictor, counts: np.ndarray, aux: pd.DataFrame) -> np.ndarray:
    out = np.asarray(predictor.predict(counts.astype(np.float32), aux), dtype=np.float64).reshape(-1)
    if out.shape[0] != counts.shape[0]:
        raise DiagnosticsError(
            f"predictor returned {out.shape[0]} values for {counts.shape[0]} images; "
            "predict(counts, aux) must return one log10 M per image"
        )
    return out


def _gradient(predictor, counts: np.ndarray, aux: pd.DataFrame):
    fn = getattr(predictor, "gradient", None)
    if fn is None:
        return None
    g = fn(counts.astype(np.float32), aux)
    if g is None:
        return None
    g = np.asarray(g, dtype=np.float64).reshape(counts.shape)
    if not np.all(np.isfinite(g)):
        raise DiagnosticsError("predictor.gradient returned non-finite values; check the model")
    return g


def _repeat_aux(aux: pd.DataFrame, n: int) -> pd.DataFrame:
    return aux.loc[aux.index.repeat(n)].reset_index(drop=True)


def diagnose_predictor(
    predictor,
    counts: np.ndarray,
    aux: pd.DataFrame,
    r500c_pix: np.ndarray,
    *,
    step_size: float = 0.1,
    n_iter: int = 2,
    r_edges_r500c: np.ndarray = DEFAULT_R_EDGES_R500C,
    ring_edges_r500c: np.ndarray = RING_EDGES_R500C,
    ring_dimming: float = 0.2,
    core_r500c: Iterable[float] = CORE_R500C,
    outlier_r500c: float = 1.0,
) -> dict:
    """Run every diagnostic on one batch of images with one predictor.

    Parameters
    ----------
    predictor : object
        ``.predict(counts (N,npix,npix) float32, aux) -> log10 M`` and optionally
        ``.gradient(counts, aux) -> d log10 M / d counts`` (or None without gradients).
    counts : array (N, npix, npix)
        Photon-count images.
    aux : DataFrame
        The harness's auxiliary columns (image_id, redshift, pixel_arcsec), one row per image.
    r500c_pix : array (N,)
        R500c in pixels (truth; used only to express radii, never given to the model).
    step_size, n_iter, r_edges_r500c, ring_edges_r500c, ring_dimming, core_r500c, outlier_r500c
        See the module docstring.

    Returns
    -------
    dict of per-image arrays (numpy), keyed by diagnostic.
    """
    counts = np.asarray(counts, dtype=np.float64)
    if counts.ndim != 3 or counts.shape[1] != counts.shape[2]:
        raise DiagnosticsError(f"counts must have shape (N, npix, npix), got {counts.shape}")
    if np.any(counts < 0) or not np.all(np.isfinite(counts)):
        raise DiagnosticsError("counts must be finite and non-negative")
    aux = aux.reset_index(drop=True)
    n, npix = counts.shape[0], counts.shape[1]
    r = radius_r500c(npix, r500c_pix)
    edges = np.asarray(r_edges_r500c, dtype=float)
    ring_edges = np.asarray(ring_edges_r500c, dtype=float)
    core_r500c = tuple(float(c) for c in core_r500c)
    res: dict = {"r_edges_r500c": edges, "ring_edges_r500c": ring_edges, "core_r500c": core_r500c}

    # Model-agnostic part in one predict call: original, occluded cores, dimmed rings.
    variants = [counts]
    occl_keys = []
    for rc in core_r500c:
        for mode in ("annulus", "background"):
            variants.append(occlude_core(counts, r, rc, mode))
            occl_keys.append((rc, mode))
    n_rings = len(ring_edges) - 1
    dimmed = _dim_rings(counts, r, ring_edges, ring_dimming)
    batch = np.concatenate(variants + [dimmed])
    batch_aux = pd.concat([aux] * len(variants) + [_repeat_aux(aux, n_rings)], ignore_index=True)
    f_all = _predict(predictor, batch, batch_aux)
    f0 = f_all[:n]
    res["log10m_pred"] = f0
    res["occlusion"] = {
        f"{mode}_{rc:g}": f_all[(k + 1) * n : (k + 2) * n] - f0 for k, (rc, mode) in enumerate(occl_keys)
    }
    f_rings = f_all[len(variants) * n :].reshape(n, n_rings)
    ring_sens = np.abs(f_rings - f0[:, None])
    res["ring_sensitivity"] = ring_sens
    ring_photons = radial_sum(counts, r, ring_edges)
    res["ring_photons"] = ring_photons

    total_photons = counts.sum(axis=(1, 2))
    photon_share = {rc: _share_inside(counts, r, rc, total_photons) for rc in core_r500c}
    res["photon_share_core"] = {f"{rc:g}": photon_share[rc] for rc in core_r500c}
    occl_share = {}
    for rc in core_r500c:
        # Ring edges include the core radii, so the share is exact in ring units.
        inside = ring_edges[1:] <= rc + 1e-9
        tot = ring_sens.sum(axis=1)
        occl_share[rc] = np.divide(ring_sens[:, inside].sum(axis=1), tot, out=np.full(n, np.nan), where=tot > 0)
    res["occlusion_share_core"] = {f"{rc:g}": occl_share[rc] for rc in core_r500c}

    g0 = _gradient(predictor, counts, aux)
    res["has_gradient"] = g0 is not None
    if g0 is None:
        return res

    # (b) saliency |df/dx| per radial bin, normalised per image to a mean of one.
    abs_g = np.abs(g0)
    mean_abs = abs_g.mean(axis=(1, 2), keepdims=True)
    sal = np.divide(abs_g, mean_abs, out=np.zeros_like(abs_g), where=mean_abs > 0)
    npx = _bin_pixel_counts(r, edges)
    res["saliency_profile"] = np.divide(radial_sum(sal, r, edges), npx, out=np.full(npx.shape, np.nan), where=npx > 0)
    attribution = np.abs(g0 * counts)
    total_attr = attribution.sum(axis=(1, 2))
    res["gradient_share_core"] = {f"{rc:g}": _share_inside(attribution, r, rc, total_attr) for rc in core_r500c}
    res["attribution_rings"] = radial_sum(attribution, r, ring_edges)

    # (a) DeepDream ascent.
    n0 = radial_sum(counts, r, edges)
    x, g = counts, g0
    dn_over_n, f_iter, change_peak = [], [], []
    for it in range(n_iter):
        x = deepdream_step(x, g, step_size)
        nb = radial_sum(x, r, edges)
        dn_over_n.append(np.divide(nb - n0, n0, out=np.full(n0.shape, np.nan), where=n0 > 0))
        f_iter.append(_predict(predictor, x, aux))
        if it + 1 < n_iter:
            g = _gradient(predictor, x, aux)
    res["deepdream_dn_over_n"] = np.stack(dn_over_n)  # (n_iter, N, B)
    res["deepdream_log10m"] = np.stack(f_iter)  # (n_iter, N)
    res["deepdream_peak_r500c"] = _peak_radius(x - counts, r)
    res["deepdream_example_change"] = (x - counts).astype(np.float32)
    return res


def _share_inside(values: np.ndarray, r: np.ndarray, rc: float, total: np.ndarray) -> np.ndarray:
    inside = np.where(r < rc, values, 0.0).sum(axis=(1, 2))
    return np.divide(inside, total, out=np.full(len(total), np.nan), where=total > 0)


def _peak_radius(change: np.ndarray, r: np.ndarray) -> np.ndarray:
    """R/R500c of the largest (5x5-box-smoothed) absolute change of each image."""
    from scipy.ndimage import uniform_filter

    sm = uniform_filter(np.abs(change), size=(1, 5, 5), mode="constant")
    flat = sm.reshape(sm.shape[0], -1).argmax(axis=1)
    return r.reshape(r.shape[0], -1)[np.arange(sm.shape[0]), flat]


# --------------------------------------------------------------------------------------
# summary over all folds
# --------------------------------------------------------------------------------------
def _profile_stats(arr: np.ndarray) -> dict:
    """Mean, std, 16/50/84 percentiles over axis 0, NaN-aware, as lists (JSON)."""
    arr = np.asarray(arr, dtype=float)
    with np.errstate(all="ignore"):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            stats = {
                "mean": np.nanmean(arr, axis=0),
                "std": np.nanstd(arr, axis=0),
                "p16": np.nanpercentile(arr, 16, axis=0),
                "median": np.nanmedian(arr, axis=0),
                "p84": np.nanpercentile(arr, 84, axis=0),
                "n": np.sum(np.isfinite(arr), axis=0),
            }
    return {k: json_safe(v) for k, v in stats.items()}


def _median_ratio(num: np.ndarray, den: np.ndarray) -> float | None:
    ratio = np.divide(num, den, out=np.full(len(num), np.nan), where=den > 0)
    ratio = ratio[np.isfinite(ratio)]
    return float(np.median(ratio)) if ratio.size else None


def summarise(per_image: pd.DataFrame, batches: list[dict], settings: dict, outlier_r500c: float = 1.0) -> dict:
    """Combine per-fold results into the JSON-serialisable summary (see run_diagnostics)."""
    first = batches[0]
    has_grad = all(b["has_gradient"] for b in batches)
    cores = first["core_r500c"]

    def cat(key, sub=None):
        parts = [b[key] if sub is None else b[key][sub] for b in batches]
        return np.concatenate(parts, axis=-1 if key in ("deepdream_log10m",) else 0)

    summary: dict = {
        "n_images": int(len(per_image)),
        "n_clusters": int(per_image["cluster_id"].nunique()),
        "folds": sorted(int(f) for f in per_image["fold"].unique()),
        "has_gradient": bool(has_grad),
        "settings": settings,
        "r_edges_r500c": json_safe(first["r_edges_r500c"]),
        "ring_edges_r500c": json_safe(first["ring_edges_r500c"]),
    }
    core_ratio = {}
    for rc in cores:
        key = f"{rc:g}"
        photon = cat("photon_share_core", key)
        occl = _median_ratio(cat("occlusion_share_core", key), photon)
        grad = _median_ratio(cat("gradient_share_core", key), photon) if has_grad else None
        core_ratio[key] = {
            "photon_share_median": json_safe(np.nanmedian(photon)),
            "occlusion": occl,
            "gradient": grad,
        }
    head = core_ratio[f"{cores[0]:g}"]
    summary["core_radius_r500c"] = cores[0]
    summary["core_sensitivity_method"] = "gradient" if has_grad else "occlusion"
    summary["core_sensitivity_ratio"] = head["gradient"] if has_grad else head["occlusion"]
    # The entry schema's one number (benchmark.entries: diagnostics.core_sensitivity).
    summary["core_sensitivity"] = summary["core_sensitivity_ratio"]
    summary["core_sensitivity_detail"] = core_ratio

    ring_sens = cat("ring_sensitivity")
    ring_tot = ring_sens.sum(axis=1, keepdims=True)
    summary["ring_sensitivity_share"] = _profile_stats(
        np.divide(ring_sens, ring_tot, out=np.full(ring_sens.shape, np.nan), where=ring_tot > 0)
    )
    ring_ph = cat("ring_photons")
    summary["ring_photon_share"] = _profile_stats(ring_ph / ring_ph.sum(axis=1, keepdims=True))

    occl = {}
    for key in first["occlusion"]:
        d = cat("occlusion", key)
        occl[key] = {"mean": json_safe(d.mean()), "std": json_safe(d.std()), "median": json_safe(np.median(d)),
                     "per_image": json_safe(d)}
    summary["occlusion_delta_log10m"] = occl

    outliers = []
    if has_grad:
        dd = np.concatenate([b["deepdream_dn_over_n"] for b in batches], axis=1)  # (iter, N, B)
        summary["deepdream"] = {f"iter{i + 1}": _profile_stats(dd[i]) for i in range(dd.shape[0])}
        f_dd = np.concatenate([b["deepdream_log10m"] for b in batches], axis=1)
        f0 = cat("log10m_pred")
        summary["deepdream_delta_log10m"] = {
            f"iter{i + 1}": json_safe(np.mean(f_dd[i] - f0)) for i in range(f_dd.shape[0])
        }
        summary["saliency_profile"] = _profile_stats(cat("saliency_profile"))
        attr = cat("attribution_rings")
        atot = attr.sum(axis=1, keepdims=True)
        summary["ring_gradient_share"] = _profile_stats(
            np.divide(attr, atot, out=np.full(attr.shape, np.nan), where=atot > 0)
        )
        peak = cat("deepdream_peak_r500c")
        last = f_dd[-1]
        for i, row in enumerate(per_image.itertuples(index=False)):
            reasons = []
            if peak[i] > outlier_r500c:
                reasons.append(f"largest change at {peak[i]:.2f} R500c (> {outlier_r500c:g})")
            if not last[i] > f0[i]:
                reasons.append("predicted mass did not rise under gradient ascent")
            if reasons:
                outliers.append({"image_id": str(row.image_id), "fold": int(row.fold), "index": i,
                                 "peak_r500c": json_safe(peak[i]), "reasons": reasons})
        summary["deepdream_peak_r500c"] = json_safe(peak)
    summary["outliers"] = outliers
    summary["images"] = json_safe(per_image[["image_id", "cluster_id", "fold", "log10_m500c"]].to_dict("list"))
    summary["log10m_pred"] = json_safe(cat("log10m_pred"))
    return summary


# --------------------------------------------------------------------------------------
# dataset plumbing
# --------------------------------------------------------------------------------------
def _open_dataset(dataset):
    if isinstance(dataset, (str, os.PathLike)):
        from benchmark.dataset.loader import ClusterMassDataset

        return ClusterMassDataset(dataset)
    for attr in ("catalog", "card", "images", "fold_indices"):
        if not hasattr(dataset, attr):
            raise DiagnosticsError(
                f"dataset has no attribute {attr!r}; pass a benchmark.dataset.ClusterMassDataset or its root path"
            )
    return dataset


def _pixel_arcsec(ds) -> float:
    try:
        return float(ds.card["image"]["pixel_arcsec"])
    except (KeyError, TypeError, ValueError):
        image = ds.card.get("image", {}) if isinstance(ds.card, dict) else {}
        if "fov_arcmin" in image and "npix" in image:
            return float(image["fov_arcmin"]) * 60.0 / float(image["npix"])
        raise DiagnosticsError("dataset card has no image.pixel_arcsec; regenerate or fix dataset_card.json")


def select_test_images(catalog: pd.DataFrame, test_idx: np.ndarray, n_clusters: int, seed: int = 0) -> np.ndarray:
    """Pick ``n_clusters`` test clusters spread evenly in mass and one view of each.

    Parameters
    ----------
    catalog : DataFrame
    test_idx : array of int
        Positional indices (into catalog) of the test fold.
    n_clusters : int
    seed : int
        Seeds the choice of the view (epoch, projection) of each chosen cluster.

    Returns
    -------
    array of positional indices into catalog, one per chosen cluster.
    """
    sub = catalog.iloc[np.asarray(test_idx)]
    mass = sub.groupby("cluster_id")["log10_m500c"].max().sort_values(kind="stable")
    ids = mass.index.to_numpy()
    if n_clusters < len(ids):
        pick = np.unique(np.round(np.linspace(0, len(ids) - 1, n_clusters)).astype(int))
        ids = ids[pick]
    rng = np.random.default_rng(seed)
    pos = np.asarray(test_idx)
    out = []
    for cid in ids:
        rows = pos[(sub["cluster_id"] == cid).to_numpy()]
        out.append(int(rng.choice(rows)))
    return np.array(out, dtype=int)


def _default_loader(out_dir, k):
    from benchmark.training import load_fold_predictor

    return load_fold_predictor(out_dir, k)


def run_diagnostics(
    out_dir,
    dataset,
    n_clusters_per_fold: int = 8,
    folds: Iterable[int] = range(10),
    *,
    load_predictor: Callable | None = None,
    plot_dir=None,
    step_size: float = 0.1,
    n_iter: int = 2,
    ring_dimming: float = 0.2,
    outlier_r500c: float = 1.0,
    seed: int = 0,
    write: bool = True,
) -> dict:
    """Interpretation diagnostics of a trained entry, each fold model on its own test fold.

    Parameters
    ----------
    out_dir : path
        The harness's output folder of the entry (``out_dir/fold_k/``).
    dataset : ClusterMassDataset or path
    n_clusters_per_fold : int
        Test clusters per fold (spread evenly in mass, one view each).
    folds : iterable of int
    load_predictor : callable, optional
        ``(out_dir, k) -> Predictor``; default ``benchmark.training.load_fold_predictor``.
    plot_dir : path, optional
        Where the PNG plots and ``diagnostics.json`` go; default ``out_dir/diagnostics``.
    step_size, n_iter, ring_dimming, outlier_r500c, seed
        See the module docstring.
    write : bool
        Write plots and ``diagnostics.json`` (False: only return the summary).

    Returns
    -------
    dict
        JSON-serialisable summary: ``core_sensitivity_ratio`` and ``core_sensitivity_method``
        (the leaderboard number; also as ``core_sensitivity``, the entry schema's key),
        ``core_sensitivity_detail`` (both methods, 0.15 and 0.2 R500c),
        ``deepdream`` (dN/N profiles after each iteration: mean/std/percentiles per radial bin),
        ``saliency_profile``, ``occlusion_delta_log10m``, ring shares, ``outliers``, ``images``,
        ``settings``, ``plots`` (file names relative to plot_dir).
    """
    ds = _open_dataset(dataset)
    load_predictor = load_predictor or _default_loader
    catalog = ds.catalog.reset_index(drop=True)
    pixel_arcsec = _pixel_arcsec(ds)
    folds = [int(k) for k in folds]
    if not folds:
        raise DiagnosticsError("no folds given; pass folds=range(10) or a subset")
    if n_clusters_per_fold < 1:
        raise DiagnosticsError("n_clusters_per_fold must be at least 1")
    batches, rows = [], []
    for k in folds:
        idx = select_test_images(catalog, ds.fold_indices(k)["test"], n_clusters_per_fold, seed + k)
        if idx.size == 0:
            continue
        rows_k = catalog.iloc[idx]
        ids = rows_k["image_id"].tolist()
        counts = np.asarray(ds.images(ids), dtype=np.float64)
        predictor = load_predictor(out_dir, k)
        # Only the harness's auxiliary columns reach the model, plus the truth columns a
        # baseline declares it needs (e.g. the L_X bound that takes R500c from the truth).
        aux = pd.DataFrame({"image_id": ids, "redshift": rows_k["redshift"].to_numpy(dtype=float),
                            "pixel_arcsec": np.full(len(ids), pixel_arcsec)})
        for col in getattr(predictor, "truth_columns", None) or []:
            aux[col] = rows_k[col].to_numpy()
        r500c_pix = rows_k["r500c_arcmin"].to_numpy(dtype=float) * 60.0 / pixel_arcsec
        batches.append(diagnose_predictor(predictor, counts, aux, r500c_pix, step_size=step_size,
                                          n_iter=n_iter, ring_dimming=ring_dimming, outlier_r500c=outlier_r500c))
        frame = rows_k[["image_id", "cluster_id", "log10_m500c"]].copy()
        frame["fold"] = k
        rows.append(frame)
        del predictor
    if not batches:
        raise DiagnosticsError("the folds given have no test images; check the dataset's splits")
    per_image = pd.concat(rows, ignore_index=True)
    settings = {"step_size": step_size, "step_rule": "x <- clip(x + step_size*mean(x)*g/mean|g|, 0)",
                "n_iter": n_iter, "ring_dimming": ring_dimming, "outlier_r500c": outlier_r500c,
                "n_clusters_per_fold": n_clusters_per_fold, "seed": seed, "pixel_arcsec": pixel_arcsec,
                "occlusion_modes": {"annulus": "mean of r_core..1.5 r_core",
                                    "background": "median beyond 1.5 R500c"},
                "core_ratio_statistic": "median over images of sensitivity share / photon share"}
    summary = summarise(per_image, batches, settings, outlier_r500c)
    if write:
        plot_dir = Path(plot_dir) if plot_dir is not None else Path(out_dir) / "diagnostics"
        plot_dir.mkdir(parents=True, exist_ok=True)
        example = _example_images(batches, summary)
        summary["plots"] = plot_diagnostics(summary, plot_dir, example=example)
        write_text(plot_dir / "diagnostics.json", json.dumps(summary, indent=1, allow_nan=False))
    return summary


def _example_images(batches: list[dict], summary: dict):
    """(title, change map) of the first flagged outlier, else of the first image."""
    if not summary["has_gradient"]:
        return None
    changes = np.concatenate([b["deepdream_example_change"] for b in batches])
    i = summary["outliers"][0]["index"] if summary["outliers"] else 0
    return summary["images"]["image_id"][i], changes[i]


# --------------------------------------------------------------------------------------
# plots
# --------------------------------------------------------------------------------------
def _centres(edges):
    e = np.asarray(edges, dtype=float)
    return 0.5 * (e[:-1] + e[1:])


def _arr(x):
    return np.array([np.nan if v is None else v for v in x], dtype=float)


def _save(fig, path, right: float = 0.97) -> None:
    # Fixed margins instead of tight_layout: text extents make tight_layout slow on 2 cores.
    import matplotlib.pyplot as plt

    fig.subplots_adjust(left=0.14, right=right, bottom=0.14, top=0.9)
    fig.savefig(path, dpi=80)
    plt.close(fig)


def plot_diagnostics(summary: dict, plot_dir, example=None) -> dict:
    """Write the PNG plots of a summary; returns {name: file name} (relative to plot_dir)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plot_dir = Path(plot_dir)
    plots = {}
    rc = _centres(summary["r_edges_r500c"])
    core = summary["core_radius_r500c"]

    def finish(fig, ax, name):
        for c in (0.15, 0.2):
            ax.axvline(c, color="0.6", ls=":", lw=1)
        ax.set_xlabel("R / R500c")
        _save(fig, plot_dir / name)
        plt.close(fig)
        plots[name.rsplit(".", 1)[0]] = name

    if "deepdream" in summary:
        fig, ax = plt.subplots(figsize=(5.5, 3.6))
        for (key, st), color in zip(summary["deepdream"].items(), ("C0", "C3", "C2", "C4")):
            m, s = _arr(st["mean"]), _arr(st["std"])
            ax.plot(rc, m, "o-", color=color, label=f"{key} (mean +- std)")
            ax.fill_between(rc, m - s, m + s, color=color, alpha=0.2)
        peaks = _arr(summary.get("deepdream_peak_r500c", []))
        if summary["outliers"]:
            xs = [o["peak_r500c"] for o in summary["outliers"] if o["peak_r500c"] is not None]
            ax.plot(xs, np.zeros(len(xs)), "kx", ms=8, label=f"{len(summary['outliers'])} flagged (peak R)")
        elif peaks.size:
            ax.plot(peaks, np.zeros(peaks.size), "|", color="0.3", ms=10, label="peak of change")
        ax.axhline(0, color="k", lw=0.5)
        ax.set_ylabel("dN / N")
        ax.set_title(f"DeepDream ascent ({summary['n_images']} test images)")
        ax.legend(fontsize=8)
        finish(fig, ax, "deepdream_profile.png")

        fig, ax = plt.subplots(figsize=(5.5, 3.6))
        st = summary["saliency_profile"]
        m, lo, hi = _arr(st["median"]), _arr(st["p16"]), _arr(st["p84"])
        ax.plot(rc, m, "o-", color="C1", label="median, 16-84%")
        ax.fill_between(rc, lo, hi, color="C1", alpha=0.25)
        ax.set_ylabel("|d log10 M / d N| / image mean")
        ax.set_title("Saliency")
        ax.legend(fontsize=8)
        finish(fig, ax, "saliency_profile.png")

    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    ring_edges = _arr(summary["ring_edges_r500c"])
    ring_edges[~np.isfinite(ring_edges)] = max(2.0, np.nanmax(ring_edges[np.isfinite(ring_edges)]) * 1.3)
    # Share inside R at each ring's outer edge (0 at R = 0).
    def cumulative(key):
        return np.concatenate([[0.0], np.nancumsum(_arr(summary[key]["mean"]))])

    ax.plot(ring_edges, cumulative("ring_photon_share"), "o-", color="k", ms=3, label="photons")
    ax.plot(ring_edges, cumulative("ring_sensitivity_share"), "s-", color="C2", ms=3,
            label="sensitivity (ring dimming)")
    if "ring_gradient_share" in summary:
        ax.plot(ring_edges, cumulative("ring_gradient_share"), "^-", color="C0", ms=3,
                label="sensitivity (|grad x input|)")
    ratio = summary["core_sensitivity_ratio"]
    ax.set_title(f"Cumulative share; core ratio = {ratio if ratio is None else f'{ratio:.2f}'} "
                 f"({summary['core_sensitivity_method']}, R<{core:g} R500c)", fontsize=9)
    ax.set_ylabel("share inside R")
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize=8)
    finish(fig, ax, "sensitivity_share.png")

    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    true_m = _arr(summary["images"]["log10_m500c"])
    for (key, d), marker in zip(summary["occlusion_delta_log10m"].items(), "os^v"):
        ax.plot(true_m, _arr(d["per_image"]), marker, ms=4, alpha=0.7,
                label=f"{key} R500c: {d['mean']:+.3f} dex mean")
    ax.axhline(0, color="k", lw=0.5)
    ax.set_xlabel("true log10 M500c")
    ax.set_ylabel("delta log10 M (core occluded)")
    ax.set_title("Occlusion of the core")
    ax.legend(fontsize=7)
    _save(fig, plot_dir / "occlusion.png")
    plots["occlusion"] = "occlusion.png"

    if example is not None:
        image_id, change = example
        fig, ax = plt.subplots(figsize=(4.2, 3.6))
        lim = float(np.max(np.abs(change))) or 1.0
        im = ax.imshow(change, origin="lower", cmap="RdBu_r", vmin=-lim, vmax=lim)
        fig.colorbar(im, ax=ax, label="photons added")
        ax.set_title(f"Change after ascent: {image_id}", fontsize=9)
        _save(fig, plot_dir / "deepdream_example.png", right=0.84)
        plots["deepdream_example"] = "deepdream_example.png"
    return plots


def entry_summary(summary: dict, max_outliers: int = 20) -> dict:
    """The compact part of a diagnostics summary for a leaderboard entry file.

    Drops the per-image arrays; keeps the leaderboard number (``core_sensitivity``), its
    method and details, the radial profiles (mean/std/median/percentiles), the occlusion
    means, the first ``max_outliers`` flagged images and the plot names. The renderer
    draws the entry page's diagnostics from it.
    """
    keep_stats = ("mean", "std", "median", "p16", "p84")

    def slim(st):
        return {k: st[k] for k in keep_stats if k in st}

    out = {k: summary[k] for k in ("core_sensitivity", "core_sensitivity_ratio", "core_sensitivity_method",
                                   "core_radius_r500c", "core_sensitivity_detail", "n_images", "n_clusters",
                                   "folds", "has_gradient", "settings", "r_edges_r500c", "ring_edges_r500c",
                                   "deepdream_delta_log10m", "plots") if k in summary}
    if "deepdream" in summary:
        out["deepdream"] = {k: slim(v) for k, v in summary["deepdream"].items()}
    for key in ("saliency_profile", "ring_sensitivity_share", "ring_photon_share", "ring_gradient_share"):
        if key in summary:
            out[key] = slim(summary[key])
    out["occlusion_delta_log10m"] = {k: {s: v[s] for s in ("mean", "std", "median")}
                                     for k, v in summary.get("occlusion_delta_log10m", {}).items()}
    outl = summary.get("outliers", [])
    out["outliers"] = [{k: o[k] for k in ("image_id", "fold", "peak_r500c", "reasons")} for o in outl[:max_outliers]]
    out["n_outliers"] = len(outl)
    return out


def diagnose_entry(run_dir, dataset, entry_path=None, n_clusters_per_fold: int = 8,
                   folds: Iterable[int] = range(10), **kwargs) -> dict:
    """Diagnose a harness-trained entry and attach the result to its entry file.

    Parameters
    ----------
    run_dir : path
        The entry's training folder (``benchmark.training.run_entry``'s ``out_dir``).
    dataset : ClusterMassDataset or path
    entry_path : path, optional
        The entry file ``<slug>.json``. When given, the plots go to ``<slug>.diagnostics/``
        beside it (where :func:`leaderboard.render.render_site` finds them) and the entry's
        ``diagnostics`` is replaced by :func:`entry_summary` (validated, atomic write).
        Otherwise the plots go to ``run_dir/diagnostics``.
    n_clusters_per_fold, folds, **kwargs
        Passed to :func:`run_diagnostics`.

    Returns
    -------
    dict
        The full summary (as :func:`run_diagnostics`).
    """
    plot_dir = None
    if entry_path is not None:
        entry_path = Path(entry_path)
        if not entry_path.is_file():
            raise DiagnosticsError(f"entry file {entry_path} does not exist; train and score the entry first")
        plot_dir = entry_path.with_name(entry_path.name[: -len(".json")] + ".diagnostics")
    summary = run_diagnostics(run_dir, dataset, n_clusters_per_fold, folds, plot_dir=plot_dir, **kwargs)
    if entry_path is not None:
        entry = load_entry(entry_path)
        write_entry(entry_path, dataclasses.replace(entry, diagnostics=entry_summary(summary)))
    return summary
