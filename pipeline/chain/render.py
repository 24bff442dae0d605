"""Rendering one cluster-epoch: photons once, then every projection through the detector."""
from __future__ import annotations

import contextlib
import dataclasses
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from pipeline.chain.detector import fast_detect_photons, fast_detector, pixel_to_sky, soxs_detector
from pipeline.chain.libraries import load_pyxsim, quiet_libraries
from pipeline.chain.responses import Responses
from pipeline.chain.settings import ChainError, ChainObservation, ChainSettings
from pipeline.chain.source import make_source_model, yt_cosmology
from pipeline.chain.tables import emission_table, resolve_instrument
from pipeline.chain.yt_grid import gas_to_yt, gas_to_yt_cached

__all__ = ["render_views"]

# The cached yt dataset and source models are per process; serialise threads that share them.
_RENDER_LOCK = threading.RLock()


def _photon_seed(seeds: Sequence[int]) -> int:
    # One make_photons per cluster-epoch: its seed is derived from the views' seeds.
    return int(np.random.SeedSequence([int(s) for s in seeds] + [0xC0FFEE]).generate_state(1)[0])


def render_views(
    gas=None,
    axes: Sequence[str] = ("x", "y", "z"),
    obs=None,
    seeds: Sequence[int] = (0, 1, 2),
    settings: ChainSettings | None = None,
    workdir=None,
    *,
    ds=None,
    center_kpc=None,
    data_source=None,
    source_fields: Mapping | None = None,
    redshift: float | None = None,
    skies: Sequence | None = None,
):
    """Render one cluster-epoch along several axes with the real chain.

    Parameters
    ----------
    gas : GasGrid-like, optional
        ``density_gcm3``, ``kt_kev``, ``metallicity_zsun`` (n,n,n) and ``cell_kpc``
        (:class:`pipeline.gas.GasGrid`); the cluster sits at the box centre and the box
        is the image field at the view's redshift (``gas.redshift`` or ``obs.z_obs``).
    axes : sequence of {"x", "y", "z"}
        Projection axes; one image per axis, oriented like :mod:`pipeline.analytic`
        (along x ``[iy, iz]``, along y ``[ix, iz]``, along z ``[ix, iy]``).
    obs : pipeline.observation.Observation, ChainObservation or mapping
        z_obs (or redshift), exposure_ks, npix, fov_arcmin, band_kev, nH_1e22.
    seeds : sequence of int
        One seed per axis (the view's seed); the photon seed derives from all of them.
    settings : ChainSettings, optional
    workdir : path-like, optional
        Scratch folder for pyXSIM's photon/event files (deleted afterwards); use a
        local or tmpfs folder. A path given as the 5th positional argument is accepted.
    ds, center_kpc, data_source, source_fields : optional
        A yt dataset (e.g. :func:`pipeline.tng.load_cutout`), its centre (physical kpc,
        or a yt array with units), the region to render and the pyXSIM field names
        (temperature_field, emission_measure_field, Zmet), instead of ``gas``.
    redshift : float, optional
        Observed redshift (default: ``gas.redshift``, else ``obs.z_obs``).
    skies : sequence of pipeline.sky.SkyModel or None, optional
        One per axis: the view's sky (point sources, line-of-sight haloes, unresolved CXB and
        foreground), whose photons (:meth:`pipeline.sky.SkyModel.photons`, seeded from the
        view's seed) go through the same detector step as the cluster's; its uniform
        expected background is added to ``background_counts``.

    Returns
    -------
    list of (np.ndarray int32 (npix, npix), dict)
        Per view the image and ``info``: counts, source_counts, background_counts
        (expected), seed, axis, n_cells, n_photons_emitted, n_events_projected and
        ``timings`` (stage -> seconds; epoch-level stages are in the first view's
        only, so summing over views gives the epoch's cost).
    """
    with _RENDER_LOCK:
        return _render_views(gas, axes, obs, seeds, settings, workdir, ds, center_kpc, data_source,
                             source_fields, redshift, skies)


