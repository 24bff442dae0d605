"""Handing gas to yt (pipeline.chain.yt_grid): the nested levels, and the real chain against
the analytic renderer on population version 2's gas (ICM fluctuations, a sloshing front).

Real yt + pyXSIM on 64^3 grids, the project's emission table and ACIS-I.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from pipeline import analytic, chain
from pipeline.chain.settings import ChainError
from pipeline.chain.yt_grid import _nested_arrays, level_plan
from pipeline.gas import GasGrid, GridSpec, build_gas_grid
from pipeline.observation import Observation
from pipeline.population import PopulationParams, make_population

OBS64 = Observation(npix=64)


def _cube(n=64, meta=None):
    ones = np.ones((n, n, n), np.float32)
    return GasGrid(density_gcm3=ones, kt_kev=ones, metallicity_zsun=ones, cell_kpc=50.0,
                   box_kpc=50.0 * n, r500c_kpc=1000.0, redshift=0.2, meta=meta or {})


@pytest.fixture(scope="module")
def v2_gas():
    """A massive version-2 cool core with a sloshing front, its fluctuations stirred up."""
    pop = make_population(PopulationParams(n_clusters=12, n_epochs=4), 20190521)
    rows = pop[(pop["sloshing"] == 1) & (pop["merger"] == 0)].sort_values("log10_m500c")
    row = rows.iloc[-1].to_dict()
    row["icm_sigma500_ln"] = 0.6  # a disturbed cluster's width: the chain must follow it
    grid = GridSpec(npix=64).resolved(OBS64, float(row["redshift"]))
    return build_gas_grid(row, grid, np.random.default_rng(int(row["seed"])))


def test_level_plan_keeps_version_1_and_caps_cells_for_the_field():
    assert level_plan(_cube()) == ((4, 64), (2, 32), (1, 16))  # version-1 gas: as before
    assert level_plan(_cube(meta={"max_cell_coarsening": 2})) == ((2, 64), (1, 16))
    assert level_plan(_cube(meta={"max_cell_coarsening": 1})) == ((1, 64),)
    assert level_plan(_cube(meta={"max_cell_coarsening": 2}), "nested", 2) == ((2, 64), (1, 32))
    assert level_plan(_cube(), "uniform") == ((1, 64),)
    for bad in (0, 3):
        with pytest.raises(ChainError, match="max_cell_coarsening"):
            level_plan(_cube(meta={"max_cell_coarsening": bad}))
    with pytest.raises(ChainError, match="'uniform' or 'nested'"):
        level_plan(_cube(), "octree")


def _leaf_log_density(gas):
    """Log of the density the chain hands to yt, spread back onto the fine lattice (each
    leaf cell's value over the grid cells it covers)."""
    n = gas.npix
    out = np.empty((n, n, n))
    plan = level_plan(gas)
    for g, (factor, width) in zip(_nested_arrays(gas), plan):  # finer levels overwrite
        rho = g[("gas", "density")][0]
        lo = (n - width) // 2
        sl = slice(lo, lo + width)
        out[sl, sl, sl] = np.repeat(np.repeat(np.repeat(rho, factor, 0), factor, 1), factor, 2)
    return np.log(out)


def test_chain_cells_resolve_the_fluctuations(v2_gas):
    """The cells handed to yt keep the field's structure in the outskirts; 4x coarser cells
    (the version-1 layout) would not."""
    n = v2_gas.npix
    fine = np.log(v2_gas.density_gcm3.astype(np.float64))
    v1_meta = {k: v for k, v in v2_gas.meta.items() if k != "max_cell_coarsening"}
    v1_gas = dataclasses.replace(v2_gas, meta=v1_meta)
    outer = np.ones((n, n, n), bool)
    q = n // 4
    outer[q:n - q, q:n - q, q:n - q] = False  # outside the central half: the coarse levels
    smooth = _smoothed(fine)

    def kept(gas):
        leaf = _leaf_log_density(gas)
        a, b = (fine - smooth)[outer], (leaf - smooth)[outer]
        return float(np.corrcoef(a, b)[0, 1])

    assert kept(v2_gas) > 0.75  # measured 0.82 (what 2x cells lose: a sinc near Nyquist)
    assert kept(v1_gas) < kept(v2_gas) - 0.3  # measured 0.30


def _smoothed(logrho):
    """The log density smoothed over 8 cells (the profile without the field's small scales)."""
    from scipy.ndimage import uniform_filter

    return uniform_filter(logrho, size=8, mode="nearest")


@pytest.fixture(scope="module")
def settings():
    from pipeline.emission import resolve_apec

    tables = resolve_apec()
    return chain.ChainSettings(model_root=tables.root, model_vers=tables.version)


def _radial(img, edges):
    n = img.shape[0]
    i, j = np.indices(img.shape)
    r = np.hypot(i - (n - 1) / 2, j - (n - 1) / 2)
    return np.array([img[(r >= lo) & (r < hi)].sum() for lo, hi in zip(edges[:-1], edges[1:])])


def test_chain_matches_analytic_renderer_on_version_2_gas(v2_gas, settings, tmp_path):
    """Source counts per view within 2% (the whole image, the 2x cells included), the radial
    profile of the three views within 3% out to 11 pixels (0.7 R500c), where the cluster
    outshines the particle background enough for the Poisson noise (<= 0.9% per bin at 1 Ms)
    to leave room for the comparison; beyond, the background dominates."""
    obs = dataclasses.replace(OBS64, exposure_ks=1000.0)
    assert level_plan(v2_gas) == ((2, 64), (1, 16))
    bkg = analytic.background_counts_per_pixel(obs)
    edges = np.array([0, 2, 4, 7, 11])
    got, want = np.zeros(len(edges) - 1), np.zeros(len(edges) - 1)
    for img, info in chain.render_views(v2_gas, ("x", "y", "z"), obs, (21, 22, 23), settings, tmp_path):
        expected = analytic.expected_counts(v2_gas, info["axis"], obs, background=False)
        assert info["source_counts"] == pytest.approx(expected.sum(), rel=0.02), info["axis"]
        got += _radial(img - bkg, edges)
        want += _radial(expected, edges)
    np.testing.assert_allclose(got, want, rtol=0.03)
