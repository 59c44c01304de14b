"""The ``train`` stage: cross-validate every model on the fold file, combine, refit, save, report.

Every model is trained once per fold on the other folds (a
:class:`~pipeline.design.Fold` task); its out-of-fold predictions (train) and
its test predictions are saved as files, which are all that blending,
stacking and reports read. The test predictions are those of the model
refitted on all rows with ``[train] refit`` (models that are not refitted
then have none), else the average of the fold models'. The stage runs as steps
that each do one thing (:func:`run_train` lists them): read and check every
input, build the design, cross-validate, combine, measure the permutation
importance, save the cross-validation outputs, refit what is submitted, save
the submission's predictions and the scorer, write the report.
"""

from __future__ import annotations

import functools
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator
from tqdm.auto import tqdm

from core import LookalikeError, Pairs
from ensemble import (
    COMBINERS, PerAidLGBM, fold_scores, gain_importance, group_shares, make_combiner, nested_oof, per_aid_auc,
    has_gain_importance,
    permuted_columns,
)
from features import FeatureSet, PairFeaturizer
from pipeline.artifact import ArtifactKind, check_artifact, load_artifact, save_artifact
from pipeline.config import TrainSettings, as_dict, config_hash
from pipeline.design import Fold, FoldDesign, Part, Refit, Task, TrainInputs, column_groups, read_layout
from pipeline.files import read_folds, read_test_pairs, read_train_pairs, write_predictions
from pipeline.io import Outputs, PathLike, stage_outputs
from pipeline.models import parse_model
from pipeline.report import Truth, read_truth, write_cv_report
from pipeline.scorer import ScoredModel, Scorer
from pipeline.tasks import TaskOutput, TrainJob, run_task

__all__ = [
    "CVResult", "PermutationImportance", "TrainData", "choose_final", "combine", "cross_validate", "fallback_aids",
    "feature_importance", "permutation_importance", "read_inputs", "run_train",
]

logger = logging.getLogger(__name__)


@dataclass
class CVResult:
    """What one cross-validated model (or combination of models) produced."""

    name: str
    oof: np.ndarray  #: out-of-fold predictions of the training rows
    #: test predictions: the refitted model's with ``[train] refit`` (``None`` until then, and for
    #: models not refitted), else the fold models' average
    test: np.ndarray | None
    seconds: float
    fold_auc: list[float] = field(default_factory=list)
    estimators: list[BaseEstimator] = field(default_factory=list)  #: one per task, for models
    tasks: list[Task] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    combiner: Any = None  #: the fitted Blend or Stack, for combinations


@dataclass(frozen=True)
class TrainData:
    """The labels, aids and folds of the training rows, and the test pairs (read once, checked)."""

    y: np.ndarray
    aid: np.ndarray
    aid_of: dict[int, int]  #: aid_idx -> aid (per-aid models see aid_idx)
    folds: np.ndarray
    test: Pairs
    truth: Truth | None

    @property
    def n_folds(self) -> int:
        """Number of folds."""
        return int(self.folds.max()) + 1

    def score(self, pred: np.ndarray) -> float:
        """Mean per-aid AUC of out-of-fold predictions of the training rows."""
        return per_aid_auc(self.y, pred, self.aid).mean


def read_inputs(inputs: TrainInputs, truth: PathLike | None) -> TrainData:
    """Step 1: read and check every input before anything is trained.

    The pairs, the fold file (its length), the feature description (its
    layout), the fitted featurizer (its manifest, kind and checksum: the
    scorer needs it at the end) and the synthetic truth, when there is one,
    against the test rows.
    """
    train, test = read_train_pairs(inputs.pairs), read_test_pairs(inputs.pairs)
    folds = read_folds(inputs.folds, len(train))
    read_layout(inputs.columns)
    check_artifact(inputs.featurizer, ArtifactKind.FEATURIZER)
    return TrainData(
        y=train.label.astype(np.int8), aid=train.aid, aid_of=dict(zip(train.aid_idx.tolist(), train.aid.tolist())),
        folds=folds, test=test, truth=read_truth(truth, test),
    )


def _run(design: FoldDesign, job: TrainJob, tasks: list[tuple[str, Task]], desc: str) -> list[TaskOutput]:
    """Every ``(model, task)``: here, one after the other on ``design``, or on the configured Dask cluster."""
    if job.settings.scheduler:
        from pipeline.cluster import run_tasks

        return run_tasks(job, tasks, job.settings.scheduler)
    outputs = []
    for name, task in tqdm(tasks, desc=desc, unit="model", disable=None):
        outputs.append(run_task(design, job.settings, name, task))
        logger.info("%s %s: trained in %.1f s", name, task, outputs[-1].seconds)
    return outputs


