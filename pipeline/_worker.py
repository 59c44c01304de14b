"""What runs inside a Dask worker (imported only when a scheduler is configured: Dask is optional)."""

from __future__ import annotations

from dask.distributed import WorkerPlugin, get_worker

from pipeline.design import FoldDesign, Task
from pipeline.tasks import TaskOutput, TrainJob, run_task

__all__ = ["PLUGIN", "DesignPlugin", "worker_task"]

PLUGIN = "lookalike-design"


class DesignPlugin(WorkerPlugin):
    """The train job on every worker, and the worker's own design once a task has asked for it."""

    def __init__(self, job: TrainJob) -> None:
        self.job = job
        self._design: FoldDesign | None = None

    def design(self) -> FoldDesign:
        """The worker's design (built from the job's files on first use, then kept)."""
        if self._design is None:
            self._design = self.job.open_design()
        return self._design


def worker_task(name: str, task: Task) -> TaskOutput:
    """:func:`~pipeline.tasks.run_task` on the calling worker's design."""
    plugin = get_worker().plugins[PLUGIN]
    return run_task(plugin.design(), plugin.job.settings, name, task)
