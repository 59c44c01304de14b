"""The compiled CTR encoder against the reference (one SparseTargetEncoder per group x field), and its contract."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.utils.estimator_checks import (
    check_get_params_invariance,
    check_no_attributes_set_in_init,
)

from features import CTR_AGGREGATIONS, CTREncoder, CTRSpec
from features.reference import SparseTargetEncoder
from pipeline.io import CSRChunkWriter, CSRRowReader

AGGS = CTR_AGGREGATIONS


def _cross(block: sp.csr_matrix, group: np.ndarray, n_groups: int) -> sp.csr_matrix:
    """``group x token`` columns, by a Python loop over the rows."""
    rows, cols = [], []
    for i in range(block.shape[0]):
        for j in block.indices[block.indptr[i] : block.indptr[i + 1]]:
            rows.append(i)
            cols.append(group[i] * block.shape[1] + j)
    return sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(block.shape[0], n_groups * block.shape[1]))


def _reference(spec: CTRSpec, fit_X, fit_aid, y, folds, other_X, other_aid) -> tuple[np.ndarray, np.ndarray]:  # noqa: ANN001
    """Cross-fitted statistics of the fitting rows and full-fit statistics of other rows."""
    fit_cols, other_cols = [], []
    for codes in spec.groups.values():
        gcode = np.asarray(codes)
        n_groups = int(gcode.max()) + 1
        for _, kind, start, stop in spec.fields:
            enc = SparseTargetEncoder(
                smoothing=spec.smoothing, aggregations=spec.aggs(kind), folds=folds,
                column_groups=np.repeat(np.arange(n_groups), stop - start),
            )
            fit_cols.append(enc.fit_transform(_cross(fit_X[:, start:stop].tocsr(), gcode[fit_aid], n_groups), y))
            other_cols.append(enc.transform(_cross(other_X[:, start:stop].tocsr(), gcode[other_aid], n_groups)))
    return np.hstack(fit_cols).astype(np.float32), np.hstack(other_cols).astype(np.float32)


def _data(seed: int, n: int = 300, n_aids: int = 4):  # noqa: ANN202
    rng = np.random.default_rng(seed)
    # columns 0-1: not a CTR field; 2-5 single-valued; 6-13 multi-valued; 14: unused
    fields = [("age", "single", 2, 6), ("kw", "multi", 6, 14)]
    spec = CTRSpec(fields, {"aid": list(range(n_aids)), "adv": [0, 1, 1, 0][:n_aids]}, 5.0, AGGS)
    rows = []
    for _ in range(n):
        cols = {int(rng.integers(0, 2)), int(rng.integers(2, 6))}
        cols |= set(rng.choice(np.arange(6, 15), size=rng.integers(0, 4), replace=False).tolist())
        rows.append(sorted(cols))
    indptr = np.r_[0, np.cumsum([len(r) for r in rows])]
    X = sp.csr_matrix((rng.integers(1, 3, indptr[-1]).astype(np.float32), np.concatenate(rows), indptr), shape=(n, 15))
    aid = rng.integers(0, n_aids, n)
    # labels that depend on the tokens, so the rates differ
    y = ((X[:, 7].toarray().ravel() > 0) & (rng.random(n) < 0.6) | (rng.random(n) < 0.1)).astype(np.int64)
    folds = rng.integers(0, 4, n)
    return spec, X, aid, y, folds


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_block_matches_one_encoder_per_group_and_field(seed: int) -> None:
    spec, X, aid, y, folds = _data(seed)
    fit, other = np.arange(200), np.arange(200, 300)
    want_fit, want_other = _reference(spec, X[fit], aid[fit], y[fit], folds[fit], X[other], aid[other])
    enc = CTREncoder(spec)
    got_fit = enc.fit_transform(X[fit], y[fit], aid_idx=aid[fit], folds=folds[fit])
    np.testing.assert_allclose(got_fit, want_fit, rtol=1e-6, atol=1e-9, equal_nan=True)
    np.testing.assert_allclose(enc.transform(X[other], aid[other]), want_other, rtol=1e-6, atol=1e-9, equal_nan=True)
    assert got_fit.shape[1] == len(spec.names()) == len(enc.get_feature_names_out())


def test_leaving_folds_out_of_shared_counts_equals_refitting_without_them() -> None:
    """One set of counts gives every outer fold's design: fit rows leave out (k, own fold), others k."""
    spec, X, aid, y, folds = _data(3, n=400)
    enc = CTREncoder(spec, chunk_rows=37).fit(X, y, aid_idx=aid, folds=folds)
    for k in range(4):
        fit, held = np.flatnonzero(folds != k), np.flatnonzero(folds == k)
        want_fit, want_held = _reference(spec, X[fit], aid[fit], y[fit], folds[fit], X[held], aid[held])
        np.testing.assert_allclose(enc.transform(X[fit], aid[fit], k, folds[fit]), want_fit, rtol=1e-6,
                                   equal_nan=True)
        np.testing.assert_allclose(enc.transform(X[held], aid[held], k), want_held, rtol=1e-6, atol=1e-9, equal_nan=True)


