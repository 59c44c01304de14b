"""The competition metric: mean over aids of the per-aid ROC AUC."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.stats import rankdata

__all__ = ["AidAUC", "aid_groups", "fold_scores", "per_aid_auc"]


@dataclass
class AidAUC:
    """Per-aid AUCs and their summary.

    Attributes
    ----------
    mean, std : float
        Mean and standard deviation over the scored aids.
    per_aid : dict
        aid -> AUC, for aids with both classes.
    skipped : list
        aids whose rows are all one class (no AUC), counted in reports.
    """

    mean: float
    std: float
    per_aid: dict[int, float] = field(default_factory=dict)
    skipped: list[int] = field(default_factory=list)


def _auc(y: np.ndarray, s: np.ndarray) -> float:
    ranks = rankdata(s)  # ties get the average rank
    n_pos = int(y.sum())
    n_neg = len(y) - n_pos
    return float((ranks[y == 1].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def aid_groups(aid: np.ndarray):  # noqa: ANN201
    """Yield ``(aid, row indices)`` for every aid, in increasing aid order."""
    aid = np.asarray(aid)
    order = np.argsort(aid, kind="stable")
    aid_sorted = aid[order]
    bounds = np.flatnonzero(np.r_[True, aid_sorted[1:] != aid_sorted[:-1], True])
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        yield aid_sorted[lo], order[lo:hi]


def per_aid_auc(y: np.ndarray, score: np.ndarray, aid: np.ndarray) -> AidAUC:
    """Mean over aids of the ROC AUC inside each aid.

    Parameters
    ----------
    y : array of {0, 1}
        Labels.
    score : array of float
        Predictions; only their order within an aid matters.
    aid : array of int
        The aid of each row.
    """
    y = np.asarray(y)
    if y.size and not np.isin(y, (0, 1)).all():  # e.g. the competition's -1/1: it would rank garbage
        raise ValueError(f"labels must be 0/1, got values {np.unique(y)[:5].tolist()}")
    y = y.astype(np.int8)
    score = np.asarray(score, dtype=np.float64)
    if not (len(y) == len(score) == len(aid)):
        raise ValueError(f"{len(y)} labels, {len(score)} scores and {len(aid)} aids")
    per, skipped = {}, []
    for a, idx in aid_groups(aid):
        a = int(a)
        yy = y[idx]
        if yy.min() == yy.max():
            skipped.append(a)
            continue
        per[a] = _auc(yy, score[idx])
    values = np.array(list(per.values()))
    mean = float(values.mean()) if len(values) else float("nan")
    std = float(values.std()) if len(values) else float("nan")
    return AidAUC(mean=mean, std=std, per_aid=per, skipped=skipped)


def fold_scores(score: np.ndarray, y: np.ndarray, aid: np.ndarray, folds: np.ndarray) -> list[float]:
    """Mean per-aid AUC of ``score`` inside each fold, in fold order."""
    return [per_aid_auc(y[folds == k], score[folds == k], aid[folds == k]).mean for k in np.unique(folds)]