def cross_validate(design: FoldDesign, job: TrainJob, data: TrainData) -> list[CVResult]:
    """Step 3: every configured model on every fold; one result per model, in config order.

    Tasks run fold by fold (each fold's training matrix built once for the
    models of that fold), here or on Dask; the results are assembled in the
    same order either way, so they are identical.
    """
    names = list(job.settings.models)
    tasks = [(name, Fold(k)) for k in range(data.n_folds) for name in names]
    outputs = _run(design, job, tasks, "train")
    results = {name: CVResult(name, np.zeros(len(data.y)), None, 0.0) for name in names}
    for out in outputs:
        r, held = results[out.name], data.folds == out.task.k
        r.oof[held] = out.oof
        if out.test is not None:
            r.test = out.test / data.n_folds if r.test is None else r.test + out.test / data.n_folds
        r.seconds += out.seconds
        r.fold_auc.append(per_aid_auc(data.y[held], out.oof, data.aid[held]).mean)
        r.estimators.append(out.estimator)
        r.tasks.append(out.task)
        r.extra["task_peak_rss_mb"] = round(max(r.extra.get("task_peak_rss_mb", 0.0), out.peak_rss_mb), 1)
        if isinstance(out.estimator, PerAidLGBM):
            r.extra["fallback_aids"] = sorted(set(r.extra.get("fallback_aids", [])) | fallback_aids(out.estimator, data))
        logger.info("%s %s: mean per-aid AUC %.4f", out.name, out.task, r.fold_auc[-1])
    return list(results.values())


def fallback_aids(estimator: PerAidLGBM, data: TrainData) -> set[int]:
    """The aids (ids) for which a fitted per-aid model used the global model."""
    return {data.aid_of[int(a)] for a in estimator.fallback_}


def combine(results: list[CVResult], data: TrainData, seed: int) -> list[CVResult]:
    """Step 4: the blends and the stack of the models' predictions, each scored with nested folds.

    With per-aid models among them, the combiners' weights may change with
    the seed's size.
    """
    oof = np.column_stack([r.oof for r in results])
    test = None if any(r.test is None for r in results) else np.column_stack([r.test for r in results])
    by_size = any(parse_model(r.name).per_aid for r in results)
    out = []
    for kind in COMBINERS:
        t0 = time.perf_counter()
        nested = nested_oof(oof, data.y, data.aid, data.folds, kind, seed, by_size)
        combiner = make_combiner(kind, seed, by_size).fit(oof, data.y, data.aid)
        if kind == "stack":
            extra = {"coef": combiner.meta_.coef_.ravel().round(4).tolist(), "by_seed_size": by_size}
        else:
            extra = {
                "weights": [dict(zip([r.name for r in results], w.round(4).tolist())) for w in combiner.weights_],
                "seed_size_edges": np.expm1(combiner.size_edges_).round(1).tolist(),  # positives
            }
        test_pred = None if test is None else combiner.predict(test, data.test.aid)
        out.append(CVResult(kind, nested, test_pred, time.perf_counter() - t0,
                            fold_scores(nested, data.y, data.aid, data.folds), extra=extra, combiner=combiner))
        logger.info("%s: nested out-of-fold mean per-aid AUC %.4f", kind, data.score(nested))
    return out


def feature_importance(results: list[CVResult], columns: Path) -> dict[str, dict[str, float]]:
    """Per model of trees, the share of its fold models' split gain held by each feature group
    (:func:`pipeline.design.column_group`), largest first (the neural model has no split gain)."""
    @functools.cache
    def groups(feature_set: FeatureSet) -> tuple[str, ...]:  # once per set: a sparse set has ~10^5 columns
        return column_groups(columns, feature_set)

    return {r.name: group_shares((gain_importance(e) for e in r.estimators), groups(parse_model(r.name).feature_set))
            for r in results if r.estimators and all(has_gain_importance(e) for e in r.estimators)}


@dataclass(frozen=True)
class PermutationImportance:
    """The out-of-fold mean per-aid AUC lost when one feature group is permuted."""

    model: str  #: the model permuted (the submitted one, or the best model when a combination is submitted)
    rows: int  #: sampled training rows, each scored by the fold model that held it out
    auc: float  #: their mean per-aid AUC unpermuted
    drop: dict[str, float]  #: per group, ``auc`` minus the AUC with the group permuted, largest first


