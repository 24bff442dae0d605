"""The synthetic population: determinism, seeds, ranges, state statistics."""
from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from benchmark.core.errors import ClusterMassError
from benchmark.core.cosmology import efunc, kpc_per_arcsec, r500c_kpc
from pipeline.population import (
    REFERENCES, VIEWS, PopulationParams, gas_seed, make_population, rotation_matrix, view_seed,
)

SMALL = PopulationParams(n_clusters=12, n_epochs=4)


@pytest.fixture(scope="module")
def full_pop():
    """The 329 x 8 population of version 1 (population only: a few seconds); version 2 in
    test_population_v2.py."""
    return make_population(PopulationParams(version=1), 20190521)


# --- determinism and seeds ----------------------------------------------------------------


def test_same_seed_same_population_and_different_seed_differs():
    a = make_population(SMALL, 7)
    b = make_population(SMALL, 7)
    pd.testing.assert_frame_equal(a, b)
    c = make_population(SMALL, 8)
    assert not np.allclose(a["log10_m500c"], c["log10_m500c"])


def test_seeds_are_order_independent_and_unique():
    small = make_population(PopulationParams(n_clusters=5, n_epochs=3), 11)
    big = make_population(PopulationParams(n_clusters=9, n_epochs=5), 11)
    merged = small.merge(big, on=["cluster_id", "epoch"], suffixes=("_s", "_b"))
    assert len(merged) == 15
    for col in ("seed", "seed_x", "seed_y", "seed_z"):
        assert (merged[f"{col}_s"] == merged[f"{col}_b"]).all()
    # the seed of one view does not depend on what was derived before it
    forward = [view_seed(11, c, e, v) for c in range(3) for e in range(2) for v in VIEWS]
    backward = [view_seed(11, c, e, v) for c in reversed(range(3)) for e in reversed(range(2))
                for v in reversed(VIEWS)]
    assert sorted(forward) == sorted(backward)
    assert view_seed(11, 2, 1, "y") == view_seed(11, 2, 1, 1)
    assert gas_seed(11, 2, 1) == small.set_index(["cluster_id", "epoch"]).loc[(2, 1), "seed"]
    seeds = pd.concat([big[c] for c in ("seed", "seed_x", "seed_y", "seed_z")])
    assert seeds.is_unique
    assert seeds.max() < 2**53  # survives float64


def test_master_seed_must_be_non_negative_integer():
    with pytest.raises(ClusterMassError, match="master_seed"):
        make_population(SMALL, -1)


def test_bad_parameters_raise_one_clear_error():
    with pytest.raises(ClusterMassError, match="n_clusters"):
        PopulationParams(n_clusters=0)
    with pytest.raises(ClusterMassError, match="merger_ratio_range"):
        PopulationParams(merger_ratio_range=(6.0, 2.0))
    with pytest.raises(ClusterMassError, match="cc_fraction"):
        PopulationParams(cc_fraction=1.5)


def test_presets_override_fields_by_name():
    params = dataclasses.replace(PopulationParams(), n_clusters=20, n_epochs=2)
    pop = make_population(params, 1)
    assert len(pop) == 40 and set(pop["epoch"]) == {0, 1}


# --- ranges -------------------------------------------------------------------------------


def test_ranges_and_internal_consistency(full_pop):
    pop = full_pop
    assert len(pop) == 329 * 8
    e0 = pop[pop.epoch == 0]
    assert e0["log10_m500c"].between(13.75, 15.2).all()
    assert e0["log10_m500c"].max() > 15.0 and e0["log10_m500c"].min() < 13.8
    # steeply falling: more than half below 1e14.3, a handful above 1e15
    assert (e0["log10_m500c"] < 14.3).mean() > 0.5
    assert 1 <= (e0["log10_m500c"] > 15.0).sum() <= 8
    # accretion: never heavier at an earlier epoch
    wide = pop.pivot(index="cluster_id", columns="epoch", values="log10_m500c").to_numpy()
    assert (np.diff(wide, axis=1) <= 1e-12).all()
    assert (wide[:, 0] - wide[:, -1]).mean() > 0.05
    m = 10 ** pop["log10_m500c"].to_numpy()
    np.testing.assert_allclose(pop["r500c_kpc"], r500c_kpc(m, 0.2), rtol=1e-10)
    np.testing.assert_allclose(pop["r500c_arcmin"],
                               pop["r500c_kpc"] / float(kpc_per_arcsec(0.2)) / 60, rtol=1e-10)
    assert (pop["redshift"] == 0.2).all()
    assert pop["t500_kev"].between(0.5, 20).all()
    assert pop["gas_fraction"].between(0.04, 0.16).all()
    assert pop["axis_q1"].between(0.55, 1).all() and pop["axis_q2"].between(0.55, 1).all()
    q = pop[["quat_w", "quat_x", "quat_y", "quat_z"]].to_numpy()
    np.testing.assert_allclose(np.linalg.norm(q, axis=1), 1.0)
    rot = rotation_matrix(q[0])
    np.testing.assert_allclose(rot @ rot.T, np.eye(3), atol=1e-12)
    assert (pop["n_subclumps"] >= 0).all() and pop["n_subclumps"].mean() > 1


