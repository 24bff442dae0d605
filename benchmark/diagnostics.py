"""Interpretation diagnostics for any model the harness can run, with controls.

Every fold model is evaluated on clusters of its own test fold (it never saw them). All
diagnostics are functions of the projected radius in units of R500c:

(a) DeepDream ascent: change the input image in the direction that raises the predicted
    mass and measure the fractional change of photons dN/N in radial bins after the first and
    the second iteration. The main run steps in the model's own input space (as DeepDream does
    for classifiers; the study's exact rule is not known), mapped back to non-negative counts::

        x <- x + input_step_size * g / mean(|g|),   g = d log10 M / d x

    where ``x = (log10(1 + N) - log_mean) / log_std`` is the reference CNN's standardised
    input (:class:`InputSpace`; a model without one steps in counts). The named variant
    ``counts`` keeps the first version's rule, ``N <- clip(N + step_size * mean(N) * g /
    mean(|g|), 0)`` with ``g = d log10 M / d N``. The step in counts gives every pixel a
    change ~1/(1+N), so dN/N is tiny where N is large whatever the model: on its own it
    cannot show that a model ignores the core. Images whose |change|-weighted centroid lies
    beyond ``offcentre_r500c`` (0.2 R500c: the change piled up off centre, a "misidentified
    core") or whose largest (5x5-smoothed) change lies beyond ``outlier_r500c`` (1 R500c)
    are flagged, as are images whose predicted mass did not rise.
(b) Saliency: radial profile of |d log10 M / d counts|, normalised per image to a mean of 1.
(c) Occlusion (model-agnostic, no gradients needed): the core inside 0.15 and 0.2 R500c is
    replaced by the mean count per pixel of the surrounding annulus (r_core to 1.5 r_core,
    "annulus") or by the image's background level (median of the pixels beyond 1.5 R500c,
    "background"), and the change of the predicted log10 M is recorded. Ring dimming scales
    the photons of one radial ring at a time by ``1 - ring_dimming`` and records |delta
    log10 M|.
(d) Core sensitivity, two figures side by side, each (share of the model's sensitivity
    inside 0.15 R500c) / (share of photons inside 0.15 R500c), median over images:
    ``gradient``: sensitivity = |d log10 M / d N * N| summed over pixels (local, per pixel,
    signs dropped pixel by pixel); ``occlusion``: sensitivity = |delta log10 M| of dimming a
    whole ring by 20 % (finite, signs summed within the ring first). A model that weighs
    every photon alike (log of the total counts) scores 1 on both; one that ignores the core
    ~0. The two differ when the response is non-linear or when per-pixel gradients of both
    signs cancel within a ring. ``core_sensitivity`` (the leaderboard's column) is the
    occlusion figure, the one every model has.
(e) Controls on the same images and axes: the null model :class:`NullLogPredictor` (mean of
    log10(1+N) over pixels, stepping in the model's input space), the same network with
    random weights (:func:`random_weights_predictor`) and the L_X baseline (occlusion only).
    :func:`compare_with_null` gives the model's dN/N profile relative to the null's and one
    answer to "does the model use the core less than photons alone would suggest?"
    (:func:`core_use_index`, 95 % bootstrap interval over clusters).

Entry points: :func:`run_diagnostics` (all folds of a trained entry), :func:`diagnose_entry`
(the same, attached to the entry file for the leaderboard); :func:`diagnose_predictor`
does one batch of images with one predictor.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import pandas as pd

from benchmark.core.errors import ClusterMassError
from benchmark.core.io import atomic_path, json_safe, write_text
from benchmark.dataset.loader import as_dataset
from benchmark.dataset.normalisation import TRANSFORM
from benchmark.entries import load_entry, write_entry

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_R_EDGES_R500C",
    "RING_EDGES_R500C",
    "radius_r500c",
    "radial_sum",
    "deepdream_step",
    "deepdream_step_in",
    "InputSpace",
    "COUNT_SPACE",
    "input_space_of",
    "NullLogPredictor",
    "random_weights_predictor",
    "core_use_index",
    "relative_profile",
    "compare_with_null",
    "control_summary",
    "CONTROLS",
    "occlude_core",
    "diagnose_predictor",
    "summarise",
    "select_test_images",
    "run_diagnostics",
    "plot_diagnostics",
    "entry_summary",
    "diagnose_entry",
    "diagnose_in_sandbox",
]

# Radial bins for the profiles (R/R500c): fine inside the core, coarser outside.
DEFAULT_R_EDGES_R500C = np.array(
    [0.0, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.25, 1.5, 2.0]
)
# Rings for ring dimming; the last ring is open so that every pixel belongs to one ring.
RING_EDGES_R500C = np.array([0.0, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, np.inf])
CORE_R500C = (0.15, 0.2)
# An ascent whose |change|-weighted centroid lies this far from the centre has piled its
# photons off centre (the study's "misidentified core"): the core scale of the study.
OFFCENTRE_R500C = 0.2
MAX_LOG10_COUNTS = 30.0


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
    return deepdream_step_in(counts, grad, COUNT_SPACE, step_size)


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
# the space the ascent steps in
# --------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class InputSpace:
    """The space a DeepDream step is taken in; results always go back to counts.

    Attributes
    ----------
    name : {"counts", "standardised_log10"}
        ``counts``: the photon counts themselves (the step is scaled to the image's mean
        count per pixel). ``standardised_log10``: ``x = (log10(1 + N) - log_mean) / log_std``,
        the reference CNN's input (:func:`benchmark.models.cnn.fit_normalisation`); the step
        is in units of x.
    log_mean, log_std : float
        The standardisation of ``standardised_log10`` (training-fold statistics).
    """

    name: str = "counts"
    log_mean: float = 0.0
    log_std: float = 1.0

    def __post_init__(self):
        if self.name not in ("counts", "standardised_log10"):
            raise DiagnosticsError(f"unknown input space {self.name!r}; use 'counts' or 'standardised_log10'")
        if not (np.isfinite(self.log_mean) and np.isfinite(self.log_std) and self.log_std > 0):
            raise DiagnosticsError("input space standardisation must be finite with log_std > 0; "
                                   "check the model's normalisation.json")

    def to_input(self, counts: np.ndarray) -> np.ndarray:
        """Counts -> the model's input."""
        if self.name == "counts":
            return counts
        return (np.log10(1.0 + counts) - self.log_mean) / self.log_std

    def to_counts(self, x: np.ndarray) -> np.ndarray:
        """The model's input -> counts, clipped at zero (photons stay non-negative)."""
        if self.name == "counts":
            return np.clip(x, 0.0, None)
        # The exponent is capped (N <= 1e30) so that a step piled on a few pixels (a model that
        # reads only a handful of them: g / mean|g| is huge there) stays finite in float32.
        log_n = np.minimum(x * self.log_std + self.log_mean, MAX_LOG10_COUNTS)
        return np.clip(10.0 ** log_n - 1.0, 0.0, None)

    def input_gradient(self, counts: np.ndarray, grad_counts: np.ndarray) -> np.ndarray:
        """d f / d x from d f / d counts (chain rule: dN/dx = log_std ln10 (1 + N))."""
        if self.name == "counts":
            return grad_counts
        return grad_counts * self.log_std * np.log(10.0) * (1.0 + counts)

    def step_scale(self, counts: np.ndarray) -> np.ndarray | float:
        """Size of one unit of step: the mean count per pixel in counts, one unit of x otherwise."""
        if self.name == "counts":
            return np.mean(counts, axis=(1, 2), keepdims=True)
        return 1.0

    def describe(self) -> dict:
        """JSON record of the space (for the entry's settings)."""
        if self.name == "counts":
            return {"name": "counts", "step_rule": "N <- clip(N + step_size*mean(N)*g/mean|g|, 0); g = df/dN"}
        return {"name": self.name, "log_mean": self.log_mean, "log_std": self.log_std,
                "step_rule": "x <- x + step_size*g/mean|g|, g = df/dx, x = (log10(1+N)-log_mean)/log_std; "
                             "N = max(10**(x*log_std+log_mean) - 1, 0)"}


