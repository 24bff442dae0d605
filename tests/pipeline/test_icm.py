"""ICM structure of population version 2 (pipeline.icm): fluctuation field, clumping factor,
sloshing fronts, outer slopes tied to accretion, their switches and the report's rows."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from benchmark.core.errors import ClusterMassError
from pipeline import icm
from pipeline.gas import GridSpec, build_gas_grid, view_truth
from pipeline.observation import Observation
from pipeline.population import REFERENCES_V2, V2_FIELDS, PopulationParams, make_population
from pipeline.report import observables_table

OBS = Observation()
GRID64 = GridSpec(npix=64).resolved(OBS, OBS.z_obs)
SEED = 20190521


@pytest.fixture(scope="module")
def pop():
    return make_population(PopulationParams(n_clusters=40, n_epochs=4), SEED)


def _calm(row, **extra):
    """A relaxed, spherical, clump-free version of a row (the field's own clumping)."""
    row = dict(row)
    row.update(merger=0, merger_ratio=0.0, merger_sep_frac=0.0, core_offset_frac=0.0, rc_boost=1.0,
               n_subclumps=0, axis_q1=1.0, axis_q2=1.0, sloshing=0)
    row.update(extra)
    return row


def _build(row, grid=GRID64):
    return build_gas_grid(row, grid, np.random.default_rng(int(row["seed"])))


def _median_row(pop, **conditions):
    sel = np.ones(len(pop), bool)
    for key, value in conditions.items():
        sel &= (pop[key] == value).to_numpy()
    sub = pop[sel]
    return sub.iloc[len(sub) // 2].to_dict()


# --- the field ---------------------------------------------------------------------------


def test_field_is_deterministic_unit_variance_and_band_limited():
    a = icm.fluctuation_field(64, 50.0, 400.0, seed=7)
    b = icm.fluctuation_field(64, 50.0, 400.0, seed=7)
    c = icm.fluctuation_field(64, 50.0, 400.0, seed=8)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    assert a.dtype == np.float32 and a.shape == (64, 64, 64)
    assert abs(float(a.mean())) < 1e-4 and 0.9 < float(a.std()) < 1.1
    power = np.abs(np.fft.rfftn(a.astype(np.float64))) ** 2
    k = np.sqrt(np.fft.fftfreq(64)[:, None, None] ** 2 + np.fft.fftfreq(64)[None, :, None] ** 2
                + np.fft.rfftfreq(64)[None, None, :] ** 2)  # cycles per cell
    short = k >= 1.0 / icm.FIELD_MIN_WAVELENGTH_CELLS
    assert power[short].max() < 1e-6 * power.max()  # nothing the 2x coarser cells miss
    # Kolmogorov below injection (400 kpc = 40 cells of 10 kpc): power falls ~ k^-11/3
    fine = np.abs(np.fft.rfftn(icm.fluctuation_field(64, 10.0, 400.0, seed=7).astype(np.float64))) ** 2
    lo, hi = (np.abs(k - 0.08) < 0.01), (np.abs(k - 0.2) < 0.01)
    slope = np.log(fine[hi].mean() / fine[lo].mean()) / np.log(0.2 / 0.08)
    assert -4.2 < slope < -3.0


def test_population_columns_are_per_epoch_and_seeded_from_the_gas_stream(pop):
    again = make_population(PopulationParams(n_clusters=40, n_epochs=4), SEED)
    np.testing.assert_array_equal(pop["icm_seed"], again["icm_seed"])
    assert pop["icm_seed"].nunique() == len(pop)  # one field per cluster epoch
    assert set(pop["icm_seed"]).isdisjoint(pop["seed"])
    assert icm.icm_seed(SEED, 3, 1) == pop.set_index(["cluster_id", "epoch"]).loc[(3, 1), "icm_seed"]


def test_field_is_shared_by_the_three_projections(pop):
    row = _median_row(pop, merger=0)
    gas, again = _build(row), _build(row)
    np.testing.assert_array_equal(gas.density_gcm3, again.density_gcm3)
    np.testing.assert_array_equal(gas.kt_kev, again.kt_kev)
    box = [view_truth(gas, row, axis)["lx_box_erg_s"] for axis in "xyz"]
    np.testing.assert_allclose(box, box[0], rtol=1e-9)  # one cube, three projections
    smooth = _build(dict(row, icm_sigma500_ln=0.0))
    assert np.abs(gas.density_gcm3 / smooth.density_gcm3 - 1.0).max() > 0.3


# --- clumping ----------------------------------------------------------------------------


def test_clumping_at_r500_is_in_the_published_range_and_smaller_inside(pop):
    row = _calm(_median_row(pop, merger=0))
    gas = _build(row)
    smooth = _build(dict(row, icm_sigma500_ln=0.0, icm_sigma_core_ln=0.0))
    c500 = icm.clumping_factor(gas)
    assert 1.1 <= c500 <= 1.5  # Nagai & Lau 2011; Eckert et al. 2015
    assert icm.clumping_factor(smooth) < 1.05  # without the field: the profile's own gradient
    assert icm.clumping_factor(gas, (0.2, 0.3)) < c500
    assert gas.meta["max_cell_coarsening"] == icm.MAX_CELL_COARSENING
    assert "max_cell_coarsening" not in smooth.meta


def test_clumping_grows_with_disturbance(pop):
    assert pop.loc[pop["merger"] == 1, "icm_sigma500_ln"].median() > 1.2 * pop.loc[
        pop["merger"] == 0, "icm_sigma500_ln"].median()
    relaxed = pop[pop["merger"] == 0]
    assert np.corrcoef(relaxed["mah_alpha_dev"], np.log(relaxed["icm_sigma500_ln"]))[0, 1] > 0.4
    row = _calm(_median_row(pop, merger=0))
    calm = icm.clumping_factor(_build(row))
    stirred = icm.clumping_factor(_build(dict(row, icm_sigma500_ln=row["icm_sigma500_ln"] * 1.4)))
    assert stirred > calm + 0.05


def _log_spread_in_shell(gas, smooth, shell):
    """Standard deviation of ln(rho / rho_smooth) over the cells of a shell (R500c units)."""
    c = gas.centres_kpc() / float(gas.r500c_kpc)
    r = np.sqrt(c[:, None, None] ** 2 + c[None, :, None] ** 2 + c[None, None, :] ** 2)
    sel = (r >= shell[0]) & (r < shell[1])
    return float(np.log(gas.density_gcm3[sel] / smooth.density_gcm3[sel]).std())


def test_version_4_holds_the_width_beyond_2_r500c_and_version_3_does_not(pop):
    row = _median_row(pop, merger=0)
    assert row["icm_sigma_hold_frac"] == 2.0  # the default population is version 4
    x2 = np.array([1.0, 4.0, 9.0, 25.0], np.float32)
    held = icm.fluctuation_sigma2(x2, row)
    assert held[1] == held[2] == held[3] > held[0]
    v3 = {key: value for key, value in row.items() if key != "icm_sigma_hold_frac"}
    free = icm.fluctuation_sigma2(x2, v3)
    np.testing.assert_array_equal(free[:2], held[:2])  # the same inside 2 R500c
    assert free[3] > 5 * held[3]

    # on the gas grid: the log-density spread stops growing at 2 R500c at version 4 only
    calm = _calm(row, icm_sigma500_ln=0.6)
    smooth = _build(dict(calm, icm_sigma500_ln=0.0, icm_sigma_core_ln=0.0))
    bounded = _build(calm)
    unbounded = _build({key: value for key, value in calm.items() if key != "icm_sigma_hold_frac"})
    shells = (1.9, 2.1), (2.6, 2.9)
    spread_v4 = [_log_spread_in_shell(bounded, smooth, shell) for shell in shells]
    spread_v3 = [_log_spread_in_shell(unbounded, smooth, shell) for shell in shells]
    assert spread_v4[1] == pytest.approx(spread_v4[0], rel=0.15)
    assert spread_v3[1] > 1.2 * spread_v3[0]
    assert float(bounded.kt_kev.max()) < float(unbounded.kt_kev.max())


def test_versions_before_4_keep_their_records_and_columns():
    v3 = PopulationParams(version=3)
    assert v3.icm_sigma_hold_frac is None and "icm_sigma_hold_frac" not in v3.recorded()
    assert PopulationParams().recorded()["icm_sigma_hold_frac"] == 2.0
    pop3 = make_population(PopulationParams(n_clusters=4, n_epochs=2, version=3), SEED)
    assert "icm_sigma_hold_frac" not in pop3.columns
    pop4 = make_population(PopulationParams(n_clusters=4, n_epochs=2, icm_sigma_hold_frac=3.0), SEED)
    assert (pop4["icm_sigma_hold_frac"] == 3.0).all()
    # the hold is the only difference: every other column is version 3's
    assert (pop4["population_version"] == 4).all()
    pd.testing.assert_frame_equal(pop4.drop(columns=["icm_sigma_hold_frac", "population_version"]),
                                  pop3.drop(columns="population_version"))


def test_gas_mass_inside_r500_is_kept(pop):
    row = _median_row(pop, merger=0)
    gas = _build(row)
    assert gas.meta["mgas_r500_msun"] == pytest.approx(gas.meta["mgas_target_msun"], rel=1e-4)


# --- sloshing fronts ---------------------------------------------------------------------


def _front_row(jump=1.8):
    return dict(front_r_in_frac=0.06, front_r_out_frac=0.25, front_jump=jump, front_sense=1.0,
                front_normal_x=0.0, front_normal_y=0.0, front_normal_z=1.0,
                front_ref_x=1.0, front_ref_y=0.0, front_ref_z=0.0)


def test_front_has_the_stated_jump_and_continuous_pressure():
    row = _front_row()
    r500 = 1000.0
    phi = np.pi  # middle of the spiral
    r_f = float(icm.front_radius_frac(phi, row))
    inside, outside = (r_f * (1 - 1e-6), r_f * (1 + 1e-6))
    pts = np.array([[r * np.cos(phi) * r500 for r in (inside, outside)],
                    [r * np.sin(phi) * r500 for r in (inside, outside)], [0.0, 0.0]])
    f_in, f_out = icm.front_modulation(pts, row, r500)
    assert f_in / f_out == pytest.approx(1.8, rel=1e-4)  # density ratio; kT ratio is its inverse
    far = np.array([[4.0 * r500 * 0.25], [0.0], [0.0]])
    assert icm.front_modulation(far, row, r500)[0] == pytest.approx(1.0, abs=1e-6)
    ends = np.array([[r500 * 0.06 * 0.999, r500 * 0.25 * 1.001], [1e-9, -1e-9], [0.0, 0.0]])
    assert icm.front_modulation(ends, row, r500) == pytest.approx(1.0, abs=1e-3)  # ends fade


def test_front_on_the_grid_keeps_pressure_and_appears_only_where_drawn(pop):
    cool = pop[pop["cool_core"] == 1]
    share = cool["sloshing"].mean()
    assert 0.35 < share < 0.85  # sloshing_fraction 0.6 of cool cores (Ghizzardi et al. 2010)
    assert pop.loc[pop["cool_core"] == 0, "sloshing"].sum() == 0
    row = _calm(cool[cool["sloshing"] == 1].iloc[0].to_dict(), icm_sigma500_ln=0.0,
                icm_sigma_core_ln=0.0, n_subclumps=0)
    grid = GridSpec(npix=64, box_kpc=3.0 * row["r500c_kpc"])
    with_front = _build(dict(row, sloshing=1), grid)
    without = _build(row, grid)
    ratio = with_front.density_gcm3 / without.density_gcm3
    pressure = ratio * with_front.kt_kev / without.kt_kev
    assert ratio.max() / ratio.min() > 1.4  # the jump shows on 0.05 R500c cells
    hot = without.kt_kev > 0.2  # off the temperature floor
    np.testing.assert_allclose(pressure[hot] / np.median(pressure[hot]), 1.0, rtol=1e-4)


# --- outer slope tied to accretion --------------------------------------------------------


def test_outer_slope_follows_the_accretion_rate():
    on = make_population(PopulationParams(n_clusters=200, n_epochs=1), SEED)
    off = make_population(PopulationParams(n_clusters=200, n_epochs=1, outer_slope_accretion=False), SEED)
    assert np.corrcoef(on["mah_alpha_dev"], on["eps"])[0, 1] > 0.3
    assert np.corrcoef(on["mah_alpha_dev"], np.log(on["rs_frac"]))[0, 1] < -0.1
    assert abs(np.corrcoef(off["mah_alpha_dev"], off["eps"])[0, 1]) < 0.2
    assert on["eps"].std() == pytest.approx(off["eps"].std(), rel=0.2)  # same marginal spread


# --- switches, version 1, configuration ---------------------------------------------------


def test_switches_turn_each_ingredient_off():
    pop = make_population(PopulationParams(n_clusters=10, n_epochs=2, icm_fluctuations=False,
                                           sloshing_fronts=False), SEED)
    assert (pop["icm_sigma500_ln"] == 0).all() and (pop["sloshing"] == 0).all()
    v1 = make_population(PopulationParams(n_clusters=10, n_epochs=2, version=1), SEED)
    assert not {"icm_seed", "icm_sigma500_ln", "sloshing", "mah_alpha_dev"} & set(v1.columns)
    for name in ("icm_fluctuations", "sloshing_fronts", "outer_slope_accretion", "icm_sigma500_ln"):
        assert name in V2_FIELDS
        assert name not in PopulationParams(version=1).recorded()


@pytest.mark.parametrize("bad, match", [
    (dict(icm_sigma500_ln=-0.1), "icm_sigma500_ln"),
    (dict(icm_merger_boost=0.5), "icm_merger_boost"),
    (dict(icm_injection_kpc=0.0), "icm_injection_kpc"),
    (dict(sloshing_fraction=1.5), "sloshing_fraction"),
    (dict(sloshing_jump_range=(0.8, 2.0)), "sloshing_jump_range"),
    (dict(icm_fluctuations="yes"), "icm_fluctuations"),
    (dict(icm_sigma_hold_frac=0.5), "icm_sigma_hold_frac = 0.5 must be >= 1"),
    (dict(icm_sigma_hold_frac=2.0, version=3), "icm_sigma_hold_frac = 2.0 needs population version 4"),
])
def test_bad_icm_settings_get_one_clear_error(bad, match):
    with pytest.raises(ClusterMassError, match=match):
        PopulationParams(**bad)


def test_a_grid_the_field_cannot_fill_gets_one_clear_error():
    with pytest.raises(ClusterMassError, match="multiple of 4"):
        icm.fluctuation_field(10, 50.0, 400.0, seed=1)


def test_references_are_listed():
    text = " ".join(REFERENCES_V2)
    for name in ("Gaspari", "Zhuravleva", "Nagai", "Eckert", "ZuHone", "Ghizzardi", "Diemer", "Lau E., Nagai"):
        assert name in text


def test_report_rows_for_clumping_and_sloshing(pop):
    stats = icm.icm_statistics(pop, OBS, n_sample=3, npix=32)
    assert 1.0 < stats["clumping_r500_median"] < 3.0 and stats["clumping_n_epochs"] == 3
    assert stats["sloshing_cool_core_fraction"] == pytest.approx(pop.loc[pop.cool_core == 1, "sloshing"].mean())
    table = {row["key"]: row for row in observables_table(pop)}
    assert table["sloshing_cool_core_fraction"]["measured"] is not None
    assert table["clumping_r500_median"]["target"] == [1.1, 1.5]
