"""The ``submit`` stage and the submission checker."""

from __future__ import annotations

import logging
import os

import numpy as np
import pandas as pd

from core import InputFormatError, LookalikeError
from pipeline._scorecsv import score_lines
from pipeline.files import read_predictions
from pipeline.io import atomic_path, open_binary
from pipeline.readers import locate_csv_problem, read_int_csv
from pipeline.schema import SUBMISSION_COLUMNS, TEST_COLUMNS

__all__ = ["check_submission", "write_submission"]

logger = logging.getLogger(__name__)


def write_submission(
    pred: str | os.PathLike[str], test: str | os.PathLike[str], out: str | os.PathLike[str]
) -> None:
    """Write the submission: one row per test row, in its order, 8 decimals.

    ``pred`` is the train stage's ``pred/final.npz``: scores with the
    ``(aid, uid)`` of each. The rows are joined on that pair: predictions for
    other pairs, or in another order, are refused with the first line where
    they differ from the test file. The file is checked with
    :func:`check_submission` before it replaces ``out``.
    """
    aid, uid, scores = read_predictions(pred)
    df = read_int_csv(test, TEST_COLUMNS)
    want_aid, want_uid = df["aid"].to_numpy(), df["uid"].to_numpy()
    n = min(len(df), len(scores))
    diff = np.flatnonzero((aid[:n] != want_aid[:n]) | (uid[:n] != want_uid[:n]))
    if len(diff):
        i = int(diff[0])
        raise InputFormatError(
            str(test), i + 2, f"pair ({want_aid[i]}, {want_uid[i]}) but the predictions in {pred} have "
            f"({aid[i]}, {uid[i]}) in that row ({len(diff):,} rows differ): they were made for another test "
            "file; re-run `make train`",
        )
    if len(scores) != len(df):
        raise LookalikeError(f"{pred} has {len(scores):,} scores but {test} has {len(df):,} rows: they were made "
                             "for another test file; re-run `make train`")
    with atomic_path(out) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(b"aid,uid,score\n")
            fh.write(score_lines(want_aid, want_uid, scores))  # "%.8f", as pandas writes it (tested)
        problems = check_submission(tmp, test)
        if problems:
            raise LookalikeError("the submission fails its check: " + "; ".join(problems))
    logger.info("wrote %s rows to %s", f"{len(df):,}", out)


def check_submission(sub: str | os.PathLike[str], test: str | os.PathLike[str], limit: int = 5) -> list[str]:
    """Problems of submission ``sub`` against test file ``test`` (empty when valid).

    Checks the header ``aid,uid,score``, that the rows are the test rows in
    the same order, and that every score is a number in [0, 1]. Each problem
    names the submission's line (the header is line 1).
    """
    with open_binary(sub) as fh:
        header = fh.readline().decode("utf-8", "replace").strip().lstrip("\ufeff")
    if header.split(",") != list(SUBMISSION_COLUMNS):
        return [f"wrong header {header!r}; expected {','.join(SUBMISSION_COLUMNS)!r}"]
    try:
        with open_binary(sub) as fh:
            df = pd.read_csv(fh, dtype={"aid": "Int64", "uid": "Int64", "score": "float64"}, skip_blank_lines=False)
    except (ValueError, OverflowError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        where = locate_csv_problem(str(sub), {"aid": "id", "uid": "id", "score": "number"})
        return [f"line {where.line}: {where.message}" if where is not None else f"unreadable: {exc}"]
    test_df = read_int_csv(test, TEST_COLUMNS)
    problems: list[str] = []
    if len(df) != len(test_df):
        problems.append(f"{len(df):,} rows but the test file has {len(test_df):,}")
    n = min(len(df), len(test_df))
    keys = df[["aid", "uid"]].iloc[:n].to_numpy(dtype=np.float64)
    want = test_df[["aid", "uid"]].iloc[:n].to_numpy(dtype=np.float64)
    diff = np.flatnonzero((keys != want).any(axis=1))
    if len(diff):
        i = int(diff[0])
        problems.append(
            f"line {i + 2}: pair ({_fmt(keys[i])}) where the test file has ({_fmt(want[i])}) "
            f"({len(diff):,} rows differ; rows must be the test rows in the test file's order)"
        )
    score = df["score"].to_numpy()
    outside = ~np.isnan(score) & ((score < 0) | (score > 1))
    for mask, what in ((np.isnan(score), "missing or NaN score"), (outside, "score outside [0, 1]")):
        bad = np.flatnonzero(mask)
        if len(bad):
            lines = ", ".join(str(int(i) + 2) for i in bad[:limit])
            more = f" and {len(bad) - limit:,} more" if len(bad) > limit else ""
            problems.append(f"{what} on line(s) {lines}{more}")
    return problems


def _fmt(pair: np.ndarray) -> str:
    return ", ".join("NA" if np.isnan(v) else str(int(v)) for v in pair)
