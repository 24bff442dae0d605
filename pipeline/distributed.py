"""Run independent generation tasks on Dask: a LocalCluster by default, or a given scheduler.

Each task writes its own file atomically and returns a small summary, so a task that is
retried after its worker died simply writes the same bytes again: the run ends complete
and identical to the serial one.
"""
from __future__ import annotations

from typing import Any, Callable, Iterator, Sequence

from benchmark.errors import ClusterMassError

TASK_RETRIES = 3


def map_on_dask(func: Callable, arg_tuples: Sequence[tuple], keys: Sequence[str], workers: int = 2,
                scheduler: str | None = None) -> Iterator[Any]:
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
    """
    from dask.distributed import Client, LocalCluster, as_completed

    if scheduler:
        try:
            client = Client(scheduler, timeout="20s")
        except OSError as err:
            raise ClusterMassError(
                f"cannot reach the Dask scheduler at {scheduler} ({err}): start it first "
                "(see README, 'Scaling out') or leave DASK_SCHEDULER empty for a local cluster."
            ) from None
        cluster = None
    else:
        # One thread per process: the renderers are numpy/yt code that holds the GIL.
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                               dashboard_address=None, silence_logs=40)
        client = Client(cluster)
    try:
        futures = [
            client.submit(func, *args, key=key, retries=TASK_RETRIES, pure=False)
            for args, key in zip(arg_tuples, keys)
        ]
        for future in as_completed(futures):
            yield future.result()
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
