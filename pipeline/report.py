"""Science checks of a generated population: scaling relations, scatter, state fractions.

``population_checks(pop_df, truths_df)`` measures, on the *true* luminosities of every view
(:func:`pipeline.gas.view_truth`), the numbers the population is calibrated against
(the project's mock specification, summarised in the README): the L_X(0.5-2 keV)-M slope, the mass scatter of the core-excised and of the
total L_X at fixed mass, the T-M relation, the cool-core and merger fractions and the
persistence of the states across epochs.  ``population_plots`` draws them.

Calibration of the version-1 population (``PopulationParams(version=1)``, ``Observation()``, master
seed 20190521, all 329 x 8 x 3 = 7,896 views), measured on 2026-11-25 with
``PYTHONPATH=. python -m pipeline.report --npix 64 --set version=1 --out build/calibration/full_npix64``
(196 s on a shared 2-core machine at load ~4): see ``CALIBRATION`` below.  64^3 grids
(same box, 53.9 kpc cells) because 128^3 costs 10x more; on 126 cluster epochs (every 8th
cluster, epochs 0, 3, 6) 64^3 and 128^3 truths differ by 1.4% rms (core-excised) and
3.3% rms (total) per view, the slopes / core-excised scatter by <= 0.01 and the total
mass scatter by 0.012
(see ``resolution_check`` below).

The observables table (:data:`OBSERVABLES`, :func:`observables_table`): each observable, its
published range and source, the measured value, in or out; written by ``make report`` into
``<dataset>/report/observables.md`` and by the calibration run into ``--out``.  Population
version 2 on the same 329 x 8 x 3 views (2026-12-02, same command without ``--set``, with
the ICM fluctuations, sloshing fronts and the emission-table truth; 127 s): ``CALIBRATION_V2``; version 1 reproduces ``CALIBRATION`` exactly.
Version 3, the default (version 2 with the wider cool cores of
:data:`pipeline.population.CC_RC2_FRAC`), on the same views: ``CALIBRATION_V3``.

Definitions
-----------
* ``lx_*_slope``: OLS slope of log10 L on log10 M (L|M), all views.
* ``lx_*_scatter_ln``: standard deviation of ln L about that fit (at fixed mass).
* ``lx_*_mass_scatter``: the mass scatter of an L_X mass proxy: standard deviation of
  ln M about the OLS fit of log10 M on log10 L (M|L), as the L_X baseline of the benchmark
  does; ``*_mass_scatter_gauss`` is the same from 1.4826 x MAD (the sigma of the Gaussian
  core, robust to merger outliers, closer to the study's "best-fit Gaussian" convention).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd

from benchmark.core.errors import ClusterMassError
from benchmark.core.io import dumps_json, write_json, write_text
from pipeline.icm import icm_statistics
from pipeline.lx_scatter import decomposition_markdown, lx_scatter_decomposition, with_drawn_quantities
from pipeline.observation import Observation
from pipeline.sky import HALO_OBSERVABLES

logger = logging.getLogger(__name__)

__all__ = ["population_checks", "population_plots", "truth_table", "CALIBRATION", "CALIBRATION_V2",
           "CALIBRATION_V3", "TARGETS", "OBSERVABLES", "core_statistics", "observables_table", "table_markdown"]

#: what the project's mock specification asks of the population (fractional mass scatter, slope range)
TARGETS = {
    "lx_cex_mass_scatter": (0.15, 0.23),
    "lx_total_mass_scatter_min_excess": 0.05,  # total L_X "clearly worse" than core-excised
    "lx_cex_slope": (1.3, 1.7),  # soft band (Pratt et al. 2009; Mantz et al. 2016)
    "cool_core_fraction": (0.3, 0.5),
    "merger_fraction": (0.18, 0.32),
}

#: Figures measured on the population of version 1 (the 0.1.0 datasets; command in the
#: module docstring, with ``--set version=1`` now that a later version is the default).
CALIBRATION: dict = {
    "n_views": 7896, "npix": 64, "master_seed": 20190521,
    "lx_cex_slope": 1.424, "lx_total_slope": 1.648,
    "lx_cex_scatter_ln": 0.262, "lx_total_scatter_ln": 0.527,
    "lx_cex_mass_scatter": 0.178, "lx_cex_mass_scatter_gauss": 0.153,
    "lx_total_mass_scatter": 0.290, "lx_total_mass_scatter_gauss": 0.267,
    "t_slope": 0.672, "t_scatter_ln": 0.102,
    "cool_core_fraction": 0.415, "cool_core_fraction_epoch0": 0.422,
    "merger_fraction": 0.253, "cool_core_lag1_autocorr": 0.786, "merger_lag1_autocorr": 0.427,
    "lx_total_offset_dex_cool_core": 0.327, "lx_total_offset_dex_merger": 0.030,
    "cex_over_total_median": {"non_cool_core": 0.76, "cool_core": 0.37},
    "resolution_check": {  # 126 cluster epochs (every 8th cluster, epochs 0, 3, 6): 64^3 vs 128^3
        "lx_cex_slope": [1.428, 1.428], "lx_cex_mass_scatter": [0.187, 0.188],
        "lx_total_mass_scatter": [0.279, 0.291], "lx_cex_rms_ln_ratio": 0.014,
        "lx_total_rms_ln_ratio": 0.033,
    },
}


@dataclasses.dataclass(frozen=True)
class Observable:
    """One row of the report's table: a measured figure against a published range."""

    key: str
    label: str
    low: float
    high: float
    source: str


