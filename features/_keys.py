"""Statistics of keys: occurrence counts and leave-self-out label history."""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted, validate_data

from core import search_sorted

__all__ = ["KeyCounter", "LeaveSelfOutHistory"]


def _unique_rows(X: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct rows (sorted), the inverse index and the counts; 1-column fast path."""
    if X.shape[1] == 1:
        keys, inv, counts = np.unique(X[:, 0], return_inverse=True, return_counts=True)
        return keys[:, None], inv.ravel(), counts
    keys, inv, counts = np.unique(X, axis=0, return_inverse=True, return_counts=True)
    return keys, inv.ravel(), counts


def _lookup(table: np.ndarray, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row of ``table`` (distinct sorted rows) holding each row of ``X``, and whether found."""
    if len(table) == 0:
        return np.zeros(len(X), dtype=np.int64), np.zeros(len(X), dtype=bool)
    if X.shape[1] == 1:
        pos = np.minimum(search_sorted(table[:, 0], X[:, 0]), len(table) - 1)
        return pos, table[pos, 0] == X[:, 0]
    _, inv = np.unique(np.vstack([table, X]), axis=0, return_inverse=True)
    inv = inv.ravel()
    slot = np.full(inv.max() + 1, -1, dtype=np.int64)
    slot[inv[: len(table)]] = np.arange(len(table))
    pos = slot[inv[len(table) :]]
    return np.maximum(pos, 0), pos >= 0


class KeyCounter(TransformerMixin, BaseEstimator):
    """How often each key (a uid, an ``aid x age`` pair, ...) occurs.

    Fit it on every row where the key can occur (train and test together: the
    counts use no label). A row of several columns is one combined key.

    Attributes
    ----------
    keys_ : ndarray of shape (n_keys, n_features_in_)
        Distinct keys seen by ``fit``, sorted.
    counts_ : ndarray of shape (n_keys,)
        Occurrences of each key.
    n_features_in_ : int
    """

    def fit(self, X, y=None) -> "KeyCounter":  # noqa: ANN001
        """Count the keys of ``X``."""
        X = validate_data(self, X, dtype="numeric", ensure_all_finite=True)
        self.keys_, _, self.counts_ = _unique_rows(X)
        return self

    def transform(self, X) -> np.ndarray:  # noqa: ANN001
        """Occurrences of each row's key (0 for a key never seen)."""
        check_is_fitted(self, "keys_")
        X = validate_data(self, X, dtype="numeric", ensure_all_finite=True, reset=False)
        pos, found = _lookup(self.keys_, X)
        return np.where(found, self.counts_[pos], 0).astype(np.float64)[:, None]

    def get_feature_names_out(self, input_features=None) -> np.ndarray:  # noqa: ANN001
        """``["count"]``."""
        return np.array(["count"], dtype=object)


class LeaveSelfOutHistory(TransformerMixin, BaseEstimator):
    """Positives and negatives of the other rows with the same key.

    With the key a uid, this is the user's conversion history on the other
    aids (for 0/1 labels; any numeric target gives the sums of ``y`` and
    ``1 - y``). ``fit_transform`` on the training rows leaves each row's own
    label out (the key's totals minus the row itself), so a row never sees its
    label; ``transform`` (test rows) gives the full training totals.

    Attributes
    ----------
    keys_ : ndarray of shape (n_keys, n_features_in_)
        Distinct training keys, sorted.
    positives_, negatives_ : ndarray of shape (n_keys,)
        Label sums of each key in the training rows.
    n_features_in_ : int
    """

    def fit(self, X, y) -> "LeaveSelfOutHistory":  # noqa: ANN001
        """Sum each key's positives and negatives."""
        self._fit(X, y)
        return self

    def _fit(self, X, y) -> tuple[np.ndarray, np.ndarray]:  # noqa: ANN001
        X, y = validate_data(self, X, y, dtype="numeric", ensure_all_finite=True, y_numeric=True)
        self.keys_, inv, _ = _unique_rows(X)
        y = np.asarray(y, dtype=np.float64)
        self.positives_ = np.bincount(inv, weights=y, minlength=len(self.keys_))
        self.negatives_ = np.bincount(inv, weights=1.0 - y, minlength=len(self.keys_))
        return inv, y

    def fit_transform(self, X, y=None, **fit_params) -> np.ndarray:  # noqa: ANN001
        """Fit; return each training row's sums without itself."""
        inv, y = self._fit(X, y)
        return np.column_stack([self.positives_[inv] - y, self.negatives_[inv] - (1.0 - y)])

    def transform(self, X) -> np.ndarray:  # noqa: ANN001
        """Training totals of each row's key (0, 0 for a key never seen)."""
        check_is_fitted(self, "keys_")
        X = validate_data(self, X, dtype="numeric", ensure_all_finite=True, reset=False)
        pos, found = _lookup(self.keys_, X)
        return np.column_stack(
            [np.where(found, self.positives_[pos], 0.0), np.where(found, self.negatives_[pos], 0.0)]
        )

    def get_feature_names_out(self, input_features=None) -> np.ndarray:  # noqa: ANN001
        """``["positives", "negatives"]``."""
        return np.array(["positives", "negatives"], dtype=object)

    def __sklearn_tags__(self):  # noqa: D105, ANN204
        tags = super().__sklearn_tags__()
        tags.target_tags.required = True
        return tags