def permutation_importance(design: FoldDesign, results: list[CVResult], final: CVResult, data: TrainData,
                           columns: Path, settings: TrainSettings) -> PermutationImportance | None:
    """Out-of-fold permutation importance per feature group (``[train] permutation_rows`` sampled rows).

    The model is the submitted one, or the best model by out-of-fold score
    when a blend or stack is submitted. Each sampled row is predicted by the
    fold model that did not train on it, once as it is and once per group
    with that group's columns permuted across the fold's sampled rows
    (:func:`ensemble.permuted_columns`); the drop is the mean per-aid AUC of
    the sample minus that with the group permuted. ``None`` when
    ``permutation_rows`` is 0.
    """
    if not settings.permutation_rows:
        return None
    model = final if final.estimators else max(
        (r for r in results if r.estimators), key=lambda r: data.score(r.oof))
    feature_set = parse_model(model.name).feature_set
    groups: dict[str, list[int]] = {}
    for j, g in enumerate(column_groups(columns, feature_set)):
        groups.setdefault(g, []).append(j)
    rng = np.random.default_rng(settings.seed)
    sample = np.sort(rng.choice(len(data.y), min(settings.permutation_rows, len(data.y)), replace=False))
    base = np.empty(len(sample))
    permuted = {g: np.empty(len(sample)) for g in groups}
    for est, task in zip(model.estimators, model.tasks, strict=True):
        held = np.flatnonzero(data.folds == task.k)
        where = np.flatnonzero(np.isin(sample, held))
        if not len(where):
            continue
        parts = list(design.chunks(feature_set, task, Part.HELD, rows=np.searchsorted(held, sample[where])))
        X = sp.vstack(parts, format="csr") if sp.issparse(parts[0]) else np.vstack(parts)
        base[where] = est.predict_proba(X)[:, 1]
        for g, Xp in permuted_columns(X, groups, rng):
            permuted[g][where] = est.predict_proba(Xp)[:, 1]
    y, aid = data.y[sample], data.aid[sample]
    auc = per_aid_auc(y, base, aid).mean
    drop = {g: auc - per_aid_auc(y, p, aid).mean for g, p in permuted.items()}
    drop = dict(sorted(drop.items(), key=lambda kv: -kv[1]))
    logger.info("permutation importance of %s on %s rows: largest drop %s", model.name, f"{len(sample):,}",
                next(iter(drop.items()), None))
    return PermutationImportance(model.name, len(sample), auc, drop)


def choose_final(results: list[CVResult], wanted: str, y: np.ndarray, aid: np.ndarray) -> CVResult:
    """The result named ``wanted``, or with ``"auto"`` the best by out-of-fold score."""
    if wanted == "auto":
        scored = [(per_aid_auc(y, r.oof, aid).mean, i) for i, r in enumerate(results)]
        return results[max(scored)[1]]
    for r in results:
        if r.name == wanted:
            return r
    raise LookalikeError(f"[train] final = {wanted!r} is none of: auto, {', '.join(r.name for r in results)}")


def _save_array(path: Path, arr: np.ndarray, outputs: Outputs) -> None:
    with open(outputs.path(path), "wb") as fh:
        np.save(fh, arr)


def save_cv_outputs(build: Path, results: list[CVResult], data: TrainData, settings: TrainSettings,
                    features: Path, outputs: Outputs) -> None:
    """Step 5: ``oof/`` and ``pred/`` arrays of every result, ``models/<model>.joblib`` of every model.

    ``pred/<name>.npy`` (the fold models' test average) exists only without ``[train] refit``
    (one left by an earlier run is removed).
    """
    for r in results:
        _save_array(build / "oof" / f"{r.name}.npy", r.oof, outputs)
        if r.test is not None:
            _save_array(build / "pred" / f"{r.name}.npy", r.test, outputs)
        else:
            outputs.remove(build / "pred" / f"{r.name}.npy")
        if r.estimators:
            save_artifact(r.estimators, build / "models" / f"{r.name}.joblib", ArtifactKind.FOLD_MODELS, {
                "model": r.name,
                "feature_set": str(parse_model(r.name).feature_set),
                "tasks": [str(t) for t in r.tasks],
                "config": as_dict(settings),
                "config_hash": config_hash(settings),
                "oof_mean_aid_auc": data.score(r.oof),
                "fold_mean_aid_auc": r.fold_auc,
                "features": str(features),
            }, outputs)


