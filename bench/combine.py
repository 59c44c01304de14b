"""The train stage's combine step alone, from a finished build: blends and stack of its saved predictions.

Reads ``oof/<model>.npy``, ``pred/<model>.npy`` and ``models/<model>.joblib``
of the models named, runs the train stage's ``combine`` step (the nested out-of-fold
blends and stack, then their fit on all rows) with the current code, times
it, and writes a cross-validation report (with the per-aid table) to
``--report``. Use it to measure the combine step at full scale, or to
re-combine a build's models after a change to the combiners without
retraining them.

    python bench/combine.py BUILD INTERIM FOLDS --models easy_dense easy_dense_peraid \\
        --report bench/out/cv-full-peraid-combine/cv.md --truth bench/out/data-full/test1.truth.csv \\
        --features bench/out/features-full
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import time
from pathlib import Path

import numpy as np

from ensemble import PerAidLGBM, fold_scores
from pipeline.artifact import ArtifactKind, load_artifact
from pipeline.design import TrainInputs
from pipeline.report import write_cv_report
from pipeline.stages.train import CVResult, choose_final, combine, fallback_aids, read_inputs

logger = logging.getLogger("bench.combine")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("build", type=Path, help="build folder of a finished train stage")
    ap.add_argument("interim", type=Path, help="output folder of `load`")
    ap.add_argument("folds", type=Path, help="the fold file")
    ap.add_argument("--models", nargs="+", required=True, help="models of the build to combine, in config order")
    ap.add_argument("--report", type=Path, required=True, help="cv.md to write")
    ap.add_argument("--truth", default=None, help="synthetic test truth (optional)")
    ap.add_argument("--features", type=Path, help="feature folder (default: BUILD/features, as `make` lays it out)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--trust", action="store_true", help="load models written with other library versions")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    features = args.features or args.build / "features"
    data = read_inputs(TrainInputs(features, args.interim / "pairs.npz", args.folds), args.truth)
    results = []
    for name in args.models:
        oof = np.load(args.build / "oof" / f"{name}.npy")
        estimators = load_artifact(args.build / "models" / f"{name}.joblib", ArtifactKind.FOLD_MODELS,
                                   trust_versions=args.trust)
        pred = next((f for f in (args.build / "pred" / f"{name}{t}.npy" for t in ("", ".refit")) if f.exists()), None)
        r = CVResult(name, oof, None if pred is None else np.load(pred), 0.0,
                     fold_scores(oof, data.y, data.aid, data.folds), list(estimators))
        fell_back = set().union(*(fallback_aids(e, data) for e in estimators if isinstance(e, PerAidLGBM)))
        if fell_back:
            r.extra["fallback_aids"] = sorted(fell_back)
        results.append(r)
        logger.info("%s: out-of-fold mean per-aid AUC %.4f", name, data.score(oof))

    t0 = time.perf_counter()
    combos = combine(results, data, args.seed)
    seconds = time.perf_counter() - t0
    final = choose_final(results + combos, "auto", data.y, data.aid)
    write_cv_report(args.report, results + combos, final.name, data.y, data.aid, data.test.aid, data.truth)
    summary = {
        "combine_seconds": round(seconds, 1),
        "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
        "rows": int(len(data.y)),
        "oof": {r.name: round(data.score(r.oof), 4) for r in results + combos},
        "combiner_seconds": {c.name: round(c.seconds, 1) for c in combos},
    }
    print(json.dumps(summary, indent=1))  # noqa: T201 (a script's result)


if __name__ == "__main__":
    main()