COUNT_SPACE = InputSpace("counts")


def input_space_of(predictor) -> InputSpace:
    """The model's own input space: its ``input_space`` attribute, else the standardised
    log10(1 + N) of a harness Keras model (``model.normalisation``), else counts."""
    space = getattr(predictor, "input_space", None)
    if isinstance(space, InputSpace):
        return space
    norm = getattr(getattr(predictor, "model", None), "normalisation", None)
    if isinstance(norm, dict) and norm.get("transform") == TRANSFORM:
        try:
            return InputSpace("standardised_log10", float(norm["image_log_mean"]), float(norm["image_log_std"]))
        except (KeyError, TypeError, ValueError):
            pass
    return COUNT_SPACE


def deepdream_step_in(counts: np.ndarray, grad: np.ndarray, space: InputSpace, step_size: float) -> np.ndarray:
    """One gradient-ascent step in ``space``, mapped back to non-negative counts.

    Parameters
    ----------
    counts, grad : array (N, npix, npix)
        Images (counts) and d log10 M / d counts at them.
    space : InputSpace
    step_size : float
        Mean absolute change per pixel in units of ``space.step_scale`` (see InputSpace).

    Returns
    -------
    array (N, npix, npix), float64, non-negative
    """
    counts = np.asarray(counts, dtype=np.float64)
    g = space.input_gradient(counts, np.asarray(grad, dtype=np.float64))
    g_scale = np.mean(np.abs(g), axis=(1, 2), keepdims=True)
    # A model whose gradient vanishes everywhere leaves the image unchanged.
    g_unit = np.divide(g, g_scale, out=np.zeros_like(g), where=g_scale > 0)
    return space.to_counts(space.to_input(counts) + step_size * space.step_scale(counts) * g_unit)


# --------------------------------------------------------------------------------------
# controls: the null model, the same network with random weights
# --------------------------------------------------------------------------------------
class NullLogPredictor:
    """Control (a): every pixel weighs alike in log space.

    ``f = mean over pixels of log10(1 + N)`` (its output is not a mass: only its profiles and
    shares are compared with a model's). Its gradient is analytic, ``1 / (P ln10 (1 + N))``
    for P pixels, so in the standardised log space the ascent raises every pixel's log10(1+N)
    by the same ``step_size * log_std``.

    Parameters
    ----------
    input_space : InputSpace
        The diagnosed model's space, so that both take the same steps.
    """

    def __init__(self, input_space: InputSpace = COUNT_SPACE):
        self.input_space = input_space

    def predict(self, counts, aux=None) -> np.ndarray:
        """Mean log10(1 + N) of each image."""
        return np.log10(1.0 + np.asarray(counts, dtype=np.float64)).mean(axis=(1, 2))

    def gradient(self, counts, aux=None) -> np.ndarray:
        """d f / d counts."""
        counts = np.asarray(counts, dtype=np.float64)
        return 1.0 / (counts.shape[1] * counts.shape[2] * np.log(10.0) * (1.0 + counts))


def _is_keras_model(obj) -> bool:
    return all(hasattr(obj, a) for a in ("layers", "get_config", "weights", "trainable_weights"))


def _fresh_layer(layer):
    # Layers without weights (Lambda, pooling, ops) are reused: a python Lambda cannot be
    # rebuilt from its config safely, and it has nothing to re-initialise.
    if not getattr(layer, "weights", None):
        return layer
    return layer.__class__.from_config(layer.get_config())


