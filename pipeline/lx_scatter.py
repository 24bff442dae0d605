"""Where the L_X scatter at fixed mass comes from: a decomposition by drawn quantity.

The population draws, per cluster epoch, a gas fraction, a temperature, profile-shape
parameters, a cool-core state and a merger state (and, at population version 2, an ICM
fluctuation amplitude and sloshing fronts); each view then projects the epoch along one
axis. :func:`lx_scatter_decomposition` splits the variance of ln L_X at fixed mass (the
residual of the L|M fit of :func:`pipeline.report.population_checks`) into these sources:

1. Every drawn quantity is first taken at fixed mass too (its residual about a linear fit
   on log10 M), so that a quantity that merely follows the mass is not credited with the
   mass's share.
2. The L_X residual is regressed (ordinary least squares, one row per view) on all of them
   together; the share of group ``g`` is ``sum_j beta_j cov(x_j, r_L) / var(r_L)`` over
   its columns ``j`` (the "Pratt measure", Pratt 1987; Thomas, Hughes & Zumbo 1998): the
   shares add up to the regression's R^2 exactly, and a group correlated with others shares
   the overlap in proportion to its coefficient.
3. ``projection``: the variance of the residual about its epoch's mean over the views
   (the views share every drawn quantity, so this is the orientation's part: ellipticity,
   substructure and mergers seen from different sides), as a share of var(r_L).
4. ``unexplained``: 1 - R^2 - projection (floored at 0): what is neither linear in the
   drawn quantities nor orientation (non-linear effects, the clumps' random placement,
   the fluctuation field's realisation).

:func:`switch_off_decomposition` is the cross-check by simulation: on a sample of cluster
epochs it rebuilds the gas (:func:`pipeline.report.truth_table`) with one source at a time
switched off -- a continuous quantity set to its fixed-mass fit, a state to "off" (no cool
core: zero core contrast, the non-cool-core median central temperature dip, no sloshing;
no merger: no companion, no core offset or radius boost; no fluctuations: zero amplitude)
-- and reports the fall of the variance of ln L at fixed mass, as a share of the full one.
Those falls need not add up to one (sources interact; the sample is small); a "no merger"
epoch takes the main halo's M500c (at version 2 the catalog's counts the companion).

A share can come out slightly negative (a suppressor: a quantity whose coefficient and
correlation with the residual differ in sign once the others are held fixed); the Markdown
table shows its scatter as 0. A linear decomposition of a non-linear model is a summary,
not a causal account: hence the switch-off cross-check, which costs a gas grid per epoch
and source and so runs on a sample (``python -m pipeline.report --switch-off-every N``).

Measured (2026-12-02, all 7,896 views of master seed 20190521; ``python -m pipeline.report
--npix 64`` for the regression, 59 s at ``--npix 32 --switch-off-every 8`` for the
switch-off on 336 epochs), shares of the variance of ln L_X at fixed mass:

======================  ==============  ==============  ===========  ===========
source                  v2 cex (regr.)  v2 cex (off)    v2 total     v1 cex (32)
======================  ==============  ==============  ===========  ===========
gas fraction            0.52            0.50            0.29         0.18
profile shape           0.14            0.17            0.28         0.13
cool core               0.02            0.04            0.26         0.13
merger                  0.13            0.07            0.00         0.35
fluctuations            0.04            0.05            0.01         --
temperature             0.00            0.00            0.00         0.00
projection              0.04            --              0.01         0.02
unexplained             0.11            --              0.15         0.20
ln L scatter at fixed M 0.235           0.252 (32^3)    0.333        0.291
======================  ==============  ==============  ===========  ===========

At version 3 (version 2 with the wider cool cores of
:data:`pipeline.population.CC_RC2_FRAC`) the core-excised shares are those of version 2 and
the total's change: cool cores 0.59 of its variance, gas fraction 0.16, profile shape 0.14,
ln L scatter 0.458 (``python -m pipeline.report --npix 64``, 2026-12-03).

At version 2 half of the core-excised scatter is the gas-fraction draw, which the image
cannot see; the temperature's draw does not reach the true L_X (the soft-band emissivity
is nearly flat in T, and T is not used for the density).

The true L_X of the catalog is the gas's own; the sky (point sources, backgrounds) enters
the *measured* L_X of the baselines only (:mod:`benchmark.models.lx_sky`), not this table.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["SOURCE_GROUPS", "lx_scatter_decomposition", "decomposition_markdown",
           "with_drawn_quantities", "switch_off_decomposition", "SWITCH_OFF"]

#: Drawn quantities of the population (:mod:`pipeline.population` columns), grouped by
#: source; a column absent from a table (version 1, other sources) or constant is skipped.
#: ``log:`` columns enter as their natural logarithm.
SOURCE_GROUPS: dict[str, tuple[str, ...]] = {
    "gas_fraction": ("log:gas_fraction",),
    "temperature": ("log:t500_kev",),
    "profile_shape": ("rc_frac", "beta", "rs_frac", "eps", "axis_q1", "axis_q2", "mah_alpha",
                      "n_subclumps"),
    "cool_core": ("cool_core", "cc_contrast_dex", "cc_rc2_frac", "t_min_frac", "sloshing",
                  "front_jump"),
    "merger": ("merger", "merger_ratio", "merger_sep_frac", "core_offset_frac", "rc_boost"),
    "fluctuations": ("icm_sigma500_ln",),
    "redshift": ("log1p:redshift",),
}


def _column(df: pd.DataFrame, spec: str):
    kind, _, name = spec.rpartition(":")
    if name not in df.columns:
        return None
    x = df[name].to_numpy(float)
    if kind == "log":
        x = np.log(np.where(x > 0, x, np.nan))
    elif kind == "log1p":
        x = np.log1p(x)
    if not np.all(np.isfinite(x)) or np.ptp(x) == 0:
        return None
    return x


def _at_fixed_mass(x: np.ndarray, log_m: np.ndarray) -> np.ndarray:
    b, a = np.polyfit(log_m, x, 1)
    return x - (a + b * log_m)


def _design(df: pd.DataFrame, log_m: np.ndarray):
    columns, groups = [], []
    for group, specs in SOURCE_GROUPS.items():
        for spec in specs:
            x = _column(df, spec)
            if x is not None:
                columns.append(_at_fixed_mass(x, log_m))
                groups.append(group)
    return (np.column_stack(columns) if columns else np.empty((len(df), 0))), groups


def lx_scatter_decomposition(df: pd.DataFrame, kind: str = "cex") -> dict:
    """Shares of the variance of ln L_X at fixed mass by source (see the module docstring).

    Parameters
    ----------
    df : DataFrame
        One row per view: ``log10_m500c``, ``lx_{kind}_erg_s``, ``cluster_id``, ``epoch``
        and whichever drawn quantities of :data:`SOURCE_GROUPS` it has (a truth table
        merged with its population).
    kind : {"cex", "total"}

    Returns
    -------
    dict
        ``scatter_ln`` (std of ln L at fixed mass), ``shares`` (group -> share of the
        variance; with ``projection`` and ``unexplained``), ``r2`` and ``n_views``.
    """
    log_m = df["log10_m500c"].to_numpy(float)
    ln_l = np.log(df[f"lx_{kind}_erg_s"].to_numpy(float))
    resid = _at_fixed_mass(ln_l, log_m)
    total = float(resid.var())
    x, groups = _design(df, log_m)
    shares = {g: 0.0 for g in SOURCE_GROUPS}
    r2 = 0.0
    if x.shape[1] and total > 0:
        design = np.column_stack([np.ones(len(resid)), x])
        beta, *_ = np.linalg.lstsq(design, resid, rcond=None)
        xc = x - x.mean(axis=0)
        cov = xc.T @ (resid - resid.mean()) / len(resid)
        for j, g in enumerate(groups):
            shares[g] += float(beta[j + 1] * cov[j] / total)
        r2 = float(sum(shares.values()))
    keys = df[["cluster_id", "epoch"]].astype(str).agg("/".join, axis=1)
    within = resid - pd.Series(resid).groupby(keys.to_numpy()).transform("mean").to_numpy()
    shares["projection"] = float(within.var() / total) if total > 0 else 0.0
    shares["unexplained"] = max(0.0, 1.0 - r2 - shares["projection"])
    return {"scatter_ln": float(np.sqrt(total)), "r2": r2, "n_views": int(len(df)),
            "shares": shares}


def _fixed_mass_fit(pop: pd.DataFrame, column: str, log: bool = False) -> np.ndarray:
    x = pop[column].to_numpy(float)
    x = np.log(x) if log else x
    log_m = pop["log10_m500c"].to_numpy(float)
    fit = x - _at_fixed_mass(x, log_m)
    return np.exp(fit) if log else fit


def _fit_columns(columns, log=False):
    def apply(pop):
        out = pop.copy()
        for c in columns:
            if c in out.columns and np.ptp(out[c].to_numpy(float)) > 0:
                fit = _fixed_mass_fit(pop, c, log)
                out[c] = np.rint(fit) if c == "n_subclumps" else fit
        return out
    return apply


def _no_cool_cores(pop):
    out = pop.copy()
    non_cc = pop["cool_core"].to_numpy() == 0
    t_min = float(np.median(pop.loc[non_cc, "t_min_frac"])) if non_cc.any() else 1.0
    cc = ~non_cc
    out.loc[cc, "t_min_frac"] = t_min
    out["cool_core"] = 0
    out["cc_contrast_dex"] = 0.0
    if "sloshing" in out.columns:
        out["sloshing"] = 0
    return out


def _no_mergers(pop):
    out = pop.copy()
    out["merger"] = 0
    # without its companion an epoch's halo-finder M500c is the main halo's (version 2)
    for c in ("log10_m500c", "r500c_kpc"):
        if f"{c}_main" in out.columns:
            out[c] = out[f"{c}_main"]
    for c, off in (("core_offset_frac", 0.0), ("rc_boost", 1.0)):
        if c in out.columns:
            out[c] = off
    return out


def _no_fluctuations(pop):
    out = pop.copy()
    if "icm_sigma500_ln" in out.columns:
        out["icm_sigma500_ln"] = 0.0
    return out


#: How each source is switched off on population rows (see the module docstring).
SWITCH_OFF = {
    "gas_fraction": _fit_columns(("gas_fraction",), log=True),
    "temperature": _fit_columns(("t500_kev",), log=True),
    "profile_shape": _fit_columns(("rc_frac", "beta", "rs_frac", "eps", "axis_q1", "axis_q2",
                                   "n_subclumps")),
    "cool_core": _no_cool_cores,
    "merger": _no_mergers,
    "fluctuations": _no_fluctuations,
}


def switch_off_decomposition(pop: pd.DataFrame, observation=None, npix: int = 32,
                             sources=None) -> dict:
    """Fall of the ln L_X variance at fixed mass with each source switched off in turn.

    Parameters
    ----------
    pop : DataFrame
        Population rows (:func:`pipeline.population.make_population`), e.g. a sample.
    observation : Observation, optional
    npix : int
        Gas grid side (32: about 0.1 s per epoch and source).
    sources : iterable of str, optional
        Keys of :data:`SWITCH_OFF` (default all).

    Returns
    -------
    dict
        Per kind (``cex``, ``total``): ``scatter_ln`` of the full sample, ``n_epochs`` and
        ``shares`` (source -> 1 - var_off / var).
    """
    from pipeline.report import truth_table

    def variances(rows):
        truths = truth_table(rows, observation, npix=npix)
        df = truths.merge(rows[["cluster_id", "epoch", "log10_m500c"]], on=["cluster_id", "epoch"])
        log_m = df["log10_m500c"].to_numpy(float)
        return {k: float(_at_fixed_mass(np.log(df[f"lx_{k}_erg_s"].to_numpy(float)), log_m).var())
                for k in ("cex", "total")}

    full = variances(pop)
    off = {name: variances(SWITCH_OFF[name](pop)) for name in (sources or SWITCH_OFF)}
    return {k: {"scatter_ln": float(np.sqrt(full[k])), "n_epochs": int(len(pop)),
                "shares": {name: 1.0 - v[k] / full[k] for name, v in off.items()}}
            for k in full}


def with_drawn_quantities(views: pd.DataFrame, population: pd.DataFrame) -> pd.DataFrame:
    """A per-view table (a catalog) with the drawn quantities of its cluster epochs added
    from the population (columns the views already have are kept as they are)."""
    keys = ["cluster_id", "epoch"]
    extra = [c for c in population.columns if c not in views.columns]
    return views.merge(population[keys + extra], on=keys, how="left", validate="many_to_one")


def decomposition_markdown(decompositions: dict) -> str:
    """A Markdown table: one row per source, one column per L_X kind (share of variance,
    and the ln scatter that share alone would give)."""
    kinds = list(decompositions)
    head = "| source | " + " | ".join(f"{k}: share of var | {k}: sigma_ln" for k in kinds) + " |"
    lines = [head, "| --- |" + " --- | --- |" * len(kinds)]
    names = list(next(iter(decompositions.values()))["shares"])
    for name in names:
        cells = []
        for k in kinds:
            d = decompositions[k]
            share = d["shares"][name]
            cells.append(f"{share:.3f} | {np.sqrt(max(share, 0.0)) * d['scatter_ln']:.3f}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    total = " | ".join(f"1 | {decompositions[k]['scatter_ln']:.3f}" for k in kinds)
    lines.append(f"| all (ln L scatter at fixed M) | {total} |")
    return "\n".join(lines) + "\n"
