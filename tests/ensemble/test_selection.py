"""Column selection of the bagged LightGBM classifiers (``gain_share``): the rule, the pilot, the bags."""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.utils.estimator_checks import parametrize_with_checks

from ensemble import BalanceCascadeLGBM, EasyEnsembleLGBM, ReferenceLGBM, gain_importance
from ensemble._bagging import gain_columns

FAST = dict(n_bags=3, n_estimators=20, n_jobs=1, params={"min_child_samples": 1, "num_leaves": 7})
SELECT = dict(FAST, gain_share=0.9, selection_rows=500, selection_rounds=10)


@parametrize_with_checks([EasyEnsembleLGBM(**SELECT), BalanceCascadeLGBM(**SELECT)])
def test_sklearn_contract_with_selection(estimator, check) -> None:  # noqa: ANN001
    check(estimator)


def _reference_gain_columns(gain: list[float], share: float) -> list[int]:
    """The plain rule: add columns by decreasing gain (lower index first on ties) until the share is reached."""
    if share >= 1.0 or sum(gain) <= 0:
        return list(range(len(gain)))
    ranked = sorted(range(len(gain)), key=lambda j: (-gain[j], j))
    kept, held = [], 0.0
    for j in ranked:
        kept.append(j)
        held += gain[j]
        if held >= share * sum(gain):
            break
    return sorted(kept)


@pytest.mark.parametrize("seed", range(20))
def test_gain_columns_match_the_plain_rule(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 30))
    gain = rng.exponential(size=n) * (rng.random(n) < 0.7)  # some columns without gain
    if seed % 5 == 0:
        gain = np.round(gain, 1)  # ties
    share = float(rng.choice([0.3, 0.8, 0.95, 0.999, 1.0]))
    assert gain_columns(gain, share).tolist() == _reference_gain_columns(gain.tolist(), share)


def test_gain_columns_hand_checked() -> None:
    gain = np.array([0.0, 5.0, 1.0, 3.0, 1.0])  # total 10
    assert gain_columns(gain, 0.5).tolist() == [1]  # 5 of 10
    assert gain_columns(gain, 0.8).tolist() == [1, 3]  # 8 of 10
    assert gain_columns(gain, 0.85).tolist() == [1, 2, 3]  # 9: the earlier of the tied columns
    assert gain_columns(gain, 0.99).tolist() == [1, 2, 3, 4]  # a column without gain is never needed
    assert gain_columns(gain, 1.0).tolist() == [0, 1, 2, 3, 4]
    assert gain_columns(np.zeros(3), 0.5).tolist() == [0, 1, 2]  # nothing to rank by


def _signal_in_two_columns(n: int = 4000, seed: int = 0, cat_effect: float = 0.8) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 12))
    X[:, 5] = rng.integers(0, 4, n)  # a categorical column
    logit = -2.5 + 2.0 * X[:, 2] - 1.5 * X[:, 7] + cat_effect * (X[:, 5] == 1)
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    return X, y


def test_selection_keeps_the_informative_columns_and_the_bags_read_only_those() -> None:
    X, y = _signal_in_two_columns()
    est = EasyEnsembleLGBM(categorical_feature=[5], random_state=3, **dict(SELECT, gain_share=0.8)).fit(X, y)
    assert {2, 7} <= set(est.columns_.tolist()) and len(est.columns_) < X.shape[1]
    assert est.pilot_gain_.shape == (12,) and np.isclose(est.pilot_gain_.sum(), 1.0)
    assert est.pilot_gain_[est.columns_].sum() >= 0.8 - 1e-12
    for booster in est.estimators_:
        assert booster.num_feature() == len(est.columns_)
    # the compiled forests read the wide rows; LightGBM's own predictor the selected columns
    for bag, booster in enumerate(est.estimators_):
        expect = booster.predict(X[:, est.columns_], num_iteration=booster.best_iteration or None)
        np.testing.assert_allclose(est.forests_[bag].predict(X), expect, rtol=0, atol=1e-12)
    dense = est.predict_proba(X)
    np.testing.assert_allclose(est.predict_proba(sp.csr_matrix(X)), dense, rtol=0, atol=1e-12)
    # gain importance is per input column: nothing on the columns left out
    gains = gain_importance(est)
    assert gains.shape == (12,)
    assert np.all(gains[np.setdiff1d(np.arange(12), est.columns_)] == 0) and gains[[2, 7]].min() > 0


def test_a_selected_categorical_column_stays_categorical() -> None:
    X, y = _signal_in_two_columns(n=8000, seed=1, cat_effect=2.5)
    est = EasyEnsembleLGBM(categorical_feature=[5], random_state=0,
                           **dict(SELECT, gain_share=0.95, selection_rows=4000)).fit(X, y)
    assert 5 in est.columns_
    at = int(np.flatnonzero(est.columns_ == 5)[0])
    splits = [node for booster in est.estimators_ for node in _splits(booster.dump_model())]
    on_cat = [d for f, d in splits if f == at]
    assert on_cat and all(d == "==" for d in on_cat)  # split as categories, under its new position


