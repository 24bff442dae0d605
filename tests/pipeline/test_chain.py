"""The real chain (yt -> pyXSIM -> SOXS / fast detector) on tiny beta-model clusters.

Real yt, pyXSIM and SOXS on grids of 32^3-64^3 cells; the project's own emission table
(pipeline.emission, written once to build/emission) and ACIS-I (pipeline.instrument).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from pipeline import analytic, chain
from pipeline.gas import GasGrid
from pipeline.observation import Observation

RNG_SEEDS = (11, 12, 13)


def beta_gas(obs, n=32, rc_kpc=250.0, beta=2.0 / 3.0, n_e0=5e-3, kt_kev=5.0, z_sun=0.3, offset_kpc=(0, 0, 0)):
    """A spherical beta-model cluster on the grid that covers the image field at z_obs."""
    box = obs.fov_kpc()
    cell = box / n
    c = (np.arange(n) + 0.5 - 0.5 * n) * cell
    x, y, z = np.meshgrid(c - offset_kpc[0], c - offset_kpc[1], c - offset_kpc[2], indexing="ij")
    ne = n_e0 * (1.0 + (x * x + y * y + z * z) / rc_kpc**2) ** (-1.5 * beta)
    rho = (ne * 1.6726e-24 / 0.88).astype(np.float32)  # n_e = rho (X_H + (1-X_H)/2) / m_p, X_H = 0.76
    return GasGrid(
        density_gcm3=rho,
        kt_kev=np.full_like(rho, kt_kev),
        metallicity_zsun=np.full_like(rho, z_sun),
        cell_kpc=cell,
        box_kpc=box,
        r500c_kpc=1000.0,
        redshift=obs.z_obs,
    )


def radial_profile(img, edges_pix):
    n = img.shape[0]
    i, j = np.indices(img.shape)
    r = np.hypot(i - (n - 1) / 2, j - (n - 1) / 2)
    return np.array([img[(r >= lo) & (r < hi)].sum() for lo, hi in zip(edges_pix[:-1], edges_pix[1:])])


@pytest.fixture(scope="module")
def obs32():
    return Observation(npix=32)


@pytest.fixture(scope="module")
def settings():
    from pipeline.emission import resolve_apec

    tables = resolve_apec()
    return chain.ChainSettings(model_root=tables.root, model_vers=tables.version)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("chain")


def test_render_views_contract_and_determinism(obs32, settings, workdir):
    gas = beta_gas(obs32)
    out = chain.render_views(gas, ("x", "y", "z"), obs32, RNG_SEEDS, settings, workdir)
    assert len(out) == 3
    for (img, info), axis, seed in zip(out, "xyz", RNG_SEEDS):
        assert img.dtype == np.int32 and img.shape == (32, 32)
        assert info["axis"] == axis and info["seed"] == seed
        assert info["counts"] == int(img.sum())
        assert info["background_counts"] > 0 and info["source_counts"] > 0
        assert {"project_photons", "detector"} <= set(info["timings"])
    assert {"make_photons", "yt_load"} <= set(out[0][1]["timings"])
    again = chain.render_views(gas, ("x", "y", "z"), obs32, RNG_SEEDS, settings, workdir)
    for (a, _), (b, _) in zip(out, again):
        np.testing.assert_array_equal(a, b)
    other = chain.render_views(gas, ("x",), obs32, (99,), settings, workdir)
    assert not np.array_equal(other[0][0], out[0][0])
    assert not list(workdir.iterdir())  # photon and event files are cleaned up


def test_reused_dataset_renders_like_a_fresh_one(obs32, settings, workdir):
    first, second = beta_gas(obs32, n_e0=3e-3), beta_gas(obs32, n_e0=6e-3, kt_kev=3.0, rc_kpc=150.0)
    chain.render_views(first, ("x",), obs32, (1,), settings, workdir)  # caches the geometry
    reused = chain.render_views(second, ("x", "z"), obs32, (5, 6), settings, workdir)
    fresh = chain.render_views(
        second, ("x", "z"), obs32, (5, 6), dataclasses.replace(settings, reuse_dataset=False), workdir
    )
    for (a, _), (b, _) in zip(reused, fresh):
        np.testing.assert_array_equal(a, b)


def test_counts_and_profile_match_analytic_renderer(settings, workdir):
    obs = Observation(npix=64)
    gas = beta_gas(obs, n=64, n_e0=1e-2, kt_kev=6.0)
    edges = np.array([0, 2, 4, 7, 11, 16, 24])
    for grid in ("uniform", "nested"):
        s = dataclasses.replace(settings, grid=grid, nested_levels=3)
        axes = ("x", "y") if grid == "uniform" else ("z",)
        for img, info in chain.render_views(gas, axes, obs, RNG_SEEDS[: len(axes)], s, workdir):
            expected = analytic.expected_counts(gas, info["axis"], obs, background=False)
            assert info["source_counts"] == pytest.approx(expected.sum(), rel=0.02), grid
            bkg = analytic.background_counts_per_pixel(obs)
            assert info["background_counts"] == pytest.approx(bkg * img.size, rel=0.01)
            prof = radial_profile(img - bkg, edges)
            want = radial_profile(expected, edges)
            np.testing.assert_allclose(prof, want, rtol=0.05, err_msg=f"{grid} {info['axis']}")


def test_orientation_matches_analytic_renderer(obs32, settings, workdir):
    gas = beta_gas(obs32, rc_kpc=150.0, n_e0=2e-2, offset_kpc=(400.0, -700.0, 1000.0))
    bkg = analytic.background_counts_per_pixel(obs32)
    for img, info in chain.render_views(gas, ("x", "y", "z"), obs32, RNG_SEEDS, settings, workdir):
        expected = analytic.expected_counts(gas, info["axis"], obs32, background=False)
        i, j = np.indices(img.shape)
        src = np.clip(img - bkg, 0, None)
        got = ((src * i).sum() / src.sum(), (src * j).sum() / src.sum())
        want = ((expected * i).sum() / expected.sum(), (expected * j).sum() / expected.sum())
        np.testing.assert_allclose(got, want, atol=0.5, err_msg=info["axis"])


def test_fast_detector_matches_soxs(settings, workdir):
    """The project's detector step against SOXS instrument_simulator on the same events."""
    obs = Observation(npix=64)
    gas = beta_gas(obs, n=64, n_e0=1.5e-2, kt_kev=6.0)
    fast = chain.render_views(gas, ("y",), obs, RNG_SEEDS[:1], settings, workdir)
    soxs = chain.render_views(
        gas, ("y",), obs, RNG_SEEDS[:1], dataclasses.replace(settings, detector="soxs"), workdir
    )
    edges = np.array([0, 2, 4, 7, 11, 16, 24, 32])
    for (a, ia), (b, ib) in zip(fast, soxs):
        assert ia["n_events_projected"] == ib["n_events_projected"]  # same photons in
        assert a.sum() == pytest.approx(b.sum(), rel=0.02)
        assert ia["source_counts"] == pytest.approx(ib["source_counts"], rel=0.02)
        np.testing.assert_allclose(radial_profile(a, edges), radial_profile(b, edges), rtol=0.03)


