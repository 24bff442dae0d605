"""The decomposition of the L_X scatter at fixed mass into its sources (issue 14)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipeline.lx_scatter import decomposition_markdown, lx_scatter_decomposition, with_drawn_quantities


def _views(n_epochs=4000, seed=0):
    """Views whose ln L at fixed mass is a known sum of independent parts."""
    rng = np.random.default_rng(seed)
    log_m = rng.uniform(14.0, 15.2, n_epochs)
    ln_fgas = np.log(0.12) + 0.1 * (log_m - 14.5) + rng.normal(0, 0.10, n_epochs)
    ln_t = 0.66 * np.log(10) * (log_m - 14.5) + np.log(5) + rng.normal(0, 0.12, n_epochs)
    cc = (rng.random(n_epochs) < 0.4).astype(int)
    epoch_noise = rng.normal(0, 0.05, n_epochs)  # drawn but not in the table: "unexplained"
    rows = []
    for i in range(n_epochs):
        base = (1.4 * np.log(10) * log_m[i] + 2.0 * ln_fgas[i] + 0.5 * ln_t[i] + 0.4 * cc[i]
                + epoch_noise[i])
        for view in "xyz":
            rows.append(dict(cluster_id=i, epoch=0, projection=view, log10_m500c=log_m[i],
                             gas_fraction=np.exp(ln_fgas[i]), t500_kev=np.exp(ln_t[i]),
                             cool_core=cc[i],
                             lx_cex_erg_s=np.exp(base + rng.normal(0, 0.05) - 60)))
    return pd.DataFrame(rows)


def test_known_parts_are_recovered():
    d = lx_scatter_decomposition(_views())
    total = d["scatter_ln"] ** 2
    expected = {"gas_fraction": (2 * 0.10) ** 2, "temperature": (0.5 * 0.12) ** 2,
                "cool_core": 0.4**2 * 0.24, "projection": 0.05**2 * 2 / 3,
                "unexplained": 0.05**2 + 0.05**2 / 3}
    for name, var in expected.items():
        assert d["shares"][name] == pytest.approx(var / total, abs=0.02), name
    assert d["shares"]["merger"] == 0.0 and d["shares"]["fluctuations"] == 0.0  # absent
    assert sum(d["shares"].values()) == pytest.approx(1.0, abs=1e-9)
    text = decomposition_markdown({"cex": d})
    assert "| gas_fraction | 0.4" in text and text.count("\n") == 2 + len(d["shares"]) + 1


def test_a_real_population_decomposes(tmp_path):
    """On true luminosities of a small version-2 population (32^3 grids): the gas fraction
    carries a large share of the core-excised scatter, cool cores most of the total's."""
    from pipeline.population import PopulationParams, make_population
    from pipeline.report import population_checks, truth_table

    pop = make_population(PopulationParams(n_clusters=40, n_epochs=2), 3)
    truths = truth_table(pop, npix=32)
    checks = population_checks(pop, truths)
    dec = checks["lx_scatter_decomposition"]
    assert dec["cex"]["shares"]["gas_fraction"] > 0.2
    assert dec["total"]["shares"]["cool_core"] > dec["cex"]["shares"]["cool_core"]
    assert dec["cex"]["shares"]["fluctuations"] != 0.0  # version 2 draws an amplitude
    for d in dec.values():
        assert sum(d["shares"].values()) == pytest.approx(1.0, abs=1e-9)
        assert 0.0 < d["shares"]["projection"] < 0.2


def test_catalog_gets_the_populations_drawn_quantities():
    views = pd.DataFrame({"cluster_id": [0, 0, 1], "epoch": [0, 0, 0], "gas_fraction": [0.1, 0.1, 0.2]})
    pop = pd.DataFrame({"cluster_id": [0, 1], "epoch": [0, 0], "gas_fraction": [9.0, 9.0],
                        "rc_frac": [0.1, 0.2]})
    out = with_drawn_quantities(views, pop)
    assert list(out["rc_frac"]) == [0.1, 0.1, 0.2] and list(out["gas_fraction"]) == [0.1, 0.1, 0.2]


def test_switching_sources_off_lowers_the_scatter():
    """Simulation cross-check: the gas fraction at its fixed-mass fit removes a share of the
    variance; a source a version-1 population lacks (fluctuations) removes exactly none."""
    from pipeline.lx_scatter import switch_off_decomposition
    from pipeline.population import PopulationParams, make_population

    pop = make_population(PopulationParams(n_clusters=16, n_epochs=2, version=1), 5)
    out = switch_off_decomposition(pop, npix=24, sources=("gas_fraction", "fluctuations"))
    assert set(out) == {"cex", "total"}
    assert out["cex"]["shares"]["gas_fraction"] > 0.05
    assert out["cex"]["shares"]["fluctuations"] == 0.0
    assert out["cex"]["n_epochs"] == 32
