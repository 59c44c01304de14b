"""Per-aid models: estimator contract, fallback, init-score boosting, when per-aid wins and when it loses."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.utils.estimator_checks import parametrize_with_checks

from ensemble import EasyEnsembleLGBM, PerAidLGBM, ReferenceLGBM, per_aid_auc

FAST = dict(n_bags=2, n_estimators=60, params={"min_child_samples": 5, "num_leaves": 7}, n_jobs=1,
            early_stopping_rounds=10)


@parametrize_with_checks(
    [PerAidLGBM(ReferenceLGBM(**FAST), min_positives=2), PerAidLGBM(EasyEnsembleLGBM(**FAST), hybrid=True)],
)
def test_sklearn_contract(estimator, check) -> None:  # noqa: ANN001
    check(estimator)


def _tastes(n_aids: int, rows: int, shared: bool, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Column 0 the aid; 6 user features. ``shared``: every aid's converters like the same
    features; else odd aids' converters avoid what even aids' converters like."""
    rng = np.random.default_rng(seed)
    taste = rng.standard_normal(6) * 1.5
    aid = np.repeat(np.arange(n_aids), rows)
    U = rng.standard_normal((len(aid), 6))
    w = taste[None, :] * (1 if shared else np.where(aid % 2 == 0, 1.0, -1.0)[:, None])
    logit = -2.0 + (U * w).sum(axis=1)
    y = (rng.random(len(aid)) < 1 / (1 + np.exp(-logit))).astype(int)
    return np.column_stack([aid, U]), y


def _held_out_auc(model, X, y) -> float:  # noqa: ANN001
    fit = np.arange(len(y)) % 3 != 0
    model.fit(X[fit], y[fit])
    return per_aid_auc(y[~fit], model.predict_proba(X[~fit])[:, 1], X[~fit, 0]).mean


def test_per_aid_model_wins_when_aids_have_opposite_tastes() -> None:
    X, y = _tastes(n_aids=12, rows=1500, shared=False, seed=0)
    base = ReferenceLGBM(**{**FAST, "n_estimators": 150})
    glob = _held_out_auc(base, X, y)
    per = _held_out_auc(PerAidLGBM(base, min_positives=20), X, y)
    assert per > glob + 0.02, (per, glob)


def test_global_or_hybrid_wins_when_aids_share_a_taste_but_have_few_rows() -> None:
    X, y = _tastes(n_aids=40, rows=120, shared=True, seed=1)
    base = ReferenceLGBM(**{**FAST, "n_estimators": 150})
    glob = _held_out_auc(base, X, y)
    per = _held_out_auc(PerAidLGBM(base, min_positives=5), X, y)
    hybrid = _held_out_auc(PerAidLGBM(base, min_positives=5, hybrid=True), X, y)
    assert max(glob, hybrid) > per + 0.02, (glob, hybrid, per)


def test_small_seeds_fall_back_to_the_global_model() -> None:
    X, y = _tastes(n_aids=4, rows=400, shared=True, seed=2)
    small = X[:, 0] == 3
    y[small] = 0
    y[np.flatnonzero(small)[:3]] = 1  # aid 3: three positives
    model = PerAidLGBM(ReferenceLGBM(**FAST), min_positives=10).fit(X, y)
    assert model.fallback_ == [3.0]
    assert sorted(model.models_) == [0.0, 1.0, 2.0]
    rows = X[:, 0] == 3
    assert np.array_equal(model.predict_proba(X[rows]), model.global_.predict_proba(X[rows]))
    rows = X[:, 0] == 1
    assert np.array_equal(model.predict_proba(X[rows]), model.models_[1.0].predict_proba(X[rows]))


def test_parallel_aids_give_the_same_model() -> None:
    X, y = _tastes(n_aids=4, rows=400, shared=False, seed=3)
    a = PerAidLGBM(ReferenceLGBM(**FAST), min_positives=10, hybrid=True).fit(X, y).predict_proba(X)
    b = PerAidLGBM(ReferenceLGBM(**FAST), min_positives=10, hybrid=True, n_jobs=2).fit(X, y).predict_proba(X)
    assert np.array_equal(a, b)


@pytest.mark.parametrize("kind", [ReferenceLGBM, EasyEnsembleLGBM])
def test_boosting_from_an_init_score_starts_from_it(kind) -> None:  # noqa: ANN001
    """With no trees to add, the model returns the init score's probabilities at full balance."""
    X, y = _tastes(n_aids=1, rows=2000, shared=True, seed=4)
    init = np.random.default_rng(0).normal(-2.0, 1.0, len(y))
    est = kind(**{**FAST, "n_estimators": 1, "params": {**FAST["params"], "learning_rate": 1e-12}}).fit(X, y, init_score=init)
    np.testing.assert_allclose(est.predict_proba(X, init_score=init)[:, 1], 1 / (1 + np.exp(-init)), rtol=1e-6)
    with pytest.raises(ValueError, match="init_score"):
        est.predict_proba(X)
    with pytest.raises(ValueError, match="init_score"):
        kind(**FAST).fit(X, y, init_score=init[:-1])
