"""``lookalike score``: score new (aid, uid) pairs with a saved scoring pipeline.

The users file is parsed like the load stage does, then its columns are
mapped into the vocabulary the model was trained with (ids the model never
saw are ignored, as ``CountVectorizer.transform`` ignores unknown words, and
counted in the log). Pairs are then featurised and scored ``chunk_rows`` at a
time and appended to the output, so memory beyond the parsed users is
bounded by the chunk size.
"""

from __future__ import annotations

import logging
import os
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from core import FieldBlock, InputFormatError, LookalikeError, UserMatrix, distinct, row_chunks, sorted_index
from ensemble import NFFMClassifier
from ensemble.nffm import INSTALL_HINT, torch_available
from pipeline.artifact import ArtifactKind, check_artifact, unpickle_checked
from pipeline._fastparse import remap_rows
from pipeline._scorecsv import score_lines
from pipeline.io import atomic_paths, open_binary
from pipeline.readers import parse_users, read_int_csv
from pipeline.schema import TEST_COLUMNS, TRAIN_COLUMNS
from pipeline.scorer import Scorer

__all__ = ["MISSING_CHOICES", "remap_users", "score_pairs", "skipped_path"]

logger = logging.getLogger(__name__)

MISSING_CHOICES = ("error", "skip")


def skipped_path(out: str | os.PathLike[str]) -> Path:
    """Side file listing the pairs ``--missing=skip`` left out: ``scores.csv`` -> ``scores.skipped.csv``."""
    out = Path(out)
    return out.with_name(f"{out.stem}.skipped.csv")


def remap_users(
    users: UserMatrix, fields: list[FieldBlock], rows: np.ndarray | None = None
) -> tuple[UserMatrix, int]:
    """The ``rows`` of ``users`` (all by default) with columns renumbered into the vocabulary ``fields``.

    One compiled pass (:func:`pipeline._fastparse.remap_rows`). Returns the
    new matrix (one row per entry of ``rows``) and the number of stored ids
    the vocabulary does not hold (dropped).
    """
    rows = np.arange(users.n_users) if rows is None else np.asarray(rows, dtype=np.int64)
    lut = np.full(max(users.n_cols, 1), -1, dtype=np.int64)
    by_name = {f.name: f for f in fields}
    for f in users.fields:
        target = by_name.get(f.name)
        if target is None or f.size == 0 or target.size == 0:
            continue
        pos = sorted_index(target.values, f.values)
        lut[f.offset : f.stop] = np.where(pos >= 0, target.offset + pos, -1)
    mapped = lut[lut >= 0]
    # same field order and sorted vocabularies (the usual case): the map keeps each row sorted
    order_kept = bool(np.all(np.diff(mapped) > 0))
    indptr, indices, dropped = remap_rows(  # one compiled pass (sorted within each row, as the loader writes them)
        users.indptr.astype(np.int64, copy=False), users.indices, rows, lut, not order_kept,
    )
    out = UserMatrix(
        indptr=indptr, indices=indices, uids=users.uids[rows],
        fields=[FieldBlock(f.name, f.offset, f.values, f.df, f.kind) for f in fields],
    )
    return out, int(dropped)


def _read_pairs(path: str | os.PathLike[str]) -> pd.DataFrame:
    with open_binary(path) as fh:
        header = fh.readline().decode("utf-8", "replace").strip().lstrip("\ufeff")
    columns = TRAIN_COLUMNS if header.split(",") == list(TRAIN_COLUMNS) else TEST_COLUMNS
    return read_int_csv(path, columns)[["aid", "uid"]]


