"""The 3D intracluster gas of one cluster epoch on a uniform grid, and its true luminosities.

``build_gas_grid(row, grid, rng)`` turns one population row (:mod:`pipeline.population`) into
density, temperature and metallicity cubes; ``view_truth(gas, row, axis)`` measures the true
0.5-2 keV rest-frame luminosities of one projection from those cubes.

Grid convention
---------------
Arrays are indexed ``[ix, iy, iz]``.  Cell ``i`` along any axis has its centre at
``(i + 0.5 - npix/2) * cell_kpc`` kpc, so the cluster centre (the origin) is the corner
shared by the eight central cells, which projects onto the image centre (pixel
``npix/2 - 0.5`` in 0-based pixel coordinates).  The box side is the image field of view
in physical kpc at the observing redshift, so with ``npix`` equal to the image's, a
projection along x, y or z puts one column of cells on one image pixel.  Projecting along
``x`` gives a map indexed ``[iy, iz]``, along ``y`` ``[ix, iz]``, along ``z`` ``[ix, iy]``.

Physics (references in :data:`pipeline.population.REFERENCES`)
----------------------------------------------------------------
* Density: Vikhlinin et al. (2006, eq. 3) with alpha = 0, gamma = 3:
  n_p n_e ~ (1 + x^2/rc^2)^(-3 beta) (1 + x^3/rs^3)^(-eps/3) + C^2 (1 + x^2/rc2^2)^(-3),
  the second (compact) term only for cool cores, C = 10^cc_contrast_dex.  Evaluated on the
  ellipsoidal radius of a triaxial, randomly oriented shape with unit axis product (the
  volume inside each isodensity surface is that of the sphere), normalised so that the gas
  mass inside the R500c sphere equals ``gas_fraction * M500c`` *on the grid* (the analytic
  normalisation is within a few per cent; the grid correction is kept in ``norm_correction``).
* Temperature: the universal profile of Vikhlinin et al. (2006, eq. 9 with their average
  parameters): T/T0 = t_cool(x) / (1 + (x/0.6)^2)^0.45 with t_cool = (y + t_min)/(y + 1),
  y = (x/0.045)^1.9 (x = r/R500c); t_min ~ 0.45 for cool cores and ~ 0.9 for the rest.
  T0 is set so that the emission-weighted T in 0.15-1 R500c equals the row's ``t500_kev``
  (a T_X as in the M-T relation of Vikhlinin et al. 2009).
* Metallicity: Z_out + (Z_c - Z_out) / (1 + (x / x_Z)^2), central rise in cool cores
  (De Grandi & Molendi 2001).
* Core sampling: cells within 0.15 R500c of the core carry the emission-weighted average
  of 4^3 sub-samples (density sqrt(<rho^2>), T and Z weighted by rho^2), so a cool core
  narrower than a cell keeps its luminosity in the cube that the renderers project.
* Subclumps: ``n_subclumps`` extended beta-model clumps (rc = 0.2 R500 of the subhalo,
  truncated at 3 rc), mu = m_sub/M500c from the subhalo mass function (Giocoli et al. 2010;
  row columns subclump_slope, subclump_mu_min/max), gas mass subclump_retained * mu *
  gas_fraction * M500c, at 0.15-1.3 R500c, 0.6 times the local temperature.
  They are part of the cluster's gas budget inside R500c.
* Merger: a companion of mass M500c / merger_ratio with its own compact beta model
  (rc = 0.1 R500 of the companion, gas stripped beyond 0.5 of its R500), gas fraction
  (f_gas M_comp inside its R500 before stripping) and temperature, at merger_sep_frac R500c;
  the main gas distribution is displaced by core_offset_frac R500c and its core radius
  puffed up by rc_boost (Poole et al. 2006).  The companion is extra gas: the gas model is
  built from the main cluster's M500c, R500c and gas fraction (:func:`main_halo`); at
  population version 2 the catalog's M500c / R500c are a halo finder's, companion inside
  R500c included, and the true luminosities are measured in that R500c.
* ICM structure (population version 2, :mod:`pipeline.icm`): a log-normal density and
  temperature fluctuation field with a turbulent spectrum (one per cluster epoch, shared by
  its projections) and, in a share of cool cores, a spiral sloshing cold front, both on the
  main halo's gas before the subclumps and the mass normalisation (so the gas mass inside
  R500c is still ``gas_fraction * M500c``).
* Core observables (:func:`core_state`, population version 2's floors and the report): the
  spherically averaged 1D model's entropy K = kT n_e^(-2/3) at the centre (Cavagnolo et al.
  2009), n_e at 10 kpc and the cooling time at 20 kpc with the Tozzi & Norman (2001)
  cooling function.

Units: density g/cm^3, temperature keV, metallicity solar (Anders & Grevesse 1989), lengths
physical kpc, luminosities erg/s.
"""
from __future__ import annotations

import dataclasses
from functools import lru_cache

import numpy as np

from benchmark.core.cosmology import KEV_PER_K, KEV_TO_ERG
from benchmark.core.errors import ClusterMassError
from pipeline import emission, icm
from pipeline.observation import Observation

__all__ = [
    "GridSpec", "GasGrid", "build_gas_grid", "view_truth", "luminosity_map",
    "band_emissivity", "main_halo", "radial_profile", "core_state", "cooling_time_gyr",
    "entropy_kev_cm2", "cooling_function_erg_cm3_s", "MP_G", "MSUN_G", "KPC_CM", "X_H", "Y_HE",
]