def test_beta_model_slope_is_recovered(settings, workdir):
    from scipy.optimize import curve_fit

    obs = Observation(npix=64)
    beta, rc_kpc = 0.6, 200.0
    gas = beta_gas(obs, n=64, rc_kpc=rc_kpc, beta=beta, n_e0=2e-2, kt_kev=6.0)
    bkg = analytic.background_counts_per_pixel(obs)
    pix_kpc = obs.pixel_kpc()
    views = chain.render_views(gas, ("x", "y"), obs, RNG_SEEDS[:2], settings, workdir)  # nested grid
    img = sum(im.astype(float) for im, _ in views) / len(views)
    edges = np.arange(0, 17, 1.0)  # out to ~900 kpc: the line-of-sight truncation stays < 1%
    i, j = np.indices(img.shape)
    r = np.hypot(i - 31.5, j - 31.5)
    area = np.array([((r >= lo) & (r < hi)).sum() for lo, hi in zip(edges[:-1], edges[1:])])
    rmean = np.array([r[(r >= lo) & (r < hi)].mean() for lo, hi in zip(edges[:-1], edges[1:])])
    sb = radial_profile(img - bkg, edges) / area
    err = np.sqrt(radial_profile(img, edges) / len(views)) / area

    def model(rpix, s0, rc, b):
        return s0 * (1.0 + (rpix / rc) ** 2) ** (0.5 - 3.0 * b)

    popt, _ = curve_fit(model, rmean, sb, p0=(sb[0], rc_kpc / pix_kpc, 0.7), sigma=err)
    assert popt[2] == pytest.approx(beta, rel=0.04)


