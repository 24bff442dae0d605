"""Population versions 2 and 3 (datasets 0.2.0, 0.3.0; version 4 in test_icm.py): each ingredient against its switch,
version 3's recalibrated cool cores against version 2's, and version 1 reproducing the
published 0.1.0 data byte for byte."""
from __future__ import annotations

import dataclasses
import hashlib

import numpy as np
import pytest

from benchmark.core.cosmology import r500c_kpc
from benchmark.core.errors import ClusterMassError
from pipeline.config import load_preset
from pipeline.gas import GridSpec, build_gas_grid, core_state
from pipeline.generate import generate
from pipeline.observation import Observation
from pipeline.population import (
    REFERENCES_V2, PopulationParams, fgas_mean, fgas_scatter_ln, make_population, t500_mean_kev,
)
from pipeline.report import observables_table, population_checks, table_markdown, truth_table

#: SHA-256 digests of the ``ci`` dataset made by the code before population version 2
#: existed (commit dcd7928, 2026-12-02): its catalog file, and the list of its cluster files
#: (one line "images/cluster_NNNN.h5 <sha256 of the file>" each, sorted), and its population
#: table (to_csv). Version 1 must reproduce them, cluster-file attributes (the configuration
#: fingerprint) included. NumPy's float64 kernels differ in the last bits between CPU
#: families (benchmark.core.simd), so the bytes are recorded per family: "AVX-512" by the
#: 0.1.0 run itself, "AVX2" by the same code (d7c2bfc) on an AVX2 machine on 2026-12-03.
CI_V1_DIGESTS = {
    "AVX-512": {
        "catalog": "f61a8f3d94c78fc894b96cae8ab349eb58b82fc0d274a5306aac8304170288d5",
        "images": "abcd8e11c09fc3d8aad3798e5be35b9f13cf09cd8276f3ec71960e7c86fa917a",
        "population": "81475d038b9fdff076cc6e41a91ec44d84a54fc71bb61bc0e40970deea21a5a5",
    },
    "AVX2": {
        "catalog": "ff8c2d1c2d5b69eefd098253a212f7a7be75bc3477015f7f74b0165cf45b561b",
        "images": "f86d4f4d01613bf48fba007cfbf138de78590e0a93837f606341d1241f74b359",
        "population": "b944a273c15565223d7387d0560477c433c9421da3b726ba89cc6ec17a9ef3e9",
    },
}


def _v1_digest(what: str) -> str:
    from benchmark.core.simd import numpy_simd_level, simd_family

    family = simd_family()
    if family not in CI_V1_DIGESTS:
        pytest.skip(f"no 0.1.0 digests recorded for NumPy's {family} kernels "
                    f"({numpy_simd_level()}) on this machine")
    return CI_V1_DIGESTS[family][what]


def _sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _images_digest(root) -> str:
    lines = "".join(f"images/{p.name} {_sha256(p)}\n" for p in sorted((root / "images").glob("*.h5")))
    return hashlib.sha256(lines.encode()).hexdigest()


@pytest.fixture(scope="module")
def pop_v2():
    return make_population(PopulationParams(), 20190521)


@pytest.fixture(scope="module")
def pop_v1():
    return make_population(PopulationParams(version=1), 20190521)


# --- versions ------------------------------------------------------------------------------


def test_version_1_population_is_the_published_one():
    config = load_preset("ci", population={"version": 1})
    pop = make_population(config.population, config.dataset.master_seed, config.observation)
    assert hashlib.sha256(pop.to_csv(index=False).encode()).hexdigest() == _v1_digest("population")


def test_version_1_ci_dataset_is_byte_identical_to_0_1_0(tmp_path):
    config = load_preset("ci", population={"version": 1})
    assert config.dataset.version == "0.1.0"
    generate(config, tmp_path, progress=False)
    assert _sha256(tmp_path / "catalog.csv") == _v1_digest("catalog")
    assert _images_digest(tmp_path) == _v1_digest("images")


def test_dataset_version_follows_the_population_version():
    assert load_preset("ci").population.version == 4
    assert load_preset("ci").dataset.version == "0.4.0"
    assert load_preset("ci", population={"version": 3}).dataset.version == "0.3.0"
    assert load_preset("ci", population={"version": 2}).dataset.version == "0.2.0"
    assert load_preset("ci", dataset={"version": "9.9.9"}).dataset.version == "9.9.9"


