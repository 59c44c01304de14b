"""Leakage check: with random training labels, out-of-fold AUC must be ~0.5.

Usage::

    python bench/leakage.py INTERIM FOLDS WORKDIR [--model reference_dense] [--mode bernoulli|permute]

Replaces the training labels of ``INTERIM/pairs.npz`` by random ones (iid
Bernoulli at the same rate, or a global permutation), rebuilds the features
and cross-validates ``--model`` exactly as the train stage does. Any score
away from 0.5 is information about the labels that reached a held-out row.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np

from ensemble.cv import TrainJob, train_models
from ensemble.metrics import per_aid_auc
from features.build import build_features
from pipeline.config import load_config
from pipeline.load import load_pairs_file


def main() -> None:
    """Run the check and print one JSON line."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("interim", type=Path)
    p.add_argument("folds", type=Path)
    p.add_argument("work", type=Path)
    p.add_argument("--model", default="reference_dense")
    p.add_argument("--mode", default="bernoulli", choices=["bernoulli", "permute"])
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args()
    shutil.rmtree(args.work, ignore_errors=True)
    shutil.copytree(args.interim, args.work / "interim")
    z = dict(np.load(args.work / "interim" / "pairs.npz"))
    rng = np.random.default_rng(args.seed)
    y = z["train_label"]
    z["train_label"] = (
        (rng.random(len(y)) < y.mean()).astype(y.dtype) if args.mode == "bernoulli" else rng.permutation(y)
    )
    np.savez(args.work / "interim" / "pairs.npz", **z)
    cfg = load_config(None)
    build_features(args.work / "interim", args.folds, args.work / "features", args.work / "features.md", cfg["features"])
    train = load_pairs_file(args.work / "interim" / "pairs.npz", "train")
    job = TrainJob(str(args.work / "features"), str(args.work / "interim"), str(args.folds),
                   {**cfg["train"], "models": [args.model]})
    (r,), _ = train_models(job)
    res = per_aid_auc(train["label"], r.oof, train["aid"])
    print(json.dumps({"model": args.model, "mode": args.mode, "rows": len(y), "oof_mean_aid_auc": round(res.mean, 4),
                      "fold_auc": [round(v, 4) for v in r.fold_auc]}))


if __name__ == "__main__":
    main()
