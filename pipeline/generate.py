"""Generate a mock dataset: population -> gas -> renderer -> one HDF5 file per cluster.

The work unit is one cluster (its epochs x 3 projections), because a cluster's views share
one gas model per epoch and one output file. Every random number of a view comes from a
seed derived from the master seed and the view's (cluster, epoch, projection), so the bytes
written do not depend on how many workers run or in which order.

A cluster file is written under a temporary name and renamed when complete, so a file that
exists is whole: a killed run restarted with the same command skips finished clusters and
ends with the same bytes as an uninterrupted run. The catalog, splits and dataset card are
assembled from the cluster files at the end.
"""
from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from benchmark.core import settings
from benchmark.core.errors import ClusterMassError, DatasetError
from benchmark.core.io import atomic_path, refuse_nonfinite, write_bytes, write_text
from benchmark.core.simd import numpy_simd_level, simd_families
from benchmark.dataset.card import read_card, write_card
from benchmark.dataset.croissant import write_croissant
from benchmark.dataset.checker import check_dataset
from benchmark.dataset.layout import CATALOG_COLUMNS, LAYOUT_VERSION
from pipeline.config import Config

logger = logging.getLogger(__name__)

PROJECTIONS = ("x", "y", "z")
CARD_PACKAGES = ("numpy", "scipy", "h5py", "astropy", "yt", "pyxsim", "soxs", "pandas")


@dataclass(frozen=True)
class Plan:
    """Everything decided before any image is made (cheap, validated up front)."""

    config: Config
    population: pd.DataFrame
    fingerprint: str

    @property
    def cluster_ids(self) -> list[int]:
        return sorted(int(c) for c in self.population["cluster_id"].unique())

    @property
    def n_views(self) -> int:
        return len(self.population) * len(PROJECTIONS)


