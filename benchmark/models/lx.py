"""Core-excised X-ray luminosity baselines: ``lx_iterative`` and ``lx_truth``.

The standard X-ray mass proxy the study compares against (Ntampaka et al. 2019, Sec. 5):
the luminosity inside the annulus 0.15-1 R500c (the core, which scatters most with mass,
is cut out), turned into a mass with a power law ``log10 M = a + b log10 L`` fitted on the
training folds.

Measurement, per image
----------------------
0. Point sources (population version 2 puts the cosmic X-ray background's point sources on
   the sky). ``point_sources`` = "detect" (default, both variants): a sliding-cell
   detection after CIAO's celldetect with wavdetect's 1e-6 false-positive threshold
   (:mod:`benchmark.models.lx_sky`); point-like detections outside the central 2.5 pixels
   are masked with a radius from the PSF (1.5 pixels for the mocks), and the masked pixels
   take the mean of the unmasked pixels of their one-pixel ring about the centre, so the
   apertures below and the outer-annulus background are measured on the masked image with
   the masked area corrected. Measured on synthetic clusters (5 counts/pixel background):
   no false positive in 200 clean clusters or 200 flat fields; recall 47% at 16 counts,
   74% at 20, 97% at 30, 100% from 50; on the version-1 ``quick`` images 0.15 compact
   substructure clumps per image are masked, changing L_X by -0.08% on average (largest
   -5%). "truth" (an optimistic bound for ``lx_truth``): the true point sources of the
   dataset's cluster files (``sources_dataset_dir``; :mod:`benchmark.dataset.sources`)
   with at least ``truth_min_counts`` expected counts, masked the same way. "none": as
   before version 2. Detections are cached per image (the folds share training images).
1. Annulus counts. Photon counts summed in 0.15-1 R500c around the image centre (pixel
   63.5, 63.5), from a cumulative radial profile that is linearly interpolated between
   pixel radii, so the counts are a continuous function of the aperture (the iterative
   variant then converges instead of hopping between pixel rings). Apertures that leave
   the 16.9 arcmin field are truncated at its edge.
2. Background, measured in an outer annulus (never assumed). The mean counts per pixel
   outside ``background_inner_r500c`` (1.5) R500c, and never fewer than the
   ``background_min_pixels`` (1,000) outermost pixels (the
   field corners for the largest clusters), scaled to the annulus area and subtracted.
   This is what an observer does with a local background; the expected particle
   background of the catalog is truth the model may not see. Net counts are floored at
   ``min_net_counts`` (1) so the logarithm stays finite for faint clusters.
3. Counts to luminosity. ``L = 4 pi D_L(z)^2 * ECF(z) * net / exposure``, where the
   energy conversion factor ECF is the energy flux in the observed band that corresponds
   to rest-frame 0.5-2 keV per count detected in the observed 0.5-7 keV band, computed
   with the real Chandra ACIS-I aimpoint ARF (in ``settings.current().responses_dir``:
   ``$CLUSTERMASS_RESPONSES`` or ``../shared/data/chandra``) for a bremsstrahlung photon spectrum ``exp(-E/kT)/E`` at
   a fixed ``kt_kev`` = 5 keV (Gaunt factor and lines neglected; absorption neglected).
   Without the ARF file a fixed, documented ECF (:data:`FALLBACK_ECF`) is used and
   recorded. Any constant error in the ECF only shifts the fitted intercept ``a``; the
   ECF matters through its (weak) redshift and temperature dependence.
4. Power law. Ordinary least squares of log10 M500c on log10 L over the *training*
   images only (the validation fold is not needed: there is nothing to early-stop).
5. Uncertainty. :meth:`LXModel.predict_sigma` gives every prediction a Gaussian sigma:
   the standard deviation of the power law's training residuals (the uncertainty track).

R500c
-----
* ``lx_iterative`` (what an observer can do): the relation is calibrated on training
  clusters with apertures from their known masses (R500c from M500c and rho_crit(z)); a
  test image starts from the training mean mass and iterates
  ``M -> R500c(M, z) -> L(0.15-1 R500c) -> M`` until the mass changes by less than
  ``tolerance_dex`` (the map contracts: d log M_out / d log M_in = b * dlnL/dlnR / 3,
  about 0.1). R500c in pixels uses the redshift and ``pixel_arcsec`` of the aux table.
* ``lx_truth`` (an optimistic bound): R500c from the catalog's true ``r500c_arcmin``, a
  truth column the model declares (``truth_columns``); the harness records it in the
  entry's metadata.

Cosmology: :data:`benchmark.core.cosmology.COSMOLOGY` (flat LCDM, Planck 2015 as
IllustrisTNG: H0 = 67.74, Omega_m = 0.3089), the one the mocks were made with.
"""
from __future__ import annotations

