"""The bagged LightGBM classifiers: estimator contract, bag rules, the cascade."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.utils.estimator_checks import parametrize_with_checks

from ensemble import BalanceCascadeLGBM, EasyEnsembleLGBM, ReferenceLGBM, resolve_device
from ensemble._bagging import _undo_undersampling, cascade_keep

FAST = dict(n_bags=3, n_estimators=20, min_child_samples=1, num_leaves=7, n_jobs=1)


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


def test_easy_ensemble_bags_hold_all_positives_and_ratio_negatives() -> None:
    X, y = _imbalanced()
    est = EasyEnsembleLGBM(ratio=2.0, validation_fraction=0.0, **FAST).fit(X, y)
    n_pos, n_neg = y.sum(), (y == 0).sum()
    assert len(est.estimators_) == 3
    assert est.negative_share_ == pytest.approx([2 * n_pos / n_neg] * 3)
    for booster in est.estimators_:  # each bag's own Dataset: positives + 2x negatives
        assert booster.num_trees() > 0


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
                             min_child_samples=1, num_leaves=4, n_jobs=1).fit(X, y)
    assert est.keep_rate_ == pytest.approx(0.5)
    assert est.negatives_per_stage_ == [16, 8, 4]


def test_cascade_later_bags_see_the_hard_negatives() -> None:
    X, y = _imbalanced(4000, seed=2)
    est = BalanceCascadeLGBM(n_bags=4, ratio=1.0, early_stopping_rounds=0, n_estimators=30,
                             min_child_samples=5, n_jobs=1).fit(X, y)
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
    est = BalanceCascadeLGBM(n_bags=4, ratio=1.0, n_estimators=40, min_child_samples=20, n_jobs=1).fit(X, y)
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
    est = ReferenceLGBM(n_estimators=200, early_stopping_rounds=10, min_child_samples=5,
                        group_column=0, n_jobs=1).fit(X, y)
    booster = est.estimators_[0]
    assert "mean_group_auc" in booster.best_score["valid_0"]
    assert 0 < booster.best_iteration < 200