def config_fingerprint(config: Config) -> str:
    """SHA-256 of the resolved parameters: a cluster file made with others is remade."""
    text = json.dumps({"layout": LAYOUT_VERSION, **config.resolved_parameters()}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def plan_dataset(config: Config) -> Plan:
    """Validate the configuration and draw the cluster population."""
    from pipeline.instrument import responses_dir
    from pipeline.population import make_population

    dataset = config.dataset
    responses_dir()  # a missing ARF/RMF is named before any work starts
    if dataset.source == "tng":
        from pipeline.tng import tng_population

        population = with_view_seeds(
            tng_population(Path(dataset.tng_dir), config.population, config.observation),
            dataset.master_seed,
        )
    else:
        population = make_population(config.population, dataset.master_seed, config.observation)
    return Plan(config=config, population=population, fingerprint=config_fingerprint(config))


def with_view_seeds(population: pd.DataFrame, master_seed: int) -> pd.DataFrame:
    """Add the per-view seeds the synthetic population carries to rows of another source."""
    from pipeline.population import view_seed

    population = population.copy()
    for projection in PROJECTIONS:
        population[f"seed_{projection}"] = [
            view_seed(master_seed, c, e, projection)
            for c, e in zip(population["cluster_id"], population["epoch"])
        ]
    population["seed"] = population["seed_x"]
    return population


def cluster_path(out_dir: Path, cluster_id: int) -> Path:
    return Path(out_dir) / "images" / f"cluster_{cluster_id:04d}.h5"


def cluster_done(path: Path, fingerprint: str) -> bool:
    """A finished cluster file made with this configuration (else it is remade)."""
    import h5py

    if not path.exists():
        return False
    try:
        with h5py.File(path, "r") as h5:
            return int(h5.attrs.get("complete", 0)) == 1 and h5.attrs.get("fingerprint") == fingerprint
    except OSError:
        return False


def stage_timings(infos: list[dict]) -> dict[str, float]:
    """Seconds per stage from the renderer's info dicts (per-epoch stages counted once)."""
    timings: dict[str, float] = defaultdict(float)
    for i, info in enumerate(infos):
        for key, value in info.get("timings", {}).items():
            timings[key] += value  # the chain puts per-epoch stages in the first view only
        for key, value in info.items():
            if not key.endswith("_s") or not isinstance(value, (int, float)):
                continue
            if key.startswith("epoch_"):
                if i == 0:
                    timings[key[len("epoch_"):-2]] += value
            else:
                timings[key[:-2]] += value
    return timings


def render_images(gas, row: dict, config: Config, workdir: Path) -> tuple[list[np.ndarray], list[dict]]:
    """The three projections of one gas grid, with the chosen renderer."""
    observation = config.observation
    seeds = [int(row[f"seed_{p}"]) for p in PROJECTIONS]
    from pipeline.sky import view_skies

    start = time.perf_counter()
    skies = view_skies(seeds, observation, config.population)  # population v2: the sky of each view
    sky_s = (time.perf_counter() - start) / len(seeds)
    if config.dataset.renderer == "chain":
        from pipeline.chain import render_views

        rendered = render_views(gas, PROJECTIONS, chain_observation(observation, row), seeds,
                                workdir=workdir, settings=config.chain, skies=skies)
        infos = [info for _, info in rendered]
        for info, sky in zip(infos, skies):
            if sky is not None:
                info.update(sky_s=sky_s, sky_sources=sky.records())
        return [image for image, _ in rendered], infos

    from pipeline.analytic import background_counts_per_pixel, expected_counts

    background = background_counts_per_pixel(observation) * observation.npix**2
    images, infos = [], []
    for projection, seed, sky in zip(PROJECTIONS, seeds, skies):
        start = time.perf_counter()
        lam = expected_counts(gas, projection, observation, redshift=float(row["redshift"]))
        info = {"background_counts": background}
        if sky is not None:
            lam += sky.expected_image()
            lam += sky.diffuse_counts_per_pixel
            info.update(background_counts=background + sky.diffuse_counts_per_pixel * observation.npix**2,
                        sky_s=sky_s, sky_sources=sky.records())
        images.append(np.random.default_rng(seed).poisson(lam).astype(np.int32))
        info["render_s"] = time.perf_counter() - start
        infos.append(info)
    return images, infos


def chain_observation(observation, row: dict) -> dict:
    """What the real chain needs to know of the observation of one view."""
    return {
        "redshift": float(row["redshift"]),
        "exposure_ks": observation.exposure_ks,
        "npix": observation.npix,
        "fov_arcmin": observation.fov_arcmin,
        "band_kev": tuple(observation.band_kev),
        "nH_1e22": observation.nH_1e22,
    }


def render_synthetic_epoch(row: dict, config: Config, workdir: Path):
    """A synthetic cluster-epoch: gas grid from the population row, then the renderer."""
    from pipeline.gas import build_gas_grid, view_truth

    start = time.perf_counter()
    gas = build_gas_grid(row, config.grid.resolved(config.observation, float(row["redshift"])),
                         np.random.default_rng(int(row["seed"])))
    gas_s = time.perf_counter() - start
    images, infos = render_images(gas, row, config, workdir)
    timings = stage_timings(infos)
    timings["gas"] += gas_s
    start = time.perf_counter()
    truths = [view_truth(gas, row, projection) for projection in PROJECTIONS]
    timings["truth"] += time.perf_counter() - start
    return images, infos, truths, timings


def render_tng_epoch(row: dict, config: Config, workdir: Path):
    """A TNG halo cutout through the real chain; its true L_X is not modelled here (NaN)."""
    from pipeline.tng import halo_from_row, render_tng_views

    if config.dataset.renderer != "chain":
        raise ClusterMassError("TNG cutouts are rendered by the real chain: set dataset.renderer = 'chain'.")
    seeds = [int(row[f"seed_{p}"]) for p in PROJECTIONS]
    rendered = render_tng_views(halo_from_row(row), PROJECTIONS, chain_observation(config.observation, row),
                                seeds, config.chain, workdir)
    infos = [info for _, info in rendered]
    nan = {"lx_total_erg_s": float("nan"), "lx_cex_erg_s": float("nan")}
    return [image for image, _ in rendered], infos, [nan] * len(PROJECTIONS), stage_timings(infos)


def render_epoch(row: dict, config: Config, workdir: Path) -> tuple[list[np.ndarray], list[dict], dict]:
    """Images and truth of the three projections of one cluster-epoch."""
    if config.dataset.source == "tng":
        images, infos, truths, timings = render_tng_epoch(row, config, workdir)
    else:
        images, infos, truths, timings = render_synthetic_epoch(row, config, workdir)
    views = []
    for projection, image, info, truth in zip(PROJECTIONS, images, infos, truths):
        views.append(
            {
                "image_id": f"c{int(row['cluster_id']):04d}_e{int(row['epoch'])}_{projection}",
                "cluster_id": int(row["cluster_id"]),
                "epoch": int(row["epoch"]),
                "projection": projection,
                "redshift": float(row["redshift"]),
                "log10_m500c": float(row["log10_m500c"]),
                "r500c_kpc": float(row["r500c_kpc"]),
                "r500c_arcmin": float(row["r500c_arcmin"]),
                "t500_kev": float(row["t500_kev"]),
                "gas_fraction": float(row["gas_fraction"]),
                "cool_core": int(row["cool_core"]),
                "merger": int(row["merger"]),
                "lx_total_erg_s": float(truth["lx_total_erg_s"]),
                "lx_cex_erg_s": float(truth["lx_cex_erg_s"]),
                "counts": int(image.sum()),
                "background_counts": float(info["background_counts"]),
                "seed": int(row[f"seed_{projection}"]),
            }
        )
        if "sky_sources" in info:  # population v2: the view's true sky (taken out before /views)
            views[-1]["sky_sources"] = info["sky_sources"]
    return images, views, dict(timings)


def render_cluster(config: Config, rows: list[dict], out_dir: str, fingerprint: str) -> dict:
    """Render every view of one cluster and write its file atomically (a worker task)."""
    import h5py

    cluster_id = int(rows[0]["cluster_id"])
    path = cluster_path(Path(out_dir), cluster_id)
    # Scratch (pyXSIM photon files) never goes inside the dataset, even under a bare `datalad rerun`.
    workdir = settings.current().build_dir / "scratch" / f"cluster_{cluster_id:04d}"
    workdir.mkdir(parents=True, exist_ok=True)
    images, views, timings = [], [], defaultdict(float)
    for row in sorted(rows, key=lambda r: r["epoch"]):
        epoch_images, epoch_views, epoch_timings = render_epoch(row, config, workdir)
        images += epoch_images
        views += epoch_views
        for stage, seconds in epoch_timings.items():
            timings[stage] += seconds
    start = time.perf_counter()
    observation = config.observation
    attrs = {
        "layout_version": LAYOUT_VERSION,
        "cluster_id": cluster_id,
        "source": config.dataset.source,
        "renderer": config.dataset.renderer,
        "npix": observation.npix,
        "pixel_arcsec": observation.pixel_arcsec,
        "fov_arcmin": observation.fov_arcmin,
        "band_kev": np.asarray(observation.band_kev, dtype=np.float64),
        "exposure_ks": observation.exposure_ks,
        "fingerprint": fingerprint,
        "complete": 1,
    }
    sources = sky_sources(views)
    write_cluster_file(path, np.stack(images), views, attrs, h5py, sources=sources)
    timings["write"] += time.perf_counter() - start
    # the worker's NumPy kernels decide the last bits of what it wrote (benchmark.core.simd)
    return {"cluster_id": cluster_id, "n_views": len(views), "timings": dict(timings),
            "numpy_simd": numpy_simd_level()}


def sky_sources(views: list[dict]) -> list[dict] | None:
    """Take each view's true sky sources out of its dict: one list for ``/sources`` (sorted by
    view, then brightest first), or None when no view has a sky (population version 1)."""
    if not any("sky_sources" in v for v in views):
        return None
    sources = []
    for index, view in enumerate(views):
        listed = view.pop("sky_sources", None) or []
        sources += [dict(src, view_index=index) for src in sorted(listed, key=lambda s: -s["expected_counts"])]
    return sources


def write_cluster_file(path: Path, counts: np.ndarray, views: list[dict], attrs: dict, h5py,
                       sources: list[dict] | None = None) -> None:
    """Write one cluster's images (and, with a sky, its true sources); the file appears under
    its name only when complete."""
    refuse_nonfinite(views, f"the views of {path.name}")  # before anything is written
    with atomic_path(path) as tmp, h5py.File(tmp, "w", track_order=False) as h5:
        npix = counts.shape[-1]
        data = h5.create_dataset(
            "counts", data=counts.astype(np.int32), chunks=(1, npix, npix),
            compression="gzip", compression_opts=4, shuffle=True, track_times=False,
        )
        data.attrs["units"] = "count"
        data.attrs["axes"] = "view, y, x"
        h5.create_dataset(
            "image_id", data=np.array([v["image_id"] for v in views], dtype=h5py.string_dtype()),
            track_times=False,
        )
        h5.create_dataset("views", data=json.dumps(views, sort_keys=True, allow_nan=False),
                          dtype=h5py.string_dtype(), track_times=False)
        if sources is not None:
            from benchmark.dataset.layout import SOURCES_DATASET
            from benchmark.dataset.sources import SOURCE_UNITS, sources_array

            packed = {"compression": "gzip", "compression_opts": 4, "shuffle": True} if sources else {}
            table = h5.create_dataset(SOURCES_DATASET, data=sources_array(sources), track_times=False, **packed)
            table.attrs["units"] = json.dumps(SOURCE_UNITS, sort_keys=True)
        for key, value in attrs.items():
            h5.attrs[key] = value


def read_views(path: Path) -> list[dict]:
    import h5py

    with h5py.File(path, "r") as h5:
        return json.loads(h5["views"][()])


def run_tasks(plan: Plan, todo: list[int], out_dir: Path, workers: int, scheduler: str | None, progress: bool,
              timings_log: Path | None = None) -> tuple[dict, list[str]]:
    """Render the clusters in ``todo``, serially or on Dask.

    Returns the summed stage timings and the NumPy kernel levels the rendering processes ran
    (one per CPU family, normally; :func:`simd_levels_note` says when they mixed).
    With ``timings_log``, one JSON line per finished cluster (its stage seconds) is appended
    there as it finishes, so an interrupted run still tells where its time went.
    """
    from tqdm import tqdm

    rows_by_cluster = {
        int(cid): rows.to_dict("records") for cid, rows in plan.population.groupby("cluster_id")
    }
    timings: dict[str, float] = defaultdict(float)
    levels: set[str] = set()
    total_views = plan.n_views
    done_views = total_views - sum(len(rows_by_cluster[c]) * len(PROJECTIONS) for c in todo)
    bar = tqdm(total=total_views, initial=done_views, unit="view", desc="mocks", disable=not progress,
               dynamic_ncols=True)

    def collect(result):
        levels.add(result["numpy_simd"])
        for stage, seconds in result["timings"].items():
            timings[stage] += seconds
        bar.update(result["n_views"])
        if timings_log is not None:
            line = {"utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "workers": workers, **result}
            with open(timings_log, "a") as log:
                log.write(json.dumps(line, sort_keys=True, allow_nan=False) + "\n")

    if workers <= 1 and not scheduler:
        for cid in todo:
            collect(render_cluster(plan.config, rows_by_cluster[cid], str(out_dir), plan.fingerprint))
    else:
        from benchmark.core.distributed import map_on_dask

        for result in map_on_dask(
            render_cluster,
            [(plan.config, rows_by_cluster[c], str(out_dir), plan.fingerprint) for c in todo],
            keys=[f"cluster-{c:04d}" for c in todo],
            workers=workers,
            scheduler=scheduler,
        ):
            collect(result)
    bar.close()
    return dict(timings), sorted(levels)


def simd_levels_note(levels: list[str]) -> str | None:
    """A warning when the clusters were rendered by processes of more than one CPU family of
    NumPy's kernels (workers on other machines): such a dataset's bytes match neither
    family's regeneration. None when they agree."""
    families = simd_families(levels)
    if len(families) <= 1:
        return None
    return (f"the clusters were rendered with NumPy kernels of several CPU families "
            f"({', '.join(families)}: levels {', '.join(levels)}); their last bits differ, so "
            "this dataset matches no single machine's regeneration byte for byte. Render on "
            "workers of one family, or set NPY_DISABLE_CPU_FEATURES on the wider ones "
            "(benchmark/core/simd.py)")


def assemble_catalog(plan: Plan, out_dir: Path, folds: dict[int, int]) -> pd.DataFrame:
    """One row per image, read back from the cluster files, in a fixed order."""
    rows = []
    for cid in plan.cluster_ids:
        path = cluster_path(out_dir, cid)
        for index, view in enumerate(read_views(path)):
            view = dict(view, file=str(path.relative_to(out_dir)), index=index, fold=folds[cid])
            rows.append(view)
    catalog = pd.DataFrame(rows)[list(CATALOG_COLUMNS)]
    return catalog.sort_values(["cluster_id", "epoch", "projection"], kind="stable").reset_index(drop=True)


def package_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    versions = {}
    for name in CARD_PACKAGES:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def dataset_card(plan: Plan, catalog: pd.DataFrame, splits_sha256: str) -> dict:
    """The dataset card: what the dataset is, how it was made, and how to check it."""
    from pipeline.population import REFERENCES, REFERENCES_V2, REFERENCES_V4

    observation = plan.config.observation
    dataset = plan.config.dataset
    checksums = {}
    if dataset.renderer == "chain":
        from pipeline.chain import emission_table_checksums

        checksums.update(emission_table_checksums(plan.config.chain))
    else:
        from pipeline.emission import resolve_apec

        checksums["emission_table"] = resolve_apec().combined_sha256
    from pipeline.instrument import checksums as instrument_checksums

    checksums.update(instrument_checksums())
    source_text = (
        "synthetic: a physically grounded analog of the IllustrisTNG clusters of Ntampaka et al. "
        "(2019), built from published scaling relations and profiles (see references); not TNG data"
        if dataset.source == "synthetic"
        else f"tng: IllustrisTNG halo cutouts from {dataset.tng_dir}"
    )
    return {
        "name": dataset.name,
        "version": dataset.version,
        "population_version": plan.config.population.version,
        "layout_version": LAYOUT_VERSION,
        "preset": plan.config.preset,
        "source": dataset.source,
        "source_description": source_text,
        "renderer": dataset.renderer,
        "renderer_description": (
            "yt + pyXSIM (CIESourceModel, project emission table) + SOXS instrument_simulator (ACIS-I)"
            if dataset.renderer == "chain"
            else "fast analytic renderer: projected emission measure x band emissivity x ARF, Poisson-sampled"
        ),
        "master_seed": dataset.master_seed,
        "fingerprint": plan.fingerprint,
        "n_clusters": len(plan.cluster_ids),
        "n_images": int(len(catalog)),
        "image": {
            "npix": observation.npix,
            "fov_arcmin": observation.fov_arcmin,
            "pixel_arcsec": observation.pixel_arcsec,
            "band_kev": list(observation.band_kev),
            "exposure_ks": observation.exposure_ks,
            "units": "count",
        },
        "config": {"preset": plan.config.to_dict(), **plan.config.resolved_parameters()},
        "checksums": checksums,
        "splits_sha256": splits_sha256,
        "packages": package_versions(),
        # version 2's ingredients cite their own sources (population.REFERENCES_V2)
        "references": (list(REFERENCES) + (list(REFERENCES_V2) if plan.config.population.version >= 2 else [])
                       + (list(REFERENCES_V4) if plan.config.population.version >= 4 else [])),
        "units": {
            "log10_m500c": "log10(Msun)", "r500c_kpc": "kpc", "r500c_arcmin": "arcmin",
            "t500_kev": "keV", "lx_total_erg_s": "erg/s (0.5-2 keV rest frame)",
            "lx_cex_erg_s": "erg/s (0.5-2 keV rest frame, 0.15-1 R500c)", "counts": "count",
        },
    }


def generate(config: Config, out_dir: Path, workers: int = 1, scheduler: str | None = None,
             progress: bool = True, timings_log: Path | None = None, resume_dir: Path | None = None) -> Path:
    """Generate (or finish) the dataset of ``config`` in ``out_dir`` and check it.

    Parameters
    ----------
    config : Config
        A loaded preset (:func:`pipeline.config.load_preset`).
    out_dir : Path
        Dataset folder; finished cluster files already there are kept.
    workers : int
        Worker processes; more than one runs the clusters on a Dask LocalCluster.
    scheduler : str, optional
        Address of an existing Dask scheduler (``tcp://host:8786``) instead.
    timings_log : Path, optional
        JSON-lines file (outside the dataset) that gets each cluster's stage timings as it
        finishes.
    resume_dir : Path, optional
        Folder of cluster files finished by an interrupted run (default
        ``$CLUSTERMASS_RESUME_DIR``); those made with this configuration are moved back into
        ``out_dir`` instead of being rendered again.

    Returns
    -------
    Path
        The dataset folder.
    """
    from benchmark.dataset.splits import make_splits

    if workers < 1:
        raise ClusterMassError(f"workers = {workers}: need at least 1.")
    start = time.perf_counter()
    plan = plan_dataset(config)
    out_dir = Path(out_dir)
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    latest = plan.population[plan.population["epoch"] == 0].sort_values("cluster_id")
    splits = make_splits(latest["cluster_id"].to_numpy(), latest["log10_m500c"].to_numpy(),
                         n_folds=config.splits.n_folds, seed=config.splits.seed)

    resume_dir = resume_dir or settings.current().resume_dir
    if resume_dir:
        take_back_finished(plan, Path(resume_dir), out_dir)
    todo = [c for c in plan.cluster_ids if not cluster_done(cluster_path(out_dir, c), plan.fingerprint)]
    skipped = len(plan.cluster_ids) - len(todo)
    if skipped and progress:
        logger.info("resuming: %d of %d clusters already complete", skipped, len(plan.cluster_ids))
    if timings_log is not None:
        Path(timings_log).parent.mkdir(parents=True, exist_ok=True)
    timings, levels = run_tasks(plan, todo, out_dir, workers, scheduler, progress, timings_log)
    mixed = simd_levels_note(levels)
    if mixed:
        logger.warning(mixed)

    splits_bytes = splits.to_json()
    write_bytes(out_dir / "splits.json", splits_bytes)
    folds = {int(c): splits.fold_of(c) for c in plan.cluster_ids}
    catalog = assemble_catalog(plan, out_dir, folds)
    write_text(out_dir / "catalog.csv", catalog.to_csv(index=False, lineterminator="\n"))
    card = dataset_card(plan, catalog, hashlib.sha256(splits_bytes).hexdigest())
    card["numpy_simd"] = {"process": numpy_simd_level(),
                          "workers": sorted(set(levels) | set(_recorded_worker_levels(out_dir)))}
    write_card(out_dir, card)
    check_dataset(out_dir)
    write_croissant(out_dir, card)
    if progress:
        log_timings(timings, len(todo) * len(PROJECTIONS) * config_epochs(plan), time.perf_counter() - start)
    return out_dir


def _recorded_worker_levels(out_dir: Path) -> list[str]:
    """The NumPy levels a finished earlier run recorded in the card: a rerun that renders
    nothing (or only what an interruption left) keeps what rendered the rest."""
    try:
        return list((read_card(out_dir).get("numpy_simd") or {}).get("workers") or [])
    except DatasetError:  # no card yet (a first or interrupted run) or not a valid one
        return []


def take_back_finished(plan: Plan, resume_dir: Path, out_dir: Path) -> None:
    """Move finished cluster files of this configuration from ``resume_dir`` into ``out_dir``."""
    for cid in plan.cluster_ids:
        src, dst = cluster_path(resume_dir, cid), cluster_path(out_dir, cid)
        if not dst.exists() and src.is_file() and cluster_done(src, plan.fingerprint):
            with atomic_path(dst) as tmp:
                shutil.move(str(src), str(tmp))


def config_epochs(plan: Plan) -> int:
    return int(plan.population.groupby("cluster_id").size().max())


def log_timings(timings: dict[str, float], n_views: int, wall_s: float) -> None:
    """Per-stage summary: where the time went (summed over workers)."""
    if not n_views:
        logger.info("nothing to render; assembled and checked in %.1f s", wall_s)
        return
    total = sum(timings.values()) or 1.0
    logger.info("rendered %d views in %.1f s wall (%.2f views/s)", n_views, wall_s, n_views / wall_s)
    for stage, seconds in sorted(timings.items(), key=lambda kv: -kv[1]):
        logger.info("  %-16s %9.1f s  %5.1f%%  %8.1f ms/view", stage, seconds, 100 * seconds / total,
                    1000 * seconds / n_views)
