"""Where one fold of the train stage spends its time: a breakdown by step.

Usage::

    python bench/profile_fold.py FEATURES INTERIM FOLDS [--config config/default.toml] [--fold 0]

Runs the train stage's own code for the first configured model on one task
(``--fold K``, or ``--fold -1`` for the refit) and times each step: the CTR
counting pass (once per stage), the task's training matrix (only the rows the
bags read, as the stage builds it), then per bag the
LightGBM ``Dataset`` construction (binning), the boosting rounds, the
early-stopping evaluations, and finally the predictions of the held-out and
test rows (design assembly and tree evaluation apart; the test rows only where
the stage predicts them: the refit, or fold models without ``[train] refit``).
LightGBM's methods are wrapped with timers; nothing else changes. Also prints
the held-out rows' mean per-aid AUC, so that ``--lgbm KEY=VALUE`` overrides of
``[train.lgbm]`` can be screened for speed and AUC on one fold. Prints one
JSON line.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import tomllib
from dataclasses import replace

import lightgbm as lgb
import numpy as np

from ensemble import per_aid_auc
from pipeline.config import load_config
from pipeline.files import read_train_pairs
from ensemble._forest import Forest
from pipeline.design import Fold, FoldDesign, Part, Refit, TrainInputs
from pipeline.models import parse_model
from pipeline.tasks import TrainJob, fit_model, peak_rss_mb, predicts_test


@contextlib.contextmanager
def timed_methods(totals: dict[str, float], methods: dict[str, tuple[type, str]]) -> Iterator[None]:
    """Wrap ``cls.name`` for each entry so that its wall time adds to ``totals[label]`` (outermost call only)."""
    saved: list[tuple[type, str, Callable[..., Any]]] = []
    depth = defaultdict(int)

    def wrap(label: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def inner(*args: Any, **kwargs: Any) -> Any:
            depth[label] += 1
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                depth[label] -= 1
                if not depth[label]:
                    totals[label] += time.perf_counter() - t0
        return inner

    for label, (cls, name) in methods.items():
        saved.append((cls, name, getattr(cls, name)))
        setattr(cls, name, wrap(label, getattr(cls, name)))
    try:
        yield
    finally:
        for cls, name, fn in saved:
            setattr(cls, name, fn)


def _plan_rows(est: Any, y: np.ndarray) -> tuple[np.ndarray, ...]:  # noqa: ANN401
    """``(rows,)`` the bags read (the matrix :func:`fit_model` built, still cached), or ``()`` for all."""
    plan = est.plan(y) if hasattr(est, "plan") else None
    return () if plan is None else (plan.rows,)


def main() -> None:
    """Profile one task of the first configured model."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("features", type=Path)
    p.add_argument("interim", type=Path)
    p.add_argument("folds", type=Path)
    p.add_argument("--config", type=Path, default=Path("config/default.toml"))
    p.add_argument("--fold", type=int, default=0, help="fold to profile; -1 = the refit")
    p.add_argument("--lgbm", nargs="*", default=[], metavar="KEY=VALUE",
                   help="[train.lgbm] overrides (values parsed as TOML), e.g. max_bin=63")
    args = p.parse_args()
    settings = load_config(args.config).train
    overrides = {k: tomllib.loads(f"v = {v}")["v"] for k, v in (kv.split("=", 1) for kv in args.lgbm)}
    settings = replace(settings, lgbm={**settings.lgbm, **overrides})
    name = settings.models[0]
    spec = parse_model(name)
    out: dict[str, Any] = {"model": name, "fold": args.fold, "lgbm": overrides}
    t0 = time.perf_counter()
    design = TrainJob(TrainInputs(args.features, args.interim / "pairs.npz", args.folds), settings).open_design()
    out["ctr_counts_s"] = time.perf_counter() - t0
    task = Refit() if args.fold < 0 else Fold(args.fold)
    totals: dict[str, float] = defaultdict(float)
    methods = {
        "matrix_s": (FoldDesign, "matrix"),
        "dataset_construct_s": (lgb.Dataset, "construct"),
        "boost_s": (lgb.Booster, "update"),
        "eval_s": (lgb.Booster, "eval_valid"),
        "tree_predict_s": (lgb.Booster, "predict"),
        "forest_predict_s": (Forest, "predict"),
    }
    with timed_methods(totals, methods):
        t0 = time.perf_counter()
        est = fit_model(design, settings, spec, task)  # the train stage's own fit (only the bags' rows built)
        out["fit_s"] = time.perf_counter() - t0
        fit_totals = dict(totals)
        out["fit_rows"] = int(len(design.labels(task)))
        out["matrix_rows"] = int(design.matrix(spec.feature_set, task, *_plan_rows(est, design.labels(task))).shape[0])
        out["bag_rounds"] = [b.current_iteration() for b in est.estimators_]
        design.release()
        parts = [Part.HELD] if isinstance(task, Fold) else []
        for part in parts + ([Part.TEST] if predicts_test(settings, task) else []):
            before = dict(totals)
            t0 = time.perf_counter()
            pred = design.predict(est, spec.feature_set, task, part)
            key = part.value
            out[f"predict_{key}_s"] = time.perf_counter() - t0
            out[f"predict_{key}_trees_s"] = sum(totals[k] - before.get(k, 0.0)
                                                for k in ("tree_predict_s", "forest_predict_s"))
            out[f"predict_{key}_rows"] = int(len(pred))
            if part is Part.HELD:
                held = design.folds == task.k
                aid = read_train_pairs(args.interim / "pairs.npz").aid[held]
                out["held_mean_aid_auc"] = round(per_aid_auc(design.y[held], pred, aid).mean, 5)
    out.update({f"fit_{k}": round(v, 2) for k, v in fit_totals.items()})
    out["peak_rss_mb"] = round(peak_rss_mb())
    print(json.dumps({k: (round(v, 2) if isinstance(v, float) and k.endswith("_s") else v)  # noqa: T201
                      for k, v in out.items()}))


if __name__ == "__main__":
    main()