#: What the population is checked against (published observables, never a model's score).
#: Ranges are this project's reading of the sources; mass scatters as in the study.
OBSERVABLES = (
    Observable("lx_cex_slope", "L_X(0.5-2 keV, 0.15-1 R500c)-M slope", 1.3, 1.7,
               "Pratt+ 2009 (REXCESS); Mantz+ 2016"),
    Observable("lx_total_slope", "L_X(0.5-2 keV, <R500c)-M slope", 1.3, 1.9,
               "Pratt+ 2009 (REXCESS); Mantz+ 2016"),
    Observable("lx_cex_scatter_ln", "core-excised L_X scatter at fixed M (ln)", 0.15, 0.35,
               "Pratt+ 2009; Mantz+ 2016 (~0.2-0.3)"),
    Observable("lx_total_scatter_ln", "total L_X scatter at fixed M (ln)", 0.4, 0.8,
               "Pratt+ 2009 (~0.6 without core excision)"),
    Observable("lx_cex_mass_scatter", "core-excised L_X mass scatter (M|L, ln)", 0.15, 0.23,
               "Ntampaka+ 2019 (15-18%)"),
    Observable("lx_total_minus_cex_mass_scatter", "total minus core-excised L_X mass scatter", 0.05, 1.0,
               "Ntampaka+ 2019; Pratt+ 2009 (core excision clearly helps)"),
    Observable("cc_k0_median_kev_cm2", "cool cores: median central entropy K0 [keV cm^2]", 8.0, 30.0,
               "Cavagnolo+ 2009 (cool-core K0 peak ~15)"),
    Observable("cc_k0_p05_kev_cm2", "cool cores: 5th percentile of K0 [keV cm^2]", 5.0, 15.0,
               "Cavagnolo+ 2009 (few clusters below ~10)"),
    Observable("cc_ne10_p95_cm3", "cool cores: 95th percentile of n_e(10 kpc) [cm^-3]", 0.03, 0.2,
               "Cavagnolo+ 2009; Hudson+ 2010 (densest cores ~0.1-0.2)"),
    Observable("cc_tcool20_median_gyr", "cool cores: median t_cool(20 kpc) [Gyr]", 0.5, 2.0,
               "Hogan+ 2017 (cool-core t_cool profiles)"),
    Observable("cc_tcool20_below_0p3_fraction", "cool cores: share with t_cool(20 kpc) < 0.3 Gyr", 0.0, 0.05,
               "Hogan+ 2017; Voit+ 2015 (t_cool >~ 10 t_ff ~ 0.5 Gyr)"),
    Observable("cool_core_fraction", "cool-core fraction", 0.3, 0.5,
               "Hudson+ 2010 (44%); Rossetti+ 2017 (~30-45%)"),
    Observable("cool_core_fraction_merger_over_relaxed", "cool-core fraction, mergers / relaxed", 0.0, 0.5,
               "Rossetti+ 2017 (cool cores rare in disturbed clusters)"),
    Observable("merger_fraction", "merger fraction", 0.18, 0.32, "Fakhouri+ 2010"),
    Observable("clumping_r500_median", "clumping <rho^2>/<rho>^2 at 0.9-1.1 R500c (median of sampled epochs)",
               1.1, 1.5, "Nagai & Lau 2011; Eckert+ 2015"),
    Observable("clumping_2r500_median", "clumping <rho^2>/<rho>^2 at 1.9-2.1 R500c (~1.3 R200c; median)",
               1.2, 3.0, "Nagai & Lau 2011; Vazza+ 2013; Roncarelli+ 2013 (~1.5-3 near R200); "
               "Eckert+ 2015 (sqrt C ~ 1.25 at R200c)"),
    Observable("sloshing_cool_core_fraction", "share of cool cores with sloshing cold fronts", 0.5, 0.7,
               "Ghizzardi+ 2010; ZuHone+ 2010"),
    # the sky of each view (pipeline.sky.sky_statistics); a 100 ks ACIS-I field is complete at 1e-15
    Observable("ptsrc_density_1e15_deg2", "point sources per deg^2 with S(0.5-2 keV) > 1e-15 erg/s/cm^2",
               620.0, 845.0, "Lehmer+ 2012 CDF-S log N - log S (733 deg^-2, +-15%); Kim+ 2007"),
    Observable("cxb_resolved_fraction_05_2", "share of the 0.5-2 keV CXB in sources > 2e-17 erg/s/cm^2",
               0.70, 0.86, "Kim+ 2007 ChaMP+CDF (78%); Hickox & Markevitch 2006 (unresolved part)"),
    # the line-of-sight haloes (pipeline.sky.halo_statistics over SOXS's whole light cone)
    *(Observable(key, label, low, high, source)
      for key, label, _, _, low, high, source in HALO_OBSERVABLES),
    Observable("background_rate_chip_cts_s", "blank-sky rate per ACIS-I chip, 0.3-10 keV (particle + sky) [cts/s]",
               0.2, 0.4, "Markevitch, ACIS background (quiescent FI ~0.3 cts/s/chip); Hickox & Markevitch 2006"),
)