def random_weights_predictor(predictor, seed: int = 0):
    """Control (b): the same network with freshly initialised weights, or None.

    Finds the Keras network as ``predictor.model.keras_model`` (harness fold models) or
    ``predictor.model`` and rebuilds it layer by layer from its config (new weights from the
    layers' own initialisers, seeded by ``seed``); everything else (normalisation, output
    scaling) is kept. Returns None when there is no network to re-initialise.
    """
    import copy

    model = getattr(predictor, "model", None)
    if model is not None and _is_keras_model(getattr(model, "keras_model", None)):
        owner, attr = model, "keras_model"
    elif _is_keras_model(model):
        owner, attr = predictor, "model"
    else:
        return None
    import keras

    keras.utils.set_random_seed(int(seed))
    clone = keras.models.clone_model(getattr(owner, attr), clone_function=_fresh_layer)
    new_owner = copy.copy(owner)
    setattr(new_owner, attr, clone)
    if owner is predictor:
        return new_owner
    new_predictor = copy.copy(predictor)
    new_predictor.model = new_owner
    return new_predictor


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
    input_space: InputSpace | None = None,
    input_step_size: float = 0.1,
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
        See the module docstring (``step_size``: the count-space variant).
    input_space : InputSpace, optional
        The space of the main ascent; default :func:`input_space_of` the predictor.
    input_step_size : float
        Step of the input-space ascent, in units of the input (see :class:`InputSpace`).

    Returns
    -------
    dict of per-image arrays (numpy), keyed by diagnostic; ``deepdream_runs`` holds the
    ascent in the input space (``input``) and in counts (``counts``).
    """
    counts = _checked_counts(counts)
    aux = aux.reset_index(drop=True)
    r = radius_r500c(counts.shape[1], r500c_pix)
    edges = np.asarray(r_edges_r500c, dtype=float)
    ring_edges = np.asarray(ring_edges_r500c, dtype=float)
    core_r500c = tuple(float(c) for c in core_r500c)
    res: dict = {"r_edges_r500c": edges, "ring_edges_r500c": ring_edges, "core_r500c": core_r500c}
    res.update(_occlusion(predictor, counts, aux, r, ring_edges, core_r500c, ring_dimming))
    res.update(_core_shares(counts, r, ring_edges, core_r500c, res["ring_sensitivity"]))
    g0 = _gradient(predictor, counts, aux)
    res["has_gradient"] = g0 is not None
    if g0 is None:
        return res
    res["saliency_profile"] = _saliency_profile(g0, r, edges)
    res.update(_gradient_x_input(counts, g0, r, ring_edges, core_r500c))
    space = input_space if input_space is not None else input_space_of(predictor)
    runs = _ascents(predictor, counts, aux, r, edges, ring_edges, g0, space, step_size, input_step_size, n_iter)
    res.update(_deepdream_record(runs, space))
    return res


def _checked_counts(counts: np.ndarray) -> np.ndarray:
    counts = np.asarray(counts, dtype=np.float64)
    if counts.ndim != 3 or counts.shape[1] != counts.shape[2]:
        raise DiagnosticsError(f"counts must have shape (N, npix, npix), got {counts.shape}")
    if np.any(counts < 0) or not np.all(np.isfinite(counts)):
        raise DiagnosticsError("counts must be finite and non-negative")
    return counts


def _occlusion(predictor, counts, aux, r, ring_edges, core_r500c: tuple, ring_dimming: float) -> dict:
    """(c) The original images, their occluded cores and their dimmed rings: predicted
    log10 M and its changes."""
    n, n_rings = counts.shape[0], len(ring_edges) - 1
    occl_keys = [(rc, mode) for rc in core_r500c for mode in ("annulus", "background")]
    variants = [counts] + [occlude_core(counts, r, rc, mode) for rc, mode in occl_keys]
    dimmed = _dim_rings(counts, r, ring_edges, ring_dimming)
    # The model-agnostic part in one predict call: original, occluded cores, dimmed rings.
    batch = np.concatenate(variants + [dimmed])
    batch_aux = pd.concat([aux] * len(variants) + [_repeat_aux(aux, n_rings)], ignore_index=True)
    f_all = _predict(predictor, batch, batch_aux)
    f0 = f_all[:n]
    f_rings = f_all[len(variants) * n :].reshape(n, n_rings)
    return {
        "log10m_pred": f0,
        "occlusion": {f"{mode}_{rc:g}": f_all[(k + 1) * n : (k + 2) * n] - f0
                      for k, (rc, mode) in enumerate(occl_keys)},
        "ring_sensitivity": np.abs(f_rings - f0[:, None]),
    }


def _core_shares(counts, r, ring_edges, core_r500c: tuple, ring_sens: np.ndarray) -> dict:
    """Photons per ring, and the shares of photons and of ring-dimming sensitivity inside
    each core radius."""
    ring_photons = radial_sum(counts, r, ring_edges)
    total_photons = counts.sum(axis=(1, 2))
    return {
        "ring_photons": ring_photons,
        "photon_share_core": {f"{rc:g}": _share_inside(counts, r, rc, total_photons) for rc in core_r500c},
        "occlusion_share_core": {f"{rc:g}": _ring_share_inside(ring_sens, ring_edges, rc) for rc in core_r500c},
    }


def _ring_share_inside(ring_values: np.ndarray, ring_edges: np.ndarray, rc: float) -> np.ndarray:
    # Ring edges include the core radii, so the share is exact in ring units.
    inside = ring_edges[1:] <= rc + 1e-9
    tot = ring_values.sum(axis=1)
    return np.divide(ring_values[:, inside].sum(axis=1), tot, out=np.full(len(tot), np.nan), where=tot > 0)


def _saliency_profile(g0: np.ndarray, r: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """(b) Mean |df/dx| per radial bin, normalised per image to a mean of one."""
    abs_g = np.abs(g0)
    mean_abs = abs_g.mean(axis=(1, 2), keepdims=True)
    sal = np.divide(abs_g, mean_abs, out=np.zeros_like(abs_g), where=mean_abs > 0)
    npx = _bin_pixel_counts(r, edges)
    return np.divide(radial_sum(sal, r, edges), npx, out=np.full(npx.shape, np.nan), where=npx > 0)


def _gradient_x_input(counts, g0, r, ring_edges, core_r500c: tuple) -> dict:
    """(d) |df/dN * N|: its share inside each core radius and its sum per ring."""
    attribution = np.abs(g0 * counts)
    total_attr = attribution.sum(axis=(1, 2))
    return {
        "gradient_share_core": {f"{rc:g}": _share_inside(attribution, r, rc, total_attr) for rc in core_r500c},
        "attribution_rings": radial_sum(attribution, r, ring_edges),
    }


def _ascents(predictor, counts, aux, r, edges, ring_edges, g0, space: InputSpace, step_size: float,
             input_step_size: float, n_iter: int) -> dict:
    """(a) The DeepDream ascent in counts (the named variant), then in the model's input
    space (the same run when that space is counts)."""
    runs = {"counts": _ascent(predictor, counts, aux, r, edges, ring_edges, g0, COUNT_SPACE, step_size, n_iter)}
    runs["input"] = (runs["counts"] if space == COUNT_SPACE else
                     _ascent(predictor, counts, aux, r, edges, ring_edges, g0, space, input_step_size, n_iter))
    return runs


def _deepdream_record(runs: dict, space: InputSpace) -> dict:
    main = runs["input"]
    # Flat keys: the input-space run (what the summary and the entry show first).
    return {
        "deepdream_runs": runs,
        "input_space": space,
        "deepdream_dn_over_n": main["dn_over_n"],  # (n_iter, N, B)
        "deepdream_log10m": main["log10m"],  # (n_iter, N)
        "deepdream_peak_r500c": main["peak_r500c"],
        "deepdream_centroid_r500c": main["centroid_r500c"],
        "deepdream_example_change": main["example_change"],
    }


def _ascent(predictor, counts, aux, r, edges, ring_edges, g0, space: InputSpace, step_size: float,
            n_iter: int) -> dict:
    """``n_iter`` DeepDream steps in ``space`` from ``counts`` (first gradient ``g0``)."""
    n0 = radial_sum(counts, r, edges)
    x, g = counts, g0
    dn_over_n, f_iter, abs_rings = [], [], []
    for it in range(n_iter):
        x = deepdream_step_in(x, g, space, step_size)
        nb = radial_sum(x, r, edges)
        dn_over_n.append(np.divide(nb - n0, n0, out=np.full(n0.shape, np.nan), where=n0 > 0))
        abs_rings.append(radial_sum(np.abs(x - counts), r, ring_edges))
        f_iter.append(_predict(predictor, x, aux))
        if it + 1 < n_iter:
            g = _gradient(predictor, x, aux)
            if g is None:
                raise DiagnosticsError("predictor.gradient returned None after the first step; "
                                       "a model either has gradients everywhere or not at all")
    change = x - counts
    return {"dn_over_n": np.stack(dn_over_n), "log10m": np.stack(f_iter), "abs_change_rings": np.stack(abs_rings),
            "peak_r500c": _peak_radius(change, r), "centroid_r500c": _centroid_radius(change, r),
            "example_change": change.astype(np.float32), "space": space, "step_size": float(step_size)}


def _share_inside(values: np.ndarray, r: np.ndarray, rc: float, total: np.ndarray) -> np.ndarray:
    inside = np.where(r < rc, values, 0.0).sum(axis=(1, 2))
    return np.divide(inside, total, out=np.full(len(total), np.nan), where=total > 0)


def _centroid_radius(change: np.ndarray, r: np.ndarray) -> np.ndarray:
    """R/R500c of the |change|-weighted centroid of each image (0: centred, however wide).

    A change spread symmetrically around the centre, in the core or in a ring far out, has its
    centroid at the centre; one that piles up on a clump or a false core does not.
    """
    npix = change.shape[1]
    c = (npix - 1) / 2.0
    yy, xx = np.mgrid[0:npix, 0:npix]
    w = np.abs(change)
    tot = w.sum(axis=(1, 2))
    safe = np.where(tot > 0, tot, 1.0)
    dy = (w * (yy - c)).sum(axis=(1, 2)) / safe
    dx = (w * (xx - c)).sum(axis=(1, 2)) / safe
    # Pixels per R500c from the radius map (r = r_pix / r500c_pix everywhere).
    r500c_pix = np.hypot(yy - c, xx - c).max() / r.reshape(r.shape[0], -1).max(axis=1)
    return np.where(tot > 0, np.hypot(dy, dx) / r500c_pix, 0.0)


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


def summarise(per_image: pd.DataFrame, batches: list[dict], settings: dict, outlier_r500c: float = 1.0,
              offcentre_r500c: float = OFFCENTRE_R500C) -> dict:
    """Combine per-fold results into the JSON-serialisable summary (see run_diagnostics).

    Parameters
    ----------
    per_image : DataFrame
        One row per diagnosed image, in the order of the batches (image_id, cluster_id,
        fold, log10_m500c).
    batches : list of dict
        :func:`diagnose_predictor` results, one per fold.
    settings : dict
        Recorded as the summary's ``settings``.
    outlier_r500c, offcentre_r500c : float
        Radii beyond which an ascent's largest change or centroid flags the image.

    Returns
    -------
    dict
        The summary without the controls, notes and plots :func:`run_diagnostics` adds.
    """
    has_grad = all(b["has_gradient"] for b in batches)
    summary = _summary_header(per_image, batches[0], has_grad, settings)
    summary.update(_core_sensitivity_summary(batches, has_grad))
    summary.update(_ring_share_summary(batches))
    summary["occlusion_delta_log10m"] = _occlusion_summary(batches)
    outliers = []
    if has_grad:
        summary.update(_gradient_summary(batches))
        peak, centroid = _cat(batches, "deepdream_peak_r500c"), _cat(batches, "deepdream_centroid_r500c")
        outliers = _flag_outliers(per_image, peak, centroid, _cat(batches, "deepdream_log10m")[-1],
                                  _cat(batches, "log10m_pred"), outlier_r500c, offcentre_r500c)
        summary["deepdream_peak_r500c"] = json_safe(peak)
        summary["deepdream_centroid_r500c"] = json_safe(centroid)
    summary["outliers"] = outliers
    summary["images"] = json_safe(per_image[["image_id", "cluster_id", "fold", "log10_m500c"]].to_dict("list"))
    summary["log10m_pred"] = json_safe(_cat(batches, "log10m_pred"))
    return summary


def _cat(batches: list[dict], key: str, sub: str | None = None) -> np.ndarray:
    """``key`` (or ``key[sub]``) of every batch, joined along the image axis."""
    parts = [b[key] if sub is None else b[key][sub] for b in batches]
    return np.concatenate(parts, axis=-1 if key in ("deepdream_log10m",) else 0)


def _row_shares(values: np.ndarray) -> np.ndarray:
    """Each row divided by its sum (NaN where the sum is zero)."""
    tot = values.sum(axis=1, keepdims=True)
    return np.divide(values, tot, out=np.full(values.shape, np.nan), where=tot > 0)


def _summary_header(per_image: pd.DataFrame, first: dict, has_grad: bool, settings: dict) -> dict:
    return {
        "n_images": int(len(per_image)),
        "n_clusters": int(per_image["cluster_id"].nunique()),
        "folds": sorted(int(f) for f in per_image["fold"].unique()),
        "has_gradient": bool(has_grad),
        "settings": settings,
        "r_edges_r500c": json_safe(first["r_edges_r500c"]),
        "ring_edges_r500c": json_safe(first["ring_edges_r500c"]),
    }


def _core_sensitivity_summary(batches: list[dict], has_grad: bool) -> dict:
    cores = batches[0]["core_r500c"]
    detail = {f"{rc:g}": _core_ratio(batches, f"{rc:g}", has_grad) for rc in cores}
    head = detail[f"{cores[0]:g}"]
    # The entry schema's one number (benchmark.entries: diagnostics.core_sensitivity) is the
    # occlusion figure, the one every model has; the gradient figure stands beside it.
    return {
        "core_radius_r500c": cores[0],
        "core_sensitivity": head["occlusion"],
        "core_sensitivity_method": "occlusion",
        "core_sensitivity_gradient": head["gradient"],
        "core_sensitivity_detail": detail,
    }


def _core_ratio(batches: list[dict], key: str, has_grad: bool) -> dict:
    """Median photon share inside one core radius, and the median over images of each
    method's sensitivity share / photon share there."""
    photon = _cat(batches, "photon_share_core", key)
    occl = _median_ratio(_cat(batches, "occlusion_share_core", key), photon)
    grad = _median_ratio(_cat(batches, "gradient_share_core", key), photon) if has_grad else None
    return {"photon_share_median": json_safe(np.nanmedian(photon)), "occlusion": occl, "gradient": grad}