MP_G = 1.67262192e-24  # proton mass, g
MSUN_G = 1.98847e33  # solar mass, g
KPC_CM = 3.0856775814913673e21  # kpc in cm
X_H = 0.76  # hydrogen mass fraction (primordial, fully ionised H + He plasma)
Y_HE = 1.0 - X_H
NE_PER_GRAM = (X_H + 0.5 * Y_HE) / MP_G  # electrons per gram of gas
NH_PER_GRAM = X_H / MP_G  # hydrogen nuclei per gram of gas
KT_FLOOR_KEV = 0.08  # keeps far outskirts inside emission-table ranges
LX_BAND_KEV = (0.5, 2.0)  # rest-frame band of the true luminosities
CEX_RANGE = (0.15, 1.0)  # core-excised annulus in R500c (Pratt et al. 2009)

# V06 universal temperature profile constants (Vikhlinin et al. 2006, eq. 9 averages)
_T_RT_FRAC, _T_C = 0.6, 0.9
_T_ACOOL = 1.9
SUBCLUMP_RC_FRAC = 0.2  # clump core radius in units of the subhalo's own R500
SUBCLUMP_TRUNC = 3.0  # clumps end at this many core radii
SUBCLUMP_T_RATIO = 0.6  # clump temperature / local ICM temperature
SUBCLUMP_RADIUS_RANGE = (0.15, 1.3)  # clump distance from the centre, R500c
SUBCLUMP_RETAINED = 0.4  # default gas kept by a subhalo (row column subclump_retained)
COMPANION_RC_FRAC = 0.1  # companion core radius, in its own R500
COMPANION_BETA = 0.67
COMPANION_TRUNC_FRAC = 1.0  # companion gas stripped beyond this many of its R500 (Poole et al. 2006)
COMPANION_METALLICITY = 0.3


@dataclasses.dataclass(frozen=True)
class GridSpec:
    """A cubic grid of ``npix``^3 cells covering ``box_kpc`` (physical kpc) per side.

    ``box_kpc=None`` means "the image field of view at the view's redshift": call
    :meth:`resolved` (or :meth:`for_observation`) to fix it before building gas.
    """

    npix: int = 128
    box_kpc: float | None = None

    def __post_init__(self):
        if int(self.npix) != self.npix or self.npix < 8 or self.npix % 2:
            raise ClusterMassError(f"grid npix = {self.npix} must be an even integer >= 8.")
        if self.box_kpc is not None and not self.box_kpc > 0:
            raise ClusterMassError(f"grid box_kpc = {self.box_kpc} must be positive.")

    @classmethod
    def for_observation(cls, observation: Observation, redshift: float | None = None,
                        npix: int | None = None) -> "GridSpec":
        """The grid whose box is the field of view at ``redshift`` (default ``z_obs``)."""
        return cls(npix=int(npix or observation.npix), box_kpc=observation.fov_kpc(redshift))

    def resolved(self, observation: Observation, redshift: float) -> "GridSpec":
        """This grid with ``box_kpc`` set to the field of view at ``redshift`` if unset."""
        if self.box_kpc is not None:
            return self
        return GridSpec(npix=self.npix, box_kpc=observation.fov_kpc(redshift))

    @property
    def cell_kpc(self) -> float:
        """Side of one cell, kpc."""
        self._need_box()
        return float(self.box_kpc) / self.npix

    def centres_kpc(self) -> np.ndarray:
        """Cell-centre coordinates along one axis, kpc, origin at the box centre (float64)."""
        return (np.arange(self.npix) + 0.5 - 0.5 * self.npix) * self.cell_kpc

    def _need_box(self):
        if self.box_kpc is None:
            raise ClusterMassError(
                "GridSpec.box_kpc is unset: use grid.resolved(observation, redshift) or "
                "GridSpec.for_observation(observation, redshift) first."
            )


@dataclasses.dataclass
class GasGrid:
    """Gas cubes of one cluster epoch (indexed ``[ix, iy, iz]``, float32).

    Attributes
    ----------
    density_gcm3, kt_kev, metallicity_zsun : np.ndarray
        Gas mass density (g/cm^3), temperature (keV), metallicity (solar).
    cell_kpc, box_kpc : float
        Cell and box side, physical kpc.
    r500c_kpc, redshift : float
        Of the main cluster (centre at the box centre).
    meta : dict
        cluster_id, epoch, mgas_r500_msun (all gas inside the R500c sphere on the grid),
        mgas_main_r500_msun (main cluster + its subclumps), mgas_target_msun,
        norm_correction, n_subclumps, x_h and anything else worth recording.
    """

    density_gcm3: np.ndarray
    kt_kev: np.ndarray
    metallicity_zsun: np.ndarray
    cell_kpc: float
    box_kpc: float
    r500c_kpc: float
    redshift: float
    meta: dict = dataclasses.field(default_factory=dict)
    _cache: dict = dataclasses.field(default_factory=dict, repr=False, compare=False)

    @property
    def npix(self) -> int:
        return int(self.density_gcm3.shape[0])

    @property
    def cell_volume_cm3(self) -> float:
        return float((self.cell_kpc * KPC_CM) ** 3)

    def centres_kpc(self) -> np.ndarray:
        return (np.arange(self.npix) + 0.5 - 0.5 * self.npix) * self.cell_kpc

    def gas_mass_within_msun(self, radius_kpc: float) -> float:
        """Gas mass inside a sphere of ``radius_kpc`` around the box centre, Msun."""
        return float(np.sum(self.density_gcm3, where=_sphere_mask_arrays(self.centres_kpc(), radius_kpc), dtype=np.float64)
                     * self.cell_volume_cm3 / MSUN_G)


