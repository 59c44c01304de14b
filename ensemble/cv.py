"""Cross-validated training on the project's fold file, blending and stacking.

Every model is trained once per fold on the other folds; its out-of-fold
predictions (train) and the average of its fold models' predictions (test)
are saved as files, which are all that blending, stacking and reports read.
Models are named ``<kind>_<feature set>``: kind ``reference`` (one LightGBM on
all rows), ``easy`` (EasyEnsemble) or ``cascade`` (BalanceCascade); feature set
``raw`` (one-hot/bag-of-tokens), ``sparse`` (raw + aid crosses), ``dense``
(statistics, counts, history) or ``full`` (dense + sparse).
"""

from __future__ import annotations

import json
import logging
import os
import resource
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator
from tqdm.auto import tqdm

from ensemble._bagging import BalanceCascadeLGBM, EasyEnsembleLGBM, ReferenceLGBM
from ensemble._blend import make_combiner, nested_oof
from ensemble._peraid import PerAidLGBM
from ensemble.scorer import Scorer, design_matrix
from ensemble.metrics import per_aid_auc
from features.ctr import CTRBlock, CTRSpec, CTRStats
from features.folds import load_folds
from pipeline.errors import LookalikeError
from pipeline.artifact import load_artifact, save_artifact
from pipeline.config import config_hash
from pipeline.io import CSRRowReader, atomic_path, npy_rows
from pipeline.load import load_pairs_file

__all__ = [
    "CVResult", "FEATURE_SETS", "FoldOutput", "KINDS", "TrainJob", "choose_final", "combine", "fallback_aids", "fold_scores",
    "fold_task", "make_estimator", "run_train", "train_models",
]

logger = logging.getLogger(__name__)

KINDS = {"reference": ReferenceLGBM, "easy": EasyEnsembleLGBM, "cascade": BalanceCascadeLGBM}
FEATURE_SETS = ("raw", "sparse", "dense", "full")
GRANULARITIES = ("global", "peraid", "hybrid")
COMBINERS = ("blend_rank", "blend_score", "stack")


@dataclass
class CVResult:
    """What one cross-validated model (or combination) produced."""

    name: str
    oof: np.ndarray
    test: np.ndarray
    seconds: float
    fold_auc: list[float] = field(default_factory=list)
    estimators: list[BaseEstimator] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    combiner: Any = None


def _parse_model(name: str) -> tuple[str, str]:
    """(kind, feature set) of ``<kind>_<set>[_peraid | _hybrid]``."""
    kind, fset, _ = _parse_name(name)
    return kind, fset


def _parse_name(name: str) -> tuple[str, str, str]:
    kind, _, rest = name.partition("_")
    fset, _, gran = rest.partition("_")
    gran = gran or "global"
    if kind not in KINDS or fset not in FEATURE_SETS or gran not in GRANULARITIES:
        raise LookalikeError(
            f"unknown model {name!r}: use <kind>_<set>[_peraid | _hybrid] with kind in {sorted(KINDS)} "
            f"and set in {list(FEATURE_SETS)}"
        )
    if kind == "cascade" and gran == "hybrid":
        raise LookalikeError(f"{name}: a hybrid boosts from the global model's score; BalanceCascade's "
                             "stage thresholds do not (use reference_ or easy_ for hybrids)")
    return kind, fset, gran