def core_statistics(pop: pd.DataFrame) -> dict:
    """Core observables of the cool-core epochs, from each row's 1D gas model (seconds).

    ``cc_k0_*`` central entropy, ``cc_ne10_*`` n_e(10 kpc), ``cc_tcool20_*`` the cooling time
    at 20 kpc (:func:`pipeline.gas.core_state`).
    """
    from pipeline.gas import core_state

    rows = pop[pop["cool_core"] == 1].to_dict("records")
    if not rows or "cc_contrast_dex" not in pop.columns:
        return {}
    states = pd.DataFrame([core_state(r) for r in rows])
    k0, ne, tc = (states[c].to_numpy() for c in ("k0_kev_cm2", "ne10_cm3", "tcool20_gyr"))
    return {
        "cc_k0_median_kev_cm2": float(np.median(k0)), "cc_k0_p05_kev_cm2": float(np.percentile(k0, 5)),
        "cc_ne10_median_cm3": float(np.median(ne)), "cc_ne10_p95_cm3": float(np.percentile(ne, 95)),
        "cc_ne10_max_cm3": float(ne.max()), "cc_tcool20_median_gyr": float(np.median(tc)),
        "cc_tcool20_below_0p3_fraction": float(np.mean(tc < 0.3)),
    }


def observables_table(pop: pd.DataFrame, truths: pd.DataFrame | None = None,
                      checks: dict | None = None, sky: dict | None = None) -> list[dict]:
    """Each observable of :data:`OBSERVABLES`: target, source, measured value, in or out.

    ``pop`` is the population (gas-model columns needed for the core rows); ``truths`` the
    true luminosities per view (:func:`truth_table` or a catalog); without it the L_X rows
    are reported as not measured. ``checks``: :func:`population_checks` of the same two
    tables when the caller has it already. ``sky``: :func:`pipeline.sky.sky_statistics` of the
    population's parameters (the sky rows are not measured without it).
    """
    measured = dict(core_statistics(pop))
    measured.update(sky or {})
    measured.update(icm_statistics(pop))  # pipeline.icm: clumping on sampled gas grids, fronts
    measured["cool_core_fraction"] = float(pop["cool_core"].mean())
    measured["merger_fraction"] = float(pop["merger"].mean())
    by_state = pop.groupby("merger")["cool_core"].mean()
    if {0, 1} <= set(by_state.index) and by_state[0] > 0:
        measured["cool_core_fraction_merger_over_relaxed"] = float(by_state[1] / by_state[0])
    if truths is not None:
        measured.update(checks if checks is not None else population_checks(pop, truths))
        measured["lx_total_minus_cex_mass_scatter"] = (measured["lx_total_mass_scatter"]
                                                      - measured["lx_cex_mass_scatter"])
    table = []
    for obs in OBSERVABLES:
        value = measured.get(obs.key)
        inside = None if value is None else bool(obs.low <= value <= obs.high)
        table.append(dict(observable=obs.label, key=obs.key, target=[obs.low, obs.high],
                          source=obs.source, measured=value, within=inside))
    return table


