"""Pruning selectors against naive references, and scikit-learn's estimator checks."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.utils.estimator_checks import parametrize_with_checks

from features import FrequencyPruner, MissingRatePruner


@parametrize_with_checks([MissingRatePruner(), FrequencyPruner(min_df=2)])
def test_sklearn_contract(estimator, check) -> None:  # noqa: ANN001
    """All of scikit-learn's checks; it skips its array-API check itself (we claim no support)."""
    check(estimator)


def _random_sparse(rng: np.random.Generator, n: int = 60, d: int = 12) -> sp.csr_matrix:
    dense = (rng.random((n, d)) < 0.3) * rng.integers(1, 3, size=(n, d))
    dense[:, 4:6] = 0
    dense[rng.random(n) < 0.5, 6:9] = 0
    return sp.csr_matrix(dense.astype(np.float32))


@pytest.mark.parametrize("seed", range(3))
def test_missing_rate_matches_a_naive_loop(seed: int) -> None:
    rng = np.random.default_rng(seed)
    X = _random_sparse(rng)
    fields = [("a", 0, 4), ("b", 4, 6), ("c", 6, 9), ("d", 9, 12)]
    sel = MissingRatePruner(threshold=0.6, fields=fields).fit(X)
    dense = X.toarray()
    for (name, a, b), rate in zip(fields, sel.missing_rate_):
        naive = sum(1 for row in dense if not any(v != 0 for v in row[a:b])) / len(dense)
        assert rate == pytest.approx(naive), name
    expect = np.concatenate([np.full(b - a, r <= 0.6) for (_, a, b), r in zip(fields, sel.missing_rate_)])
    assert np.array_equal(sel.get_support(), expect)
    assert "b" in sel.dropped_fields_  # an all-empty field is 100% missing
    assert np.array_equal(sel.transform(X).toarray(), dense[:, expect])
    # same answer on dense input
    assert np.allclose(MissingRatePruner(threshold=0.6, fields=fields).fit(dense).missing_rate_, sel.missing_rate_)


def test_zero_id_column_counts_as_present() -> None:
    """Id 0 has its own column (a value); only an all-zero block is missing."""
    X = sp.csr_matrix(np.array([[1, 0], [0, 0], [0, 1]], dtype=np.float32))  # columns: id 0, id 1
    sel = MissingRatePruner(threshold=0.5, fields=[("age", 0, 2)]).fit(X)
    assert sel.missing_rate_.tolist() == [pytest.approx(1 / 3)]


@pytest.mark.parametrize("min_df", [1, 5, 20])
def test_frequency_pruner_matches_column_counts(min_df: int) -> None:
    X = _random_sparse(np.random.default_rng(7))
    X.data[0] = 0.0  # an explicit stored zero is not a document
    sel = FrequencyPruner(min_df=min_df).fit(X)
    naive = np.array([sum(1 for v in X.toarray()[:, j] if v != 0) for j in range(X.shape[1])])
    assert np.array_equal(sel.df_, naive)
    assert np.array_equal(sel.get_support(), naive >= min_df)


def test_default_threshold_drops_exactly_the_sparse_fields(tiny_raw) -> None:  # noqa: ANN001
    """On data shaped like the competition's, the configured default keeps every
    field but interest3/4, kw3, topic3 and the two appId lists."""
    from pipeline.config import load_config
    from pipeline.readers import parse_users

    users = parse_users(tiny_raw / "userFeature.data")
    threshold = load_config("config/default.toml").features.missing_threshold
    fields = [(f.name, f.offset, f.stop) for f in users.fields]
    sel = MissingRatePruner(threshold=threshold, fields=fields).fit(users.csr())
    assert sorted(sel.dropped_fields_) == sorted(
        ["interest3", "interest4", "kw3", "topic3", "appIdInstall", "appIdAction"]
    )
    assert "house" not in sel.dropped_fields_  # 82% absent, but kept


@pytest.mark.parametrize("pruner", [
    MissingRatePruner(threshold=0.5, fields=[("a", 0, 4), ("b", 4, 6), ("c", 6, 9), ("d", 9, 12)]),
    FrequencyPruner(min_df=6),
])
def test_weights_and_batches_equal_fitting_the_repeated_rows(pruner) -> None:  # noqa: ANN001
    """Distinct users weighted by their pair counts, fed in batches, give the
    same statistics as the pair-level matrix (how the features stage fits)."""
    from sklearn.base import clone

    rng = np.random.default_rng(3)
    X = _random_sparse(rng, n=40)
    w = rng.integers(0, 4, size=40)
    repeated = clone(pruner).fit(X[np.repeat(np.arange(40), w)])
    batched = clone(pruner)
    for a in range(0, 40, 15):
        batched.partial_fit(X[a : a + 15], sample_weight=w[a : a + 15])
    weighted = clone(pruner).fit(X, sample_weight=w)
    attr = "missing_rate_" if isinstance(pruner, MissingRatePruner) else "df_"
    for est in (batched, weighted):
        assert np.allclose(getattr(est, attr), getattr(repeated, attr))
        assert np.array_equal(est.get_support(), repeated.get_support())
    assert weighted.fit(X).get_support().shape == (12,)  # refit forgets earlier batches
    assert np.allclose(getattr(weighted, attr), getattr(clone(pruner).fit(X), attr))
