"""Combiners: the within-aid rank map, blend weights and the stack, row by row."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import rankdata

from ensemble._blend import AidRank, Blend, Stack, nested_oof
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
        assert blend.weights_[0] > 0.8 and blend.weights_.sum() == pytest.approx(1.0)
        assert per_aid_auc(y, blend.predict(P, aid), aid).mean > per_aid_auc(y, P[:, 1], aid).mean + 0.2


def test_blend_weights_from_a_row_sample_are_seeded_and_still_find_the_informative_model() -> None:
    P, y, aid = _data(1)
    a = Blend("rank", max_rows=300, seed=3).fit(P, y, aid)
    b = Blend("rank", max_rows=300, seed=3).fit(P, y, aid)
    assert np.array_equal(a.weights_, b.weights_) and a.weights_[0] > 0.8
    assert not np.array_equal(a.weights_, Blend("rank").fit(P, y, aid).weights_)  # the sample is what it fitted


def test_stack_equals_logistic_regression_and_is_row_independent() -> None:
    P, y, aid = _data(2)
    stack = Stack().fit(P, y, aid)
    full = stack.predict(P, aid)
    assert np.allclose(full, stack.meta_.predict_proba(stack._features(P, aid))[:, 1], rtol=0, atol=1e-12)
    assert np.array_equal(np.concatenate([stack.predict(P[i : i + 11], aid[i : i + 11]) for i in range(0, 900, 11)]), full)


def test_stack_by_seed_size_weights_models_differently_for_large_and_small_seeds() -> None:
    """Model 0 ranks well in large seeds only, model 1 in small seeds only."""
    rng = np.random.default_rng(4)
    aid = np.repeat(np.arange(8), 1500)
    big = aid < 4
    y = (rng.random(len(aid)) < np.where(big, 0.3, 0.03)).astype(int)
    signal = 2.0 * y + rng.standard_normal(len(aid))
    noise = rng.standard_normal(len(aid))
    P = 1 / (1 + np.exp(-np.column_stack([np.where(big, signal, noise), np.where(big, noise, signal)])))
    stack = Stack(by_seed_size=True).fit(P, y, aid)
    w = stack.rank_weights(np.arange(8))
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
