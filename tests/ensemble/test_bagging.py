"""The bagged LightGBM classifiers: estimator contract, bag rules, the cascade."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.utils.estimator_checks import parametrize_with_checks

from ensemble import BagPlan, BalanceCascadeLGBM, EasyEnsembleLGBM, ReferenceLGBM, resolve_device
from ensemble._bagging import _undo_undersampling, cascade_keep

FAST = dict(n_bags=3, n_estimators=20, n_jobs=1, params={"min_child_samples": 1, "num_leaves": 7})


@parametrize_with_checks(
    [ReferenceLGBM(**FAST), EasyEnsembleLGBM(**FAST), BalanceCascadeLGBM(**FAST)],
)
def test_sklearn_contract(estimator, check) -> None:  # noqa: ANN001
    check(estimator)


def _imbalanced(n: int = 3000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 5))
    logit = -3.0 + 1.5 * X[:, 0] - X[:, 1]
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    return X, y


class _Recording(EasyEnsembleLGBM):
    """EasyEnsemble that records the rows every bag trains and early-stops on."""

    def _train_bag(self, X, y, bag, stop, seed, beta=1.0):  # noqa: ANN001, ANN202
        self.seen_.append((bag.copy(), None if stop is None else stop.copy(), seed))
        return super()._train_bag(X, y, bag, stop, seed, beta)

    def fit(self, X, y, init_score=None, plan=None):  # noqa: ANN001, ANN201
        self.seen_ = []
        return super().fit(X, y, init_score, plan)


@pytest.mark.parametrize(("ratio", "validation_fraction"), [(2.0, 0.0), (1.0, 0.1)])
def test_easy_ensemble_bags_hold_the_positives_and_ratio_fresh_negatives(ratio: float,
                                                                         validation_fraction: float) -> None:
    X, y = _imbalanced()
    est = _Recording(ratio=ratio, validation_fraction=validation_fraction, **FAST).fit(X, y)
    pos, neg = set(np.flatnonzero(y == 1)), set(np.flatnonzero(y == 0))
    n_hold = int(round(validation_fraction * len(pos)))
    assert len(est.seen_) == len(est.estimators_) == 3
    negative_draws = []
    for b, (bag, stop, seed) in enumerate(est.seen_):
        bag_pos, bag_neg = set(bag) & pos, set(bag) & neg
        assert len(bag) == len(set(bag)) == len(bag_pos) + len(bag_neg)  # no repeats, nothing else
        assert len(bag_pos) == len(pos) - n_hold  # every positive but the held-out share
        assert len(bag_neg) == int(np.ceil(ratio * len(bag_pos)))  # ratio negatives per positive
        assert seed == b  # random_state + bag
        if n_hold:
            # early stopping on the held-out positives and as many times ratio negatives outside the bag
            assert set(stop) & pos == pos - bag_pos and len(set(stop) & pos) == n_hold
            assert not set(stop) & set(bag) and len(set(stop) & neg) == int(np.ceil(ratio * n_hold))
        else:
            assert stop is None
        negative_draws.append(bag_neg)
        assert est.negative_share_[b] == pytest.approx(len(bag_neg) / len(neg))
    assert len({frozenset(d) for d in negative_draws}) == 3  # each bag an independent draw


@pytest.mark.parametrize("cls", [EasyEnsembleLGBM, ReferenceLGBM])
def test_a_plan_restricted_to_its_rows_trains_the_same_bags(cls: type) -> None:
    X, y = _imbalanced(seed=3)
    full = cls(ratio=1.0, validation_fraction=0.1, random_state=7, **FAST).fit(X, y)
    plan = cls(random_state=7, **FAST).plan(y)
    recorded = _Recording(ratio=1.0, validation_fraction=0.1, random_state=7, **FAST).fit(X, y)
    if cls is EasyEnsembleLGBM:  # the plan's bags are the ones fit draws
        assert [(b.tolist(), s.tolist()) for b, s, _ in recorded.seen_] == \
            [(b.tolist(), s.tolist()) for b, s in zip(plan.bags, plan.stops)]
    rows, local = plan.restrict()
    # the rows: exactly those some bag trains or stops on, in order
    used = set().union(*map(set, plan.bags), *(set(s) for s in plan.stops if s is not None))
    assert rows.tolist() == sorted(used)
    if cls is EasyEnsembleLGBM:
        assert len(rows) < 0.6 * len(y)  # the point: most negatives are never read
    assert [rows[b].tolist() for b in local.bags] == [b.tolist() for b in plan.bags]
    part = cls(ratio=1.0, validation_fraction=0.1, random_state=7, **FAST).fit(X[rows], y[rows], plan=local)
    assert [b.model_to_string() for b in part.estimators_] == [b.model_to_string() for b in full.estimators_]
    assert np.array_equal(part.predict_proba(X), full.predict_proba(X))


def test_plans_are_refused_where_they_cannot_apply() -> None:
    X, y = _imbalanced()
    cascade = BalanceCascadeLGBM(**FAST)
    assert cascade.plan(y) is None  # its stages draw from what the earlier stages kept
    easy_plan = EasyEnsembleLGBM(**FAST).plan(y)
    with pytest.raises(ValueError, match="takes no plan"):
        cascade.fit(X, y, plan=easy_plan)
    with pytest.raises(ValueError, match=f"the plan is for {len(y)} rows, X has 10"):
        EasyEnsembleLGBM(**FAST).fit(X[:10], y[:10], plan=easy_plan)
    with pytest.raises(ValueError, match="binary labels"):
        EasyEnsembleLGBM(**FAST).plan(np.zeros(5))
    assert isinstance(easy_plan, BagPlan) and easy_plan.n_rows == len(y)


def test_params_reach_every_bag_and_aliases_replace_the_defaults() -> None:
    X, y = _imbalanced()
    est = EasyEnsembleLGBM(n_bags=2, n_estimators=5, n_jobs=1, params={"eta": 0.3, "num_leaves": 5}).fit(X, y)
    for booster in est.estimators_:
        assert booster.params["eta"] == 0.3 and "learning_rate" not in booster.params  # the default 0.05 is gone
        assert booster.params["num_leaves"] == 5
        tree = booster.dump_model()["tree_info"][0]["tree_structure"]
        assert _leaves(tree) <= 5
    with pytest.raises(ValueError, match="'nthread' is set by EasyEnsembleLGBM itself"):
        EasyEnsembleLGBM(params={"nthread": 3}).fit(X, y)


def _leaves(node: dict) -> int:
    return 1 if "leaf_value" in node else _leaves(node["left_child"]) + _leaves(node["right_child"])


def test_undersampling_correction_restores_the_base_rate() -> None:
    X, y = _imbalanced(6000)
    est = EasyEnsembleLGBM(ratio=1.0, **{**FAST, "n_bags": 5}).fit(X, y)
    p = est.predict_proba(X)[:, 1]
    assert abs(p.mean() - y.mean()) < 0.35 * y.mean()  # a 1:1 bag alone would give ~0.5
    assert _undo_undersampling(np.array([0.5]), 0.1)[0] == pytest.approx(0.1 / 1.1)


def test_cascade_keep_hand_checked() -> None:
    scores = np.array([0.9, 0.1, 0.5, 0.7, 0.3, 0.2, 0.8, 0.4, 0.6, 0.5])
    # keep ceil(0.5 * 10) = 5 highest: 0.9 (0), 0.8 (6), 0.7 (3), 0.6 (8), then the
    # first 0.5 (position 2 before 9)
    assert cascade_keep(scores, 0.5).tolist() == [0, 2, 3, 6, 8]
    assert cascade_keep(scores, 1.0).tolist() == list(range(10))
    assert cascade_keep(scores, 0.01).tolist() == [0]


def test_cascade_halves_the_negatives_each_stage() -> None:
    """4 positives, 16 negatives, ratio 1, 3 bags: keep rate (4/16)^(1/2) = 0.5."""
    rng = np.random.default_rng(1)
    X = rng.standard_normal((20, 3))
    y = np.r_[np.ones(4, int), np.zeros(16, int)]
    X[:4] += 2.0
    est = BalanceCascadeLGBM(n_bags=3, ratio=1.0, early_stopping_rounds=0, n_estimators=10,
                             params={"min_child_samples": 1, "num_leaves": 4}, n_jobs=1).fit(X, y)
    assert est.keep_rate_ == pytest.approx(0.5)
    assert est.negatives_per_stage_ == [16, 8, 4]


def test_cascade_later_bags_see_the_hard_negatives() -> None:
    X, y = _imbalanced(4000, seed=2)
    est = BalanceCascadeLGBM(n_bags=4, ratio=1.0, early_stopping_rounds=0, n_estimators=30,
                             params={"min_child_samples": 5}, n_jobs=1).fit(X, y)
    first = est.estimators_[0].predict(X[y == 0])
    # the negatives still in play at the end are those the first bag found most positive-like
    assert est.negatives_per_stage_[-1] < est.negatives_per_stage_[0] / 4
    assert np.quantile(first, 0.9) > np.median(first)


def test_same_seed_same_predictions_other_seed_differs() -> None:
    X, y = _imbalanced()
    a = EasyEnsembleLGBM(random_state=3, **FAST).fit(X, y).predict_proba(X)
    b = EasyEnsembleLGBM(random_state=3, **FAST).fit(X, y).predict_proba(X)
    c = EasyEnsembleLGBM(random_state=4, **FAST).fit(X, y).predict_proba(X)
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_auto_device_falls_back_to_a_working_one() -> None:
    assert resolve_device("cpu") == "cpu"
    assert resolve_device("auto") in ("cpu", "gpu", "cuda")
    with pytest.raises(ValueError, match="device must be one of"):
        resolve_device("tpu")


def test_cascade_scores_are_a_cascade_and_rank_well_on_noisy_data() -> None:
    X, y = _imbalanced(6000, seed=3)
    est = BalanceCascadeLGBM(n_bags=4, ratio=1.0, n_estimators=40, params={"min_child_samples": 20}, n_jobs=1).fit(X, y)
    p = est.predict_proba(X)[:, 1]
    s0 = 3.5 / 4  # undo the rescaling that puts the decision point at 0.5
    s = np.where(p <= 0.5, p / 0.5 * s0, s0 + (p - 0.5) / 0.5 * (1 - s0))
    assert len(est.thresholds_) == 3
    depth = np.floor(s * 4 + 1e-9).clip(max=3)
    # stage-1 score of the rows it rejects is below its threshold; deeper rows score higher
    first = est.estimators_[0].predict(X)
    assert (first[depth == 0] < est.thresholds_[0]).all()
    assert s[depth == 0].max() < s[depth >= 1].min()
    from sklearn.metrics import roc_auc_score

    assert roc_auc_score(y, p) > 0.75  # the all-stage average ranked below chance on noisy data


def test_group_column_early_stops_on_the_mean_per_group_auc() -> None:
    X, y = _imbalanced(4000, seed=5)
    X = np.column_stack([np.arange(len(y)) % 4, X])  # column 0: the group (an aid)
    est = ReferenceLGBM(n_estimators=200, early_stopping_rounds=10, params={"min_child_samples": 5},
                        group_column=0, n_jobs=1).fit(X, y)
    booster = est.estimators_[0]
    assert "mean_group_auc" in booster.best_score["valid_0"]
    assert 0 < booster.best_iteration < 200
