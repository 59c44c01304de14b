"""The per-aid AUC against scikit-learn's roc_auc_score, aid by aid."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from ensemble.metrics import per_aid_auc


@pytest.mark.parametrize("seed", range(4))
def test_per_aid_auc_matches_a_loop_over_sklearn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    aid = rng.integers(0, 6, size=400)
    y = (rng.random(400) < 0.2).astype(int)
    score = np.round(rng.random(400) + 0.3 * y, 1)  # rounding makes ties
    y[aid == 5] = 0  # one aid with a single class is skipped
    res = per_aid_auc(y, score, aid)
    expect = {a: roc_auc_score(y[aid == a], score[aid == a]) for a in range(5)}
    assert res.skipped == [5]
    assert res.per_aid == pytest.approx(expect)
    assert res.mean == pytest.approx(np.mean(list(expect.values())))
    assert res.std == pytest.approx(np.std(list(expect.values())))


def test_only_the_order_inside_each_aid_counts() -> None:
    aid = np.array([0, 0, 0, 1, 1, 1])
    y = np.array([1, 0, 0, 1, 0, 0])
    score = np.array([0.9, 0.1, 0.2, 0.02, 0.01, 0.0])  # aid 1 scores far lower
    assert per_aid_auc(y, score, aid).mean == 1.0


def test_labels_that_are_not_0_1_or_lengths_that_differ_are_refused() -> None:
    from ensemble import per_aid_auc

    with pytest.raises(ValueError, match="0/1"):
        per_aid_auc(np.array([-1, 1, -1, 1]), np.arange(4.0), np.zeros(4, int))
    with pytest.raises(ValueError, match="3 labels"):
        per_aid_auc(np.array([0, 1, 0]), np.arange(4.0), np.zeros(4, int))
