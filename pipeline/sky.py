"""The sky around the target of one view: point sources, line-of-sight haloes, diffuse light.

Population version 2 (each part behind its own switch of
:class:`pipeline.population.PopulationParams`) puts into every view, besides the particle
background both renderers already add:

* ``sky_point_sources``: cosmic X-ray background point sources (AGN and normal galaxies).
  Their 0.5-2 keV fluxes come from SOXS's own generator (``soxs.background.point_sources
  .generate_fluxes``: the log N - log S of Lehmer et al. 2012 for AGN and galaxies, the
  Chandra Deep Field South 4 Ms counts), their photon indices from SOXS's fit to Hickox &
  Markevitch (2006, Fig. 13a; ``get_agn_index``; galaxies Gamma = 2), positions uniform on the
  field. Each is a power law over 0.1-10 keV (SOXS's mock range) absorbed by the Galactic
  column of the observation (wabs, Morrison & McCammon 1983). Sources expected to give fewer
  than :data:`LIST_MIN_COUNTS` counts are not listed: their summed spectrum joins the uniform
  background (same expected counts, no list of ~400k undetectable sources). Cluster AGN
  (Ehlert et al. 2014) are left out.
* ``sky_diffuse``: the unresolved cosmic X-ray background and the Galactic foreground as a
  uniform expected background: the foreground spectrum SOXS ships
  (``soxs/files/hm_cxb_bkgnd.h5``, photons s^-1 cm^-2 keV^-1 arcmin^-2 as observed: its
  0.5-2 keV flux is 3.9e-12 erg s^-1 cm^-2 deg^-2, nearly all below 1 keV, i.e. the soft
  thermal foreground) plus SOXS's completely-unresolved CXB term (Hickox & Markevitch 2006,
  Table 3: 0.676e-12 erg s^-1 cm^-2 deg^-2 in 1-2 keV, Gamma = 2, twice that in 0.5-2 keV),
  Galactic-absorbed.
* ``los_haloes``: groups and clusters in front of and behind the target from the halo light
  cone SOXS ships (``soxs/files/halo_catalog.h5``, 252,714 haloes over 10 x 10 deg with
  M500c [Msun/h] and z, used by ``soxs.make_cosmological_sources``): a field-sized window at a
  position drawn per view, every halo centred inside it. Each is a spherical beta model
  (beta = 2/3, r_c = R500c / 10 as SOXS's ``conc``; Cavaliere & Fusco-Femiano 1976) truncated
  at 3 R500c, normalised to the 0.5-2 keV L_X-M relation of Vikhlinin et al. (2009b, eq. 22;
  the one SOXS applies to this light cone) inside R500c, with the project's M-T relation
  (:func:`pipeline.population.t500_mean_kev`), Z = 0.3 solar, and the project's emission
  table at the halo's redshift
  (:func:`pipeline.analytic.thermal_spectrum_per_em`), so the same ARF, RMF band and
  absorption as the target. Haloes below :data:`LIST_MIN_COUNTS` are left out: the measured
  unresolved CXB above already holds them.

Every number is drawn from one seed per view (:func:`sky_seed`, derived from the view's seed
with its own stream key), so a view's sky does not depend on worker count or order. The two
renderers share one :class:`SkyModel`: the analytic renderer adds :meth:`SkyModel.expected_image`
and ``diffuse_counts_per_pixel`` to the cluster's expected counts before Poisson sampling;
the real chain draws photons from the same spectra and positions
(:meth:`SkyModel.photons`) and puts them through its detector step.
"""
from __future__ import annotations

import dataclasses
from functools import lru_cache

import numpy as np
from scipy.special import erf

from benchmark.core.cosmology import H, KEV_TO_ERG, efunc, kpc_per_arcsec, r500c_kpc
from benchmark.core.errors import ClusterMassError

__all__ = ["SkySwitches", "SkySource", "SkyModel", "sky_seed", "draw_sky", "view_skies", "LIST_MIN_COUNTS",
           "REFERENCES_SKY", "halo_fluxes", "halo_statistics", "fit_halo_lx_scale", "HALO_OBSERVABLES"]

#: Stream key of the sky draws under a view's seed (pipeline.population.derive_seed).
SKY_STREAM = 0x5C1
#: Sources expected to give fewer counts than this in the band are not listed (see module doc).
LIST_MIN_COUNTS = 2.0
#: SOXS's mock point-source spectra span 0.1-10 keV, fluxes are 0.5-2 keV
#: (soxs.background.point_sources spec_emin/spec_emax, fb_emin/fb_emax).
PL_RANGE_KEV = (0.1, 10.0)
FLUX_BAND_KEV = (0.5, 2.0)
#: Completely unresolved CXB, 1-2 keV, erg s^-1 cm^-2 deg^-2 (Hickox & Markevitch 2006 Table 3,
#: as SOXS's make_ptsrc_background(diffuse_unresolved=True)); x2 to 0.5-2 keV for Gamma = 2.
HM06_UNRESOLVED_F12_DEG2 = 0.676e-12
#: Halo model: beta, core radius and truncation in R500c (SOXS make_cosmological_sources: conc = 10).
HALO_BETA = 2.0 / 3.0
HALO_RC_PER_R500 = 0.1
HALO_RMAX_PER_R500 = 3.0
HALO_Z_SOLAR = 0.3
#: The light cone spans 10 x 10 deg; its x, y are comoving Mpc/h with SOXS's h = 0.7.
CATALOG_FOV_ARCMIN = 600.0
CATALOG_H = 0.7
_KPC_CM = 3.0856775814913673e21
_GAMMA_GRID = np.linspace(1.0, 3.0, 201)

