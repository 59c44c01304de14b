"""Gain importance of fitted LightGBM models, per column and per group of columns.

Pure functions: the models' own split gains (no data needed); the caller
names the columns and their groups.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
from sklearn.base import BaseEstimator

from ensemble._bagging import BaseLGBMBagging
from ensemble._peraid import PerAidLGBM

__all__ = ["gain_importance", "group_shares"]


def gain_importance(estimator: BaseEstimator) -> np.ndarray:
    """Total split gain per input column of a fitted bagged or per-aid model.

    Sums every bag's trees up to its best iteration (the trees that predict);
    a per-aid model sums its global model and every aid's model.

    Returns
    -------
    ndarray of float64, shape (n_features_in_,)
    """
    if isinstance(estimator, PerAidLGBM):
        parts = [e for e in (estimator.global_, *estimator.models_.values()) if e is not None]
        return np.sum([gain_importance(e) for e in parts], axis=0) if parts else np.zeros(estimator.n_features_in_)
    if isinstance(estimator, BaseLGBMBagging):
        total = np.zeros(estimator.n_features_in_)
        for booster in estimator.estimators_:
            total += booster.feature_importance("gain", iteration=booster.best_iteration or None)
        return total
    raise TypeError(f"no gain importance for {type(estimator).__name__}")


def group_shares(gains: Iterable[np.ndarray], groups: Sequence[str]) -> dict[str, float]:
    """Share of the summed ``gains`` (e.g. one array per fold model) held by each group, largest first.

    ``groups[j]`` names column ``j``'s group; groups without gain are left out.
    """
    total = np.sum(list(gains), axis=0)
    if len(total) != len(groups):
        raise ValueError(f"{len(total)} columns of gain for {len(groups)} group names")
    names, inverse = np.unique(np.asarray(groups, dtype=object), return_inverse=True)
    by_group = np.bincount(inverse, weights=total, minlength=len(names))
    whole = by_group.sum()
    order = np.argsort(-by_group, kind="stable")
    return {str(names[i]): float(by_group[i] / whole) for i in order if by_group[i] > 0}
