"""The sky of a view (pipeline.sky): draws, both renderers, the source list in the file."""
from __future__ import annotations


import h5py
import numpy as np
import pandas as pd
import pytest

from benchmark.core.errors import ClusterMassError
from benchmark.dataset.checker import _sources_problems
from benchmark.dataset.sources import read_sources
from pipeline import analytic, sky
from pipeline.generate import sky_sources, write_cluster_file
from pipeline.observation import Observation
from pipeline.population import PopulationParams

ALL = sky.SkySwitches(True, True, True)


def same(a: list[dict], b: list[dict]) -> bool:
    """Equal source lists (NaN redshifts of point sources compare equal)."""
    return len(a) == len(b) and pd.DataFrame(a).equals(pd.DataFrame(b))


@pytest.fixture(scope="module")
def obs64():
    return Observation(npix=64)


def test_sky_is_deterministic_per_seed_and_differs_between_seeds(obs64):
    a, b, c = (sky.draw_sky(s, obs64, ALL) for s in (7, 7, 8))
    assert same(a.records(), b.records())
    np.testing.assert_array_equal(a.expected_image(), b.expected_image())
    assert not same(a.records(), c.records())
    kinds = {s["kind"] for s in a.records()}
    assert kinds == {"point", "halo"}
    assert a.diffuse_counts_per_pixel > 0


def test_parts_have_their_own_streams(obs64):
    """Switching haloes off leaves the point sources as they were (no shared draws)."""
    both = sky.draw_sky(3, obs64, ALL)
    points = sky.draw_sky(3, obs64, sky.SkySwitches(True, False, False))
    want = [s.record() for s in both.sources if s.kind == "point"]
    assert same([s.record() for s in points.sources], want)
    assert sky.draw_sky(3, obs64, sky.SkySwitches()).sources == ()
    assert sky.draw_sky(3, obs64, sky.SkySwitches()).diffuse_counts_per_pixel == 0.0


def test_switches_off_at_version_1_and_on_at_version_2():
    assert not sky.SkySwitches.from_params(PopulationParams(version=1)).any
    assert sky.SkySwitches.from_params(PopulationParams()) == ALL
    assert sky.view_skies([1, 2], Observation(), PopulationParams(version=1)) == [None, None]
    with pytest.raises(ClusterMassError, match="sky_diffuse"):
        PopulationParams(sky_diffuse="yes")


def test_expected_counts_add_up_and_listing_floor(obs64):
    model = sky.draw_sky(11, obs64, ALL)
    img = model.expected_image()
    listed = sum(s.expected_counts for s in model.sources)
    assert img.sum() == pytest.approx(listed, rel=1e-9)
    assert min(s.total_counts for s in model.sources) >= sky.LIST_MIN_COUNTS
    for s in model.sources:
        assert s.expected_counts <= s.total_counts * (1 + 1e-12)


def test_point_source_counts_follow_the_response(obs64):
    """A point source's expected counts equal its spectrum folded through ARF, band and wabs."""
    model = sky.draw_sky(5, obs64, sky.SkySwitches(True, False, False))
    src = max(model.sources, key=lambda s: s.total_counts)
    resp = analytic.response_on_grid(obs64, absorbed=False)
    spec = sky.source_spectrum(src, obs64.nH_1e22)
    assert np.sum(spec * resp) * obs64.exposure_ks * 1e3 == pytest.approx(src.total_counts, rel=2e-3)


def test_source_list_round_trip_and_checker(obs64, tmp_path):
    models = [sky.draw_sky(s, obs64, ALL) for s in (1, 2)]
    views = [{"image_id": f"c0001_e0_{p}", "sky_sources": m.records()} for p, m in zip("xy", models)]
    sources = sky_sources(views)
    assert all("sky_sources" not in v for v in views)
    path = tmp_path / "cluster_0001.h5"
    counts = np.zeros((2, 64, 64), np.int32)
    write_cluster_file(path, counts, views, {"npix": 64}, h5py, sources=sources)
    table = read_sources(path)
    assert list(table.columns) == ["view_index", "image_id", "kind", "x_pix", "y_pix", "expected_counts",
                                   "flux_cgs", "redshift"]
    assert len(table) == sum(len(m.sources) for m in models)
    first = table[table["image_id"] == "c0001_e0_x"]
    want = sorted(models[0].records(), key=lambda s: -s["expected_counts"])
    np.testing.assert_allclose(first["x_pix"], [s["x_pix"] for s in want])
    assert list(first["kind"]) == [s["kind"] for s in want]
    assert table.loc[table["kind"] == "point", "redshift"].isna().all()
    with h5py.File(path, "r") as h5:
        rows = h5["sources"][()]
    assert _sources_problems(rows, "f", 2, 64) == []
    bad = rows.copy()
    bad["view_index"][-1] = 5
    bad["kind"][0] = 9
    problems = _sources_problems(bad, "f", 2, 64)
    assert any("views outside" in p for p in problems) and any("kinds" in p for p in problems)
    bad = rows.copy()
    bad["x_pix"][0] = 200.0
    assert any("x_pix" in p for p in _sources_problems(bad, "f", 2, 64))