@pytest.mark.parametrize(
    "bad, match",
    [
        (dict(seeds=(1, 2)), "one seed per axis"),
        (dict(axes=("w",), seeds=(1,)), "axes must be"),
        (dict(settings=chain.ChainSettings(detector="magic")), "detector"),
        (dict(settings=chain.ChainSettings(model_root="/nonexistent", model_vers="zz")), "emission table"),
    ],
)
def test_bad_input_raises_one_clear_error(obs32, bad, match, workdir):
    kwargs = dict(gas=beta_gas(obs32), axes=("x",), obs=obs32, seeds=(1,), workdir=workdir)
    kwargs.update(bad)
    with pytest.raises(chain.ChainError, match=match):
        chain.render_views(**kwargs)


def test_bad_gas_raises(obs32, settings, workdir):
    gas = beta_gas(obs32)
    broken = dataclasses.replace(gas, kt_kev=gas.kt_kev[:-1])
    with pytest.raises(chain.ChainError, match="cubes of one shape"):
        chain.render_views(broken, ("x",), obs32, (1,), settings, workdir)
    nan = dataclasses.replace(gas, density_gcm3=np.full_like(gas.density_gcm3, np.nan))
    with pytest.raises(chain.ChainError, match="NaN"):
        chain.render_views(nan, ("x",), obs32, (1,), settings, workdir)


def test_emission_table_checksums(settings):
    sums = chain.emission_table_checksums(settings)
    assert set(sums) == {"emission_table", "emission_table_coco", "emission_table_line"}
    assert all(len(v) == 64 for v in sums.values())


@pytest.mark.slow
def test_fast_detector_matches_soxs_at_preset_size(settings, tmp_path):
    obs = Observation()
    gas = beta_gas(obs, n=128, n_e0=1e-2, kt_kev=6.0)
    fast = chain.render_views(gas, ("x",), obs, (3,), settings, tmp_path)
    soxs = chain.render_views(gas, ("x",), obs, (3,), dataclasses.replace(settings, detector="soxs"), tmp_path)
    edges = np.array([0, 3, 6, 10, 16, 25, 40, 64])
    assert fast[0][0].sum() == pytest.approx(soxs[0][0].sum(), rel=0.02)
    np.testing.assert_allclose(radial_profile(fast[0][0], edges), radial_profile(soxs[0][0], edges), rtol=0.03)


