"""ICM structure of population version 2: turbulent fluctuations, sloshing cold fronts, and
outer density slopes tied to the mass-accretion rate.

Three ingredients, each behind its own :class:`pipeline.population.PopulationParams` switch
(on by default at version 2, absent at version 1), cited here and in
:data:`pipeline.population.REFERENCES_V2`:

* ``icm_fluctuations``: a 3D Gaussian random field g (unit variance) with a turbulent power
  spectrum P(k) ~ k^-11/3 exp(-(k_inj/k)^2) (Kolmogorov below an injection scale of a few
  hundred kpc: Gaspari & Churazov 2013; Zhuravleva et al. 2013, 2014), band-limited at
  wavelength ``FIELD_MIN_WAVELENGTH_CELLS`` grid cells, multiplies the smooth density by the
  log-normal factor exp(s g - s^2/2) and the temperature by exp(t_response s g).  The
  amplitude s(r) = sqrt(s_core^2 + (s_500 (r/R500c)^eta)^2) rises with radius; s_500 rises
  with dynamical disturbance (mergers, faster accretion).  A log-normal field of width s has
  clumping factor <rho^2>/<rho>^2 = exp(s^2).  Calibrated on the clumping factor in the
  0.9-1.1 R500c shell, C ~ 1.1-1.5 in simulated clusters (Nagai & Lau 2011) and as measured
  (Eckert et al. 2015): on 40 epochs of the default population evenly spaced in mass
  (128^3 grids, 2026-12-02) the field multiplies the smooth model's C (ellipticity,
  subclumps, companions: median 1.15) by a median 1.11, giving a median C = 1.36 (16-84%:
  1.24-2.09; relaxed epochs 1.30, mergers 2.04, their companion's gas in the shell); at
  0.5 R500c 1.12 and at 0.2 R500c 1.05.  From population version 4 the width is held at its
  2 R500c value further out (``icm_sigma_hold_frac``): unbounded, as in versions 2 and 3, it
  reached a clumping of ~33 and cells at thousands of keV at 5 R500c
  (:data:`pipeline.population.ICM_SIGMA_HOLD_FRAC`).  The temperature response -0.5
  lies between isobaric (-1) and adiabatic (+2/3) perturbations, closer to the isobaric
  ones that dominate in the bulk ICM (Zhuravleva et al. 2013; Gaspari et al. 2014).  One
  field per cluster epoch, seeded by ``icm_seed`` (the epoch's gas stream with its own spawn
  key), built once on the gas grid so that the three projections share it.  The gas mass
  inside R500c is then normalised as before (:func:`pipeline.gas.build_gas_grid`).
* ``sloshing_fronts``: in a share of cool cores (about half to two thirds show cold fronts:
  Ghizzardi et al. 2010), a spiral density discontinuity (ZuHone et al. 2010) winding out
  from r_in to r_out (0.05-0.3 R500c) in a randomly oriented plane; across it the density
  jumps by a factor J ~ 1.5-2 and the temperature by 1/J, the pressure continuous
  (Markevitch & Vikhlinin 2007).  Away from the front the modulation tapers smoothly to 1.
* ``outer_slope_accretion``: the outer steepening of the density profile (eps, r_s of
  Vikhlinin et al. 2006) correlated with the accretion rate: faster-accreting haloes have
  steeper outer profiles and smaller splashback radii (Diemer & Kravtsov 2014; Lau et al.
  2015).  Drawn in :mod:`pipeline.population` (:func:`outer_slope_deviate`).

The chain's grid (:mod:`pipeline.chain.yt_grid`): the field has no power at wavelengths
of ``FIELD_MIN_WAVELENGTH_CELLS`` = 4 grid cells or less, the Nyquist wavelength of cells 2
grid cells wide, so a gas grid that carries it says ``meta["max_cell_coarsening"] = 2`` and
the chain's 3 nested levels (4x, 2x, 1x cells) become 2x cells over the box with grid cells
in the central quarter: every mode of the field is resolved by the cells handed to pyXSIM
(tests/pipeline/test_yt_grid.py: the outskirts' cells keep the field, correlation 0.82
against 0.30 for the 4x layout, and the chain's counts and profile match the analytic
renderer's).  Cost, measured 2026-12-02 at load ~6 on the shared 2 cores, 128^3 grids, one
epoch of 3 views: make_photons 0.65-1.3 s against 0.2-0.85 s for the version-1 layout
(98 k leaf cells in 3 levels -> 291 k in 2); 2 levels with grid cells over the central half
(491 k cells) took ~2.1 s and a uniform grid (2.1 M cells) 10-11 s.  The field and fronts add ~37 ms per epoch to the gas model at
128^3 (46 -> 84 ms median on 40 epochs; white noise on the coarse lattice, one inverse FFT)
and ~6 ms at 64^3.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from benchmark.core.errors import ClusterMassError

__all__ = [
    "fluctuation_field", "apply_fluctuations", "apply_front", "clumping_factor", "icm_columns",
    "icm_seed", "outer_slope_deviate", "icm_statistics", "FIELD_MIN_WAVELENGTH_CELLS",
    "MAX_CELL_COARSENING", "KOLMOGOROV_SLOPE", "CLUMPING_SHELL",
]

#: 3D power-spectrum slope of Kolmogorov turbulence, P(k) ~ k^-11/3 (Gaspari & Churazov 2013;
#: Zhuravleva et al. 2014 measure amplitude spectra consistent with it below injection)
KOLMOGOROV_SLOPE = 11.0 / 3.0
#: the field is band-limited: no power at wavelengths below this many grid cells (the Nyquist
#: wavelength of cells 2 fine cells wide, so the chain's 2x coarser level resolves it)
FIELD_MIN_WAVELENGTH_CELLS = 4
#: the coarsest cells (in fine cells) that resolve every mode of the field
MAX_CELL_COARSENING = FIELD_MIN_WAVELENGTH_CELLS // 2
#: the spherical shell (R500c units) in which the clumping factor "at R500c" is measured
CLUMPING_SHELL = (0.9, 1.1)
#: shells (R500c) whose clumping the report measures: the calibration shell, and one at
#: 2 R500c (~1.3 R200c) where the width is held from population version 4 on
REPORT_SHELLS = {"r500": CLUMPING_SHELL, "2r500": (1.9, 2.1)}
#: spawn-key suffixes of the epoch's gas stream: the field's white noise, the per-epoch draws
_KEY_FIELD, _KEY_DRAWS = 1, 2


# ---------------------------------------------------------------------------------------
# seeds and population columns


def icm_seed(master_seed: int, cluster_id: int, epoch: int) -> int:
    """Seed of the fluctuation field of one cluster epoch: the epoch's gas stream
    (:func:`pipeline.population.gas_seed`) with its own spawn key."""
    from pipeline.population import _STREAM_GAS, derive_seed

    return derive_seed(master_seed, _STREAM_GAS, cluster_id, epoch, _KEY_FIELD)


def _draws_rng(master_seed: int, cluster_id: int, epoch: int) -> np.random.Generator:
    from pipeline.population import _STREAM_GAS

    key = (_STREAM_GAS, int(cluster_id), int(epoch), _KEY_DRAWS)
    return np.random.default_rng(np.random.SeedSequence(int(master_seed), spawn_key=key))


def outer_slope_deviate(white: float, alpha_dev: float, corr: float) -> float:
    """A standard-normal deviate correlated by ``corr`` with the accretion-rate deviate
    ``alpha_dev`` (itself standard normal), from the independent deviate ``white``."""
    return float(corr * alpha_dev + np.sqrt(1.0 - corr * corr) * white)


def icm_columns(pop: pd.DataFrame, params, master_seed: int) -> pd.DataFrame:
    """The version-2 ICM columns of every row (fluctuation amplitude and seed, sloshing).

    Adds ``icm_seed``, ``icm_sigma500_ln`` (log-normal density width at R500c; 0 when the
    switch is off), ``icm_sigma_core_ln``, ``icm_radial_slope``, ``icm_injection_kpc``,
    ``icm_t_response``, ``sloshing`` (0/1) and the front's geometry ``front_r_in_frac``,
    ``front_r_out_frac``, ``front_jump``, ``front_normal_*``, ``front_ref_*`` (a unit
    vector in the front's plane where the spiral starts) and ``front_sense`` (+1 / -1).
    """
    pop = pop.copy()
    cols: dict[str, list] = {}
    for cid, ep, merger, cool, alpha_dev in zip(
            pop["cluster_id"], pop["epoch"], pop["merger"], pop["cool_core"],
            pop["mah_alpha_dev"] if "mah_alpha_dev" in pop.columns else np.zeros(len(pop))):
        rng = _draws_rng(master_seed, cid, ep)
        values = _fluctuation_values(params, rng, int(merger), float(alpha_dev))
        values["icm_seed"] = icm_seed(master_seed, int(cid), int(ep))
        values.update(_front_values(params, rng, int(cool)))
        for key, value in values.items():
            cols.setdefault(key, []).append(value)
    for key, value in cols.items():
        pop[key] = value
    return pop


def _fluctuation_values(params, rng, merger: int, alpha_dev: float) -> dict:
    """Amplitude of one epoch's fluctuations: higher in mergers and in fast accretors."""
    scatter = rng.normal()  # drawn whether or not the switch is on: streams stay aligned
    if not params.icm_fluctuations:
        sigma500 = 0.0
    else:
        sigma500 = params.icm_sigma500_ln * (params.icm_merger_boost if merger else 1.0)
        sigma500 *= np.exp(params.icm_accretion_slope * alpha_dev + params.icm_sigma_scatter_ln * scatter)
    values = dict(icm_sigma500_ln=float(sigma500), icm_sigma_core_ln=float(params.icm_sigma_core_ln),
                  icm_radial_slope=float(params.icm_radial_slope),
                  icm_injection_kpc=float(params.icm_injection_kpc),
                  icm_t_response=float(params.icm_t_response))
    if params.sigma_hold_frac is not None:  # version 4 on: versions 2-3 keep their columns
        values["icm_sigma_hold_frac"] = params.sigma_hold_frac
    return values


def _unit(rng) -> np.ndarray:
    v = rng.normal(size=3)
    return v / np.linalg.norm(v)


def _front_values(params, rng, cool_core: int) -> dict:
    """Sloshing front of one epoch: in a share ``sloshing_fraction`` of cool cores."""
    u = rng.random()
    normal, other = _unit(rng), _unit(rng)
    ref = other - normal * float(normal @ other)
    ref /= np.linalg.norm(ref)
    r_lo, r_hi = params.sloshing_radius_range
    # inner and outer ends of the spiral, log-uniform within the range, at least 2x apart
    r_in = float(np.exp(rng.uniform(np.log(r_lo), np.log(max(r_lo, r_hi / 2.0)))))
    r_out = float(np.exp(rng.uniform(np.log(min(r_hi, 2.0 * r_in)), np.log(r_hi))))
    jump = float(rng.uniform(*params.sloshing_jump_range))
    sense = 1.0 if rng.random() < 0.5 else -1.0
    on = bool(params.sloshing_fronts and cool_core and u < params.sloshing_fraction)
    out = dict(sloshing=int(on), front_r_in_frac=r_in if on else 0.0,
               front_r_out_frac=r_out if on else 0.0, front_jump=jump if on else 1.0,
               front_sense=sense if on else 0.0)
    for k, axis in enumerate("xyz"):
        out[f"front_normal_{axis}"] = float(normal[k]) if on else 0.0
        out[f"front_ref_{axis}"] = float(ref[k]) if on else 0.0
    return out


# ---------------------------------------------------------------------------------------
# the fluctuation field


def _power_spectrum(m: int, cell_kpc: float, injection_kpc: float, slope: float) -> np.ndarray:
    """sqrt of P(k) on the rfftn grid of an m^3 lattice of cells ``cell_kpc`` wide, normalised
    to unit field variance; no power at or above the lattice's Nyquist wavenumber."""
    kx = 2.0 * np.pi * np.fft.fftfreq(m, d=cell_kpc)
    kz = 2.0 * np.pi * np.fft.rfftfreq(m, d=cell_kpc)
    k2 = kx[:, None, None] ** 2 + kx[None, :, None] ** 2 + kz[None, None, :] ** 2
    k_inj2 = (2.0 * np.pi / injection_kpc) ** 2
    k_nyq2 = (np.pi / cell_kpc) ** 2
    power = np.zeros_like(k2)
    live = (k2 > 0) & (k2 < k_nyq2)
    power[live] = k2[live] ** (-0.5 * slope) * np.exp(-k_inj2 / k2[live])
    # rfftn keeps half of the kz axis: the others count twice in the full-grid mean
    weight = np.full(kz.shape, 2.0)
    weight[0] = weight[-1] = 1.0
    mean = float(np.sum(power * weight[None, None, :])) / m**3
    return np.sqrt(power / mean) if mean > 0 else power


def fluctuation_field(n: int, cell_kpc: float, injection_kpc: float, seed: int,
                      slope: float = KOLMOGOROV_SLOPE) -> np.ndarray:
    """A unit-variance Gaussian random field on an n^3 lattice (float32, periodic).

    White noise on the coarse lattice of (n / c)^3 cells, c = ``MAX_CELL_COARSENING``, is
    filtered by the spectrum, which has no power at or above the coarse lattice's Nyquist
    wavenumber (wavelengths of ``FIELD_MIN_WAVELENGTH_CELLS`` fine cells or less), then
    interpolated exactly onto the fine lattice by zero-padding its Fourier modes: the field
    is band-limited, so cells c fine cells wide resolve every mode of it, and the white noise
    costs (n / c)^3 draws instead of n^3.

    Parameters
    ----------
    n : int
        Cells per side (a multiple of 2 c).
    cell_kpc : float
        Cell side, kpc.
    injection_kpc : float
        Injection scale: power falls off above it, P(k) ~ k^-slope below it.
    seed : int
        Seed of the white noise (one per cluster epoch: ``icm_seed``).
    slope : float
        3D power-spectrum slope (Kolmogorov 11/3).

    Returns
    -------
    numpy.ndarray
        Expected variance 1, float32, shape (n, n, n).
    """
    from scipy import fft

    c = MAX_CELL_COARSENING
    if n % (2 * c):
        raise ClusterMassError(f"grid npix = {n} must be a multiple of {2 * c} for the ICM fluctuation "
                               "field: choose another grid.npix or set population.icm_fluctuations = false.")
    m = n // c
    white = np.random.default_rng(int(seed)).standard_normal((m, m, m))
    small = fft.rfftn(white)
    small *= _power_spectrum(m, c * float(cell_kpc), float(injection_kpc), float(slope))
    half = m // 2  # the coarse Nyquist index: zero power there, left out
    big = np.zeros((n, n, n // 2 + 1), dtype=np.complex64)
    for i_src, i_dst in ((slice(0, half), slice(0, half)), (slice(half + 1, m), slice(n - half + 1, n))):
        for j_src, j_dst in ((slice(0, half), slice(0, half)), (slice(half + 1, m), slice(n - half + 1, n))):
            big[i_dst, j_dst, :half] = small[i_src, j_src, :half]
    field = fft.irfftn(big, s=(n, n, n), overwrite_x=True)
    field *= np.float32(c**3)  # irfftn divides by n^3, the coarse transform multiplied by m^3
    return field.astype(np.float32, copy=False)


def _radius2_frac(c1d, centre_kpc, r500_kpc) -> np.ndarray:
    """Spherical (r / R500c)^2 from ``centre_kpc`` on the lattice c1d^3, float32."""
    d = [((c1d - centre_kpc[k]) / r500_kpc).astype(np.float32) for k in range(3)]
    return d[0][:, None, None] ** 2 + d[1][None, :, None] ** 2 + d[2][None, None, :] ** 2


def fluctuation_sigma2(x2, row) -> np.ndarray:
    """Squared log-normal width s(r)^2 = s_core^2 + s_500^2 x^(2 eta) at x^2 = (r/R500c)^2,
    held at its value at ``icm_sigma_hold_frac`` further out where the row has one."""
    s500, s_core = np.float32(row["icm_sigma500_ln"]), np.float32(row["icm_sigma_core_ln"])
    eta = float(row["icm_radial_slope"])
    hold = row.get("icm_sigma_hold_frac")
    if hold is not None and np.isfinite(hold):
        x2 = np.minimum(x2, np.float32(float(hold) ** 2))
    shape = x2 if eta == 1.0 else x2 ** np.float32(eta)  # a power costs 10x a product
    return s_core * s_core + (s500 * s500) * shape


def fluctuations_on(row) -> bool:
    """Whether ``row`` (a population row) carries ICM fluctuations."""
    return float(row.get("icm_sigma500_ln", 0.0) or 0.0) > 0.0


def apply_fluctuations(rho, kt, c1d, centre_kpc, r500_kpc, row) -> None:
    """Multiply the density by exp(s g - s^2/2) and kT by exp(t_response s g), in place.

    ``g`` is :func:`fluctuation_field` of the row's ``icm_seed``; ``s`` the width at each
    cell's distance from ``centre_kpc`` (:func:`fluctuation_sigma2`).  The -s^2/2 keeps the
    mean density (the grid normalisation then fixes the gas mass inside R500c).
    """
    cell = float(c1d[1] - c1d[0])
    g = fluctuation_field(len(c1d), cell, float(row["icm_injection_kpc"]), int(row["icm_seed"]))
    s2 = fluctuation_sigma2(_radius2_frac(c1d, centre_kpc, r500_kpc), row)
    g *= np.sqrt(s2)  # g is now s g
    kt *= np.exp(np.float32(row["icm_t_response"]) * g)
    s2 *= np.float32(0.5)
    g -= s2
    rho *= np.exp(g, out=g)


# ---------------------------------------------------------------------------------------
# sloshing cold fronts


def front_radius_frac(phi, row):
    """Radius (R500c) of the spiral front at azimuth ``phi`` in [0, 2 pi) of its plane:
    r_in (r_out / r_in)^(phi / 2 pi), a logarithmic spiral (ZuHone et al. 2010)."""
    r_in, r_out = float(row["front_r_in_frac"]), float(row["front_r_out_frac"])
    return r_in * (r_out / r_in) ** (np.asarray(phi) / (2.0 * np.pi))


#: the jump fades to nothing over this azimuth at both ends of the spiral (radians), so the
#: density is continuous where the spiral's ends meet
FRONT_END_TAPER_RAD = np.pi / 4


def front_modulation(d_kpc, row, r500_kpc) -> np.ndarray:
    """Density factor of the sloshing front at offsets ``d_kpc`` (3, ...) from the core.

    Inside the front (r < r_f(phi)) the density is raised by J^(a w_in / 2), outside lowered
    by J^(-a w_out / 2): the ratio across the front is J^a, with a = 1 along the spiral and
    fading to 0 at its ends; w_in = (r / r_f)^2 and w_out = exp(-(2 (r - r_f) / r_f)^2) taper
    the modulation away from the front (w_out < 1e-4 beyond 2.5 r_f).  The temperature factor
    is the inverse (pressure continuous: Markevitch & Vikhlinin 2007).
    """
    n = np.array([row[f"front_normal_{a}"] for a in "xyz"], float)
    e1 = np.array([row[f"front_ref_{a}"] for a in "xyz"], float)
    e2 = np.cross(n, e1) * float(row["front_sense"])
    d = np.asarray(d_kpc) / np.asarray(r500_kpc, dtype=np.asarray(d_kpc).dtype)
    u = sum(e1[k].astype(d.dtype) * d[k] for k in range(3))
    v = sum(e2[k].astype(d.dtype) * d[k] for k in range(3))
    r = np.sqrt(d[0] * d[0] + d[1] * d[1] + d[2] * d[2])
    phi = np.mod(np.arctan2(v, u), 2.0 * np.pi)
    r_f = front_radius_frac(phi, row)
    amp = np.clip(np.minimum(phi, 2.0 * np.pi - phi) / FRONT_END_TAPER_RAD, 0.0, 1.0)
    log_half_jump = 0.5 * np.log(float(row["front_jump"])) * amp
    inside = r < r_f
    w_in, w_out = (r / r_f) ** 2, np.exp(-(2.0 * (r - r_f) / r_f) ** 2)
    return np.exp(log_half_jump * np.where(inside, w_in, -w_out))


def apply_front(rho, kt, c1d, centre_kpc, r500_kpc, row) -> None:
    """The sloshing front of ``row`` on the lattice c1d^3 (in place: rho *= f, kT /= f),
    evaluated only inside the cube that holds 2.5 r_out around the core (beyond, the taper
    leaves |f - 1| < 1e-4), in float32."""
    half = 2.5 * float(row["front_r_out_frac"]) * r500_kpc
    sl = []
    for k in range(3):
        lo = int(np.searchsorted(c1d, centre_kpc[k] - half))
        hi = int(np.searchsorted(c1d, centre_kpc[k] + half))
        if hi <= lo:
            return
        sl.append(slice(lo, hi))
    d = np.stack(np.meshgrid(*[(c1d[s] - centre_kpc[k]).astype(np.float32) for k, s in enumerate(sl)],
                             indexing="ij"))
    factor = front_modulation(d, row, r500_kpc).astype(np.float32, copy=False)
    sl = tuple(sl)
    rho[sl] *= factor
    kt[sl] /= factor


# ---------------------------------------------------------------------------------------
# measurements


def clumping_factor(gas, shell_frac=CLUMPING_SHELL) -> float:
    """<rho^2> / <rho>^2 over the cells of a spherical shell (R500c units) around the box
    centre (Nagai & Lau 2011), on a :class:`pipeline.gas.GasGrid`."""
    c = gas.centres_kpc() / float(gas.r500c_kpc)
    r2 = c[:, None, None] ** 2 + c[None, :, None] ** 2 + c[None, None, :] ** 2
    sel = (r2 >= shell_frac[0] ** 2) & (r2 < shell_frac[1] ** 2)
    rho = gas.density_gcm3[sel].astype(np.float64)
    if rho.size == 0:
        return float("nan")
    return float(np.mean(rho * rho) / np.mean(rho) ** 2)


def icm_statistics(pop: pd.DataFrame, observation=None, n_sample: int = 12, npix: int = 64) -> dict:
    """ICM observables of a version-2 population for the report.

    ``sloshing_cool_core_fraction``: share of cool-core epochs with a sloshing front;
    ``clumping_r500_median`` (and ``_p16``, ``_p84``): the clumping factor in the
    0.9-1.1 R500c shell, ``clumping_2r500_*`` in the 1.9-2.1 R500c shell, of the gas grids
    of ``n_sample`` epochs evenly spaced in mass, built at ``npix`` cells a side (64: the report's calibration grid).  Empty for populations
    without the columns (version 1).
    """
    out: dict = {}
    if "sloshing" in pop.columns:
        cool = pop[pop["cool_core"] == 1]
        if len(cool):
            out["sloshing_cool_core_fraction"] = float(cool["sloshing"].mean())
    if "icm_sigma500_ln" in pop.columns and n_sample > 0:
        out.update(_sample_clumping(pop, observation, n_sample, npix))
    return out


def _sample_clumping(pop, observation, n_sample, npix) -> dict:
    from pipeline.gas import GridSpec, build_gas_grid
    from pipeline.observation import Observation

    observation = Observation() if observation is None else observation
    order = pop["log10_m500c"].sort_values(kind="stable").index.to_numpy()
    picks = order[np.unique(np.linspace(0, len(order) - 1, min(n_sample, len(order))).round().astype(int))]
    values = {name: [] for name in REPORT_SHELLS}
    for index in picks:
        row = pop.loc[index]
        grid = GridSpec(npix=npix).resolved(observation, float(row["redshift"]))
        gas = build_gas_grid(row, grid, np.random.default_rng(int(row["seed"])))
        for name, shell in REPORT_SHELLS.items():
            values[name].append(clumping_factor(gas, shell))
    out = {}
    for name, shell_values in values.items():
        finite = np.array([v for v in shell_values if np.isfinite(v)])
        if len(finite):
            out.update({f"clumping_{name}_median": float(np.median(finite)),
                        f"clumping_{name}_p16": float(np.percentile(finite, 16)),
                        f"clumping_{name}_p84": float(np.percentile(finite, 84))})
    if "clumping_r500_median" in out:
        out["clumping_n_epochs"] = int(np.isfinite(values["r500"]).sum())
    return out