def _ring_share_summary(batches: list[dict]) -> dict:
    ring_ph = _cat(batches, "ring_photons")
    return {
        "ring_sensitivity_share": _profile_stats(_row_shares(_cat(batches, "ring_sensitivity"))),
        "ring_photon_share": _profile_stats(ring_ph / ring_ph.sum(axis=1, keepdims=True)),
    }


def _occlusion_summary(batches: list[dict]) -> dict:
    """Change of the predicted log10 M for each core occlusion: mean, std, median, per image."""
    occl = {}
    for key in batches[0]["occlusion"]:
        d = _cat(batches, "occlusion", key)
        occl[key] = {"mean": json_safe(d.mean()), "std": json_safe(d.std()), "median": json_safe(np.median(d)),
                     "per_image": json_safe(d)}
    return occl


def _gradient_summary(batches: list[dict]) -> dict:
    """The DeepDream variants, the saliency profile and the gradient x input ring shares."""
    f0 = _cat(batches, "log10m_pred")
    variants = {name: _deepdream_variant([b["deepdream_runs"][name] for b in batches], f0)
                for name in ("input", "counts")}
    # The main profile: the ascent in the model's own input space.
    return {
        "deepdream_variants": variants,
        "deepdream": variants["input"]["profile"],
        "deepdream_delta_log10m": variants["input"]["delta_log10m"],
        "deepdream_space": variants["input"]["space"]["name"],
        "saliency_profile": _profile_stats(_cat(batches, "saliency_profile")),
        "ring_gradient_share": _profile_stats(_row_shares(_cat(batches, "attribution_rings"))),
    }


def _deepdream_variant(runs: list[dict], f0: np.ndarray) -> dict:
    """One ascent's dN/N profiles and mean change of log10 M per iteration, over all batches."""
    dd = np.concatenate([rn["dn_over_n"] for rn in runs], axis=1)  # (iter, N, B)
    f_dd = np.concatenate([rn["log10m"] for rn in runs], axis=1)
    return {
        "space": runs[0]["space"].describe(),
        "step_size": runs[0]["step_size"],
        "n_iter": int(dd.shape[0]),
        "profile": {f"iter{i + 1}": _profile_stats(dd[i]) for i in range(dd.shape[0])},
        "delta_log10m": {f"iter{i + 1}": json_safe(np.mean(f_dd[i] - f0)) for i in range(f_dd.shape[0])},
    }


def _flag_outliers(per_image, peak, centroid, last, f0, outlier_r500c, offcentre_r500c) -> list[dict]:
    """Images whose ascent put its change off centre or failed to raise the mass."""
    outliers = []
    for i, row in enumerate(per_image.itertuples(index=False)):
        reasons = []
        if centroid[i] > offcentre_r500c:
            reasons.append(f"change concentrated off centre (centroid at {centroid[i]:.2f} R500c "
                           f"> {offcentre_r500c:g}): misidentified core?")
        if peak[i] > outlier_r500c:
            reasons.append(f"largest change at {peak[i]:.2f} R500c (> {outlier_r500c:g})")
        if not last[i] > f0[i]:
            reasons.append("predicted mass did not rise under gradient ascent")
        if reasons:
            outliers.append({"image_id": str(row.image_id), "fold": int(row.fold), "index": i,
                             "peak_r500c": json_safe(peak[i]), "centroid_r500c": json_safe(centroid[i]),
                             "reasons": reasons})
    return outliers