REFERENCES_SKY = [
    "Lehmer B. et al. 2012, ApJ 752, 46 (CDF-S 4 Ms log N - log S of AGN and galaxies; SOXS's point-source generator)",
    "Hickox R., Markevitch M. 2006, ApJ 645, 95 (CXB: unresolved intensity, AGN photon indices; ACIS quiescent background)",
    "Morrison R., McCammon D. 1983, ApJ 270, 119 (wabs Galactic absorption of the sky's sources)",
    "ZuHone J. et al., SOXS 5.3 (soxs/files: halo_catalog.h5 light cone, hm_cxb_bkgnd.h5 Galactic foreground)",
    "Cavaliere A., Fusco-Femiano R. 1976, A&A 49, 137 (beta model of line-of-sight haloes)",
    "Vikhlinin A. et al. 2009b, ApJ 692, 1060 (L_X(0.5-2 keV)-M relation, eq. 22: luminosities of line-of-sight haloes)",
    "Kim M. et al. 2007, ApJ 659, 29 (ChaMP + CDF log N - log S: point-source density check)",
    "Markevitch M. et al. 2003, ApJ 583, 70; ACIS background pages (quiescent front-illuminated chip ~0.3 cts/s, 0.3-10 keV)",
]


@dataclasses.dataclass(frozen=True)
class SkySwitches:
    """Which parts of the sky a view gets (all off at population version 1)."""

    point_sources: bool = False
    diffuse: bool = False
    los_haloes: bool = False

    @classmethod
    def from_params(cls, params) -> "SkySwitches":
        """The switches of a :class:`pipeline.population.PopulationParams` (off below version 2)."""
        if params is None or not getattr(params, "v2", False):
            return cls()
        return cls(bool(params.sky_point_sources), bool(params.sky_diffuse), bool(params.sky_los_haloes))

    @property
    def any(self) -> bool:
        return self.point_sources or self.diffuse or self.los_haloes


@dataclasses.dataclass(frozen=True)
class SkySource:
    """One listed source: where it is, what it gives, and its spectrum's parameters."""

    kind: str  # "point" or "halo"
    x_pix: float  # column of the stored image, 0-based
    y_pix: float  # row
    expected_counts: float  # in the band, inside the image
    flux_cgs: float  # 0.5-2 keV, before Galactic absorption
    redshift: float  # NaN for point sources
    gamma: float = float("nan")  # point: photon index
    norm: float = 0.0  # point: photons s^-1 cm^-2 keV^-1 at 1 keV
    kt_kev: float = float("nan")  # halo
    em_cm3: float = 0.0  # halo: n_e n_H V inside HALO_RMAX_PER_R500
    rc_pix: float = 0.0  # halo: core radius on the image
    rmax_pix: float = 0.0  # halo: truncation radius on the image
    total_counts: float = 0.0  # in the band, wherever they fall (expected_counts: inside the image)

    def record(self) -> dict:
        """The fields the cluster file keeps (benchmark.dataset.layout.SOURCE_FIELDS)."""
        return {"kind": self.kind, "x_pix": self.x_pix, "y_pix": self.y_pix,
                "expected_counts": self.expected_counts, "flux_cgs": self.flux_cgs,
                "redshift": self.redshift}