# ---------------------------------------------------------------------------------------
# radial profiles (x in units of R500c)


def _density_shape_sq(x2, rc, beta, rs, eps, contrast, rc2):
    """n_p n_e shape of V06 eq. 3 (alpha = 0, gamma = 3) at x^2 = (r/R500)^2."""
    out = np.exp(-3.0 * beta * np.log1p(x2 / rc**2))
    out *= np.exp(-(eps / 3.0) * np.log1p((x2 * np.sqrt(x2)) / rs**3))
    if contrast > 0:
        out += contrast**2 * np.exp(-3.0 * np.log1p(x2 / rc2**2))
    return out


def _temperature_shape(x, t_min, rcool):
    y = (x / rcool) ** _T_ACOOL
    return (y + t_min) / (y + 1.0) / (1.0 + (x / _T_RT_FRAC) ** 2) ** (_T_C / 2.0)


def _row_shape_params(row) -> dict:
    return dict(
        rc=float(row["rc_frac"]) * float(row.get("rc_boost", 1.0) or 1.0),
        beta=float(row["beta"]), rs=float(row["rs_frac"]), eps=float(row["eps"]),
        contrast=10.0 ** float(row["cc_contrast_dex"]) if float(row["cc_contrast_dex"]) > 0 else 0.0,
        rc2=float(row["cc_rc2_frac"]),
    )


def main_halo(row) -> tuple[float, float]:
    """(R500c in kpc, M500c in Msun) of the main halo the gas is built from.

    At population version 2 the catalog's ``log10_m500c`` / ``r500c_kpc`` are what a halo
    finder measures (a merger companion inside R500c included); the main halo's own values
    are in ``log10_m500c_main`` / ``r500c_kpc_main``.  Version-1 rows have only the former.
    """
    r_main = row.get("r500c_kpc_main")
    if r_main is not None and np.isfinite(float(r_main)):
        return float(r_main), 10.0 ** float(row["log10_m500c_main"])
    return float(row["r500c_kpc"]), 10.0 ** float(row["log10_m500c"])


def _profile_normalisations(row) -> tuple[float, float]:
    """(rho0 in g/cm^3 per unit sqrt(shape), T0 in keV) from 1D integrals of the profiles."""
    shp = _row_shape_params(row)
    x = np.concatenate([[0.0], np.geomspace(1e-4, 1.0, 4000)])
    dens = np.sqrt(_density_shape_sq(x**2, **shp))
    r500_kpc, m500_msun = main_halo(row)
    r500_cm = r500_kpc * KPC_CM
    integral = np.trapezoid(4.0 * np.pi * dens * x**2, x) * r500_cm**3  # cm^3
    mgas_g = float(row["gas_fraction"]) * m500_msun * MSUN_G
    rho0 = mgas_g / integral
    sel = x >= CEX_RANGE[0]
    w = dens[sel] ** 2 * x[sel] ** 2
    tshape = _temperature_shape(x[sel], float(row["t_min_frac"]), float(row["t_rcool_frac"]))
    t0 = float(row["t500_kev"]) / (np.trapezoid(w * tshape, x[sel]) / np.trapezoid(w, x[sel]))
    return rho0, t0


# Cooling function fit of Tozzi & Norman (2001, eq. 6 and Table 1; Z = 0.3 solar):
# Lambda = 1e-22 (C1 kT^-1.7 + C2 kT^0.5 + C3) erg cm^3/s with kT in keV, taken per n_e n_H.
_TN01_C = (8.6e-3, 5.8e-2, 6.3e-2)
SECONDS_PER_GYR = 3.15576e16
#: particles per electron of the fully ionised H + He plasma (n_e + n_H + n_He) / n_e
N_TOT_PER_NE = (NE_PER_GRAM + NH_PER_GRAM + Y_HE / (4.0 * MP_G)) / NE_PER_GRAM


def cooling_function_erg_cm3_s(kt_kev):
    """Bolometric cooling function Lambda(T) per n_e n_H (Tozzi & Norman 2001 fit, Z = 0.3)."""
    kt = np.asarray(kt_kev, dtype=float)
    c1, c2, c3 = _TN01_C
    return 1e-22 * (c1 * kt**-1.7 + c2 * np.sqrt(kt) + c3)


def cooling_time_gyr(ne_cm3, kt_kev):
    """Isobaric-free cooling time 3/2 n_tot kT / (n_e n_H Lambda(T)), Gyr."""
    ne = np.asarray(ne_cm3, dtype=float)
    nh = ne * NH_PER_GRAM / NE_PER_GRAM
    energy = 1.5 * N_TOT_PER_NE * ne * np.asarray(kt_kev, dtype=float) * KEV_TO_ERG
    return energy / (ne * nh * cooling_function_erg_cm3_s(kt_kev)) / SECONDS_PER_GYR


def entropy_kev_cm2(ne_cm3, kt_kev):
    """Entropy K = kT n_e^(-2/3), keV cm^2 (Cavagnolo et al. 2009)."""
    return np.asarray(kt_kev, dtype=float) * np.asarray(ne_cm3, dtype=float) ** (-2.0 / 3.0)


