"""Handing a GasGrid to yt: a uniform or nested grid that keeps the emission measure."""
from __future__ import annotations

import numpy as np

from benchmark.core.cosmology import KEV_PER_K
from pipeline.chain.settings import ChainError

__all__ = ["gas_to_yt", "gas_to_yt_cached", "level_plan"]


def _gas_arrays(gas):
    """Validate a GasGrid-like object and return (rho, kT, Z, cell_kpc)."""
    try:
        rho = np.asarray(gas.density_gcm3, dtype="float64")
        kt = np.asarray(gas.kt_kev, dtype="float64")
        zmet = np.asarray(gas.metallicity_zsun, dtype="float64")
        cell_kpc = float(gas.cell_kpc)
    except AttributeError as exc:
        raise ChainError(
            f"gas must provide density_gcm3, kt_kev, metallicity_zsun and cell_kpc ({exc})"
        ) from exc
    n = rho.shape[0]
    if rho.ndim != 3 or rho.shape != (n, n, n) or kt.shape != rho.shape or zmet.shape != rho.shape:
        raise ChainError(
            f"gas arrays must be cubes of one shape (n,n,n); got {rho.shape}, {kt.shape}, {zmet.shape}"
        )
    if not (np.all(np.isfinite(rho)) and np.all(np.isfinite(kt)) and np.all(np.isfinite(zmet))):
        raise ChainError("gas arrays contain NaN or inf; fix the gas model before rendering")
    if np.any(rho < 0) or np.any(kt <= 0) or cell_kpc <= 0:
        raise ChainError("gas density must be >= 0, kT > 0 keV and cell_kpc > 0")
    return rho, kt, zmet, cell_kpc


def _zero_velocities(shape):
    # pyXSIM reads velocities in make_photons; a GasGrid carries none (no Doppler shifts).
    zero = np.zeros(shape, dtype="float32")
    return {("gas", f"velocity_{ax}"): (zero, "cm/s") for ax in "xyz"}


def _block_reduce_em(rho, kt, zmet, factor):
    """Coarsen by `factor`, conserving emission measure (rho^2) and EM-weighting kT, Z."""
    if factor == 1:
        return rho, kt, zmet
    n = rho.shape[0] // factor

    def blocks(a):
        return a.reshape(n, factor, n, factor, n, factor)

    rho2 = blocks(rho * rho).mean(axis=(1, 3, 5))
    w = blocks(rho * rho)
    wsum = w.sum(axis=(1, 3, 5))
    safe = np.where(wsum > 0, wsum, 1.0)
    kt_c = np.where(wsum > 0, (w * blocks(kt)).sum(axis=(1, 3, 5)) / safe, blocks(kt).mean(axis=(1, 3, 5)))
    z_c = np.where(wsum > 0, (w * blocks(zmet)).sum(axis=(1, 3, 5)) / safe, blocks(zmet).mean(axis=(1, 3, 5)))
    return np.sqrt(rho2), kt_c, z_c




_DS_CACHE: dict = {}


def gas_to_yt_cached(gas, grid: str = "nested", nested_levels: int = 3):
    """Like :func:`gas_to_yt`, re-using one yt dataset per geometry in this process.

    yt spends ~1-1.5 s per new dataset deriving its field list, more than pyXSIM's
    photon generation for most clusters. Clusters of one preset share the grid
    geometry (same n, cell size, levels), so the dataset is built once and only
    its arrays are replaced (``stream_handler.fields``) and the grid caches cleared.
    ``test_chain.py`` checks that a re-used dataset renders exactly as a fresh one.
    """
    rho = np.asarray(gas.density_gcm3)
    key = (level_plan(gas, grid, nested_levels), rho.shape, float(gas.cell_kpc))
    grids = _nested_arrays(gas, grid, nested_levels)
    cached = _DS_CACHE.get(key)
    if cached is None:
        ds, n_cells = _load_yt(grids, rho.shape[0] * float(gas.cell_kpc))
        _DS_CACHE.clear()  # one geometry at a time keeps memory flat
        _DS_CACHE[key] = (ds, n_cells)
        return ds, n_cells
    ds, n_cells = cached
    handler = ds.stream_handler
    for gid, g in enumerate(grids):
        for field in _GRID_FIELDS:
            handler.fields[gid][field] = g[field][0]
    for yt_grid in ds.index.grids:
        yt_grid.clear_data()
    return ds, n_cells


_GRID_FIELDS = [("gas", "density"), ("gas", "temperature"), ("gas", "metallicity")] + [
    ("gas", f"velocity_{ax}") for ax in "xyz"
]