def test_mass_temperature_and_gas_fraction_relations(full_pop):
    pop = full_pop
    lm = pop["log10_m500c"].to_numpy()
    slope_t = np.polyfit(lm, np.log10(pop["t500_kev"]), 1)[0]
    assert slope_t == pytest.approx(1 / 1.53, abs=0.03)  # Vikhlinin et al. 2009
    resid = np.log(pop["t500_kev"]) - np.polyval(np.polyfit(lm, np.log(pop["t500_kev"]), 1), lm)
    assert 0.07 < resid.std() < 0.13
    slope_f = np.polyfit(lm, np.log10(pop["gas_fraction"]), 1)[0]
    assert slope_f == pytest.approx(0.2, abs=0.03)
    resid = np.log(pop["gas_fraction"]) - np.polyval(np.polyfit(lm, np.log(pop["gas_fraction"]), 1), lm)
    assert 0.04 < resid.std() < 0.07


# --- dynamical states ------------------------------------------------------------------------


def _lag1(pop, col):
    wide = pop.pivot(index="cluster_id", columns="epoch", values=col).to_numpy(float)
    return np.corrcoef(wide[:, :-1].ravel(), wide[:, 1:].ravel())[0, 1]


def test_cool_core_fraction_and_persistence(full_pop):
    assert 0.33 < full_pop["cool_core"].mean() < 0.47
    assert 0.3 < full_pop.loc[full_pop.epoch == 0, "cool_core"].mean() < 0.5
    assert _lag1(full_pop, "cool_core") > 0.6  # persistent-ish across epochs


def test_merger_fraction_correlation_and_companions(full_pop):
    pop = full_pop
    assert 0.2 < pop["merger"].mean() < 0.3
    assert 0.2 < _lag1(pop, "merger") < 0.6  # correlated between neighbouring epochs
    mg = pop[pop.merger == 1]
    assert mg["merger_ratio"].between(2.0, 6.0).all()
    assert mg["merger_sep_frac"].between(0.3, 1.5).all()
    assert mg["core_offset_frac"].between(0.01, 0.05).all()
    direction = mg[["merger_dir_x", "merger_dir_y", "merger_dir_z"]].to_numpy()
    np.testing.assert_allclose(np.linalg.norm(direction, axis=1), 1.0)
    assert (pop.loc[pop.merger == 0, "merger_ratio"] == 0).all()
    # one companion per run of merger epochs, falling in: closer at later (lower) epochs
    for _, g in mg.groupby("cluster_id"):
        g = g.sort_values("epoch")
        starts = np.concatenate([[0], np.where(np.diff(g["epoch"].to_numpy()) > 1)[0] + 1, [len(g)]])
        for lo, hi in zip(starts[:-1], starts[1:]):
            run = g.iloc[lo:hi]
            assert run["merger_ratio"].nunique() == 1
            assert (np.diff(run["merger_sep_frac"].to_numpy()) >= 0).all()


def test_survey_redshifts():
    params = PopulationParams(n_clusters=10, n_epochs=3, survey_redshifts=True)
    pop = make_population(params, 3)
    fixed = make_population(dataclasses.replace(params, survey_redshifts=False), 3)
    assert pop["redshift"].between(0.10, 0.45).all()
    assert pop["redshift"].nunique() == len(pop)
    np.testing.assert_allclose(pop["r500c_kpc"], r500c_kpc(10 ** pop["log10_m500c"], pop["redshift"]))
    ratio = (pop["t500_kev"] / fixed["t500_kev"]).to_numpy()
    expect = (efunc(pop["redshift"].to_numpy()) / efunc(0.2)) ** (1 / 1.53)
    np.testing.assert_allclose(ratio, expect, rtol=1e-10)
    pd.testing.assert_series_equal(pop["log10_m500c"], fixed["log10_m500c"])


def test_references_are_listed():
    assert len(REFERENCES) >= 10
    assert any("Vikhlinin" in r and "2006" in r for r in REFERENCES)