# --------------------------------------------------------------------------------------
# the model against its controls
# --------------------------------------------------------------------------------------
QUESTION = "does the model use the core less than photons alone would suggest?"


def _by_cluster(arr: np.ndarray, cluster_ids) -> np.ndarray:
    """Sum the rows of ``arr`` (N, ...) per cluster: the unit of the bootstrap."""
    codes, uniq = pd.factorize(pd.Series(cluster_ids).astype(str))
    out = np.zeros((len(uniq),) + arr.shape[1:])
    np.add.at(out, codes, arr)
    return out


def _bootstrap(stat: Callable, parts: list[np.ndarray], n_boot: int, seed: int):
    """``stat(*parts)``, and its 2.5/97.5 percentiles over resampled clusters (rows)."""
    est = stat(*parts)
    rng = np.random.default_rng(seed)
    n = parts[0].shape[0]
    boots = np.array([stat(*[p[idx] for p in parts]) for idx in rng.integers(0, n, (n_boot, n))])
    with np.errstate(all="ignore"):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            lo, hi = np.nanpercentile(boots, [2.5, 97.5], axis=0)
    return est, lo, hi


def _ratio_of_sums(num: np.ndarray, den: np.ndarray):
    with np.errstate(all="ignore"):
        return np.sum(num, axis=0) / np.sum(den, axis=0)


def _zone_masks(ring_edges: np.ndarray, rc: float, r_out: float = 1.0):
    """Rings inside the core, and rings from the core to ``r_out`` (edges hold both radii)."""
    core = ring_edges[1:] <= rc + 1e-9
    ref = (ring_edges[:-1] >= rc - 1e-9) & (ring_edges[1:] <= r_out + 1e-9)
    return core, ref


def core_use_index(model_rings: np.ndarray, null_rings: np.ndarray, ring_edges: np.ndarray, rc: float,
                   cluster_ids, n_boot: int = 1000, seed: int = 0) -> dict:
    """The model's core share over the null control's core share, with a 95% interval.

    Core share: what happens inside ``rc`` over what happens inside 1 R500c, summed over
    images (clusters).

    Parameters
    ----------
    model_rings, null_rings : array (N, R)
        Per image and ring: what the model and the null control do there (|dN| of the ascent,
        or |delta f| of ring dimming). Only ratios within one predictor enter, so the two
        need not share units.
    ring_edges : array (R+1,)
        In R/R500c; must contain ``rc`` and 1.
    rc : float
        Core radius (R/R500c); the outskirts run from ``rc`` to 1 R500c.
    cluster_ids : sequence (N,)
        Bootstrap unit.

    Returns
    -------
    dict: ``value`` (1: the core as the null would have it; < 1: less), ``ci95``, ``answer``
    ("yes" when the whole interval lies below 1, "no" above 1, else "undetermined").
    """
    core, ref = _zone_masks(np.asarray(ring_edges, float), rc)
    parts = [_by_cluster(np.stack([a[:, core].sum(axis=1), a[:, ref].sum(axis=1)], axis=1), cluster_ids)
             for a in (model_rings, null_rings)]

    def stat(m, n):
        # Core share of what happens within 1 R500c: bounded, so a core-only model stays finite.
        with np.errstate(all="ignore"):
            return (m[:, 0].sum() / m.sum()) / (n[:, 0].sum() / n.sum())

    est, lo, hi = _bootstrap(stat, parts, n_boot, seed)
    if not np.isfinite(est):
        answer = "undetermined"
    elif hi < 1.0:
        answer = "yes"
    elif lo > 1.0:
        answer = "no"
    else:
        answer = "undetermined"
    return {"value": json_safe(est), "ci95": [json_safe(lo), json_safe(hi)], "answer": answer,
            "core_r500c": rc, "outskirts_r500c": [rc, 1.0], "n_clusters": int(parts[0].shape[0])}


def relative_profile(model_dn: np.ndarray, null_dn: np.ndarray, cluster_ids, n_boot: int = 1000,
                     seed: int = 0) -> dict:
    """Per radial bin: mean dN/N of the model over that of the null control, 95% interval.

    Parameters
    ----------
    model_dn, null_dn : array (N, B)
        dN/N per image and bin after the same ascent iteration on the same images.
    cluster_ids : sequence (N,)

    Returns
    -------
    dict of lists: ``ratio``, ``lo``, ``hi`` (bootstrap over clusters).
    """
    ok = np.isfinite(model_dn) & np.isfinite(null_dn)
    parts = [_by_cluster(np.where(ok, a, 0.0), cluster_ids) for a in (model_dn, null_dn)]
    est, lo, hi = _bootstrap(_ratio_of_sums, parts, n_boot, seed)
    return {"ratio": json_safe(est), "lo": json_safe(lo), "hi": json_safe(hi)}


def compare_with_null(per_image: pd.DataFrame, model: list[dict], null: list[dict], core_r500c: float,
                      n_boot: int = 1000, seed: int = 0) -> dict:
    """The model's profiles relative to the null control, and the answer to :data:`QUESTION`.

    Returns
    -------
    dict: ``relative_to_null`` (dN/N ratio per radial bin and iteration, input-space ascent,
    only with gradients), ``core_use_vs_null`` (the index by ascent and by ring dimming, and
    the answer: by ascent when the model has gradients, else by ring dimming).
    """
    ids = per_image["cluster_id"].to_numpy()
    ring_edges = np.asarray(model[0]["ring_edges_r500c"], float)
    out: dict = {}
    by = {"ring_dimming": core_use_index(np.concatenate([b["ring_sensitivity"] for b in model]),
                                         np.concatenate([b["ring_sensitivity"] for b in null]),
                                         ring_edges, core_r500c, ids, n_boot, seed)}
    if all(b["has_gradient"] for b in model):
        runs_m = [b["deepdream_runs"]["input"] for b in model]
        runs_n = [b["deepdream_runs"]["input"] for b in null]
        dn_m = np.concatenate([r["dn_over_n"] for r in runs_m], axis=1)
        dn_n = np.concatenate([r["dn_over_n"] for r in runs_n], axis=1)
        out["relative_to_null"] = {f"iter{i + 1}": relative_profile(dn_m[i], dn_n[i], ids, n_boot, seed)
                                   for i in range(dn_m.shape[0])}
        ab_m = np.concatenate([r["abs_change_rings"] for r in runs_m], axis=1)
        ab_n = np.concatenate([r["abs_change_rings"] for r in runs_n], axis=1)
        by["deepdream_iter1"] = core_use_index(ab_m[0], ab_n[0], ring_edges, core_r500c, ids, n_boot, seed)
        head = "deepdream_iter1"
    else:
        head = "ring_dimming"
    out["core_use_vs_null"] = {
        "question": QUESTION, "answer": by[head]["answer"], "answered_by": head,
        "value": by[head]["value"], "ci95": by[head]["ci95"], "by": by,
        "definition": "share of the model's response inside the core (of that inside 1 R500c) over the "
                      "same share of the null control (mean log10(1+N) over pixels); core R < "
                      f"{core_r500c:g} R500c; deepdream: |dN| after the "
                      "first input-space step; ring_dimming: |delta f| when one ring's photons are dimmed; "
                      "95% interval from a bootstrap over clusters; yes: interval below 1",
    }
    return out


