"""The fitted feature pipeline of (aid, user) pairs, shared by the features stage and scoring.

:class:`PairFeaturizer` learns everything the feature sets need from the
loaded training (and test) pairs once, then turns any chunk of pairs into its
sparse and dense rows. The features stage streams the train and test pairs
through it; ``lookalike score`` streams new pairs through the same fitted
object, so both compute the same numbers by construction.

Memory: fitting never materialises the pair-level token matrix. The pruners
are fitted on the distinct users, weighted by how many training rows each has
(equal to fitting the pair rows; tested), in chunks of users; everything else
works on per-user codes. Transforming works on one chunk of pairs at a time.
"""

from __future__ import annotations

import logging

import numba
import numpy as np
import scipy.sparse as sp
from tqdm.auto import tqdm

from sklearn.preprocessing import OneHotEncoder

from core import AdTable, FieldBlock, Pairs, UserMatrix, row_chunks, sorted_index
from features._keys import KeyCounter, LeaveSelfOutHistory
from features._pruning import FrequencyPruner, MissingRatePruner
from features.ctr import CTR_AGGREGATIONS, CTRSpec
from features.design import DesignLayout

__all__ = ["PairFeaturizer", "ad_one_hot", "field_codes"]

logger = logging.getLogger(__name__)


def ad_one_hot(ads: AdTable) -> tuple[sp.csr_matrix, list[str]]:
    """One-hot id fields of every ad plus ``creativeSize`` as a number; with column names."""
    cols = [c for c in ads.frame.columns if c != "aid"]
    enc = OneHotEncoder(dtype=np.float32, handle_unknown="ignore")
    onehot = enc.fit_transform(ads.frame[cols].to_numpy())
    numeric = sp.csr_matrix(ads.frame[["creativeSize"]].to_numpy(dtype=np.float32))
    names = [f"ad:{n}" for n in enc.get_feature_names_out(cols)] + ["ad:creativeSize_num"]
    return sp.hstack([onehot, numeric], format="csr"), names


def field_codes(X: sp.csr_matrix, fields: list[FieldBlock]) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the column of each single-valued field and the list length of every field.

    Parameters
    ----------
    X : csr_matrix
        User rows with the columns of ``fields``.
    fields : list of FieldBlock

    Returns
    -------
    single : ndarray of int32, shape (n_rows, n_single)
        Column (in ``X``) of each single-valued field, ``-1`` when absent.
    lengths : ndarray of float32, shape (n_rows, n_fields)
        Number of ids of each field.
    """
    singles = [k for k, f in enumerate(fields) if f.kind == "single"]
    stops = np.array([f.stop for f in fields], dtype=np.int64)  # fields are consecutive column blocks
    starts = np.array([f.offset for f in fields], dtype=np.int64)
    single_of = np.full(len(fields), -1, dtype=np.int64)
    single_of[singles] = np.arange(len(singles))
    single = np.full((X.shape[0], len(singles)), -1, dtype=np.int32)
    lengths = np.zeros((X.shape[0], len(fields)), dtype=np.float32)
    _field_codes(X.indptr.astype(np.int64, copy=False), X.indices, starts, stops, single_of, single, lengths)
    return single, lengths


@numba.njit(cache=True)
def _field_codes(indptr, indices, starts, stops, single_of, single, lengths):  # noqa: ANN001, ANN202
    """One pass over the rows: each stored column's field (by binary search of the blocks), counted,
    and its column kept as the row's value of a single-valued field."""
    for r in range(len(indptr) - 1):
        for p in range(indptr[r], indptr[r + 1]):
            c = indices[p]
            k = np.searchsorted(stops, c, side="right")  # the first block whose stop is past c
            if k < len(stops) and c >= starts[k]:
                lengths[r, k] += 1.0
                j = single_of[k]
                if j >= 0:
                    single[r, j] = c


