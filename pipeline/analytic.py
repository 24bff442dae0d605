"""Fast analytic renderer: projected emission measure -> expected counts -> Poisson image.

The same 3D gas model as the pyXSIM/SOXS chain (:mod:`pipeline.chain`), rendered without
photons: every cell's emission measure EM = n_e n_H V times a band count-rate coefficient
C(kT, Z) [counts s^-1 per unit EM], projected along x, y or z onto the image pixels, plus
the expected particle background, then Poisson-sampled.

C(kT, Z) = [c(kT) + Z m(kT)] with (flux convention as SOXS/pyXSIM, D_A angular-diameter
distance, z the view's redshift)::

    c(kT) = 1 / (4 pi D_A^2 (1+z)^3) * sum_bins N_rest(kT; E_obs (1+z)) A(E_obs) P_band(E_obs) exp(-nH sigma_wabs(E_obs))

N_rest is the rest-frame photon emissivity per unit EM (:func:`pipeline.emission.spectrum`,
or real AtomDB tables through SOXS when :func:`pipeline.emission.resolve_apec` points at
them) integrated over each observed bin mapped to the rest frame (exact for lines: a
cumulative rest-frame table on a 4 eV grid is differenced at the redshifted bin edges);
A is the ARF interpolated as SOXS does, P_band the probability that SOXS reports the
event (RMF channel, energy uniform within the channel) inside the band, and wabs the
Morrison & McCammon (1983) absorption SOXS implements. C is tabulated on 120 log-spaced
temperatures (0.08-64 keV) and interpolated linearly in log kT; it is linear in Z.

Not modelled (all below 1% of the counts for this set-up): the 0.5 arcsec PSF (pixels are
7.9 arcsec) for the cluster, dither, line-of-sight velocities.

The sky of population version 2 (:mod:`pipeline.sky`: point sources, line-of-sight haloes,
the unresolved CXB and Galactic foreground) is added by the caller
(:func:`pipeline.generate.render_images`): ``SkyModel.expected_image()`` (point sources
through the Gaussian PSF integrated over pixels, haloes' beta models integrated over pixels)
plus ``SkyModel.diffuse_counts_per_pixel`` join the expected counts before the Poisson draw.
The spectra it folds use :func:`observed_energy_edges`, :func:`response_on_grid` and
:func:`thermal_spectrum_per_em`, the same grid, responses and emission fold as here. The image is indexed like
:func:`pipeline.gas.luminosity_map`: projecting along x gives ``[iy, iz]``, along y
``[ix, iz]``, along z ``[ix, iy]``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from benchmark.core.cosmology import angular_diameter_distance_kpc, kpc_per_arcsec
from benchmark.core.errors import ClusterMassError
from benchmark.core.io import atomic_path

__all__ = [
    "RateTable",
    "rate_table",
    "count_rate_cube",
    "expected_counts",
    "background_counts_per_pixel",
    "render",
    "render_views",
    "observed_energy_edges",
    "response_on_grid",
    "thermal_spectrum_per_em",
]

_AXES = {"x": 0, "y": 1, "z": 2}
_KPC_CM = 3.0856775814913673e21
_MP_G = 1.67262192e-24
_X_H_DEFAULT = 0.76  # as pipeline.gas (primordial H mass fraction of a fully ionised H+He plasma)

# Rest-frame tabulation grid (see module docstring).
_LOG_KT = np.linspace(np.log10(0.08), np.log10(64.0), 120)
_REST_E = (0.05, 16.0, 0.004)  # keV: min, max, step of the cumulative rest-frame spectrum
_OBS_E = (0.1, 12.0, 0.004)  # keV: observed photon-energy grid of the response fold


def _grid(spec):
    lo, hi, step = spec
    n = int(round((hi - lo) / step))
    return np.linspace(lo, lo + n * step, n + 1)


# ----------------------------------------------------------------------------------
# Rest-frame cumulative spectra (cached in memory and on disk)
# ----------------------------------------------------------------------------------
def _rest_cache_path(key: str) -> Path:
    from pipeline.emission import default_table_dir

    return default_table_dir() / f"analytic_rest_{key}.npz"


@lru_cache(maxsize=2)
def _rest_cumulative(apec_root: str | None, apec_version: str | None, apec_sha: str | None):
    """Cumulative photon emissivity N(<E) per unit EM, (cosmic, metal) x (nkT, nE+1)."""
    from pipeline import emission

    edges = _grid(_REST_E)
    h = hashlib.sha256(repr((_LOG_KT.tolist(), _REST_E, emission._GENERATOR_REVISION,
                             apec_version, apec_sha)).encode()).hexdigest()[:16]
    path = _rest_cache_path(h)
    if path.is_file():
        try:
            with np.load(path) as f:
                return f["edges"], f["cosmic"], f["metal"]
        except (OSError, ValueError, KeyError):
            pass  # corrupt or partial cache: rebuild
    kts = 10.0 ** _LOG_KT
    if apec_root is None:
        parts = [emission.spectrum_components(float(t), edges) for t in kts]
        cosmic = np.array([p[0] for p in parts])
        metal = np.array([p[1] for p in parts])
    else:
        cosmic, metal = _atomdb_rest_spectra(apec_root, apec_version, edges, kts)
    zero = np.zeros((kts.size, 1))
    cosmic = np.concatenate([zero, np.cumsum(cosmic, axis=1)], axis=1)
    metal = np.concatenate([zero, np.cumsum(metal, axis=1)], axis=1)
    try:
        # an open file, because np.savez appends ".npz" to a temporary name that lacks it
        with atomic_path(path) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, edges=edges, cosmic=cosmic, metal=metal)
    except OSError:
        pass  # read-only build dir: keep the in-memory table
    return edges, cosmic, metal


def _atomdb_rest_spectra(root, version, edges, kts):
    """Rest-frame spectra from APEC-format tables through SOXS (used for real AtomDB)."""
    from soxs.spectra.thermal_spectra import CIEGenerator

    gen = CIEGenerator("apec", edges[0], edges[-1], edges.size - 1, model_root=root, model_vers=version)
    idx = np.arange(gen.Tvals.size)
    c_tab, m_tab, _ = gen._get_table(list(idx), 0.0, 0.0)
    # linear interpolation in kT as SOXS/pyXSIM do; zero outside the table
    def interp(tab):
        out = np.zeros((kts.size, tab.shape[1]))
        for k, t in enumerate(kts):
            i = np.searchsorted(gen.Tvals, t) - 1
            if 0 <= i < gen.Tvals.size - 1:
                f = (t - gen.Tvals[i]) / (gen.Tvals[i + 1] - gen.Tvals[i])
                out[k] = tab[i] * (1 - f) + tab[i + 1] * f
        return out

    return interp(c_tab), interp(m_tab)


# ----------------------------------------------------------------------------------
# Count-rate table for one observation set-up
# ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class RateTable:
    """Band count rate per unit emission measure, C(kT, Z) = cosmic + Z * metal.

    Attributes
    ----------
    log10_kt_kev : np.ndarray
        Temperature grid.
    cosmic, metal : np.ndarray
        counts s^-1 per unit EM (n_e n_H V in cm^-3) at the observer, same length.
    redshift, nH_1e22, band_kev : float, float, tuple
        The set-up.
    """

    log10_kt_kev: np.ndarray
    cosmic: np.ndarray
    metal: np.ndarray
    redshift: float
    nH_1e22: float
    band_kev: tuple

    def __call__(self, kt_kev, Z_solar):
        """C(kT, Z) in counts s^-1 per unit EM (float64)."""
        lt = np.log10(np.maximum(np.asarray(kt_kev, dtype=np.float64), 1e-6))
        c = np.interp(lt, self.log10_kt_kev, self.cosmic, left=0.0)
        m = np.interp(lt, self.log10_kt_kev, self.metal, left=0.0)
        return c + np.asarray(Z_solar, dtype=np.float64) * m

    def scaled(self, kt_kev, Z_solar) -> tuple[np.ndarray, float]:
        """Fast float32 evaluation on big arrays: returns (C / ref, ref) with C(kT, Z) =
        ref * result (C itself, ~1e-68, would underflow float32). Linear in log kT on the
        uniform grid (index arithmetic, ~2x faster than np.interp); zero below the grid,
        constant above it."""
        ref = float(np.max(self.cosmic))
        lg = self.log10_kt_kev
        x = np.log10(np.maximum(np.asarray(kt_kev, dtype=np.float32), np.float32(1e-6)))
        below = x < np.float32(lg[0])
        x -= np.float32(lg[0])
        x *= np.float32((lg.size - 1) / (lg[-1] - lg[0]))
        np.clip(x, 0.0, np.float32(lg.size - 1) * np.float32(1 - 1e-6), out=x)
        i = x.astype(np.int32)
        x -= i  # fractional position within the cell
        c_tab = (self.cosmic / ref).astype(np.float32)
        m_tab = (self.metal / ref).astype(np.float32)
        c = c_tab[i] + x * np.diff(c_tab)[np.minimum(i, lg.size - 2)]
        m = m_tab[i] + x * np.diff(m_tab)[np.minimum(i, lg.size - 2)]
        m *= np.asarray(Z_solar, dtype=np.float32)
        c += m
        if below.any():
            c[below] = 0.0
        return c, ref


def _response_on_grid(band_kev, nH_1e22, responses):
    """A(E) * P_band(E) * wabs(E) on the observed grid midpoints (cm^2)."""
    from soxs.spectra.foreground_absorption import get_wabs_absorb

    from pipeline import instrument

    edges = _grid(_OBS_E)
    mid = 0.5 * (edges[1:] + edges[:-1])
    a_lo, a_hi, area = instrument.load_arf(responses)
    eff = np.interp(mid, 0.5 * (a_lo + a_hi), area, left=0.0, right=0.0)  # as soxs.interpolate_area
    r_lo, r_hi, p_band = instrument.band_response(band_kev, responses)
    k = np.searchsorted(r_lo, mid, side="right") - 1
    inside = (k >= 0) & (mid < r_hi[np.clip(k, 0, None)])
    band = np.where(inside, p_band[np.clip(k, 0, p_band.size - 1)], 0.0)
    absorb = get_wabs_absorb(mid, nH_1e22) if nH_1e22 > 0 else np.ones_like(mid)
    return edges, eff * band * absorb


def observed_energy_edges() -> np.ndarray:
    """Edges (keV) of the observed photon-energy grid every response fold here uses (0.1-12 keV,
    4 eV bins); the sky model (:mod:`pipeline.sky`) writes its spectra on it."""
    return _grid(_OBS_E)


def response_on_grid(obs, responses=None, absorbed: bool = True) -> np.ndarray:
    """Detected band counts per photon cm^-2 at each bin of :func:`observed_energy_edges`:
    A(E) P_band(E), times the Galactic wabs transmission of ``obs.nH_1e22`` when ``absorbed``
    (cm^2, float64)."""
    nh = float(obs.nH_1e22) if absorbed else 0.0
    return _response_cached(tuple(float(b) for b in obs.band_kev), nh,
                            None if responses is None else str(responses))


@lru_cache(maxsize=16)
def _response_cached(band_kev, nH_1e22, responses):
    _, resp = _response_on_grid(band_kev, nH_1e22, responses)
    resp.flags.writeable = False
    return resp


def _thermal_rows(redshift, rows, apec_key):
    """Observed photon spectra per unit EM of the kT rows ``rows`` (cosmic, metal)."""
    edges_r, cum_c, cum_m = _rest_cumulative(*apec_key)
    rest_edges = observed_energy_edges() * (1.0 + redshift)
    # Haloes up to z ~ 3.4 (the SOXS light cone) push the top of the observed grid past the
    # 16 keV rest-frame table: those bins get nothing (e^(-16 keV / kT) for groups of a few keV).
    pos = np.clip((rest_edges - edges_r[0]) / (edges_r[1] - edges_r[0]), 0.0, edges_r.size - 1.0)
    i0 = np.clip(np.floor(pos).astype(int), 0, edges_r.size - 2)
    f = pos - i0
    d_a_cm = float(angular_diameter_distance_kpc(redshift)) * _KPC_CM
    geom = 1.0 / (4.0 * np.pi * d_a_cm**2 * (1.0 + redshift) ** 3)
    return [np.diff(cum[rows][:, i0] * (1.0 - f) + cum[rows][:, i0 + 1] * f, axis=1) * geom
            for cum in (cum_c, cum_m)]


@lru_cache(maxsize=1)
def _geometry_table():
    """1 / (4 pi D_A^2 (1+z)^3) on a 0.001 grid in z to 4 (log-interpolated: 1e-7 relative;
    astropy costs ~0.1 ms a call and the sky model asks for ~100 redshifts a view)."""
    z = np.linspace(0.0, 4.0, 4001)
    d_a_cm = np.asarray(angular_diameter_distance_kpc(np.maximum(z, 1e-4)), dtype=float) * _KPC_CM
    return z, np.log(1.0 / (4.0 * np.pi * d_a_cm**2 * (1.0 + z) ** 3))


def thermal_spectrum_per_em(redshift: float, kt_kev: float, Z_solar: float, apec=None) -> np.ndarray:
    """Photons s^-1 cm^-2 per bin of :func:`observed_energy_edges` at the observer, per unit
    emission measure (n_e n_H V, cm^-3), before Galactic absorption: the same emission table,
    redshift fold and linear-in-log-kT interpolation as :func:`rate_table`, so
    ``sum(spectrum * response_on_grid(obs))`` equals ``rate_table(obs, redshift)(kT, Z)``
    (to 1e-6: the distance is interpolated on a fine grid in z). Redshifts up to 4; observed
    bins beyond the 16 keV rest-frame table get nothing (e^(-16 keV / kT) for groups)."""
    lt = np.log10(max(float(kt_kev), 1e-6))
    x = float(np.interp(lt, _LOG_KT, np.arange(_LOG_KT.size), left=-1.0))
    if x < 0:
        return np.zeros(observed_energy_edges().size - 1)
    i = min(int(x), _LOG_KT.size - 2)
    w = min(x - i, 1.0)
    edges_r, cum_c, cum_m = _rest_cumulative(*_apec_key(apec))
    # linear in kT-row weight and in Z, so combine the cumulative rows first: one interpolation
    cum = (cum_c[i] * (1.0 - w) + cum_c[i + 1] * w) + float(Z_solar) * (cum_m[i] * (1.0 - w) + cum_m[i + 1] * w)
    at = np.interp(observed_energy_edges() * (1.0 + float(redshift)), edges_r, cum)
    z_grid, log_geom = _geometry_table()
    return np.diff(at) * float(np.exp(np.interp(float(redshift), z_grid, log_geom)))


#: Largest share of the band response that may fall in observed bins past the rest-frame
#: table's top (which get no photons).
_MAX_RESPONSE_BEYOND_TABLE = 1e-3


@lru_cache(maxsize=64)
def _rate_table_cached(redshift, nH_1e22, band_kev, responses, apec_key):
    edges_r, cum_c, cum_m = _rest_cumulative(*apec_key)
    edges_o, resp = _response_on_grid(band_kev, nH_1e22, responses)
    rest_edges = edges_o * (1.0 + redshift)
    beyond = rest_edges[1:] > edges_r[-1]
    if rest_edges[0] < edges_r[0] or resp[beyond].sum() > _MAX_RESPONSE_BEYOND_TABLE * resp.sum():
        raise ClusterMassError(f"redshift {redshift} moves the observed 0.1-12 keV grid outside the "
                     f"tabulated rest-frame range {edges_r[0]}-{edges_r[-1]} keV where the band "
                     "response is not negligible")
    # photons per observed bin = N(<E_hi(1+z)) - N(<E_lo(1+z)) (linear within 4 eV bins);
    # observed bins past the table's top (z > 0.33: above ~11.4 keV, where the band's
    # response is tiny) get nothing, as in _thermal_rows
    pos = np.clip((rest_edges - edges_r[0]) / (edges_r[1] - edges_r[0]), 0.0, edges_r.size - 1.0)
    i0 = np.clip(np.floor(pos).astype(int), 0, edges_r.size - 2)
    f = pos - i0

    def fold(cum):
        at = cum[:, i0] * (1.0 - f) + cum[:, i0 + 1] * f
        return np.diff(at, axis=1) @ resp

    d_a_cm = float(angular_diameter_distance_kpc(redshift)) * _KPC_CM
    geom = 1.0 / (4.0 * np.pi * d_a_cm**2 * (1.0 + redshift) ** 3)
    return RateTable(_LOG_KT.copy(), fold(cum_c) * geom, fold(cum_m) * geom, float(redshift),
                     float(nH_1e22), tuple(band_kev))


def _apec_key(apec):
    if apec is None or getattr(apec, "source", "clustermass-approx") == "clustermass-approx":
        return (None, None, None)
    return (str(apec.root), str(apec.version), str(apec.sha256.get("coco")))


def rate_table(obs, redshift=None, responses=None, apec=None) -> RateTable:
    """Count-rate table for an observation set-up (cached).

    Parameters
    ----------
    obs : pipeline.observation.Observation
        Uses ``z_obs`` (unless ``redshift`` is given), ``band_kev`` and ``nH_1e22``.
    redshift : float, optional
        The view's redshift.
    responses : path-like, optional
        Response directory (see :func:`pipeline.instrument.responses_dir`).
    apec : pipeline.emission.ApecTables, optional
        Real AtomDB tables to use instead of the project's emission model.
    """
    z = float(obs.z_obs if redshift is None else redshift)
    resp = None if responses is None else str(responses)
    return _rate_table_cached(round(z, 10), float(obs.nH_1e22), tuple(float(b) for b in obs.band_kev),
                              resp, _apec_key(apec))


# ----------------------------------------------------------------------------------
# Rendering
# ----------------------------------------------------------------------------------
def _em_per_rho2(gas) -> float:
    """n_e n_H V per (g/cm^3)^2 for one cell (cm^-3 g^-2 cm^6 ...)."""
    x_h = float(getattr(gas, "meta", {}).get("x_h", _X_H_DEFAULT)) if hasattr(gas, "meta") else _X_H_DEFAULT
    ne_per_g = (x_h + 0.5 * (1.0 - x_h)) / _MP_G
    nh_per_g = x_h / _MP_G
    return ne_per_g * nh_per_g * (float(gas.cell_kpc) * _KPC_CM) ** 3


def _gas_redshift(gas, obs, redshift):
    if redshift is not None:
        return float(redshift)
    z = getattr(gas, "redshift", None)
    return float(obs.z_obs if z is None else z)


def count_rate_cube(gas, obs, redshift=None, responses=None, apec=None) -> np.ndarray:
    """Band count rate of every cell at the observer, counts/s (float32, gas shape).

    Cached on ``gas._cache`` when the object has one (the three projections share it).
    """
    z = _gas_redshift(gas, obs, redshift)
    key = ("analytic_rate", z, float(obs.nH_1e22), tuple(obs.band_kev), str(responses), _apec_key(apec))
    cache = getattr(gas, "_cache", None)
    if isinstance(cache, dict) and key in cache:
        return cache[key]
    rho = np.asarray(gas.density_gcm3, dtype=np.float32)
    if rho.ndim != 3 or len(set(rho.shape)) != 1:
        raise ClusterMassError(f"gas density must be a cubic 3D array, got shape {rho.shape}")
    table = rate_table(obs, z, responses, apec)
    # scale rho before squaring: (1e-27 g/cm^3)^2 underflows float32
    scale = np.float32(1.0 / max(float(rho.max()), 1e-300))
    rs = rho * scale
    coeff, ref = table.scaled(gas.kt_kev, gas.metallicity_zsun)
    coeff *= rs * rs
    coeff *= np.float32(_em_per_rho2(gas) * ref / float(scale) ** 2)
    if isinstance(cache, dict):
        cache[key] = coeff
    return coeff


def _project(cube: np.ndarray, axis: str, npix: int) -> np.ndarray:
    if axis not in _AXES:
        raise ClusterMassError(f"projection axis {axis!r} is unknown: use 'x', 'y' or 'z'.")
    img = cube.sum(axis=_AXES[axis], dtype=np.float64)
    n = img.shape[0]
    if n == npix:
        return img
    if n % npix:
        raise ClusterMassError(f"gas grid of {n} cells per side cannot be binned to {npix} image pixels; "
                     "use a grid whose size is a multiple of the image size.")
    k = n // npix
    return img.reshape(npix, k, npix, k).sum(axis=(1, 3))


def _check_alignment(gas, obs, z):
    n = int(np.shape(gas.density_gcm3)[0])
    fov_kpc = float(obs.fov_arcmin) * 60.0 * float(kpc_per_arcsec(z))
    box = float(gas.cell_kpc) * n
    if abs(box / fov_kpc - 1.0) > 1e-3:
        raise ClusterMassError(f"gas box ({box:.1f} kpc) is not the image field at z={z} ({fov_kpc:.1f} kpc): "
                     "build the grid with GridSpec.for_observation(obs, redshift).")


def background_counts_per_pixel(obs, responses=None) -> float:
    """Expected particle-background counts per image pixel for the observation."""
    from pipeline.instrument import particle_background_counts

    return particle_background_counts(obs.exposure_ks, obs.band_kev, obs.npix, obs.fov_arcmin, responses)


def expected_counts(gas, axis: str, obs, redshift=None, background: bool = True,
                    responses=None, apec=None) -> np.ndarray:
    """Expected counts per pixel (no noise), float64 (npix, npix).

    Parameters
    ----------
    gas : GasGrid-like
        ``density_gcm3``, ``kt_kev``, ``metallicity_zsun`` (n, n, n) arrays and
        ``cell_kpc``; the box must be the image field at the view's redshift
        (``gas.redshift`` if present, else ``obs.z_obs``).
    axis : {'x', 'y', 'z'}
        Line of sight.
    obs : pipeline.observation.Observation
        Exposure, band, field, pixels, nH.
    background : bool
        Add the expected particle background.
    """
    z = _gas_redshift(gas, obs, redshift)
    _check_alignment(gas, obs, z)
    img = _project(count_rate_cube(gas, obs, z, responses, apec), axis, int(obs.npix))
    img *= float(obs.exposure_ks) * 1e3
    if background:
        img += background_counts_per_pixel(obs, responses)
    return img


def render(gas, axis: str, obs, rng: np.random.Generator, redshift=None, responses=None,
           apec=None) -> np.ndarray:
    """One Poisson image (int32, (npix, npix)) including the particle background."""
    lam = expected_counts(gas, axis, obs, redshift, True, responses, apec)
    return rng.poisson(lam).astype(np.int32)


def render_views(gas, obs, rng: np.random.Generator, axes=("x", "y", "z"), redshift=None,
                 responses=None, apec=None) -> dict:
    """Images of several projections of one gas grid (the rate cube is computed once).

    Returns
    -------
    dict
        ``{axis: {"counts": int32 image, "expected_source": float, "expected_background": float}}``
        with expected totals over the image.
    """
    bkg = background_counts_per_pixel(obs, responses)
    out = {}
    for axis in axes:
        lam = expected_counts(gas, axis, obs, redshift, False, responses, apec)
        src = float(lam.sum())
        lam += bkg
        out[axis] = {"counts": rng.poisson(lam).astype(np.int32), "expected_source": src,
                     "expected_background": bkg * lam.size}
    return out
