"""Blending and stacking of out-of-fold predictions, scored with nested folds.

They read only prediction matrices (one column per model: out-of-fold on
train, fold-averaged on test), never model internals.
"""

from __future__ import annotations

import logging

import numpy as np
from scipy.optimize import minimize
from scipy.special import logit, softmax
from scipy.stats import rankdata
from sklearn.linear_model import LogisticRegression

from ensemble.metrics import aid_groups, per_aid_auc

__all__ = ["blend", "fit_blend_weights", "nested_oof", "rank_within_aid", "stack_features", "fit_stacker"]

logger = logging.getLogger(__name__)


def rank_within_aid(score: np.ndarray, aid: np.ndarray) -> np.ndarray:
    """Rank of each score inside its aid, scaled to (0, 1] (ties share the average)."""
    out = np.empty(len(score))
    for _, idx in aid_groups(aid):
        out[idx] = rankdata(score[idx]) / len(idx)
    return out


def _transform(P: np.ndarray, aid: np.ndarray, method: str) -> np.ndarray:
    if method == "rank":
        return np.column_stack([rank_within_aid(P[:, j], aid) for j in range(P.shape[1])])
    if method == "score":
        return P
    raise ValueError(f"unknown blend method {method!r}")


def fit_blend_weights(
    P: np.ndarray, y: np.ndarray, aid: np.ndarray, method: str = "rank", max_evals: int = 120
) -> np.ndarray:
    """Non-negative weights (summing to 1) that maximise the mean per-aid AUC of ``P @ w``.

    ``method="rank"`` averages ranks within each aid, ``"score"`` the scores.
    Nelder-Mead over softmax parameters, from equal weights.
    """
    Z = _transform(P, aid, method)
    m = P.shape[1]
    if m == 1:
        return np.ones(1)

    def loss(theta: np.ndarray) -> float:
        return -per_aid_auc(y, Z @ softmax(theta), aid).mean

    res = minimize(loss, np.zeros(m), method="Nelder-Mead", options={"maxfev": max_evals, "xatol": 1e-3})
    return softmax(res.x)


def blend(P: np.ndarray, aid: np.ndarray, weights: np.ndarray, method: str = "rank") -> np.ndarray:
    """Weighted average of the (within-aid ranked) predictions."""
    return _transform(P, aid, method) @ weights


def stack_features(P: np.ndarray, aid: np.ndarray) -> np.ndarray:
    """Meta-features: each model's logit and its rank within the aid."""
    clipped = np.clip(P, 1e-6, 1 - 1e-6)
    return np.column_stack([logit(clipped), _transform(P, aid, "rank")])


def fit_stacker(P: np.ndarray, y: np.ndarray, aid: np.ndarray, seed: int = 0) -> LogisticRegression:
    """Logistic regression on :func:`stack_features`."""
    return LogisticRegression(C=1.0, max_iter=1000, random_state=seed).fit(stack_features(P, aid), y)


def nested_oof(
    P: np.ndarray, y: np.ndarray, aid: np.ndarray, folds: np.ndarray, kind: str, seed: int = 0
) -> np.ndarray:
    """Honest out-of-fold predictions of a blend or stack.

    For each fold, the weights (``kind`` = ``"blend_rank"``, ``"blend_score"``)
    or the meta-learner (``"stack"``) are fitted on the other folds' out-of-fold
    predictions only, then applied to the fold.
    """
    out = np.empty(len(y))
    for k in np.unique(folds):
        fit, held = folds != k, folds == k
        if kind == "stack":
            meta = fit_stacker(P[fit], y[fit], aid[fit], seed)
            out[held] = meta.predict_proba(stack_features(P[held], aid[held]))[:, 1]
        else:
            method = kind.removeprefix("blend_")
            w = fit_blend_weights(P[fit], y[fit], aid[fit], method)
            out[held] = blend(P[held], aid[held], w, method)
    return out
