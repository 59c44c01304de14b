"""The slow, obviously-correct reference of the conversion-rate statistics (tests and benchmarks only).

:class:`SparseTargetEncoder` encodes one ``group x field`` block of crossed
token columns with plain NumPy / SciPy operations. The pipeline never uses
it: :class:`features.CTREncoder` computes every block from one set of per-fold
counts in compiled passes, and the tests check the two agree on every fold
left out. ``bench/design.py`` times the previous per-fold code path with it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp
from scipy.special import logit
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.model_selection import KFold
from sklearn.utils.validation import check_is_fitted, validate_data

from features.ctr import CTR_AGGREGATIONS

__all__ = ["SparseTargetEncoder", "row_aggregates"]


def row_aggregates(
    X: sp.csr_matrix, values: np.ndarray, known: np.ndarray, aggregations: Sequence[str],
    log_odds: np.ndarray | None = None,
) -> np.ndarray:
    """Per row, aggregate ``values`` over the row's known non-zero columns.

    ``mean`` and ``max`` are NaN for a row without known columns; ``count`` is
    the number of its known columns; ``lor`` is the sum of ``log_odds`` over
    them (0 for none).
    """
    X = sp.csr_matrix(X)
    n = X.shape[0]
    row_of = np.repeat(np.arange(n), np.diff(X.indptr))
    is_known = known[X.indices] & (X.data != 0)
    v = values[X.indices]
    count = np.bincount(row_of[is_known], minlength=n).astype(np.float64)
    out = np.empty((n, len(aggregations)), dtype=np.float64)
    for k, agg in enumerate(aggregations):
        if agg == "count":
            out[:, k] = count
        elif agg == "mean":
            total = np.bincount(row_of[is_known], weights=v[is_known], minlength=n)
            with np.errstate(invalid="ignore", divide="ignore"):
                out[:, k] = np.where(count > 0, total / np.maximum(count, 1), np.nan)
        elif agg == "lor":
            if log_odds is None:
                raise ValueError("the 'lor' aggregation needs log_odds")
            out[:, k] = np.bincount(row_of[is_known], weights=log_odds[X.indices][is_known], minlength=n)
        elif agg == "max":
            filled = np.where(is_known, v, -np.inf)
            res = np.full(n, -np.inf)
            nonempty = np.flatnonzero(np.diff(X.indptr) > 0)
            if len(nonempty):
                res[nonempty] = np.maximum.reduceat(filled, X.indptr[nonempty])
            out[:, k] = np.where(np.isfinite(res), res, np.nan)
        else:
            raise ValueError(f"unknown aggregation {agg!r}; choose from {CTR_AGGREGATIONS}")
    return out


class SparseTargetEncoder(TransformerMixin, BaseEstimator):
    """Smoothed conversion rate of every sparse column, aggregated per row.

    (Any numeric target works: the statistic is a smoothed target mean, which
    for 0/1 labels is the conversion rate.)

    Each column ``j`` (a token, usually crossed with a group such as the aid:
    ``aid x kw1=664359``) gets ``(pos_j + m * prior_g) / (n_j + m)``, where
    ``n_j`` and ``pos_j`` count the fitting rows that hold it and their
    positives, and ``prior_g`` is the rate of the column's group (its aid):
    rare tokens shrink toward their aid's own rate. A row's output is the
    mean and max of its known columns' rates and the count of its known
    columns, so single- and multi-valued fields share one code path.

    Like scikit-learn's ``TargetEncoder``, ``fit_transform`` is cross-fitted:
    a row's value comes from the other folds only, so the statistic never
    sees its own label. ``transform`` uses the statistics of all fitting rows.

    Parameters
    ----------
    smoothing : float, default=20.0
        Pseudo-count ``m`` of the prior.
    aggregations : sequence of {"mean", "max", "count", "lor"}, default=("mean", "max", "count", "lor")
        Output columns, in this order.
    folds : array-like of int, default=None
        Fold of each fitting row (the project's fold file). ``None`` uses a
        shuffled ``KFold(n_splits)`` seeded by ``random_state``.
    n_splits : int, default=5
        Folds when ``folds`` is None.
    random_state : int, default=0
        Seed of that ``KFold``.
    column_groups : array-like of int, default=None
        Group of each column, for its prior. ``None``: one global prior.

    Attributes
    ----------
    encoding_ : ndarray of shape (n_features_in_,)
        Smoothed rate of each column from all fitting rows.
    count_ : ndarray of shape (n_features_in_,)
        Fitting rows holding each column.
    group_prior_ : ndarray
        Rate of each column group.
    n_features_in_ : int
    """

    def __init__(
        self,
        smoothing: float = 20.0,
        aggregations: Sequence[str] = CTR_AGGREGATIONS,
        folds: np.ndarray | None = None,
        n_splits: int = 5,
        random_state: int = 0,
        column_groups: np.ndarray | None = None,
    ) -> None:
        self.smoothing = smoothing
        self.aggregations = aggregations
        self.folds = folds
        self.n_splits = n_splits
        self.random_state = random_state
        self.column_groups = column_groups

    # -- statistics ---------------------------------------------------------
    def _stats(self, X: sp.csr_matrix, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        present = X.copy()
        present.data = (present.data != 0).astype(np.float64)
        n_j = np.asarray(present.sum(axis=0)).ravel()
        pos_j = present.T @ y.astype(np.float64)
        groups = self._groups(X.shape[1])
        n_g = np.bincount(groups, weights=n_j)
        pos_g = np.bincount(groups, weights=pos_j)
        overall = y.mean() if len(y) else 0.0
        with np.errstate(invalid="ignore", divide="ignore"):
            prior_g = np.where(n_g > 0, pos_g / np.maximum(n_g, 1e-12), overall)
        enc = (pos_j + self.smoothing * prior_g[groups]) / (n_j + self.smoothing)
        return enc, n_j, prior_g, n_j > 0

    def _groups(self, n_cols: int) -> np.ndarray:
        if self.column_groups is None:
            return np.zeros(n_cols, dtype=np.int64)
        groups = np.asarray(self.column_groups, dtype=np.int64)
        if groups.shape != (n_cols,):
            raise ValueError(f"column_groups has shape {groups.shape}, expected ({n_cols},)")
        return groups

    def _check_fit_args(self, X, y):  # noqa: ANN001, ANN202
        X, y = validate_data(
            self, X, y, accept_sparse="csr", ensure_all_finite=True, reset=True, y_numeric=True
        )
        if self.smoothing < 0:
            raise ValueError(f"smoothing must be non-negative, got {self.smoothing}")
        for agg in self.aggregations:
            if agg not in CTR_AGGREGATIONS:
                raise ValueError(f"unknown aggregation {agg!r}; choose from {CTR_AGGREGATIONS}")
        return sp.csr_matrix(X), np.asarray(y, dtype=np.float64)

    def fit(self, X, y) -> "SparseTargetEncoder":  # noqa: ANN001
        """Learn every column's smoothed rate from all rows of ``X``."""
        X, y = self._check_fit_args(X, y)
        self.encoding_, self.count_, self.group_prior_, self._known = self._stats(X, y)
        return self

    def fit_transform(self, X, y=None, **fit_params) -> np.ndarray:  # noqa: ANN001
        """Fit on all rows; return out-of-fold encodings of the rows of ``X``."""
        X, y = self._check_fit_args(X, y)
        folds = self._fold_ids(len(y))
        out = np.empty((X.shape[0], len(self.aggregations)))
        for k in np.unique(folds):
            held = folds == k
            enc, _, prior, known = self._stats(X[~held], y[~held])
            lor = self._log_odds(enc, prior, X.shape[1])
            out[held] = row_aggregates(X[held], enc, known, self.aggregations, lor)
        self.encoding_, self.count_, self.group_prior_, self._known = self._stats(X, y)
        return out

    def _fold_ids(self, n: int) -> np.ndarray:
        if self.folds is not None:
            folds = np.asarray(self.folds)
            if folds.shape != (n,):
                raise ValueError(f"folds has {folds.shape[0]} entries for {n} rows")
            return folds
        folds = np.empty(n, dtype=np.int64)
        splitter = KFold(n_splits=self.n_splits, shuffle=True, random_state=self.random_state)
        for k, (_, test) in enumerate(splitter.split(np.zeros(n))):
            folds[test] = k
        return folds

    def transform(self, X) -> np.ndarray:  # noqa: ANN001
        """Aggregate the full-fit rates over each row's columns."""
        check_is_fitted(self, "encoding_")
        X = validate_data(self, X, accept_sparse="csr", ensure_all_finite=True, reset=False)
        lor = self._log_odds(self.encoding_, self.group_prior_, self.n_features_in_)
        return row_aggregates(sp.csr_matrix(X), self.encoding_, self._known, self.aggregations, lor)

    def _log_odds(self, enc: np.ndarray, prior_g: np.ndarray, n_cols: int) -> np.ndarray:
        """``logit(rate_j) - logit(prior of j's group)``, rates clipped away from 0 and 1."""
        eps = 1e-6
        prior = np.clip(prior_g[self._groups(n_cols)], eps, 1 - eps)
        return logit(np.clip(enc, eps, 1 - eps)) - logit(prior)

    def get_feature_names_out(self, input_features=None) -> np.ndarray:  # noqa: ANN001
        """One name per aggregation."""
        check_is_fitted(self, "encoding_")
        return np.array([f"te_{a}" for a in self.aggregations], dtype=object)

    def __sklearn_tags__(self):  # noqa: D105, ANN204
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        tags.target_tags.required = True
        return tags