import copy
import dataclasses

import hashlib
import json
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from benchmark.core import settings
from benchmark.core.cosmology import (COSMOLOGY, KEV_TO_ERG, kpc_per_arcsec,
                                      luminosity_distance_cm, r500c_kpc)
from benchmark.core.errors import ClusterMassError
from benchmark.models import lx_sky, read_params, write_params

__all__ = ["DEFAULT_CONFIG", "LXModel", "make_model", "load_model", "r500c_kpc_from_mass",
           "band_conversion_factor", "RadialProfiles"]

DEFAULT_CONFIG: dict = {
    "r500c_source": "iterative",  # "iterative" | "truth"
    "inner_fraction": 0.15,  # core excision radius / R500c (the study's annulus)
    "outer_fraction": 1.0,
    "background": "outer",  # "outer" (local background) | "none"
    "background_inner_r500c": 1.5,
    "background_min_pixels": 1000,
    "min_net_counts": 1.0,
    "kt_kev": 5.0,
    "band_kev": [0.5, 7.0],  # observed band of the images
    "lx_band_kev": [0.5, 2.0],  # rest-frame band of the luminosity (as the catalog's L_X)
    "exposure_ks": None,  # None: the dataset card's exposure (harness passes config["image"])
    "max_iterations": 100,
    "tolerance_dex": 1e-5,
    # Point sources (population version 2's sky; :mod:`benchmark.models.lx_sky`):
    # "detect" (found on the image and masked), "truth" (the true source list of the
    # dataset, read from ``sources_dataset_dir``) or "none".
    "point_sources": "detect",
    "detection": {},  # overrides of lx_sky.DETECTION_DEFAULTS
    "sources_dataset_dir": None,  # dataset whose cluster files hold the true source lists
    "truth_min_counts": 1.0,  # true sources with fewer expected counts are left unmasked
}

#: ECF (erg cm^-2 per count) used when the ARF cannot be read: the value this module
#: computes with the Cycle-0 ACIS-I aimpoint ARF for kT = 5 keV at z = 0.17.
FALLBACK_ECF = 2.96e-12

ARF_NAME = "acisi_aimpt_cy0.arf"
PARAMS_FILE = "lx_params.json"
POINT_SOURCE_MODES = ("detect", "truth", "none")
TRUTH_R500C_COLUMN = "r500c_arcmin"


# ----------------------------------------------------------------------------- cosmology

def _cosmology_record() -> dict:
    # The record's shape is that of the fitted files already written (no Ob0: it does not
    # enter the distances).
    return {"name": type(COSMOLOGY).__name__, "H0": float(COSMOLOGY.H0.value),
            "Om0": float(COSMOLOGY.Om0)}


def r500c_kpc_from_mass(log10_m500c, redshift) -> np.ndarray:
    """R500c in kpc from log10 M500c (Msun): M = 4/3 pi 500 rho_crit(z) R^3."""
    return r500c_kpc(10.0 ** np.asarray(log10_m500c, float), np.asarray(redshift, float))


# ----------------------------------------------------------------------------- counts -> flux

def _arf_path() -> Path:
    return settings.current().responses_dir / ARF_NAME


@lru_cache(maxsize=4)
def _arf(path: str):
    from astropy.io import fits

    with fits.open(path) as hdul:
        data = hdul["SPECRESP"].data
        e_mid = 0.5 * (np.asarray(data["ENERG_LO"], float) + np.asarray(data["ENERG_HI"], float))
        return e_mid, np.asarray(data["SPECRESP"], float)