def control_summary(per_image: pd.DataFrame, batches: list[dict], settings: dict, what: str) -> dict:
    """The compact record of one control (same clusters, same axes as the model)."""
    full = summarise(per_image, batches, settings)
    out = {"what": what, "has_gradient": full["has_gradient"],
           "core_sensitivity_detail": full["core_sensitivity_detail"],
           "ring_sensitivity_share": {"mean": full["ring_sensitivity_share"]["mean"]},
           "occlusion_delta_mean": {k: v["mean"] for k, v in full["occlusion_delta_log10m"].items()}}
    if "deepdream_variants" in full:
        out["deepdream"] = {name: {it: {"mean": st["mean"]} for it, st in v["profile"].items()}
                            for name, v in full["deepdream_variants"].items()}
        out["n_outliers"] = len(full["outliers"])
    return out


LX_CONTROL_RUN = "lx-iterative"


def _lx_control(ds, catalog, k: int, out_dir, max_train_images: int, seed: int):
    """Control (c): the fold's core-excised L_X model (no gradients: occlusion only).

    The harness-trained ``runs/lx-iterative/fold_k`` beside the entry's run when there is one;
    otherwise an ``lx_iterative`` model fitted here on at most ``max_train_images`` images
    of the fold's training part (never its test fold).
    """
    from benchmark.models.lx import make_model
    from benchmark.training import FoldData, Predictor, fold_dir, load_fold_predictor

    sibling = Path(out_dir).parent / LX_CONTROL_RUN
    if fold_dir(sibling, k).is_dir():
        try:
            return load_fold_predictor(sibling, k), f"harness-trained {LX_CONTROL_RUN} fold model"
        except ClusterMassError:
            logger.info("fold %d of %s is incomplete: fitting an L_X control here", k, sibling)
    train = np.asarray(ds.fold_indices(k)["train"])
    if train.size > max_train_images:
        train = np.sort(np.random.default_rng(seed).choice(train, max_train_images, replace=False))
    rows = catalog.iloc[train]
    images = np.asarray(ds.images(rows["image_id"].tolist()), dtype=np.float32)
    model = make_model({"r500c_source": "iterative", "image": dict(ds.card.get("image", {}))})
    model.fit(FoldData(images, ds.aux(train), rows["log10_m500c"].to_numpy(float)))
    return Predictor(model, {"truth_columns": []}), f"lx_iterative fitted on {len(rows)} training images"


# --------------------------------------------------------------------------------------
# dataset plumbing
# --------------------------------------------------------------------------------------


def _pixel_arcsec(ds) -> float:
    try:
        return float(ds.card["image"]["pixel_arcsec"])
    except (KeyError, TypeError, ValueError):
        raise DiagnosticsError("dataset card has no image.pixel_arcsec; regenerate or fix "
                               "dataset_card.json") from None


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


CONTROLS = ("null", "random_weights", "lx")
_CONTROL_WHAT = {
    "null": "null model: mean of log10(1+N) over pixels (every pixel weighs alike in log space), "
            "ascent in the model's input space",
    "random_weights": "the same network with re-initialised (random) weights",
    "lx": "core-excised L_X (0.15-1 R500c, iterative R500c): occlusion only (no gradients)",
}


def run_diagnostics(
    out_dir,
    dataset,
    n_clusters_per_fold: int = 8,
    folds: Iterable[int] = range(10),
    *,
    load_predictor: Callable | None = None,
    plot_dir=None,
    step_size: float = 0.1,
    input_step_size: float = 0.1,
    n_iter: int = 2,
    ring_dimming: float = 0.2,
    outlier_r500c: float = 1.0,
    offcentre_r500c: float = OFFCENTRE_R500C,
    controls: Iterable[str] = CONTROLS,
    n_boot: int = 1000,
    lx_train_images: int = 300,
    seed: int = 0,
    write: bool = True,
) -> dict:
    """Interpretation diagnostics of a trained entry, each fold model on its own test fold.

    Parameters
    ----------
    out_dir : path
        The harness's output folder of the entry (``out_dir/seed_0/fold_k/``: the default
        loader diagnoses seed 0).
    dataset : ClusterMassDataset or path
    n_clusters_per_fold : int
        Test clusters per fold (spread evenly in mass, one view each).
    folds : iterable of int
    load_predictor : callable, optional
        ``(out_dir, k) -> Predictor``; default ``benchmark.training.load_fold_predictor``.
    plot_dir : path, optional
        Where the PNG plots and ``diagnostics.json`` go; default ``out_dir/diagnostics``.
    step_size, input_step_size, n_iter, ring_dimming, outlier_r500c, offcentre_r500c, seed
        See the module docstring (``step_size``: the count-space ascent; ``input_step_size``:
        the input-space ascent).
    controls : iterable of str
        Any of :data:`CONTROLS`, run on the same images: ``null`` (:class:`NullLogPredictor`),
        ``random_weights`` (:func:`random_weights_predictor`; skipped, with a note, for a model
        without a Keras network), ``lx`` (the fold's L_X model, see :func:`_lx_control`).
    n_boot : int
        Bootstrap resamples over clusters (comparison with the null control).
    lx_train_images : int
        Training images the L_X control is fitted on when no trained L_X run lies beside
        ``out_dir``.
    write : bool
        Write plots and ``diagnostics.json`` (False: only return the summary).

    Returns
    -------
    dict
        JSON-serialisable summary: ``core_sensitivity`` and ``core_sensitivity_method``
        (the leaderboard number, ring-dimming occlusion for every model),
        ``core_sensitivity_gradient`` (the gradient figure beside it, None without
        gradients), ``core_sensitivity_detail`` (both methods, 0.15 and 0.2 R500c),
        ``deepdream`` (input-space dN/N profiles per iteration), ``deepdream_variants``
        (``input`` and ``counts``), ``saliency_profile``, ``occlusion_delta_log10m``, ring
        shares, ``outliers``, ``controls``, ``relative_to_null``, ``core_use_vs_null``,
        ``notes``, ``images``, ``settings``, ``plots`` (file names relative to plot_dir).
    """
    controls = _checked_controls(controls)
    ds = as_dataset(dataset)
    load_predictor = load_predictor or _default_loader
    catalog = ds.catalog.reset_index(drop=True)
    pixel_arcsec = _pixel_arcsec(ds)
    folds = _checked_fold_choice(folds, n_clusters_per_fold)
    kw = dict(step_size=step_size, input_step_size=input_step_size, n_iter=n_iter, ring_dimming=ring_dimming,
              outlier_r500c=outlier_r500c)
    batches, rows = [], []
    ctl: dict[str, list] = {c: [] for c in controls}
    notes: list[str] = []
    for k in folds:
        fold = _diagnose_fold(ds, catalog, k, out_dir, load_predictor, controls, ctl, kw, n_clusters_per_fold,
                              lx_train_images, seed)
        if fold is None:
            continue
        batch, fold_ctl, fold_notes, frame = fold
        batches.append(batch)
        _add_control_batches(ctl, fold_ctl)
        notes += [note for note in dict.fromkeys(fold_notes) if note not in notes]
        rows.append(frame)
    if not batches:
        raise DiagnosticsError("the folds given have no test images; check the dataset's splits")
    per_image = pd.concat(rows, ignore_index=True)
    settings = _settings_record(step_size, input_step_size, n_iter, ring_dimming, outlier_r500c, offcentre_r500c,
                                n_clusters_per_fold, seed, pixel_arcsec, n_boot, controls)
    summary = summarise(per_image, batches, settings, outlier_r500c, offcentre_r500c)
    summary["notes"] = _notes(summary, ctl) + notes
    summary["controls"] = {name: control_summary(per_image, b, settings, _CONTROL_WHAT[name])
                           for name, b in ctl.items() if b}
    if ctl.get("null"):
        summary.update(compare_with_null(per_image, batches, ctl["null"], summary["core_radius_r500c"],
                                         n_boot, seed))
    if write:
        _write_plots_and_json(summary, batches, plot_dir, out_dir)
    return summary


