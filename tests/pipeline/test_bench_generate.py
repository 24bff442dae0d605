"""Generation speed: views per second, and the speed-up of 2 Dask workers over 1 (make bench)."""
import time

import pytest

from pipeline.config import load_preset
from pipeline.generate import generate

pytestmark = pytest.mark.bench

#: 24 clusters x 2 epochs x 3 projections: enough tasks to keep two workers busy.
SIZE = {"population": {"n_clusters": 24, "n_epochs": 2}}


def _timed_run(tmp_path, workers: int) -> float:
    out = tmp_path / f"workers{workers}"
    start = time.perf_counter()
    generate(load_preset("ci", **SIZE), out, workers=workers, progress=False)
    return time.perf_counter() - start


def test_bench_generation_speedup_two_workers(benchmark, tmp_path):
    serial_s = _timed_run(tmp_path, 1)
    parallel_s = benchmark.pedantic(_timed_run, args=(tmp_path, 2), rounds=1, iterations=1)
    n_views = 24 * 2 * 3
    benchmark.extra_info.update({
        "views": n_views,
        "serial_s": round(serial_s, 2),
        "two_workers_s": round(parallel_s, 2),
        "speedup_two_workers": round(serial_s / parallel_s, 3),
        "views_per_s_two_workers": round(n_views / parallel_s, 2),
        "target_speedup": 1.7,
    })