def _render_views(gas, axes, obs, seeds, settings, workdir, ds, center_kpc, data_source, source_fields,
                  redshift, skies=None):
    pyxsim = load_pyxsim()

    if settings is not None and not isinstance(settings, ChainSettings):
        if workdir is None or isinstance(workdir, ChainSettings):
            settings, workdir = workdir, settings  # (gas, axes, obs, seeds, workdir[, settings])
        else:
            raise ChainError(f"settings must be a ChainSettings, got {type(settings).__name__}")
    settings = settings or ChainSettings()
    if redshift is None and gas is not None and getattr(gas, "redshift", None) is not None:
        redshift = float(gas.redshift)
    obs = ChainObservation.from_any(obs)
    if redshift is not None:
        obs = dataclasses.replace(obs, redshift=float(redshift))
    axes = tuple(axes)
    seeds = [int(s) for s in seeds]
    if len(seeds) != len(axes):
        raise ChainError(f"need one seed per axis: {len(axes)} axes, {len(seeds)} seeds")
    skies = list(skies) if skies is not None else [None] * len(axes)
    if len(skies) != len(axes):
        raise ChainError(f"need one sky (or None) per axis: {len(axes)} axes, {len(skies)} skies")
    if any(a not in ("x", "y", "z") for a in axes):
        raise ChainError(f"axes must be among 'x', 'y', 'z'; got {axes}")
    if settings.detector not in ("fast", "soxs"):
        raise ChainError(f"ChainSettings.detector must be 'fast' or 'soxs', got {settings.detector!r}")
    if (gas is None) == (ds is None):
        raise ChainError("pass exactly one of gas= (a GasGrid) or ds= (a yt dataset)")
    emission_table(settings)
    quiet_libraries()
    timings: dict[str, float] = {}

    t0 = time.perf_counter()
    instrument = resolve_instrument(settings)
    resp = Responses.get(instrument, obs.band_kev)
    area = settings.area_cm2 if settings.area_cm2 else resp.max_area * 1.0001
    if area < resp.max_area:
        raise ChainError(
            f"area_cm2={area:.1f} is below the ARF peak {resp.max_area:.1f} cm^2: SOXS would draw "
            "more photons than exist; raise area_cm2 or leave it None"
        )
    if settings.detector == "fast" and resp.fast_incompatible:
        raise ChainError(
            f"instrument {instrument!r} has {', '.join(resp.fast_incompatible)}, which the fast detector "
            "does not model; use ChainSettings(detector='soxs') or pipeline.instrument.register_acisi()"
        )
    timings["setup"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    if gas is not None:
        loader = gas_to_yt_cached if settings.reuse_dataset else gas_to_yt
        ds, n_cells = loader(gas, settings.grid, settings.nested_levels)
        center = ds.arr([0.0, 0.0, 0.0], "kpc")
        source = ds.all_data()
    else:
        if hasattr(center_kpc, "units"):
            center = ds.arr(center_kpc.to_value("kpc"), "kpc")
        else:
            center = ds.arr(np.asarray(center_kpc, dtype=float), "kpc")
        source = data_source if data_source is not None else ds.all_data()
        n_cells = -1
    timings["yt_load"] = time.perf_counter() - t0

    workdir = Path(workdir) if workdir else Path(tempfile.gettempdir())
    workdir.mkdir(parents=True, exist_ok=True)
    tag = f"cm{os.getpid()}_{seeds[0]}"
    phot_prefix = str(workdir / f"{tag}_photons")
    pseed = _photon_seed(seeds)
    results = []
    try:
        t0 = time.perf_counter()
        model = make_source_model(settings, pseed, source_fields)
        timings["source_model"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        n_photons, _ = pyxsim.make_photons(
            phot_prefix,
            source,
            obs.redshift,
            (area, "cm**2"),
            (obs.exposure_ks, "ks"),
            model,
            center=center,
            cosmology=yt_cosmology(settings),
        )
        timings["make_photons"] = time.perf_counter() - t0
        for axis, seed, sky in zip(axes, seeds, skies):
            results.append(
                _render_one(phot_prefix, axis, seed, obs, settings, instrument, resp, area, workdir, tag, sky)
            )
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(phot_prefix + ".h5")
    for i, (_, info) in enumerate(results):
        if i == 0:
            info["timings"] = {**timings, **info["timings"]}
        info["epoch_timings"] = dict(timings)
        info["n_cells"] = int(n_cells)
        info["n_photons_emitted"] = int(n_photons)
    return results


# How pyXSIM's sky axes map onto the analytic renderer's image indexing (measured by
# test_chain.py::test_orientation_matches_analytic): transpose, then flip rows/cols.
_ORIENT = {"x": (True, False, False), "y": (False, False, False), "z": (True, False, False)}


def _orient(img, axis):
    transpose, flip_rows, flip_cols = _ORIENT[axis]
    if transpose:
        img = img.T
    if flip_rows:
        img = img[::-1, :]
    if flip_cols:
        img = img[:, ::-1]
    return np.ascontiguousarray(img)


def _unorient_xy(x, y, axis, npix):
    """Stored-image pixel coordinates -> the detector's, before :func:`_orient`."""
    transpose, flip_rows, flip_cols = _ORIENT[axis]
    if flip_rows:
        y = npix - 1 - y
    if flip_cols:
        x = npix - 1 - x
    return (y, x) if transpose else (x, y)


def _sky_step(sky, axis, seed, obs, settings, resp, area):
    """The view's sky photons: an image (fast detector) or events for SOXS, and its uniform
    expected background (counts over the image)."""
    from pipeline.sky import SKY_STREAM

    if sky is None:
        return None, None, 0.0
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), SKY_STREAM]))
    x, y, energy = sky.photons(area, rng)
    background = sky.diffuse_counts_per_pixel * obs.npix**2
    if settings.detector == "fast":
        return fast_detect_photons(x, y, energy, obs, resp, area, rng), None, background
    ra, dec = pixel_to_sky(*_unorient_xy(x, y, axis, obs.npix), obs)
    return None, {"xsky": ra, "ysky": dec, "eobs": energy}, background


