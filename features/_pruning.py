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


def _rows_with_field(X, slices: list[tuple[str, int, int]], weight: np.ndarray) -> np.ndarray:  # noqa: ANN001
    """Total weight of the rows with at least one non-zero in each field's block.

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
        w = np.repeat(weight, np.diff(X.indptr))[enters]
        f = f[enters]
        return np.bincount(f[f >= 0], weights=w[f >= 0], minlength=len(slices))[: len(slices)]
    present = np.asarray(X) != 0
    return np.array([weight[present[:, a:b].any(axis=1)].sum() for _, a, b in slices], dtype=np.float64)


def _check_some_weight(sample_weight) -> None:  # noqa: ANN001
    if sample_weight is not None and not np.any(np.asarray(sample_weight) > 0):
        raise ValueError("sample_weight is zero for every row: nothing to fit")


def _sample_weight(sample_weight, n: int) -> np.ndarray:  # noqa: ANN001
    """Row weights as float64 (ones when None); they must be non-negative."""
    if sample_weight is None:
        return np.ones(n)
    w = np.asarray(sample_weight, dtype=np.float64)
    if w.shape != (n,):
        raise ValueError(f"sample_weight has shape {w.shape}, expected ({n},)")
    if (w < 0).any() or not np.isfinite(w).all():
        raise ValueError("sample_weight must be finite and non-negative")
    return w


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
    present_ : ndarray of shape (n_fields,)
        Total weight of the rows holding each field.
    total_weight_ : float
        Total weight of the rows seen.
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

    def fit(self, X, y=None, sample_weight=None) -> "MissingRatePruner":  # noqa: ANN001
        """Compute each field's missing rate.

        ``sample_weight`` counts a row that many times: fitting the distinct
        users weighted by how often they occur equals fitting the pair rows.
        """
        for attr in ("present_", "total_weight_"):
            self.__dict__.pop(attr, None)
        _check_some_weight(sample_weight)
        return self.partial_fit(X, y, sample_weight=sample_weight)

    def partial_fit(self, X, y=None, sample_weight=None) -> "MissingRatePruner":  # noqa: ANN001
        """Add a batch of rows to the counts (chunked fitting of a large matrix)."""
        first = not hasattr(self, "present_")
        X = validate_data(self, X, accept_sparse=("csr", "csc"), ensure_all_finite=True, reset=first)
        if not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f"threshold must be in [0, 1], got {self.threshold}")
        slices = self._field_slices(X.shape[1])
        w = _sample_weight(sample_weight, X.shape[0])
        present = _rows_with_field(X, slices, w)
        if first:
            self.present_, self.total_weight_ = present, float(w.sum())
        else:
            self.present_ = self.present_ + present
            self.total_weight_ += float(w.sum())
        with np.errstate(invalid="ignore", divide="ignore"):
            rates = 1.0 - self.present_ / self.total_weight_ if self.total_weight_ > 0 else np.ones(len(slices))
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
    df_ : ndarray of float64, shape (n_features_in_,)
        Number (total weight) of rows with a non-zero in each column.
    n_features_in_ : int
    """

    def __init__(self, min_df: int = 20) -> None:
        self.min_df = min_df

    def fit(self, X, y=None, sample_weight=None) -> "FrequencyPruner":  # noqa: ANN001
        """Count each column's non-zero rows (weighted by ``sample_weight``)."""
        self.__dict__.pop("df_", None)
        _check_some_weight(sample_weight)
        return self.partial_fit(X, y, sample_weight=sample_weight)

    def partial_fit(self, X, y=None, sample_weight=None) -> "FrequencyPruner":  # noqa: ANN001
        """Add a batch of rows to the column counts."""
        first = not hasattr(self, "df_")
        X = validate_data(self, X, accept_sparse=("csr", "csc"), ensure_all_finite=True, reset=first)
        if self.min_df < 0:
            raise ValueError(f"min_df must be non-negative, got {self.min_df}")
        w = _sample_weight(sample_weight, X.shape[0])
        if sp.issparse(X):
            X = sp.csr_matrix(X)
            X.eliminate_zeros()
            df = np.bincount(X.indices, weights=np.repeat(w, np.diff(X.indptr)), minlength=X.shape[1])
        else:
            df = w @ (np.asarray(X) != 0)
        self.df_ = df if first else self.df_ + df
        return self

    def _get_support_mask(self) -> np.ndarray:
        check_is_fitted(self, "df_")
        return self.df_ >= self.min_df

    def __sklearn_tags__(self):  # noqa: D105, ANN204
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags
