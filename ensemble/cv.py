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
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import joblib
import lightgbm as lgb
import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator, clone
from tqdm.auto import tqdm

from ensemble._bagging import BalanceCascadeLGBM, EasyEnsembleLGBM, ReferenceLGBM
from ensemble._blend import blend, fit_blend_weights, fit_stacker, nested_oof, stack_features
from ensemble.metrics import per_aid_auc
from features.folds import load_folds
from pipeline.errors import LookalikeError
from pipeline.io import atomic_path
from pipeline.load import load_pairs_file

__all__ = ["CVResult", "FEATURE_SETS", "KINDS", "make_estimator", "run_train", "train_cv"]

logger = logging.getLogger(__name__)

KINDS = {"reference": ReferenceLGBM, "easy": EasyEnsembleLGBM, "cascade": BalanceCascadeLGBM}
FEATURE_SETS = ("raw", "sparse", "dense", "full")
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


def _parse_model(name: str) -> tuple[str, str]:
    kind, _, fset = name.partition("_")
    if kind not in KINDS or fset not in FEATURE_SETS:
        raise LookalikeError(
            f"unknown model {name!r}: use <kind>_<set> with kind in {sorted(KINDS)} "
            f"and set in {list(FEATURE_SETS)}"
        )
    return kind, fset


def make_estimator(name: str, settings: dict[str, Any], categorical: list[int]) -> BaseEstimator:
    """The unfitted classifier of model ``name`` with the ``[train]`` settings."""
    kind, fset = _parse_model(name)
    device = settings["device"] if fset == "dense" else "cpu"  # sparse histograms run on the CPU
    return KINDS[kind](
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
        device=device,
        random_state=settings["seed"],
    )


def train_cv(
    name: str,
    estimator: BaseEstimator,
    X: sp.csr_matrix | np.ndarray,
    y: np.ndarray,
    aid: np.ndarray,
    X_test: sp.csr_matrix | np.ndarray,
    folds: np.ndarray,
) -> CVResult:
    """Fit a clone of ``estimator`` per fold; out-of-fold and fold-averaged test predictions."""
    n_folds = int(folds.max()) + 1
    oof = np.zeros(len(y))
    test = np.zeros(X_test.shape[0])
    result = CVResult(name=name, oof=oof, test=test, seconds=0.0)
    t0 = time.perf_counter()
    for k in tqdm(range(n_folds), desc=name, unit="fold", disable=None):
        fit, held = np.flatnonzero(folds != k), np.flatnonzero(folds == k)
        est = clone(estimator).fit(X[fit], y[fit])
        oof[held] = est.predict_proba(X[held])[:, 1]
        test += est.predict_proba(X_test)[:, 1] / n_folds
        result.fold_auc.append(per_aid_auc(y[held], oof[held], aid[held]).mean)
        result.estimators.append(est)
        logger.info("%s fold %d: mean per-aid AUC %.4f", name, k, result.fold_auc[-1])
    result.seconds = time.perf_counter() - t0
    return result


def _fold_scores(pred: np.ndarray, y: np.ndarray, aid: np.ndarray, folds: np.ndarray) -> list[float]:
    return [per_aid_auc(y[folds == k], pred[folds == k], aid[folds == k]).mean for k in np.unique(folds)]


def combine(
    results: list[CVResult], y: np.ndarray, aid: np.ndarray, test_aid: np.ndarray, folds: np.ndarray, seed: int
) -> list[CVResult]:
    """Blends and the stack of the models' predictions, each scored with nested folds."""
    P = np.column_stack([r.oof for r in results])
    T = np.column_stack([r.test for r in results])
    out = []
    for kind in COMBINERS:
        t0 = time.perf_counter()
        oof = nested_oof(P, y, aid, folds, kind, seed)
        if kind == "stack":
            meta = fit_stacker(P, y, aid, seed)
            test = meta.predict_proba(stack_features(T, test_aid))[:, 1]
            extra = {"coef": meta.coef_.ravel().round(4).tolist()}
        else:
            method = kind.removeprefix("blend_")
            w = fit_blend_weights(P, y, aid, method)
            test = blend(T, test_aid, w, method)
            extra = {"weights": dict(zip([r.name for r in results], w.round(4).tolist()))}
        res = CVResult(kind, oof, test, time.perf_counter() - t0, _fold_scores(oof, y, aid, folds), extra=extra)
        logger.info("%s: nested out-of-fold mean per-aid AUC %.4f", kind, per_aid_auc(y, oof, aid).mean)
        out.append(res)
    return out


def _load_sets(features: Path, needed: set[str]) -> tuple[dict, dict, dict]:
    columns = json.loads((features / "columns.json").read_text())
    n_raw = columns["sparse_raw"]
    dense_cat = [columns["dense"].index(c) for c in columns["categorical"]["dense"]]
    sets_tr, sets_te, cats = {}, {}, {}
    sparse = dense = None
    if needed & {"raw", "sparse", "full"}:
        sparse = {p: sp.load_npz(features / f"sparse_{p}.npz").tocsr() for p in ("train", "test")}
    if needed & {"dense", "full"}:
        dense = {p: np.load(features / f"dense_{p}.npy") for p in ("train", "test")}
    for fset in needed:
        for part, store in (("train", sets_tr), ("test", sets_te)):
            if fset == "raw":
                store[fset] = sparse[part][:, :n_raw]
            elif fset == "sparse":
                store[fset] = sparse[part]
            elif fset == "dense":
                store[fset] = dense[part]
            else:
                store[fset] = sp.hstack([sp.csr_matrix(dense[part]), sparse[part]], format="csr")
        cats[fset] = [0] if fset in ("raw", "sparse") else dense_cat
    return sets_tr, sets_te, cats


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
    specs = [_parse_model(n) for n in names]
    sets_tr, sets_te, cats = _load_sets(features, {fset for _, fset in specs})

    results = []
    for name, (_, fset) in zip(names, specs):
        est = make_estimator(name, settings, cats[fset])
        results.append(train_cv(name, est, sets_tr[fset], y, aid, sets_te[fset], folds))
    combos = combine(results, y, aid, test["aid"], folds, settings["seed"]) if len(results) > 1 else []

    for sub in ("oof", "pred", "models"):
        (build / sub).mkdir(parents=True, exist_ok=True)
    for r in results + combos:
        for sub, arr in (("oof", r.oof), ("pred", r.test)):
            with atomic_path(build / sub / f"{r.name}.npy") as tmp, open(tmp, "wb") as fh:
                np.save(fh, arr)
        if r.estimators:
            with atomic_path(build / "models" / f"{r.name}.joblib") as tmp:
                joblib.dump(r.estimators, tmp)
    scored = [(per_aid_auc(y, r.oof, aid).mean, i) for i, r in enumerate(results + combos)]
    final = (results + combos)[max(scored)[1]]
    with atomic_path(build / "pred" / "final.npy") as tmp, open(tmp, "wb") as fh:
        np.save(fh, np.clip(final.test, 0.0, 1.0))
    logger.info("submitting %s", final.name)
    write_report(report, results + combos, final.name, y, aid, test, truth)