def test_pooled_folds_encode_every_fold_bit_for_bit_and_leave_none_out() -> None:
    spec, X, aid, y, folds = _data(5, n=400)
    enc = CTREncoder(spec, chunk_rows=50).fit(X, y, aid_idx=aid, folds=folds)
    pooled = enc.pooled()
    assert pooled.n_folds_ == 1 and pooled.pooled_ and not enc.pooled_
    assert pooled.counts_.shape == (len(enc.counts_), 2, 1) and pooled.counts_.dtype == enc.counts_.dtype
    assert np.array_equal(pooled.transform(X, aid), enc.transform(X, aid), equal_nan=True)
    # the same as the reference fitted on every row
    _, want = _reference(spec, X, aid, y, folds, X, aid)
    np.testing.assert_allclose(pooled.transform(X, aid), want, rtol=1e-6, atol=1e-9, equal_nan=True)
    with pytest.raises(ValueError, match="cannot leave a fold out"):
        pooled.transform(X, aid, 2)
    with pytest.raises(ValueError, match="cannot leave a fold out"):
        pooled.transform(X, aid, -1, folds)


def test_wanted_columns_are_computed_alike_and_the_other_blocks_left_nan() -> None:
    spec, X, aid, y, folds = _data(6, n=300)
    enc = CTREncoder(spec, chunk_rows=40).fit(X, y, aid_idx=aid, folds=folds)
    full = enc.transform(X, aid, 2, folds)
    names = spec.names()
    rng = np.random.default_rng(0)
    for wanted in (np.array([0]), np.array([len(names) - 1]), rng.choice(len(names), 4, replace=False),
                   np.arange(len(names)), np.zeros(0, np.int64)):
        got = enc.transform(X, aid, 2, folds, columns=wanted)
        # a block (group x field) is computed whole when one of its columns is wanted
        blocks = {n.rsplit("_", 1)[0] for n in np.asarray(names)[wanted]}
        computed = np.array([n.rsplit("_", 1)[0] in blocks for n in names])
        assert np.array_equal(got[:, computed], full[:, computed], equal_nan=True)
        assert np.isnan(got[:, ~computed]).all()
        rows = np.arange(0, 300, 7)
        one = enc.transform(X, aid[rows], 2, folds[rows], rows=rows, columns=wanted)
        assert np.array_equal(one, got[rows], equal_nan=True)
    with pytest.raises(ValueError, match="output columns must be in"):
        enc.transform(X, aid, columns=np.array([len(names)]))


def test_rows_do_not_depend_on_the_chunk_or_the_reader(tmp_path) -> None:  # noqa: ANN001
    spec, X, aid, y, folds = _data(4, n=250)
    path = tmp_path / "x.npz"
    writer = CSRChunkWriter(path, X.shape[1])
    for start in range(0, X.shape[0], 60):
        writer.append(X[start : start + 60])
    writer.close()
    whole = CTREncoder(spec).fit(X, y, aid_idx=aid, folds=folds)
    chunked = CTREncoder(spec, chunk_rows=7).fit(CSRRowReader(path), y, aid_idx=aid, folds=folds)
    assert np.array_equal(whole.counts_, chunked.counts_)
    assert np.array_equal(whole.key_map_, chunked.key_map_)
    a = whole.transform(X, aid, 1, folds)
    b = chunked.transform(CSRRowReader(path), aid, 1, folds)
    single = np.vstack([whole.transform(X[i : i + 1], aid[i : i + 1], 1, folds[i : i + 1]) for i in range(20)])
    assert np.array_equal(a, b, equal_nan=True)
    assert np.array_equal(a[:20], single, equal_nan=True)