def _render_one(phot_prefix, axis, seed, obs, settings, instrument, resp, area, workdir, tag, sky=None):
    import h5py
    pyxsim = load_pyxsim()

    prng = np.random.RandomState(seed % 2**32)
    info: dict[str, Any] = {"axis": axis, "seed": int(seed)}
    timings = {}
    evt_prefix = str(Path(workdir) / f"{tag}_{axis}_events")
    t0 = time.perf_counter()
    pyxsim.project_photons(
        phot_prefix,
        evt_prefix,
        axis,
        list(obs.sky_center_deg),
        absorb_model="wabs",
        nH=obs.nH_1e22,
        no_shifting=settings.no_shifting,
        prng=prng,
    )
    try:
        with h5py.File(evt_prefix + ".h5", "r") as f:
            d = f["data"]
            events = {k: d[k][()] for k in ("xsky", "ysky", "eobs")}
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(evt_prefix + ".h5")
    timings["project_photons"] = time.perf_counter() - t0
    info["n_events_projected"] = int(events["eobs"].size)
    t0 = time.perf_counter()
    sky_img, sky_events, sky_bkg = _sky_step(sky, axis, seed, obs, settings, resp, area)
    if settings.detector == "fast":
        img, src_counts, bkg = fast_detector(events, obs, resp, area, prng)
    else:
        img, src_counts, bkg = soxs_detector(events, obs, instrument, resp, area, seed, workdir, sky_events)
    img = _orient(img, axis)
    if sky_img is not None:
        img = img + sky_img
    bkg += sky_bkg
    timings["detector"] = time.perf_counter() - t0
    info["timings"] = timings
    info["counts"] = int(img.sum())
    info["source_counts"] = int(src_counts)
    info["background_counts"] = float(bkg)
    return img, info