def _checked_controls(controls: Iterable[str]) -> tuple[str, ...]:
    controls = tuple(controls)
    unknown = [c for c in controls if c not in CONTROLS]
    if unknown:
        raise DiagnosticsError(f"unknown controls {unknown}; choose from {', '.join(CONTROLS)}")
    return controls


def _checked_fold_choice(folds: Iterable[int], n_clusters_per_fold: int) -> list[int]:
    folds = [int(k) for k in folds]
    if not folds:
        raise DiagnosticsError("no folds given; pass folds=range(10) or a subset")
    if n_clusters_per_fold < 1:
        raise DiagnosticsError("n_clusters_per_fold must be at least 1")
    return folds


def _diagnose_fold(ds, catalog: pd.DataFrame, k: int, out_dir, load_predictor: Callable, controls: tuple,
                   ctl: dict, kw: dict, n_clusters: int, lx_train_images: int, seed: int):
    """Fold ``k``'s model and its controls on the fold's diagnosed images.

    Returns None when the fold has no test images, else the model's batch, the controls'
    batches as ``(name, batch)`` in the order of ``controls`` (batch None: the control
    cannot run on this model), the notes in the order met and the per-image frame. A
    control skipped in ``ctl`` (None) or earlier in this fold is not diagnosed again. The
    fold's model is released on return, before the next fold's is loaded.
    """
    idx, rows_k, counts, r500c_pix = _fold_images(ds, catalog, k, n_clusters, seed)
    if idx.size == 0:
        return None
    predictor = load_predictor(out_dir, k)
    batch = diagnose_predictor(predictor, counts, _aux_for(predictor, ds, idx), r500c_pix, **kw)
    notes = [_SANDBOX_NOTE] if getattr(predictor, "sandboxed", False) else []
    space = batch.get("input_space", input_space_of(predictor))
    skipped = {name for name, b in ctl.items() if b is None}
    control_batches = []
    for name in controls:
        other, source = _control_predictor(name, predictor, space, ds, catalog, k, out_dir, lx_train_images,
                                           seed)
        if other is None:
            skipped.add(name)
            control_batches.append((name, None))
            continue
        if name not in skipped:
            control_batches.append((name, diagnose_predictor(other, counts, _aux_for(other, ds, idx), r500c_pix,
                                                             input_space=space, **kw)))
        if source:
            notes.append(f"L_X control: {source}")
    frame = rows_k[["image_id", "cluster_id", "log10_m500c"]].copy()
    frame["fold"] = k
    return batch, control_batches, notes, frame


def _control_predictor(name: str, predictor, space: InputSpace, ds, catalog: pd.DataFrame, k: int, out_dir,
                       lx_train_images: int, seed: int):
    """Control ``name``'s predictor for fold ``k`` (None: it cannot run on this model) and
    where it came from (None: nothing to note)."""
    if name == "null":
        return NullLogPredictor(space), None
    if name == "random_weights":
        return random_weights_predictor(predictor, seed + k), None
    return _lx_control(ds, catalog, k, out_dir, lx_train_images, seed + k)


def _add_control_batches(ctl: dict, fold_ctl: list[tuple]) -> None:
    # A control skipped on one fold stays skipped: a partial control would not match the model.
    for name, batch in fold_ctl:
        if batch is None:
            ctl[name] = None
        else:
            ctl[name].append(batch)


def _settings_record(step_size, input_step_size, n_iter, ring_dimming, outlier_r500c, offcentre_r500c,
                     n_clusters_per_fold, seed, pixel_arcsec, n_boot, controls) -> dict:
    return {"step_size": step_size, "step_rule": COUNT_SPACE.describe()["step_rule"],
            "input_step_size": input_step_size, "n_iter": n_iter, "ring_dimming": ring_dimming,
            "outlier_r500c": outlier_r500c, "offcentre_r500c": offcentre_r500c,
            "n_clusters_per_fold": n_clusters_per_fold, "seed": seed, "pixel_arcsec": pixel_arcsec,
            "n_boot": n_boot, "controls": list(controls),
            "occlusion_modes": {"annulus": "mean of r_core..1.5 r_core",
                                "background": "median beyond 1.5 R500c"},
            "core_ratio_statistic": "median over images of sensitivity share / photon share"}


def _write_plots_and_json(summary: dict, batches: list[dict], plot_dir, out_dir) -> None:
    """Write the plots and ``diagnostics.json`` to ``plot_dir`` (default ``out_dir/diagnostics``);
    adds ``plots`` to the summary."""
    plot_dir = Path(plot_dir) if plot_dir is not None else Path(out_dir) / "diagnostics"
    plot_dir.mkdir(parents=True, exist_ok=True)
    example = _example_images(batches, summary)
    summary["plots"] = plot_diagnostics(summary, plot_dir, example=example)
    write_text(plot_dir / "diagnostics.json", json.dumps(summary, indent=1, allow_nan=False))


_SANDBOX_NOTE = ("code entry: the model never left its sandbox; its predictions and gradients "
                 "for these diagnostics were computed inside it, by the fold's own child after "
                 "it predicted (seed 0), and are replayed here")


def _fold_images(ds, catalog: pd.DataFrame, k: int, n_clusters: int, seed: int):
    """The diagnosed images of fold ``k``: indices, catalog rows, counts, R500c in pixels."""
    idx = select_test_images(catalog, ds.fold_indices(k)["test"], n_clusters, seed + k)
    rows_k = catalog.iloc[idx]
    if idx.size == 0:
        return idx, rows_k, None, None
    counts = np.asarray(ds.images(rows_k["image_id"].tolist()), dtype=np.float64)
    r500c_pix = rows_k["r500c_arcmin"].to_numpy(dtype=float) * 60.0 / _pixel_arcsec(ds)
    return idx, rows_k, counts, r500c_pix


def diagnose_in_sandbox(predictor, dataset, k: int) -> None:
    """What :func:`run_diagnostics` (default settings) asks of fold ``k``'s model, asked of a
    code entry's model while it still runs in its sandbox.

    ``benchmark.training.run_code_entry`` calls it (``diagnose=``) with a
    ``SandboxPredictor`` whose answers it keeps; :func:`run_diagnostics` later replays them.
    Only the main batch needs the model: the null and L_X controls run here, and the
    random-weights control needs a network the harness cannot see (skipped, with a note).
    """
    ds = as_dataset(dataset)
    catalog = ds.catalog.reset_index(drop=True)
    idx, _, counts, r500c_pix = _fold_images(ds, catalog, k, 8, 0)
    if idx.size:
        diagnose_predictor(predictor, counts, _aux_for(predictor, ds, idx), r500c_pix)