def test_version_1_file_has_no_source_list(tmp_path):
    path = tmp_path / "cluster_0002.h5"
    write_cluster_file(path, np.zeros((1, 8, 8), np.int32), [{"image_id": "c0002_e0_x"}], {}, h5py)
    with h5py.File(path, "r") as h5:
        assert "sources" not in h5
    assert read_sources(path).empty


def test_generated_dataset_keeps_each_view_s_sky(serial_dataset):
    """The ci dataset (population version 2): every view has its source list, the catalog's
    background includes the diffuse sky, and the listed sources are in the images.
    (Worker-order independence of these bytes: test_generate's Dask test on the same data.)"""
    from benchmark.dataset.loader import ClusterMassDataset

    ds = ClusterMassDataset(serial_dataset)
    catalog = ds.catalog
    table = read_sources(serial_dataset)
    assert set(table["image_id"]) == set(catalog["image_id"])
    assert {"point", "halo"} <= set(table["kind"])
    obs = Observation()
    particle = analytic.background_counts_per_pixel(obs) * obs.npix**2
    assert (catalog["background_counts"] > 1.05 * particle).all()
    # each view's sky equals the one drawn again from its seed
    row = catalog.iloc[4]
    model = sky.draw_sky(int(row["seed"]), obs, ALL)
    mine = table[table["image_id"] == row["image_id"]]
    assert len(mine) == len(model.sources)
    assert mine["expected_counts"].sum() == pytest.approx(sum(s.expected_counts for s in model.sources))
    # the brightest point source is in the image
    image = ds.images(indices=[4])[0]
    bright = mine[mine["kind"] == "point"].iloc[0]
    r, c = int(round(bright["y_pix"])), int(round(bright["x_pix"]))
    assert image[r, c] >= 0.5 * bright["expected_counts"]


def test_sky_references_reach_the_dataset_card():
    from pipeline.population import REFERENCES_V2

    assert set(sky.REFERENCES_SKY) <= set(REFERENCES_V2)


# --- the line-of-sight haloes' calibration on observed extended sources ---------------------

def test_halo_fluxes_table_matches_exact_spectra():
    """The tabulated 0.5-2 keV fluxes agree with each halo's exact spectrum (a few per cent)."""
    from benchmark.core.cosmology import KEV_TO_ERG
    from pipeline.population import t500_mean_kev

    params = PopulationParams()
    flux = sky.halo_fluxes(params)
    _, _, mass, z = sky._halo_catalog()
    mid = 0.5 * (sky._edges()[1:] + sky._edges()[:-1])
    band = (mid >= 0.5) & (mid < 2.0)
    ratios = []
    for i in np.random.default_rng(3).choice(mass.size, 300, replace=False):
        em, _ = sky._halo_em(mass[i], z[i], params)
        spec = float(em) * analytic.thermal_spectrum_per_em(z[i], float(t500_mean_kev(mass[i], z[i], params)),
                                                            sky.HALO_Z_SOLAR)
        ratios.append(flux[i] / (np.sum(spec[band] * mid[band]) * KEV_TO_ERG))
    assert np.median(ratios) == pytest.approx(1.0, abs=0.01)
    assert np.percentile(ratios, 1) > 0.85 and np.percentile(ratios, 99) < 1.15


def test_default_halo_scale_is_the_fit_and_meets_the_observed_counts():
    """The default sky_halo_lx_scale is what fit_halo_lx_scale derives from the published
    counts, and with it every halo observable lies in its range; the uncalibrated relation
    (scale 1) over-predicts them."""
    params = PopulationParams()
    assert sky.fit_halo_lx_scale(params) == pytest.approx(params.sky_halo_lx_scale)
    calibrated = sky.halo_statistics(params)
    for key, _, _, _, low, high, _ in sky.HALO_OBSERVABLES:
        assert low <= calibrated[key] <= high, key
    raw = sky.halo_statistics(PopulationParams(sky_halo_lx_scale=1.0))
    assert raw["los_halo_density_4e14_deg2"] > 2 * calibrated["los_halo_density_4e14_deg2"]
    assert raw["los_halo_cxb_share_05_2"] == pytest.approx(calibrated["los_halo_cxb_share_05_2"] / params.sky_halo_lx_scale)


def test_halo_scale_reaches_the_listed_haloes(obs64):
    """Halving the scale halves every listed halo's counts (same positions, same draws)."""
    one = sky.draw_sky(11, obs64, ALL, PopulationParams(sky_halo_lx_scale=0.6))
    half = sky.draw_sky(11, obs64, ALL, PopulationParams(sky_halo_lx_scale=0.3))
    listed = {(s.x_pix, s.y_pix): s.expected_counts for s in half.sources if s.kind == "halo"}
    assert listed
    for s in one.sources:
        if s.kind == "halo" and (s.x_pix, s.y_pix) in listed:
            assert listed[(s.x_pix, s.y_pix)] == pytest.approx(0.5 * s.expected_counts, rel=1e-9)


@pytest.mark.parametrize("value", [0.0, -0.3, 11.0])
def test_bad_halo_scale_is_one_clear_error(value):
    with pytest.raises(ClusterMassError, match="sky_halo_lx_scale"):
        PopulationParams(sky_halo_lx_scale=value)
