"""Dispatch of (model, task) training tasks to a Dask cluster.

Bags and folds are independent models that each fit on one machine, so the
scale-out is task parallelism: every (model, task) pair is one Dask task. A
task carries only its model name and :class:`~pipeline.design.Task`; the
:class:`~pipeline.tasks.TrainJob` (paths and settings) goes to every worker
once, as a worker plugin that builds the worker's own
:class:`~pipeline.design.FoldDesign` from the feature, pair and fold files on
first use and keeps it for the tasks that follow. The matrices never pass
through the scheduler: the files must be on a file system every worker sees
(a shared mount, or the same path on each node). Results (out-of-fold and
test predictions, the fitted estimators) come back to the client and are
assembled in the same order as a local run, which makes them identical for
the same settings.

``scheduler`` values:

* ``local:N`` starts a ``dask.distributed.LocalCluster`` of ``N`` worker
  processes on 127.0.0.1 (one thread each: LightGBM uses its own threads);
* ``tcp://host:port`` connects to an existing cluster whose workers have this
  project installed (``pip install 'lookalike[dask]'``).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

from tqdm.auto import tqdm

from core import LookalikeError
from pipeline.design import Task
from pipeline.tasks import TaskOutput, TrainJob

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


def run_tasks(job: TrainJob, tasks: list[tuple[str, Task]], scheduler: str) -> list[TaskOutput]:
    """Run every ``(model name, task)`` on the cluster; results in task order."""
    from dask.distributed import as_completed

    from pipeline._worker import PLUGIN, DesignPlugin, worker_task

    with dask_client(scheduler) as client:
        client.register_plugin(DesignPlugin(job), name=PLUGIN)
        futures = [client.submit(worker_task, name, task, pure=False, key=f"train-{name}-{task}".replace(" ", ""))
                   for name, task in tasks]
        for fut in tqdm(as_completed(futures), total=len(futures), desc="train (dask)", unit="model", disable=None):
            out = fut.result()  # raises the task's error here
            logger.info("%s %s: trained in %.1f s on a worker", out.name, out.task, out.seconds)
        return [f.result() for f in futures]
