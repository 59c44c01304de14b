"""The ``features`` stage: the sparse and dense feature sets of every pair."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.pipeline import Pipeline

from features._pruning import FrequencyPruner, MissingRatePruner
from features.folds import load_folds
from pipeline.io import atomic_paths
from pipeline.load import load_pairs_file
from pipeline.loaders import AdTable, UserMatrix, load_user_matrix, take_rows

__all__ = ["FEATURE_FILES", "build_features", "user_field_table"]

logger = logging.getLogger(__name__)

FEATURE_FILES = (
    "sparse_train.npz",
    "sparse_test.npz",
    "dense_train.npy",
    "dense_test.npy",
    "columns.json",
)


def user_field_table(users: UserMatrix, rows: np.ndarray) -> pd.DataFrame:
    """Per-user codes of single-valued fields and list lengths of every field.

    Returns a frame with one row per entry of ``rows``: ``<field>`` holds the
    id of a single-valued field (``-1`` when absent) and ``len_<field>`` the
    number of ids of each field.
    """
    indptr, indices = take_rows(users.indptr, users.indices, rows)
    n = len(rows)
    row_of = np.repeat(np.arange(n), np.diff(indptr))
    field_of = np.empty(users.n_cols, dtype=np.int16)
    for k, f in enumerate(users.fields):
        field_of[f.offset : f.stop] = k
    fcode = field_of[indices]
    out: dict[str, np.ndarray] = {}
    for k, f in enumerate(users.fields):
        sel = fcode == k
        if f.kind == "single":
            code = np.full(n, -1, dtype=np.int64)
            code[row_of[sel]] = f.values[indices[sel] - f.offset]
            out[f.name] = code
        out[f"len_{f.name}"] = np.bincount(row_of[sel], minlength=n).astype(np.float32)
    return pd.DataFrame(out)


def build_features(
    interim: str | os.PathLike[str],
    folds_path: str | os.PathLike[str],
    out: str | os.PathLike[str],
    report: str | os.PathLike[str],
    settings: dict[str, Any],
) -> None:
    """Build the feature sets and write them with their column names.

    Parameters
    ----------
    interim : path
        Output folder of the ``load`` stage.
    folds_path : path
        The project's fold file.
    out : path
        Folder for the feature files (:data:`FEATURE_FILES`).
    report : path
        Markdown report of missing rates and kept columns.
    settings : dict
        The ``[features]`` section of the config.
    """
    interim, out = Path(interim), Path(out)
    users = load_user_matrix(interim / "users")
    train = load_pairs_file(interim / "pairs.npz", "train")
    test = load_pairs_file(interim / "pairs.npz", "test")
    load_folds(folds_path, len(train["aid"]))  # checks the fold file matches
    ads = AdTable(aids=pd.read_csv(interim / "ads.csv")["aid"].to_numpy(), frame=pd.read_csv(interim / "ads.csv"))

    slices = [(f.name, f.offset, f.stop) for f in users.fields]
    pruner = Pipeline(
        [
            ("missing", MissingRatePruner(threshold=settings["missing_threshold"], fields=slices)),
            ("frequency", FrequencyPruner(min_df=settings["min_df"])),
        ]
    )
    x_user_train = users.csr(train["user_row"])
    x_user_train = pruner.fit_transform(x_user_train)
    x_user_test = pruner.transform(users.csr(test["user_row"]))
    missing = pruner.named_steps["missing"]
    kept = missing.get_support()
    kept_freq = pruner.named_steps["frequency"].get_support()
    col_names = np.array(_user_column_names(users))[kept][kept_freq].tolist()

    ad_onehot, ad_names = ads.one_hot()
    sparse = {}
    for part, pairs, xu in (("train", train, x_user_train), ("test", test, x_user_test)):
        aid_col = sp.csr_matrix(pairs["aid_idx"].astype(np.float32)[:, None])
        sparse[part] = sp.hstack([aid_col, ad_onehot[pairs["aid_idx"]], xu], format="csr", dtype=np.float32)
    sparse_names = ["aid_idx"] + ad_names + col_names

    dense, dense_names = {}, []
    for part, pairs in (("train", train), ("test", test)):
        table = user_field_table(users, pairs["user_row"])
        table.insert(0, "aid_idx", pairs["aid_idx"])
        dense[part] = table.to_numpy(dtype=np.float32)
        dense_names = list(table.columns)

    columns = {
        "sparse": sparse_names,
        "dense": dense_names,
        "categorical": {"sparse": ["aid_idx"], "dense": ["aid_idx"]},
        "missing_rate": dict(zip(missing.field_names_, missing.missing_rate_.round(6).tolist())),
        "dropped_fields": missing.dropped_fields_,
    }
    with atomic_paths([out / name for name in FEATURE_FILES]) as tmp:
        out.mkdir(parents=True, exist_ok=True)
        for path, part in ((tmp[0], "train"), (tmp[1], "test")):
            with open(path, "wb") as fh:
                sp.save_npz(fh, sparse[part], compressed=False)
        for path, part in ((tmp[2], "train"), (tmp[3], "test")):
            with open(path, "wb") as fh:
                np.save(fh, dense[part])
        tmp[4].write_text(json.dumps(columns, indent=1) + "\n")
    _write_report(report, users, missing, kept, kept_freq, sparse["train"].shape, dense_names)
    logger.info(
        "sparse set: %s columns; dense set: %d columns; dropped fields: %s",
        f"{sparse['train'].shape[1]:,}", len(dense_names), ", ".join(missing.dropped_fields_) or "none",
    )


def _user_column_names(users: UserMatrix) -> list[str]:
    names: list[str] = []
    for f in users.fields:
        names += [f"{f.name}={v}" for v in f.values.tolist()]
    return names


def _write_report(
    path: str | os.PathLike[str],
    users: UserMatrix,
    missing: MissingRatePruner,
    kept: np.ndarray,
    kept_freq: np.ndarray,
    sparse_shape: tuple[int, int],
    dense_names: list[str],
) -> None:
    after_missing = np.flatnonzero(kept)
    final = np.zeros(users.n_cols, dtype=bool)
    final[after_missing[kept_freq]] = True
    lines = [
        "# Features",
        "",
        f"Missing-rate threshold: {missing.threshold}. Dropped fields: "
        f"{', '.join(missing.dropped_fields_) or 'none'}.",
        "",
        "| field | missing rate (train rows) | columns | kept after pruning |",
        "|---|---:|---:|---:|",
    ]
    for f, rate in zip(users.fields, missing.missing_rate_):
        lines.append(f"| {f.name} | {rate:.3f} | {f.size:,} | {int(final[f.offset:f.stop].sum()):,} |")
    lines += [
        "",
        f"Sparse set: {sparse_shape[1]:,} columns. Dense set: {len(dense_names)} columns.",
        "",
    ]
    with atomic_paths([path]) as (tmp,):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text("\n".join(lines))