def radial_profile(row, r_kpc):
    """Electron density (cm^-3) and temperature (keV) of the row's main halo at radii
    ``r_kpc`` along the spherically averaged 1D model (no ellipticity, clumps, companion or
    grid correction: the analytic profile the grid is normalised from)."""
    rho0, t0 = _profile_normalisations(row)
    r500, _ = main_halo(row)
    x = np.asarray(r_kpc, dtype=float) / r500
    rho = rho0 * np.sqrt(_density_shape_sq(x**2, **_row_shape_params(row)))
    kt = t0 * _temperature_shape(x, float(row["t_min_frac"]), float(row["t_rcool_frac"]))
    return rho * NE_PER_GRAM, kt


#: radii (kpc) of the core observables: central entropy, n_e(10 kpc), t_cool(20 kpc)
CORE_RADII_KPC = (0.0, 10.0, 20.0)


def core_state(row) -> dict:
    """Core observables of one population row: ``k0_kev_cm2`` (entropy at the centre),
    ``ne10_cm3`` (n_e at 10 kpc) and ``tcool20_gyr`` (cooling time at 20 kpc)."""
    ne, kt = radial_profile(row, CORE_RADII_KPC)
    return dict(k0_kev_cm2=float(entropy_kev_cm2(ne[0], kt[0])), ne10_cm3=float(ne[1]),
                tcool20_gyr=float(cooling_time_gyr(ne[2], kt[2])))


# ---------------------------------------------------------------------------------------
# building the grid


def _rotation(row) -> np.ndarray:
    from pipeline.population import rotation_matrix

    return rotation_matrix([row["quat_w"], row["quat_x"], row["quat_y"], row["quat_z"]])


def _axes(row) -> np.ndarray:
    q1, q2 = float(row["axis_q1"]), float(row["axis_q2"])
    a = np.array([1.0, q1, q1 * q2])
    return a / np.prod(a) ** (1.0 / 3.0)  # unit product: volume-preserving


def _ellipsoidal_x2(cx, cy, cz, centre_kpc, rot, axes, r500):
    """(r_ell / R500)^2 on the lattice cx x cy x cz (1D kpc coordinates), float32, for an
    ellipsoid centred at ``centre_kpc`` with principal axes ``rot[:, k]`` scaled by ``axes``."""
    d = [(c - centre_kpc[k]).astype(np.float32) / np.float32(r500) for k, c in enumerate((cx, cy, cz))]
    x2 = None
    for k in range(3):  # principal axis k: u_k = sum_j rot[j, k] d_j
        u = (np.float32(rot[0, k] / axes[k]) * d[0][:, None, None]
             + np.float32(rot[1, k] / axes[k]) * d[1][None, :, None]
             + np.float32(rot[2, k] / axes[k]) * d[2][None, None, :])
        np.square(u, out=u)
        x2 = u if x2 is None else np.add(x2, u, out=x2)
    return x2


def _main_fields(cx, cy, cz, centre, rot, axes, r500, shp, row):
    """Main-halo (n_p n_e shape, T / T0, Z) on the lattice cx x cy x cz, float32 arrays."""
    x2 = _ellipsoidal_x2(cx, cy, cz, centre, rot, axes, r500)
    dens2 = _density_shape_sq(x2, **shp)
    z_out, z_c = float(row["z_outer"]), float(row["z_center"])
    metal = np.float32(z_c - z_out) / (1.0 + x2 * np.float32(1.0 / float(row["z_core_frac"]) ** 2))
    metal += np.float32(z_out)
    x = np.sqrt(x2, out=x2)
    temp = _temperature_shape(x, np.float32(row["t_min_frac"]), np.float32(row["t_rcool_frac"]))
    return dens2, temp, metal


#: the core is supersampled (SUPERSAMPLE^3 points per cell) out to this radius (R500c) so that
#: cells carry the emission-weighted mean of a peak narrower than a cell (a cool core):
#: density sqrt(<n^2>) (conserves the emission measure), T and Z weighted by n^2.
SUPERSAMPLE = 4
SUPERSAMPLE_RADIUS_FRAC = 0.15
SUPERSAMPLE_MAX_CELLS = 12


def _supersample_core(c1d, centre, rot, axes, r500, shp, row, dens2, temp, metal):
    cell = float(c1d[1] - c1d[0])
    half = int(np.clip(np.ceil(SUPERSAMPLE_RADIUS_FRAC * r500 / cell), 2, SUPERSAMPLE_MAX_CELLS))
    n = len(c1d)
    sl, sub = [], []
    frac = ((np.arange(SUPERSAMPLE) + 0.5) / SUPERSAMPLE - 0.5) * cell
    for k in range(3):
        ic = int(np.searchsorted(c1d, centre[k]))
        lo, hi = max(0, ic - half), min(n, ic + half)
        if hi <= lo:
            return
        sl.append(slice(lo, hi))
        sub.append((c1d[lo:hi][:, None] + frac[None, :]).ravel())
    d2, t, z = _main_fields(*sub, centre, rot, axes, r500, shp, row)
    shape = (sl[0].stop - sl[0].start, SUPERSAMPLE, sl[1].stop - sl[1].start, SUPERSAMPLE,
             sl[2].stop - sl[2].start, SUPERSAMPLE)
    d2, t, z = (a.reshape(shape) for a in (d2, t, z))
    w = d2.sum(axis=(1, 3, 5))
    sl = tuple(sl)
    temp[sl] = (d2 * t).sum(axis=(1, 3, 5)) / w
    metal[sl] = (d2 * z).sum(axis=(1, 3, 5)) / w
    dens2[sl] = w / SUPERSAMPLE**3


