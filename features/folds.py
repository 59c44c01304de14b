"""The project's one fold assignment, stratified by aid and label."""

from __future__ import annotations

import numpy as np
from sklearn.model_selection import StratifiedKFold

__all__ = ["make_folds"]


def make_folds(aid: np.ndarray, label: np.ndarray, n_folds: int = 5, seed: int = 0) -> np.ndarray:
    """Fold number (``0..n_folds-1``, int8) of every training row.

    Rows are stratified by ``(aid, label)``, so each fold holds about the same
    share of every aid's positives and negatives. Strata smaller than
    ``n_folds`` are spread round-robin (seeded) rather than rejected.

    Raises
    ------
    ValueError
        ``n_folds`` below 2 or above the number of rows.
    """
    if n_folds < 2:
        raise ValueError(f"n_folds must be at least 2, got {n_folds}")
    if len(aid) < n_folds:
        raise ValueError(f"{len(aid)} training rows cannot make {n_folds} folds")
    _, aid_code = np.unique(aid, return_inverse=True)
    strata = aid_code.astype(np.int64) * 2 + np.asarray(label, dtype=np.int64)
    counts = np.bincount(strata)
    small = counts[strata] < n_folds
    folds = np.empty(len(aid), dtype=np.int8)
    rng = np.random.default_rng(seed)
    if (~small).any():
        skf = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
        idx = np.flatnonzero(~small)
        for k, (_, test) in enumerate(skf.split(np.zeros(len(idx)), strata[idx])):
            folds[idx[test]] = k
    if small.any():
        idx = rng.permutation(np.flatnonzero(small))
        folds[idx] = np.arange(len(idx)) % n_folds
    return folds