def make_estimator(name: str, settings: dict[str, Any], categorical: list[int]) -> BaseEstimator:
    """The unfitted classifier of model ``name`` with the ``[train]`` settings.

    A ``_peraid`` or ``_hybrid`` name wraps the model in :class:`PerAidLGBM`
    (one copy per aid with at least ``min_positives`` positives and negatives).
    """
    kind, fset, gran = _parse_name(name)
    device = settings["device"] if fset == "dense" else "cpu"  # sparse histograms run on the CPU
    est = KINDS[kind](
        n_bags=settings["n_bags"],
        ratio=settings["ratio"],
        n_estimators=settings["n_estimators"],
        learning_rate=settings["learning_rate"],
        num_leaves=settings["num_leaves"],
        min_child_samples=settings["min_child_samples"],
        feature_fraction=settings["feature_fraction"],
        lambda_l2=settings["lambda_l2"],
        early_stopping_rounds=settings["early_stopping_rounds"],
        validation_fraction=settings["validation_fraction"],
        categorical_feature=categorical,
        group_column=None,
        device=device,
        n_jobs=settings["n_jobs"] or None,
        random_state=settings["seed"],
    )
    if gran == "global":
        return est
    # aids in parallel threads, one LightGBM thread each; with n_jobs set, its threads go to one aid at a time
    n_aid_jobs = 1 if settings["n_jobs"] else (os.cpu_count() or 1)
    return PerAidLGBM(est, group_column=0, min_positives=settings["min_positives"], hybrid=gran == "hybrid",
                      n_jobs=n_aid_jobs)


@dataclass
class TrainJob:
    """What a fold task needs: paths of the shared files and the ``[train]`` settings.

    Only this small object travels to a Dask worker; each worker reads the
    feature, pair and fold files itself (see :mod:`ensemble._dask`).
    """

    features: str
    interim: str
    folds: str
    settings: dict[str, Any]

    def needed_sets(self) -> set[str]:
        """Feature sets of the configured models."""
        return {_parse_model(n)[1] for n in self.settings["models"]}


@dataclass
class FoldOutput:
    """One model trained on one fold."""

    name: str
    fold: int
    oof: np.ndarray
    test: np.ndarray
    estimator: BaseEstimator
    seconds: float
    peak_rss_mb: float = 0.0  # of the process that ran the task (a Dask worker's own peak)


_DESIGNS: dict[tuple, "_Design"] = {}  # one design per process (a Dask worker keeps its own)


def _design_for(job: TrainJob) -> "_Design":
    paths = (job.features, job.interim, job.folds)
    key = (*paths, *(Path(p).stat().st_mtime_ns for p in paths), tuple(sorted(job.needed_sets())),
           job.settings["categorical_crosses"])
    if key not in _DESIGNS:
        _DESIGNS.clear()
        train = load_pairs_file(Path(job.interim) / "pairs.npz", "train")
        test = load_pairs_file(Path(job.interim) / "pairs.npz", "test")
        folds = load_folds(job.folds, len(train["aid"]))
        _DESIGNS[key] = _Design(
            Path(job.features), job.needed_sets(), train["label"].astype(np.int8),
            {"train": train["aid_idx"], "test": test["aid_idx"]}, folds,
            categorical_crosses=job.settings["categorical_crosses"], chunk_rows=job.settings["chunk_rows"],
        )
    return _DESIGNS[key]


def _peak_rss_mb() -> float:
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


def fold_task(job: TrainJob, name: str, k: int) -> FoldOutput:
    """Train model ``name`` on every fold but ``k``; predict fold ``k`` and the test rows.

    ``k = -1``: the refit on all training rows (their CTR statistics still
    leave out each row's own fold; the test rows get those of all rows).

    Deterministic for fixed settings (and LightGBM thread count), wherever it
    runs: the local loop and Dask workers call this same function.
    """
    design = _design_for(job)
    fset = _parse_model(name)[1]
    X_fit, y_fit = design.fit_matrix(fset, k), design.y[design.folds != k]
    t0 = time.perf_counter()
    est = make_estimator(name, job.settings, design.categorical[fset]).fit(X_fit, y_fit)
    del X_fit  # the cache keeps the fold's matrix for the next model
    oof = design.predict(est, fset, k, "held") if k >= 0 else np.empty(0)
    test = design.predict(est, fset, k, "test")
    return FoldOutput(name, k, oof, test, est, time.perf_counter() - t0, _peak_rss_mb())