def band_conversion_factor(redshift, kt_kev=5.0, band_kev=(0.5, 7.0), lx_band_kev=(0.5, 2.0)):
    """Energy conversion factor: rest-band energy flux per detected count.

    Parameters
    ----------
    redshift : array
    kt_kev : float
        Plasma temperature of the bremsstrahlung photon spectrum exp(-E/kT)/E.
    band_kev : (float, float)
        Observed band of the images.
    lx_band_kev : (float, float)
        Rest-frame band of the luminosity.

    Returns
    -------
    ecf_erg_cm2 : ndarray
        erg cm^-2 per count, one per redshift.
    source : str
        ``"arf:<path>"`` or ``"fallback"`` (no ARF file: :data:`FALLBACK_ECF`).
    """
    z = np.atleast_1d(np.asarray(redshift, float))
    path = _arf_path()
    if not path.is_file():
        return np.full(z.shape, FALLBACK_ECF), "fallback"
    e_arf, area = _arf(str(path))
    energy = np.linspace(0.05, 12.0, 6000)
    area_cm2 = np.interp(energy, e_arf, area, left=0.0, right=0.0)
    out = np.empty(z.shape)
    for i, zi in enumerate(z):
        e_rest = energy * (1.0 + zi)
        photons = np.exp(-e_rest / kt_kev) / e_rest  # observed photon spectrum, any normalisation
        in_band = (energy >= band_kev[0]) & (energy <= band_kev[1])
        rate = np.trapezoid(np.where(in_band, area_cm2 * photons, 0.0), energy)
        lo, hi = lx_band_kev[0] / (1.0 + zi), lx_band_kev[1] / (1.0 + zi)
        in_lx = (energy >= lo) & (energy <= hi)
        flux_kev = np.trapezoid(np.where(in_lx, energy * photons, 0.0), energy)
        out[i] = flux_kev * KEV_TO_ERG / rate
    return out, f"arf:{path}"


# ----------------------------------------------------------------------------- apertures

class RadialProfiles:
    """Counts within any radius of the image centre, continuous in the radius.

    Parameters
    ----------
    images : array (N, npix, npix)
        Photon counts.

    Notes
    -----
    Pixels are sorted by the distance of their centre from the image centre
    ((npix - 1) / 2 in 0-based pixel coordinates); the enclosed counts are the cumulative
    sum at each distinct radius, linearly interpolated in between (from 0 at r = 0).
    """

    def __init__(self, images):
        images = np.asarray(images, dtype=np.float64)
        if images.ndim != 3 or images.shape[1] != images.shape[2]:
            raise ClusterMassError(f"images have shape {images.shape}: expected (N, npix, npix).")
        self.radii, self.group_end, self.order = _radius_grid(images.shape[1])
        flat = images.reshape(len(images), -1)[:, self.order]
        cum = np.cumsum(flat, axis=1)[:, self.group_end]
        self.cum = np.concatenate([np.zeros((len(images), 1)), cum], axis=1)
        self.area = np.concatenate([[0.0], (self.group_end + 1).astype(float)])
        self.r = np.concatenate([[0.0], self.radii])
        self.total = self.cum[:, -1]
        self.n_pixels = float(images.shape[1] * images.shape[2])

    def _interp(self, table, radius_pix):
        radius = np.clip(np.asarray(radius_pix, float), 0.0, self.r[-1])
        j = np.clip(np.searchsorted(self.r, radius, side="right"), 1, len(self.r) - 1)
        r0, r1 = self.r[j - 1], self.r[j]
        w = (radius - r0) / (r1 - r0)
        if table.ndim == 1:
            return table[j - 1] * (1 - w) + table[j] * w
        rows = np.arange(table.shape[0])
        return table[rows, j - 1] * (1 - w) + table[rows, j] * w

    def counts_within(self, radius_pix) -> np.ndarray:
        """Counts inside ``radius_pix`` (array (N,)), interpolated."""
        return self._interp(self.cum, radius_pix)

    def area_within(self, radius_pix) -> np.ndarray:
        """Pixels inside ``radius_pix`` (same interpolation as the counts)."""
        return self._interp(self.area, radius_pix)

    def radius_with_outer_pixels(self, n_pixels: int) -> float:
        """Largest radius that leaves at least ``n_pixels`` pixels outside it."""
        keep = self.n_pixels - self.area <= n_pixels
        below = np.nonzero(~keep)[0]
        return float(self.r[below[-1]]) if len(below) else 0.0


