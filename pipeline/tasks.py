"""One (model, task) of the train stage: fit the model, predict its held-out and test rows.

:func:`run_task` is the unit of work wherever it runs: the local loop of the
train stage and the Dask workers (:mod:`pipeline.cluster`) call the same
function with a :class:`~pipeline.design.FoldDesign`, so the results are
identical for the same settings (and LightGBM thread count).
"""

from __future__ import annotations

import logging
import resource
import time
from dataclasses import dataclass

import numpy as np
from sklearn.base import BaseEstimator

from features import FeatureSet
from pipeline.config import TrainSettings
from pipeline.design import FoldDesign, Part, Refit, Task, TrainInputs, nffm_fields
from pipeline.models import KINDS, ModelColumns, ModelSpec, build_model, parse_model

__all__ = ["TaskOutput", "TrainJob", "fit_model", "model_columns", "peak_rss_mb", "predicts_test", "run_task"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainJob:
    """What a worker needs to build its own design: the input files, the settings, the feature sets."""

    inputs: TrainInputs
    settings: TrainSettings

    @property
    def feature_sets(self) -> frozenset[FeatureSet]:
        """The feature sets of the configured models."""
        return frozenset(parse_model(name).feature_set for name in self.settings.models)

    def open_design(self) -> FoldDesign:
        """A design over the job's files (one CTR counting pass when a model uses the statistics)."""
        return FoldDesign(self.inputs, set(self.feature_sets), self.settings.chunk_rows)


@dataclass
class TaskOutput:
    """One model trained for one task."""

    name: str
    task: Task
    oof: np.ndarray  #: predictions of the held-out fold (empty for the refit)
    test: np.ndarray | None  #: predictions of the test rows (``None``: not asked for, see :func:`predicts_test`)
    estimator: BaseEstimator
    seconds: float
    peak_rss_mb: float = 0.0  #: of the process that ran the task (a Dask worker's own peak)


def peak_rss_mb() -> float:
    """This process's peak resident memory: ``VmHWM`` on Linux, else ``ru_maxrss``.

    (``ru_maxrss`` is inherited through fork and exec, so in a Dask worker it
    would report its parent's peak.)
    """
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def predicts_test(settings: TrainSettings, task: Task) -> bool:
    """Whether ``task``'s model predicts the test rows.

    The refit always does. A fold model does only without ``[train] refit``,
    when the fold models' average is what is submitted and scored; with the
    refit its test predictions would be used by nothing (at full scale they
    were 23% of a fold's time: README, "Train stage profile").
    """
    return isinstance(task, Refit) or not settings.refit


def fit_model(design: FoldDesign, settings: TrainSettings, spec: ModelSpec, task: Task) -> BaseEstimator:
    """Model ``spec`` fitted on ``task``'s rows of ``design``.

    A model that can say beforehand which rows it reads (a ``plan(y)``
    method: :meth:`ensemble.BaseLGBMBagging.plan` of EasyEnsemble and the
    reference model, :meth:`ensemble.NFFMClassifier.plan`) gets a design of
    only those rows: at full scale about a fifth of a fold's training rows
    for the default 3 bags, in a fifth of the time and memory (README, "Train
    stage profile"). The models are the same as on all rows.
    """
    est = build_model(spec, settings, model_columns(design, settings, spec))
    y = design.labels(task)
    plan = est.plan(y) if callable(getattr(est, "plan", None)) else None
    if plan is None or len(plan.rows) == len(y):  # the bags depend on each other, or read every row
        return est.fit(design.matrix(spec.feature_set, task), y)
    rows, local = plan.restrict()
    logger.debug("%s, %s: the bags read %s of %s training rows", spec.name, task, f"{len(rows):,}", f"{len(y):,}")
    return est.fit(design.matrix(spec.feature_set, task, rows), y[rows], plan=local)


def model_columns(design: FoldDesign, settings: TrainSettings, spec: ModelSpec) -> ModelColumns:
    """What ``spec``'s kind knows of its design's columns (field roles only for a kind that reads them)."""
    categorical = design.layout.categorical(spec.feature_set, settings.categorical_crosses)
    if not KINDS[spec.kind].needs_fields:
        return ModelColumns(categorical)
    fields, ad_fields = nffm_fields(design.inputs.columns, spec.feature_set)
    return ModelColumns(categorical, fields, ad_fields)


def run_task(design: FoldDesign, settings: TrainSettings, name: str, task: Task) -> TaskOutput:
    """Train model ``name`` for ``task`` on ``design``; predict the task's held-out rows and the test rows.

    For the refit, the training rows' CTR statistics still leave out each
    row's own fold; the test rows get those of all rows. The test rows are
    predicted only where :func:`predicts_test` says so.
    """
    spec = parse_model(name)
    t0 = time.perf_counter()
    est = fit_model(design, settings, spec, task)
    oof = design.predict(est, spec.feature_set, task, Part.HELD)
    test = design.predict(est, spec.feature_set, task, Part.TEST) if predicts_test(settings, task) else None
    return TaskOutput(name, task, oof, test, est, time.perf_counter() - t0, peak_rss_mb())