def train_models(
    job: TrainJob, scheduler: str = "", keep_design: bool = False
) -> tuple[list[CVResult], list[CTRBlock]]:
    """Cross-validate every configured model on the fold file.

    Tasks are (model, fold) pairs: run here fold by fold (each fold's design
    built once), or, with a ``scheduler``, dispatched to a Dask cluster (see
    :mod:`ensemble._dask`). Results are assembled in the same order either
    way, so they are identical.

    Returns
    -------
    (list of CVResult, list of CTRBlock)
        One result per model, in config order; each fold's CTR block (empty
        when no model uses the dense sets).
    """
    names = list(job.settings["models"])
    train = load_pairs_file(Path(job.interim) / "pairs.npz", "train")
    y, aid = train["label"].astype(np.int8), train["aid"]
    aid_of = dict(zip(train["aid_idx"].tolist(), aid.tolist()))  # per-aid models see aid_idx (column 0)
    folds = load_folds(job.folds, len(y))
    n_folds = int(folds.max()) + 1
    outputs = _run_fold_tasks(job, [(name, k) for k in range(n_folds) for name in names], scheduler, "train")
    stats = None
    if job.needed_sets() & {"dense", "full"}:  # the workers' counts stay there; these are the same
        stats = _design_for(job).stats if not scheduler else _fit_ctr_stats(job, y, folds)
    if not keep_design:
        _DESIGNS.clear()  # free the matrices before blending
    results = {name: CVResult(name, np.zeros(len(y)), None, 0.0) for name in names}  # type: ignore[arg-type]
    for out in sorted(outputs, key=lambda o: (o.fold, names.index(o.name))):
        r, held = results[out.name], folds == out.fold
        r.oof[held] = out.oof
        pred = out.test / n_folds
        r.test = pred if r.test is None else r.test + pred
        r.seconds += out.seconds
        r.fold_auc.append(per_aid_auc(y[held], out.oof, aid[held]).mean)
        r.estimators.append(out.estimator)
        r.extra["task_peak_rss_mb"] = round(max(r.extra.get("task_peak_rss_mb", 0.0), out.peak_rss_mb), 1)
        if isinstance(out.estimator, PerAidLGBM):
            r.extra["fallback_aids"] = sorted(set(r.extra.get("fallback_aids", [])) | fallback_aids(out.estimator, aid_of))
        logger.info("%s fold %d: mean per-aid AUC %.4f", out.name, out.fold, r.fold_auc[-1])
    # blocks of folds 0..K-1, then of all rows (for a refit)
    ctr_blocks = [CTRBlock.from_stats(stats, k) for k in [*range(n_folds), -1]] if stats is not None else []
    return list(results.values()), ctr_blocks


def fallback_aids(estimator: PerAidLGBM, aid_of: dict[int, int]) -> set[int]:
    """The aids (ids, via ``aid_of``: aid index to aid) for which a per-aid model used the global one."""
    return {aid_of[int(a)] for a in estimator.fallback_}


def refit_models(job: TrainJob, names: list[str], scheduler: str = "") -> dict[str, FoldOutput]:
    """Fit each of ``names`` once on all training rows (``fold_task`` with ``k = -1``)."""
    outputs = _run_fold_tasks(job, [(name, -1) for name in names], scheduler, "refit")
    _DESIGNS.clear()
    return {out.name: out for out in outputs}


def _run_fold_tasks(job: TrainJob, tasks: list[tuple[str, int]], scheduler: str, desc: str) -> list[FoldOutput]:
    """``fold_task`` of every (model, fold) pair: here, one after the other, or on a Dask cluster."""
    if scheduler:
        from ensemble._dask import run_tasks

        return run_tasks(fold_task, job, tasks, scheduler)
    outputs = []
    for name, k in tqdm(tasks, desc=desc, unit="model", disable=None):
        outputs.append(fold_task(job, name, k))
        logger.info("%s fold %d: trained in %.1f s", name, k, outputs[-1].seconds)
    return outputs


def _fit_ctr_stats(job: TrainJob, y: np.ndarray, folds: np.ndarray) -> CTRStats:
    """The CTR counts of all training rows per fold (what each fold's block leaves one fold out of)."""
    aid_idx = load_pairs_file(Path(job.interim) / "pairs.npz", "train")["aid_idx"]
    return _count_ctr(Path(job.features), aid_idx, y, folds, job.settings["chunk_rows"])