def refit(design: FoldDesign, job: TrainJob, final: CVResult, models: list[CVResult], data: TrainData,
          build: Path, outputs: Outputs) -> tuple[np.ndarray, dict[str, ScoredModel]]:
    """Step 6: the submitted model (or every model of the submitted combination) refitted on all rows.

    Returns the submitted test predictions and the refitted models; each
    refit's test predictions are saved as ``pred/<model>.refit.npy`` and
    become its result's ``test`` (the submitted ones the final's), for the report.
    """
    needed = [final] if final.estimators else models
    refits = {o.name: o for o in _run(design, job, [(r.name, Refit()) for r in needed], "refit")}
    for r in needed:
        r.test = refits[r.name].test
        _save_array(build / "pred" / f"{r.name}.refit.npy", r.test, outputs)
    if final.estimators:
        submitted = refits[final.name].test
    else:
        submitted = final.combiner.predict(np.column_stack([refits[r.name].test for r in needed]), data.test.aid)
        final.test = submitted
    final.extra["refit_seconds"] = round(sum(o.seconds for o in refits.values()), 1)
    scored = {n: ScoredModel(parse_model(n).feature_set, [out.task], [out.estimator]) for n, out in refits.items()}
    return submitted, scored


def save_scorer(path: Path, scorer: Scorer, final: CVResult, data: TrainData, settings: TrainSettings,
                features: Path, outputs: Outputs) -> None:
    """Step 8: the whole scoring pipeline, for ``lookalike score``."""
    save_artifact(scorer, path, ArtifactKind.SCORER, {
        "final": final.name,
        "refit_on_all_rows": settings.refit,
        "models": {n: [str(t) for t in m.tasks] for n, m in scorer.models.items()},
        "config": as_dict(settings),
        "config_hash": config_hash(settings),
        "oof_mean_aid_auc": data.score(final.oof),
        "sparse_columns": len(scorer.featurizer.sparse_names_),
        "dense_columns": len(scorer.featurizer.dense_names_),
        "user_vocabulary": {f.name: f.size for f in scorer.featurizer.fields_},
        "features": str(features),
    }, outputs)


def run_train(features: PathLike, interim: PathLike, folds_path: PathLike, build: PathLike, report: PathLike,
              settings: TrainSettings | None = None, truth: PathLike | None = None) -> None:
    """The ``train`` stage.

    Writes under ``build``: ``oof/<model>.npy``, ``pred/<model>.npy`` and
    ``models/<model>.joblib`` of every model and combination;
    ``pred/final.npz``, the submitted test scores with their ``(aid, uid)``
    (the best nested out-of-fold result, or ``[train] final``, refitted on all
    rows with ``[train] refit``); ``models/scorer.joblib``. Then the report
    ``cv.md`` with ``cv.json`` and a plot.
    """
    settings = settings or TrainSettings()
    lgb.register_logger(logging.getLogger("lightgbm"))
    features, build = Path(features), Path(build)
    inputs = TrainInputs(features, Path(interim) / "pairs.npz", Path(folds_path))
    data = read_inputs(inputs, truth)  # 1
    job = TrainJob(inputs, settings)
    design = job.open_design()  # 2: the CTR counts; matrices are built per task
    results = cross_validate(design, job, data)  # 3
    design.release()  # the last fold's matrix: not needed to combine
    combos = combine(results, data, settings.seed) if len(results) > 1 else []  # 4
    final = choose_final(results + combos, settings.final, data.y, data.aid)
    permutation = permutation_importance(design, results, final, data, inputs.columns, settings)
    with stage_outputs() as outputs:  # every file below is renamed into place only when all are written
        save_cv_outputs(build, results + combos, data, settings, features, outputs)  # 5
        if settings.refit:  # 6
            submitted, models = refit(design, job, final, results, data, build, outputs)
            design.release()
        else:
            submitted = final.test
            models = {r.name: ScoredModel(parse_model(r.name).feature_set, r.tasks, r.estimators) for r in results}
        write_predictions(build / "pred" / "final.npz", data.test, np.clip(submitted, 0.0, 1.0), outputs)  # 7
        logger.info("submitting %s%s", final.name, " (refitted on all rows)" if settings.refit else "")
        featurizer = load_artifact(inputs.featurizer, ArtifactKind.FEATURIZER, expected_type=PairFeaturizer)
        scorer = Scorer(featurizer, design.encoder, models, final.name, final.combiner)
        save_scorer(build / "models" / "scorer.joblib", scorer, final, data, settings, features, outputs)  # 8
        write_cv_report(report, results + combos, final.name, data.y, data.aid, data.test.aid, data.truth,  # 9
                        submitted=submitted if settings.refit else None, outputs=outputs,
                        importance=feature_importance(results, inputs.columns), permutation=permutation)