def _add_blob(c1d, centre_kpc, rc_kpc, trunc_kpc, mass_g, beta, cell_volume_cm3, rs_kpc=None):
    """A truncated spherical beta-model blob of total ``mass_g`` on the grid lattice.

    The blob is evaluated on the lattice cells within ``trunc_kpc`` of its centre, extended
    beyond the box where needed, and normalised over all of them (so an unresolved blob keeps
    its mass and a blob cut by the box edge loses only the part outside).  Returns the index
    slices of its in-box part and its density there (g/cm^3), or (None, None) when outside.
    """
    n = len(c1d)
    cell = float(c1d[1] - c1d[0])
    origin = float(c1d[0])
    lo_idx, hi_idx, xs = [], [], []
    for k in range(3):
        lo = int(np.floor((centre_kpc[k] - trunc_kpc - origin) / cell))
        hi = int(np.ceil((centre_kpc[k] + trunc_kpc - origin) / cell)) + 1
        lo_idx.append(lo)
        hi_idx.append(hi)
        xs.append((origin + cell * np.arange(lo, hi) - centre_kpc[k]).astype(np.float32))
    r2 = xs[0][:, None, None] ** 2 + xs[1][None, :, None] ** 2 + xs[2][None, None, :] ** 2
    shape = np.exp(-1.5 * beta * np.log1p(r2 / np.float32(rc_kpc) ** 2))
    if rs_kpc is not None:
        shape *= np.exp(-0.5 * np.log1p(r2 * np.sqrt(r2) / np.float32(rs_kpc) ** 3))
    shape[r2 > np.float32(trunc_kpc) ** 2] = 0.0
    total = float(shape.sum(dtype=np.float64)) * cell_volume_cm3
    if total <= 0:  # blob smaller than a cell, between cell centres: use the nearest cell
        idx = tuple(int(np.argmin(np.abs(x))) for x in xs)
        shape[idx] = 1.0
        total = cell_volume_cm3
    inner = tuple(slice(max(0, -lo), min(hi, n) - lo) for lo, hi in zip(lo_idx, hi_idx))
    outer = tuple(slice(max(0, lo), min(hi, n)) for lo, hi in zip(lo_idx, hi_idx))
    if any(s.stop <= s.start for s in outer):
        return None, None
    blob = shape[inner] * np.float32(mass_g / total)
    return outer, blob.astype(np.float32, copy=False)


def build_gas_grid(row, grid: GridSpec, rng: np.random.Generator) -> GasGrid:
    """Build the gas cubes of one population row on ``grid``.

    Parameters
    ----------
    row : mapping (pandas Series or dict)
        One row of :func:`pipeline.population.make_population`.
    grid : GridSpec
        With ``box_kpc`` set (see :meth:`GridSpec.resolved`).
    rng : numpy.random.Generator
        Draws the subclumps; use ``np.random.default_rng(row["seed"])`` for the dataset.

    Returns
    -------
    GasGrid
    """
    grid._need_box()
    row = dict(row)
    cell = grid.cell_kpc
    c1d = grid.centres_kpc()
    vcell = float((cell * KPC_CM) ** 3)
    r500, m500_msun = main_halo(row)
    fgas = float(row["gas_fraction"])
    rot, axes = _rotation(row), _axes(row)
    rho0, t0 = _profile_normalisations(row)
    shp = _row_shape_params(row)
    rho, kT, metal, icm_info = _main_halo_gas(row, c1d, rot, axes, r500, shp, rho0, t0)
    n_sub, clump_mass_g = _add_subclumps(rho, kT, row, c1d, r500, m500_msun, fgas, vcell, rng)
    mgas_target_g, r_norm, correction = _normalise_gas_mass(rho, row, grid, r500, m500_msun, fgas,
                                                            shp, vcell)
    comp_info = _add_companion(rho, kT, metal, row, c1d, r500, m500_msun, vcell)
    np.maximum(kT, np.float32(KT_FLOOR_KEV), out=kT)
    m_all = float(np.sum(rho, where=_sphere_mask_arrays(c1d, r500), dtype=np.float64)) * vcell / MSUN_G
    meta = dict(
        cluster_id=int(row.get("cluster_id", -1)), epoch=int(row.get("epoch", -1)),
        mgas_r500_msun=m_all, mgas_main_r500_msun=mgas_target_g / MSUN_G,
        mgas_target_msun=mgas_target_g / MSUN_G, norm_correction=correction,
        clump_mass_msun=clump_mass_g * correction / MSUN_G, n_subclumps=n_sub,
        rho0_gcm3=rho0 * correction, t0_kev=t0, x_h=X_H, normalised_within_kpc=r_norm,
        r500_inside_box=bool(r_norm >= r500), population_version=int(row.get("population_version", 1)),
        **comp_info, **icm_info,
    )
    return GasGrid(
        density_gcm3=rho.astype(np.float32, copy=False), kt_kev=kT.astype(np.float32, copy=False),
        metallicity_zsun=metal.astype(np.float32, copy=False), cell_kpc=cell,
        box_kpc=float(grid.box_kpc), r500c_kpc=r500, redshift=float(row.get("redshift", np.nan)),
        meta=meta,
    )


