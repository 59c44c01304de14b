"""The project's one fold assignment, stratified by aid and label."""

from __future__ import annotations

import logging
import os

import numpy as np
from sklearn.model_selection import StratifiedKFold

from pipeline.errors import LookalikeError
from pipeline.io import atomic_path

__all__ = ["load_folds", "make_folds", "write_folds"]

logger = logging.getLogger(__name__)


def make_folds(aid: np.ndarray, label: np.ndarray, n_folds: int = 5, seed: int = 0) -> np.ndarray:
    """Fold number (``0..n_folds-1``) of every training row.

    Rows are stratified by ``(aid, label)``, so each fold holds about the same
    share of every aid's positives and negatives.
    """
    if n_folds < 2:
        raise LookalikeError(f"n_folds must be at least 2, got {n_folds}")
    if len(aid) < n_folds:
        raise LookalikeError(f"{len(aid)} training rows cannot make {n_folds} folds")
    _, aid_code = np.unique(aid, return_inverse=True)
    strata = aid_code.astype(np.int64) * 2 + np.asarray(label, dtype=np.int64)
    # strata smaller than n_folds are spread round-robin rather than rejected
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


def write_folds(folds: np.ndarray, path: str | os.PathLike[str]) -> None:
    """Save the fold array (``.npy``) atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, folds)
    logger.info("wrote %d folds for %s rows to %s", int(folds.max()) + 1, f"{len(folds):,}", path)


def load_folds(path: str | os.PathLike[str], n_rows: int) -> np.ndarray:
    """Read the fold array and check it matches the training rows."""
    folds = np.load(path)
    if len(folds) != n_rows:
        raise LookalikeError(f"{path} has {len(folds)} rows but train has {n_rows}: re-run `make folds`")
    return folds
