"""Importance of the inputs of fitted models: split gain, and the score lost when a group is permuted.

Pure functions. Gain needs no data (the models' own split gains); the
permutation importance (:func:`permuted_columns`) gives the rows a model is
then scored on. The caller names the columns and their groups.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator

from ensemble._bagging import BaseLGBMBagging
from ensemble._peraid import PerAidLGBM

__all__ = ["gain_importance", "group_shares", "has_gain_importance", "permuted_columns"]


def has_gain_importance(estimator: BaseEstimator) -> bool:
    """Whether :func:`gain_importance` applies (a model of trees: bagged LightGBM or per-aid)."""
    return isinstance(estimator, PerAidLGBM | BaseLGBMBagging)


def gain_importance(estimator: BaseEstimator) -> np.ndarray:
    """Total split gain per input column of a fitted bagged or per-aid model.

    Sums every bag's trees up to its best iteration (the trees that predict);
    a per-aid model sums its global model and every aid's model. Columns a
    model's column selection left out have no gain.

    Returns
    -------
    ndarray of float64, shape (n_features_in_,)
    """
    if isinstance(estimator, PerAidLGBM):
        parts = [e for e in (estimator.global_, *estimator.models_.values()) if e is not None]
        return np.sum([gain_importance(e) for e in parts], axis=0) if parts else np.zeros(estimator.n_features_in_)
    if isinstance(estimator, BaseLGBMBagging):
        total = np.zeros(estimator.n_features_in_)
        columns = getattr(estimator, "columns_", np.arange(estimator.n_features_in_))  # the selected columns
        for booster in estimator.estimators_:
            total[columns] += booster.feature_importance("gain", iteration=booster.best_iteration or None)
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


def permuted_columns(
    X: np.ndarray | sp.csr_matrix, groups: Mapping[str, Sequence[int]], rng: np.random.Generator
) -> Iterator[tuple[str, np.ndarray | sp.csr_matrix]]:
    """``X`` with each group's columns permuted across the rows, one group at a time.

    Yields ``(group, X')`` in the order of ``groups``: ``X'`` is ``X`` whose
    columns ``groups[group]`` hold the values of a random permutation of the
    rows (one permutation for the whole group, so the group's columns stay
    consistent with each other and only their link to the rest of the row
    and to the label is broken), every other column unchanged. Works for a
    dense array and for CSR (``X'`` is a new matrix of the same kind; ``X``
    is not modified).
    """
    n_cols = X.shape[1]
    for name, cols in groups.items():
        perm = rng.permutation(X.shape[0])
        mask = np.zeros(n_cols, dtype=bool)
        mask[np.asarray(cols, dtype=np.int64)] = True
        if sp.issparse(X):
            X = sp.csr_matrix(X)
            keep = sp.diags((~mask).astype(X.dtype))
            move = sp.diags(mask.astype(X.dtype))
            yield name, (X @ keep + X[perm] @ move).tocsr()
        else:
            yield name, np.where(mask, X[perm], X)
