"""The ``load`` stage: competition files to arrays under ``data/interim``."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from core import Pairs
from pipeline.config import LoadSettings
from pipeline.files import write_ads, write_pairs, write_user_matrix
from pipeline.io import PathLike, atomic_paths
from pipeline.readers import pair_keys, parse_users, read_ads_csv, read_pairs_csv
from pipeline.schema import TEST_COLUMNS, TRAIN_COLUMNS

__all__ = ["run_load"]

logger = logging.getLogger(__name__)


def run_load(users: PathLike, ads: PathLike, train: PathLike, test: PathLike, out: PathLike,
             settings: LoadSettings | None = None) -> None:
    """Parse the four competition files and write ``users/``, ``ads.csv``, ``pairs.npz`` under ``out``.

    Nothing is written when any input is malformed: the outputs are built as
    temporaries and renamed together at the end.
    """
    settings = settings or LoadSettings()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ad_table = read_ads_csv(ads)
    with atomic_paths([out / "users", out / "ads.csv", out / "pairs.npz"]) as (u_tmp, a_tmp, p_tmp):
        u_tmp.mkdir()
        matrix = parse_users(users, chunk_lines=settings.chunk_lines, indices_out=u_tmp / "indices.npy")
        tr = read_pairs_csv(train, TRAIN_COLUMNS, ad_table, matrix)
        te = read_pairs_csv(test, TEST_COLUMNS, ad_table, matrix)
        _log_overlap(test, tr, te)
        write_user_matrix(matrix, u_tmp, source=str(users))
        write_ads(a_tmp, ad_table)
        write_pairs(p_tmp, tr, te)
        del matrix
    logger.info(
        "train: %s rows (%.2f%% positive), test: %s rows, %d aids",
        f"{len(tr):,}", 100 * tr.label.mean(), f"{len(te):,}", len(ad_table.aids),
    )


def _log_overlap(test_path: PathLike, train: Pairs, test: Pairs) -> None:
    """Test pairs that are also training pairs are scored like the others; say how many there are."""
    also = np.flatnonzero(np.isin(pair_keys(test.aid, test.uid), pair_keys(train.aid, train.uid)))
    if len(also):
        logger.warning("%s: %s test pairs are also training pairs (first: line %d); they are scored like the "
                       "others, from their features", test_path, f"{len(also):,}", int(also[0]) + 2)
