"""Train-stage scaling over Dask workers: wall time and peak memory per worker.

Usage::

    python bench/dask_scaling.py FEATURES INTERIM FOLDS --name NAME [--models m1,m2] [--workers 0,1,2]

Cross-validates the models (default: the config's) with no scheduler (0) and
with ``local:N`` clusters; LightGBM gets ``cores // N`` threads per worker so
the machine is never oversubscribed. Appends one JSON line per run to
``bench/out/results.jsonl``: wall seconds, the largest per-worker peak RSS
(each task reports its process's own ``ru_maxrss``), and the summed task
seconds (the work a bigger cluster would divide).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import replace
from pathlib import Path

from pipeline.config import load_config
from pipeline.design import TrainInputs
from pipeline.stages.train import cross_validate, read_inputs
from pipeline.tasks import TrainJob


def main() -> None:
    """Run the sweep."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("features", type=Path)
    p.add_argument("interim", type=Path)
    p.add_argument("folds", type=Path)
    p.add_argument("--name", required=True)
    p.add_argument("--config", default="config/default.toml")
    p.add_argument("--models", default="")
    p.add_argument("--workers", default="0,1,2")
    p.add_argument("--out", type=Path, default=Path("bench/out/results.jsonl"))
    args = p.parse_args()
    settings = load_config(args.config).train
    if args.models:
        settings = replace(settings, models=tuple(args.models.split(",")))
    cores = os.cpu_count() or 1
    inputs = TrainInputs(args.features, args.interim / "pairs.npz", args.folds)
    data = read_inputs(inputs, None)
    for n in (int(w) for w in args.workers.split(",")):
        settings = replace(settings, n_jobs=max(cores // max(n, 1), 1), scheduler=f"local:{n}" if n else "")
        job = TrainJob(inputs, settings)
        t0 = time.perf_counter()
        results = cross_validate(job.open_design(), job, data)
        peak = max(r.extra["task_peak_rss_mb"] for r in results)
        task_s = sum(r.seconds for r in results)
        row = {
            "name": f"{args.name}-workers{n}", "seconds": round(time.perf_counter() - t0, 2),
            "task_seconds": round(task_s, 1), "workers": n, "lightgbm_threads": settings.n_jobs,
            "models": list(settings.models), "cpus": cores, "when": time.strftime("%Y-%m-%d %H:%M:%S"),
        }
        row["peak_rss_mb"] = peak  # of the process that trained (here, or the largest worker)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        with open(args.out, "a") as fh:
            fh.write(json.dumps(row) + "\n")
        print(json.dumps(row))


if __name__ == "__main__":
    main()
