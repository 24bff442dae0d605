"""TNG cutouts: format checks, the hot-gas filter and one small cutout through the real chain."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from pipeline import chain, tng
from pipeline.gas import GasGrid
from benchmark.core.cosmology import r500c_kpc
from pipeline.observation import Observation


@pytest.fixture(scope="module")
def tng_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("tng")
    entry = tng.write_test_cutout(d / "cutout_7.hdf5", n_cells=20000, n_e0_cm3=5e-3, kt_kev=5.0, rc_kpc=150.0)
    tng.write_group_catalog(d, [dict(entry, halo_id=7)])
    return d


def test_catalog_is_read_in_physical_units(tng_dir):
    (halo,) = tng.read_group_catalog(tng_dir)
    assert halo.halo_id == 7 and halo.epoch == 0
    assert halo.m500c_msun == pytest.approx(3e14)
    assert halo.r500c_kpc == pytest.approx(float(r500c_kpc(3e14, 0.0)), rel=1e-6)
    pop = tng.tng_population(tng_dir, None, Observation())
    assert list(pop["cluster_id"]) == [7]
    assert pop["log10_m500c"].iloc[0] == pytest.approx(np.log10(3e14))
    assert pop["redshift"].iloc[0] == pytest.approx(Observation().z_obs)
    assert tng.halo_from_row(pop.iloc[0].to_dict()) == halo


def test_missing_catalog_field_and_file_are_named_before_any_work(tmp_path):
    with pytest.raises(tng.TNGError, match="no group catalog"):
        tng.read_group_catalog(tmp_path)
    entry = tng.write_test_cutout(tmp_path / "a.hdf5", n_cells=500, drop_fields=("GFM_Metallicity",))
    tng.write_group_catalog(tmp_path, [entry, {"halo_id": 9, "file": "nope.hdf5", "GroupPos": [0, 0, 0],
                                               "Group_M_Crit500": 1.0, "Group_R_Crit500": 1.0}])
    with pytest.raises(tng.TNGError) as err:
        tng.read_group_catalog(tmp_path)
    assert "GFM_Metallicity" in str(err.value) and "nope.hdf5" in str(err.value)
    (tmp_path / "a.hdf5").write_bytes(b"not hdf5")
    with pytest.raises(tng.TNGError, match="not a readable HDF5"):
        tng.check_cutout(tmp_path / "a.hdf5")
    with h5py.File(tmp_path / "b.hdf5", "w") as f:
        f.create_group("Header")
    with pytest.raises(tng.TNGError, match="PartType0"):  # Config is not needed (issue 14)
        tng.check_cutout(tmp_path / "b.hdf5")
    (tmp_path / "halos.json").write_text(json.dumps({"redshift": 0.0}))
    with pytest.raises(tng.TNGError, match="hubble"):
        tng.read_group_catalog(tmp_path)


def test_hot_gas_filter_drops_cold_and_star_forming_cells(tng_dir):
    (halo,) = tng.read_group_catalog(tng_dir)
    ds, center, region = tng.load_cutout(halo, side_kpc=5000.0)
    hot_t = region[tng.HOT_GAS_FILTER, "temperature"].to_value("K")
    all_t = region["PartType0", "temperature"].to_value("K")
    assert hot_t.min() > tng.HOT_GAS_T_MIN_K
    assert (region[tng.HOT_GAS_FILTER, "StarFormationRate"].d == 0).all()
    assert 0.9 < hot_t.size / all_t.size < 0.99  # 5% of the test cells are cold
    np.testing.assert_allclose(center.to_value("kpc"), np.array(halo.pos_ckpch) / halo.hubble, rtol=1e-6)  # header kpc = 3.085678e21 cm
    # temperature derived by yt from InternalEnergy and ElectronAbundance
    assert np.median(hot_t) * 8.617333262e-8 == pytest.approx(5.0, rel=0.01)


def test_cutout_through_the_chain_matches_the_same_cluster_on_a_grid(tng_dir, tmp_path):
    obs = Observation(npix=32)
    (halo,) = tng.read_group_catalog(tng_dir)
    out = tng.render_tng_views(halo, ("x", "y"), obs, (1, 2), None, tmp_path)
    # the same beta model on the chain's grid path (cells at the image field)
    n = 32
    cell = obs.fov_kpc() / n
    c = (np.arange(n) + 0.5 - 0.5 * n) * cell
    x, y, z = np.meshgrid(c, c, c, indexing="ij")
    ne = 5e-3 * (1.0 + (x * x + y * y + z * z) / 150.0**2) ** -1.0
    rho = (ne * 1.67262192e-24 / 0.88).astype(np.float32)
    gas = GasGrid(rho, np.full_like(rho, 5.0), np.full_like(rho, 0.3), cell, n * cell, 1000.0, obs.z_obs)
    grid = chain.render_views(gas, ("x",), obs, (3,), None, tmp_path)
    bkg = out[0][1]["background_counts"] / 32**2
    for img, info in out:
        assert img.shape == (32, 32) and img.dtype == np.int32 and info["halo_id"] == 7
        # 95% of the test cells are hot; Monte-Carlo cells scatter the emission measure by ~2%
        assert info["source_counts"] / grid[0][1]["source_counts"] == pytest.approx(0.95, abs=0.06)
        i, j = np.indices(img.shape)
        src = np.clip(img - bkg, 0, None)
        assert (src * i).sum() / src.sum() == pytest.approx(15.5, abs=0.5)  # centred on GroupPos
        assert (src * j).sum() / src.sum() == pytest.approx(15.5, abs=0.5)