@lru_cache(maxsize=4)
def _radius_grid(npix: int):
    centre = (npix - 1) / 2.0
    yy, xx = np.indices((npix, npix), dtype=float)
    r = np.hypot(yy - centre, xx - centre).ravel()
    order = np.argsort(r, kind="stable")
    r_sorted = r[order]
    # Last index of each group of equal radii: the cumulative sum there includes the ring.
    is_end = np.append(np.diff(r_sorted) > 1e-9, True)
    group_end = np.nonzero(is_end)[0]
    return r_sorted[group_end], group_end, order


# ----------------------------------------------------------------------------- point sources

#: Detections per image, keyed by the image's bytes and the detection settings: the
#: harness shows the same training images to every fold, and detection is the slow part.
_DETECTION_CACHE: dict = {}
_DETECTION_CACHE_MAX = 200_000


def detected_sources(images, detection: dict | None = None) -> pd.DataFrame:
    """:func:`lx_sky.detect_point_sources` on every image, cached image by image.

    Returns the detection table without its ``image`` column, then ``image`` (the index in
    ``images``) as the last column. Each image's rows are cached as column arrays, so a
    warm call only hashes the images and concatenates arrays.
    """
    images = np.asarray(images)
    key_cfg = json.dumps(detection or {}, sort_keys=True, default=str)
    keys = [(hashlib.sha1(np.ascontiguousarray(img, dtype=np.float32).tobytes()).hexdigest(),
             key_cfg) for img in images]
    todo = [i for i, key in enumerate(keys) if key not in _DETECTION_CACHE]
    fresh: dict = {}
    if todo:
        found = lx_sky.detect_point_sources(images[todo], detection)
        columns = [c for c in found.columns if c != "image"]
        # rows come image by image: split the table at the image boundaries
        bounds = np.searchsorted(found["image"].to_numpy(np.int64), np.arange(len(todo) + 1))
        arrays = {c: found[c].to_numpy() for c in columns}
        fresh = {keys[i]: {c: a[bounds[j]:bounds[j + 1]] for c, a in arrays.items()}
                 for j, i in enumerate(todo)}
    rows = [fresh[key] if key in fresh else _DETECTION_CACHE[key] for key in keys]
    if len(_DETECTION_CACHE) + len(fresh) > _DETECTION_CACHE_MAX:
        _DETECTION_CACHE.clear()
    _DETECTION_CACHE.update(fresh)
    lengths = np.array([len(next(iter(r.values()), ())) for r in rows], dtype=np.int64)
    if not lengths.sum():
        return lx_sky.empty_catalogue()
    filled = [r for r, n in zip(rows, lengths) if n]
    table = {c: np.concatenate([r[c] for r in filled]) for c in filled[0]}
    table["image"] = np.repeat(np.arange(len(images), dtype=np.int64), lengths)
    return pd.DataFrame(table)


@lru_cache(maxsize=2)
def true_sources_table(dataset_dir: str) -> pd.DataFrame:
    """Every view's true source list of a dataset (:func:`benchmark.dataset.sources.read_sources`;
    empty for population version 1)."""
    from benchmark.dataset.sources import read_sources

    return read_sources(Path(dataset_dir))


def is_point_kind(kind):
    """Whether a true source of this kind (a value or an array of them) is masked with the
    PSF radius: the point sources.

    Line-of-sight haloes (``"halo"``) are extended: an observer cannot mask them with a
    PSF-sized region either, so the truth variant leaves them, as detection does.
    """
    return np.asarray(kind).astype(str) == "point"


