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

import lightgbm as lgb
import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator, clone
from tqdm.auto import tqdm

from ensemble._bagging import BalanceCascadeLGBM, EasyEnsembleLGBM, ReferenceLGBM
from ensemble._blend import make_combiner, nested_oof
from ensemble.scorer import Scorer, design_matrix
from ensemble.metrics import per_aid_auc
from features.ctr import CTRBlock, CTRSpec
from features.folds import load_folds
from pipeline.errors import LookalikeError
from pipeline.artifact import load_artifact, save_artifact
from pipeline.config import config_hash
from pipeline.io import atomic_path
from pipeline.load import load_pairs_file

__all__ = ["CVResult", "FEATURE_SETS", "KINDS", "make_estimator", "run_train", "train_models"]

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
    combiner: Any = None


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
        group_column=None,
        device=device,
        random_state=settings["seed"],
    )


def train_models(
    estimators: dict[str, BaseEstimator],
    design,  # noqa: ANN001  (feature set, fit rows, held rows) -> (X_fit, X_held, X_test)
    feature_set: dict[str, str],
    y: np.ndarray,
    aid: np.ndarray,
    folds: np.ndarray,
) -> list[CVResult]:
    """Cross-validate several models, fold by fold (each fold's design is built once).

    ``design(fset, fit, held)`` returns the matrices of a feature set for the
    fold's training rows, held-out rows and the test rows; it may fit
    label-dependent features on the training rows only.
    """
    n_folds = int(folds.max()) + 1
    results = {name: CVResult(name, np.zeros(len(y)), None, 0.0) for name in estimators}  # type: ignore[arg-type]
    steps = tqdm(total=n_folds * len(estimators), desc="train", unit="model", disable=None)
    for k in range(n_folds):
        fit, held = np.flatnonzero(folds != k), np.flatnonzero(folds == k)
        cache: dict[str, tuple] = {}
        for name, estimator in estimators.items():
            fset = feature_set[name]
            if fset not in cache:
                cache[fset] = design(fset, fit, held)
            X_fit, X_held, X_test = cache[fset]
            r = results[name]
            t0 = time.perf_counter()
            est = clone(estimator).fit(X_fit, y[fit])
            r.oof[held] = est.predict_proba(X_held)[:, 1]
            pred = est.predict_proba(X_test)[:, 1] / n_folds
            r.test = pred if r.test is None else r.test + pred
            r.seconds += time.perf_counter() - t0
            r.fold_auc.append(per_aid_auc(y[held], r.oof[held], aid[held]).mean)
            r.estimators.append(est)
            logger.info("%s fold %d: mean per-aid AUC %.4f", name, k, r.fold_auc[-1])
            steps.update()
    steps.close()
    return list(results.values())


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
        combiner = make_combiner(kind, seed).fit(P, y, aid)
        test = combiner.predict(T, test_aid)
        if kind == "stack":
            extra = {"coef": combiner.meta_.coef_.ravel().round(4).tolist()}
        else:
            extra = {"weights": dict(zip([r.name for r in results], combiner.weights_.round(4).tolist()))}
        res = CVResult(
            kind, oof, test, time.perf_counter() - t0, _fold_scores(oof, y, aid, folds), extra=extra,
            combiner=combiner,
        )
        logger.info("%s: nested out-of-fold mean per-aid AUC %.4f", kind, per_aid_auc(y, oof, aid).mean)
        out.append(res)
    return out