def _count_ctr(features: Path, aid_idx: np.ndarray, y: np.ndarray, folds: np.ndarray, chunk_rows: int) -> CTRStats:
    """One counting pass over the saved training token matrix (``columns.json`` gives the spec)."""
    columns = json.loads((features / "columns.json").read_text())
    return CTRStats(CTRSpec.from_json(columns["ctr"]), chunk_rows).fit(
        CSRRowReader(features / "sparse_train.npz"), aid_idx, y, folds
    )


def fold_scores(pred: np.ndarray, y: np.ndarray, aid: np.ndarray, folds: np.ndarray) -> list[float]:
    """Mean per-aid AUC of ``pred`` inside each fold."""
    return [per_aid_auc(y[folds == k], pred[folds == k], aid[folds == k]).mean for k in np.unique(folds)]


def combine(
    results: list[CVResult], y: np.ndarray, aid: np.ndarray, test_aid: np.ndarray, folds: np.ndarray, seed: int
) -> list[CVResult]:
    """Blends and the stack of the models' predictions, each scored with nested folds."""
    P = np.column_stack([r.oof for r in results])
    T = np.column_stack([r.test for r in results])
    # with per-aid models, the combiners' weights may change with the seed's size
    by_size = any(_parse_name(r.name)[2] != "global" for r in results)
    out = []
    for kind in COMBINERS:
        t0 = time.perf_counter()
        oof = nested_oof(P, y, aid, folds, kind, seed, by_size)
        combiner = make_combiner(kind, seed, by_size).fit(P, y, aid)
        test = combiner.predict(T, test_aid)
        if kind == "stack":
            extra = {"coef": combiner.meta_.coef_.ravel().round(4).tolist(), "by_seed_size": by_size}
        else:
            extra = {
                "weights": [dict(zip([r.name for r in results], w.round(4).tolist())) for w in combiner.weights_],
                "seed_size_edges": np.expm1(combiner.size_edges_).round(1).tolist(),  # positives
            }
        res = CVResult(
            kind, oof, test, time.perf_counter() - t0, fold_scores(oof, y, aid, folds), extra=extra,
            combiner=combiner,
        )
        logger.info("%s: nested out-of-fold mean per-aid AUC %.4f", kind, per_aid_auc(y, oof, aid).mean)
        out.append(res)
    return out


