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

from features._keys import KeyCounter, LeaveSelfOutHistory
from features._pruning import FrequencyPruner, MissingRatePruner
from features.ctr import CTRSpec, cross_tokens
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


def _codes(values: np.ndarray) -> tuple[np.ndarray, int]:
    uniq, inv = np.unique(values, return_inverse=True)
    return inv.ravel().astype(np.int64), len(uniq)


def build_features(
    interim: str | os.PathLike[str],
    folds_path: str | os.PathLike[str],
    out: str | os.PathLike[str],
    report: str | os.PathLike[str],
    settings: dict[str, Any],
) -> None:
    """Build the sparse and dense feature sets and write them with their column names.

    Sparse set: ``aid_idx``, the ads' one-hot fields, the pruned user tokens
    (the "raw" set), then one-hot ``aid x single-valued field`` crosses.
    Dense set: single-valued codes, list lengths, ``aid x field`` cross ids,
    occurrence counts, and leave-self-out user history. The conversion rates
    of ``group x field`` (group = aid, advertiser, product type) are described
    in ``columns.json`` (``ctr``) and computed by the train stage inside each
    fold (see :mod:`features.ctr` for why).

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
    folds = load_folds(folds_path, len(train["aid"]))
    y = train["label"].astype(np.int8)
    ad_frame = pd.read_csv(interim / "ads.csv")
    ads = AdTable(aids=ad_frame["aid"].to_numpy(), frame=ad_frame)

    # --- pruning, fitted on the training rows
    slices = [(f.name, f.offset, f.stop) for f in users.fields]
    pruner = Pipeline(
        [
            ("missing", MissingRatePruner(threshold=settings["missing_threshold"], fields=slices)),
            ("frequency", FrequencyPruner(min_df=settings["min_df"])),
        ]
    )
    x_tr = pruner.fit_transform(users.csr(train["user_row"])).tocsr()
    x_te = pruner.transform(users.csr(test["user_row"])).tocsr()
    missing = pruner.named_steps["missing"]
    kept_cols = np.flatnonzero(missing.get_support())[pruner.named_steps["frequency"].get_support()]
    col_names = np.array(_user_column_names(users))[kept_cols].tolist()
    kept_fields = []  # (field, start, stop) in the pruned matrix
    for f in users.fields:
        a, b = np.searchsorted(kept_cols, [f.offset, f.stop])
        if b > a:
            kept_fields.append((f, int(a), int(b)))

    n_aids = len(ads.aids)
    groups = {
        "aid": (np.arange(n_aids), n_aids),
        "advertiser": _codes(ad_frame["advertiserId"].to_numpy()),
        "productType": _codes(ad_frame["productType"].to_numpy()),
    }
    parts = {"train": train, "test": test}
    dense: dict[str, dict[str, np.ndarray]] = {"train": {}, "test": {}}
    categorical = ["aid_idx"]
    for part, pairs in parts.items():
        dense[part]["aid_idx"] = pairs["aid_idx"].astype(np.float64)

    # --- user attributes: single-valued codes and list lengths (all fields)
    tables = {part: user_field_table(users, pairs["user_row"]) for part, pairs in parts.items()}
    for col in tables["train"].columns:
        for part in parts:
            dense[part][col] = tables[part][col].to_numpy(dtype=np.float64)

    # --- aid x single-valued attribute: cross ids (categorical) and counts over train+test
    singles = [f for f in users.fields if f.kind == "single" and f.size > 0]
    for f in singles:
        width = f.size + 1
        code = {
            part: parts[part]["aid_idx"].astype(np.int64) * width
            + (np.searchsorted(f.values, tables[part][f.name].to_numpy()) + 1)
            * (tables[part][f.name].to_numpy() >= 0)
            for part in parts
        }
        for part in parts:
            dense[part][f"aid_x_{f.name}"] = code[part].astype(np.float64)
        categorical.append(f"aid_x_{f.name}")
        counts = KeyCounter().fit_transform(np.r_[code["train"], code["test"]][:, None])[:, 0]
        dense["train"][f"count_aid_x_{f.name}"] = counts[: len(y)]
        dense["test"][f"count_aid_x_{f.name}"] = counts[len(y) :]
    uid_counts = KeyCounter().fit_transform(np.r_[train["uid"], test["uid"]][:, None])[:, 0]
    dense["train"]["count_uid"], dense["test"]["count_uid"] = uid_counts[: len(y)], uid_counts[len(y) :]

    # --- leave-self-out history of the user, overall and within the ad's group
    for gname, (gcode, n_groups) in (("all", (np.zeros(n_aids, np.int64), 1)), *groups.items()):
        if gname == "aid":
            continue  # a user appears once per aid: nothing to leave out
        key = {part: parts[part]["uid"].astype(np.int64) * n_groups + gcode[parts[part]["aid_idx"]] for part in parts}
        hist = LeaveSelfOutHistory()
        values = {"train": hist.fit_transform(key["train"][:, None], y), "test": hist.transform(key["test"][:, None])}
        for k, what in enumerate(("pos", "neg")):
            for part in parts:
                dense[part][f"hist_{gname}_{what}"] = values[part][:, k]

    # --- sparse set: raw tokens first, then aid x single-valued one-hot crosses
    ad_onehot, ad_names = ads.one_hot()
    sparse, n_raw = {}, 0
    cross_blocks = {part: [] for part in parts}
    cross_names: list[str] = []
    for f, a, b in kept_fields:
        if f.kind != "single":
            continue
        c_tr = cross_tokens(x_tr[:, a:b].tocsr(), train["aid_idx"], n_aids)
        keep = np.flatnonzero(np.bincount(c_tr.indices, minlength=c_tr.shape[1]) >= settings["min_df"])
        cross_blocks["train"].append(c_tr[:, keep])
        cross_blocks["test"].append(cross_tokens(x_te[:, a:b].tocsr(), test["aid_idx"], n_aids)[:, keep])
        local = [col_names[a + j % (b - a)] for j in keep]
        cross_names += [f"aid{j // (b - a)}_x_{name}" for j, name in zip(keep, local)]
    for part, pairs, xu in (("train", train, x_tr), ("test", test, x_te)):
        aid_col = sp.csr_matrix(pairs["aid_idx"].astype(np.float32)[:, None])
        raw = [aid_col, ad_onehot[pairs["aid_idx"]], xu]
        n_raw = 1 + ad_onehot.shape[1] + xu.shape[1]
        sparse[part] = sp.hstack(raw + cross_blocks[part], format="csr", dtype=np.float32)
    sparse_names = ["aid_idx"] + ad_names + col_names + cross_names

    user_start = 1 + ad_onehot.shape[1]  # the pruned user tokens in the sparse set
    ctr = CTRSpec(
        fields=[(f.name, f.kind, user_start + a, user_start + b) for f, a, b in kept_fields],
        groups={g: codes.tolist() for g, (codes, _) in groups.items()},
        smoothing=settings["ctr_smoothing"],
    )
    dense_names = list(dense["train"])
    dense_arr = {part: np.column_stack([dense[part][c] for c in dense_names]).astype(np.float32) for part in parts}
    columns = {
        "sparse": sparse_names,
        "sparse_raw": n_raw,
        "dense": dense_names,
        "categorical": {"sparse": ["aid_idx"], "dense": categorical},
        "ctr": ctr.to_json(),
        "missing_rate": dict(zip(missing.field_names_, missing.missing_rate_.round(6).tolist())),
        "dropped_fields": missing.dropped_fields_,
    }
    with atomic_paths([out / name for name in FEATURE_FILES]) as tmp:
        for path, part in ((tmp[0], "train"), (tmp[1], "test")):
            with open(path, "wb") as fh:
                sp.save_npz(fh, sparse[part], compressed=False)
        for path, part in ((tmp[2], "train"), (tmp[3], "test")):
            with open(path, "wb") as fh:
                np.save(fh, dense_arr[part])
        tmp[4].write_text(json.dumps(columns, indent=1) + "\n")
    final = np.zeros(users.n_cols, dtype=bool)
    final[kept_cols] = True
    _write_report(report, users, missing, final, sparse["train"].shape, n_raw, dense_names + ctr.names())
    logger.info(
        "sparse set: %s columns (%s raw); dense set: %d columns; dropped fields: %s",
        f"{sparse['train'].shape[1]:,}", f"{n_raw:,}", len(dense_names),
        ", ".join(missing.dropped_fields_) or "none",
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
    final: np.ndarray,
    sparse_shape: tuple[int, int],
    n_raw: int,
    dense_names: list[str],
) -> None:
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
    groups: dict[str, int] = {}
    for name in dense_names:
        groups[name.split("_")[0]] = groups.get(name.split("_")[0], 0) + 1
    lines += [
        "",
        f"Sparse set: {sparse_shape[1]:,} columns ({n_raw:,} raw one-hot/bag-of-tokens, "
        f"{sparse_shape[1] - n_raw:,} aid x attribute crosses).",
        "",
        f"Dense set: {len(dense_names)} columns, of which the `ctr` ones are computed "
        "per cross-validation fold by the train stage: "
        + ", ".join(f"{k} ({v})" for k, v in groups.items())
        + ".",
        "",
    ]
    with atomic_paths([path]) as (tmp,):
        tmp.write_text("\n".join(lines))
