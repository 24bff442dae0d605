"""The chain's settings, the observation it renders and its error."""
from __future__ import annotations

import dataclasses
from typing import Mapping

import numpy as np

from benchmark.core.errors import ClusterMassError

__all__ = ["ChainError", "ChainSettings", "ChainObservation"]


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
        central 1/2**l of the box at a cell size 2**(levels-1-l) fine cells. A gas grid
        whose ``meta["max_cell_coarsening"]`` is set gets no coarser cells than that:
        population version 2's ICM fluctuations ask for 2, so 3 levels become 2x cells over
        the box and grid cells in the central quarter, and the chain resolves every mode of
        the field (``pipeline.chain.yt_grid.level_plan``; make_photons ~1.2 s instead of
        ~0.4 s per epoch at 128^3).
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
        Cosmology for pyXSIM's distances; None -> benchmark.core.cosmology's (Planck 2015 /
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
    instrument: str | None = None
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