def test_bad_version_and_switches_get_one_clear_error():
    with pytest.raises(ClusterMassError, match="version = 5 is unknown"):
        PopulationParams(version=5)
    with pytest.raises(ClusterMassError, match="cc_rc2_frac = 0 must be > 0"):
        PopulationParams(cc_rc2_frac=0)
    with pytest.raises(ClusterMassError, match="hydrostatic_bias"):
        PopulationParams(hydrostatic_bias=-0.1)
    with pytest.raises(ClusterMassError, match="cc_floor = 'yes' must be true or false"):
        PopulationParams(cc_floor="yes")
    with pytest.raises(ClusterMassError, match="Unknown key"):
        load_preset("ci", population={"cc_flor": True})


def test_references_of_version_2_are_listed():
    for name in ("Cavagnolo", "Hogan", "Rossetti", "Pillepich", "Barnes", "Farahi"):
        assert any(name in r for r in REFERENCES_V2), name


# --- item 3: cool cores bounded by an entropy / cooling-time floor ----------------------------


def _core_states(pop):
    return [core_state(r) for r in pop[pop.cool_core == 1].to_dict("records")]


def test_cool_cores_respect_the_entropy_and_cooling_time_floors():
    params = PopulationParams(n_clusters=30, n_epochs=3, log10_m500c_min=14.4)
    floored = _core_states(make_population(params, 5))
    free = _core_states(make_population(dataclasses.replace(params, cc_floor=False), 5))
    assert floored and free
    assert min(s["k0_kev_cm2"] for s in floored) >= 10.0 * (1 - 1e-3)
    assert min(s["tcool20_gyr"] for s in floored) >= 0.5 * (1 - 1e-3)
    # without the floor the same cores are far too dense (what the issue found)
    assert min(s["k0_kev_cm2"] for s in free) < 10.0
    assert min(s["tcool20_gyr"] for s in free) < 0.5
    assert max(s["ne10_cm3"] for s in floored) < max(s["ne10_cm3"] for s in free)


def test_cool_core_state_anticorrelates_with_mergers(pop_v2, pop_v1):
    def fractions(pop):
        by_state = pop.groupby("merger")["cool_core"].mean()
        return pop["cool_core"].mean(), by_state[1] / by_state[0]

    overall, ratio = fractions(pop_v2)
    assert 0.33 < overall < 0.47  # cc_fraction kept (Hudson et al. 2010)
    assert ratio < 0.4  # cool cores rare in mergers (Rossetti et al. 2017)
    overall_v1, ratio_v1 = fractions(pop_v1)
    assert ratio_v1 > 0.7  # version 1: independent states


# --- item 5: M500c as a halo finder measures it ----------------------------------------------


def test_m500c_counts_a_companion_inside_r500c(pop_v2):
    pop = pop_v2
    inside = (pop.merger == 1) & (pop.merger_sep_frac < 1.0)
    assert inside.sum() > 20
    gain = pop["log10_m500c"] - pop["log10_m500c_main"]
    np.testing.assert_allclose(gain[inside], np.log10(1 + 1 / pop.loc[inside, "merger_ratio"]))
    assert (gain[~inside] == 0).all()
    np.testing.assert_allclose(pop["r500c_kpc"], r500c_kpc(10 ** pop["log10_m500c"], 0.2), rtol=1e-10)
    off = make_population(PopulationParams(n_clusters=40, n_epochs=4, halo_finder_m500c=False), 3)
    assert (off["log10_m500c"] == off["log10_m500c_main"]).all()


def test_gas_is_built_from_the_main_halo(pop_v2):
    row = pop_v2[(pop_v2.merger == 1) & (pop_v2.merger_sep_frac < 1.0)].iloc[0].to_dict()
    grid = GridSpec(npix=32).resolved(Observation(), row["redshift"])
    gas = build_gas_grid(row, grid, np.random.default_rng(int(row["seed"])))
    main = row["gas_fraction"] * 10 ** row["log10_m500c_main"]
    assert gas.meta["mgas_main_r500_msun"] == pytest.approx(main)
    assert gas.r500c_kpc == pytest.approx(row["r500c_kpc_main"])


# --- item 4: gas fraction with structure, hydrostatic bias ------------------------------------


def test_relations_are_applied_to_true_masses_through_the_hydrostatic_bias():
    v1, v2 = PopulationParams(version=1), PopulationParams(hydrostatic_bias=0.15)
    m = np.array([1e14, 3e14])
    np.testing.assert_allclose(fgas_mean(m, v2) / fgas_mean(m, v1), 0.85**1.2)
    np.testing.assert_allclose(t500_mean_kev(m, 0.2, v2) / t500_mean_kev(m, 0.2, v1), 0.85 ** (1 / 1.53))
    off = PopulationParams(hydrostatic_bias=0.0)
    np.testing.assert_allclose(t500_mean_kev(m, 0.2, off), t500_mean_kev(m, 0.2, v1))