class PairFeaturizer:
    """Sparse and dense features of (aid, user) pairs, fitted on the training pairs.

    Not a scikit-learn estimator: its input is a set of pairs plus the users'
    token rows, not one matrix. It follows the same conventions (parameters
    in ``__init__``, learned state in ``trailing_underscore_`` attributes) and
    is built from the project's scikit-learn transformers.

    Sparse set: ``aid_idx``, the ads' one-hot fields, the user tokens kept by
    missing-rate and frequency pruning (the "raw" set), then one-hot
    ``aid x single-valued field`` crosses seen in at least ``min_df`` training
    rows. Dense set: single-valued ids, list lengths, ``aid x field`` cross
    ids, occurrence counts over train+test, and the user's leave-self-out
    history overall and within the ad's advertiser and product type.

    Parameters
    ----------
    missing_threshold : float
        Fields missing for more than this share of training rows are dropped.
    min_df : int
        Token columns (and crosses) in fewer training rows are dropped.
    ctr_smoothing : float
        Pseudo-count of the CTR statistics (carried in :attr:`ctr_spec_`).
    chunk_rows : int
        Users per chunk while fitting.
    ctr_aggregations : tuple of str
        Per-row aggregations of the multi-valued fields' CTR statistics
        (carried in :attr:`ctr_spec_`).

    Attributes
    ----------
    fields_ : list of FieldBlock
        The user vocabulary the model was fitted with.
    missing_, frequency_ : MissingRatePruner, FrequencyPruner
    kept_cols_ : ndarray of int64
        User columns kept, increasing.
    kept_fields_ : list of (name, kind, start, stop)
        Field blocks within the kept columns.
    aids_ : ndarray of int64
        Known aids; ``aid_idx`` indexes it.
    ad_onehot_ : csr_matrix
        One-hot ad fields of each aid.
    cross_keep_ : dict of str -> ndarray
        Kept ``aid x value`` columns of each single-valued field.
    counters_ : dict of str -> KeyCounter
    history_ : dict of str -> LeaveSelfOutHistory
    group_codes_ : dict of str -> ndarray
        Advertiser and product-type code of each aid.
    sparse_names_, dense_names_ : list of str
    n_raw_ : int
        Leading sparse columns that form the raw set.
    categorical_ : list of str
        Dense columns that are category ids.
    ctr_spec_ : CTRSpec
    layout_ : DesignLayout
        Column counts of the sparse, dense and CTR blocks (see :mod:`features.design`).
    """

    def __init__(
        self, missing_threshold: float = 0.9, min_df: int = 20, ctr_smoothing: float = 20.0,
        chunk_rows: int = 500_000, ctr_aggregations: tuple[str, ...] = CTR_AGGREGATIONS,
    ) -> None:
        self.missing_threshold = missing_threshold
        self.min_df = min_df
        self.ctr_smoothing = ctr_smoothing
        self.chunk_rows = chunk_rows
        self.ctr_aggregations = ctr_aggregations

    # ------------------------------------------------------------------ fit
    def fit(self, users: UserMatrix, ads: AdTable, train: Pairs, test: Pairs) -> PairFeaturizer:
        """Learn the pruning, vocabularies, counts and history from the loaded pairs.

        Parameters
        ----------
        users : UserMatrix
        ads : AdTable
        train, test : Pairs
            Pairs from the load stage (train with labels). The test pairs only
            add to label-free counts.
        """
        if train.label is None:
            raise ValueError("the training pairs need labels")
        y = np.asarray(train.label, dtype=np.float64)
        self.fields_ = [FieldBlock(f.name, f.offset, f.values, f.df, f.kind) for f in users.fields]
        slices = [(f.name, f.offset, f.stop) for f in users.fields]
        self.missing_ = MissingRatePruner(threshold=self.missing_threshold, fields=slices)
        self.frequency_ = FrequencyPruner(min_df=self.min_df)
        weight = np.bincount(train.user_row, minlength=users.n_users).astype(np.float64)
        single_of_user = np.empty((users.n_users, len(self._singles())), dtype=np.int32)
        for rows in tqdm(
            list(row_chunks(users.n_users, self.chunk_rows)), desc="fit features", unit="chunk", disable=None
        ):
            X = users.row_range(rows)
            single_of_user[rows] = field_codes(X, self.fields_)[0]
            if weight[rows].any():
                self.missing_.partial_fit(X, sample_weight=weight[rows])
                self.frequency_.partial_fit(X, sample_weight=weight[rows])
        self.kept_cols_ = np.flatnonzero(self.missing_.get_support() & self.frequency_.get_support())
        self.kept_fields_ = []
        for f in self.fields_:
            a, b = np.searchsorted(self.kept_cols_, [f.offset, f.stop])
            if b > a:
                self.kept_fields_.append((f.name, f.kind, int(a), int(b)))

        self.aids_ = ads.aids.copy()
        self.ad_onehot_, ad_names = ad_one_hot(ads)
        n_aids = len(self.aids_)
        self.group_codes_ = {g: _codes(ads.frame[col].to_numpy()) for g, col in
                             (("advertiser", "advertiserId"), ("productType", "productType"))}

        single_train, single_test = single_of_user[train.user_row], single_of_user[test.user_row]
        del single_of_user
        self.counters_ = {}
        for j, f in enumerate(self._singles()):
            if f.size == 0:
                continue
            keys = np.concatenate([self._cross_id(j, single_train[:, j], train.aid_idx),
                                   self._cross_id(j, single_test[:, j], test.aid_idx)])
            self.counters_[f.name] = KeyCounter().fit(keys[:, None])
        self.counters_["uid"] = KeyCounter().fit(np.r_[train.uid, test.uid][:, None])

        self.history_ = {}
        for g in ("all", *self.group_codes_):
            key = self._history_key(g, train.uid, train.aid_idx)
            self.history_[g] = LeaveSelfOutHistory().fit(key[:, None], y)

        self.cross_keep_ = {}
        for j, f in enumerate(self._singles()):
            local, width = self._kept_local(j, single_train[:, j])
            if local is None:
                continue
            ok = local >= 0
            counts = np.bincount(
                train.aid_idx[ok].astype(np.int64) * width + local[ok], minlength=n_aids * width
            )
            self.cross_keep_[f.name] = np.flatnonzero(counts >= self.min_df)

        self._names(ad_names)
        logger.info(
            "features fitted: %s kept user columns of %s; dropped fields: %s",
            f"{len(self.kept_cols_):,}", f"{users.n_cols:,}", ", ".join(self.missing_.dropped_fields_) or "none",
        )
        return self

    def _singles(self) -> list[FieldBlock]:
        return [f for f in self.fields_ if f.kind == "single"]

    def _cross_id(self, j: int, col: np.ndarray, aid_idx: np.ndarray) -> np.ndarray:
        """``aid x value`` id of single field ``j``: 0 within an aid means absent."""
        f = self._singles()[j]
        return np.asarray(aid_idx, dtype=np.int64) * (f.size + 1) + np.where(col >= 0, col - f.offset + 1, 0)

    def _kept_local(self, j: int, col: np.ndarray) -> tuple[np.ndarray | None, int]:
        """Position of each column inside its field's kept block (-1: dropped or absent)."""
        f = self._singles()[j]
        block = [(a, b) for name, _, a, b in self.kept_fields_ if name == f.name]
        if not block:
            return None, 0
        a, b = block[0]
        pos = sorted_index(self.kept_cols_, col)
        return np.where(pos >= 0, pos - a, -1), b - a

    def _history_key(self, group: str, uid: np.ndarray, aid_idx: np.ndarray) -> np.ndarray:
        if group == "all":
            return np.asarray(uid, dtype=np.int64)
        codes = self.group_codes_[group]
        return np.asarray(uid, dtype=np.int64) * (int(codes.max()) + 1) + codes[aid_idx]

    def _names(self, ad_names: list[str]) -> None:
        user_names = []
        for f in self.fields_:
            user_names += [f"{f.name}={v}" for v in f.values.tolist()]
        kept_names = [user_names[c] for c in self.kept_cols_]
        self.n_raw_ = 1 + len(ad_names) + len(kept_names)
        cross_names = []
        for name, _, a, b in self.kept_fields_:
            if name in self.cross_keep_:
                cross_names += [f"aid{j // (b - a)}_x_{kept_names[a + j % (b - a)]}" for j in self.cross_keep_[name]]
        self.sparse_names_ = ["aid_idx"] + ad_names + kept_names + cross_names
        dense = ["aid_idx"]
        for f in self.fields_:
            dense += ([f.name] if f.kind == "single" else []) + [f"len_{f.name}"]
        for f in self._singles():
            if f.name in self.counters_:
                dense += [f"aid_x_{f.name}", f"count_aid_x_{f.name}"]
        dense += ["count_uid"]
        for g in self.history_:
            dense += [f"hist_{g}_pos", f"hist_{g}_neg"]
        self.dense_names_ = dense
        self.categorical_ = ["aid_idx"] + [f"aid_x_{f.name}" for f in self._singles() if f.name in self.counters_]
        user_start = 1 + len(ad_names)
        self.ctr_spec_ = CTRSpec(
            fields=[(name, kind, user_start + a, user_start + b) for name, kind, a, b in self.kept_fields_],
            groups={"aid": list(range(len(self.aids_))),
                    **{g: codes.tolist() for g, codes in self.group_codes_.items()}},
            smoothing=self.ctr_smoothing,
            aggregations=tuple(self.ctr_aggregations),
        )
        self.layout_ = DesignLayout(
            n_raw=self.n_raw_, n_dense=len(dense), n_ctr=self.ctr_spec_.n_out,
            dense_categorical=tuple(dense.index(c) for c in self.categorical_),
        )

    # ------------------------------------------------------------ transform
    def transform(
        self, aid_idx: np.ndarray, uid: np.ndarray, X: sp.csr_matrix, y: np.ndarray | None = None,
        tokens_only: bool = False,
    ) -> tuple[sp.csr_matrix, np.ndarray]:
        """The sparse (float32 CSR) and dense (float32) rows of a chunk of pairs.

        Parameters
        ----------
        aid_idx : ndarray of int
            Row of each pair's aid in :attr:`aids_`.
        uid : ndarray of int
        X : csr_matrix
            The pair's user tokens in the columns of :attr:`fields_`.
        y : ndarray of {0, 1}, optional
            Given for the training pairs only: their history leaves their own
            label out.
        tokens_only : bool, default=False
            Fill only the user-token columns of the sparse rows (in their
            places), leaving the aid, ad and cross columns empty: all that the
            conversion-rate statistics read, for callers whose models read no
            sparse-set column themselves (the dense set). Saves the
            concatenation of the blocks and the crosses.
        """
        aid_idx = np.asarray(aid_idx, dtype=np.int64)
        n = len(aid_idx)
        X = sp.csr_matrix(X)
        single, lengths = field_codes(X, self.fields_)
        dense: list[np.ndarray] = [aid_idx.astype(np.float64)]
        j = 0
        for k, f in enumerate(self.fields_):
            if f.kind == "single":
                col = single[:, j]
                dense.append(np.where(col >= 0, f.values[np.maximum(col - f.offset, 0)], -1).astype(np.float64))
                j += 1
            dense.append(lengths[:, k].astype(np.float64))
        for j, f in enumerate(self._singles()):
            if f.name in self.counters_:
                key = self._cross_id(j, single[:, j], aid_idx)
                dense += [key.astype(np.float64), self.counters_[f.name].transform(key[:, None])[:, 0]]
        dense.append(self.counters_["uid"].transform(np.asarray(uid, dtype=np.int64)[:, None])[:, 0])
        for g, hist in self.history_.items():
            values = hist.transform(self._history_key(g, uid, aid_idx)[:, None])
            if y is not None:
                y64 = np.asarray(y, dtype=np.float64)
                values = np.column_stack([values[:, 0] - y64, values[:, 1] - (1.0 - y64)])
            dense += [values[:, 0], values[:, 1]]
        dense_arr = np.column_stack(dense).astype(np.float32)

        lut = np.full(X.shape[1], -1, dtype=np.int64)
        lut[self.kept_cols_] = np.arange(len(self.kept_cols_))
        new = lut[X.indices]
        keep = new >= 0
        row_nnz = np.bincount(np.repeat(np.arange(n), np.diff(X.indptr))[keep], minlength=n)
        user_indptr = np.r_[0, np.cumsum(row_nnz)]
        if tokens_only:  # the user block in its place of the sparse set, nothing else
            start = 1 + self.ad_onehot_.shape[1]
            return sp.csr_matrix(
                (np.ones(int(keep.sum()), np.float32), (new[keep] + start).astype(np.int32), user_indptr),
                shape=(n, len(self.sparse_names_)),
            ), dense_arr
        user = sp.csr_matrix(
            (np.ones(int(keep.sum()), np.float32), new[keep], user_indptr), shape=(n, len(self.kept_cols_)),
        )
        blocks = [sp.csr_matrix(aid_idx.astype(np.float32)[:, None]), self.ad_onehot_[aid_idx], user]
        for j, f in enumerate(self._singles()):
            if f.name not in self.cross_keep_:
                continue
            keep_cols = self.cross_keep_[f.name]
            local, width = self._kept_local(j, single[:, j])
            cross = np.where(local >= 0, aid_idx * width + local, -1)
            pos = sorted_index(keep_cols, cross)
            hit = pos >= 0
            blocks.append(sp.csr_matrix(
                (np.ones(int(hit.sum()), np.float32), pos[hit], np.r_[0, np.cumsum(hit)]),
                shape=(n, len(keep_cols)),
            ))
        sparse = sp.hstack(blocks, format="csr", dtype=np.float32)
        return sparse, dense_arr


def _codes(values: np.ndarray) -> np.ndarray:
    return np.unique(values, return_inverse=True)[1].ravel().astype(np.int64)
