"""The files the stages hand each other: their formats, written atomically, read with checks.

One place for every derived file a stage writes and a later stage reads:

* ``interim/users/`` (the :class:`core.UserMatrix` as ``.npy`` arrays plus
  ``vocab.json``), ``interim/ads.csv`` and ``interim/pairs.npz`` (load);
* the fold file (folds);
* ``pred/final.npz``: the submitted scores with the ``(aid, uid)`` of every
  test pair, so that ``submit`` joins on the pair, never on the position.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd

from core import AdTable, FieldBlock, LookalikeError, Pairs, UserMatrix
from pipeline.io import Outputs, atomic_path, staged_path

__all__ = [
    "read_ads",
    "read_folds",
    "read_predictions",
    "read_test_pairs",
    "read_train_pairs",
    "read_user_matrix",
    "write_ads",
    "write_folds",
    "write_pairs",
    "write_predictions",
    "write_user_matrix",
]


# ------------------------------------------------------------------ users
def write_user_matrix(m: UserMatrix, folder: str | os.PathLike[str], source: str = "") -> None:
    """Write ``m`` into ``folder`` (``.npy`` arrays and ``vocab.json``).

    ``indices.npy`` is not rewritten when ``m.indices`` already maps it.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / "indptr.npy", m.indptr)
    np.save(folder / "uids.npy", m.uids)
    target = folder / "indices.npy"
    if not (isinstance(m.indices, np.memmap) and Path(m.indices.filename).resolve() == target.resolve()):
        np.save(target, np.asarray(m.indices, dtype=np.int32))
    vocab = {
        "source": source,
        "n_users": m.n_users,
        "n_cols": m.n_cols,
        "nnz": int(m.indptr[-1]),
        "fields": [
            {"name": f.name, "kind": f.kind, "offset": f.offset, "size": f.size,
             "values": f.values.tolist(), "df": f.df.tolist()}
            for f in m.fields
        ],
    }
    (folder / "vocab.json").write_text(json.dumps(vocab) + "\n")


def read_user_matrix(folder: str | os.PathLike[str], mmap: bool = True) -> UserMatrix:
    """Read a matrix written by :func:`write_user_matrix` (indices memory-mapped)."""
    folder = Path(folder)
    vocab = json.loads((folder / "vocab.json").read_text())
    fields = [
        FieldBlock(f["name"], f["offset"], np.asarray(f["values"], dtype=np.int64),
                   np.asarray(f["df"], dtype=np.int64), f["kind"])
        for f in vocab["fields"]
    ]
    return UserMatrix(
        indptr=np.load(folder / "indptr.npy"),
        indices=np.load(folder / "indices.npy", mmap_mode="r" if mmap else None),
        uids=np.load(folder / "uids.npy"),
        fields=fields,
    )


# -------------------------------------------------------------------- ads
def write_ads(path: str | os.PathLike[str], ads: AdTable) -> None:
    """The ad table as CSV, in aid order."""
    ads.frame.to_csv(path, index=False)


def read_ads(path: str | os.PathLike[str]) -> AdTable:
    """The ad table written by :func:`write_ads`."""
    frame = pd.read_csv(path)
    return AdTable(aids=frame["aid"].to_numpy(), frame=frame)


# ------------------------------------------------------------------ pairs
def write_pairs(path: str | os.PathLike[str], train: Pairs, test: Pairs) -> None:
    """Both pair sets in one ``.npz`` (arrays prefixed ``train_`` and ``test_``)."""
    with open(path, "wb") as fh:
        np.savez(fh, **{f"train_{k}": v for k, v in train.arrays().items()},
                 **{f"test_{k}": v for k, v in test.arrays().items()})


def _read_pairs(path: str | os.PathLike[str], prefix: str) -> Pairs:
    with np.load(path) as z:
        arrays = {k[len(prefix):]: z[k] for k in z.files if k.startswith(prefix)}
    return Pairs(**arrays)


def read_train_pairs(path: str | os.PathLike[str]) -> Pairs:
    """The labelled training pairs of ``pairs.npz``."""
    return _read_pairs(path, "train_")


def read_test_pairs(path: str | os.PathLike[str]) -> Pairs:
    """The test pairs of ``pairs.npz`` (no labels)."""
    return _read_pairs(path, "test_")


# ------------------------------------------------------------------ folds
def write_folds(path: str | os.PathLike[str], folds: np.ndarray) -> None:
    """Save the fold array (``.npy``) atomically."""
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.save(fh, folds)


def read_folds(path: str | os.PathLike[str], n_rows: int) -> np.ndarray:
    """Read the fold array and check it matches the training rows."""
    folds = np.load(path)
    if len(folds) != n_rows:
        raise LookalikeError(f"{path} has {len(folds)} rows but train has {n_rows}: re-run `make folds`")
    return folds


# ------------------------------------------------------------ predictions
def write_predictions(path: str | os.PathLike[str], pairs: Pairs, score: np.ndarray,
                      outputs: Outputs | None = None) -> None:
    """Scores of ``pairs`` with their ``(aid, uid)`` keys (``.npz``): atomically, or staged in ``outputs``."""
    score = np.asarray(score, dtype=np.float64)
    if score.shape != (len(pairs),):
        raise ValueError(f"{len(score)} scores for {len(pairs)} pairs")
    with staged_path(path, outputs) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, aid=pairs.aid, uid=pairs.uid, score=score)


def read_predictions(path: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(aid, uid, score)`` written by :func:`write_predictions`."""
    try:
        with np.load(path) as z:
            return z["aid"], z["uid"], z["score"]
    except (KeyError, ValueError, OSError) as exc:
        raise LookalikeError(f"{path}: not a prediction file of the train stage ({exc}); re-run `make train`") from None