def test_gas_fraction_scatter_falls_with_mass_and_follows_formation_time(pop_v2, pop_v1):
    params = PopulationParams()
    assert fgas_scatter_ln(1e14, params) > 1.5 * fgas_scatter_ln(1e15, params)

    def residual_stats(pop, p):
        lm = pop["log10_m500c_main"] if "log10_m500c_main" in pop else pop["log10_m500c"]
        resid = np.log(pop["gas_fraction"] / fgas_mean(10**lm, p))
        low, high = lm < 14.0, lm > 14.5
        alpha = np.log(pop["mah_alpha"]) - np.polyval(np.polyfit(lm, np.log(pop["mah_alpha"]), 1), lm)
        return resid[low].std() / resid[high].std(), np.corrcoef(resid, alpha)[0, 1]

    spread, corr = residual_stats(pop_v2, params)
    assert spread > 1.6 and corr > 0.3  # expected: 10^(0.25 x 0.8) = 1.6 and 0.5
    spread_v1, corr_v1 = residual_stats(pop_v1, PopulationParams(version=1))
    assert spread_v1 < 1.45 and abs(corr_v1) < 0.1  # 228 high-mass epochs of ~30 clusters: noisy


# --- the report's table ----------------------------------------------------------------------


def test_observables_table_measures_the_cores_without_rendering(pop_v2):
    table = {row["key"]: row for row in observables_table(pop_v2.head(400))}
    assert table["lx_cex_slope"]["measured"] is None and table["lx_cex_slope"]["within"] is None
    assert table["cc_tcool20_below_0p3_fraction"]["measured"] == 0.0
    assert table["cc_tcool20_below_0p3_fraction"]["within"] is True
    assert all(row["source"] for row in table.values())
    text = table_markdown(list(table.values()))
    assert "| observable | target | source | measured | in range |" in text
    assert "not measured" in text


def test_a_card_without_population_version_is_version_1():
    from pipeline.report import card_population

    config = load_preset("ci", population={"version": 1})
    card = {"source": "synthetic", "master_seed": config.dataset.master_seed,
            "config": config.resolved_parameters()}
    assert "version" not in card["config"]["population"]  # as the 0.1.0 cards
    drawn = card_population(card)
    v1 = make_population(config.population, config.dataset.master_seed, config.observation)
    assert drawn.to_csv(index=False) == v1.to_csv(index=False)
    assert "cc_floor" in load_preset("ci").resolved_parameters()["population"]


def test_version_3_widens_the_cool_cores_and_nothing_else():
    """Version 3 is version 2 with a wider compact cool-core component (CC_RC2_FRAC): the
    same draws, the cool cores brighter in total L_X and alike outside 0.15 R500c."""
    assert PopulationParams(version=2).cc_rc2_frac == 0.04
    assert PopulationParams().cc_rc2_frac == 0.06
    assert PopulationParams(version=2, cc_rc2_frac=0.06) == dataclasses.replace(
        PopulationParams(), version=2)  # an explicit value overrides the version's
    v2 = make_population(PopulationParams(version=2, n_clusters=16, n_epochs=2), 7)
    v3 = make_population(PopulationParams(version=3, n_clusters=16, n_epochs=2), 7)
    assert (v3["population_version"] == 3).all() and (v2["population_version"] == 2).all()
    for col in ("log10_m500c", "gas_fraction", "cool_core", "merger", "rc_frac", "beta"):
        np.testing.assert_array_equal(v2[col].to_numpy(), v3[col].to_numpy())
    cc = v3["cool_core"].to_numpy() == 1
    assert cc.sum() >= 4 and (v3["cc_rc2_frac"][cc] > v2["cc_rc2_frac"][cc]).all()
    t2, t3 = truth_table(v2, Observation(), npix=32), truth_table(v3, Observation(), npix=32)
    in_cc = t3.merge(v3[["cluster_id", "epoch", "cool_core"]])["cool_core"].to_numpy() == 1
    gain_total = np.log10(t3["lx_total_erg_s"] / t2["lx_total_erg_s"]).to_numpy()
    gain_cex = np.log10(t3["lx_cex_erg_s"] / t2["lx_cex_erg_s"]).to_numpy()
    assert np.median(gain_total[in_cc]) > 0.05  # the cores' luminosity, where it was lost
    assert np.abs(gain_total[~in_cc]).max() < 1e-9  # other epochs are untouched
    assert np.median(np.abs(gain_cex[in_cc])) < np.median(gain_total[in_cc]) / 2
    checks2, checks3 = population_checks(v2, t2), population_checks(v3, t3)
    assert checks3["lx_total_offset_dex_cool_core"] > checks2["lx_total_offset_dex_cool_core"]
