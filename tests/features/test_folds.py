"""The fold file: stratified by aid and label, seeded."""

from __future__ import annotations

import numpy as np

from features.folds import make_folds


def test_folds_are_stratified_seeded_and_cover_every_row() -> None:
    rng = np.random.default_rng(0)
    aid = rng.integers(0, 7, size=3000)
    y = (rng.random(3000) < 0.05).astype(int)
    folds = make_folds(aid, y, n_folds=5, seed=3)
    assert np.array_equal(folds, make_folds(aid, y, n_folds=5, seed=3))
    assert not np.array_equal(folds, make_folds(aid, y, n_folds=5, seed=4))
    assert set(np.unique(folds)) == set(range(5))
    for a in range(7):
        for label in (0, 1):
            counts = np.bincount(folds[(aid == a) & (y == label)], minlength=5)
            assert counts.max() - counts.min() <= 1, (a, label, counts)


def test_tiny_strata_are_spread_not_rejected() -> None:
    aid = np.array([0] * 20 + [1] * 3)
    y = np.array([0] * 18 + [1] * 2 + [0, 0, 1])
    folds = make_folds(aid, y, n_folds=5, seed=0)
    assert len(folds) == 23 and folds.min() >= 0 and folds.max() <= 4
