"""Conversion-rate features of ``group x field``, cross-fitted without leakage.

Why these are not a column of the saved dense set: with one fold file, a
training row's out-of-fold statistic is computed from the *other* folds,
including the fold a model is later scored on, so the model for fold ``k``
would be fitted on features that carry fold ``k``'s labels. Measured on the
``small`` data with random (iid) labels, a LightGBM on such features scored
0.56 mean per-aid AUC on the held-out fold instead of 0.5. So the statistics
are computed inside each cross-validation fold (nested cross-fitting, as
scikit-learn's ``TargetEncoder`` inside a pipeline): for fold ``k`` the
encoders see only the training folds, whose rows get out-of-fold values over
those folds (the same fold file, restricted), while fold ``k`` and the test
rows get the statistics of all training folds.

All of those statistics come from one set of counts: :class:`CTREncoder` counts
every ``group x token`` key's rows and positives *per fold* in one chunked
pass, and a statistic that leaves out folds ``k`` and ``j`` subtracts their
counts. So the train stage pays one counting pass for all folds, instead of
re-fitting encoders on copies of each fold's rows, and its memory is the
present keys, not the rows.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from features import _ctr_kernels as _k

__all__ = ["CTR_AGGREGATIONS", "CTREncoder", "CTRSpec"]

#: The per-row aggregations of a multi-valued field's token rates, in output
#: order: ``mean`` and ``max`` of the known tokens' smoothed rates, ``count``
#: of known tokens, ``lor`` the sum of their log-odds ratios against their
#: group (the naive Bayes score). All of them are the default.
CTR_AGGREGATIONS: tuple[str, ...] = tuple(_k.AGG_CODES)


@dataclass
class CTRSpec:
    """Which statistics to compute, as saved by the features stage.

    Attributes
    ----------
    fields : list of (name, kind, start, stop)
        Token blocks in the sparse set (``kind`` "single" gets the mean only,
        others every one of :attr:`aggregations`).
    groups : dict of name -> list of int
        Group code of each aid (by ``aid_idx``): aid, advertiser, product type.
    smoothing : float
        Pseudo-count of the prior (the group's own rate).
    aggregations : tuple of str
        Per-row aggregations of multi-valued fields, some of :data:`CTR_AGGREGATIONS`.
    """

    fields: list[tuple[str, str, int, int]]
    groups: dict[str, list[int]]
    smoothing: float
    aggregations: tuple[str, ...] = CTR_AGGREGATIONS

    def __post_init__(self) -> None:
        unknown = [a for a in self.aggregations if a not in CTR_AGGREGATIONS]
        if unknown or not self.aggregations:
            raise ValueError(f"aggregations {list(self.aggregations)!r}: use some of {', '.join(CTR_AGGREGATIONS)}")

    def aggs(self, kind: str) -> tuple[str, ...]:
        """Aggregations of a field: the mean for single-valued ones (one token), else :attr:`aggregations`."""
        return ("mean",) if kind == "single" else tuple(self.aggregations)

    @classmethod
    def from_dict(cls, obj: dict) -> CTRSpec:
        """Build from :meth:`to_dict`'s output (the ``ctr`` entry of ``columns.json``)."""
        return cls([tuple(f) for f in obj["fields"]], obj["groups"], obj["smoothing"], tuple(obj["aggregations"]))

    def to_dict(self) -> dict:
        """Plain lists and numbers (JSON-ready)."""
        return {"fields": [list(f) for f in self.fields], "groups": self.groups, "smoothing": self.smoothing,
                "aggregations": list(self.aggregations)}

    def names(self) -> list[str]:
        """Output column names, in order."""
        out = []
        for gname in self.groups:
            for name, kind, _, _ in self.fields:
                out += [f"ctr_{gname}_{name}_{agg}" for agg in self.aggs(kind)]
        return out

    @property
    def n_out(self) -> int:
        """Number of output columns."""
        return len(self.names())


def _row_chunks(tokens: Any, chunk_rows: int) -> Iterator[tuple[int, int, sp.csr_matrix]]:  # noqa: ANN401
    """``(start, stop, csr rows)`` of a CSR matrix or of a reader with ``chunks(chunk_rows, data)``."""
    if hasattr(tokens, "chunks"):
        yield from tokens.chunks(chunk_rows, data=False)
        return
    tokens = sp.csr_matrix(tokens)
    for start in range(0, tokens.shape[0], chunk_rows):
        yield start, min(start + chunk_rows, tokens.shape[0]), tokens[start : start + chunk_rows]


def _csr_arrays(rows: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray]:
    return rows.indptr.astype(np.int64, copy=False), rows.indices.astype(np.int32, copy=False)


class CTREncoder(TransformerMixin, BaseEstimator):
    """Conversion-rate statistics of ``group x token`` keys, from per-fold counts.

    A key is a token column of a CTR field crossed with one group code of the
    row's aid (see :class:`CTRSpec`). Each key's rate is smoothed toward its
    ``group code x field`` rate, ``(pos + m * prior) / (n + m)``, and a row's
    output aggregates the rates of its known keys per group and field (the
    mean for single-valued fields, :attr:`CTRSpec.aggregations` for the others).

    :meth:`fit` counts every key's rows and positives *per fold* in one
    chunked pass. :meth:`transform` then encodes any rows from the fitting
    rows of all folds but the (up to two, per row) left out ones, so one
    fitted encoder serves every outer and inner fold of a cross-validation:
    fold ``k``'s model sees its training rows encoded without fold ``k`` and
    without their own fold, and fold ``k``'s rows encoded without fold ``k``.
    :meth:`fit_transform` is cross-fitted like scikit-learn's
    ``TargetEncoder``: each row without its own fold. Every stored entry of
    the token matrix counts as present. A row's output depends only on that
    row, never on the rows encoded with it.

    Parameters
    ----------
    spec : CTRSpec
        Fields, groups, smoothing and aggregations.
    chunk_rows : int, default=500000
        Rows per compiled pass (memory vs. speed).

    Attributes
    ----------
    key_map_ : ndarray of int32
        Index of each key among the present ones, ``-1`` where absent.
    counts_ : ndarray of int32, shape (n_keys, 2, n_folds)
        Rows and positives holding each present key, per fold.
    group_counts_ : ndarray of float64, shape (n_groups, n_codes, n_fields, 2, n_folds)
        The same summed over the keys of each ``group code x field`` (the priors).
    fold_counts_ : ndarray of float64, shape (2, n_folds)
        Rows and positives per fold (the prior of an empty group).
    n_folds_ : int
    pooled_ : bool
        Whether the folds were summed into one (:meth:`pooled`): such an
        encoder leaves no fold out.
    """

    def __init__(self, spec: CTRSpec, chunk_rows: int = 500_000) -> None:
        self.spec = spec
        self.chunk_rows = chunk_rows

    # -- key layout, a pure function of the spec ----------------------------
    def _layout(self) -> _Layout:
        return _Layout.of(self.spec)

    def fit(self, X: Any, y: np.ndarray, aid_idx: np.ndarray, folds: np.ndarray) -> CTREncoder:  # noqa: ANN401
        """Count the keys of the fitting rows, per fold.

        Parameters
        ----------
        X : csr_matrix, or a reader with ``shape`` and ``chunks(chunk_rows, data)``
            Token rows of the sparse set (read twice, ``chunk_rows`` at a time).
        y : ndarray of {0, 1}
        aid_idx : ndarray of int
            Each row's aid (row of :attr:`CTRSpec.groups`' code lists).
        folds : ndarray of int in ``[0, n_folds)``
            Each row's fold (the project's fold file).
        """
        folds = np.asarray(folds, dtype=np.int64)
        y = np.asarray(y, dtype=np.int64)
        aid_idx = np.asarray(aid_idx)
        n = X.shape[0]
        if not (len(y) == len(folds) == len(aid_idx) == n):
            raise ValueError(f"X has {n} rows but y, aid_idx, folds have {len(y)}, {len(aid_idx)}, {len(folds)}")
        if len(folds) and folds.min() < 0:
            raise ValueError("folds must be non-negative")
        if len(y) and not np.isin(y, (0, 1)).all():
            raise ValueError("y must hold 0/1 labels")
        lay = self._layout()
        self.n_folds_ = int(folds.max()) + 1 if len(folds) else 1
        seen = np.zeros(lay.n_key_space, dtype=np.bool_)
        for start, stop, rows in _row_chunks(X, self.chunk_rows):
            indptr, indices = _csr_arrays(rows)
            order = np.argsort(aid_idx[start:stop], kind="stable")  # one aid's keys are neighbours
            _k.mark_keys(indptr, indices, order, lay.row_codes(aid_idx[start:stop]), lay.col_field, lay.start,
                         lay.n_tok, lay.base, seen)
        key_map = np.full(lay.n_key_space, -1, dtype=np.int32)
        present = np.flatnonzero(seen)
        del seen
        key_map[present] = np.arange(len(present), dtype=np.int32)
        counts = np.zeros((len(present), 2, self.n_folds_), dtype=np.int32)
        group_counts = np.zeros((len(lay.codes), int(lay.n_codes.max(initial=1)), len(lay.fields), 2, self.n_folds_))
        fold_counts = np.zeros((2, self.n_folds_))
        for start, stop, rows in _row_chunks(X, self.chunk_rows):
            indptr, indices = _csr_arrays(rows)
            _k.count_keys(indptr, indices, np.argsort(aid_idx[start:stop], kind="stable"),
                          lay.row_codes(aid_idx[start:stop]), folds[start:stop], y[start:stop],
                          lay.col_field, lay.start, lay.n_tok, lay.base, key_map, counts, group_counts, fold_counts)
        self.key_map_, self.counts_, self.group_counts_, self.fold_counts_ = key_map, counts, group_counts, fold_counts
        self.pooled_ = False
        return self

    def pooled(self) -> CTREncoder:
        """This encoder with its folds summed into one: for rows encoded from every fold (``exclude=-1``).

        Its :meth:`transform` gives the same values as this one's with no
        fold left out (integer sums: bit for bit), from a fifth of the counts
        with five folds; the saved scorer of refitted models keeps only this
        (README, "Saved models and scoring new pairs"). It can leave no fold out.
        """
        check_is_fitted(self, "counts_")
        out = CTREncoder(self.spec, self.chunk_rows)
        out.key_map_ = self.key_map_
        out.counts_ = self.counts_.sum(axis=2, keepdims=True, dtype=np.int64).astype(np.int32)
        out.group_counts_ = self.group_counts_.sum(axis=-1, keepdims=True)
        out.fold_counts_ = self.fold_counts_.sum(axis=-1, keepdims=True)
        out.n_folds_, out.pooled_ = 1, True
        return out

    def fit_transform(  # type: ignore[override]
        self, X: Any, y: np.ndarray, aid_idx: np.ndarray, folds: np.ndarray  # noqa: ANN401
    ) -> np.ndarray:
        """Fit, then encode the fitting rows each without its own fold (float32)."""
        return self.fit(X, y, aid_idx, folds).transform(X, aid_idx, exclude=folds)

    def priors(self) -> np.ndarray:
        """``[a + 1, b + 1, group, code, field]``: prior rate without folds ``a`` and ``b`` (``-1``: none).

        A ``group code x field``'s token-weighted rate, or the overall rate
        of the rows where it has no tokens. (Sums of integer counts: exact in
        any order.)
        """
        check_is_fitted(self, "counts_")
        n_f = self.n_folds_
        out = np.empty((n_f + 1, n_f + 1, *self.group_counts_.shape[:3]))
        for a in range(-1, n_f):
            for b in range(-1, n_f):
                keep = np.ones(n_f, dtype=bool)
                keep[[k for k in (a, b) if k >= 0]] = False
                rows, pos = self.fold_counts_[:, keep].sum(axis=1)
                n = self.group_counts_[..., 0, keep].sum(axis=-1)
                p = self.group_counts_[..., 1, keep].sum(axis=-1)
                with np.errstate(invalid="ignore", divide="ignore"):
                    out[a + 1, b + 1] = np.where(n > 0, p / np.maximum(n, 1e-12), pos / rows if rows > 0 else 0.0)
        return out

    def transform(
        self, X: Any, aid_idx: np.ndarray, exclude: np.ndarray | int = -1,  # noqa: ANN401
        exclude_also: np.ndarray | int = -1, rows: np.ndarray | None = None, out: np.ndarray | None = None,
        columns: np.ndarray | None = None,
    ) -> np.ndarray:
        """Statistics of rows from the fitting rows outside the excluded folds (float32).

        Parameters
        ----------
        X : csr_matrix or reader
            Token rows (as in :meth:`fit`; a reader is read in chunks).
        aid_idx : ndarray of int
            Of each output row.
        exclude, exclude_also : int or ndarray of int, default=-1
            Folds left out, per output row or for all (``-1``: none).
        rows : ndarray of int, optional
            Rows of the CSR matrix ``X`` to encode (default: all, in order).
        out : ndarray of float32, optional
            Written in place (a column slice of a design matrix is fine).
        columns : ndarray of int, optional
            The output columns wanted (default: all). Only the ``group x
            field`` blocks holding one of them are computed, the rest of the
            output is NaN: for a model that reads a selection of the columns
            (:attr:`ensemble.BaseLGBMBagging.columns_`), at a fraction of the
            key lookups.
        """
        check_is_fitted(self, "counts_")
        lay = self._layout()
        needed = lay.needed(columns)
        n = X.shape[0] if rows is None else len(rows)
        if out is None:
            out = np.empty((n, lay.n_out), dtype=np.float32)
        ex_a = np.broadcast_to(np.asarray(exclude, dtype=np.int64), (n,))
        ex_b = np.broadcast_to(np.asarray(exclude_also, dtype=np.int64), (n,))
        if getattr(self, "pooled_", False) and n and max(ex_a.max(), ex_b.max()) >= 0:
            raise ValueError("a pooled encoder (folds summed) cannot leave a fold out")
        aid_idx = np.asarray(aid_idx)
        priors = self.priors()
        priors = (priors, _k.logits(np.ascontiguousarray(priors)))
        if rows is not None:  # one chunk: the rows' positions in it
            indptr, indices = _csr_arrays(sp.csr_matrix(X))
            self._encode(lay, indptr, indices, np.asarray(rows, dtype=np.int64), aid_idx, ex_a, ex_b, priors, needed,
                         out)
            return out
        for start, stop, chunk in _row_chunks(X, self.chunk_rows):
            indptr, indices = _csr_arrays(chunk)
            self._encode(lay, indptr, indices, np.arange(stop - start), aid_idx[start:stop], ex_a[start:stop],
                         ex_b[start:stop], priors, needed, out[start:stop])
        return out

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:  # noqa: ANN401
        """The output column names (:meth:`CTRSpec.names`)."""
        return np.array(self.spec.names(), dtype=object)

    def _encode(self, lay, indptr, indices, rows, aid_idx, ex_a, ex_b, priors, needed, out) -> None:  # noqa: ANN001
        """One chunk through the compiled kernel; ``priors`` is (:meth:`priors`, their logits)."""
        order = np.argsort(aid_idx, kind="stable")  # one aid's keys are neighbours in the tables
        _k.encode_rows(
            indptr, indices, rows, order, lay.row_codes(aid_idx), np.ascontiguousarray(ex_a),
            np.ascontiguousarray(ex_b), lay.col_field, lay.start, lay.n_tok, lay.base, self.key_map_,
            self.counts_, *priors, float(self.spec.smoothing), lay.agg_codes, lay.out_start, needed, out,
        )


@dataclass(frozen=True)
class _Layout:
    """Where each ``group x field x token`` key and each output column sits, derived from a spec."""

    fields: list[tuple[int, int]]
    start: np.ndarray
    n_tok: np.ndarray
    col_field: np.ndarray
    codes: list[np.ndarray]
    n_codes: np.ndarray
    base: np.ndarray
    n_key_space: int
    agg_codes: np.ndarray
    out_start: np.ndarray
    n_out: int

    @classmethod
    def of(cls, spec: CTRSpec) -> _Layout:
        fields = [(int(a), int(b)) for _, _, a, b in spec.fields]
        start = np.array([a for a, _ in fields], dtype=np.int64)
        n_tok = np.array([b - a for a, b in fields], dtype=np.int64)
        col_field = np.full(max((b for _, b in fields), default=0), -1, dtype=np.int32)
        for f, (a, b) in enumerate(fields):
            col_field[a:b] = f
        codes = [np.asarray(c, dtype=np.int32) for c in spec.groups.values()]
        n_codes = np.array([int(c.max()) + 1 if len(c) else 1 for c in codes], dtype=np.int64)
        sizes = n_codes[:, None] * n_tok[None, :]
        base = np.r_[0, np.cumsum(sizes.ravel())][:-1].reshape(sizes.shape).astype(np.int64)
        aggs = [[spec.aggs(kind) for _, kind, _, _ in spec.fields] for _ in spec.groups]
        width = max((len(a) for row in aggs for a in row), default=1)
        agg_codes = np.full((len(codes), len(fields), width), -1, dtype=np.int8)
        out_start = np.zeros((len(codes), len(fields)), dtype=np.int64)
        col = 0
        for g, row in enumerate(aggs):
            for f, names in enumerate(row):
                out_start[g, f] = col
                agg_codes[g, f, : len(names)] = [_k.AGG_CODES[a] for a in names]
                col += len(names)
        return cls(fields, start, n_tok, col_field, codes, n_codes, base, int(sizes.sum()), agg_codes, out_start, col)

    def needed(self, columns: np.ndarray | None) -> np.ndarray:
        """``(n_groups, n_fields)`` uint8: the ``group x field`` blocks holding an output column of ``columns``."""
        out = np.ones(self.out_start.shape, dtype=np.uint8)
        if columns is None:
            return out
        columns = np.asarray(columns, dtype=np.int64)
        if len(columns) and (columns.min() < 0 or columns.max() >= self.n_out):
            raise ValueError(f"output columns must be in [0, {self.n_out})")
        width = (self.agg_codes >= 0).sum(axis=2)  # columns of each block
        first = self.out_start
        hit = np.zeros(self.n_out + 1, dtype=np.int64)
        hit[np.unique(columns) + 1] = 1
        cum = np.cumsum(hit)  # cum[c] = wanted columns below c
        out[:] = (cum[first + width] - cum[first]) > 0
        return out

    def row_codes(self, aid_idx: np.ndarray) -> np.ndarray:
        """Group code of each row (by its ``aid_idx``), one column per group."""
        aid_idx = np.asarray(aid_idx, dtype=np.int64)
        return np.ascontiguousarray(np.column_stack([c[aid_idx] for c in self.codes]).astype(np.int32))