@pytest.mark.bench
def test_bench_chain_epoch(benchmark, settings, tmp_path):
    """One cluster-epoch (3 views) at the preset size (128^3 grid, 128x128 images)."""
    obs = Observation()
    gas = beta_gas(obs, n=128, n_e0=5e-3, kt_kev=5.0)
    chain.render_views(gas, ("x",), obs, (1,), settings, tmp_path)  # warm caches (table, dataset)
    out = benchmark.pedantic(
        chain.render_views, args=(gas, ("x", "y", "z"), obs, RNG_SEEDS, settings, tmp_path), rounds=3, iterations=1
    )
    stages: dict = {}
    for _, info in out:
        for k, v in info["timings"].items():
            stages[k] = stages.get(k, 0.0) + v
    benchmark.extra_info.update({f"{k}_s": round(v, 4) for k, v in stages.items()})
    benchmark.extra_info["source_counts_per_view"] = int(np.mean([i["source_counts"] for _, i in out]))


def test_chain_and_analytic_agree_with_the_sky(settings, tmp_path):
    """Same sky through the real chain (fast detector) and the analytic expectation:
    total counts within 2 %, radial profiles (5 annuli, 3 views summed) within 3 %."""
    from pipeline import sky

    obs64 = Observation(npix=64)
    all_parts = sky.SkySwitches(True, True, True)
    gas = beta_gas(obs64, n=64, n_e0=1e-2, kt_kev=6.0)
    seeds = (21, 22, 23)
    skies = [sky.draw_sky(s, obs64, all_parts) for s in seeds]
    plain = chain.render_views(gas, ("x", "y", "z"), obs64, seeds, settings, tmp_path)
    with_sky = chain.render_views(gas, ("x", "y", "z"), obs64, seeds, settings, tmp_path, skies=skies)
    edges = np.array([0, 4, 8, 14, 22, 32])
    got_total, want_total = 0.0, 0.0
    got_prof, want_prof = 0.0, 0.0
    for (img0, _), (img, info), model in zip(plain, with_sky, skies):
        expected = (analytic.expected_counts(gas, info["axis"], obs64) + model.expected_image()
                    + model.diffuse_counts_per_pixel)
        bkg = analytic.background_counts_per_pixel(obs64) + model.diffuse_counts_per_pixel
        assert info["background_counts"] == pytest.approx(bkg * img.size, rel=0.01)
        assert img.sum() > img0.sum() + 0.5 * model.expected_image().sum()
        got_total += img.sum()
        want_total += expected.sum()
        got_prof = got_prof + radial_profile(img, edges)
        want_prof = want_prof + radial_profile(expected, edges)
    assert got_total == pytest.approx(want_total, rel=0.02)
    np.testing.assert_allclose(got_prof, want_prof, rtol=0.03)


def test_sky_through_soxs_matches_the_fast_detector(settings, tmp_path):
    """The sky photons put through SOXS instrument_simulator (with the cluster's events) give
    the counts and profile of the fast detector step: the same sky in both detectors (along
    x, whose image is transposed: the sky's positions are mapped back before SOXS)."""
    from pipeline import sky

    obs = Observation(npix=64)
    gas = beta_gas(obs, n=64, n_e0=1.5e-2, kt_kev=6.0)
    model = sky.draw_sky(31, obs, sky.SkySwitches(True, True, True))
    fast = chain.render_views(gas, ("x",), obs, (31,), settings, tmp_path, skies=[model])
    soxs = chain.render_views(gas, ("x",), obs, (31,), dataclasses.replace(settings, detector="soxs"),
                              tmp_path, skies=[model])
    (a, ia), (b, ib) = fast[0], soxs[0]
    assert ia["background_counts"] == pytest.approx(ib["background_counts"])
    assert a.sum() == pytest.approx(b.sum(), rel=0.02)
    edges = np.array([0, 4, 8, 14, 22, 32])
    np.testing.assert_allclose(radial_profile(a, edges), radial_profile(b, edges), rtol=0.03)
    # the brightest listed source lands in the same pixel in both
    src = max(model.sources, key=lambda s: s.expected_counts if s.kind == "point" else 0.0)
    r, c = int(round(src.y_pix)), int(round(src.x_pix))
    assert a[r, c] > 0.5 * src.expected_counts and b[r, c] > 0.5 * src.expected_counts