def table_markdown(table: list[dict]) -> str:
    """The table as Markdown (``-`` where a figure could not be measured)."""
    lines = ["| observable | target | source | measured | in range |", "| --- | --- | --- | --- | --- |"]
    for row in table:
        value = "-" if row["measured"] is None else f"{row['measured']:.3g}"
        verdict = {None: "not measured", True: "in", False: "OUT"}[row["within"]]
        lines.append(f"| {row['observable']} | {row['target'][0]:g}-{row['target'][1]:g} | "
                     f"{row['source']} | {value} | {verdict} |")
    return "\n".join(lines) + "\n"


#: Population version 2 on the same views, measured on 2026-12-02 with
#: ``python -m pipeline.report --npix 64 --out DIR`` (107 s when version 2 was the default; 127 s
#: in a later run with ``--set version=2``); core figures from the 1D gas
#: model of each cool-core epoch (:func:`core_statistics`).  The floors remove the
#: unphysical cores but also most of the cool cores' total-L_X boost: the total L_X scatter
#: falls below the REXCESS-like range and core excision gains little (18.8% vs 15.0%).
CALIBRATION_V2: dict = {
    "n_views": 7896, "npix": 64, "master_seed": 20190521,
    "lx_cex_slope": 1.407, "lx_total_slope": 1.591,
    "lx_cex_scatter_ln": 0.234, "lx_total_scatter_ln": 0.333,
    "lx_cex_mass_scatter": 0.162, "lx_cex_mass_scatter_gauss": 0.161,
    "lx_total_mass_scatter": 0.200, "lx_total_mass_scatter_gauss": 0.203,
    "t_slope": 0.665, "t_scatter_ln": 0.121,
    "cool_core_fraction": 0.407, "cool_core_fraction_merger_over_relaxed": 0.219,
    "merger_fraction": 0.253, "cool_core_lag1_autocorr": 0.624,
    "lx_total_offset_dex_cool_core": 0.156, "lx_total_offset_dex_merger": -0.058,
    "cc_k0_median_kev_cm2": 14.6, "cc_ne10_p95_cm3": 0.070, "cc_tcool20_median_gyr": 1.58,
    "cc_tcool20_below_0p3_fraction": 0.0, "gas_fraction_median": 0.072,
    "clumping_r500c_median": 1.30, "cc_sloshing_fraction": 0.618,
}


#: Population version 3 (the default) on the same views, measured on 2026-12-03 with
#: ``python -m pipeline.report --npix 64 --set cc_rc2_frac=0.06 --out DIR`` at version 2 (the
#: same population as version 3; 362 s beside a CNN training).  The wider compact core puts
#: back the cool cores' total-L_X boost the floors had taken (0.30 dex, against 0.16): the total
#: L_X scatter is now dominated by cool cores (59% of its variance, as REXCESS finds) and core
#: excision gains 10 points of mass scatter; every core-excised figure and every floor-bounded
#: core statistic is as at version 2 (median K0 14.7 keV cm^2, 95th percentile n_e(10 kpc)
#: 0.066 cm^-3; median t_cool(20 kpc) 1.27 Gyr, against 1.58).
CALIBRATION_V3: dict = {
    "n_views": 7896, "npix": 64, "master_seed": 20190521,
    "lx_cex_slope": 1.402, "lx_total_slope": 1.635,
    "lx_cex_scatter_ln": 0.234, "lx_total_scatter_ln": 0.458,
    "lx_cex_mass_scatter": 0.162, "lx_cex_mass_scatter_gauss": 0.160,
    "lx_total_mass_scatter": 0.260, "lx_total_mass_scatter_gauss": 0.283,
    "t_slope": 0.665, "t_scatter_ln": 0.121,
    "cool_core_fraction": 0.407, "cool_core_fraction_merger_over_relaxed": 0.219,
    "merger_fraction": 0.253, "cool_core_lag1_autocorr": 0.624,
    "lx_total_offset_dex_cool_core": 0.301, "lx_total_offset_dex_merger": -0.122,
    "cc_k0_median_kev_cm2": 14.7, "cc_ne10_p95_cm3": 0.066, "cc_tcool20_median_gyr": 1.27,
    "cc_tcool20_below_0p3_fraction": 0.0, "gas_fraction_median": 0.072,
    "clumping_r500c_median": 1.30, "cc_sloshing_fraction": 0.618,
}