class _Design:
    """Feature-set matrices of each fold, built from the feature files in row chunks.

    The CTR statistics of every fold come from one :class:`CTRStats` (counts
    per fold, one pass over the token matrix): fold ``k``'s training rows get
    the statistics of the training folds other than their own, its held-out
    rows and the test rows those of all training folds. Only the training
    matrix of the current fold is held; held-out and test rows are built and
    predicted ``chunk_rows`` at a time, and the sparse and dense sets are read
    from disk by row ranges (:class:`pipeline.io.CSRRowReader`).
    """

    def __init__(
        self, features: Path, needed: set[str], y: np.ndarray, aid_idx: dict, folds: np.ndarray,
        categorical_crosses: bool = False, chunk_rows: int = 500_000,
    ) -> None:
        columns = json.loads((features / "columns.json").read_text())
        if columns["sparse"][0] != "aid_idx" or columns["dense"][0] != "aid_idx":
            raise LookalikeError(f"{features}: feature sets must start with aid_idx; re-run `make features`")
        self.n_raw = columns["sparse_raw"]
        dense_cat = [columns["dense"].index(c) for c in columns["categorical"]["dense"]]
        if not categorical_crosses:  # only aid_idx goes to LightGBM's categorical splits
            dense_cat = [0]
        self.categorical = {"raw": [0], "sparse": [0], "dense": dense_cat, "full": dense_cat}
        self.y, self.aid_idx, self.folds, self.chunk_rows = y, aid_idx, folds, chunk_rows
        self.sparse = {p: CSRRowReader(features / f"sparse_{p}.npz") for p in ("train", "test")}
        self.dense = {p: features / f"dense_{p}.npy" for p in ("train", "test")}
        self.stats: CTRStats | None = None
        if needed & {"dense", "full"}:
            self.stats = _count_ctr(features, aid_idx["train"], y, folds, chunk_rows)
        self.n_dense = len(columns["dense"])
        self.width = self.n_dense + (self.stats.n_out_ if self.stats is not None else 0)
        self._fit_cache: tuple | None = None

    def _chunks(self, part: str, fset: str, k: int, into: np.ndarray | None = None):  # noqa: ANN202
        """Design matrix per chunk of ``part``: "fit", "held" or "test" of fold ``k``.

        For the dense set, ``into`` (rows of ``part`` x columns) is filled in
        place and the chunks yielded are its row slices.
        """
        src = "test" if part == "test" else "train"
        n, at = self.sparse[src].shape[0], 0
        for start in range(0, n, self.chunk_rows):
            stop = min(start + self.chunk_rows, n)
            keep = np.arange(start, stop)
            if part != "test":
                in_k = self.folds[start:stop] == k
                keep = keep[in_k if part == "held" else ~in_k]
            if not len(keep):
                continue
            tokens = self.sparse[src].rows(start, stop, data=fset != "dense")
            inner = self.folds[keep] if part == "fit" else -1  # training rows: out of their own fold too
            if fset == "dense":
                out = np.empty((len(keep), self.width), np.float32) if into is None else into[at : at + len(keep)]
                out[:, : self.n_dense] = npy_rows(self.dense[src], start, stop)[keep - start]
                self.stats.transform(tokens, self.aid_idx[src][keep], k, inner, rows=keep - start,
                                     out=out[:, self.n_dense :])
                at += len(keep)
                yield out
                continue
            sparse = tokens[keep - start]
            dense = ctr = None
            if fset == "full":
                dense = npy_rows(self.dense[src], start, stop)[keep - start]
                ctr = self.stats.transform(tokens, self.aid_idx[src][keep], k, inner, rows=keep - start)
            yield design_matrix(fset, sparse, dense, ctr, self.n_raw)

    def fit_matrix(self, fset: str, k: int):  # noqa: ANN201
        """Design of the training rows of fold ``k`` (cached for the next model on the same fold)."""
        if self._fit_cache is not None and self._fit_cache[0] == (fset, k):
            return self._fit_cache[1]
        self._fit_cache = None
        if fset == "dense":  # filled in place: no second copy of the rows
            X = np.empty((int((self.folds != k).sum()), self.width), dtype=np.float32)
            for _ in self._chunks("fit", fset, k, into=X):
                pass
        else:
            X = sp.vstack(list(self._chunks("fit", fset, k)), format="csr")
        self._fit_cache = ((fset, k), X)
        return X

    def predict(self, est: BaseEstimator, fset: str, k: int, part: str) -> np.ndarray:
        """Probabilities of the held-out rows of fold ``k`` (``part="held"``) or of the test rows."""
        return np.concatenate([est.predict_proba(X)[:, 1] for X in self._chunks(part, fset, k)])


def choose_final(results: list[CVResult], wanted: str, y: np.ndarray, aid: np.ndarray) -> CVResult:
    """The result named ``wanted``, or with ``"auto"`` the best by out-of-fold score."""
    if wanted == "auto":
        scored = [(per_aid_auc(y, r.oof, aid).mean, i) for i, r in enumerate(results)]
        return results[max(scored)[1]]
    for r in results:
        if r.name == wanted:
            return r
    raise LookalikeError(f"[train] final = {wanted!r} is none of: auto, {', '.join(r.name for r in results)}")