def _aux_for(predictor, ds, indices: np.ndarray) -> pd.DataFrame:
    # Only the dataset's auxiliary columns reach the model, plus the truth columns a
    # baseline declares it needs (e.g. the L_X bound that takes R500c from the truth).
    aux = ds.aux(indices)
    for col in getattr(predictor, "truth_columns", None) or []:
        aux[col] = ds.catalog[col].to_numpy()[np.asarray(indices)]
    return aux


def _notes(summary: dict, ctl: dict) -> list[str]:
    notes = []
    if not summary["has_gradient"]:
        notes.append("the model has no gradients: DeepDream, saliency and the gradient figure are not "
                     "computed; core sensitivity and the comparison with the null control come from "
                     "occlusion (ring dimming)")
    if "random_weights" in ctl and ctl["random_weights"] is None:
        notes.append("random-weights control skipped: the model has no Keras network to re-initialise")
    return notes


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
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=80, format="png")
    plt.close(fig)


def plot_diagnostics(summary: dict, plot_dir, example=None) -> dict:
    """Write the PNG plots of a summary; returns {name: file name} (relative to plot_dir)."""
    import matplotlib

    matplotlib.use("Agg")
    plot_dir = Path(plot_dir)
    plots = {}
    rc = _centres(summary["r_edges_r500c"])
    core = summary["core_radius_r500c"]
    if "deepdream" in summary:
        plots["deepdream_profile"] = _plot_deepdream_profile(summary, rc, plot_dir)
        plots["saliency_profile"] = _plot_saliency_profile(summary, rc, plot_dir)
    plots["sensitivity_share"] = _plot_sensitivity_share(summary, core, plot_dir)
    plots["occlusion"] = _plot_occlusion(summary, plot_dir)
    if example is not None:
        plots["deepdream_example"] = _plot_example_change(example, plot_dir)
    return plots


def _finish_radial(fig, ax, plot_dir: Path, name: str) -> str:
    """Mark the core radii, label R and save a radial plot; returns its file name."""
    import matplotlib.pyplot as plt

    for c in (0.15, 0.2):
        ax.axvline(c, color="0.6", ls=":", lw=1)
    ax.set_xlabel("R / R500c")
    _save(fig, plot_dir / name)
    plt.close(fig)
    return name


def _plot_deepdream_profile(summary: dict, rc: np.ndarray, plot_dir: Path) -> str:
    import matplotlib.pyplot as plt

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
    ax.set_title(f"DeepDream ascent in {summary.get('deepdream_space', 'counts')} "
                 f"({summary['n_images']} test images)", fontsize=9)
    ax.legend(fontsize=8)
    return _finish_radial(fig, ax, plot_dir, "deepdream_profile.png")


def _plot_saliency_profile(summary: dict, rc: np.ndarray, plot_dir: Path) -> str:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    st = summary["saliency_profile"]
    m, lo, hi = _arr(st["median"]), _arr(st["p16"]), _arr(st["p84"])
    ax.plot(rc, m, "o-", color="C1", label="median, 16-84%")
    ax.fill_between(rc, lo, hi, color="C1", alpha=0.25)
    ax.set_ylabel("|d log10 M / d N| / image mean")
    ax.set_title("Saliency")
    ax.legend(fontsize=8)
    return _finish_radial(fig, ax, plot_dir, "saliency_profile.png")


def _cumulative_share(summary: dict, key: str) -> np.ndarray:
    """Share inside R at each ring's outer edge (0 at R = 0)."""
    return np.concatenate([[0.0], np.nancumsum(_arr(summary[key]["mean"]))])


def _plot_sensitivity_share(summary: dict, core: float, plot_dir: Path) -> str:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    ring_edges = _arr(summary["ring_edges_r500c"])
    ring_edges[~np.isfinite(ring_edges)] = max(2.0, np.nanmax(ring_edges[np.isfinite(ring_edges)]) * 1.3)
    ax.plot(ring_edges, _cumulative_share(summary, "ring_photon_share"), "o-", color="k", ms=3, label="photons")
    ax.plot(ring_edges, _cumulative_share(summary, "ring_sensitivity_share"), "s-", color="C2", ms=3,
            label="sensitivity (ring dimming)")
    if "ring_gradient_share" in summary:
        ax.plot(ring_edges, _cumulative_share(summary, "ring_gradient_share"), "^-", color="C0", ms=3,
                label="sensitivity (|grad x input|)")
    ratio = summary["core_sensitivity"]
    ax.set_title(f"Cumulative share; core ratio = {ratio if ratio is None else f'{ratio:.2f}'} "
                 f"({summary['core_sensitivity_method']}, R<{core:g} R500c)", fontsize=9)
    ax.set_ylabel("share inside R")
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize=8)
    return _finish_radial(fig, ax, plot_dir, "sensitivity_share.png")


def _plot_occlusion(summary: dict, plot_dir: Path) -> str:
    import matplotlib.pyplot as plt

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
    return "occlusion.png"


def _plot_example_change(example, plot_dir: Path) -> str:
    import matplotlib.pyplot as plt

    image_id, change = example
    fig, ax = plt.subplots(figsize=(4.2, 3.6))
    lim = float(np.max(np.abs(change))) or 1.0
    im = ax.imshow(change, origin="lower", cmap="RdBu_r", vmin=-lim, vmax=lim)
    fig.colorbar(im, ax=ax, label="photons added")
    ax.set_title(f"Change after ascent: {image_id}", fontsize=9)
    _save(fig, plot_dir / "deepdream_example.png", right=0.84)
    return "deepdream_example.png"


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

    out = {k: summary[k] for k in ("core_sensitivity", "core_sensitivity_method", "core_sensitivity_gradient",
                                   "core_radius_r500c", "core_sensitivity_detail", "n_images", "n_clusters",
                                   "folds", "has_gradient", "settings", "r_edges_r500c", "ring_edges_r500c",
                                   "deepdream_delta_log10m", "deepdream_space", "controls", "relative_to_null",
                                   "core_use_vs_null", "notes", "plots") if k in summary}
    if "deepdream" in summary:
        out["deepdream"] = {k: slim(v) for k, v in summary["deepdream"].items()}
        out["deepdream_variants"] = {
            name: {**{k: v[k] for k in ("space", "step_size", "n_iter", "delta_log10m")},
                   "profile": {it: slim(st) for it, st in v["profile"].items()}}
            for name, v in summary["deepdream_variants"].items()}
    for key in ("saliency_profile", "ring_sensitivity_share", "ring_photon_share", "ring_gradient_share"):
        if key in summary:
            out[key] = slim(summary[key])
    out["occlusion_delta_log10m"] = {k: {s: v[s] for s in ("mean", "std", "median")}
                                     for k, v in summary.get("occlusion_delta_log10m", {}).items()}
    outl = summary.get("outliers", [])
    out["outliers"] = [{k: o[k] for k in ("image_id", "fold", "peak_r500c", "centroid_r500c", "reasons")}
                       for o in outl[:max_outliers]]
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
