"""The model inputs of each feature set, assembled from the saved blocks: one assembly for every caller.

A pair's features come in three blocks: the sparse set (``aid_idx``, the ads'
one-hot fields and the pruned user tokens, which together are the "raw" set,
then the aid crosses), the dense set (codes, lengths, counts, history) and the
conversion-rate statistics (:class:`features.CTREncoder`, computed per fold by
the train stage). :meth:`DesignLayout.assemble` puts them together for a model
of a given :class:`FeatureSet`; cross-validation, the refit and the saved
scorer all call it, so a model sees the same columns wherever it runs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

import numpy as np
import scipy.sparse as sp

__all__ = ["DesignLayout", "FeatureSet"]


class FeatureSet(StrEnum):
    """The inputs a model trains on."""

    RAW = "raw"  #: one-hot / bag-of-tokens: aid_idx, the ad fields, the user tokens
    SPARSE = "sparse"  #: raw + one-hot aid x attribute crosses
    DENSE = "dense"  #: the dense set and the conversion-rate statistics
    FULL = "full"  #: dense, sparse and the statistics

    @property
    def uses_ctr(self) -> bool:
        """Whether the set holds the conversion-rate statistics."""
        return self in (FeatureSet.DENSE, FeatureSet.FULL)

    @property
    def uses_token_values(self) -> bool:
        """Whether the set holds sparse-set columns (their values, not just which tokens are present)."""
        return self is not FeatureSet.DENSE


@dataclass(frozen=True)
class DesignLayout:
    """Column counts of the three blocks, and which dense columns are category ids.

    Attributes
    ----------
    n_raw : int
        Leading sparse columns that form the raw set.
    n_dense : int
        Columns of the dense set.
    n_ctr : int
        Conversion-rate columns.
    dense_categorical : tuple of int
        Dense columns that hold category ids (``aid_idx`` first).
    """

    n_raw: int
    n_dense: int
    n_ctr: int
    dense_categorical: tuple[int, ...] = (0,)

    def categorical(self, feature_set: FeatureSet, crosses: bool = False) -> list[int]:
        """Columns of ``feature_set``'s design that LightGBM may treat as categorical.

        ``aid_idx`` (column 0 of every set) always; the ``aid x attribute``
        cross ids of the dense set only with ``crosses``.
        """
        if not feature_set.uses_ctr or not crosses:
            return [0]
        return list(self.dense_categorical)  # dense columns come first in the full set too

    def ctr_columns(self, columns: np.ndarray | None, width: int) -> np.ndarray | None:
        """The conversion-rate columns (positions in their block) among the design ``columns`` of a
        dense or full set of ``width`` columns (the statistics come last in both); ``None``: all."""
        if columns is None:
            return None
        columns = np.asarray(columns, dtype=np.int64)
        start = width - self.n_ctr
        return columns[columns >= start] - start

    def assemble(
        self,
        feature_set: FeatureSet,
        sparse: sp.csr_matrix,
        dense: np.ndarray | None,
        encode_ctr: Callable[[np.ndarray | None], np.ndarray] | None,
        out: np.ndarray | None = None,
    ) -> np.ndarray | sp.csr_matrix:
        """The design rows of ``feature_set`` from the blocks of the same rows.

        Parameters
        ----------
        feature_set : FeatureSet
        sparse : csr_matrix
            Sparse-set rows (only their stored positions are needed for ``dense``).
        dense : ndarray of float32 or None
            Dense-set rows; needed for ``dense`` and ``full``.
        encode_ctr : callable or None
            ``encode_ctr(out)`` writes the rows' conversion-rate columns into
            ``out`` (float32, ``n_ctr`` columns) or, given ``None``, returns
            them; needed for ``dense`` and ``full``.
        out : ndarray of float32, optional
            For ``dense``: filled in place (``n_dense + n_ctr`` columns), so a
            training matrix is built without a second copy of its rows.

        Returns
        -------
        ndarray (``dense``) or csr_matrix (the others)
        """
        if feature_set is FeatureSet.RAW:
            return sparse[:, : self.n_raw]
        if feature_set is FeatureSet.SPARSE:
            return sparse
        if dense is None or encode_ctr is None:
            raise ValueError(f"feature set {feature_set} needs the dense rows and the CTR encoder")
        if feature_set is FeatureSet.DENSE:
            if out is None:
                out = np.empty((len(dense), self.n_dense + self.n_ctr), dtype=np.float32)
            out[:, : self.n_dense] = dense
            encode_ctr(out[:, self.n_dense :])
            return out
        if feature_set is FeatureSet.FULL:
            return sp.hstack([sp.csr_matrix(dense), sparse, sp.csr_matrix(encode_ctr(None))], format="csr")
        raise ValueError(f"unknown feature set {feature_set!r}")