@dataclasses.dataclass(frozen=True)
class SkyModel:
    """The sky of one view, shared by both renderers."""

    seed: int
    npix: int
    exposure_ks: float
    sources: tuple
    diffuse_spectrum: np.ndarray  # photons s^-1 cm^-2 per energy bin over the whole image, absorbed
    diffuse_counts_per_pixel: float
    psf_sigma_pix: float
    nH_1e22: float
    listed_image: np.ndarray = dataclasses.field(default=None, repr=False)

    def expected_image(self) -> np.ndarray:
        """Expected counts of the listed sources per pixel (float64, (npix, npix), a copy):
        point sources through the Gaussian PSF integrated over pixels, haloes' projected
        beta models integrated over pixels (made once, when the sky is drawn)."""
        if self.listed_image is None:
            return np.zeros((self.npix, self.npix))
        return self.listed_image.copy()

    def photons(self, area_cm2: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Photons reaching the telescope (after Galactic absorption) for a collecting area.

        Returns
        -------
        x_pix, y_pix, energy_kev : np.ndarray
            Positions in the stored image's 0-based pixel coordinates (column, row), before
            the PSF, and observed energies; a detector keeps each with A(E) P_band(E) / area.
        """
        edges = _edges()
        xs, ys, es = [], [], []
        t_s = self.exposure_ks * 1e3
        if self.diffuse_spectrum.sum() > 0:
            n = rng.poisson(self.diffuse_spectrum.sum() * t_s * area_cm2)
            xs.append(rng.uniform(-0.5, self.npix - 0.5, n))
            ys.append(rng.uniform(-0.5, self.npix - 0.5, n))
            es.append(_draw_energies(self.diffuse_spectrum, edges, n, rng))
        for src in self.sources:
            spec = source_spectrum(src, self.nH_1e22)
            n = rng.poisson(spec.sum() * t_s * area_cm2)
            if src.kind == "point":
                x, y = np.full(n, src.x_pix), np.full(n, src.y_pix)
            else:
                x, y = _halo_positions(src, n, rng)
            xs.append(x)
            ys.append(y)
            es.append(_draw_energies(spec, edges, n, rng))
        if not es:
            return np.zeros(0), np.zeros(0), np.zeros(0)
        return np.concatenate(xs), np.concatenate(ys), np.concatenate(es)

    def records(self) -> list[dict]:
        return [s.record() for s in self.sources]


# ---------------------------------------------------------------------------------------
# seeds and the entry point
def sky_seed(view_seed: int) -> int:
    """Seed of a view's sky: its own stream under the view's seed."""
    from pipeline.population import derive_seed

    return derive_seed(int(view_seed), SKY_STREAM)


def draw_sky(view_seed: int, obs, switches: SkySwitches, params=None, responses=None,
             apec=None) -> SkyModel:
    """The sky of one view.

    Parameters
    ----------
    view_seed : int
        The view's seed (catalog ``seed``); the sky uses :func:`sky_seed` of it.
    obs : pipeline.observation.Observation
        Exposure, band, field, pixels, Galactic nH.
    switches : SkySwitches
        Which parts to draw.
    params : pipeline.population.PopulationParams, optional
        Scaling relations of the line-of-sight haloes (default: version 2's).
    responses, apec : optional
        Response folder and emission tables, as :mod:`pipeline.analytic`.
    """
    from pipeline.analytic import response_on_grid
    from pipeline.instrument import PSF_FWHM_ARCSEC

    if not isinstance(switches, SkySwitches):
        raise ClusterMassError(f"switches must be a SkySwitches, got {type(switches).__name__}")
    seed = sky_seed(view_seed)
    # independent streams per part, so switching one off leaves the others' draws unchanged
    ss = np.random.SeedSequence(seed)
    point_ss, halo_ss = ss.spawn(2)
    resp_abs = response_on_grid(obs, responses, absorbed=True)
    resp_bare = response_on_grid(obs, responses, absorbed=False)
    t_s = float(obs.exposure_ks) * 1e3
    npix = int(obs.npix)
    sources: list[SkySource] = []
    diffuse = np.zeros(resp_abs.size)
    if switches.point_sources:
        listed, faint = _point_sources(point_ss, obs, resp_abs, t_s)
        sources += listed
        diffuse += faint
    if switches.diffuse:
        diffuse += _diffuse_spectrum_per_arcmin2(obs.nH_1e22) * float(obs.fov_arcmin) ** 2
    if switches.los_haloes:
        from pipeline.population import PopulationParams

        sources += _haloes(halo_ss, obs, params or PopulationParams(), resp_abs, t_s, apec)
    counts_diffuse = float(np.sum(diffuse * resp_bare)) * t_s / npix**2
    model = SkyModel(seed=seed, npix=npix, exposure_ks=float(obs.exposure_ks), sources=(),
                     diffuse_spectrum=diffuse, diffuse_counts_per_pixel=counts_diffuse,
                     psf_sigma_pix=PSF_FWHM_ARCSEC / 2.3548 / (float(obs.fov_arcmin) * 60.0 / npix),
                     nH_1e22=float(obs.nH_1e22))
    listed, image = _render_listed(sources, npix, model.psf_sigma_pix)
    return dataclasses.replace(model, sources=tuple(listed), listed_image=image)


# ---------------------------------------------------------------------------------------
# spectra
@lru_cache(maxsize=1)
def _edges() -> np.ndarray:
    from pipeline.analytic import observed_energy_edges

    edges = observed_energy_edges()
    edges.flags.writeable = False
    return edges


def _powerlaw_bins(gamma: float) -> np.ndarray:
    """integral of E^-gamma over each energy bin inside PL_RANGE_KEV (keV^(1-gamma))."""
    e = np.clip(_edges(), *PL_RANGE_KEV)
    if abs(gamma - 1.0) < 1e-9:
        return np.diff(np.log(e))
    return np.diff(e ** (1.0 - gamma)) / (1.0 - gamma)


def _band_energy_integral(gamma):
    """integral of E^(1-gamma) dE over FLUX_BAND_KEV (keV^(2-gamma)), array in, array out."""
    lo, hi = FLUX_BAND_KEV
    g = np.asarray(gamma, dtype=float)
    near2 = np.abs(g - 2.0) < 1e-9
    safe = np.where(near2, 1.5, g)
    return np.where(near2, np.log(hi / lo), (hi ** (2.0 - safe) - lo ** (2.0 - safe)) / (2.0 - safe))


def _wabs(nH_1e22) -> np.ndarray:
    from soxs.spectra.foreground_absorption import get_wabs_absorb

    edges = _edges()
    mid = 0.5 * (edges[1:] + edges[:-1])
    return get_wabs_absorb(mid, nH_1e22) if nH_1e22 > 0 else np.ones(mid.size)


def source_spectrum(src: SkySource, nH_1e22: float, apec=None) -> np.ndarray:
    """Photons s^-1 cm^-2 per energy bin of a listed source at the telescope (absorbed)."""
    if src.kind == "point":
        return src.norm * _powerlaw_bins(src.gamma) * _wabs(nH_1e22)
    from pipeline.analytic import thermal_spectrum_per_em

    return src.em_cm3 * thermal_spectrum_per_em(src.redshift, src.kt_kev, HALO_Z_SOLAR, apec) * _wabs(nH_1e22)


def _draw_energies(spectrum: np.ndarray, edges: np.ndarray, n: int, rng) -> np.ndarray:
    cdf = np.cumsum(spectrum)
    k = np.searchsorted(cdf, rng.uniform(0.0, cdf[-1], n), side="right")
    k = np.minimum(k, spectrum.size - 1)
    return edges[k] + rng.uniform(size=n) * (edges[k + 1] - edges[k])


# ---------------------------------------------------------------------------------------
# point sources
def _point_sources(ss, obs, resp_abs, t_s) -> tuple[list[SkySource], np.ndarray]:
    """Listed point sources and the summed spectrum (over the image) of the unlisted ones."""
    from soxs.background.point_sources import gal_index, generate_fluxes, get_agn_index

    prng = np.random.RandomState(ss.generate_state(1)[0])  # SOXS takes a RandomState
    agn, gal = generate_fluxes(float(obs.fov_arcmin), prng)
    table = _counts_per_norm(resp_abs)
    gamma_agn = get_agn_index(np.log10(agn))
    norm_agn = agn / (KEV_TO_ERG * _band_energy_integral(gamma_agn))  # photons s^-1 cm^-2 keV^-1 at 1 keV
    gamma_gal = float(gal_index)  # galaxies share one index: one factor for all ~350k of them
    norm_gal = gal / (KEV_TO_ERG * float(_band_energy_integral(gamma_gal)))
    counts_agn = norm_agn * np.interp(gamma_agn, _GAMMA_GRID, table) * t_s
    counts_gal = norm_gal * float(np.interp(gamma_gal, _GAMMA_GRID, table)) * t_s
    bright_agn, bright_gal = counts_agn >= LIST_MIN_COUNTS, counts_gal >= LIST_MIN_COUNTS
    rows = [(float(c), float(f), float(g), float(n)) for c, f, g, n in
            zip(counts_agn[bright_agn], agn[bright_agn], gamma_agn[bright_agn], norm_agn[bright_agn])]
    rows += [(float(c), float(f), gamma_gal, float(n)) for c, f, n in
             zip(counts_gal[bright_gal], gal[bright_gal], norm_gal[bright_gal])]
    # positions of the listed sources only (the unlisted ones are spread over the field)
    npix = int(obs.npix)
    x = prng.uniform(-0.5, npix - 0.5, len(rows))
    y = prng.uniform(-0.5, npix - 0.5, len(rows))
    listed = [SkySource("point", float(xi), float(yi), c, f, float("nan"), gamma=g, norm=n)
              for xi, yi, (c, f, g, n) in zip(x, y, rows)]
    # unlisted: their photon-index mixture, binned linearly onto the index grid
    faint_gamma, faint_norm = gamma_agn[~bright_agn], norm_agn[~bright_agn]
    pos = np.interp(faint_gamma, _GAMMA_GRID, np.arange(_GAMMA_GRID.size))
    lo = np.minimum(pos.astype(int), _GAMMA_GRID.size - 2)
    w_hi = pos - lo
    weights = (np.bincount(lo, faint_norm * (1 - w_hi), _GAMMA_GRID.size)
               + np.bincount(lo + 1, faint_norm * w_hi, _GAMMA_GRID.size))
    gal_pos = float(np.interp(gamma_gal, _GAMMA_GRID, np.arange(_GAMMA_GRID.size)))
    gal_lo = min(int(gal_pos), _GAMMA_GRID.size - 2)
    gal_sum = float(norm_gal[~bright_gal].sum())
    weights[gal_lo] += gal_sum * (1.0 - (gal_pos - gal_lo))
    weights[gal_lo + 1] += gal_sum * (gal_pos - gal_lo)
    return listed, (weights @ _powerlaw_matrix()) * _wabs(obs.nH_1e22)


@lru_cache(maxsize=1)
def _powerlaw_matrix() -> np.ndarray:
    """:func:`_powerlaw_bins` of every index of the grid, (n_gamma, n_bins)."""
    out = np.array([_powerlaw_bins(g) for g in _GAMMA_GRID])
    out.flags.writeable = False
    return out


def _counts_per_norm(resp_abs) -> np.ndarray:
    """Band count rate per unit power-law normalisation on the photon-index grid (cached)."""
    key = hash(resp_abs.tobytes())
    if key not in _PL_TABLES:
        _PL_TABLES[key] = _powerlaw_matrix() @ resp_abs
    return _PL_TABLES[key]


_PL_TABLES: dict = {}


# ---------------------------------------------------------------------------------------
# diffuse light
@lru_cache(maxsize=4)
def _diffuse_spectrum_per_arcmin2(nH_1e22: float) -> np.ndarray:
    """Foreground (SOXS hm_cxb_bkgnd.h5, as observed) + unresolved CXB (HM06, absorbed):
    photons s^-1 cm^-2 arcmin^-2 per energy bin."""
    import h5py
    import soxs.utils

    path = f"{soxs.utils.soxs_files_path}/hm_cxb_bkgnd.h5"
    try:
        with h5py.File(path, "r") as f:
            rate = np.asarray(f["spectrum"][()], dtype=np.float64)
            ebins = np.linspace(float(f["emin"][()]), float(f["emax"][()]), rate.size + 1)
    except OSError as err:
        raise ClusterMassError(f"SOXS' foreground spectrum {path!r} cannot be read ({err}): reinstall "
                               "soxs (the wheel ships soxs/files/hm_cxb_bkgnd.h5).") from err
    cum = np.concatenate([[0.0], np.cumsum(rate * np.diff(ebins))])
    edges = _edges()
    foreground = np.diff(np.interp(edges, ebins, cum))
    flux_05_2 = 2.0 * HM06_UNRESOLVED_F12_DEG2 / 3600.0  # erg s^-1 cm^-2 arcmin^-2, Gamma = 2
    norm = flux_05_2 / (KEV_TO_ERG * float(_band_energy_integral(2.0)))
    out = foreground + norm * _powerlaw_bins(2.0) * _wabs(nH_1e22)
    out.flags.writeable = False
    return out


# ---------------------------------------------------------------------------------------
# line-of-sight haloes
@lru_cache(maxsize=1)
def _halo_catalog():
    """(x_arcmin, y_arcmin, M500c Msun, z) of SOXS's light cone (positions comoving -> angle)."""
    import h5py
    import soxs.utils

    path = f"{soxs.utils.soxs_files_path}/halo_catalog.h5"
    try:
        with h5py.File(path, "r") as f:
            cat = {k: np.asarray(f[k][()], dtype=np.float64) for k in ("x", "y", "M500c", "redshift")}
    except OSError as err:
        raise ClusterMassError(f"SOXS' halo light cone {path!r} cannot be read ({err}): reinstall soxs "
                               "(the wheel ships soxs/files/halo_catalog.h5).") from err
    z = cat["redshift"]
    # comoving Mpc/h -> arcmin: / h, then / (comoving kpc per arcmin) = / ((1+z) kpc/arcsec * 60)
    zz = np.unique(np.round(z, 4))
    kpc_arcmin = np.interp(z, zz, kpc_per_arcsec(zz) * 60.0) * (1.0 + z)
    to_arcmin = 1000.0 / CATALOG_H / kpc_arcmin
    return cat["x"] * to_arcmin, cat["y"] * to_arcmin, cat["M500c"] / CATALOG_H, z


#: Vikhlinin et al. (2009b, eq. 22): ln L_X(0.5-2 keV, rest, < R500c) [erg/s] = 47.392
#: + 1.61 ln M500c [Msun] + 1.850 ln E(z) - 0.39 ln(h / 0.72), the relation SOXS's
#: make_cosmological_sources applies to this light cone.
V09_LX = (47.392, 1.61, 1.850, -0.39)


@lru_cache(maxsize=2)
def _rest_band_luminosity_per_em(apec_key) -> np.ndarray:
    """Rest-frame 0.5-2 keV luminosity per unit EM (erg/s per cm^-3) on the kT grid of
    :mod:`pipeline.analytic`, Z = HALO_Z_SOLAR (the project's emission table)."""
    from pipeline.analytic import _rest_cumulative

    edges, cum_c, cum_m = _rest_cumulative(*apec_key)
    mid = 0.5 * (edges[1:] + edges[:-1])
    band = (mid >= FLUX_BAND_KEV[0]) & (mid < FLUX_BAND_KEV[1])
    energy = mid[band] * KEV_TO_ERG
    return (np.diff(cum_c, axis=1)[:, band] @ energy) + HALO_Z_SOLAR * (np.diff(cum_m, axis=1)[:, band] @ energy)


def _halo_em(m, z, params, apec=None):
    """n_e n_H V (cm^-3) of a halo's truncated beta model and its core radius (kpc), arrays.

    The profile's shape is the beta model; its normalisation gives the rest-frame 0.5-2 keV
    luminosity inside R500c of Vikhlinin et al. (2009b) at the halo's mass and redshift, times
    ``params.sky_halo_lx_scale`` (:func:`fit_halo_lx_scale`), with
    the project's M-T relation (:func:`pipeline.population.t500_mean_kev`) and emission table
    for the spectrum. (A beta model holding the project's mean gas fraction,
    :func:`pipeline.population.fgas_mean`, would be 1.5-2.3 x brighter than that relation for
    1e13.5-1e14.5 Msun groups, the bulk of the light cone: made for massive clusters, it
    over-concentrates group gas.)
    """
    from pipeline.analytic import _LOG_KT, _apec_key
    from pipeline.population import t500_mean_kev

    m, z = np.asarray(m, dtype=float), np.asarray(z, dtype=float)
    a, b, c, d = V09_LX
    lum = params.sky_halo_lx_scale * np.exp(a + b * np.log(m) + c * np.log(efunc(z)) + d * np.log(H / 0.72))
    kt = np.clip(t500_mean_kev(m, z, params), 10 ** _LOG_KT[0], 10 ** _LOG_KT[-1])
    per_em = np.interp(np.log10(kt), _LOG_KT, _rest_band_luminosity_per_em(_apec_key(apec)))
    em_total, _ = _beta_em_and_gas(HALO_RMAX_PER_R500 / HALO_RC_PER_R500)
    em_r500, _ = _beta_em_and_gas(1.0 / HALO_RC_PER_R500)
    return lum / per_em * (em_total / em_r500), HALO_RC_PER_R500 * r500c_kpc(m, z)


_Z_GRID = np.linspace(0.0, 3.5, 176)
_EST_TABLES: dict = {}


def _halo_per_em(m, z, params, weights, apec):
    """``weights``-weighted observed spectrum per unit EM of haloes (per second), from a
    (z, log kT) table of the spectrum times the distance factor, bilinear, times the exact
    distance factor: a few per cent, for pre-selection and statistics (the listed haloes'
    counts are computed exactly)."""
    from scipy.interpolate import RegularGridInterpolator

    from pipeline.analytic import _LOG_KT, _apec_key, _geometry_table, _thermal_rows
    from pipeline.population import t500_mean_kev

    z_fine, log_geom = _geometry_table()
    key = (hash(np.asarray(weights).tobytes()), _apec_key(apec))
    if key not in _EST_TABLES:
        rows = list(range(_LOG_KT.size))
        table = []
        for zz in np.maximum(_Z_GRID, 1e-3):
            cosmic, metal = _thermal_rows(float(zz), rows, _apec_key(apec))
            rate = np.maximum(cosmic @ weights + HALO_Z_SOLAR * (metal @ weights), 1e-300)
            table.append(np.log(rate) - np.interp(zz, z_fine, log_geom))
        _EST_TABLES[key] = RegularGridInterpolator((_Z_GRID, _LOG_KT), np.array(table),
                                                   bounds_error=False, fill_value=None)
    kt = np.clip(t500_mean_kev(m, z, params), 10 ** _LOG_KT[0], 10 ** _LOG_KT[-1])
    return np.exp(_EST_TABLES[key](np.column_stack([z, np.log10(kt)])) + np.interp(z, z_fine, log_geom))


def _halo_counts_estimate(m, z, params, resp_abs, t_s, apec):
    """Band counts of haloes (absorbed response ``resp_abs``) in ``t_s`` seconds, tabulated."""
    em, _ = _halo_em(m, z, params, apec)
    return em * _halo_per_em(m, z, params, resp_abs, apec) * t_s


def halo_fluxes(params=None, apec=None) -> np.ndarray:
    """Unabsorbed observed-frame 0.5-2 keV flux (erg s^-1 cm^-2, to the 3 R500c truncation, as
    surveys extrapolate total fluxes) of every halo of SOXS's light cone under ``params``."""
    from pipeline.population import PopulationParams

    params = PopulationParams() if params is None else params
    mid = 0.5 * (_edges()[1:] + _edges()[:-1])
    energy_band = np.where((mid >= FLUX_BAND_KEV[0]) & (mid < FLUX_BAND_KEV[1]), mid * KEV_TO_ERG, 0.0)
    _, _, mass, z = _halo_catalog()
    em, _ = _halo_em(mass, z, params, apec)
    return em * _halo_per_em(mass, z, params, energy_band, apec)


#: The observed extended X-ray sources the light cone is calibrated on: (key, label, flux limit
#: or None for the intensity share, target, low, high, source). Surveys give total 0.5-2 keV
#: fluxes. The report shows these rows (pipeline.report.OBSERVABLES).
HALO_OBSERVABLES = (
    ("los_halo_density_3e15_deg2", "line-of-sight groups/clusters per deg^2 with S(0.5-2 keV) > 3e-15",
     3e-15, 34.0, 25.0, 45.0, "Finoguenov+ 2007 (COSMOS: 72 in 2.1 deg^2)"),
    ("los_halo_density_4e14_deg2", "line-of-sight groups/clusters per deg^2 with S(0.5-2 keV) > 3.9e-14",
     3.9e-14, 2.0, 1.6, 2.5, "Collins+ 1997 (2.0 +0.4 -0.3); Rosati+ 1998"),
    ("los_halo_cxb_share_05_2", "share of the 0.5-2 keV CXB in groups and clusters",
     None, 0.075, 0.05, 0.10, "Soltan+ 2002 (5-10%); Moretti+ 2003 (CXB 7.53e-12 erg/s/cm^2/deg^2)"),
)
#: Total 0.5-2 keV CXB intensity, erg s^-1 cm^-2 deg^-2 (Moretti et al. 2003).
CXB_05_2_CGS_DEG2 = 7.53e-12


def _halo_observables(flux: np.ndarray) -> dict:
    """:data:`HALO_OBSERVABLES` of light-cone fluxes ``flux`` spread over its 100 deg^2."""
    area = (CATALOG_FOV_ARCMIN / 60.0) ** 2
    return {key: (float(flux.sum()) / area / CXB_05_2_CGS_DEG2 if limit is None
                  else float(np.sum(flux > limit)) / area)
            for key, _, limit, *_ in HALO_OBSERVABLES}


def halo_statistics(params=None) -> dict:
    """The light cone's :data:`HALO_OBSERVABLES` under ``params``."""
    return _halo_observables(halo_fluxes(params))


def fit_halo_lx_scale(params=None, grid=np.round(np.arange(0.05, 1.5001, 0.01), 2)) -> float:
    """The ``sky_halo_lx_scale`` on ``grid`` that best matches :data:`HALO_OBSERVABLES`: least
    squares in ln(measured / target), each scaled by ln(high / low) / 2 of its range (a count
    of zero counts as half a halo, so that its logarithm stays finite)."""
    from pipeline.population import PopulationParams

    base = dataclasses.replace(PopulationParams() if params is None else params, sky_halo_lx_scale=1.0)
    flux = halo_fluxes(base)
    floor = 0.5 / (CATALOG_FOV_ARCMIN / 60.0) ** 2
    cost = np.zeros(len(grid))
    for i, a in enumerate(grid):
        measured = _halo_observables(a * flux)
        for key, _, _, target, low, high, _ in HALO_OBSERVABLES:
            cost[i] += (np.log(max(measured[key], floor) / target) / (0.5 * np.log(high / low))) ** 2
    return float(grid[int(np.argmin(cost))])


@lru_cache(maxsize=1)
def _kpc_per_arcsec_table():
    z = np.linspace(0.0, 4.0, 4001)
    return z, np.asarray(kpc_per_arcsec(np.maximum(z, 1e-6)), dtype=float)


def _kpc_per_arcsec_fast(z: float) -> float:
    """kpc per arcsec interpolated on a 0.001 grid in z (1e-6 relative; astropy costs ~0.1 ms a call)."""
    grid, values = _kpc_per_arcsec_table()
    return float(np.interp(z, grid, values))


def _beta_em_and_gas(x_max: float) -> tuple[float, float]:
    """For beta = 2/3: integral of (1+x^2)^-2 x^2 to x_max and of (1+x^2)^-1 x^2 to x_max."""
    return 0.5 * (np.arctan(x_max) - x_max / (1.0 + x_max**2)), x_max - np.arctan(x_max)


def _haloes(ss, obs, params, resp_abs, t_s, apec) -> list[SkySource]:
    from pipeline.analytic import thermal_spectrum_per_em
    from pipeline.population import t500_mean_kev

    rng = np.random.default_rng(ss)
    fov = float(obs.fov_arcmin)
    half_cat = 0.5 * CATALOG_FOV_ARCMIN - 0.5 * fov
    xc, yc = rng.uniform(-half_cat, half_cat, 2)
    hx, hy, mass, z = _halo_catalog()
    inside = (np.abs(hx - xc) < 0.5 * fov) & (np.abs(hy - yc) < 0.5 * fov)
    npix = int(obs.npix)
    pix_arcmin = fov / npix
    edges = _edges()
    mid = 0.5 * (edges[1:] + edges[:-1])
    in_band = (mid >= FLUX_BAND_KEV[0]) & (mid < FLUX_BAND_KEV[1])
    out = []
    idx = np.flatnonzero(inside)
    # cheap bound first (most light-cone haloes give far below a count): exact spectra only
    # for haloes whose tabulated estimate is within a factor 2 of the listing floor
    estimate = _halo_counts_estimate(mass[idx], z[idx], params, resp_abs, t_s, apec)
    for i in idx[estimate >= 0.5 * LIST_MIN_COUNTS]:
        m, zi = float(mass[i]), float(z[i])
        em, rc = (float(v) for v in _halo_em(m, zi, params, apec))
        kt = float(t500_mean_kev(m, zi, params))
        spec = em * thermal_spectrum_per_em(zi, kt, HALO_Z_SOLAR, apec)
        total = float(np.sum(spec * resp_abs)) * t_s
        if total < LIST_MIN_COUNTS:
            continue
        rc_pix = rc / (_kpc_per_arcsec_fast(zi) * 60.0 * pix_arcmin)
        out.append(SkySource(
            "halo",
            float((hx[i] - xc) / pix_arcmin + 0.5 * (npix - 1)),
            float((hy[i] - yc) / pix_arcmin + 0.5 * (npix - 1)),
            total, float(np.sum(spec[in_band] * mid[in_band])) * KEV_TO_ERG, zi,
            kt_kev=kt, em_cm3=em, rc_pix=rc_pix,
            rmax_pix=rc_pix * HALO_RMAX_PER_R500 / HALO_RC_PER_R500,
        ))
    return out


def _halo_block(src: SkySource, npix: int):
    """Fraction of a halo's counts in each image pixel it reaches (projected beta = 2/3,
    truncated at ``rmax_pix``), normalised analytically over the whole disk: pixel centres,
    with 8 x 8 (4 x 4 for cores wider than 2 pixels) sub-pixels where the core varies within
    a pixel. Returns (row0, col0, block), or None when the disk misses the image."""
    r, rc = src.rmax_pix, src.rc_pix
    r0, r1 = max(int(np.floor(src.y_pix - r)), 0), min(int(np.ceil(src.y_pix + r)), npix - 1)
    c0, c1 = max(int(np.floor(src.x_pix - r)), 0), min(int(np.ceil(src.x_pix + r)), npix - 1)
    if r1 < r0 or c1 < c0:
        return None
    x_max2 = (r / rc) ** 2
    norm = 2.0 * np.pi * rc**2 * (1.0 - (1.0 + x_max2) ** -0.5)

    def surface(rows, cols):
        s2 = ((rows - src.y_pix) / rc)[:, None] ** 2 + ((cols - src.x_pix) / rc)[None, :] ** 2
        return np.where(s2 <= x_max2, (1.0 + s2) ** -1.5, 0.0)

    block = surface(np.arange(r0, r1 + 1, dtype=float), np.arange(c0, c1 + 1, dtype=float))
    half = int(np.ceil(2.0 * rc + 1.5))  # core patch: sub-sampled
    a0, a1 = max(int(round(src.y_pix)) - half, r0), min(int(round(src.y_pix)) + half, r1)
    b0, b1 = max(int(round(src.x_pix)) - half, c0), min(int(round(src.x_pix)) + half, c1)
    if a1 >= a0 and b1 >= b0:
        n = 8 if rc < 2.0 else 4
        sub = (np.arange(n) + 0.5) / n - 0.5
        rows = (np.arange(a0, a1 + 1)[:, None] + sub[None, :]).ravel()
        cols = (np.arange(b0, b1 + 1)[:, None] + sub[None, :]).ravel()
        fine = surface(rows, cols).reshape(a1 - a0 + 1, n, b1 - b0 + 1, n).mean(axis=(1, 3))
        block[a0 - r0:a1 - r0 + 1, b0 - c0:b1 - c0 + 1] = fine
    return r0, c0, block / norm


def _point_weights(centre, index, sigma_pix):
    """Share of a Gaussian PSF centred at ``centre`` falling in pixel ``index`` (arrays)."""
    if sigma_pix <= 0:
        return ((index - 0.5 <= centre) & (centre < index + 0.5)).astype(float)
    s = sigma_pix * np.sqrt(2.0)
    return 0.5 * (erf((index + 0.5 - centre) / s) - erf((index - 0.5 - centre) / s))


def _render_listed(sources, npix: int, sigma_pix: float):
    """The listed sources' expected image; each source's expected_counts set to what falls
    inside it and total_counts to all of its counts."""
    img = np.zeros((npix, npix))
    inside = np.zeros(len(sources))
    points = [i for i, s in enumerate(sources) if s.kind == "point"]
    if points:  # 3 x 3 pixels around each, vectorised
        x = np.array([sources[i].x_pix for i in points])
        y = np.array([sources[i].y_pix for i in points])
        total = np.array([sources[i].expected_counts for i in points])
        ix, iy = np.floor(x + 0.5).astype(int), np.floor(y + 0.5).astype(int)
        for dy in (-1, 0, 1):
            wy = _point_weights(y, iy + dy, sigma_pix)
            for dx in (-1, 0, 1):
                w = wy * _point_weights(x, ix + dx, sigma_pix)
                ok = (iy + dy >= 0) & (iy + dy < npix) & (ix + dx >= 0) & (ix + dx < npix)
                np.add.at(img, (iy[ok] + dy, ix[ok] + dx), total[ok] * w[ok])
                inside[points] += np.where(ok, w, 0.0)
    for i, src in enumerate(sources):
        if src.kind != "halo":
            continue
        found = _halo_block(src, npix)
        if found is not None:
            r0, c0, block = found
            img[r0:r0 + block.shape[0], c0:c0 + block.shape[1]] += block * src.expected_counts
            inside[i] = float(block.sum())
    listed = [dataclasses.replace(src, total_counts=float(src.expected_counts),
                                  expected_counts=float(src.expected_counts * f))
              for src, f in zip(sources, inside)]
    return listed, img


def _halo_positions(src: SkySource, n: int, rng) -> tuple[np.ndarray, np.ndarray]:
    """Positions drawn from the truncated projected beta model (inverse of its cumulative)."""
    x_max2 = (src.rmax_pix / src.rc_pix) ** 2
    frac = rng.uniform(size=n) * (1.0 - (1.0 + x_max2) ** -0.5)
    radius = src.rc_pix * np.sqrt(np.maximum((1.0 - frac) ** -2 - 1.0, 0.0))
    angle = rng.uniform(0.0, 2.0 * np.pi, n)
    return src.x_pix + radius * np.cos(angle), src.y_pix + radius * np.sin(angle)


def view_skies(seeds, obs, params, responses=None, apec=None) -> list:
    """The sky of each view of a cluster epoch (``None`` per view when every switch is off).

    Parameters
    ----------
    seeds : sequence of int
        The views' seeds (catalog ``seed``).
    obs : pipeline.observation.Observation
    params : pipeline.population.PopulationParams
        Its version and sky switches decide what is drawn.
    """
    switches = SkySwitches.from_params(params)
    if not switches.any:
        return [None] * len(seeds)
    return [draw_sky(int(s), obs, switches, params, responses, apec) for s in seeds]


#: ACIS-I chip area (8.3 x 8.3 arcmin, 1024 x 1024 pixels of 0.492 arcsec), for rates per chip
CHIP_ARCMIN2 = (1024 * 0.492 / 60.0) ** 2
#: flux limit of the point-source density check, 0.5-2 keV (a 100 ks ACIS-I field is complete
#: there: ~20 counts on axis)
DENSITY_FLUX_LIMIT_CGS = 1e-15
#: faintest flux of the ChaMP+CDF counts whose resolved CXB fraction Kim et al. (2007) give
RESOLVED_FLUX_LIMIT_CGS = 2e-17


def lehmer_density_deg2(flux_cgs: float) -> float:
    """N(>S) per deg^2 (AGN + galaxies, 0.5-2 keV) of Lehmer et al. (2012) as SOXS tabulates it."""
    from soxs.data import cdf_agn, cdf_fluxes, cdf_gal

    total = np.asarray(cdf_agn) + np.asarray(cdf_gal)
    return float(total[-1] - np.interp(np.log10(flux_cgs), np.log10(cdf_fluxes), total))


def sky_statistics(params=None, obs=None, n_views: int = 24, master_seed: int = 0) -> dict:
    """Sky observables for the report, from ``n_views`` skies drawn with fixed seeds.

    Returns
    -------
    dict
        ``ptsrc_density_1e15_deg2``: point sources per deg^2 above 1e-15 erg s^-1 cm^-2
        (0.5-2 keV); ``cxb_resolved_fraction_05_2``: share of the 0.5-2 keV point-source +
        unresolved CXB intensity in sources above 2e-17; ``background_rate_chip_cts_s``:
        expected particle + sky rate (all sources included, as a blank-sky field) per ACIS-I
        chip in 0.3-10 keV; ``background_counts_per_pixel``: the uniform expected background
        (particle + diffuse sky + unlisted point sources: the catalog's ``background_counts``
        per pixel) in the image band. Empty when the sky is off.
    """
    from pipeline.instrument import particle_background_rate
    from pipeline.observation import Observation
    from pipeline.population import PopulationParams, derive_seed

    params = PopulationParams() if params is None else params
    switches = SkySwitches.from_params(params)
    if not switches.any:
        return {}
    obs = Observation() if obs is None else obs
    wide = dataclasses.replace(obs, band_kev=(0.3, 10.0))
    seeds = [derive_seed(master_seed, SKY_STREAM, i) for i in range(n_views)]
    area_deg2 = n_views * (float(obs.fov_arcmin) / 60.0) ** 2
    out = {"n_views": n_views}
    if switches.point_sources:
        n_bright, resolved, total = 0, 0.0, 0.0
        for seed in seeds:
            from soxs.background.point_sources import generate_fluxes

            ss = np.random.SeedSequence(sky_seed(seed)).spawn(2)[0]
            flux = np.concatenate(generate_fluxes(float(obs.fov_arcmin),
                                                  np.random.RandomState(ss.generate_state(1)[0])))
            n_bright += int(np.sum(flux > DENSITY_FLUX_LIMIT_CGS))
            resolved += float(flux[flux > RESOLVED_FLUX_LIMIT_CGS].sum())
            total += float(flux.sum())
        out["ptsrc_density_1e15_deg2"] = n_bright / area_deg2
        unresolved = 2.0 * HM06_UNRESOLVED_F12_DEG2 * area_deg2 if switches.diffuse else 0.0
        out["cxb_resolved_fraction_05_2"] = resolved / (total + unresolved)
    t_s = float(obs.exposure_ks) * 1e3
    rates, per_pixel = [], []
    for seed in seeds[: max(4, n_views // 4)]:
        model = draw_sky(seed, wide, switches, params)
        sky_counts = model.expected_image().sum() + model.diffuse_counts_per_pixel * model.npix**2
        rates.append(sky_counts / t_s / float(obs.fov_arcmin) ** 2)
        per_pixel.append(draw_sky(seed, obs, dataclasses.replace(switches, los_haloes=False), params)
                         .diffuse_counts_per_pixel)
    if switches.los_haloes:
        out.update(halo_statistics(params))
    particle = particle_background_rate((0.3, 10.0))
    out["background_rate_chip_cts_s"] = (particle + float(np.mean(rates))) * CHIP_ARCMIN2
    pixel_arcmin2 = (float(obs.fov_arcmin) / int(obs.npix)) ** 2
    out["background_counts_per_pixel"] = (particle_background_rate(obs.band_kev) * t_s * pixel_arcmin2
                                          + float(np.mean(per_pixel)))
    return out