def _main_halo_gas(row, c1d, rot, axes, r500, shp, rho0,
                   t0) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
    """Density, temperature and metallicity cubes of the main halo, before the subclumps and
    the mass normalisation, and what :func:`_icm_structure` records."""
    # the merger displaces the gas core; the ellipsoidal radius is in units of R500
    off = float(row.get("core_offset_frac", 0.0) or 0.0) * r500
    centre = off * np.array([row.get(f"core_offset_dir_{a}", 0.0) or 0.0 for a in "xyz"], float)
    rho, kT, metal = _main_fields(c1d, c1d, c1d, centre, rot, axes, r500, shp, row)
    _supersample_core(c1d, centre, rot, axes, r500, shp, row, rho, kT, metal)
    np.sqrt(rho, out=rho)
    rho *= np.float32(rho0)
    kT *= np.float32(t0)
    icm_info = _icm_structure(rho, kT, c1d, centre, r500, row)
    return rho, kT, metal, icm_info


def _add_subclumps(rho, kT, row, c1d, r500, m500_msun, fgas, vcell, rng) -> tuple[int, float]:
    """Add the row's subclumps to ``rho`` and cool ``kT`` where they are, in place; returns
    their number and the gas mass (g) they put on the grid.  They are part of the cluster's
    gas budget (normalised with the main halo)."""
    n_sub = int(row.get("n_subclumps", 0) or 0)
    clump_mass_total_g = 0.0
    mu_args = dict(slope=float(row.get("subclump_slope", 1.9)),
                   mu_range=(float(row.get("subclump_mu_min", 0.005)), float(row.get("subclump_mu_max", 0.05))))
    retained = float(row.get("subclump_retained", SUBCLUMP_RETAINED))
    for _ in range(n_sub):
        mu = _draw_mu(rng, **mu_args)
        r_frac = rng.uniform(*SUBCLUMP_RADIUS_RANGE)
        direction = rng.normal(size=3)
        direction /= np.linalg.norm(direction)
        pos = r_frac * r500 * direction
        r500_sub = r500 * mu ** (1.0 / 3.0)
        rc = SUBCLUMP_RC_FRAC * r500_sub
        mass_g = retained * mu * fgas * m500_msun * MSUN_G
        sl, blob = _add_blob(c1d, pos, rc, SUBCLUMP_TRUNC * rc, mass_g, 2.0 / 3.0, vcell)
        if sl is None:
            continue
        clump_mass_total_g += float(blob.sum(dtype=np.float64)) * vcell
        tot = rho[sl] + blob
        # mass-weighted mixing: clump gas at SUBCLUMP_T_RATIO of the local temperature
        kT[sl] *= 1.0 - np.float32(1.0 - SUBCLUMP_T_RATIO) * blob / tot
        rho[sl] = tot
    return n_sub, clump_mass_total_g


def _normalise_gas_mass(rho, row, grid: GridSpec, r500, m500_msun, fgas, shp,
                        vcell) -> tuple[float, float, float]:
    """Scale ``rho`` (main halo + clumps) in place so that the grid gas mass inside the R500
    sphere is f_gas M500; returns that mass (g), the radius normalised within (kpc) and the
    factor applied.

    When R500 leaves the box (survey redshifts, nearby massive clusters) the mass is
    normalised inside the largest sphere the box holds, to the 1D profile's share of
    f_gas M500 there.
    """
    cell = grid.cell_kpc
    mgas_target_g = fgas * m500_msun * MSUN_G
    r_norm = min(r500, 0.5 * float(grid.box_kpc) - cell)
    target_g = mgas_target_g
    if r_norm < r500:
        target_g *= _profile_mass_share(r_norm / r500, shp)
    inside = _sphere_mask_arrays(grid.centres_kpc(), r_norm)
    m_grid_g = float(np.sum(rho, where=inside, dtype=np.float64)) * vcell
    if m_grid_g <= 0:
        raise ClusterMassError(
            f"cluster {row.get('cluster_id')} epoch {row.get('epoch')}: no gas inside R500c on "
            f"the grid (R500c = {r500:.0f} kpc, cell = {cell:.1f} kpc): enlarge npix or the box."
        )
    correction = target_g / m_grid_g
    rho *= np.float32(correction)
    return mgas_target_g, r_norm, correction


def _profile_mass_share(x, shp) -> float:
    """Share of the 1D profile's gas mass inside R500c that lies inside x R500c."""
    xg = np.concatenate([[0.0], np.geomspace(1e-4, 1.0, 4000)])
    d1 = np.sqrt(_density_shape_sq(xg**2, **shp)) * xg**2
    cum = np.concatenate([[0.0], np.cumsum(0.5 * (d1[1:] + d1[:-1]) * np.diff(xg))])
    return float(np.interp(x, xg, cum) / cum[-1])


def _add_companion(rho, kT, metal, row, c1d, r500, m500_msun, vcell) -> dict:
    """Add the merger companion's gas to the cubes, in place, and return what the GasGrid's
    meta records of it (nothing outside mergers).  The companion is extra gas, not part of
    the main cluster's M500c budget."""
    ratio = float(row.get("merger_ratio", 0.0) or 0.0)
    if not (int(row.get("merger", 0)) and ratio >= 1.0):
        return {}
    r500_c = r500 * ratio ** (-1.0 / 3.0)
    direction = np.array([row[f"merger_dir_{a}"] for a in "xyz"], float)
    pos = float(row["merger_sep_frac"]) * r500 * direction
    m_c_g = float(row["merger_gas_fraction"]) * m500_msun / ratio * MSUN_G
    rc_c = COMPANION_RC_FRAC * r500_c
    sl, blob = _add_blob(c1d, pos, rc_c, COMPANION_TRUNC_FRAC * r500_c,
                         _stripped_companion_mass_g(m_c_g, rc_c, r500_c), COMPANION_BETA, vcell,
                         rs_kpc=r500_c)
    if sl is not None:
        _mix_companion(rho, kT, metal, sl, blob, c1d, pos, r500_c, float(row["merger_t500_kev"]))
    return dict(companion_r500c_kpc=r500_c, companion_pos_kpc=pos.tolist(),
                companion_gas_mass_msun=m_c_g / MSUN_G)