@dataclasses.dataclass(frozen=True)
class _SourcesByImage:
    """The maskable true sources of a dataset grouped by image id, for fast lookups."""

    image_ids: pd.Index  # unique, sorted
    starts: np.ndarray  # first row of each image id in x_pix / y_pix
    counts: np.ndarray
    x_pix: np.ndarray
    y_pix: np.ndarray

    def of(self, image_ids) -> pd.DataFrame:
        """A detection-like table (image, x_pix, y_pix) of the images ``image_ids`` (an id
        that appears several times gets its sources at every position), rows image by
        image, each image's sources in the dataset's order."""
        if not len(self.counts):  # population version 1: no sources anywhere
            return pd.DataFrame({"image": np.zeros(0, np.int64), "x_pix": np.zeros(0),
                                 "y_pix": np.zeros(0)})
        where = self.image_ids.get_indexer(np.asarray(image_ids).astype(str))
        counts = np.where(where >= 0, self.counts[where], 0)
        image = np.repeat(np.arange(len(where), dtype=np.int64), counts)
        first = np.repeat(self.starts[where] - (np.cumsum(counts) - counts), counts)
        rows = first + np.arange(len(image), dtype=np.int64)
        return pd.DataFrame({"image": image, "x_pix": self.x_pix[rows],
                             "y_pix": self.y_pix[rows]})


@lru_cache(maxsize=4)
def _maskable_sources(dataset_dir: str, min_counts: float) -> _SourcesByImage:
    """The point sources with at least ``min_counts`` expected counts, grouped by image:
    read and grouped once per dataset, where a pandas merge per call on the ~3 million
    sources of a `fast` dataset took seconds per fold."""
    table = true_sources_table(dataset_dir)
    keep = ((table["expected_counts"].to_numpy(float) >= min_counts)
            & is_point_kind(table["kind"].to_numpy()))
    ids = table["image_id"].to_numpy()[keep].astype(str)
    order = np.argsort(ids, kind="stable")
    unique, starts, counts = np.unique(ids[order], return_index=True, return_counts=True)
    return _SourcesByImage(pd.Index(unique), starts, counts,
                           table["x_pix"].to_numpy(float)[keep][order],
                           table["y_pix"].to_numpy(float)[keep][order])


# ----------------------------------------------------------------------------- the model

