"""The ``folds`` stage: the project's one fold file, read by every later stage."""

from __future__ import annotations

import logging
import os

from core import LookalikeError
from features import make_folds
from pipeline.config import FoldSettings
from pipeline.files import read_train_pairs, write_folds

__all__ = ["run_folds"]

logger = logging.getLogger(__name__)


def run_folds(pairs: str | os.PathLike[str], out: str | os.PathLike[str], settings: FoldSettings | None = None) -> None:
    """Assign every training row of ``pairs`` (``pairs.npz``) a fold, stratified by aid and label."""
    settings = settings or FoldSettings()
    train = read_train_pairs(pairs)
    if len(train) < settings.n_folds:
        raise LookalikeError(f"{pairs}: {len(train)} training rows cannot make {settings.n_folds} folds "
                             "([folds] n_folds)")
    folds = make_folds(train.aid, train.label, settings.n_folds, settings.seed)
    write_folds(out, folds)
    logger.info("wrote %d folds for %s rows to %s", settings.n_folds, f"{len(folds):,}", out)
