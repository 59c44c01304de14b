"""The ``submit`` stage: predictions to ``aid,uid,score`` in test-file order."""

from __future__ import annotations

import logging
import os

import numpy as np
import pandas as pd

from pipeline.errors import LookalikeError
from pipeline.io import atomic_path
from pipeline.loaders import _read_int_csv
from pipeline.schema import TEST_COLUMNS

__all__ = ["write_submission"]

logger = logging.getLogger(__name__)


def write_submission(
    pred: str | os.PathLike[str], test: str | os.PathLike[str], out: str | os.PathLike[str]
) -> None:
    """Write the submission: one row per test row, in its order, 8 decimals."""
    scores = np.load(pred)
    df = _read_int_csv(test, TEST_COLUMNS)
    if len(scores) != len(df):
        raise LookalikeError(f"{pred} has {len(scores)} scores but {test} has {len(df)} rows")
    if not np.isfinite(scores).all() or scores.min() < 0 or scores.max() > 1:
        raise LookalikeError(f"{pred}: scores must be finite and in [0, 1]")
    df["score"] = scores
    with atomic_path(out) as tmp:
        df.to_csv(tmp, index=False, float_format="%.8f")
    logger.info("wrote %s rows to %s", f"{len(df):,}", out)
