"""Column selectors: missing-rate pruning per field, frequency pruning per column."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator
from sklearn.feature_selection import SelectorMixin
from sklearn.utils.validation import check_is_fitted, validate_data

__all__ = ["FrequencyPruner", "MissingRatePruner"]

FieldSlices = Sequence[tuple[str, int, int]]


def _rows_with_field(X, slices: list[tuple[str, int, int]]) -> np.ndarray:  # noqa: ANN001
    """Number of rows with at least one non-zero in each field's block.

    On CSR input this is one pass over the stored values: a row enters a field
    where the field of consecutive (sorted) column indices changes.
    """
    n_cols = X.shape[1]
    field_of = np.full(n_cols + 1, -1, dtype=np.int32)
    for k, (_, a, b) in enumerate(slices):
        field_of[a:b] = k
    if sp.issparse(X):
        X = sp.csr_matrix(X)
        X.eliminate_zeros()
        if not X.has_sorted_indices:
            X = X.sorted_indices()
        f = field_of[X.indices]
        row_start = np.zeros(len(f), dtype=bool)
        row_start[X.indptr[:-1][np.diff(X.indptr) > 0]] = True
        enters = row_start | np.r_[True, f[1:] != f[:-1]]
        f = f[enters]
        return np.bincount(f[f >= 0], minlength=len(slices))[: len(slices)].astype(np.float64)
    present = np.asarray(X) != 0
    return np.array([present[:, a:b].any(axis=1).sum() for _, a, b in slices], dtype=np.float64)


class MissingRatePruner(SelectorMixin, BaseEstimator):
    """Drop whole fields that are missing for too many rows.

    A row misses a field when every column of the field's block is zero (an
    absent group in ``userFeature.data``; the id ``0`` is a value, not a
    missing one, because it has its own column).

    Parameters
    ----------
    threshold : float, default=0.9
        Fields with ``missing_rate_ > threshold`` are dropped.
    fields : sequence of (name, start, stop), default=None
        Column blocks of the fields. ``None`` makes every column its own field.

    Attributes
    ----------
    missing_rate_ : ndarray of shape (n_fields,)
        Share of rows missing each field.
    field_names_ : list of str
        Field names, in the order of ``missing_rate_``.
    dropped_fields_ : list of str
        Fields above the threshold.
    n_features_in_ : int
    """

    def __init__(self, threshold: float = 0.9, fields: FieldSlices | None = None) -> None:
        self.threshold = threshold
        self.fields = fields

    def _field_slices(self, n_cols: int) -> list[tuple[str, int, int]]:
        if self.fields is None:
            return [(f"x{j}", j, j + 1) for j in range(n_cols)]
        slices = [(str(n), int(a), int(b)) for n, a, b in self.fields]
        if slices and max(b for _, _, b in slices) > n_cols:
            raise ValueError(f"fields reach past the {n_cols} columns of X")
        return slices

    def fit(self, X, y=None) -> "MissingRatePruner":  # noqa: ANN001
        """Compute each field's missing rate."""
        X = validate_data(self, X, accept_sparse=("csr", "csc"), ensure_all_finite=True)
        if not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f"threshold must be in [0, 1], got {self.threshold}")
        slices = self._field_slices(X.shape[1])
        n = X.shape[0]
        rates = 1.0 - _rows_with_field(X, slices) / n
        self.missing_rate_ = rates
        self.field_names_ = [s[0] for s in slices]
        self.dropped_fields_ = [s[0] for s, r in zip(slices, rates) if r > self.threshold]
        mask = np.ones(X.shape[1], dtype=bool)
        for (_, a, b), r in zip(slices, rates):
            if r > self.threshold:
                mask[a:b] = False
        self.support_ = mask
        return self

    def _get_support_mask(self) -> np.ndarray:
        check_is_fitted(self, "support_")
        return self.support_

    def __sklearn_tags__(self):  # noqa: D105, ANN204
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        tags.input_tags.allow_nan = False
        return tags


class FrequencyPruner(SelectorMixin, BaseEstimator):
    """Drop columns whose document frequency (rows with a non-zero) is too low.

    Parameters
    ----------
    min_df : int, default=20
        Columns non-zero in fewer than ``min_df`` rows are dropped.

    Attributes
    ----------
    df_ : ndarray of shape (n_features_in_,)
        Number of rows with a non-zero in each column.
    n_features_in_ : int
    """

    def __init__(self, min_df: int = 20) -> None:
        self.min_df = min_df

    def fit(self, X, y=None) -> "FrequencyPruner":  # noqa: ANN001
        """Count each column's non-zero rows."""
        X = validate_data(self, X, accept_sparse=("csr", "csc"), ensure_all_finite=True)
        if self.min_df < 0:
            raise ValueError(f"min_df must be non-negative, got {self.min_df}")
        if sp.issparse(X):
            X = sp.csr_matrix(X)
            X.eliminate_zeros()
            self.df_ = np.bincount(X.indices, minlength=X.shape[1]).astype(np.int64)
        else:
            self.df_ = (np.asarray(X) != 0).sum(axis=0).astype(np.int64)
        return self

    def _get_support_mask(self) -> np.ndarray:
        check_is_fitted(self, "df_")
        return self.df_ >= self.min_df

    def __sklearn_tags__(self):  # noqa: D105, ANN204
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags
