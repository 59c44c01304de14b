"""The compiled tree evaluator against LightGBM's own predictor (the reference)."""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import pytest
import scipy.sparse as sp

from ensemble import EasyEnsembleLGBM
from ensemble._forest import Forest


def _data(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """A categorical column 0 (NaN in it too), NaN and exact zeros in numeric columns."""
    X = rng.normal(size=(n, 6))
    X[:, 0] = rng.integers(0, 70, n)
    X[::7, 0] = np.nan
    X[::5, 1] = np.nan
    X[::3, 2] = 0.0
    y = (((X[:, 0] % 3) == 0) ^ (X[:, 2] > 0) | (np.nan_to_num(X[:, 1]) > 1)).astype(int)
    return X, y


def _odd_rows(rng: np.random.Generator, n: int) -> np.ndarray:
    """Rows LightGBM's rules decide: unseen, negative, fractional (-0.4 is category 0) and NaN categories,
    NaN where training had none, zeros."""
    T, _ = _data(rng, n)
    T[:, 0] = rng.integers(-3, 90, n).astype(float)
    T[::4, 0] += 0.6
    T[::11, 0] = np.nan
    T[::13, 3] = np.nan
    T[::6, 4] = 0.0
    return T


@pytest.mark.parametrize("missing", [{}, {"zero_as_missing": True}, {"use_missing": False}])
@pytest.mark.parametrize("num_iteration", [None, 17])
def test_scores_equal_lightgbm(missing: dict, num_iteration: int | None) -> None:
    rng = np.random.default_rng(0)
    X, y = _data(rng, 4000)
    params = {"objective": "binary", "verbose": -1, "num_leaves": 15, "min_data_per_group": 5, "cat_smooth": 1.0,
              "max_cat_threshold": 32, **missing}
    booster = lgb.train(params, lgb.Dataset(X, y, categorical_feature=[0]), 40)
    forest = Forest.from_booster(booster, num_iteration)
    assert len(forest.roots) == (num_iteration or 40) and (forest.flags & 4).any()  # categorical splits present
    for T in (X, _odd_rows(rng, 3000)):
        for dtype in (np.float64, np.float32):
            A = T.astype(dtype)
            want = booster.predict(A, num_iteration=num_iteration, raw_score=True)
            np.testing.assert_allclose(forest.raw_score(A), want, rtol=0, atol=1e-12)
            np.testing.assert_allclose(forest.predict(A), booster.predict(A, num_iteration=num_iteration),
                                       rtol=0, atol=1e-12)


def test_a_single_leaf_tree_and_a_wrong_width() -> None:
    X = np.zeros((50, 3))
    booster = lgb.train({"objective": "binary", "verbose": -1}, lgb.Dataset(X, np.r_[np.zeros(25), np.ones(24), 0]), 3)
    forest = Forest.from_booster(booster)
    assert (forest.roots < 0).all()  # no split possible: every tree is one leaf
    np.testing.assert_allclose(forest.predict(X), booster.predict(X), atol=1e-12)
    with pytest.raises(ValueError, match="3 columns"):
        forest.predict(np.zeros((2, 4)))


def test_not_binary_is_refused() -> None:
    X, y = _data(np.random.default_rng(1), 300)
    booster = lgb.train({"objective": "regression", "verbose": -1}, lgb.Dataset(X, y.astype(float)), 2)
    with pytest.raises(ValueError, match="binary"):
        Forest.from_booster(booster)


def test_the_bags_predict_dense_rows_through_the_forests_and_sparse_rows_through_lightgbm() -> None:
    X, y = _data(np.random.default_rng(2), 3000)
    X = np.nan_to_num(X)  # a sparse matrix cannot hold NaN as "missing" the same way
    est = EasyEnsembleLGBM(n_bags=2, n_estimators=30, categorical_feature=[0], n_jobs=1).fit(X, y)
    assert [len(f.roots) for f in est.forests_] == [b.best_iteration or b.current_iteration() for b in est.estimators_]
    dense = est.predict_proba(X)[:, 1]
    legacy = EasyEnsembleLGBM(n_bags=2, n_estimators=30, categorical_feature=[0], n_jobs=1).fit(X, y)
    del legacy.forests_  # a model saved before the forests existed: LightGBM's predictor
    np.testing.assert_allclose(legacy.predict_proba(X)[:, 1], dense, atol=1e-12)
    np.testing.assert_allclose(est.predict_proba(sp.csr_matrix(X))[:, 1], dense, atol=1e-12)