def truth_table(pop: pd.DataFrame, observation=None, npix: int = 128, progress: bool = False) -> pd.DataFrame:
    """Build every cluster epoch's gas and measure the true luminosities of its 3 views.

    Returns a DataFrame with ``cluster_id``, ``epoch``, ``projection``, ``lx_total_erg_s``,
    ``lx_cex_erg_s``, ``lx_box_erg_s`` and ``mgas_r500_msun`` (one row per view).
    """
    from pipeline.gas import GridSpec, build_gas_grid, view_truth
    from pipeline.population import VIEWS

    observation = Observation() if observation is None else observation
    out = []
    t0 = time.perf_counter()
    for i, (_, row) in enumerate(pop.iterrows()):
        grid = GridSpec(npix=npix).resolved(observation, float(row["redshift"]))
        gas = build_gas_grid(row, grid, np.random.default_rng(int(row["seed"])))
        for view in VIEWS:
            truth = view_truth(gas, row, view)
            out.append(dict(cluster_id=int(row["cluster_id"]), epoch=int(row["epoch"]), projection=view,
                            mgas_r500_msun=gas.meta["mgas_r500_msun"], **truth))
        if progress and (i + 1) % 500 == 0:
            logger.info("  %d/%d cluster epochs, %.0f s", i + 1, len(pop), time.perf_counter() - t0)
    return pd.DataFrame(out)


def _merge(pop_df: pd.DataFrame, truths_df: pd.DataFrame) -> pd.DataFrame:
    need = {"lx_total_erg_s", "lx_cex_erg_s"}
    if not need <= set(truths_df.columns):
        raise ClusterMassError(f"truths table lacks {sorted(need - set(truths_df.columns))}: "
                               "give the output of truth_table() or a catalog.")
    if "log10_m500c" in truths_df.columns and "t500_kev" in truths_df.columns:
        return truths_df.copy()
    keys = ["cluster_id", "epoch"]
    cols = [c for c in pop_df.columns if c not in truths_df.columns or c in keys]
    return truths_df.merge(pop_df[cols], on=keys, how="left", validate="many_to_one")


def _fit(x, y):
    b, a = np.polyfit(x, y, 1)
    return a, b, y - (a + b * x)


def _robust_sigma(r):
    return float(1.4826 * np.median(np.abs(r - np.median(r))))


