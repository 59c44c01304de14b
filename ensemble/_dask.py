"""Dispatch of (model, fold) training tasks to a Dask cluster.

Bags and folds are independent models that each fit on one machine, so the
scale-out is task parallelism: every (model, fold) pair is one task. A task
carries only a :class:`~ensemble.cv.TrainJob` (paths and settings) and reads
the feature, pair and fold files itself, so the matrices never pass through
the scheduler: the files must be on a file system every worker sees (a shared
mount, or the same path on each node). A worker keeps the design it loaded
for the tasks that follow. Results (out-of-fold and test predictions, the
fitted estimators) come back to the client and are assembled in the same
order as a local run, which makes them identical for the same settings.

``scheduler`` values:

* ``local:N`` starts a ``dask.distributed.LocalCluster`` of ``N`` worker
  processes on 127.0.0.1 (one thread each: LightGBM uses its own threads);
* ``tcp://host:port`` connects to an existing cluster whose workers have this
  project installed (``pip install 'lookalike[dask]'``).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from typing import Any

from tqdm.auto import tqdm

from pipeline.errors import LookalikeError

__all__ = ["dask_client", "run_tasks"]

logger = logging.getLogger(__name__)


@contextlib.contextmanager
def dask_client(scheduler: str) -> Iterator[Any]:
    """A ``dask.distributed.Client`` for ``scheduler`` (closed, with its local cluster, on exit)."""
    try:
        from dask.distributed import Client, LocalCluster
    except ImportError:
        raise LookalikeError(
            f"scheduler {scheduler!r} needs Dask: pip install 'lookalike[dask]'"
        ) from None
    if scheduler.startswith("local:"):
        try:
            n = int(scheduler.removeprefix("local:"))
        except ValueError:
            n = 0
        if n < 1:
            raise LookalikeError(f"scheduler {scheduler!r}: use local:N with N >= 1 workers")
        cluster = LocalCluster(
            n_workers=n, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None,
        )
        client = Client(cluster)
        logger.info("Dask LocalCluster with %d workers", n)
        try:
            yield client
        finally:
            client.close()
            cluster.close()
    elif scheduler.startswith("tcp://"):
        try:
            client = Client(scheduler, timeout=30)
        except OSError as exc:
            raise LookalikeError(f"cannot reach the Dask scheduler at {scheduler}: {exc}") from None
        logger.info("Dask cluster %s: %d workers", scheduler, len(client.scheduler_info()["workers"]))
        try:
            yield client
        finally:
            client.close()
    else:
        raise LookalikeError(f"unknown scheduler {scheduler!r}: use '', 'local:N' or 'tcp://host:port'")


def run_tasks(task: Callable[..., Any], job: Any, tasks: list[tuple[str, int]], scheduler: str) -> list[Any]:
    """Run ``task(job, name, fold)`` for every ``(name, fold)`` on the cluster; results in task order."""
    from dask.distributed import as_completed

    with dask_client(scheduler) as client:
        job_future = client.scatter(job, broadcast=True)  # small: paths and settings
        futures = [client.submit(task, job_future, name, k, pure=False, key=f"train-{name}-fold{k}")
                   for name, k in tasks]
        for fut in tqdm(as_completed(futures), total=len(futures), desc="train (dask)", unit="model", disable=None):
            out = fut.result()  # raises the task's error here
            logger.info("%s fold %d: trained in %.1f s on a worker", out.name, out.fold, out.seconds)
        return [f.result() for f in futures]
