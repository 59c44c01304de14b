"""The ``load`` stage: competition files to arrays under ``data/interim``."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from pipeline.io import atomic_paths
from pipeline.loaders import load_ads, load_pairs, parse_users, save_user_matrix
from pipeline.schema import TEST_COLUMNS, TRAIN_COLUMNS

__all__ = ["load_pairs_file", "run_load"]

logger = logging.getLogger(__name__)


def run_load(
    users: str | os.PathLike[str],
    ads: str | os.PathLike[str],
    train: str | os.PathLike[str],
    test: str | os.PathLike[str],
    out: str | os.PathLike[str],
    chunk_lines: int = 50_000,
) -> None:
    """Parse the four competition files and write ``users/``, ``ads.csv``, ``pairs.npz``.

    Nothing is written when any input is malformed: the outputs are built as
    temporaries and renamed together at the end.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ad_table = load_ads(ads)
    with atomic_paths([out / "users", out / "ads.csv", out / "pairs.npz"]) as (u_tmp, a_tmp, p_tmp):
        u_tmp.mkdir()
        matrix = parse_users(users, chunk_lines=chunk_lines, indices_out=u_tmp / "indices.npy")
        tr = load_pairs(train, TRAIN_COLUMNS, ad_table, matrix)
        te = load_pairs(test, TEST_COLUMNS, ad_table, matrix)
        save_user_matrix(matrix, u_tmp, source=str(users))
        ad_table.frame.to_csv(a_tmp, index=False)
        with open(p_tmp, "wb") as fh:
            np.savez(fh, **{f"train_{k}": v for k, v in tr.items()}, **{f"test_{k}": v for k, v in te.items()})
        del matrix
    logger.info(
        "train: %s rows (%.2f%% positive), test: %s rows, %d aids",
        f"{len(tr['aid']):,}", 100 * tr["label"].mean(), f"{len(te['aid']):,}", len(ad_table.aids),
    )


def load_pairs_file(path: str | os.PathLike[str], part: str) -> dict[str, np.ndarray]:
    """The arrays of ``part`` (``"train"`` or ``"test"``) from ``pairs.npz``."""
    with np.load(path) as z:
        prefix = f"{part}_"
        return {k[len(prefix):]: z[k] for k in z.files if k.startswith(prefix)}