class _Design:
    """Feature-set matrices per fold; the CTR block is fitted on the fold's training rows."""

    def __init__(
        self, features: Path, needed: set[str], y: np.ndarray, aid_idx: dict, folds: np.ndarray,
        categorical_crosses: bool = False,
    ) -> None:
        columns = json.loads((features / "columns.json").read_text())
        if columns["sparse"][0] != "aid_idx" or columns["dense"][0] != "aid_idx":
            raise LookalikeError(f"{features}: feature sets must start with aid_idx; re-run `make features`")
        self.n_raw = columns["sparse_raw"]
        self.ctr = CTRSpec.from_json(columns["ctr"])
        dense_cat = [columns["dense"].index(c) for c in columns["categorical"]["dense"]]
        if not categorical_crosses:  # only aid_idx goes to LightGBM's categorical splits
            dense_cat = [0]
        self.categorical = {"raw": [0], "sparse": [0], "dense": dense_cat, "full": dense_cat}
        self.y, self.aid_idx, self.folds = y, aid_idx, folds
        self.sparse = {p: sp.load_npz(features / f"sparse_{p}.npz").tocsr() for p in ("train", "test")}
        self.dense = None
        if needed & {"dense", "full"}:
            self.dense = {p: np.load(features / f"dense_{p}.npy") for p in ("train", "test")}
        self._ctr_fold: tuple | None = None
        self.ctr_blocks: list[CTRBlock] = []  # the fitted CTR block of each fold, in fold order

    def _ctr_block(self, fit: np.ndarray, held: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        key = (len(fit), int(fit[:1].sum()), int(held[:1].sum()))
        if self._ctr_fold is None or self._ctr_fold[0] != key:
            tr, aid = self.sparse["train"], self.aid_idx["train"]
            block = CTRBlock(self.ctr)
            f_fit = block.fit_transform(tr[fit], aid[fit], self.y[fit], self.folds[fit])
            f_held = block.transform(tr[held], aid[held])
            f_test = block.transform(self.sparse["test"], self.aid_idx["test"])
            self.ctr_blocks.append(block)
            self._ctr_fold = (key, f_fit, f_held, f_test)
        return self._ctr_fold[1:]

    def __call__(self, fset: str, fit: np.ndarray, held: np.ndarray):  # noqa: ANN204
        tr, te = self.sparse["train"], self.sparse["test"]
        dense = self.dense or {"train": None, "test": None}
        ctr: tuple = (None, None, None)
        if fset in ("dense", "full"):
            ctr = self._ctr_block(fit, held)
        return (
            design_matrix(fset, tr[fit], None if dense["train"] is None else dense["train"][fit], ctr[0], self.n_raw),
            design_matrix(fset, tr[held], None if dense["train"] is None else dense["train"][held], ctr[1], self.n_raw),
            design_matrix(fset, te, dense["test"], ctr[2], self.n_raw),
        )


def _choose_final(results: list[CVResult], wanted: str, y: np.ndarray, aid: np.ndarray) -> CVResult:
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
    design = _Design(
        features, set(specs.values()), y, {"train": train["aid_idx"], "test": test["aid_idx"]}, folds,
        categorical_crosses=settings["categorical_crosses"],
    )
    estimators = {n: make_estimator(n, settings, design.categorical[specs[n]]) for n in names}
    results = train_models(estimators, design, specs, y, aid, folds)
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
    final = _choose_final(results + combos, settings["final"], y, aid)
    with atomic_path(build / "pred" / "final.npy") as tmp, open(tmp, "wb") as fh:
        np.save(fh, np.clip(final.test, 0.0, 1.0))
    logger.info("submitting %s", final.name)
    scorer = Scorer(
        featurizer=load_artifact(features / "featurizer.joblib"),
        ctr_blocks=design.ctr_blocks,
        models={r.name: (specs[r.name], r.estimators) for r in results},
        final=final.name,
        combiner=final.combiner,
    )
    save_artifact(
        scorer, build / "models" / "scorer.joblib",
        {
            "model": "scorer",
            "final": final.name,
            "config": settings,
            "config_hash": config_hash(settings),
            "oof_mean_aid_auc": per_aid_auc(y, final.oof, aid).mean,
            "sparse_columns": len(scorer.featurizer.sparse_names_),
            "dense_columns": len(scorer.featurizer.dense_names_),
            "user_vocabulary": {f.name: f.size for f in scorer.featurizer.fields_},
            "features": str(features),
        },
    )
    write_report(report, results + combos, final.name, y, aid, test, truth)
