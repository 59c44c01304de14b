"""The ``features`` stage: fit the pair featurizer, write the sparse and dense sets of every pair."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from core import Pairs, UserMatrix, row_chunks
from features import PairFeaturizer
from pipeline.artifact import ArtifactKind, save_artifact
from pipeline.config import FeatureSettings, as_dict, config_hash
from pipeline.files import read_ads, read_folds, read_test_pairs, read_train_pairs, read_user_matrix
from pipeline.io import CSRChunkWriter, PathLike, stage_outputs
from pipeline.report import write_features_report

__all__ = ["FEATURE_FILES", "run_features"]

logger = logging.getLogger(__name__)

#: What the stage writes into its folder.
FEATURE_FILES = (
    "sparse_train.npz",
    "sparse_test.npz",
    "dense_train.npy",
    "dense_test.npy",
    "columns.json",
    "featurizer.joblib",
)


def run_features(interim: PathLike, folds_path: PathLike, out: PathLike, report: PathLike,
                 settings: FeatureSettings | None = None) -> None:
    """Fit the :class:`~features.PairFeaturizer`, write both feature sets, their description and the report.

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
    settings : FeatureSettings
    """
    settings = settings or FeatureSettings()
    interim, out = Path(interim), Path(out)
    users = read_user_matrix(interim / "users")
    train, test = read_train_pairs(interim / "pairs.npz"), read_test_pairs(interim / "pairs.npz")
    read_folds(folds_path, len(train))
    ads = read_ads(interim / "ads.csv")

    feat = PairFeaturizer(
        missing_threshold=settings.missing_threshold, min_df=settings.min_df,
        ctr_smoothing=settings.ctr_smoothing, chunk_rows=settings.chunk_rows,
        ctr_aggregations=settings.ctr_aggregations,
    ).fit(users, ads, train, test)
    paths = {name: out / name for name in FEATURE_FILES}
    with stage_outputs() as outputs:  # every file is renamed into place only when all are written
        shape = _write_sets(feat, users, train, outputs.path(paths["sparse_train.npz"]),
                            outputs.path(paths["dense_train.npy"]), settings.chunk_rows, "train")
        _write_sets(feat, users, test, outputs.path(paths["sparse_test.npz"]), outputs.path(paths["dense_test.npy"]),
                    settings.chunk_rows, "test")
        columns = {
            "sparse": feat.sparse_names_,
            "sparse_raw": feat.n_raw_,
            "dense": feat.dense_names_,
            "categorical": {"sparse": ["aid_idx"], "dense": feat.categorical_},
            "ctr": feat.ctr_spec_.to_dict(),
            "missing_rate": dict(zip(feat.missing_.field_names_, feat.missing_.missing_rate_.round(6).tolist())),
            "dropped_fields": feat.missing_.dropped_fields_,
        }
        outputs.path(paths["columns.json"]).write_text(json.dumps(columns, indent=1) + "\n")
        save_artifact(feat, paths["featurizer.joblib"], ArtifactKind.FEATURIZER,
                      {"stage": "features", "config": as_dict(settings), "config_hash": config_hash(settings)},
                      outputs)
        kept = np.zeros(users.n_cols, dtype=bool)
        kept[feat.kept_cols_] = True
        write_features_report(report, users, feat.missing_, kept, shape, feat.n_raw_,
                              feat.dense_names_ + feat.ctr_spec_.names(), outputs)
    logger.info(
        "sparse set: %s columns (%s raw); dense set: %d columns; dropped fields: %s",
        f"{len(feat.sparse_names_):,}", f"{feat.n_raw_:,}", len(feat.dense_names_),
        ", ".join(feat.missing_.dropped_fields_) or "none",
    )


def _write_sets(
    feat: PairFeaturizer, users: UserMatrix, pairs: Pairs, sparse_path: Path, dense_path: Path, chunk_rows: int,
    name: str,
) -> tuple[int, int]:
    """Stream one pair set's sparse rows to ``sparse_path`` and its dense rows to ``dense_path``; the sparse shape.

    Training pairs pass their labels, so their history leaves their own label out.
    """
    writer = CSRChunkWriter(sparse_path, len(feat.sparse_names_))
    dense = np.lib.format.open_memmap(dense_path, mode="w+", dtype=np.float32,
                                      shape=(len(pairs), len(feat.dense_names_)))
    for rows in tqdm(list(row_chunks(len(pairs), chunk_rows)), desc=f"features {name}", unit="chunk", disable=None):
        y = pairs.label[rows] if pairs.label is not None else None
        sparse, dense[rows] = feat.transform(pairs.aid_idx[rows], pairs.uid[rows], users.csr(pairs.user_row[rows]), y=y)
        writer.append(sparse)
    shape = writer.close()
    dense.flush()
    del dense
    logger.info("%s: sparse %s x %s, dense %d columns", name, f"{shape[0]:,}", f"{shape[1]:,}", len(feat.dense_names_))
    return shape
