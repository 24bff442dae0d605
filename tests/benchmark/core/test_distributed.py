"""The Dask runner: a LocalCluster whose workers keep numpy fast, clear scheduler errors, and
a quiet shutdown."""
import io
import logging
import os
import subprocess
import sys

import pytest

from benchmark.core.errors import ClusterMassError
from benchmark.core.distributed import (
    LOCAL_CLUSTER_CONFIG,
    WORKER_ENVIRON,
    closed_connections_quiet,
    map_on_dask,
)

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
    monkeypatch.setattr("benchmark.core.distributed.SCHEDULER_TIMEOUT", "1s")
    with pytest.raises(ClusterMassError, match="tcp://127.0.0.1:9"):
        list(map_on_dask(abs, [(1,)], keys=["x"], scheduler="tcp://127.0.0.1:9"))


# ------------------------------------------------------------------ shutdown without tracebacks

def _log_closed_connection(logger_name: str, message: str, chained: bool = False) -> None:
    from distributed.comm.core import CommClosedError

    try:
        try:
            raise CommClosedError("in <TCP (closed) Worker->Scheduler>: Stream is closed")
        except CommClosedError as err:
            if chained:  # e.g. the client's reconnect failing because its comm closed
                raise RuntimeError("reconnect failed") from err
            raise
    except (CommClosedError, RuntimeError):
        logging.getLogger(logger_name).exception(message)


def test_closed_connection_tracebacks_are_dropped_only_while_closing():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    dask_logger = logging.getLogger("distributed")
    dask_logger.addHandler(handler)
    try:
        with closed_connections_quiet():
            _log_closed_connection("distributed.worker", "heartbeat while closing")
            _log_closed_connection("distributed.client", "reconnect while closing", chained=True)
            logging.getLogger("distributed.scheduler").error("another problem while closing")
        _log_closed_connection("distributed.worker", "heartbeat while running")
    finally:
        dask_logger.removeHandler(handler)
    text = stream.getvalue()
    assert "while closing" in text and "another problem while closing" in text  # other errors stay
    assert "heartbeat while closing" not in text and "reconnect while closing" not in text
    assert "heartbeat while running" in text and "CommClosedError" in text  # only while closing


def test_a_successful_multi_worker_generate_prints_no_traceback(tmp_path):
    # What `make data` runs (WORKERS=2), on the smallest dataset that fills the ten folds.
    cmd = [sys.executable, "-m", "clustermass.cli", "generate", "--preset", "ci",
           "--set", "population.n_clusters=10", "--workers", "2", "--out", str(tmp_path / "ci")]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    output = run.stdout + run.stderr
    assert run.returncode == 0, output
    assert (tmp_path / "ci" / "catalog.csv").is_file()
    assert "Traceback" not in output and "CommClosedError" not in output, output


def test_a_local_cluster_that_loses_every_worker_is_one_clear_error(tmp_path, monkeypatch):
    # A task function the workers cannot import (its module is not on their path): they
    # close for good, as when the workers' environment cannot import the project.
    import importlib.util

    source = tmp_path / "only_here.py"
    source.write_text("def task(x):\n    return x\n")
    spec = importlib.util.spec_from_file_location("only_here", source)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setitem(sys.modules, "only_here", module)
    monkeypatch.setattr("benchmark.core.distributed.WATCH_S", 2)
    with pytest.raises(ClusterMassError, match="every Dask worker process has died"):
        list(map_on_dask(module.task, [(1,), (2,)], ["a", "b"], workers=2))