def score_pairs(
    model: str | os.PathLike[str],
    pairs: str | os.PathLike[str],
    users: str | os.PathLike[str],
    out: str | os.PathLike[str],
    missing: str = "error",
    chunk_rows: int = 200_000,
    chunk_lines: int = 50_000,
    trust_versions: bool = False,
) -> dict[str, int]:
    """Score every pair of ``pairs`` and write ``aid,uid,score`` in its order.

    Parameters
    ----------
    model : path
        ``models/scorer.joblib`` written by ``make train`` (checked by
        :func:`~pipeline.artifact.check_artifact` before anything else; unpickled
        while the users file is parsed).
    pairs : path
        CSV with header ``aid,uid`` (or ``aid,uid,label``; the label is ignored).
    users : path
        ``userFeature.data`` holding every uid of ``pairs`` (new users are fine).
    out : path
        Output CSV.
    missing : {"error", "skip"}
        Pairs whose aid the model never saw or whose uid is not in ``users``:
        an error naming the first few, or left out of ``out`` and listed (with
        their line and reason) in :func:`skipped_path`.
    chunk_rows : int
        Pairs scored at a time.
    chunk_lines : int
        User lines parsed at a time.
    trust_versions : bool
        Load a model written with other library versions (never skips the checksum).

    Returns
    -------
    dict
        ``scored`` and ``skipped`` pair counts.
    """
    if missing not in MISSING_CHOICES:
        raise LookalikeError(f"--missing must be one of {MISSING_CHOICES}, got {missing!r}")
    check_artifact(model, ArtifactKind.SCORER, trust_versions=trust_versions)  # a wrong model stops here, at once
    Path(out).resolve().parent.mkdir(parents=True, exist_ok=True)  # as every stage makes its output folder
    df = _read_pairs(pairs)
    aid, uid = df["aid"].to_numpy(), df["uid"].to_numpy()
    with ThreadPoolExecutor(max_workers=1) as pool, \
            tempfile.TemporaryDirectory(dir=Path(out).resolve().parent, prefix=".score-") as scratch:
        # the model is unpickled while the users file is parsed: the parser's compiled loops let go of the GIL
        loading = pool.submit(unpickle_checked, model, ArtifactKind.SCORER, Scorer)
        parsed = parse_users(
            users, chunk_lines=chunk_lines, indices_out=Path(scratch) / "indices.npy", keep_uids=uid,
        )
        scorer = loading.result()
        neural = [n for n, m in scorer.models.items() if any(isinstance(e, NFFMClassifier) for e in m.estimators)]
        if neural and not torch_available():
            raise LookalikeError(f"{model}: its model {neural[0]} is the neural network, which needs PyTorch: "
                                 f"{INSTALL_HINT}")
        aid_idx = scorer.aid_index(aid)
        found = parsed.rows_of(uid)
        needed = distinct(found[found >= 0])  # only the users of the pairs are kept
        matrix, dropped = remap_users(parsed, scorer.featurizer.fields_, rows=needed)
        del parsed
    if dropped:
        logger.info("%s ids of the scored users were never seen in training: ignored", f"{dropped:,}")
    user_row = matrix.rows_of(uid)
    reasons = np.where(aid_idx < 0, "aid not in the model", np.where(user_row < 0, f"uid not in {Path(users).name}", ""))
    bad = np.flatnonzero(reasons != "")
    if len(bad) and missing == "error":
        listed = "; ".join(f"line {i + 2}: aid {aid[i]}, uid {uid[i]}: {reasons[i]}" for i in bad[:5])
        raise InputFormatError(
            str(pairs), int(bad[0]) + 2,
            f"{len(bad):,} pair(s) cannot be scored ({listed}); pass --missing=skip to list them in a side file",
        )
    ok = np.flatnonzero(reasons == "")
    targets = [Path(out)] + ([skipped_path(out)] if missing == "skip" else [])
    with atomic_paths(targets) as tmp:
        with open(tmp[0], "wb") as fh:
            fh.write(b"aid,uid,score\n")  # also when nothing is scored: a valid, empty file
            for rows in tqdm(list(row_chunks(len(ok), chunk_rows)), desc="score", unit="chunk", disable=None):
                idx = ok[rows]
                score = scorer.predict(aid_idx[idx], uid[idx], matrix.csr(user_row[idx]))
                fh.write(score_lines(aid[idx], uid[idx], score))  # the submission's "%.8f" text
        if missing == "skip":
            pd.DataFrame({"line": bad + 2, "aid": aid[bad], "uid": uid[bad], "reason": reasons[bad]}).to_csv(
                tmp[1], index=False
            )
    if len(bad):
        logger.warning("%s pair(s) skipped; listed in %s", f"{len(bad):,}", skipped_path(out))
    logger.info("scored %s pairs into %s", f"{len(ok):,}", out)
    return {"scored": int(len(ok)), "skipped": int(len(bad))}
