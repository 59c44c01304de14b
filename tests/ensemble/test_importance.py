"""Gain importance against a walk of the dumped trees (the slow reference)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from ensemble import EasyEnsembleLGBM, PerAidLGBM, gain_importance, group_shares, permuted_columns


def _tree_gains(booster, n_features: int) -> np.ndarray:  # noqa: ANN001
    """Sum of ``split_gain`` per ``split_feature`` over the trees up to the best iteration, by recursion."""
    out = np.zeros(n_features)

    def walk(node: dict) -> None:
        if "split_feature" in node:
            out[node["split_feature"]] += node["split_gain"]
            walk(node["left_child"])
            walk(node["right_child"])

    for tree in booster.dump_model(num_iteration=booster.best_iteration or None)["tree_info"]:
        walk(tree["tree_structure"])
    return out


def _data(n: int = 3000) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(n, 5))
    X[:, 0] = rng.integers(0, 4, n)
    y = ((X[:, 1] + 0.5 * X[:, 2] * (X[:, 0] > 1) + rng.normal(size=n)) > 1.2).astype(int)
    return X, y


def test_bagged_and_per_aid_gains_equal_the_trees_sums() -> None:
    X, y = _data()
    easy = EasyEnsembleLGBM(n_bags=3, n_estimators=30, early_stopping_rounds=5, n_jobs=1).fit(X, y)
    want = sum(_tree_gains(b, X.shape[1]) for b in easy.estimators_)
    np.testing.assert_allclose(gain_importance(easy), want, rtol=1e-6)
    assert want[1] > want[3] and want[1] > want[4]  # the informative column outranks the noise
    per_aid = PerAidLGBM(EasyEnsembleLGBM(n_bags=2, n_estimators=20, n_jobs=1), min_positives=80).fit(X, y)
    parts = [e for e in (per_aid.global_, *per_aid.models_.values()) if e is not None]
    want = sum(_tree_gains(b, X.shape[1]) for e in parts for b in e.estimators_)
    np.testing.assert_allclose(gain_importance(per_aid), want, rtol=1e-6)


def test_group_shares_sum_the_columns_of_each_group() -> None:
    gains = [np.array([1.0, 2.0, 0.0, 5.0]), np.array([1.0, 0.0, 0.0, 1.0])]
    shares = group_shares(gains, ["a", "b", "c", "a"])
    assert list(shares) == ["a", "b"]  # largest first, "c" has no gain
    assert shares == pytest.approx({"a": 8 / 10, "b": 2 / 10})
    with pytest.raises(ValueError, match="4 columns"):
        group_shares(gains, ["a"])


def test_an_estimator_without_trees_is_refused() -> None:
    from sklearn.linear_model import LogisticRegression

    with pytest.raises(TypeError, match="LogisticRegression"):
        gain_importance(LogisticRegression())


@pytest.mark.parametrize("sparse", [False, True])
def test_permuted_columns_move_each_group_with_one_permutation(sparse: bool) -> None:
    rng = np.random.default_rng(0)
    dense = rng.standard_normal((40, 6))
    dense[rng.random((40, 6)) < 0.4] = 0.0
    X = sp.csr_matrix(dense) if sparse else dense.copy()
    groups = {"a": [0, 3], "b": [5]}
    out = list(permuted_columns(X, groups, np.random.default_rng(7)))
    ref_rng = np.random.default_rng(7)
    assert [g for g, _ in out] == ["a", "b"]
    for (name, Xp), cols in zip(out, groups.values(), strict=True):
        perm = ref_rng.permutation(40)  # the permutation the function drew for this group
        got = Xp.toarray() if sparse else Xp
        assert sp.issparse(Xp) is sparse
        for j in range(6):
            want = dense[perm, j] if j in cols else dense[:, j]
            assert np.array_equal(got[:, j], want), (name, j)
    assert np.array_equal(X.toarray() if sparse else X, dense)  # X itself untouched
