"""Generation speed: views per second, and the speed-up of 2 Dask workers over 1 (make bench).

The size defaults to 96 clusters x 2 epochs x 3 projections (576 views, about a minute
serially): big enough that the Dask cluster's start-up (two fresh worker processes that
import the pipeline) is amortised the way it is in a real regeneration, which runs for
tens of minutes. ``CLUSTERMASS_BENCH_CLUSTERS`` changes it.
"""
import os
import time

import pytest

from pipeline.config import load_preset
from pipeline.generate import generate

pytestmark = pytest.mark.bench

N_CLUSTERS = int(os.environ.get("CLUSTERMASS_BENCH_CLUSTERS", "96"))
N_EPOCHS = 2
#: the speed-up of 2 workers over 1 the design asks for; recorded, not asserted (a timed
#: assertion fails on a loaded machine): build/bench.json says whether it was met
TARGET_SPEEDUP = 1.7
SIZE = {"population": {"n_clusters": N_CLUSTERS, "n_epochs": N_EPOCHS}}


def _timed_run(tmp_path, workers: int, size: dict = SIZE) -> float:
    out = tmp_path / f"workers{workers}"
    start = time.perf_counter()
    generate(load_preset("ci", **size), out, workers=workers, progress=False)
    return time.perf_counter() - start


def _cluster_start_s(workers: int) -> float:
    """Wall time to start a LocalCluster and import the pipeline on every worker."""
    from dask.distributed import Client, LocalCluster

    start = time.perf_counter()
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                      dashboard_address=None, silence_logs=40) as cluster, Client(cluster) as client:
        client.run(__import__, "pipeline.generate")
        return time.perf_counter() - start


def test_bench_generation_speedup_two_workers(benchmark, tmp_path, capsys):
    # imports and the emission/response tables, once, as a long run pays them once
    _timed_run(tmp_path / "warm-up", 1, {"population": {"n_clusters": 10, "n_epochs": 1}})
    serial_s = _timed_run(tmp_path, 1)
    parallel_s = benchmark.pedantic(_timed_run, args=(tmp_path, 2), rounds=1, iterations=1)
    n_views = N_CLUSTERS * N_EPOCHS * 3
    assert (tmp_path / "workers1" / "catalog.csv").read_bytes() == (tmp_path / "workers2" / "catalog.csv").read_bytes()
    speedup = serial_s / parallel_s
    benchmark.extra_info.update({
        "views": n_views,
        "serial_s": round(serial_s, 2),
        "two_workers_s": round(parallel_s, 2),
        "speedup_two_workers": round(speedup, 3),
        "views_per_s_serial": round(n_views / serial_s, 2),
        "views_per_s_two_workers": round(n_views / parallel_s, 2),
        "dask_cluster_start_s": round(_cluster_start_s(2), 2),
        "target_speedup": TARGET_SPEEDUP,
        "meets_target": bool(speedup >= TARGET_SPEEDUP),
    })
    verdict = "meets" if speedup >= TARGET_SPEEDUP else "misses"
    with capsys.disabled():
        print(f"\ngeneration: 2 workers {speedup:.2f}x faster than 1, {verdict} the "
              f"{TARGET_SPEEDUP}x target ({n_views} views)")
