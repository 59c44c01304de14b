"""The ``features`` stage: the sparse and dense feature sets of every pair."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tqdm.auto import tqdm

from features._pruning import MissingRatePruner
from features.featurizer import PairFeaturizer, row_chunks
from features.folds import load_folds
from pipeline.artifact import save_artifact
from pipeline.config import config_hash
from pipeline.errors import LookalikeError
from pipeline.io import CSRChunkWriter, atomic_paths
from pipeline.load import load_pairs_file
from pipeline.loaders import AdTable, UserMatrix, load_user_matrix

__all__ = ["FEATURE_FILES", "build_features"]

logger = logging.getLogger(__name__)

FEATURE_FILES = (
    "sparse_train.npz",
    "sparse_test.npz",
    "dense_train.npy",
    "dense_test.npy",
    "columns.json",
    "featurizer.joblib",
)


def build_features(
    interim: str | os.PathLike[str],
    folds_path: str | os.PathLike[str],
    out: str | os.PathLike[str],
    report: str | os.PathLike[str],
    settings: dict[str, Any],
) -> None:
    """Fit the :class:`~features.featurizer.PairFeaturizer`, write both feature sets and their names.

    Sparse set: ``aid_idx``, the ads' one-hot fields, the pruned user tokens
    (the "raw" set), then one-hot ``aid x single-valued field`` crosses.
    Dense set: single-valued codes, list lengths, ``aid x field`` cross ids,
    occurrence counts, and leave-self-out user history. The conversion rates
    of ``group x field`` (group = aid, advertiser, product type) are described
    in ``columns.json`` (``ctr``) and computed by the train stage inside each
    fold (see :mod:`features.ctr` for why). The fitted featurizer is saved
    (``featurizer.joblib`` with its manifest) for scoring new pairs.

    Pairs are transformed ``chunk_rows`` at a time and the sparse sets
    streamed to disk, so memory is bounded by a chunk plus the dense set.

    Parameters
    ----------
    interim : path
        Output folder of the ``load`` stage.
    folds_path : path
        The project's fold file (checked against the training rows).
    out : path
        Folder for the feature files (:data:`FEATURE_FILES`).
    report : path
        Markdown report of missing rates and kept columns.
    settings : dict
        The ``[features]`` section of the config.
    """
    interim, out = Path(interim), Path(out)
    bad = [a for a in settings["ctr_aggregations"] if a not in ("mean", "max", "count", "lor")]
    if bad or not settings["ctr_aggregations"]:
        raise LookalikeError(
            f"[features] ctr_aggregations {settings['ctr_aggregations']!r}: use some of mean, max, count, lor"
        )
    users = load_user_matrix(interim / "users")
    train = load_pairs_file(interim / "pairs.npz", "train")
    test = load_pairs_file(interim / "pairs.npz", "test")
    load_folds(folds_path, len(train["aid"]))
    ad_frame = pd.read_csv(interim / "ads.csv")
    ads = AdTable(aids=ad_frame["aid"].to_numpy(), frame=ad_frame)

    feat = PairFeaturizer(
        missing_threshold=settings["missing_threshold"], min_df=settings["min_df"],
        ctr_smoothing=settings["ctr_smoothing"], chunk_rows=settings["chunk_rows"],
        ctr_aggregations=tuple(settings["ctr_aggregations"]),
    ).fit(users, ads, train, test)
    n_sparse, n_dense = len(feat.sparse_names_), len(feat.dense_names_)
    paths = [out / name for name in FEATURE_FILES]
    with atomic_paths(paths[:5]) as tmp:
        for k, (part, pairs) in enumerate((("train", train), ("test", test))):
            writer = CSRChunkWriter(tmp[k], n_sparse)
            dense = np.lib.format.open_memmap(tmp[2 + k], mode="w+", dtype=np.float32, shape=(len(pairs["aid"]), n_dense))
            for rows in tqdm(
                list(row_chunks(len(pairs["aid"]), settings["chunk_rows"])), desc=f"features {part}",
                unit="chunk", disable=None,
            ):
                y = pairs["label"][rows] if part == "train" else None
                sparse, dense[rows] = feat.transform(
                    pairs["aid_idx"][rows], pairs["uid"][rows], users.csr(pairs["user_row"][rows]), y=y
                )
                writer.append(sparse)
            shape = writer.close()
            dense.flush()
            del dense
            logger.info("%s: sparse %s x %s, dense %d columns", part, f"{shape[0]:,}", f"{shape[1]:,}", n_dense)
        columns = {
            "sparse": feat.sparse_names_,
            "sparse_raw": feat.n_raw_,
            "dense": feat.dense_names_,
            "categorical": {"sparse": ["aid_idx"], "dense": feat.categorical_},
            "ctr": feat.ctr_spec_.to_json(),
            "missing_rate": dict(zip(feat.missing_.field_names_, feat.missing_.missing_rate_.round(6).tolist())),
            "dropped_fields": feat.missing_.dropped_fields_,
        }
        tmp[4].write_text(json.dumps(columns, indent=1) + "\n")
        save_artifact(feat, paths[5], {"stage": "features", "config": settings, "config_hash": config_hash(settings)})
    final = np.zeros(users.n_cols, dtype=bool)
    final[feat.kept_cols_] = True
    _write_report(
        report, users, feat.missing_, final, (len(train["aid"]), n_sparse), feat.n_raw_,
        feat.dense_names_ + feat.ctr_spec_.names(),
    )
    logger.info(
        "sparse set: %s columns (%s raw); dense set: %d columns; dropped fields: %s",
        f"{n_sparse:,}", f"{feat.n_raw_:,}", n_dense, ", ".join(feat.missing_.dropped_fields_) or "none",
    )


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
