"""TNG API cutouts as they come (issue 14, item 8): no Config group, FoF members only, and
the one M-T relation shared with the synthetic population."""
from __future__ import annotations

import logging

import h5py
import numpy as np
import pytest

from pipeline import tng
from pipeline.observation import Observation
from pipeline.population import PopulationParams, t500_mean_kev


@pytest.fixture(scope="module")
def bare_tng_dir(tmp_path_factory):
    """A cutout without the Config group, as many real API cutouts are."""
    d = tmp_path_factory.mktemp("tng_bare")
    entry = tng.write_test_cutout(d / "cutout_3.hdf5", n_cells=3000, with_config=False)
    tng.write_group_catalog(d, [dict(entry, halo_id=3)])
    return d


def test_cutout_without_config_group_loads(bare_tng_dir):
    path = bare_tng_dir / "cutout_3.hdf5"
    with h5py.File(path, "r") as f:
        assert "Config" not in f  # the test data is what it claims to be
    tng.check_cutout(path)
    (halo,) = tng.read_group_catalog(bare_tng_dir)
    ds, center, region = tng.load_cutout(halo, side_kpc=5000.0)
    hot_t = region[tng.HOT_GAS_FILTER, "temperature"].to_value("K")
    assert hot_t.size > 2000 and hot_t.min() > tng.HOT_GAS_T_MIN_K
    assert np.median(hot_t) * 8.617333262e-8 == pytest.approx(5.0, rel=0.01)


def test_population_says_cutouts_hold_fof_members_only(bare_tng_dir, caplog):
    with caplog.at_level(logging.WARNING, logger="pipeline.tng"):
        tng.tng_population(bare_tng_dir, None, Observation())
    assert any("friends-of-friends" in r.getMessage() for r in caplog.records)
    assert "friends-of-friends" in tng.__doc__


@pytest.mark.parametrize("version", [1, 2])
def test_temperature_is_the_populations_relation(bare_tng_dir, version):
    """One M-T constant: the TNG rows' T500 is pipeline.population.t500_mean_kev itself."""
    params = PopulationParams(version=version)
    pop = tng.tng_population(bare_tng_dir, params, Observation())
    (halo,) = tng.read_group_catalog(bare_tng_dir)
    expected = float(t500_mean_kev(halo.m500c_msun, halo.snapshot_redshift, params))
    assert pop["t500_kev"].iloc[0] == pytest.approx(expected, rel=1e-12)