class LXModel:
    """Core-excised L_X with a power-law mass relation (see the module docstring).

    Attributes
    ----------
    truth_columns : tuple of str
        Catalog truth columns the model reads: ``("r500c_arcmin",)`` for ``lx_truth``.
    params : dict
        Fitted ``a``, ``b`` and everything needed to predict (JSON-ready).
    last_iterations : ndarray or None
        Iterations each image of the last iterative prediction needed.
    """

    def __init__(self, config: dict | None = None):
        cfg = dict(DEFAULT_CONFIG)
        cfg.update({k: v for k, v in (config or {}).items() if k in DEFAULT_CONFIG or k == "image"})
        if cfg["r500c_source"] not in ("iterative", "truth"):
            raise ClusterMassError(
                f"r500c_source = {cfg['r500c_source']!r}: use 'iterative' or 'truth'."
            )
        if cfg["point_sources"] not in POINT_SOURCE_MODES:
            raise ClusterMassError(f"point_sources = {cfg['point_sources']!r}: use one of "
                                   f"{', '.join(POINT_SOURCE_MODES)}.")
        if cfg["point_sources"] == "truth" and not cfg["sources_dataset_dir"]:
            raise ClusterMassError("point_sources = 'truth' needs sources_dataset_dir (the "
                                   "dataset whose cluster files hold the true source lists); "
                                   "or use 'detect'.")
        if cfg["background"] not in ("outer", "none"):
            raise ClusterMassError(f"background = {cfg['background']!r}: use 'outer' or 'none'.")
        if cfg["exposure_ks"] is None:
            cfg["exposure_ks"] = float((cfg.get("image") or {}).get("exposure_ks", 100.0))
        cfg.pop("image", None)
        self.config = cfg
        self.truth_columns = (TRUTH_R500C_COLUMN,) if cfg["r500c_source"] == "truth" else ()
        self.params: dict | None = None
        self.last_iterations = None
        self.last_masked_per_image = 0.0

    # -- measurement ---------------------------------------------------------------------
    def luminosity(self, profiles: RadialProfiles, r500c_pix, redshift) -> np.ndarray:
        """Core-excised, background-subtracted luminosity (erg/s) for given R500c in pixels."""
        cfg = self.config
        r_in = cfg["inner_fraction"] * np.asarray(r500c_pix, float)
        r_out = cfg["outer_fraction"] * np.asarray(r500c_pix, float)
        counts = profiles.counts_within(r_out) - profiles.counts_within(r_in)
        if cfg["background"] == "outer":
            area = profiles.area_within(r_out) - profiles.area_within(r_in)
            r_bkg = np.minimum(cfg["background_inner_r500c"] * np.asarray(r500c_pix, float),
                               profiles.radius_with_outer_pixels(int(cfg["background_min_pixels"])))
            bkg_pix = profiles.n_pixels - profiles.area_within(r_bkg)
            bkg_rate = (profiles.total - profiles.counts_within(r_bkg)) / np.maximum(bkg_pix, 1.0)
            counts = counts - bkg_rate * area
        net = np.maximum(counts, float(cfg["min_net_counts"]))
        ecf = self._ecf(redshift)
        d_l = luminosity_distance_cm(redshift)
        return 4.0 * np.pi * d_l**2 * ecf * net / (float(cfg["exposure_ks"]) * 1e3)

    def masked_profiles(self, data) -> RadialProfiles:
        """Radial profiles of the images with their point sources masked and filled.

        ``point_sources`` = "detect": sources found by :func:`lx_sky.detect_point_sources`;
        "truth": the true source list of ``sources_dataset_dir`` (those with at least
        ``truth_min_counts`` expected counts); "none": the images as they are. Masked
        pixels take the mean of the unmasked pixels of their ring about the centre
        (:func:`lx_sky.fill_masked`), so apertures and the outer-annulus background are
        measured on the masked image with the masked area corrected.
        """
        images = np.asarray(data.images)
        mode = self.config["point_sources"]
        if mode == "none":
            self.last_masked_per_image = 0.0
            return RadialProfiles(images)
        pixel_arcsec = np.asarray(data.aux["pixel_arcsec"], float)
        if mode == "detect":
            sources = detected_sources(images, self.config["detection"])
        else:
            sources = self._true_sources(data.aux)
        masks = lx_sky.masks_from_sources(sources, len(images), images.shape[-1], pixel_arcsec,
                                          self.config["detection"])
        n_masked = int(lx_sky.maskable(sources).sum()) if len(sources) else 0
        self.last_masked_per_image = n_masked / max(len(images), 1)
        return RadialProfiles(lx_sky.fill_masked(images, masks))

    def for_dataset(self, root) -> "LXModel":
        """This fitted model reading the true source lists of the dataset at ``root``: the
        harness rebinds a truth variant to each extra test set it predicts, whose images
        reuse the parent's image ids but not its sources."""
        if self.config["point_sources"] != "truth":
            return self
        bound = copy.copy(self)
        bound.config = {**self.config, "sources_dataset_dir": str(root)}
        return bound

    def _true_sources(self, aux) -> pd.DataFrame:
        """True point sources of the images of ``aux`` as a detection-like table; an image id
        that appears several times (the diagnostics' variants of one image) gets its sources
        at every position."""
        sources = _maskable_sources(str(self.config["sources_dataset_dir"]),
                                    float(self.config["truth_min_counts"]))
        return sources.of(aux["image_id"])

    def _ecf(self, redshift) -> np.ndarray:
        z = np.asarray(redshift, float)
        unique, inverse = np.unique(np.round(z, 6), return_inverse=True)
        ecf, source = band_conversion_factor(unique, self.config["kt_kev"],
                                             tuple(self.config["band_kev"]),
                                             tuple(self.config["lx_band_kev"]))
        self._ecf_source = source
        return ecf[inverse.ravel()]

    @staticmethod
    def r500c_pixels(log10_m500c, redshift, pixel_arcsec) -> np.ndarray:
        """R500c in pixels from a mass, the redshift and the pixel scale."""
        r_kpc = r500c_kpc_from_mass(log10_m500c, redshift)
        return r_kpc / kpc_per_arcsec(redshift) / np.asarray(pixel_arcsec, float)

    def _truth_r500c_pixels(self, aux) -> np.ndarray:
        if TRUTH_R500C_COLUMN not in aux:
            raise ClusterMassError(
                "lx_truth needs the truth column 'r500c_arcmin' in aux: run it through the "
                "harness, which passes the truth columns a model declares."
            )
        return np.asarray(aux[TRUTH_R500C_COLUMN], float) * 60.0 / np.asarray(aux["pixel_arcsec"], float)

    # -- protocol ------------------------------------------------------------------------
    def fit(self, train, val=None) -> "LXModel":
        """Fit log10 M = a + b log10 L on the training images (``val`` is not used)."""
        if train.y is None:
            raise ClusterMassError("fit needs the training targets (y).")
        y = np.asarray(train.y, float)
        z = np.asarray(train.aux["redshift"], float)
        if self.config["r500c_source"] == "truth":
            r_pix = self._truth_r500c_pixels(train.aux)
        else:
            # Calibration clusters have known masses: their apertures come from those masses.
            r_pix = self.r500c_pixels(y, z, train.aux["pixel_arcsec"])
        log_l = np.log10(self.luminosity(self.masked_profiles(train), r_pix, z))
        b, a = np.polyfit(log_l, y, 1)
        resid = y - (a + b * log_l)
        self.params = {
            "a": float(a), "b": float(b),
            "scatter_train_dex": float(resid.std()),
            "n_train": int(len(y)),
            "y_mean_train": float(y.mean()),
            "config": self.config,
            "cosmology": _cosmology_record(),
            "ecf_source": getattr(self, "_ecf_source", None),
            "truth_columns": list(self.truth_columns),
            "masked_sources_per_image_train": self.last_masked_per_image,
        }
        return self

    def predict(self, data) -> np.ndarray:
        """log10 M500c for a FoldData (aux: redshift, pixel_arcsec; r500c_arcmin for truth)."""
        if self.params is None:
            raise ClusterMassError("the L_X model is not fitted: call fit() or load_model(dir).")
        a, b = self.params["a"], self.params["b"]
        z = np.asarray(data.aux["redshift"], float)
        profiles = self.masked_profiles(data)
        if self.config["r500c_source"] == "truth":
            return a + b * np.log10(self.luminosity(profiles, self._truth_r500c_pixels(data.aux), z))
        return self.iterate(profiles, z, np.asarray(data.aux["pixel_arcsec"], float))

    def predict_sigma(self, data) -> np.ndarray:
        """Gaussian sigma (dex) of each prediction: the power law's residual scatter on the
        training images (``scatter_train_dex``), the same for every image.

        In-sample and, for ``lx_iterative``, measured with apertures from the true masses,
        so it is a lower bound on the scatter of out-of-fold predictions; the uncertainty
        track's coverage shows by how much.
        """
        if self.params is None:
            raise ClusterMassError("the L_X model is not fitted: call fit() or load_model(dir).")
        return np.full(len(data.images), float(self.params["scatter_train_dex"]))

    def iterate(self, profiles: RadialProfiles, redshift, pixel_arcsec) -> np.ndarray:
        """Solve M = f(L(0.15-1 R500c(M))) by fixed-point iteration, image by image."""
        a, b = self.params["a"], self.params["b"]
        log_m = np.full(len(redshift), self.params["y_mean_train"])
        iterations = np.zeros(len(redshift), dtype=int)
        active = np.ones(len(redshift), dtype=bool)
        for _ in range(int(self.config["max_iterations"])):
            r_pix = self.r500c_pixels(log_m, redshift, pixel_arcsec)
            new = a + b * np.log10(self.luminosity(profiles, r_pix, redshift))
            change = np.abs(new - log_m)
            log_m = np.where(active, new, log_m)
            iterations += active
            active &= change >= float(self.config["tolerance_dex"])
            if not active.any():
                break
        self.last_iterations = iterations
        self.converged = ~active
        return log_m

    def save(self, directory) -> None:
        """Write lx_params.json into ``directory``."""
        if self.params is None:
            raise ClusterMassError("the L_X model is not fitted: nothing to save.")
        write_params(directory, PARAMS_FILE, self.params)


def make_model(config: dict | None = None) -> LXModel:
    """An L_X model; ``config["r500c_source"]`` picks the variant (iterative | truth)."""
    return LXModel(config)


def load_model(directory) -> LXModel:
    """Load a model written by :meth:`LXModel.save`."""
    params = read_params(directory, PARAMS_FILE, "L_X")
    # fits written before point-source masking existed were made on the images as they are
    model = LXModel({"point_sources": "none", **params["config"]})
    model.params = params
    return model