def _lag1(flags: pd.DataFrame, col: str) -> float:
    """Lag-1 autocorrelation of a 0/1 flag between neighbouring epochs of each cluster."""
    a, b = [], []
    for _, g in flags.sort_values(["cluster_id", "epoch"]).groupby("cluster_id"):
        v = g[col].to_numpy(float)
        a.append(v[:-1])
        b.append(v[1:])
    a, b = np.concatenate(a), np.concatenate(b)
    if len(a) < 3 or a.std() == 0 or b.std() == 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def population_checks(pop_df: pd.DataFrame, truths_df: pd.DataFrame) -> dict:
    """Scaling relations and state statistics of a population.

    Parameters
    ----------
    pop_df : DataFrame
        :func:`pipeline.population.make_population` output (one row per cluster epoch).
    truths_df : DataFrame
        One row per view with ``cluster_id``, ``epoch``, ``lx_total_erg_s``,
        ``lx_cex_erg_s`` (:func:`truth_table`), or a dataset catalog.

    Returns
    -------
    dict
        JSON-serialisable figures (see module docstring for definitions) and ``targets_met``.
    """
    df = _merge(pop_df, truths_df)
    lm = df["log10_m500c"].to_numpy(float)
    pivot = 14.5
    res = {"n_views": int(len(df)), "n_cluster_epochs": int(len(pop_df[["cluster_id", "epoch"]].drop_duplicates())),
           "n_clusters": int(pop_df["cluster_id"].nunique()), "log10_m_pivot": pivot,
           "log10_m500c_range_epoch0": [float(pop_df.loc[pop_df.epoch == 0, "log10_m500c"].min()),
                                        float(pop_df.loc[pop_df.epoch == 0, "log10_m500c"].max())]}
    ln10 = np.log(10.0)
    for kind in ("cex", "total"):
        ll = np.log10(df[f"lx_{kind}_erg_s"].to_numpy(float))
        a, b, r = _fit(lm - pivot, ll)
        am, bm, rm = _fit(ll - 44.0, lm)
        res[f"lx_{kind}_norm_log10_at_pivot"] = float(a)
        res[f"lx_{kind}_slope"] = float(b)
        res[f"lx_{kind}_scatter_ln"] = float(ln10 * r.std())
        res[f"lx_{kind}_scatter_ln_over_slope"] = float(ln10 * r.std() / b)
        res[f"lx_{kind}_mass_scatter"] = float(ln10 * rm.std())
        res[f"lx_{kind}_mass_scatter_gauss"] = float(ln10 * _robust_sigma(rm))
        res[f"lx_{kind}_mass_bias_dex"] = float(np.mean(rm))
    ce = pop_df[["log10_m500c", "t500_kev"]]
    a, b, r = _fit(ce["log10_m500c"].to_numpy(float) - pivot, np.log10(ce["t500_kev"].to_numpy(float)))
    res["t_slope"] = float(b)
    res["t_norm_kev_at_pivot"] = float(10**a)
    res["t_scatter_ln"] = float(ln10 * r.std())
    res["cool_core_fraction"] = float(pop_df["cool_core"].mean())
    res["cool_core_fraction_epoch0"] = float(pop_df.loc[pop_df.epoch == 0, "cool_core"].mean())
    res["merger_fraction"] = float(pop_df["merger"].mean())
    if pop_df["epoch"].nunique() > 1:
        res["cool_core_lag1_autocorr"] = _lag1(pop_df, "cool_core")
        res["merger_lag1_autocorr"] = _lag1(pop_df, "merger")
    for flag in ("cool_core", "merger"):
        ll = np.log10(df["lx_total_erg_s"].to_numpy(float))
        a, b, r = _fit(lm - pivot, ll)
        sel = df[flag].to_numpy(bool)
        if sel.any() and (~sel).any():
            res[f"lx_total_offset_dex_{flag}"] = float(r[sel].mean() - r[~sel].mean())
    res["gas_fraction_median"] = float(pop_df["gas_fraction"].median())
    # where the L_X scatter at fixed mass comes from (pipeline.lx_scatter)
    res["lx_scatter_decomposition"] = {k: lx_scatter_decomposition(df, k) for k in ("cex", "total")}
    if "mgas_r500_msun" in df.columns:
        main = df[df["merger"] == 0]
        ratio = main["mgas_r500_msun"] / (main["gas_fraction"] * 10 ** main["log10_m500c"])
        res["mgas_r500_over_target_max_dev"] = float(np.abs(ratio - 1).max()) if len(main) else float("nan")
    t = TARGETS
    res["targets_met"] = {
        "lx_cex_mass_scatter": bool(t["lx_cex_mass_scatter"][0] <= res["lx_cex_mass_scatter"] <= t["lx_cex_mass_scatter"][1]),
        "lx_total_clearly_worse": bool(res["lx_total_mass_scatter"] - res["lx_cex_mass_scatter"]
                                       >= t["lx_total_mass_scatter_min_excess"]),
        "lx_cex_slope": bool(t["lx_cex_slope"][0] <= res["lx_cex_slope"] <= t["lx_cex_slope"][1]),
        "cool_core_fraction": bool(t["cool_core_fraction"][0] <= res["cool_core_fraction"] <= t["cool_core_fraction"][1]),
        "merger_fraction": bool(t["merger_fraction"][0] <= res["merger_fraction"] <= t["merger_fraction"][1]),
    }
    return res


