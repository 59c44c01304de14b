"""Combiners: the within-aid rank map, blend weights and the stack, row by row."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import rankdata

from ensemble._blend import AidRank, Blend, Stack, fit_blend_weights, nested_oof
from ensemble.metrics import per_aid_auc


def _data(seed: int = 0, n: int = 900):  # noqa: ANN202
    rng = np.random.default_rng(seed)
    aid = rng.integers(0, 4, size=n) * 10 + 3
    y = (rng.random(n) < 0.2).astype(int)
    good = 1 / (1 + np.exp(-(2 * y + rng.standard_normal(n) + aid / 10)))  # aid shifts the scale
    noise = rng.random(n)
    return np.column_stack([good, noise]), y, aid


def test_aid_rank_is_the_within_aid_empirical_cdf() -> None:
    P, _, aid = _data()
    Z = AidRank(n_quantiles=2001).fit(P, aid).transform(P, aid)
    for a in np.unique(aid):
        m = aid == a
        for j in range(P.shape[1]):
            naive = (rankdata(P[m, j]) - 1) / (m.sum() - 1)  # position among the aid's scores
            assert np.abs(Z[m, j] - naive).max() < 2e-3
            assert np.array_equal(rankdata(Z[m, j]), rankdata(P[m, j]))  # same order, no new ties


def test_aid_rank_maps_each_row_alone_and_refuses_unknown_aids() -> None:
    P, _, aid = _data()
    rank = AidRank().fit(P[:600], aid[:600])
    whole = rank.transform(P, aid)
    assert np.array_equal(rank.transform(P[::7], aid[::7]), whole[::7])
    assert np.all(np.diff(rank.transform(np.linspace(-1, 2, 50)[:, None].repeat(2, 1), np.full(50, 3))[:, 0]) > 0)
    with pytest.raises(ValueError, match="never seen"):
        rank.transform(P[:3], np.array([3, 13, 99]))


def test_blend_puts_its_weight_on_the_informative_model() -> None:
    P, y, aid = _data(1)
    for method in ("rank", "score"):
        blend = Blend(method).fit(P, y, aid)
        assert blend.weights_.shape == (1, 2) and blend.size_edges_.size == 0
        assert blend.weights_[0, 0] > 0.8 and blend.weights_.sum() == pytest.approx(1.0)
        assert per_aid_auc(y, blend.predict(P, aid), aid).mean > per_aid_auc(y, P[:, 1], aid).mean + 0.2


def test_blend_weights_from_a_row_sample_are_seeded_and_still_find_the_informative_model() -> None:
    P, y, aid = _data(1)
    a = Blend("rank", max_rows=300, seed=3).fit(P, y, aid)
    b = Blend("rank", max_rows=300, seed=3).fit(P, y, aid)
    assert np.array_equal(a.weights_, b.weights_) and a.weights_[0, 0] > 0.8
    assert not np.array_equal(a.weights_, Blend("rank").fit(P, y, aid).weights_)  # the sample is what it fitted


def test_stack_equals_logistic_regression_and_is_row_independent() -> None:
    P, y, aid = _data(2)
    stack = Stack().fit(P, y, aid)
    full = stack.predict(P, aid)
    assert np.allclose(full, stack.meta_.predict_proba(stack._features(P, aid))[:, 1], rtol=0, atol=1e-12)
    assert np.array_equal(np.concatenate([stack.predict(P[i : i + 11], aid[i : i + 11]) for i in range(0, 900, 11)]), full)


def _sized(n_aids: int, seed: int = 4):  # noqa: ANN202
    """Model 0 ranks well in large seeds only (the first half of the aids), model 1 in small seeds only."""
    rng = np.random.default_rng(seed)
    aid = np.repeat(np.arange(n_aids), 1500)
    big = aid < n_aids // 2
    y = (rng.random(len(aid)) < np.where(big, 0.3, 0.03)).astype(int)
    signal = 2.0 * y + rng.standard_normal(len(aid))
    noise = rng.standard_normal(len(aid))
    P = 1 / (1 + np.exp(-np.column_stack([np.where(big, signal, noise), np.where(big, noise, signal)])))
    return P, y, aid


def test_stack_by_seed_size_weights_models_differently_for_large_and_small_seeds() -> None:
    P, y, aid = _sized(8)
    stack = Stack(by_seed_size=True).fit(P, y, aid)
    w = stack.model_weights(np.arange(8))
    assert (w[:4, 0] > w[:4, 1]).all() and (w[4:, 1] > w[4:, 0]).all()
    plain = per_aid_auc(y, Stack().fit(P, y, aid).predict(P, aid), aid).mean
    assert per_aid_auc(y, stack.predict(P, aid), aid).mean > plain + 0.05
    assert np.array_equal(np.concatenate([stack.predict(P[i : i + 7], aid[i : i + 7]) for i in range(0, 700, 7)]),
                          stack.predict(P[:700], aid[:700]))


def test_nested_oof_never_fits_on_the_scored_fold() -> None:
    """With random labels, an honest nested stack scores about 0.5."""
    rng = np.random.default_rng(3)
    P, _, aid = _data(3, n=3000)
    y = (rng.random(3000) < 0.3).astype(int)
    folds = rng.integers(0, 5, size=3000)
    for kind in ("stack", "blend_rank"):
        assert abs(per_aid_auc(y, nested_oof(P, y, aid, folds, kind), aid).mean - 0.5) < 0.04


@pytest.mark.parametrize("method", ["rank", "score"])
def test_blend_by_seed_size_fits_weights_per_size_class(method: str) -> None:
    P, y, aid = _sized(24)
    blend = Blend(method, by_seed_size=True, n_size_bins=2, min_aids_per_bin=5).fit(P, y, aid)
    assert blend.weights_.shape == (2, 2) and np.allclose(blend.weights_.sum(axis=1), 1.0)
    assert np.array_equal(blend.size_bin_, (np.arange(24) < 12).astype(int))  # the large seeds are class 1
    w = blend.model_weights(np.arange(24))
    assert (w[:12, 0] > 0.8).all() and (w[12:, 1] > 0.8).all()
    plain = per_aid_auc(y, Blend(method).fit(P, y, aid).predict(P, aid), aid).mean
    assert per_aid_auc(y, blend.predict(P, aid), aid).mean > plain + 0.05
    assert np.array_equal(np.concatenate([blend.predict(P[i : i + 7], aid[i : i + 7]) for i in range(0, 700, 7)]),
                          blend.predict(P[:700], aid[:700]))
    with pytest.raises(ValueError, match="never seen"):
        blend.predict(P[:2], np.array([0, 99]))


def test_blend_size_classes_split_aids_by_positives_and_each_class_is_searched_alone() -> None:
    """Against the obvious reference: sort the aids by positives, split at the edges, search each class's rows."""
    rng = np.random.default_rng(5)
    n_aids = 37
    aid = rng.integers(0, n_aids, size=20_000)
    y = (rng.random(len(aid)) < rng.uniform(0.01, 0.3, n_aids)[aid]).astype(int)
    P = np.column_stack([y + rng.standard_normal(len(aid)) * rng.uniform(0.5, 3, n_aids)[aid],
                         y + rng.standard_normal(len(aid))])
    blend = Blend("score", by_seed_size=True, n_size_bins=3, min_aids_per_bin=10).fit(P, y, aid)
    positives = np.array([y[aid == a].sum() for a in range(n_aids)])
    cls = blend.size_bin_
    assert cls.max() == 2 and all(10 <= (cls == b).sum() <= 14 for b in range(3))
    for b in range(2):  # every aid of a class has fewer positives than every aid of the next
        assert positives[cls == b].max() < positives[cls == b + 1].min()
    for b in range(3):
        rows = np.isin(aid, np.flatnonzero(cls == b))
        assert np.array_equal(blend.weights_[b], fit_blend_weights(P[rows], y[rows], aid[rows]))
    few = Blend("score", by_seed_size=True, n_size_bins=3, min_aids_per_bin=20).fit(P, y, aid)
    assert few.weights_.shape == (1, 2)  # 37 aids: one class of at least 20


def test_blend_weights_are_equal_where_no_aid_can_be_ranked() -> None:
    P, y, aid = _data(1)
    assert np.array_equal(fit_blend_weights(P, np.zeros_like(y), aid), [0.5, 0.5])
