"""Run independent tasks on Dask: a LocalCluster by default, or a given scheduler.

Shared by generation (one cluster per task) and the harness (one sandboxed fold and seed per
task). Each task writes its own files atomically and returns a small summary, so a task that
is retried after its worker died simply writes the same bytes again: the run ends complete
and identical to the serial one.
"""
from __future__ import annotations

import contextlib
import logging
from typing import Any, Callable, Iterator, Sequence

from benchmark.core.errors import ClusterMassError

TASK_RETRIES = 3
#: How long to try reaching a given scheduler before saying so.
SCHEDULER_TIMEOUT = "20s"

#: Environment of the LocalCluster's worker processes. Dask's default sets
#: ``MALLOC_TRIM_THRESHOLD_=65536``, which also pins glibc's mmap threshold at 128 KiB: every
#: large numpy temporary of the gas and rendering stages is then mapped and zeroed afresh, and
#: two workers were barely faster than one process (``make bench``). Instead the freed cubes
#: stay in the heap for the next cluster (a worker's footprint is a few hundred MiB), and each
#: worker process gets one BLAS/OpenMP thread, since the workers already fill the cores.
WORKER_ENVIRON = {
    "MALLOC_MMAP_THRESHOLD_": 32 * 2**20,
    "MALLOC_TRIM_THRESHOLD_": 2**30,
    "OMP_NUM_THREADS": 1,
    "MKL_NUM_THREADS": 1,
    "OPENBLAS_NUM_THREADS": 1,
}

#: Dask settings for the LocalCluster. The statistical profiler samples the task thread every
#: 10 ms, which cost the renderers ~10% of their speed and nothing here needs it. The event
#: loops of every worker, nanny and the scheduler also wake every 20 ms (tick health check),
#: 100 ms (memory monitor) and 500 ms (system monitor); each wake-up takes the worker's GIL
#: from the task thread, and when the cores are busy the hand-back waits for a core: the
#: task thread sat idle 10-15% of its wall time (one worker beside a training job). Slower
#: ticks leave the memory limits checked every second and the heartbeats untouched.
LOCAL_CLUSTER_CONFIG = {
    "distributed.nanny.pre-spawn-environ": WORKER_ENVIRON,
    "distributed.worker.profile.enabled": False,
    "distributed.admin.tick.interval": "1s",
    "distributed.worker.memory.monitor-interval": "1s",
    "distributed.admin.system-monitor.interval": "5s",
}


def map_on_dask(func: Callable, arg_tuples: Sequence[tuple], keys: Sequence[str], workers: int = 2,
                scheduler: str | None = None, retries: int = TASK_RETRIES) -> Iterator[Any]:
    """Yield ``func(*args)`` for every tuple of ``arg_tuples`` as the tasks finish.

    Parameters
    ----------
    func : callable
        A module-level (picklable) function.
    arg_tuples : sequence of tuple
        Arguments of each task.
    keys : sequence of str
        Unique, stable task names (shown on the Dask dashboard and in errors).
    workers : int
        Worker processes of the LocalCluster (ignored when ``scheduler`` is given).
    scheduler : str, optional
        Address of a running scheduler, e.g. ``tcp://host:8786`` (dask-jobqueue, Kubernetes).
    retries : int
        Dask retries of a task whose worker died or that raised.
    """
    import dask
    from dask.distributed import Client, LocalCluster

    if scheduler:
        try:
            client = Client(scheduler, timeout=SCHEDULER_TIMEOUT)
        except OSError as err:
            raise ClusterMassError(
                f"cannot reach the Dask scheduler at {scheduler} ({err}): start it first "
                "(see README, 'Scaling out') or leave DASK_SCHEDULER empty for a local cluster."
            ) from None
        cluster = None
    else:
        # One thread per process: the renderers are numpy/yt code that holds the GIL.
        with dask.config.set(LOCAL_CLUSTER_CONFIG):
            cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                   dashboard_address=None, silence_logs=40)
        client = Client(cluster)
    try:
        # A generator of its own: when it ends, its futures are dropped, so the scheduler
        # forgets the results before the workers are retired.
        yield from _results(client, func, arg_tuples, keys, retries, local=cluster is not None)
    finally:
        _close(client, cluster)


#: Seconds between checks that a LocalCluster still has workers while tasks are pending.
WATCH_S = 30


def _results(client, func, arg_tuples, keys, retries: int, local: bool) -> Iterator[Any]:
    """The tasks' results as they finish; a LocalCluster that lost every worker (a worker
    that cannot import the task's module closes for good) is one clear error, not a wait
    without end."""
    from distributed import wait

    pending = {client.submit(func, *args, key=key, retries=retries, pure=False)
               for args, key in zip(arg_tuples, keys)}
    while pending:
        try:
            done, pending = wait(pending, timeout=WATCH_S, return_when="FIRST_COMPLETED")
        except TimeoutError:
            if local and not client.scheduler_info().get("workers"):
                raise ClusterMassError(
                    f"every Dask worker process has died with {len(pending)} task(s) pending: "
                    "see the worker errors above (often an import error in the workers' "
                    "environment), or run with one process (WORKERS=1 / FOLD_JOBS=1).") from None
            continue
        for future in done:
            yield future.result()


def _close(client, cluster) -> None:
    """Close the client, then the cluster, without the known closed-connection tracebacks.

    Every result is in (or the run failed, which raises on its own) when this runs. Closing
    races with the connections still open between the client, scheduler, nannies and
    workers, and Dask logs each one it finds closed as an error with a ``CommClosedError``
    traceback (dask/distributed#6087, #7192): noise after a successful run. Only those
    records are dropped, and only while closing; the workers drop them too.
    """
    if cluster is not None:  # a given scheduler's workers are not ours to quieten
        with contextlib.suppress(Exception):
            client.run(quiet_closed_connections)
    with closed_connections_quiet():
        client.close()
        if cluster is not None:
            cluster.close()


def _is_closed_connection(exc: BaseException | None) -> bool:
    from distributed.comm.core import CommClosedError
    from tornado.iostream import StreamClosedError

    seen = set()
    while exc is not None and id(exc) not in seen:  # the exception and what caused it
        if isinstance(exc, (CommClosedError, StreamClosedError)):
            return True
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return False


class _DropClosedConnections(logging.Filter):
    """Drop log records whose exception is (or was caused by) a closed Dask connection."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and _is_closed_connection(record.exc_info[1]))


_DROP = _DropClosedConnections()


def _shutdown_filterers() -> list:
    """The handlers that show Dask's and tornado's records, and the asyncio logger."""
    names = [name for name in list(logging.root.manager.loggerDict)
             if name.split(".")[0] in ("distributed", "tornado")]
    handlers = {h for name in names for h in logging.getLogger(name).handlers}
    handlers.update(logging.root.handlers)
    # asyncio's records may reach no handler but Python's last resort: filter at the logger.
    return [*handlers, logging.getLogger("asyncio")]


@contextlib.contextmanager
def closed_connections_quiet():
    """Within: closed-connection tracebacks of Dask are not shown (see :func:`_close`)."""
    filterers = _shutdown_filterers()
    for filterer in filterers:
        filterer.addFilter(_DROP)
    try:
        yield
    finally:
        for filterer in filterers:
            filterer.removeFilter(_DROP)


def quiet_closed_connections() -> None:
    """Run on each worker as the cluster closes: drop its closed-connection tracebacks."""
    for filterer in _shutdown_filterers():
        filterer.addFilter(_DROP)