def _stripped_companion_mass_g(m_c_g, rc_c, r500_c) -> float:
    """Gas mass (g) of a companion holding ``m_c_g`` inside its own R500 (f_gas M_comp) whose
    atmosphere beyond COMPANION_TRUNC_FRAC R500_comp the main cluster's ICM has stripped."""
    s = np.geomspace(1e-4, 1.0, 2000) * r500_c
    prof = (1 + (s / rc_c) ** 2) ** (-1.5 * COMPANION_BETA) * (1 + (s / r500_c) ** 3) ** -0.5
    s_t = np.geomspace(1e-4, COMPANION_TRUNC_FRAC, 2000) * r500_c
    prof_t = (1 + (s_t / rc_c) ** 2) ** (-1.5 * COMPANION_BETA) * (1 + (s_t / r500_c) ** 3) ** -0.5
    return m_c_g * np.trapezoid(prof_t * s_t**2, s_t) / np.trapezoid(prof * s**2, s)


def _mix_companion(rho, kT, metal, sl, blob, c1d, pos, r500_c, t500_kev) -> None:
    """Mix the companion's ``blob`` (its own non-cool-core temperature profile and
    metallicity) into the cubes at ``sl``, mass-weighted, in place."""
    xs = [(c1d[s_] - pos[k]) / r500_c for k, s_ in enumerate(sl)]
    xc = np.sqrt(xs[0][:, None, None] ** 2 + xs[1][None, :, None] ** 2
                 + xs[2][None, None, :] ** 2).astype(np.float32)
    t_c = t500_kev * _companion_t0_factor()
    t_comp = np.float32(t_c) * _temperature_shape(xc, np.float32(0.9), np.float32(0.045))
    tot = rho[sl] + blob
    w = blob / tot
    kT[sl] = kT[sl] * (1 - w) + t_comp * w
    metal[sl] = metal[sl] * (1 - w) + np.float32(COMPANION_METALLICITY) * w
    rho[sl] = tot


def _icm_structure(rho, kt, c1d, centre, r500, row) -> dict:
    """Population version 2's ICM fluctuations and sloshing front on the main halo's gas, in
    place (:mod:`pipeline.icm`; rows without the columns, version 1, are left as they are).
    Returns what the GasGrid's meta records: the field's width at R500c, whether a front was
    drawn and ``max_cell_coarsening``, the coarsest cells (in grid cells) that resolve every
    mode of the field, which the real chain's nested grid honours."""
    info = {}
    if icm.fluctuations_on(row):
        icm.apply_fluctuations(rho, kt, c1d, centre, r500, row)
        info.update(icm_sigma500_ln=float(row["icm_sigma500_ln"]),
                    max_cell_coarsening=icm.MAX_CELL_COARSENING)
    if int(row.get("sloshing", 0) or 0):
        icm.apply_front(rho, kt, c1d, centre, r500, row)
        info["sloshing_front"] = True
    return info


def _sphere_mask_arrays(c1d, radius_kpc):
    c = c1d.astype(np.float32)
    r2 = c[:, None, None] ** 2 + c[None, :, None] ** 2 + c[None, None, :] ** 2
    return r2 <= np.float32(radius_kpc) ** 2


def _draw_mu(rng, slope=1.9, mu_range=(0.005, 0.05)):
    """Subhalo mass ratio from dN/dmu ~ mu^-slope (Giocoli et al. 2010) by inverse CDF."""
    a = 1.0 - slope
    lo, hi = mu_range[0] ** a, mu_range[1] ** a
    return float((lo + rng.random() * (hi - lo)) ** (1.0 / a))


@lru_cache(maxsize=1)
def _companion_t0_factor() -> float:
    """T0 / T_X of the companion's (non-cool-core) universal profile."""
    x = np.linspace(CEX_RANGE[0], 1.0, 500)
    w = ((1 + (x / COMPANION_RC_FRAC) ** 2) ** (-3 * COMPANION_BETA)) * x**2
    t = _temperature_shape(x, 0.9, 0.045)
    return float(1.0 / (np.sum(w * t) / np.sum(w)))


# ---------------------------------------------------------------------------------------
# true luminosities


