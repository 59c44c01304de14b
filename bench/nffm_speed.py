"""Training and prediction speed of the neural models against the default bag model, on one fold.

Usage: ``python bench/nffm_speed.py OUT SCALE [MODEL ...]`` with ``OUT`` the bench
folder (``features-SCALE``, ``interim-SCALE``, ``folds-SCALE.npy`` from
``make -f bench/Makefile features``). For each model (default: ``easy_dense``,
``nffm_raw``, ``nffm_full``), fold 0 with the default settings: the seconds to
build and fit (rows trained on per second, times the epochs run for the
network), to predict the held-out rows (rows per second), its held-out mean
per-aid AUC and the process's peak RSS so far. One JSON line each, on stdout.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from ensemble import NFFMClassifier, per_aid_auc
from pipeline.config import TrainSettings
from pipeline.design import Fold, Part, TrainInputs
from pipeline.files import read_train_pairs
from pipeline.models import parse_model
from pipeline.tasks import TrainJob, fit_model, peak_rss_mb


def main(argv: list[str]) -> None:
    """Measure each model named in ``argv[2:]`` on fold 0 of the bench data in ``argv[0]`` at scale ``argv[1]``."""
    logging.basicConfig(level=logging.WARNING)
    out, scale = Path(argv[0]), argv[1]
    models = argv[2:] or ["easy_dense", "nffm_raw", "nffm_full"]
    inputs = TrainInputs(out / f"features-{scale}", out / f"interim-{scale}" / "pairs.npz", out / f"folds-{scale}.npy")
    settings = replace(TrainSettings(), models=tuple(models))
    design = TrainJob(inputs, settings).open_design()
    task = Fold(0)
    held = design.folds == task.k
    aid = read_train_pairs(inputs.pairs).aid_idx[held]
    for name in models:
        spec = parse_model(name)
        t0 = time.perf_counter()
        est = fit_model(design, settings, spec, task)
        fit_s = time.perf_counter() - t0
        design.release()
        t0 = time.perf_counter()
        pred = design.predict(est, spec.feature_set, task, Part.HELD)
        predict_s = time.perf_counter() - t0
        if isinstance(est, NFFMClassifier):
            trained = sum(len(b) * len(h) for b, h in zip(est.plan(design.labels(task)).bags, est.history_, strict=True))
        else:
            plan = est.plan(design.labels(task))
            trained = sum(len(b) for b in plan.bags) if plan is not None else int((~held).sum())
        print(json.dumps({
            "model": name, "scale": scale, "fit_s": round(fit_s, 1), "rows_trained": int(trained),
            "train_rows_per_s": round(trained / fit_s), "predict_s": round(predict_s, 1),
            "predict_rows_per_s": round(int(held.sum()) / predict_s),
            "epochs": [len(h) for h in est.history_] if isinstance(est, NFFMClassifier) else None,
            "held_mean_aid_auc": round(per_aid_auc(design.y[held], pred, aid).mean, 4),
            "peak_rss_mb": round(peak_rss_mb()),
        }), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
