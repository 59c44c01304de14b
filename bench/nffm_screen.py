"""Screen settings of the neural model on a few folds: the network alone and its blend with a built model.

Usage: ``python bench/nffm_screen.py OUT SCALE BUILD LABEL FOLDS [SETTINGS]``, with
``OUT`` the bench folder (``features-SCALE``, ``interim-SCALE``, ``folds-SCALE.npy``),
``BUILD`` a train stage's build folder whose ``oof/easy_dense.npy`` is the reference model's
out-of-fold scores, ``FOLDS`` comma-separated fold numbers and ``SETTINGS`` a JSON object of
``[train.nffm]`` settings (default ``{}``; add ``"model": "nffm_raw"`` for the other set).

Per fold, one JSON line on stdout: the held-out mean per-aid AUC of ``easy_dense`` and of
``nffm_full`` trained with those settings, of their within-aid rank blend for network weights
0.3-0.6, the best blend's gain over ``easy_dense``, and the early-stopping AUC of each epoch of the
last network. The ranks are taken inside the fold (a screen, not the stage's nested blend).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from scipy.stats import rankdata

from ensemble import per_aid_auc
from ensemble.metrics import aid_groups
from pipeline.config import TrainSettings
from pipeline.design import Fold, Part, TrainInputs
from pipeline.files import read_train_pairs
from pipeline.models import parse_model
from pipeline.tasks import TrainJob, fit_model

WEIGHTS = (0.3, 0.4, 0.5, 0.6)


def _rank_in_aid(scores: np.ndarray, aid: np.ndarray) -> np.ndarray:
    """Each score's rank inside its aid, scaled to (0, 1]."""
    ranks = np.empty(len(scores))
    for _, rows in aid_groups(aid):
        ranks[rows] = rankdata(scores[rows]) / len(rows)
    return ranks


def main(argv: list[str]) -> None:
    """Screen the settings ``argv[5]`` on folds ``argv[4]`` (see the module's docstring)."""
    logging.basicConfig(level=logging.WARNING)
    out, scale, build, label = Path(argv[0]), argv[1], Path(argv[2]), argv[3]
    folds = [int(k) for k in argv[4].split(",")]
    overrides = json.loads(argv[5]) if len(argv) > 5 else {}
    model = overrides.pop("model", "nffm_full")
    inputs = TrainInputs(out / f"features-{scale}", out / f"interim-{scale}" / "pairs.npz", out / f"folds-{scale}.npy")
    base = TrainSettings()
    settings = replace(base, models=(model,), nffm=replace(base.nffm, **overrides))
    design = TrainJob(inputs, settings).open_design()
    reference = np.load(build / "oof" / "easy_dense.npy")
    aid_all = read_train_pairs(inputs.pairs).aid_idx
    spec = parse_model(model)
    for k in folds:
        t0 = time.perf_counter()
        held = design.folds == k
        aid, y = aid_all[held], design.y[held]
        est = fit_model(design, settings, spec, Fold(k))
        design.release()
        net = design.predict(est, spec.feature_set, Fold(k), Part.HELD)
        easy = reference[held]
        r_easy, r_net = _rank_in_aid(easy, aid), _rank_in_aid(net, aid)
        row: dict[str, object] = {"label": label, "fold": k, "easy_dense": per_aid_auc(y, easy, aid).mean,
                                  model: per_aid_auc(y, net, aid).mean}
        for w in WEIGHTS:
            row[f"blend_{w}"] = per_aid_auc(y, (1 - w) * r_easy + w * r_net, aid).mean
        row["gain"] = max(row[f"blend_{w}"] for w in WEIGHTS) - row["easy_dense"]
        row = {key: round(v, 4) if isinstance(v, float) else v for key, v in row.items()}
        row["stop_auc"] = [round(h["stop_auc"], 4) for h in est.history_[-1] if "stop_auc" in h]
        row["seconds"] = round(time.perf_counter() - t0)
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