def test_unseen_tokens_and_columns_outside_the_fields_are_ignored() -> None:
    spec, X, aid, y, folds = _data(5, n=100)
    enc = CTREncoder(spec).fit(X[:, :14], y, aid_idx=aid, folds=folds)  # column 14 never fitted
    extra = sp.csr_matrix(([1.0, 1.0], ([0, 0], [14, 20])), shape=(1, 30))
    out = enc.transform(extra, aid[:1])
    assert np.isnan(out[0, 0])  # aid x age: mean of no known key
    assert (out[0, np.array(spec.names()) == "ctr_aid_kw_count"] == 0).all()


def test_estimator_contract() -> None:
    """__init__ stores its arguments, fit learns, transform refuses an unfitted encoder."""
    spec, X, aid, y, folds = _data(6, n=80)
    enc = CTREncoder(spec, chunk_rows=11)
    check_no_attributes_set_in_init("CTREncoder", enc)
    check_get_params_invariance("CTREncoder", enc)
    assert enc.get_params() == {"spec": spec, "chunk_rows": 11}
    with pytest.raises(NotFittedError):
        enc.transform(X, aid)
    a = clone(enc).fit(X, y, aid_idx=aid, folds=folds).transform(X, aid)
    b = enc.fit(X, y, aid_idx=aid, folds=folds).transform(X, aid)
    assert np.array_equal(a, b, equal_nan=True)
    with pytest.raises(ValueError, match="0/1 labels"):
        CTREncoder(spec).fit(X, aid, aid_idx=y, folds=folds)  # arguments in the wrong order
    with pytest.raises(ValueError, match="rows"):
        CTREncoder(spec).fit(X, y[:-1], aid_idx=aid, folds=folds)


def test_a_spec_refuses_unknown_aggregations() -> None:
    with pytest.raises(ValueError, match="use some of mean, max, count, lor"):
        CTRSpec([("kw", "multi", 0, 3)], {"aid": [0]}, 5.0, ("mean", "median"))
    spec = CTRSpec([("kw", "multi", 0, 3)], {"aid": [0]}, 5.0)
    assert spec.aggregations == CTR_AGGREGATIONS and CTRSpec.from_dict(spec.to_dict()) == spec


def test_long_token_lists_with_extreme_rates_match_the_reference() -> None:
    """The log-odds sum is accumulated as a product of odds: rows of 400 rare-converting tokens drive that
    product past 1e-200, where the kernel must fold it into its log (against the reference's sum of logs)."""
    rng = np.random.default_rng(5)
    n, n_tok = 240, 400
    spec = CTRSpec([("kw", "multi", 0, n_tok)], {"aid": [0, 1]}, 0.5, AGGS)
    X = sp.csr_matrix((rng.random((n, n_tok)) < 0.9).astype(np.float32))
    y = (rng.random(n) < 0.01).astype(np.int64)
    aid, folds = rng.integers(0, 2, n), rng.integers(0, 3, n)
    want_fit, _ = _reference(spec, X, aid, y, folds, X[:1], aid[:1])
    got = CTREncoder(spec).fit_transform(X, y, aid_idx=aid, folds=folds)
    names = spec.names()
    count, top = want_fit[:, names.index("ctr_aid_kw_count")], want_fit[:, names.index("ctr_aid_kw_max")]
    # a row's odds product is below (max / (1 - max)) ** count: beyond 1e-200, the fold-in path ran
    assert (count * np.log(top / (1 - top)) < np.log(1e-200)).mean() > 0.9
    np.testing.assert_allclose(got, want_fit, rtol=1e-5, atol=1e-9, equal_nan=True)
