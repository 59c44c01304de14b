"""The cross-validation report: ``cv.md``, ``cv.json`` and a per-aid AUC plot."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ensemble._blend import Blend
from ensemble.metrics import per_aid_auc
from pipeline.errors import LookalikeError
from pipeline.io import atomic_path, write_json

__all__ = ["read_truth", "write_report"]

logger = logging.getLogger(__name__)


def read_truth(path: str | os.PathLike[str], test: dict[str, np.ndarray]) -> pd.DataFrame:
    """The synthetic truth of the test rows, checked to be in test-file order."""
    truth = pd.read_csv(path)
    if len(truth) != len(test["aid"]) or not (
        np.array_equal(truth["aid"].to_numpy(), test["aid"])
        and np.array_equal(truth["uid"].to_numpy(), test["uid"])
    ):
        raise LookalikeError(f"{path} does not describe the rows of the test file, in order")
    return truth


def write_report(
    path: str | os.PathLike[str],
    results: Sequence[Any],
    final_name: str,
    y: np.ndarray,
    aid: np.ndarray,
    test: dict[str, np.ndarray],
    truth_path: str | os.PathLike[str] | None = None,
    submitted: np.ndarray | None = None,
) -> None:
    """Write ``cv.md`` at ``path``, ``cv.json`` and ``per_aid_auc.png`` beside it.

    ``results`` are objects with ``name``, ``oof``, ``test``, ``seconds`` and
    ``fold_auc``. With the synthetic truth, the test-set AUC of each model and
    of the true probabilities (the oracle) are reported too. ``submitted``:
    the test predictions of the final model refitted on all training rows.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    truth = None
    if truth_path is not None and Path(truth_path).exists():
        truth = read_truth(truth_path, test)
    t_label = None if truth is None else (truth["label"].to_numpy() == 1).astype(np.int8)
    oracle = None if truth is None else per_aid_auc(t_label, truth["prob"].to_numpy(), test["aid"])
    rows, per_aid = [], {}
    for r in results:
        cv = per_aid_auc(y, r.oof, aid)
        row = {
            "model": r.name,
            "oof_mean_aid_auc": cv.mean,
            "oof_std_over_aids": cv.std,
            "fold_mean_aid_auc": list(r.fold_auc),
            "aids_skipped": len(cv.skipped),
            "train_seconds": round(r.seconds, 1),
        }
        if truth is not None:
            te = per_aid_auc(t_label, r.test, test["aid"])
            row["test_mean_aid_auc"] = te.mean
            row["gap_to_oracle"] = oracle.mean - te.mean
        rows.append(row)
        per_aid[r.name] = cv.per_aid
    report = {
        "final": final_name,
        "models": rows,
        "oracle_test_mean_aid_auc": None if oracle is None else oracle.mean,
        "n_train": int(len(y)),
        "n_positive": int(y.sum()),
        "n_aids": int(len(np.unique(aid))),
    }
    write_json(path.with_suffix(".json"), report)
    _plot(path.with_name("per_aid_auc.png"), per_aid)

    lines = [
        "# Cross-validation report",
        "",
        f"{report['n_train']:,} training rows ({100 * y.mean():.2f}% positive), "
        f"{report['n_aids']} aids. Metric: mean over aids of the per-aid AUC, out of fold "
        "on the project's fold file. Submitted: "
        f"`{final_name}`.",
        "",
    ]
    head = "| model | OOF mean per-aid AUC | std over aids | per fold | aids skipped | train s |"
    sep = "|---|---:|---:|---|---:|---:|"
    if truth is not None:
        head += " test AUC (truth) | gap to oracle |"
        sep += "---:|---:|"
    lines += [head, sep]
    for row in rows:
        folds = ", ".join(f"{v:.4f}" for v in row["fold_mean_aid_auc"])
        line = (
            f"| {row['model']} | {row['oof_mean_aid_auc']:.4f} | {row['oof_std_over_aids']:.4f} | "
            f"{folds} | {row['aids_skipped']} | {row['train_seconds']:.1f} |"
        )
        if truth is not None:
            line += f" {row['test_mean_aid_auc']:.4f} | {row['gap_to_oracle']:.4f} |"
        lines.append(line)
    if submitted is not None:
        report["submitted_refit"] = True
        line = (f"The submission is `{final_name}` refitted on all training rows (`[train] refit`); "
                "its out-of-fold score is that of the fold models above.")
        if truth is not None:
            report["submitted_test_mean_aid_auc"] = per_aid_auc(t_label, submitted, test["aid"]).mean
            line += f" Its test mean per-aid AUC (truth): {report['submitted_test_mean_aid_auc']:.4f}."
        lines += ["", line]
        write_json(path.with_suffix(".json"), report)
    if oracle is not None:
        lines += [
            "",
            f"Oracle (true probabilities of the synthetic test rows): mean per-aid AUC "
            f"{oracle.mean:.4f}.",
        ]
    lines += ["", "![per-aid AUC](per_aid_auc.png)", ""]
    if any(r.name.endswith(("_peraid", "_hybrid")) for r in results):
        lines += _per_aid_table(results, y, aid, per_aid)
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(lines))
    logger.info("report written to %s", path)


