"""The real X-ray chain: yt -> pyXSIM -> (fast detector | SOXS) -> 128x128 counts.

One cluster-epoch is handed to yt once, pyXSIM draws its photons ONCE
(``make_photons``, the project's APEC-format table via ``CIESourceModel("apec",
model_root=, model_vers=)``), and every projection (x, y, z) re-uses that photon
list (``project_photons`` with the analytic ``wabs`` absorption, z_obs, 100 ks,
collecting area = ARF peak). The detector step is either SOXS
``instrument_simulator`` with the ACIS-I of :mod:`pipeline.instrument`
(``detector="soxs"``, the reference) or the project's own ``detector="fast"`` step
with the same physics and the same files: SOXS's ARF thinning rule, the RMF's
probability of landing in the 0.5-7 keV band (event energy uniform within the
channel, as SOXS), the instrument's Gaussian PSF and its particle-background
spectrum. Validated against SOXS in ``tests/pipeline/test_chain.py`` (total counts
within 2 %, radial profile within 3 %, same photons in); it refuses instruments
with dither, several chips or a non-Gaussian PSF. Images are oriented like
:mod:`pipeline.analytic` (tested), and expected counts and profiles agree with it.

Where the time goes (cProfile; 2 shared cores, load average 2-6 from other
developers' jobs; 128^3 GasGrid, one cluster-epoch = 3 views)
------------------------------------------------------------------------------
================================  =========  ==========================================
stage                             naive      this module
================================  =========  ==========================================
yt dataset per epoch              ~1.0 s     0.2-0.3 s: one dataset per grid geometry
                                             per process, arrays swapped (yt derives
                                             its field list in ~1-1.5 s per dataset)
APEC table fold per epoch         1-7 s      once per process and redshift (cached)
make_photons, 2.1 M cells         8.4 s      0.5-0.8 s typical, 1.9 s for M ~ 1e15:
                                             nested grid, 98 k cells (pyXSIM's cost is a
                                             Python loop over 100-cell chunks and cells)
project_photons per view          0.05-0.6 s same (scales with photons; 0.4-7.5 keV
                                             keeps 99.95 % of band counts with 15 % fewer)
detector per view (SOXS)          0.6-3.1 s  fast step 0.01-0.35 s (33 k-500 k events);
                                             SOXS's time is its per-channel RMF loop
================================  =========  ==========================================

On H1's gas for an evenly spaced sample of the ``full`` population: 0.9-1.4 s per
typical epoch, 4.9 s for log M = 15.15; mean 1.7 s per epoch (0.56 s per view)
+ 0.26 s gas building, peak RSS 0.6 GiB. Full preset (2,632 epochs): ~85 min on
one worker, ~45 min on 2 workers.

Choices
-------
* Nested grid (``grid="nested"``, 3 levels): level l covers the central 1/2**l of
  the box with cells 2**(2-l) fine cells wide; each coarse cell keeps the emission
  measure (density = sqrt(<rho^2>)) and the EM-weighted kT and Z of the cells it
  replaces, so counts per annulus are unchanged (tested against the analytic
  renderer); structure beyond the central half-box is smoothed over 4 pixels where
  counts per pixel are far below one. ``grid="uniform"`` is the exact alternative.
* Grid rather than Monte-Carlo cells (``yt.load_particles``): sampled cells add shot
  noise unless there are many more cells than photons, i.e. more cells than the
  nested grid for the same fidelity; TNG cutouts are particle data anyway
  (:mod:`pipeline.tng`).
* 120 log-spaced energy bins over 0.4-7.5 keV (observer frame); 30 bins bias the
  counts by -0.3 %, 120 and 1000 agree to 0.05 %. No thermal broadening, no
  Doppler shifts (irrelevant for a broad-band image).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from benchmark.core.errors import ClusterMassError


KEV_PER_K = 8.617333262e-8
ACISI_INSTRUMENT_DEFAULT = None  # None -> ask pipeline.instrument.register_acisi()

log = logging.getLogger(__name__)


def _pyxsim():
    """pyXSIM with its per-cell progress bars silenced (they would drown the per-view bar)."""
    import functools

    import pyxsim
    import pyxsim.photon_list
    import pyxsim.source_models.sources
    import soxs.spectra.thermal_spectra
    from tqdm.auto import tqdm

    for module in (pyxsim.photon_list, pyxsim.source_models.sources, soxs.spectra.thermal_spectra):
        module.tqdm = functools.partial(tqdm, disable=True)
    return pyxsim


class ChainError(ClusterMassError):
    """Bad input or missing files for the X-ray chain."""


@dataclasses.dataclass(frozen=True)
class ChainSettings:
    """Numerical settings of the chain (all recorded in the dataset card).

    Parameters
    ----------
    model_root, model_vers : str
        Directory and version string of the APEC-format emission table
        (``apec_v{vers}_coco.fits`` / ``_line.fits``).
    emin_kev, emax_kev, n_energy_bins, binscale :
        Observer-frame energy grid of pyXSIM's spectral model (0.4-7.5 keV keeps
        99.95 % of the 0.5-7 keV band counts after the RMF).
    thermal_broad : bool
        Thermal line broadening (irrelevant for a broad-band image; off is cheaper).
    grid : {"nested", "uniform"}
        How a GasGrid is handed to yt.
    nested_levels : int
        Number of nested levels (1 == uniform). Level l (0 = coarsest) covers the
        central 1/2**l of the box at a cell size 2**(levels-1-l) fine cells.
    area_cm2 : float or None
        pyXSIM collecting area; None -> ARF peak x 1.0001 (SOXS needs >= peak).
    detector : {"fast", "soxs"}
    instrument : str or None
        SOXS instrument name; None -> ``pipeline.instrument.register_acisi()``.
    no_shifting : bool
        Skip Doppler shifts in project_photons (line-of-sight velocities of ~1000 km/s
        move energies by ~0.3 %, irrelevant for a broad-band image).
    kt_min_kev, kt_max_kev : float
        Gas outside this temperature range emits nothing (pyXSIM's cut).
    hubble_constant, omega_matter, omega_lambda :
        Cosmology for pyXSIM's distances; None -> pipeline.observation's (Planck 2015 /
        TNG, flat), which sized the gas grid (cell = pixel at z_obs) and the analytic renderer.
    reuse_dataset : bool
        Re-use one yt dataset per grid geometry within a process (see gas_to_yt_cached).
    """

    model_root: str | None = None
    model_vers: str | None = None
    emin_kev: float = 0.4
    emax_kev: float = 7.5
    n_energy_bins: int = 120
    binscale: str = "log"
    thermal_broad: bool = False
    grid: str = "nested"
    nested_levels: int = 3
    area_cm2: float | None = None
    detector: str = "fast"
    instrument: str | None = ACISI_INSTRUMENT_DEFAULT
    no_shifting: bool = True
    reuse_dataset: bool = True
    kt_min_kev: float = 0.08
    kt_max_kev: float = 64.0
    hubble_constant: float | None = None
    omega_matter: float | None = None
    omega_lambda: float | None = None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class ChainObservation:
    """What is observed: redshift, exposure, image geometry and band."""

    redshift: float = 0.17
    exposure_ks: float = 100.0
    npix: int = 128
    fov_arcmin: float = 16.9
    band_kev: tuple = (0.5, 7.0)
    sky_center_deg: tuple = (30.0, 45.0)
    nH_1e22: float = 0.02

    @property
    def pixel_arcsec(self) -> float:
        return self.fov_arcmin * 60.0 / self.npix

    @classmethod
    def from_any(cls, obs) -> "ChainObservation":
        """Accept a ChainObservation, a mapping or any object with these attribute names."""
        if isinstance(obs, cls):
            return obs
        if obs is None:
            return cls()
        get = obs.get if isinstance(obs, Mapping) else (lambda k, d=None: getattr(obs, k, d))
        kw = {}
        for f in dataclasses.fields(cls):
            val = get(f.name, None)
            if val is None and f.name == "redshift":
                val = get("z_obs", None)
            if val is None and f.name == "nH_1e22":
                val = get("nh_1e22", None)
            if val is not None:
                kw[f.name] = tuple(val) if isinstance(val, (list, np.ndarray)) else val
        return cls(**kw)


# ----------------------------------------------------------------------------- setup


def _quiet_libraries():
    """yt/pyXSIM/SOXS log every step at INFO and draw tqdm bars: keep workers quiet."""
    os.environ.setdefault("TQDM_DISABLE", "1")
    import yt

    yt.set_log_level(40)
    for name in ("pyxsim", "soxs", "yt"):
        logging.getLogger(name).setLevel(logging.WARNING)
    try:
        pyxsim = _pyxsim()
        import soxs

        soxs.mylog.setLevel(logging.WARNING)
        pyxsim.mylog.setLevel(logging.WARNING)
    except (ImportError, AttributeError):  # pragma: no cover - logger names changed
        pass


def resolve_instrument(settings: ChainSettings) -> str:
    """The SOXS instrument name to use, registering the project's ACIS-I when needed."""
    if settings.instrument:
        import soxs

        if settings.instrument not in soxs.instrument_registry:
            raise ChainError(
                f"SOXS instrument {settings.instrument!r} is not registered; call "
                "pipeline.instrument.register_acisi() first or leave ChainSettings.instrument=None."
            )
        return settings.instrument
    try:
        from pipeline.instrument import register_acisi
    except ImportError as exc:
        raise ChainError(
            "pipeline.instrument.register_acisi is not available; pass ChainSettings(instrument=NAME) "
            "naming an ACIS-I instrument registered with soxs.add_instrument_to_registry."
        ) from exc
    name = register_acisi()
    if isinstance(name, Mapping):
        name = name["name"]
    return str(name)


def emission_table(settings: ChainSettings) -> tuple[str, str]:
    """(model_root, model_vers) of the APEC-format table the chain reads.

    ``ChainSettings.model_root/model_vers`` when set, else
    :func:`pipeline.emission.resolve_apec` (``$CLUSTERMASS_APEC_DIR`` or the project's
    own table, written once).
    """
    if settings.model_root or settings.model_vers:
        if not (settings.model_root and settings.model_vers):
            raise ChainError("set both ChainSettings.model_root and model_vers, or neither")
        root, vers = str(settings.model_root), str(settings.model_vers)
    else:
        try:
            from pipeline.emission import resolve_apec
        except ImportError as exc:  # pragma: no cover
            raise ChainError(
                "no emission table: pass ChainSettings(model_root=DIR, model_vers=VERS) or install "
                "pipeline.emission"
            ) from exc
        tables = resolve_apec()
        root, vers = tables.root, tables.version
    missing = [
        str(Path(root) / f"apec_v{vers}_{kind}.fits")
        for kind in ("coco", "line")
        if not (Path(root) / f"apec_v{vers}_{kind}.fits").exists()
    ]
    if missing:
        raise ChainError(
            f"APEC-format emission table missing: {missing}; write it with "
            "pipeline.emission.write_apec_tables(DIR) or point model_root at real AtomDB tables."
        )
    return root, vers


def emission_table_checksums(settings: ChainSettings | None = None) -> dict:
    """SHA-256 of the emission table files the chain reads (for the dataset card)."""
    import hashlib

    from benchmark.dataset.checker import sha256_file

    root, vers = emission_table(settings or ChainSettings())
    out = {f"emission_table_{kind}": sha256_file(Path(root) / f"apec_v{vers}_{kind}.fits")
           for kind in ("coco", "line")}
    out["emission_table"] = hashlib.sha256(
        (out["emission_table_coco"] + out["emission_table_line"]).encode()
    ).hexdigest()
    return out


# ----------------------------------------------------------------------------- gas -> yt


def _gas_arrays(gas):
    """Validate a GasGrid-like object and return (rho, kT, Z, cell_kpc)."""
    try:
        rho = np.asarray(gas.density_gcm3, dtype="float64")
        kt = np.asarray(gas.kT_keV, dtype="float64")
        zmet = np.asarray(gas.metallicity_zsun, dtype="float64")
        cell_kpc = float(gas.cell_kpc)
    except AttributeError as exc:
        raise ChainError(
            f"gas must provide density_gcm3, kT_keV, metallicity_zsun and cell_kpc ({exc})"
        ) from exc
    n = rho.shape[0]
    if rho.ndim != 3 or rho.shape != (n, n, n) or kt.shape != rho.shape or zmet.shape != rho.shape:
        raise ChainError(
            f"gas arrays must be cubes of one shape (n,n,n); got {rho.shape}, {kt.shape}, {zmet.shape}"
        )
    if not (np.all(np.isfinite(rho)) and np.all(np.isfinite(kt)) and np.all(np.isfinite(zmet))):
        raise ChainError("gas arrays contain NaN or inf; fix the gas model before rendering")
    if np.any(rho < 0) or np.any(kt <= 0) or cell_kpc <= 0:
        raise ChainError("gas density must be >= 0, kT > 0 keV and cell_kpc > 0")
    return rho, kt, zmet, cell_kpc


def _zero_velocities(shape):
    # pyXSIM reads velocities in make_photons; a GasGrid carries none (no Doppler shifts).
    zero = np.zeros(shape, dtype="float32")
    return {("gas", f"velocity_{ax}"): (zero, "cm/s") for ax in "xyz"}


def _block_reduce_em(rho, kt, zmet, factor):
    """Coarsen by `factor`, conserving emission measure (rho^2) and EM-weighting kT, Z."""
    if factor == 1:
        return rho, kt, zmet
    n = rho.shape[0] // factor

    def blocks(a):
        return a.reshape(n, factor, n, factor, n, factor)

    rho2 = blocks(rho * rho).mean(axis=(1, 3, 5))
    w = blocks(rho * rho)
    wsum = w.sum(axis=(1, 3, 5))
    safe = np.where(wsum > 0, wsum, 1.0)
    kt_c = np.where(wsum > 0, (w * blocks(kt)).sum(axis=(1, 3, 5)) / safe, blocks(kt).mean(axis=(1, 3, 5)))
    z_c = np.where(wsum > 0, (w * blocks(zmet)).sum(axis=(1, 3, 5)) / safe, blocks(zmet).mean(axis=(1, 3, 5)))
    return np.sqrt(rho2), kt_c, z_c


_DS_CACHE: dict = {}
# The cached yt dataset and source models are per process; serialise threads that share them.
_RENDER_LOCK = threading.RLock()


def gas_to_yt_cached(gas, grid: str = "nested", nested_levels: int = 3):
    """Like :func:`gas_to_yt`, re-using one yt dataset per geometry in this process.

    yt spends ~1-1.5 s per new dataset deriving its field list, more than pyXSIM's
    photon generation for most clusters. Clusters of one preset share the grid
    geometry (same n, cell size, levels), so the dataset is built once and only
    its arrays are replaced (``stream_handler.fields``) and the grid caches cleared.
    ``test_chain.py`` checks that a re-used dataset renders exactly as a fresh one.
    """
    rho = np.asarray(gas.density_gcm3)
    key = (grid, int(nested_levels), rho.shape, float(gas.cell_kpc))
    grids = _nested_arrays(gas, grid, nested_levels)
    cached = _DS_CACHE.get(key)
    if cached is None:
        ds, n_cells = _load_yt(grids, rho.shape[0] * float(gas.cell_kpc))
        _DS_CACHE.clear()  # one geometry at a time keeps memory flat
        _DS_CACHE[key] = (ds, n_cells)
        return ds, n_cells
    ds, n_cells = cached
    handler = ds.stream_handler
    for gid, g in enumerate(grids):
        for field in _GRID_FIELDS:
            handler.fields[gid][field] = g[field][0]
    for yt_grid in ds.index.grids:
        yt_grid.clear_data()
    return ds, n_cells


_GRID_FIELDS = [("gas", "density"), ("gas", "temperature"), ("gas", "metallicity")] + [
    ("gas", f"velocity_{ax}") for ax in "xyz"
]


def gas_to_yt(gas, grid: str = "nested", nested_levels: int = 3):
    """Hand a GasGrid to yt (centred at the origin, kpc); returns (ds, n_cells).

    ``grid="nested"`` builds ``nested_levels`` levels: level l covers the central
    1/2**l of the box with cells 2**(levels-1-l) fine cells wide, each coarse cell
    conserving the emission measure of what it replaces.
    """
    grids = _nested_arrays(gas, grid, nested_levels)
    return _load_yt(grids, np.asarray(gas.density_gcm3).shape[0] * float(gas.cell_kpc))


def _load_yt(grids, box_kpc):
    import yt

    half = 0.5 * box_kpc
    bbox = np.array([[-half, half]] * 3)
    common = dict(length_unit="kpc", mass_unit="g", time_unit="s", default_species_fields="ionized")
    n_cells = int(sum(np.prod(g["dimensions"]) for g in grids))
    if len(grids) == 1:
        data = {f: grids[0][f] for f in _GRID_FIELDS}
        ds = yt.load_uniform_grid(data, grids[0]["dimensions"], bbox=bbox, nprocs=1, **common)
    else:
        ds = yt.load_amr_grids(grids, grids[0]["dimensions"], bbox=bbox, refine_by=2, **common)
    return ds, n_cells


def _nested_arrays(gas, grid: str = "nested", nested_levels: int = 3):
    """The yt grid dictionaries (one per level, coarsest first) for a GasGrid."""
    """Hand a GasGrid to yt (centred at the origin, kpc); returns (ds, n_cells).

    ``grid="nested"`` builds ``nested_levels`` levels: level l covers the central
    1/2**l of the box with cells 2**(levels-1-l) fine cells wide, each coarse cell
    conserving the emission measure of what it replaces.
    """
    rho, kt, zmet, cell_kpc = _gas_arrays(gas)
    n = rho.shape[0]
    half = 0.5 * n * cell_kpc
    if grid not in ("uniform", "nested"):
        raise ChainError(f"ChainSettings.grid must be 'uniform' or 'nested', got {grid!r}")
    levels = 1 if grid == "uniform" else max(1, int(nested_levels))
    top = 2 ** (levels - 1)
    if n % (top * top) != 0:
        raise ChainError(
            f"grid size {n} must be divisible by {top * top} for {levels} nested levels; "
            "use grid='uniform' or fewer nested_levels"
        )
    grids = []
    for lev in range(levels):
        factor = 2 ** (levels - 1 - lev)
        width = n // 2**lev  # fine cells covered by this level
        lo = (n - width) // 2
        sl = slice(lo, lo + width)
        r, t, z = _block_reduce_em(rho[sl, sl, sl], kt[sl, sl, sl], zmet[sl, sl, sl], factor)
        left = -half + lo * cell_kpc
        grids.append(
            {
                "left_edge": [left] * 3,
                "right_edge": [left + width * cell_kpc] * 3,
                "level": lev,
                "dimensions": list(r.shape),
                ("gas", "density"): (r, "g/cm**3"),
                ("gas", "temperature"): (t / KEV_PER_K, "K"),
                ("gas", "metallicity"): (z, "Zsun"),
                **_zero_velocities(r.shape),
            }
        )
    return grids


# ----------------------------------------------------------------------------- responses


class _Responses:
    """ARF, RMF band response and particle background of one SOXS instrument (cached)."""

    _cache: dict = {}

    def __init__(self, instrument: str, band_kev):
        import soxs
        from soxs.background.diffuse import read_instr_spectrum
        from soxs.response import AuxiliaryResponseFile, RedistributionMatrixFile
        from soxs.utils import get_data_file

        spec = soxs.instrument_registry[instrument]
        self.spec = spec
        psf = spec.get("psf")
        self.psf_fwhm_arcsec = float(psf[1]) if psf is not None and psf[0] == "gaussian" else 0.0
        # What the fast detector does not model: say so instead of silently differing from SOXS.
        self.fast_incompatible = []
        if psf is not None and psf[0] != "gaussian":
            self.fast_incompatible.append(f"a {psf[0]!r} PSF (only Gaussian is modelled)")
        if spec.get("dither"):
            self.fast_incompatible.append("dither")
        chips = spec.get("chips")
        if chips is not None and len(chips) != 1:
            self.fast_incompatible.append(f"{len(chips)} chips (one gap-free chip is modelled)")
        self.arf = AuxiliaryResponseFile(get_data_file(spec["arf"]))
        rmf = RedistributionMatrixFile(get_data_file(spec["rmf"]))
        self.max_area = float(self.arf.max_area)
        eb = rmf.ebounds_data
        e_lo = np.asarray(eb["E_MIN"], dtype=float)
        e_hi = np.asarray(eb["E_MAX"], dtype=float)
        channels = np.asarray(eb["CHANNEL"], dtype=int)
        # SOXS assigns an event energy uniformly within its channel; an event is in
        # the band when that energy is: the in-band fraction of each channel.
        lo, hi = band_kev
        frac = np.clip((np.minimum(e_hi, hi) - np.maximum(e_lo, lo)) / (e_hi - e_lo), 0.0, 1.0)
        chan_frac = dict(zip(channels, frac))
        # Band response per RMF energy row: sum of the normalised row over band channels.
        n_rows = len(rmf.elo)
        band = np.zeros(n_rows)
        for k in range(n_rows):
            w = np.nan_to_num(np.asarray(rmf.data["MATRIX"][k], dtype="float64"))
            tot = w.sum()
            if tot <= 0:
                continue
            ch = rmf._make_channels(k)
            if len(ch) == 0:
                continue
            band[k] = np.sum(w * np.array([chan_frac.get(c, 0.0) for c in ch])) / tot
        self.rmf_elo = np.asarray(rmf.elo, dtype=float)
        self.rmf_ehi = np.asarray(rmf.ehi, dtype=float)
        self.band_response = band
        # Particle background: count rate per channel per arcmin^2 (SOXS's convention).
        self.bkg_rate_per_arcmin2 = 0.0
        if spec.get("bkgnd") is not None:
            bfile, barea = spec["bkgnd"][0], spec["bkgnd"][1]
            rate = np.asarray(read_instr_spectrum(bfile, barea), dtype=float)
            n = min(rate.size, frac.size)
            self.bkg_rate_per_arcmin2 = float(np.sum(rate[:n] * frac[:n]))

    @classmethod
    def get(cls, instrument: str, band_kev):
        key = (instrument, tuple(band_kev))
        if key not in cls._cache:
            cls._cache[key] = cls(instrument, band_kev)
        return cls._cache[key]

    def band_probability(self, energy_kev):
        """P(detected in band | photon of energy E arrives) = ARF(E)/A_max x RMF band fraction.

        ARF linearly interpolated at bin centres (as SOXS's ``interpolate_area``), the
        RMF row chosen by ``elo <= E < ehi`` (as SOXS's ``scatter_energies``).
        """
        energy_kev = np.asarray(energy_kev, dtype="float64")
        area = np.interp(energy_kev, self.arf.emid, self.arf.eff_area, left=0.0, right=0.0)
        k = np.searchsorted(self.rmf_elo, energy_kev, side="right") - 1
        kc = np.clip(k, 0, len(self.band_response) - 1)
        band = np.where((k >= 0) & (energy_kev < self.rmf_ehi[kc]), self.band_response[kc], 0.0)
        return area * band / self.max_area


# ----------------------------------------------------------------------------- imaging


def _sky_to_pixel(ra_deg, dec_deg, obs: ChainObservation):
    """Gnomonic (TAN) projection about the field centre, to 0-based pixel coordinates."""
    ra0, dec0 = np.deg2rad(obs.sky_center_deg[0]), np.deg2rad(obs.sky_center_deg[1])
    ra, dec = np.deg2rad(ra_deg), np.deg2rad(dec_deg)
    cosc = np.sin(dec0) * np.sin(dec) + np.cos(dec0) * np.cos(dec) * np.cos(ra - ra0)
    xi = np.cos(dec) * np.sin(ra - ra0) / cosc
    eta = (np.cos(dec0) * np.sin(dec) - np.sin(dec0) * np.cos(dec) * np.cos(ra - ra0)) / cosc
    scale = np.rad2deg(1.0) * 3600.0 / obs.pixel_arcsec  # pixels per radian
    c = 0.5 * (obs.npix - 1)
    # RA increases to the left (east), as in a sky image.
    return c - xi * scale, c + eta * scale


def _bin_image(x, y, npix):
    """Counts per pixel; pixel i spans [i-0.5, i+0.5) in 0-based pixel coordinates."""
    ix = np.floor(x + 0.5).astype(np.int64)
    iy = np.floor(y + 0.5).astype(np.int64)
    ok = (ix >= 0) & (ix < npix) & (iy >= 0) & (iy < npix)
    return np.bincount(iy[ok] * npix + ix[ok], minlength=npix * npix).reshape(npix, npix).astype(np.int32)


def _fast_detector(events, obs: ChainObservation, resp: _Responses, area_cm2, prng):
    """ARF thinning, RMF band redistribution, Gaussian PSF, binning; then background."""
    energy = events["eobs"]
    # SOXS keeps a photon with probability ARF(E)/A_max after drawing N ~ Poisson(sum ARF/area):
    # the same in distribution as keeping each with ARF(E)/area (Poisson thinning).
    u = prng.uniform(size=energy.size)
    keep = u < resp.band_probability(energy) * (resp.max_area / area_cm2)
    x, y = _sky_to_pixel(events["xsky"][keep], events["ysky"][keep], obs)
    sigma_pix = resp.psf_fwhm_arcsec / 2.3548 / obs.pixel_arcsec
    if sigma_pix > 0:
        x += prng.normal(scale=sigma_pix, size=x.size)
        y += prng.normal(scale=sigma_pix, size=y.size)
    src = _bin_image(x, y, obs.npix)
    bkg_expected = resp.bkg_rate_per_arcmin2 * obs.exposure_ks * 1e3 * obs.fov_arcmin**2
    bkg = prng.poisson(bkg_expected / obs.npix**2, size=(obs.npix, obs.npix)).astype(np.int32)
    return src + bkg, int(src.sum()), float(bkg_expected)


def _soxs_detector(events, obs: ChainObservation, instrument: str, resp: _Responses, area_cm2, seed, workdir):
    """SOXS instrument_simulator (reference path); returns the 0.5-7 keV image."""
    import soxs
    from astropy.io import fits

    flux = float(np.sum(events["eobs"]) * 1.602176634e-9 / (obs.exposure_ks * 1e3) / area_cm2)
    src = {
        "ra": [events["xsky"]],
        "dec": [events["ysky"]],
        "energy": [events["eobs"]],
        "flux": [flux],
        "src_names": ["cluster"],
    }
    out = Path(workdir) / f"soxs_evt_{seed}.fits"
    soxs.instrument_simulator(
        src,
        str(out),
        (obs.exposure_ks, "ks"),
        instrument,
        list(obs.sky_center_deg),
        overwrite=True,
        instr_bkgnd=True,
        foreground=False,
        ptsrc_bkgnd=False,
        prng=int(seed),
    )
    with fits.open(out) as f:
        d = f["EVENTS"].data
        e_kev = np.asarray(d["ENERGY"], dtype=float) / 1000.0
        ra, dec = _pix_to_world(f["EVENTS"].header, d["X"], d["Y"])
    out.unlink()
    lo, hi = obs.band_kev
    sel = (e_kev >= lo) & (e_kev < hi)
    x, y = _sky_to_pixel(ra[sel], dec[sel], obs)
    img = _bin_image(x, y, obs.npix)
    bkg_expected = resp.bkg_rate_per_arcmin2 * obs.exposure_ks * 1e3 * obs.fov_arcmin**2
    return img, int(img.sum() - bkg_expected), float(bkg_expected)


def _pix_to_world(header, x, y):
    from astropy import wcs

    w = wcs.WCS(naxis=2)
    w.wcs.crval = [header["TCRVL2"], header["TCRVL3"]]
    w.wcs.crpix = [header["TCRPX2"], header["TCRPX3"]]
    w.wcs.cdelt = [header["TCDLT2"], header["TCDLT3"]]
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    return w.wcs_pix2world(np.asarray(x), np.asarray(y), 1)


# ----------------------------------------------------------------------------- public API


_SOURCE_MODELS: dict = {}


_GRID_SOURCE_FIELDS = {
    "temperature_field": ("gas", "temperature"),
    "emission_measure_field": ("gas", "emission_measure"),
    "Zmet": ("gas", "metallicity"),
}


def make_source_model(settings: ChainSettings, seed: int, fields: Mapping | None = None):
    """pyXSIM CIE source model reading the project's APEC-format table.

    Models are cached per process and settings, and their redshifted spectral
    table per redshift: reading and folding the APEC-format FITS table costs
    ~1-2 s, more than the rest of an epoch's photon generation for most
    clusters. Only the random state differs between epochs.
    """
    pyxsim = _pyxsim()

    root, vers = emission_table(settings)
    fields = dict(fields or _GRID_SOURCE_FIELDS)
    key = (
        tuple(sorted(fields.items())), root, vers, settings.emin_kev, settings.emax_kev,
        settings.n_energy_bins, settings.binscale, settings.thermal_broad,
        settings.kt_min_kev, settings.kt_max_kev,
    )
    model = _SOURCE_MODELS.get(key)
    if model is None:
        model = pyxsim.CIESourceModel(
            "apec",
            settings.emin_kev,
            settings.emax_kev,
            settings.n_energy_bins,
            fields["Zmet"],
            temperature_field=fields["temperature_field"],
            emission_measure_field=fields["emission_measure_field"],
            binscale=settings.binscale,
            kT_min=settings.kt_min_kev,
            kT_max=settings.kt_max_kev,
            thermal_broad=settings.thermal_broad,
            model_root=root,
            model_vers=vers,
        )
        _memoise_prepare_spectrum(model.spectral_model)
        _memoise_table_reads(model.spectral_model.cgen)
        _SOURCE_MODELS[key] = model
    model.prng = np.random.RandomState(int(seed) % 2**32)
    return model


def _memoise_table_reads(cgen):
    """Keep the APEC table rows in memory: astropy parses each temperature's HDU in
    ~30 ms, i.e. seconds per redshift for a 200-temperature table; with the rows cached
    a new redshift (survey-like observations) only re-bins them."""
    original = cgen._preload_data
    rows: dict = {}

    def preload(index):
        if index not in rows:
            line, coco = original(index)
            rows[index] = (
                {k: np.array(v) for k, v in line.items()},
                {k: np.array(v) for k, v in coco.items()},
            )
        return rows[index]

    cgen._preload_data = preload


def _memoise_prepare_spectrum(spectral_model):
    original = spectral_model.prepare_spectrum
    tables: dict = {}
    names = ("cosmic_spec", "metal_spec", "var_spec", "si")

    def prepare_spectrum(zobs):
        key = round(float(zobs), 12)
        if key not in tables:
            original(zobs)
            tables[key] = {n: getattr(spectral_model, n) for n in names}
        for n, v in tables[key].items():
            setattr(spectral_model, n, v)

    spectral_model.prepare_spectrum = prepare_spectrum


def _cosmology(settings: ChainSettings):
    from yt.utilities.cosmology import Cosmology

    h, om, ol = 0.6774, 0.3089, 1.0 - 0.3089  # pipeline.observation's values
    try:
        from pipeline import observation as _o

        h, om, ol = _o.H, _o.OMEGA_M, 1.0 - _o.OMEGA_M
    except ImportError:  # pragma: no cover
        pass
    return Cosmology(
        hubble_constant=settings.hubble_constant if settings.hubble_constant is not None else h,
        omega_matter=settings.omega_matter if settings.omega_matter is not None else om,
        omega_lambda=settings.omega_lambda if settings.omega_lambda is not None else ol,
        omega_radiation=0.0,
    )


def _photon_seed(seeds: Sequence[int]) -> int:
    # One make_photons per cluster-epoch: its seed is derived from the views' seeds.
    return int(np.random.SeedSequence([int(s) for s in seeds] + [0xC0FFEE]).generate_state(1)[0])


def render_views(
    gas=None,
    axes: Sequence[str] = ("x", "y", "z"),
    obs=None,
    seeds: Sequence[int] = (0, 1, 2),
    settings: ChainSettings | None = None,
    workdir=None,
    *,
    ds=None,
    center_kpc=None,
    data_source=None,
    source_fields: Mapping | None = None,
    redshift: float | None = None,
):
    """Render one cluster-epoch along several axes with the real chain.

    Parameters
    ----------
    gas : GasGrid-like, optional
        ``density_gcm3``, ``kT_keV``, ``metallicity_zsun`` (n,n,n) and ``cell_kpc``
        (:class:`pipeline.gas.GasGrid`); the cluster sits at the box centre and the box
        is the image field at the view's redshift (``gas.redshift`` or ``obs.z_obs``).
    axes : sequence of {"x", "y", "z"}
        Projection axes; one image per axis, oriented like :mod:`pipeline.analytic`
        (along x ``[iy, iz]``, along y ``[ix, iz]``, along z ``[ix, iy]``).
    obs : pipeline.observation.Observation, ChainObservation or mapping
        z_obs (or redshift), exposure_ks, npix, fov_arcmin, band_kev, nH_1e22.
    seeds : sequence of int
        One seed per axis (the view's seed); the photon seed derives from all of them.
    settings : ChainSettings, optional
    workdir : path-like, optional
        Scratch folder for pyXSIM's photon/event files (deleted afterwards); use a
        local or tmpfs folder. A path given as the 5th positional argument is accepted.
    ds, center_kpc, data_source, source_fields : optional
        A yt dataset (e.g. :func:`pipeline.tng.load_cutout`), its centre (physical kpc,
        or a yt array with units), the region to render and the pyXSIM field names
        (temperature_field, emission_measure_field, Zmet), instead of ``gas``.
    redshift : float, optional
        Observed redshift (default: ``gas.redshift``, else ``obs.z_obs``).

    Returns
    -------
    list of (np.ndarray int32 (npix, npix), dict)
        Per view the image and ``info``: counts, source_counts, background_counts
        (expected), seed, axis, n_cells, n_photons_emitted, n_events_projected and
        ``timings`` (stage -> seconds; epoch-level stages are in the first view's
        only, so summing over views gives the epoch's cost).
    """
    with _RENDER_LOCK:
        return _render_views(gas, axes, obs, seeds, settings, workdir, ds, center_kpc, data_source,
                             source_fields, redshift)


def _render_views(gas, axes, obs, seeds, settings, workdir, ds, center_kpc, data_source, source_fields,
                  redshift):
    pyxsim = _pyxsim()

    if settings is not None and not isinstance(settings, ChainSettings):
        if workdir is None or isinstance(workdir, ChainSettings):
            settings, workdir = workdir, settings  # (gas, axes, obs, seeds, workdir[, settings])
        else:
            raise ChainError(f"settings must be a ChainSettings, got {type(settings).__name__}")
    settings = settings or ChainSettings()
    if redshift is None and gas is not None and getattr(gas, "redshift", None) is not None:
        redshift = float(gas.redshift)
    obs = ChainObservation.from_any(obs)
    if redshift is not None:
        obs = dataclasses.replace(obs, redshift=float(redshift))
    axes = tuple(axes)
    seeds = [int(s) for s in seeds]
    if len(seeds) != len(axes):
        raise ChainError(f"need one seed per axis: {len(axes)} axes, {len(seeds)} seeds")
    if any(a not in ("x", "y", "z") for a in axes):
        raise ChainError(f"axes must be among 'x', 'y', 'z'; got {axes}")
    if settings.detector not in ("fast", "soxs"):
        raise ChainError(f"ChainSettings.detector must be 'fast' or 'soxs', got {settings.detector!r}")
    if (gas is None) == (ds is None):
        raise ChainError("pass exactly one of gas= (a GasGrid) or ds= (a yt dataset)")
    emission_table(settings)
    _quiet_libraries()
    timings: dict[str, float] = {}

    t0 = time.perf_counter()
    instrument = resolve_instrument(settings)
    resp = _Responses.get(instrument, obs.band_kev)
    area = settings.area_cm2 if settings.area_cm2 else resp.max_area * 1.0001
    if area < resp.max_area:
        raise ChainError(
            f"area_cm2={area:.1f} is below the ARF peak {resp.max_area:.1f} cm^2: SOXS would draw "
            "more photons than exist; raise area_cm2 or leave it None"
        )
    if settings.detector == "fast" and resp.fast_incompatible:
        raise ChainError(
            f"instrument {instrument!r} has {', '.join(resp.fast_incompatible)}, which the fast detector "
            "does not model; use ChainSettings(detector='soxs') or pipeline.instrument.register_acisi()"
        )
    timings["setup"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    if gas is not None:
        loader = gas_to_yt_cached if settings.reuse_dataset else gas_to_yt
        ds, n_cells = loader(gas, settings.grid, settings.nested_levels)
        center = ds.arr([0.0, 0.0, 0.0], "kpc")
        source = ds.all_data()
    else:
        if hasattr(center_kpc, "units"):
            center = ds.arr(center_kpc.to_value("kpc"), "kpc")
        else:
            center = ds.arr(np.asarray(center_kpc, dtype=float), "kpc")
        source = data_source if data_source is not None else ds.all_data()
        n_cells = -1
    timings["yt_load"] = time.perf_counter() - t0

    workdir = Path(workdir) if workdir else Path(os.environ.get("TMPDIR", "/tmp"))
    workdir.mkdir(parents=True, exist_ok=True)
    tag = f"cm{os.getpid()}_{seeds[0]}"
    phot_prefix = str(workdir / f"{tag}_photons")
    pseed = _photon_seed(seeds)
    results = []
    try:
        t0 = time.perf_counter()
        model = make_source_model(settings, pseed, source_fields)
        timings["source_model"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        n_photons, _ = pyxsim.make_photons(
            phot_prefix,
            source,
            obs.redshift,
            (area, "cm**2"),
            (obs.exposure_ks, "ks"),
            model,
            center=center,
            cosmology=_cosmology(settings),
        )
        timings["make_photons"] = time.perf_counter() - t0
        for axis, seed in zip(axes, seeds):
            results.append(
                _render_one(phot_prefix, axis, seed, obs, settings, instrument, resp, area, workdir, tag)
            )
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(phot_prefix + ".h5")
    for i, (_, info) in enumerate(results):
        if i == 0:
            info["timings"] = {**timings, **info["timings"]}
        info["epoch_timings"] = dict(timings)
        info["n_cells"] = int(n_cells)
        info["n_photons_emitted"] = int(n_photons)
    return results


# How pyXSIM's sky axes map onto the analytic renderer's image indexing (measured by
# test_chain.py::test_orientation_matches_analytic): transpose, then flip rows/cols.
_ORIENT = {"x": (True, False, False), "y": (False, False, False), "z": (True, False, False)}


def _orient(img, axis):
    transpose, flip_rows, flip_cols = _ORIENT[axis]
    if transpose:
        img = img.T
    if flip_rows:
        img = img[::-1, :]
    if flip_cols:
        img = img[:, ::-1]
    return np.ascontiguousarray(img)


def _render_one(phot_prefix, axis, seed, obs, settings, instrument, resp, area, workdir, tag):
    import h5py
    pyxsim = _pyxsim()

    prng = np.random.RandomState(seed % 2**32)
    info: dict[str, Any] = {"axis": axis, "seed": int(seed)}
    timings = {}
    evt_prefix = str(Path(workdir) / f"{tag}_{axis}_events")
    t0 = time.perf_counter()
    pyxsim.project_photons(
        phot_prefix,
        evt_prefix,
        axis,
        list(obs.sky_center_deg),
        absorb_model="wabs",
        nH=obs.nH_1e22,
        no_shifting=settings.no_shifting,
        prng=prng,
    )
    try:
        with h5py.File(evt_prefix + ".h5", "r") as f:
            d = f["data"]
            events = {k: d[k][()] for k in ("xsky", "ysky", "eobs")}
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(evt_prefix + ".h5")
    timings["project_photons"] = time.perf_counter() - t0
    info["n_events_projected"] = int(events["eobs"].size)
    t0 = time.perf_counter()
    if settings.detector == "fast":
        img, src_counts, bkg = _fast_detector(events, obs, resp, area, prng)
    else:
        img, src_counts, bkg = _soxs_detector(events, obs, instrument, resp, area, seed, workdir)
    img = _orient(img, axis)
    timings["detector"] = time.perf_counter() - t0
    info["timings"] = timings
    info["counts"] = int(img.sum())
    info["source_counts"] = int(src_counts)
    info["background_counts"] = float(bkg)
    return img, info