def gas_to_yt(gas, grid: str = "nested", nested_levels: int = 3):
    """Hand a GasGrid to yt (centred at the origin, kpc); returns (ds, n_cells).

    ``grid="nested"`` builds ``nested_levels`` levels (cells capped by the gas's own
    ``meta["max_cell_coarsening"]``: :func:`level_plan`): level l covers the central
    1/2**l of the box with cells 2**(levels-1-l) fine cells wide, each coarse cell
    conserving the emission measure of what it replaces.
    """
    grids = _nested_arrays(gas, grid, nested_levels)
    return _load_yt(grids, np.asarray(gas.density_gcm3).shape[0] * float(gas.cell_kpc))


def _load_yt(grids, box_kpc):
    import yt

    half = 0.5 * box_kpc
    bbox = np.array([[-half, half]] * 3)
    common = dict(length_unit="kpc", mass_unit="g", time_unit="s", default_species_fields="ionized")
    n_cells = int(sum(np.prod(g["dimensions"]) for g in grids))
    if len(grids) == 1:
        data = {f: grids[0][f] for f in _GRID_FIELDS}
        ds = yt.load_uniform_grid(data, grids[0]["dimensions"], bbox=bbox, nprocs=1, **common)
    else:
        ds = yt.load_amr_grids(grids, grids[0]["dimensions"], bbox=bbox, refine_by=2, **common)
    return ds, n_cells


def level_plan(gas, grid: str = "nested", nested_levels: int = 3) -> tuple[tuple[int, int], ...]:
    """The nested levels the chain builds for ``gas``: (cell size, width), both in grid cells,
    coarsest first.

    ``grid="nested"`` with L = ``nested_levels``: level l covers the central n / 2**l cells
    of the box with cells 2**(L-1-l) grid cells wide (``grid="uniform"``: one level, (1, n)).
    A gas grid whose ``meta["max_cell_coarsening"]`` is c gets no cell wider than c: each
    level's cells are capped at c and a level whose capped cells equal its parent's is merged
    into the parent (which already covers it at that size).  Population version 2's ICM
    fluctuation field has no power at wavelengths of 4 grid cells or less (:mod:`pipeline.icm`)
    and asks for c = 2, the cells whose Nyquist wavelength is the field's shortest: 3 levels
    become (2, n), (1, n / 4), so every mode of the field is resolved while the central
    quarter keeps its grid cells.  Version-1 gas has no such entry: (4, n), (2, n / 2),
    (1, n / 4) as before.
    """
    if grid not in ("uniform", "nested"):
        raise ChainError(f"ChainSettings.grid must be 'uniform' or 'nested', got {grid!r}")
    n = int(np.asarray(gas.density_gcm3).shape[0])
    levels = 1 if grid == "uniform" else max(1, int(nested_levels))
    top = 2 ** (levels - 1)
    if n % (top * top) != 0:
        raise ChainError(
            f"grid size {n} must be divisible by {top * top} for {levels} nested levels; "
            "use grid='uniform' or fewer nested_levels"
        )
    cap = (getattr(gas, "meta", None) or {}).get("max_cell_coarsening")
    if cap is not None and (int(cap) < 1 or int(cap) & (int(cap) - 1)):
        raise ChainError(f"gas meta max_cell_coarsening = {cap} must be a power of 2 (1, 2, 4, ...)")
    plan: list[tuple[int, int]] = []
    for lev in range(levels):
        factor = 2 ** (levels - 1 - lev)
        if cap is not None:
            factor = min(factor, int(cap))
        if plan and plan[-1][0] == factor:
            continue  # the parent already covers this region with cells this size
        plan.append((factor, n // 2**lev))
    return tuple(plan)


def _nested_arrays(gas, grid: str = "nested", nested_levels: int = 3):
    """The yt grid dictionaries (one per level, coarsest first) for a GasGrid."""
    rho, kt, zmet, cell_kpc = _gas_arrays(gas)
    n = rho.shape[0]
    half = 0.5 * n * cell_kpc
    grids = []
    for lev, (factor, width) in enumerate(level_plan(gas, grid, nested_levels)):
        lo = (n - width) // 2
        sl = slice(lo, lo + width)
        r, t, z = _block_reduce_em(rho[sl, sl, sl], kt[sl, sl, sl], zmet[sl, sl, sl], factor)
        left = -half + lo * cell_kpc
        grids.append(
            {
                "left_edge": [left] * 3,
                "right_edge": [left + width * cell_kpc] * 3,
                "level": lev,
                "dimensions": list(r.shape),
                ("gas", "density"): (r, "g/cm**3"),
                ("gas", "temperature"): (t / KEV_PER_K, "K"),
                ("gas", "metallicity"): (z, "Zsun"),
                **_zero_velocities(r.shape),
            }
        )
    return grids
