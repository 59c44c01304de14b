"""Feature-set margin: one model on several feature sets, on chosen folds.

Usage::

    python bench/margin.py FEATURES INTERIM FOLDS [--models reference_raw,reference_full]
        [--folds 0] [--ctr-aggregations mean,max,count,lor] [--name NAME]

Trains each model on the given folds of the fold file exactly as the train
stage does (``pipeline.tasks.run_task``) and prints the held-out mean per-aid
AUC per fold, as JSON lines (also appended to ``bench/out/margin.jsonl``).
``--ctr-aggregations`` overrides the aggregations of the CTR statistics saved
in ``columns.json`` (a scratch copy of the feature folder is used).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from ensemble import per_aid_auc
from pipeline.config import load_config
from pipeline.design import Fold, TrainInputs
from pipeline.files import read_train_pairs
from pipeline.tasks import TrainJob, run_task


def main() -> None:
    """Run the comparison."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("features", type=Path)
    p.add_argument("interim", type=Path)
    p.add_argument("folds", type=Path)
    p.add_argument("--models", default="reference_raw,reference_full")
    p.add_argument("--folds-to-run", default="0")
    p.add_argument("--ctr-aggregations", default="")
    p.add_argument("--config", default="config/default.toml")
    p.add_argument("--name", default="")
    args = p.parse_args()
    settings = load_config(args.config).train
    train = read_train_pairs(args.interim / "pairs.npz")
    with tempfile.TemporaryDirectory() as scratch:
        features = args.features
        if args.ctr_aggregations:
            features = Path(scratch) / "features"
            features.mkdir()
            for f in args.features.iterdir():
                (features / f.name).symlink_to(f.resolve())
            (features / "columns.json").unlink()
            columns = json.loads((args.features / "columns.json").read_text())
            columns["ctr"]["aggregations"] = args.ctr_aggregations.split(",")
            (features / "columns.json").write_text(json.dumps(columns))
        for name in args.models.split(","):
            job = TrainJob(TrainInputs(features, args.interim / "pairs.npz", args.folds),
                           replace(settings, models=(name,)))
            design = job.open_design()
            for k in (int(v) for v in args.folds_to_run.split(",")):
                t0 = time.perf_counter()
                out = run_task(design, job.settings, name, Fold(k))
                held = design.folds == k
                row = {"name": args.name, "model": name, "fold": k,
                       "ctr_aggregations": args.ctr_aggregations or "saved",
                       "auc": round(per_aid_auc(train.label[held], out.oof, train.aid[held]).mean, 4),
                       "seconds": round(time.perf_counter() - t0, 1)}
                print(json.dumps(row), flush=True)
                with open("bench/out/margin.jsonl", "a") as fh:
                    fh.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
