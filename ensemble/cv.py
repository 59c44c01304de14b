"""Cross-validated training on the project's fold file.

Every model is trained once per fold on the other folds; its out-of-fold
predictions (train) and the average of its fold models' predictions (test)
are saved as files, which are all that blending and reports read.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import joblib
import lightgbm as lgb
import numpy as np
import scipy.sparse as sp
from tqdm.auto import tqdm

from ensemble.metrics import per_aid_auc
from features.folds import load_folds
from pipeline.io import atomic_path, atomic_paths
from pipeline.load import load_pairs_file

__all__ = ["CVResult", "lgb_params", "run_train", "train_cv"]

logger = logging.getLogger(__name__)


def _route_lightgbm_logs() -> None:
    lgb.register_logger(logging.getLogger("lightgbm"))


def lgb_params(settings: dict[str, Any]) -> dict[str, Any]:
    """LightGBM parameters from the ``[train]`` config section."""
    return {
        "objective": "binary",
        "learning_rate": settings["learning_rate"],
        "num_leaves": settings["num_leaves"],
        "min_child_samples": settings["min_child_samples"],
        "feature_fraction": settings["feature_fraction"],
        "bagging_fraction": settings["bagging_fraction"],
        "bagging_freq": settings["bagging_freq"],
        "lambda_l2": settings["lambda_l2"],
        "seed": settings["seed"],
        "deterministic": True,
        "num_threads": os.cpu_count() or 1,
        "feature_pre_filter": False,  # with min_data_in_leaf it silently drops rare columns
        "verbose": -1,
    }


@dataclass
class CVResult:
    """What one cross-validated model produced."""

    name: str
    oof: np.ndarray
    test: np.ndarray
    seconds: float
    fold_auc: list[float] = field(default_factory=list)
    boosters: list[lgb.Booster] = field(default_factory=list)


def _early_stopping_split(
    idx: np.ndarray, y: np.ndarray, share: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Hold out ``share`` of the training rows (per class) for early stopping."""
    hold = np.zeros(len(idx), dtype=bool)
    for cls in (0, 1):
        pos = np.flatnonzero(y[idx] == cls)
        k = int(round(share * len(pos)))
        hold[rng.choice(pos, size=k, replace=False)] = True
    return idx[~hold], idx[hold]


def train_cv(
    name: str,
    X: sp.csr_matrix | np.ndarray,
    y: np.ndarray,
    aid: np.ndarray,
    X_test: sp.csr_matrix | np.ndarray,
    folds: np.ndarray,
    settings: dict[str, Any],
    categorical: list[int] | None = None,
) -> CVResult:
    """Train one LightGBM per fold; return out-of-fold and test predictions.

    Early stopping uses a slice of each fold's training rows, never the
    held-out fold, so the out-of-fold score stays honest.
    """
    _route_lightgbm_logs()
    params = lgb_params(settings)
    n_folds = int(folds.max()) + 1
    oof = np.zeros(len(y))
    test = np.zeros(X_test.shape[0])
    rng = np.random.default_rng(settings["seed"])
    result = CVResult(name=name, oof=oof, test=test, seconds=0.0)
    t0 = time.perf_counter()
    for k in tqdm(range(n_folds), desc=name, unit="fold", disable=None):
        fit_idx, stop_idx = _early_stopping_split(np.flatnonzero(folds != k), y, 0.1, rng)
        held = np.flatnonzero(folds == k)
        dtrain = lgb.Dataset(X[fit_idx], y[fit_idx], categorical_feature=categorical or "auto", params=params)
        dstop = lgb.Dataset(X[stop_idx], y[stop_idx], reference=dtrain)
        booster = lgb.train(
            params,
            dtrain,
            num_boost_round=settings["num_boost_round"],
            valid_sets=[dstop],
            callbacks=[lgb.early_stopping(settings["early_stopping_rounds"], verbose=False)],
        )
        oof[held] = booster.predict(X[held], num_iteration=booster.best_iteration)
        test += booster.predict(X_test, num_iteration=booster.best_iteration) / n_folds
        fold = per_aid_auc(y[held], oof[held], aid[held])
        result.fold_auc.append(fold.mean)
        result.boosters.append(booster)
        logger.info("%s fold %d: mean per-aid AUC %.4f (%d trees)", name, k, fold.mean, booster.best_iteration)
    result.seconds = time.perf_counter() - t0
    return result


def run_train(
    features: str | os.PathLike[str],
    interim: str | os.PathLike[str],
    folds_path: str | os.PathLike[str],
    build: str | os.PathLike[str],
    report: str | os.PathLike[str],
    settings: dict[str, Any],
    truth: str | os.PathLike[str] | None = None,
) -> None:
    """The ``train`` stage: cross-validate the models, save predictions and the report.

    Writes ``oof/<model>.npy``, ``pred/<model>.npy``, ``models/<model>.joblib``
    under ``build``, ``pred/final.npy`` (the submitted prediction), and the
    report ``cv.md`` with ``cv.json`` beside it.
    """
    from ensemble.report import write_report

    features, build = Path(features), Path(build)
    train = load_pairs_file(Path(interim) / "pairs.npz", "train")
    test = load_pairs_file(Path(interim) / "pairs.npz", "test")
    folds = load_folds(folds_path, len(train["aid"]))
    columns = json.loads((features / "columns.json").read_text())
    y, aid = train["label"].astype(np.int8), train["aid"]

    X = sp.load_npz(features / "sparse_train.npz").tocsr()
    X_test = sp.load_npz(features / "sparse_test.npz").tocsr()
    cat = [columns["sparse"].index(c) for c in columns["categorical"]["sparse"]]
    results = [train_cv("reference_sparse", X, y, aid, X_test, folds, settings, cat)]

    final = results[0]
    for sub in ("oof", "pred", "models"):
        (build / sub).mkdir(parents=True, exist_ok=True)
    for r in results:
        for sub, arr in (("oof", r.oof), ("pred", r.test)):
            with atomic_path(build / sub / f"{r.name}.npy") as tmp, open(tmp, "wb") as fh:
                np.save(fh, arr)
        with atomic_path(build / "models" / f"{r.name}.joblib") as tmp:
            joblib.dump([b.model_to_string() for b in r.boosters], tmp)
    with atomic_paths([build / "pred" / "final.npy"]) as (tmp,), open(tmp, "wb") as fh:
        np.save(fh, final.test)
    write_report(report, results, final.name, y, aid, test, truth)
