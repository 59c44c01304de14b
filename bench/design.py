"""One fold's dense-set design: the train stage's code against a naive reference.

Usage::

    python bench/design.py FEATURES INTERIM FOLDS --mode new|naive [--fold 0]

``new`` is what the train stage does (``pipeline.design.FoldDesign``): the CTR counts
of all folds in one pass, then fold ``k``'s training matrix filled from row
ranges of the feature files, then its held-out and test rows in chunks.
``naive`` is the previous code, kept here as the reference: the whole sparse
and dense sets loaded, and for the fold one ``SparseTargetEncoder`` per
``group x field`` fitted (cross-fitted over the inner folds) on a copy of the
fold's training rows, then applied to the held-out and test rows. Both build
the same matrices (tests: ``tests/features/test_ctr.py``). Run each mode as
its own process (``bench/measure.py`` records its peak RSS).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from features import CTRSpec, FeatureSet
from features.reference import SparseTargetEncoder
from pipeline.design import Fold, FoldDesign, Part, TrainInputs
from pipeline.files import read_folds, read_test_pairs, read_train_pairs


def _cross(block: sp.csr_matrix, group: np.ndarray, n_groups: int) -> sp.csr_matrix:
    row_of = np.repeat(np.arange(block.shape[0]), np.diff(block.indptr))
    indices = group[row_of].astype(np.int64) * block.shape[1] + block.indices
    return sp.csr_matrix((np.ones(len(indices), np.float32), indices, block.indptr.copy()),
                         shape=(block.shape[0], max(n_groups * block.shape[1], 1)))


def naive(features: Path, aid: dict, y: np.ndarray, folds: np.ndarray, k: int) -> tuple:
    """The previous per-fold encoders (returns the three matrices)."""
    columns = json.loads((features / "columns.json").read_text())
    spec = CTRSpec.from_dict(columns["ctr"])
    tr, te = (sp.load_npz(features / f"sparse_{p}.npz").tocsr() for p in ("train", "test"))
    d_tr, d_te = (np.load(features / f"dense_{p}.npy") for p in ("train", "test"))
    fit, held = np.flatnonzero(folds != k), np.flatnonzero(folds == k)
    parts: dict[str, list] = {"fit": [], "held": [], "test": []}
    rows = {"fit": (tr, fit, aid["train"]), "held": (tr, held, aid["train"]), "test": (te, None, aid["test"])}
    for codes in spec.groups.values():
        gcode = np.asarray(codes)
        n_groups = int(gcode.max()) + 1
        for _, kind, start, stop in spec.fields:
            enc = SparseTargetEncoder(smoothing=spec.smoothing, aggregations=spec.aggs(kind), folds=folds[fit],
                                      column_groups=np.repeat(np.arange(n_groups), stop - start))
            for part, (X, idx, a) in rows.items():
                sub = X[idx] if idx is not None else X
                a = a[idx] if idx is not None else a
                block = _cross(sub[:, start:stop].tocsr(), gcode[a], n_groups)
                parts[part].append(enc.fit_transform(block, y[fit]) if part == "fit" else enc.transform(block))
    return tuple(
        np.hstack([d, np.hstack(parts[p]).astype(np.float32)])
        for p, d in (("fit", d_tr[fit]), ("held", d_tr[held]), ("test", d_te))
    )


def new(features: Path, interim: Path, folds_path: Path, k: int) -> tuple:
    """The train stage's design (returns the three matrices)."""
    design = FoldDesign(TrainInputs(features, interim / "pairs.npz", folds_path), {FeatureSet.DENSE})
    task = Fold(k)
    return (design.matrix(FeatureSet.DENSE, task), np.vstack(list(design.chunks(FeatureSet.DENSE, task, Part.HELD))),
            np.vstack(list(design.chunks(FeatureSet.DENSE, task, Part.TEST))))


def main() -> None:
    """Time one mode."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("features", type=Path)
    p.add_argument("interim", type=Path)
    p.add_argument("folds", type=Path)
    p.add_argument("--mode", choices=("new", "naive"), required=True)
    p.add_argument("--fold", type=int, default=0)
    args = p.parse_args()
    train, test = read_train_pairs(args.interim / "pairs.npz"), read_test_pairs(args.interim / "pairs.npz")
    folds = read_folds(args.folds, len(train))
    t0 = time.perf_counter()
    if args.mode == "new":
        mats = new(args.features, args.interim, args.folds, args.fold)
    else:
        mats = naive(args.features, {"train": train.aid_idx, "test": test.aid_idx},
                     train.label.astype(np.int64), folds, args.fold)
    seconds = time.perf_counter() - t0
    print(json.dumps({"mode": args.mode, "fold": args.fold, "seconds": round(seconds, 1),
                      "shapes": [list(m.shape) for m in mats],
                      "checksum": [float(np.nansum(m[:, -20:], dtype=np.float64)) for m in mats]}))


if __name__ == "__main__":
    main()
