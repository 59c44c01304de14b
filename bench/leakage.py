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
from dataclasses import replace
from pathlib import Path

import numpy as np

from pipeline.config import load_config
from pipeline.design import TrainInputs
from pipeline.stages.features import run_features
from pipeline.stages.train import cross_validate, read_inputs
from pipeline.tasks import TrainJob


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
    run_features(args.work / "interim", args.folds, args.work / "features", args.work / "features.md", cfg.features)
    inputs = TrainInputs(args.work / "features", args.work / "interim" / "pairs.npz", args.folds)
    job = TrainJob(inputs, replace(cfg.train, models=(args.model,)))
    data = read_inputs(inputs, None)
    (r,) = cross_validate(job.open_design(), job, data)
    print(json.dumps({"model": args.model, "mode": args.mode, "rows": len(y), "oof_mean_aid_auc": round(data.score(r.oof), 4),
                      "fold_auc": [round(v, 4) for v in r.fold_auc]}))


if __name__ == "__main__":
    main()