def _splits(model: dict) -> list[tuple[int, str]]:
    out = []

    def walk(node: dict) -> None:
        if "split_feature" in node:
            out.append((node["split_feature"], node["decision_type"]))
            walk(node["left_child"])
            walk(node["right_child"])

    for tree in model["tree_info"]:
        walk(tree["tree_structure"])
    return out


@pytest.mark.parametrize("cls", [EasyEnsembleLGBM, ReferenceLGBM])
def test_a_restricted_plan_selects_the_same_columns_and_trains_the_same_bags(cls: type) -> None:
    X, y = _signal_in_two_columns(seed=2)
    full = cls(random_state=5, **SELECT).fit(X, y)
    rows, local = cls(random_state=5, **SELECT).plan(y).restrict()
    part = cls(random_state=5, **SELECT).fit(X[rows], y[rows], plan=local)
    assert part.columns_.tolist() == full.columns_.tolist()
    assert [b.model_to_string() for b in part.estimators_] == [b.model_to_string() for b in full.estimators_]
    assert np.array_equal(part.predict_proba(X), full.predict_proba(X))


def test_the_bags_are_drawn_the_same_with_or_without_selection() -> None:
    X, y = _signal_in_two_columns(seed=4)
    plain = EasyEnsembleLGBM(random_state=1, **FAST)
    assert plain.plan(y).bags[0].tolist() == EasyEnsembleLGBM(random_state=1, **SELECT).plan(y).bags[0].tolist()
    a = EasyEnsembleLGBM(random_state=1, **SELECT).fit(X, y)
    b = EasyEnsembleLGBM(random_state=1, **SELECT).fit(X, y)
    assert np.array_equal(a.predict_proba(X), b.predict_proba(X))  # deterministic for a seed


def test_the_pilot_reads_the_first_bag_only_and_selection_one_keeps_everything(monkeypatch) -> None:  # noqa: ANN001
    X, y = _signal_in_two_columns(seed=5)
    seen: list[int] = []
    real = lgb.train

    def spy(params, train_set, *args, **kwargs):  # noqa: ANN001, ANN202
        train_set.construct()
        seen.append(train_set.num_data())
        return real(params, train_set, *args, **kwargs)

    monkeypatch.setattr(lgb, "train", spy)
    est = EasyEnsembleLGBM(random_state=0, **dict(SELECT, selection_rows=300))
    first_bag = est.plan(y).bags[0]
    est.fit(X, y)
    assert seen[0] == 300 < len(first_bag)  # the pilot: a sample of the first bag
    assert len(seen) == 1 + 3
    seen.clear()
    every = EasyEnsembleLGBM(random_state=0, **dict(SELECT, gain_share=1.0)).fit(X, y)
    assert len(seen) == 3 and every.pilot_gain_ is None and every.columns_.tolist() == list(range(12))


def test_cascade_selection_and_bad_shares() -> None:
    X, y = _signal_in_two_columns(seed=6)
    est = BalanceCascadeLGBM(random_state=0, **SELECT).fit(X, y)
    assert len(est.columns_) < X.shape[1]
    p = est.predict_proba(X)[:, 1]
    np.testing.assert_allclose(est.predict_proba(sp.csr_matrix(X))[:, 1], p, rtol=0, atol=1e-12)
    for bad in (0.0, 1.5):
        with pytest.raises(ValueError, match="gain_share"):
            EasyEnsembleLGBM(**dict(SELECT, gain_share=bad)).fit(X, y)


@pytest.mark.parametrize("cls", [EasyEnsembleLGBM, BalanceCascadeLGBM])
def test_rows_sorted_for_the_trees_score_exactly_as_in_their_own_order(cls: type) -> None:
    X, y = _signal_in_two_columns(n=12_000, seed=7)
    est = cls(categorical_feature=[5], random_state=0, **SELECT).fit(X, y)
    assert 1 <= len(est.sort_columns_) <= 2 and set(est.sort_columns_) <= set(est.columns_.tolist())
    order = est._row_order(X)
    assert order is not None and not np.array_equal(order, np.arange(len(X)))  # the big call sorts
    whole = est.predict_proba(X)
    small = np.vstack([est.predict_proba(X[i : i + 1000]) for i in range(0, len(X), 1000)])  # below: no sort
    assert np.array_equal(whole, small)
    est.sort_columns_ = []
    assert est._row_order(X) is None and np.array_equal(est.predict_proba(X), whole)
