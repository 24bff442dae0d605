"""The Dask runner: a LocalCluster whose workers keep numpy fast, and clear scheduler errors."""
import os

import pytest

from benchmark.core.errors import ClusterMassError
from pipeline.distributed import LOCAL_CLUSTER_CONFIG, WORKER_ENVIRON, map_on_dask

QUIET_LOOPS = ("distributed.admin.tick.interval", "distributed.worker.memory.monitor-interval",
               "distributed.admin.system-monitor.interval")


def _worker_settings(_):
    import dask

    names = ("MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_", "OMP_NUM_THREADS")
    config = {key: dask.config.get(key) for key in ("distributed.worker.profile.enabled", *QUIET_LOOPS)}
    return {name: os.environ.get(name) for name in names}, config


def test_local_workers_get_the_project_environment_not_dasks_malloc_trim():
    (env, config), = map_on_dask(_worker_settings, [(0,)], keys=["settings"], workers=1)
    assert env == {name: str(WORKER_ENVIRON[name]) for name in env}
    assert env["MALLOC_TRIM_THRESHOLD_"] != "65536"  # Dask's default, which slowed the renderers
    assert config["distributed.worker.profile.enabled"] is False


def test_local_workers_wake_their_event_loops_rarely():
    """Dask's 20 ms tick and 100 ms memory monitor took the GIL from the task thread."""
    from dask.utils import parse_timedelta

    (_, config), = map_on_dask(_worker_settings, [(0,)], keys=["settings"], workers=1)
    for key in QUIET_LOOPS:
        assert config[key] == LOCAL_CLUSTER_CONFIG[key]
        assert parse_timedelta(config[key]) >= 1.0, key


def test_results_come_back_for_every_task():
    got = sorted(map_on_dask(abs, [(-3,), (4,), (-5,)], keys=["a", "b", "c"], workers=2))
    assert got == [3, 4, 5]


def test_an_unreachable_scheduler_is_named(monkeypatch):
    monkeypatch.setattr("pipeline.distributed.SCHEDULER_TIMEOUT", "1s")
    with pytest.raises(ClusterMassError, match="tcp://127.0.0.1:9"):
        list(map_on_dask(abs, [(1,)], keys=["x"], scheduler="tcp://127.0.0.1:9"))
