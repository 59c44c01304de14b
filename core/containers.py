"""In-memory containers of loaded data: users as a CSR matrix, ads, pairs.

The ``load`` stage (``pipeline``) fills them from files and the feature
transformers (``features``) read them; neither side needs the other's code.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import scipy.sparse as sp

from core.arrays import sorted_index, take_rows

__all__ = ["AdTable", "FieldBlock", "Pairs", "UserMatrix"]


@dataclass
class FieldBlock:
    """One field's column block in the user matrix.

    Attributes
    ----------
    name : str
        Field name.
    offset : int
        First column of the block.
    values : ndarray of int64
        The field's ids, in column order (increasing).
    df : ndarray of int64
        Number of users holding each id (document frequency).
    kind : {"single", "multi", "unknown"}
        How the format describes the field.
    """

    name: str
    offset: int
    values: np.ndarray
    df: np.ndarray
    kind: str

    @property
    def size(self) -> int:
        """Number of columns."""
        return len(self.values)

    @property
    def stop(self) -> int:
        """One past the last column."""
        return self.offset + self.size


@dataclass
class UserMatrix:
    """Users as rows of a binary CSR matrix, with their vocabularies.

    Attributes
    ----------
    indptr : ndarray of int64, shape (n_users + 1,)
    indices : ndarray of int32, shape (nnz,)
        Column of each stored one, sorted within a row (may be memory-mapped).
    uids : ndarray of int64, shape (n_users,)
        uid of each row, in file order.
    fields : list of FieldBlock
        Column blocks, in column order.
    """

    indptr: np.ndarray
    indices: np.ndarray
    uids: np.ndarray
    fields: list[FieldBlock]
    _uid_order: np.ndarray | None = field(default=None, repr=False)

    @property
    def n_users(self) -> int:
        """Number of rows."""
        return len(self.uids)

    @property
    def n_cols(self) -> int:
        """Number of columns."""
        return self.fields[-1].stop if self.fields else 0

    @property
    def field_names(self) -> list[str]:
        """Names of the fields, in column order."""
        return [f.name for f in self.fields]

    def block(self, name: str) -> FieldBlock:
        """The column block of field ``name``."""
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(name)

    def csr(self, rows: np.ndarray | None = None, dtype: type = np.float32) -> sp.csr_matrix:
        """The matrix (or its ``rows``) as a ``scipy.sparse.csr_matrix`` of ones."""
        if rows is None:
            indptr, indices = self.indptr, np.asarray(self.indices)
        else:
            indptr, indices = take_rows(self.indptr, self.indices, np.asarray(rows))
        data = np.ones(len(indices), dtype=dtype)
        return sp.csr_matrix((data, indices, indptr), shape=(len(indptr) - 1, self.n_cols))

    def row_range(self, rows: slice) -> sp.csr_matrix:
        """A contiguous run of rows as CSR (reads only that part of a memory-mapped matrix).

        The indices are a copy, so the result may be edited in place.
        """
        lo, hi = int(self.indptr[rows.start]), int(self.indptr[rows.stop])
        indptr = self.indptr[rows.start : rows.stop + 1] - lo
        indices = np.array(self.indices[lo:hi])
        return sp.csr_matrix(
            (np.ones(len(indices), np.float32), indices, indptr), shape=(rows.stop - rows.start, self.n_cols)
        )

    def rows_of(self, uids: np.ndarray) -> np.ndarray:
        """Row of each uid; ``-1`` where the uid is unknown."""
        if self._uid_order is None:
            self._uid_order = np.argsort(self.uids, kind="stable")
        pos = sorted_index(self.uids[self._uid_order], uids)
        return np.where(pos >= 0, self._uid_order[pos], -1)


@dataclass
class AdTable:
    """Ad features: one row per aid.

    Attributes
    ----------
    aids : ndarray of int64
        aid of each row, increasing.
    frame : pandas.DataFrame
        The raw columns of ``adFeature.csv`` in aid order.
    """

    aids: np.ndarray
    frame: pd.DataFrame

    def index_of(self, aids: np.ndarray) -> np.ndarray:
        """Row of each aid; ``-1`` where unknown."""
        return sorted_index(self.aids, aids)


@dataclass
class Pairs:
    """The (aid, uid) rows of a training or test file, resolved to table rows.

    Attributes
    ----------
    aid, uid : ndarray of int64
        As in the file, in file order.
    aid_idx : ndarray of int32
        Row of each aid in the :class:`AdTable`.
    user_row : ndarray of int64
        Row of each uid in the :class:`UserMatrix`.
    label : ndarray of int8 or None
        1 (converted) or 0 for training rows; ``None`` for test rows.
    """

    aid: np.ndarray
    uid: np.ndarray
    aid_idx: np.ndarray
    user_row: np.ndarray
    label: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.aid)

    def arrays(self) -> dict[str, np.ndarray]:
        """The arrays by name (``label`` only when present)."""
        out = {"aid": self.aid, "uid": self.uid, "aid_idx": self.aid_idx, "user_row": self.user_row}
        if self.label is not None:
            out["label"] = self.label
        return out