def _per_aid_table(
    results: Sequence[Any], y: np.ndarray, aid: np.ndarray, per_aid: dict[str, dict[int, float]]
) -> list[str]:
    """Markdown lines: per aid, its rows, positives, every model's out-of-fold AUC and each combiner's favourite."""
    models = [r for r in results if r.estimators]
    combiners = [r for r in results if r.combiner is not None and getattr(r.combiner, "by_seed_size", False)]
    aids, n_rows = np.unique(aid, return_counts=True)
    n_pos = np.bincount(np.searchsorted(aids, aid), weights=y, minlength=len(aids)).astype(int)
    favoured = {c.name: [models[j].name for j in c.combiner.model_weights(aids).argmax(axis=1)] for c in combiners}
    fallback = {r.name: set(r.extra.get("fallback_aids", [])) for r in models}
    lines = [
        "## Per aid",
        "",
        "Out-of-fold AUC inside each aid. `*`: the per-aid model fell back to the global model for this aid "
        "in at least one fold (fewer than `min_positives` positives or negatives). `<combiner> favours`: the "
        "model with the largest weight for this aid (the blends fit one set of weights per seed-size class, "
        "the stack's weight on each model's within-aid rank changes with the seed's size).",
        "",
        "| aid | rows | positives | " + " | ".join(r.name for r in models)
        + "".join(f" | {c} favours" for c in favoured) + " |",
        "|---:|---:|---:|" + "---:|" * len(models) + "---|" * len(favoured),
    ]
    for i, a in enumerate(aids):
        cells = []
        for r in models:
            v = per_aid[r.name].get(int(a))
            mark = "*" if int(a) in fallback[r.name] else ""
            cells.append("" if v is None else f"{v:.4f}{mark}")
        cells += [names[i] for names in favoured.values()]
        lines.append(f"| {a} | {n_rows[i]:,} | {n_pos[i]:,} | " + " | ".join(cells) + " |")
    for c in combiners:  # a blend's weights per seed-size class
        blend = c.combiner
        if not isinstance(blend, Blend) or blend.size_edges_.size == 0:
            continue
        edges = np.expm1(blend.size_edges_)
        lines += ["", f"`{c.name}` weights by seed size (positives in the training rows):", ""]
        for b, w in enumerate(blend.weights_):
            span = (f"<= {edges[0]:.0f}" if b == 0 else f"> {edges[-1]:.0f}" if b == len(edges)
                    else f"{edges[b - 1]:.0f} < n <= {edges[b]:.0f}")
            n_aids = int((blend.size_bin_ == b).sum())
            lines.append(f"- {span} ({n_aids} aids): " + ", ".join(f"{m.name} {v:.3f}" for m, v in zip(models, w)))
    if favoured:
        lines += ["", "Aids each combiner favours each model for: " + "; ".join(
            f"{c}: " + ", ".join(f"{m} {names.count(m)}" for m in dict.fromkeys(names))
            for c, names in favoured.items()
        ) + "."]
    return [*lines, ""]


def _plot(path: Path, per_aid: dict[str, dict[int, float]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4))
    names = list(per_aid)
    ax.boxplot([list(per_aid[n].values()) for n in names], vert=False)
    ax.set_yticks(range(1, len(names) + 1), names)
    ax.set_xlabel("per-aid AUC (out of fold)")
    ax.set_title("Per-aid AUC by model")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