def run_train(
    features: str | Path,
    interim: str | Path,
    folds_path: str | Path,
    build: str | Path,
    report: str | Path,
    settings: dict[str, Any],
    truth: str | Path | None = None,
) -> None:
    """The ``train`` stage: cross-validate every model, blend, stack, report.

    Writes ``oof/<model>.npy``, ``pred/<model>.npy`` and
    ``models/<model>.joblib`` (the fold models) under ``build``; the
    prediction with the best nested out-of-fold score goes to
    ``pred/final.npy``; the report ``cv.md`` with ``cv.json`` and a plot.
    """
    from ensemble.report import write_report

    lgb.register_logger(logging.getLogger("lightgbm"))
    features, build = Path(features), Path(build)
    train = load_pairs_file(Path(interim) / "pairs.npz", "train")
    test = load_pairs_file(Path(interim) / "pairs.npz", "test")
    folds = load_folds(folds_path, len(train["aid"]))
    y, aid = train["label"].astype(np.int8), train["aid"]
    names = list(settings["models"])
    if not names:
        raise LookalikeError("[train] models is empty")
    specs = dict(zip(names, (_parse_model(n)[1] for n in names)))
    allowed = ["auto", *names, *(COMBINERS if len(names) > 1 else ())]
    if settings["final"] not in allowed:
        raise LookalikeError(f"[train] final = {settings['final']!r} is none of: {', '.join(allowed)}")
    job = TrainJob(str(features), str(interim), str(folds_path), settings)
    results, ctr_blocks = train_models(job, scheduler=settings["scheduler"], keep_design=settings["refit"])
    combos = combine(results, y, aid, test["aid"], folds, settings["seed"]) if len(results) > 1 else []

    for sub in ("oof", "pred", "models"):
        (build / sub).mkdir(parents=True, exist_ok=True)
    for r in results + combos:
        for sub, arr in (("oof", r.oof), ("pred", r.test)):
            with atomic_path(build / sub / f"{r.name}.npy") as tmp, open(tmp, "wb") as fh:
                np.save(fh, arr)
        if r.estimators:
            save_artifact(
                r.estimators,
                build / "models" / f"{r.name}.joblib",
                {
                    "model": r.name,
                    "feature_set": specs[r.name],
                    "config": settings,
                    "config_hash": config_hash(settings),
                    "oof_mean_aid_auc": per_aid_auc(y, r.oof, aid).mean,
                    "fold_mean_aid_auc": r.fold_auc,
                    "features": str(features),
                },
            )
    final = choose_final(results + combos, settings["final"], y, aid)
    models = {r.name: (specs[r.name], r.estimators) for r in results}
    blocks, submitted = ctr_blocks[:-1], final.test
    if settings["refit"]:  # the submission and the scorer: the models refitted on all rows
        needed = [final.name] if final.estimators else list(names)
        refits = refit_models(job, needed, scheduler=settings["scheduler"])
        models = {n: (specs[n], [refits[n].estimator]) for n in needed}
        blocks = ctr_blocks[-1:]
        if final.estimators:
            submitted = refits[final.name].test
        else:
            submitted = final.combiner.predict(np.column_stack([refits[n].test for n in needed]), test["aid"])
        for n in needed:
            with atomic_path(build / "pred" / f"{n}.refit.npy") as tmp, open(tmp, "wb") as fh:
                np.save(fh, refits[n].test)
        final.extra["refit_seconds"] = round(sum(o.seconds for o in refits.values()), 1)
    else:
        _DESIGNS.clear()
    with atomic_path(build / "pred" / "final.npy") as tmp, open(tmp, "wb") as fh:
        np.save(fh, np.clip(submitted, 0.0, 1.0))
    logger.info("submitting %s%s", final.name, " (refitted on all rows)" if settings["refit"] else "")
    scorer = Scorer(
        featurizer=load_artifact(features / "featurizer.joblib"),
        ctr_blocks=blocks,
        models=models,
        final=final.name,
        combiner=final.combiner,
    )
    save_artifact(
        scorer, build / "models" / "scorer.joblib",
        {
            "model": "scorer",
            "final": final.name,
            "refit_on_all_rows": settings["refit"],
            "config": settings,
            "config_hash": config_hash(settings),
            "oof_mean_aid_auc": per_aid_auc(y, final.oof, aid).mean,
            "sparse_columns": len(scorer.featurizer.sparse_names_),
            "dense_columns": len(scorer.featurizer.dense_names_),
            "user_vocabulary": {f.name: f.size for f in scorer.featurizer.fields_},
            "features": str(features),
        },
    )
    write_report(report, results + combos, final.name, y, aid, test, truth,
                 submitted=submitted if settings["refit"] else None)
