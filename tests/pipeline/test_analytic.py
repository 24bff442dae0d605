"""The fast analytic renderer: physics (beta-model profile), agreement with SOXS, determinism."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import soxs
from scipy.optimize import curve_fit

from benchmark.core.cosmology import angular_diameter_distance_kpc
from benchmark.core.errors import ClusterMassError
from pipeline import analytic, instrument
from pipeline.observation import Observation

KPC_CM = 3.0856775814913673e21


def beta_gas(obs, n=None, rc_kpc=120.0, beta=2.0 / 3.0, rho0=3e-26, kT=5.0, z_met=0.3, redshift=None):
    """A duck-typed GasGrid: isothermal beta model centred on the box corner shared by the
    eight central cells (the image centre), box = the image field at the redshift."""
    z = obs.z_obs if redshift is None else redshift
    n = n or obs.npix
    cell = obs.fov_kpc(z) / n
    c = (np.arange(n) + 0.5 - n / 2) * cell
    r2 = c[:, None, None] ** 2 + c[None, :, None] ** 2 + c[None, None, :] ** 2
    rho = (rho0 * (1 + r2 / rc_kpc**2) ** (-1.5 * beta)).astype(np.float32)
    return SimpleNamespace(density_gcm3=rho, kt_kev=np.full_like(rho, kT),
                           metallicity_zsun=np.full_like(rho, z_met), cell_kpc=cell, redshift=z,
                           _cache={})


@pytest.fixture(scope="module")
def obs():
    return Observation()


@pytest.fixture(scope="module")
def gas(obs):
    return beta_gas(obs)


def _profile(img, cell_kpc, r_max_kpc, nbins=30):
    n = img.shape[0]
    c = (np.arange(n) + 0.5 - n / 2) * cell_kpc
    r = np.hypot(c[:, None], c[None, :]).ravel()
    idx = np.digitize(r, np.linspace(0, r_max_kpc, nbins + 1)) - 1
    ok = (idx >= 0) & (idx < nbins)
    npx = np.bincount(idx[ok], minlength=nbins)
    prof = np.bincount(idx[ok], weights=img.ravel()[ok], minlength=nbins) / npx
    r_mid = np.sqrt(np.bincount(idx[ok], weights=r[ok] ** 2, minlength=nbins) / npx)
    return r_mid, prof, npx


def test_beta_model_slope_recovered_from_poisson_image(gas, obs):
    rc, beta = 120.0, 2.0 / 3.0
    img = analytic.render(gas, "z", obs, np.random.default_rng(0))
    bkg = analytic.background_counts_per_pixel(obs)
    r_mid, prof, npx = _profile(img - bkg, gas.cell_kpc, 6 * rc)

    def model(r, s0, rc_fit, b):
        return s0 * (1 + (r / rc_fit) ** 2) ** (0.5 - 3 * b)

    popt, _ = curve_fit(model, r_mid, prof, p0=[prof[0], 100.0, 0.6],
                        sigma=np.sqrt((np.maximum(prof, 0) + bkg) / npx))
    assert popt[2] == pytest.approx(beta, rel=0.03)
    assert popt[1] == pytest.approx(rc, rel=0.05)


def test_views_agree_for_a_spherical_cluster(gas, obs):
    maps = [analytic.expected_counts(gas, ax, obs, background=False) for ax in "xyz"]
    assert np.allclose(maps[0], maps[1], rtol=1e-5) and np.allclose(maps[0], maps[2], rtol=1e-5)
    # centre at pixel (63.5, 63.5): the image is symmetric under flips
    assert np.allclose(maps[2], maps[2][::-1, ::-1], rtol=1e-5)


def test_expected_counts_match_soxs_spectrum_through_the_instrument(obs, tmp_path):
    from astropy.io import fits

    from pipeline.emission import resolve_apec

    name = instrument.register_acisi()
    tables = resolve_apec()
    z, kt, z_met, em_cm3 = obs.z_obs, 5.0, 0.3, 1e69
    expected = em_cm3 * analytic.rate_table(obs)(kt, z_met) * obs.exposure_ks * 1e3
    gen = soxs.ApecGenerator(0.05, 12.0, 11950, apec_root=tables.root, apec_vers=tables.version)
    d_a_cm = float(angular_diameter_distance_kpc(z)) * KPC_CM
    spec = gen.get_spectrum(kt, z_met, z, 1e-14 * em_cm3 / (4 * np.pi * d_a_cm**2 * (1 + z) ** 2))
    spec.apply_foreground_absorption(obs.nH_1e22, model="wabs")
    out = tmp_path / "sim.pha"
    soxs.simulate_spectrum(spec, name, (obs.exposure_ks, "ks"), str(out), instr_bkgnd=False,
                           foreground=False, ptsrc_bkgnd=False, overwrite=True, prng=5)
    with fits.open(out) as f:
        counts = f["SPECTRUM"].data["COUNTS"].astype(float)
    _, _, _, ch_lo, ch_hi, _ = instrument._load_rmf(str(instrument.response_paths()["rmf"]))
    frac = instrument._channel_band_fraction(ch_lo, ch_hi, obs.band_kev)
    n_soxs = float(np.sum(counts * frac))
    # ~1.4e6 counts: Poisson 0.1%; the fold agrees with SOXS to well within 1%
    assert n_soxs == pytest.approx(expected, rel=0.01)


def test_float32_cube_matches_float64_evaluation(obs):
    g = beta_gas(Observation(npix=16), n=16)
    rng = np.random.default_rng(3)
    g.kt_kev = rng.uniform(0.5, 12.0, g.density_gcm3.shape).astype(np.float32)
    g.metallicity_zsun = rng.uniform(0.1, 1.0, g.density_gcm3.shape).astype(np.float32)
    obs16 = Observation(npix=16)
    cube = analytic.count_rate_cube(g, obs16)
    table = analytic.rate_table(obs16)
    rho = g.density_gcm3.astype(np.float64)
    em = rho**2 * analytic._em_per_rho2(g)
    direct = em * table(g.kt_kev, g.metallicity_zsun)
    assert np.allclose(cube, direct, rtol=1e-4)


def test_finer_grid_is_binned_onto_image_pixels():
    obs16 = Observation(npix=16)
    fine = beta_gas(obs16, n=32)
    img = analytic.expected_counts(fine, "y", obs16, background=False)
    assert img.shape == (16, 16)
    cube = analytic.count_rate_cube(fine, obs16).sum(axis=1) * obs16.exposure_ks * 1e3
    assert np.allclose(img, cube.reshape(16, 2, 16, 2).sum(axis=(1, 3)), rtol=1e-5)


def test_background_and_determinism(gas, obs):
    bkg = analytic.background_counts_per_pixel(obs)
    assert bkg == pytest.approx(instrument.particle_background_counts(100.0, (0.5, 7.0), 128, 16.9))
    with_bkg = analytic.expected_counts(gas, "x", obs)
    without = analytic.expected_counts(gas, "x", obs, background=False)
    assert np.allclose(with_bkg - without, bkg)
    a = analytic.render(gas, "x", obs, np.random.default_rng(42))
    b = analytic.render(gas, "x", obs, np.random.default_rng(42))
    c = analytic.render(gas, "x", obs, np.random.default_rng(43))
    assert a.dtype == np.int32 and a.shape == (128, 128)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    views = analytic.render_views(gas, obs, np.random.default_rng(42), axes=("x",))
    assert np.array_equal(views["x"]["counts"], a)
    assert views["x"]["expected_background"] == pytest.approx(bkg * 128**2)


def test_bad_inputs(gas, obs):
    with pytest.raises(ClusterMassError, match="axis"):
        analytic.expected_counts(gas, "w", obs)
    wrong_box = SimpleNamespace(**{**vars(gas), "cell_kpc": gas.cell_kpc * 1.1, "_cache": {}})
    with pytest.raises(ClusterMassError, match="not the image field"):
        analytic.expected_counts(wrong_box, "x", obs)
    with pytest.raises(ClusterMassError, match="cannot be binned"):
        analytic.expected_counts(beta_gas(Observation(npix=16), n=24), "x", Observation(npix=16))


@pytest.mark.bench
def test_bench_render_three_views(benchmark, obs):
    """One cluster epoch: rate cube (128^3) + three projections + Poisson sampling."""
    g = beta_gas(obs)
    analytic.rate_table(obs)  # built once per process (cached)
    rng = np.random.default_rng(0)

    def run():
        g._cache.clear()
        return analytic.render_views(g, obs, rng)

    out = benchmark(run)
    assert set(out) == {"x", "y", "z"}


@pytest.mark.parametrize("z, kt", [(0.1234567, 3.3), (0.31, 0.7), (0.05, 12.0), (0.4, 8.0), (0.45, 2.0)])
def test_thermal_spectrum_folds_to_the_rate_table(z, kt):
    """The sky's halo spectra (pipeline.sky) use the renderer's own emission fold."""
    obs = Observation()
    spectrum = analytic.thermal_spectrum_per_em(z, kt, 0.3)
    assert spectrum.size == analytic.observed_energy_edges().size - 1
    folded = np.sum(spectrum * analytic.response_on_grid(obs))
    assert folded == pytest.approx(analytic.rate_table(obs, z)(kt, 0.3), rel=1e-6)
    # beyond the rest-frame table (z ~ 2): still defined, nothing above 16 keV rest frame
    far = analytic.thermal_spectrum_per_em(2.0, kt, 0.3)
    edges = analytic.observed_energy_edges()
    assert np.all(far[edges[:-1] * 3.0 > 16.0] == 0.0) and far.sum() > 0