def population_plots(pop_df: pd.DataFrame, truths_df: pd.DataFrame, out_dir) -> list[Path]:
    """Draw the L_X-M (total and core-excised), T-M, L_X-residual and state-fraction plots.

    Returns the PNG paths written into ``out_dir``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    df = _merge(pop_df, truths_df)
    checks = population_checks(pop_df, truths_df)
    lm = df["log10_m500c"].to_numpy(float)
    cc = df["cool_core"].to_numpy(bool)
    paths = []

    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2), sharey=True)
    for ax, kind, title in zip(axes, ("total", "cex"), ("total (0-1 R500c)", "core-excised (0.15-1 R500c)")):
        ll = np.log10(df[f"lx_{kind}_erg_s"].to_numpy(float))
        ax.scatter(lm[~cc], ll[~cc], s=3, alpha=0.4, label="non-cool core")
        ax.scatter(lm[cc], ll[cc], s=3, alpha=0.4, label="cool core")
        xs = np.linspace(lm.min(), lm.max(), 10)
        ax.plot(xs, checks[f"lx_{kind}_norm_log10_at_pivot"] + checks[f"lx_{kind}_slope"] * (xs - 14.5), "k-")
        ax.set_title(f"{title}: slope {checks[f'lx_{kind}_slope']:.2f}, "
                     f"mass scatter {100 * checks[f'lx_{kind}_mass_scatter']:.0f}%", fontsize=9)
        ax.set_xlabel("log10 M500c [Msun]")
    axes[0].set_ylabel("log10 L_X(0.5-2 keV, rest) [erg/s]")
    axes[0].legend(fontsize=8, markerscale=3)
    fig.tight_layout()
    paths.append(out_dir / "lx_m.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(5, 4))
    ax.scatter(pop_df["log10_m500c"], np.log10(pop_df["t500_kev"]), s=3, alpha=0.5)
    ax.set_xlabel("log10 M500c [Msun]")
    ax.set_ylabel("log10 T500 [keV]")
    ax.set_title(f"T-M: slope {checks['t_slope']:.2f}, scatter {100 * checks['t_scatter_ln']:.0f}%", fontsize=9)
    fig.tight_layout()
    paths.append(out_dir / "t_m.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(5, 4))
    for kind in ("total", "cex"):
        ll = np.log10(df[f"lx_{kind}_erg_s"].to_numpy(float))
        _, _, rm = _fit(ll - 44.0, lm)
        ax.hist(np.log(10) * rm, bins=60, histtype="step",
                label=f"{kind}: {100 * checks[f'lx_{kind}_mass_scatter']:.1f}%")
    ax.set_xlabel("ln M500c residual at fixed L_X")
    ax.legend(fontsize=8)
    fig.tight_layout()
    paths.append(out_dir / "lx_mass_residuals.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(5, 4))
    by_epoch = pop_df.groupby("epoch")[["cool_core", "merger"]].mean()
    ax.plot(by_epoch.index, by_epoch["cool_core"], "o-", label="cool-core fraction")
    ax.plot(by_epoch.index, by_epoch["merger"], "s-", label="merger fraction")
    ax.set_xlabel("epoch (0 = latest)")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8)
    fig.tight_layout()
    paths.append(out_dir / "state_fractions.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)
    return paths


def main(argv=None) -> dict:
    """Calibration run: population -> gas -> truths -> checks (+ plots, JSON)."""
    from pipeline.population import PopulationParams, make_population

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=20190521)
    ap.add_argument("--npix", type=int, default=128)
    ap.add_argument("--n-clusters", type=int, default=None)
    ap.add_argument("--n-epochs", type=int, default=None)
    ap.add_argument("--out", default=None)
    ap.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                    help="override a PopulationParams field (value parsed as JSON)")
    ap.add_argument("--quiet", action="store_true", help="print only the headline figures")
    ap.add_argument("--switch-off-every", type=int, default=0, metavar="N",
                    help="also decompose the L_X scatter by switching each source off in turn, "
                         "on every N-th cluster (pipeline.lx_scatter; 32^3 grids)")
    args = ap.parse_args(argv)
    kw = {}
    for item in args.set:
        name, _, value = item.partition("=")
        kw[name] = json.loads(value)
    if args.n_clusters:
        kw["n_clusters"] = args.n_clusters
    if args.n_epochs:
        kw["n_epochs"] = args.n_epochs
    t0 = time.perf_counter()
    pop = make_population(PopulationParams(**kw), args.seed)
    truths = truth_table(pop, Observation(), npix=args.npix, progress=True)
    checks = population_checks(pop, truths)
    if args.switch_off_every:
        from pipeline.lx_scatter import switch_off_decomposition

        sample = pop[pop["cluster_id"] % args.switch_off_every == 0]
        checks["lx_scatter_switch_off"] = switch_off_decomposition(sample, Observation())
    checks["wall_s"] = round(time.perf_counter() - t0, 1)
    if args.quiet:
        keys = ("lx_cex_slope", "lx_total_slope", "lx_cex_mass_scatter", "lx_cex_mass_scatter_gauss",
                "lx_total_mass_scatter", "lx_total_mass_scatter_gauss", "lx_cex_scatter_ln",
                "lx_total_scatter_ln", "lx_total_offset_dex_cool_core", "lx_total_offset_dex_merger",
                "cool_core_fraction", "merger_fraction", "wall_s")
        logger.info(" ".join(f"{k}={checks[k]:.3f}" for k in keys if k in checks))
    else:
        logger.info(dumps_json(checks, indent=1, sort_keys=False).rstrip())
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        write_text(out / "truths.csv", truths.to_csv(index=False))
        write_text(out / "population.csv", pop.to_csv(index=False))
        write_json(out / "checks.json", checks, indent=1, sort_keys=False)
        from pipeline.sky import sky_statistics

        table = observables_table(pop, truths, checks, sky=sky_statistics(PopulationParams(**kw)))
        write_json(out / "observables.json", table, indent=1, sort_keys=False)
        write_text(out / "observables.md", table_markdown(table))
        write_text(out / "lx_scatter_decomposition.md",
                   decomposition_markdown(checks["lx_scatter_decomposition"]))
        population_plots(pop, truths, out)
    return checks


def write_montage(dataset, path, n_images: int = 16, seed: int = 0) -> Path:
    """A 4x4 montage of log-scaled images spanning the mass range (like the study's Figure 1)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    catalog = dataset.catalog
    order = catalog["log10_m500c"].sort_values(kind="stable").index.to_numpy()
    picks = order[np.linspace(0, len(order) - 1, n_images).round().astype(int)]
    images = dataset.images(indices=picks)
    side = int(np.ceil(np.sqrt(n_images)))
    fig, axes = plt.subplots(side, side, figsize=(2.2 * side, 2.3 * side))
    for ax, index, image in zip(axes.ravel(), picks, images):
        row = catalog.loc[index]
        ax.imshow(np.log10(1.0 + image), origin="lower", cmap="magma")
        flags = ("CC " if row["cool_core"] else "") + ("merger" if row["merger"] else "")
        ax.set_title(f"log M={row['log10_m500c']:.2f} {flags}".strip(), fontsize=7)
        ax.set_axis_off()
    for ax in axes.ravel()[len(picks):]:
        ax.set_axis_off()
    fig.suptitle("log10(1 + counts), 0.5-7 keV, 100 ks; sorted by true M500c", fontsize=8)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_dataset_report(root) -> Path:
    """Science report of a generated dataset, written into ``<root>/report/``.

    Scaling relations (L_X-M, T-M), core-excised vs total L_X scatter at fixed mass, state
    fractions, measured on the dataset's own catalog against :data:`TARGETS`, their plots,
    and a 16-image montage.

    Returns
    -------
    Path
        The ``report.json`` written.
    """
    from benchmark.dataset.loader import ClusterMassDataset

    dataset = ClusterMassDataset(root)
    out = Path(root) / "report"
    out.mkdir(exist_ok=True)
    checks = population_checks(dataset.catalog, dataset.catalog)
    plots = population_plots(dataset.catalog, dataset.catalog, out)
    montage = write_montage(dataset, out / "montage.png")
    checks["plots"] = sorted(p.name for p in [*plots, montage])
    population = card_population(dataset.card)
    sky = None
    if population is not None:  # the sky the dataset's own parameters draw (pipeline.sky)
        from pipeline.sky import sky_statistics

        sky = sky_statistics(card_population_params(dataset.card),
                             build_observation(dataset.card["config"]["observation"]))
    table = observables_table(dataset.catalog if population is None else population, dataset.catalog, sky=sky)
    checks["observables"] = table
    write_text(out / "observables.md", table_markdown(table))
    views = dataset.catalog if population is None else with_drawn_quantities(dataset.catalog, population)
    checks["lx_scatter_decomposition"] = {k: lx_scatter_decomposition(views, k) for k in ("cex", "total")}
    write_text(out / "lx_scatter_decomposition.md", decomposition_markdown(checks["lx_scatter_decomposition"]))
    return write_json(out / "report.json", checks)


def card_population_params(card: dict):
    """The PopulationParams a synthetic dataset's card records (version 1 when it predates it)."""
    from pipeline.config import build
    from pipeline.population import PopulationParams

    recorded = dict(card["config"]["population"])
    recorded.setdefault("version", 1)
    return build(PopulationParams, recorded, "population")


def build_observation(recorded: dict) -> Observation:
    from pipeline.config import build

    return build(Observation, recorded, "observation")


def card_population(card: dict) -> pd.DataFrame | None:
    """The synthetic population a dataset card describes (drawn again: deterministic), or
    ``None`` for other sources; the catalog lacks the gas-model columns of the core rows."""
    from pipeline.config import build
    from pipeline.population import PopulationParams, make_population

    if card.get("source") != "synthetic" or "population" not in card.get("config", {}):
        return None
    recorded = dict(card["config"]["population"])
    recorded.setdefault("version", 1)  # cards of 0.1.0 datasets predate the field
    params = build(PopulationParams, recorded, "population")
    observation = build(Observation, card["config"]["observation"], "observation")
    return make_population(params, int(card["master_seed"]), observation)


if __name__ == "__main__":
    from benchmark.core.log import setup_logging

    setup_logging()
    main()