@lru_cache(maxsize=4)
def _emissivity_tables(e_lo: float, e_hi: float):
    """log10 kT grid and (continuum, line per solar metallicity) band emissivities."""
    from scipy.special import k0e

    log_kt = np.linspace(np.log10(0.03), np.log10(100.0), 600)
    kt = 10.0**log_kt
    e = np.linspace(e_lo, e_hi, 257)
    xx = e[None, :] / kt[:, None]
    gaunt = np.sqrt(3.0) / np.pi * k0e(0.5 * xx)  # Born approximation, exact in E/kT
    t_k = kt / KEV_PER_K
    # Rybicki & Lightman (1979) eq. 5.14b: 6.8e-38 Z^2 n_e n_i T^-1/2 exp(-hv/kT) g erg/s/cm^3/Hz;
    # 2.417989e17 Hz per keV; sum Z^2 n_i / n_H = 1 + 4 n_He/n_H = 1 + Y/X for H + He
    coeff = 6.8e-38 * 2.417989e17 * (1.0 + Y_HE / X_H)
    spec = coeff / np.sqrt(t_k)[:, None] * np.exp(-xx) * gaunt  # erg cm^3 /s /keV per n_e n_H
    cont = np.trapezoid(spec, e, axis=1)
    # Free-bound and two-photon continua and the quantum (Hummer 1988) Gaunt factor raise
    # the Born free-free value at low T: this factor matches the 0.5-2 keV H + He continuum
    # of the project's emission table (pipeline.emission) to ~5% for kT = 0.5-12 keV.
    cont = cont * (1.0 + 0.35 * kt**-0.6)
    # Line complexes (Fe L, O, Ne, Mg, Si) per solar metallicity in 0.5-2 keV: a smooth fit,
    # Lambda_line = 2.11e-23 kT^-1.4 exp(-0.68 keV / kT) erg cm^3/s, to the line part of the
    # project's emission table (itself an approximation to APEC: Smith et al. 2001; Foster
    # et al. 2012); within ~25% for kT = 0.5-12 keV, where lines are < 50% of the band.
    line = 2.11e-23 * kt**-1.4 * np.exp(-0.68 / kt)
    if (e_lo, e_hi) != LX_BAND_KEV:
        line = line * 0.0  # the line term is calibrated for the 0.5-2 keV band only
    return log_kt, cont, line


def band_emissivity(kt_kev, metallicity_zsun, band_kev=LX_BAND_KEV):
    """Band emissivity Lambda(T, Z) in erg cm^3 s^-1 per n_e n_H (rest frame).

    Thermal bremsstrahlung of H + He with the non-relativistic Born Gaunt factor
    g = (sqrt 3 / pi) exp(x/2) K0(x/2), x = E/kT (Rybicki & Lightman 1979), integrated over
    the band, plus metallicity-proportional soft-band line emission (see
    :func:`_emissivity_tables`).  For the truth luminosities only; images use the
    pipeline's emission table.
    """
    log_kt, cont, line = _emissivity_tables(float(band_kev[0]), float(band_kev[1]))
    lt = np.log10(np.asarray(kt_kev, dtype=np.float64))
    return np.interp(lt, log_kt, cont) + np.asarray(metallicity_zsun) * np.interp(lt, log_kt, line)


def _cell_luminosity(gas: GasGrid) -> np.ndarray:
    """0.5-2 keV luminosity of every cell, erg/s (float64), cached on the GasGrid."""
    if "lum" not in gas._cache:
        # Version 2's truth comes from the emission table the photons are drawn from; the
        # fit keeps version 1's catalog byte-identical.
        emissivity = (emission.table_band_emissivity if gas.meta.get("population_version", 1) >= 2
                      else band_emissivity)
        lam = np.asarray(emissivity(gas.kt_kev, gas.metallicity_zsun), dtype=np.float64)
        rho = gas.density_gcm3.astype(np.float64)
        lam *= rho * rho * (NE_PER_GRAM * NH_PER_GRAM * gas.cell_volume_cm3)
        gas._cache["lum"] = lam
    return gas._cache["lum"]


_AXES = {"x": 0, "y": 1, "z": 2}


def luminosity_map(gas: GasGrid, axis: str) -> np.ndarray:
    """Projected 0.5-2 keV rest-frame luminosity along ``axis`` ('x', 'y' or 'z'), erg/s per
    pixel, shape (npix, npix) indexed as described in the module docstring."""
    if axis not in _AXES:
        raise ClusterMassError(f"projection axis {axis!r} is unknown: use 'x', 'y' or 'z'.")
    key = f"map_{axis}"
    if key not in gas._cache:
        gas._cache[key] = _cell_luminosity(gas).sum(axis=_AXES[axis])
    return gas._cache[key]


@lru_cache(maxsize=16)
def _annulus_weights(npix: int, cell_kpc: float, r_in_kpc: float, r_out_kpc: float,
                     sub: int = 8) -> np.ndarray:
    """Fraction of each pixel inside the annulus r_in <= R < r_out (sub x sub sub-pixels)."""
    f = (np.arange(npix * sub) + 0.5 - 0.5 * npix * sub) * (cell_kpc / sub)
    r2 = f[:, None] ** 2 + f[None, :] ** 2
    inside = (r2 >= r_in_kpc**2) & (r2 < r_out_kpc**2)
    return inside.reshape(npix, sub, npix, sub).mean(axis=(1, 3))


def view_truth(gas: GasGrid, row, axis: str) -> dict:
    """True 0.5-2 keV rest-frame luminosities of one projection.

    Parameters
    ----------
    gas : GasGrid
    row : mapping
        The population row (for R500c).
    axis : {'x', 'y', 'z'}
        Line of sight.

    Returns
    -------
    dict
        ``lx_total_erg_s``: inside the projected R500c circle (cylinder through the box);
        ``lx_cex_erg_s``: in the projected annulus 0.15-1 R500c (Pratt et al. 2009);
        ``lx_box_erg_s``: all emission in the box.  Pixels cut by a circle count by the
        fraction of their area inside it.
    """
    lmap = luminosity_map(gas, axis)
    r500 = float(row["r500c_kpc"])
    cell = round(float(gas.cell_kpc), 9)
    w_tot = _annulus_weights(gas.npix, cell, 0.0, r500)
    w_cex = _annulus_weights(gas.npix, cell, CEX_RANGE[0] * r500, CEX_RANGE[1] * r500)
    return dict(
        lx_total_erg_s=float(np.sum(lmap * w_tot)),
        lx_cex_erg_s=float(np.sum(lmap * w_cex)),
        lx_box_erg_s=float(lmap.sum()),
    )
