"""The stages' reports: ``features.md``; ``cv.md`` with ``cv.json`` and a per-aid AUC plot."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from core import LookalikeError, Pairs, UserMatrix
from ensemble import Blend, per_aid_auc
from features import MissingRatePruner
from pipeline.io import Outputs, open_binary, staged_path, write_json
from pipeline.plots import pyplot, save_figure

__all__ = ["Truth", "read_truth", "write_cv_report", "write_features_report"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Truth:
    """The synthetic truth of the test rows: labels (0/1) and true probabilities, in test-file order."""

    label: np.ndarray
    prob: np.ndarray


def read_truth(path: str | os.PathLike[str] | None, test: Pairs) -> Truth | None:
    """The truth file of synthetic data (``None`` when there is none), checked against the test rows.

    Read before training, so a truth file that does not describe the test
    rows is an error before any model is fitted.
    """
    if path is None or not Path(path).exists():
        return None
    try:
        with open_binary(path) as fh:
            truth = pd.read_csv(fh)
        aid, uid = truth["aid"].to_numpy(), truth["uid"].to_numpy()
        label, prob = truth["label"].to_numpy(), truth["prob"].to_numpy(dtype=np.float64)
    except (ValueError, KeyError, pd.errors.ParserError) as exc:
        raise LookalikeError(f"{path}: not a truth file (aid,uid,label,prob): {exc}") from None
    if len(truth) != len(test) or not (np.array_equal(aid, test.aid) and np.array_equal(uid, test.uid)):
        n = min(len(truth), len(test))
        diff = np.flatnonzero((aid[:n] != test.aid[:n]) | (uid[:n] != test.uid[:n]))
        where = (f"line {int(diff[0]) + 2} has ({aid[diff[0]]}, {uid[diff[0]]}) where the test file has "
                 f"({test.aid[diff[0]]}, {test.uid[diff[0]]})" if len(diff)
                 else f"{len(truth):,} rows for {len(test):,} test rows")
        raise LookalikeError(f"{path} does not describe the rows of the test file, in order: {where}")
    return Truth(label=(label == 1).astype(np.int8), prob=prob)


def write_cv_report(
    path: str | os.PathLike[str],
    results: Sequence[Any],
    final_name: str,
    y: np.ndarray,
    aid: np.ndarray,
    test_aid: np.ndarray,
    truth: Truth | None = None,
    submitted: np.ndarray | None = None,
    outputs: Outputs | None = None,
    importance: Mapping[str, Mapping[str, float]] | None = None,
    permutation: Any = None,
) -> None:
    """Write ``cv.md`` at ``path``, ``cv.json`` and ``per_aid_auc.png`` beside it (staged in ``outputs``).

    ``results`` are objects with ``name``, ``oof``, ``test``, ``seconds``,
    ``fold_auc``, ``estimators``, ``combiner`` and ``extra``. With the
    synthetic truth, the test-set AUC of each model that has test
    predictions (``test`` not ``None``) and of the true probabilities (the
    oracle) are reported too. ``submitted``: the test predictions of the
    final model refitted on all training rows. ``importance``: per model,
    each feature group's share of the split gain (a table, ``importance.png``
    and ``cv.json``). ``permutation``: a
    :class:`pipeline.stages.train.PermutationImportance` (a table,
    ``permutation.png`` and ``cv.json``).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    t_label = None if truth is None else truth.label
    oracle = None if truth is None else per_aid_auc(t_label, truth.prob, test_aid)
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
        if truth is not None and r.test is not None:
            te = per_aid_auc(t_label, r.test, test_aid)
            row["test_mean_aid_auc"] = te.mean
            row["gap_to_oracle"] = oracle.mean - te.mean
        elif truth is not None:
            row["test_mean_aid_auc"] = row["gap_to_oracle"] = None
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
    _plot(path.with_name("per_aid_auc.png"), per_aid, outputs)

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
            te, gap = row["test_mean_aid_auc"], row["gap_to_oracle"]
            line += " - | - |" if te is None else f" {te:.4f} | {gap:.4f} |"
        lines.append(line)
    if submitted is not None:
        report["submitted_refit"] = True
        line = (f"The submission is `{final_name}` refitted on all training rows (`[train] refit`); "
                "its out-of-fold score is that of the fold models above"
                + (", its test AUC that of the refitted model(s); models not refitted predict no test rows."
                   if truth is not None else "."))
        if truth is not None:
            report["submitted_test_mean_aid_auc"] = per_aid_auc(t_label, submitted, test_aid).mean
            line += f" Its test mean per-aid AUC (truth): {report['submitted_test_mean_aid_auc']:.4f}."
        lines += ["", line]
    if oracle is not None:
        lines += [
            "",
            f"Oracle (true probabilities of the synthetic test rows): mean per-aid AUC "
            f"{oracle.mean:.4f}.",
        ]
    lines += ["", "![per-aid AUC](per_aid_auc.png)", ""]
    if importance:
        report["importance"] = {m: dict(g) for m, g in importance.items()}
        lines += _importance_table(importance)
        _plot_importance(path.with_name("importance.png"), importance, outputs)
    if permutation is not None:
        report["permutation"] = {"model": permutation.model, "rows": permutation.rows, "auc": permutation.auc,
                                 "drop": dict(permutation.drop)}
        lines += _permutation_table(permutation)
        _plot_permutation(path.with_name("permutation.png"), permutation, outputs)
    elif outputs is not None:  # a plot of an earlier run would not match this report
        outputs.remove(path.with_name("permutation.png"))
    if any(r.name.endswith(("_peraid", "_hybrid")) for r in results):
        lines += _per_aid_table(results, y, aid, per_aid)
    write_json(path.with_suffix(".json"), report, outputs)
    with staged_path(path, outputs) as tmp:
        tmp.write_text("\n".join(lines))
    logger.info("report written to %s", path)


_TOP_GROUPS = 12


def _top_groups(importance: Mapping[str, Mapping[str, float]]) -> list[str]:
    """The groups among any model's ``_TOP_GROUPS`` largest, by their largest share."""
    best: dict[str, float] = {}
    for shares in importance.values():
        for g, v in list(shares.items())[:_TOP_GROUPS]:
            best[g] = max(best.get(g, 0.0), v)
    return sorted(best, key=lambda g: -best[g])


def _importance_table(importance: Mapping[str, Mapping[str, float]]) -> list[str]:
    """Markdown lines: the share of split gain of the largest feature groups, one column per model."""
    models = list(importance)
    lines = [
        "## Feature importance",
        "",
        "Share of the split gain (every bag of every fold model, trees to their best iteration) held by each "
        f"feature group; the groups among any model's {_TOP_GROUPS} largest. `CTR <field>`: every conversion-"
        "rate statistic of the field (aid, advertiser and product-type rates and their aggregations); "
        "`aid x <field>`: the aid crosses; a field: its tokens, value and list length.",
        "",
        "![feature importance](importance.png)",
        "",
        "| group | " + " | ".join(models) + " |",
        "|---|" + "---:|" * len(models),
    ]
    for g in _top_groups(importance):
        lines.append(f"| {g} | " + " | ".join(f"{100 * importance[m].get(g, 0.0):.1f}%" for m in models) + " |")
    return [*lines, ""]


def _plot_importance(path: Path, importance: Mapping[str, Mapping[str, float]], outputs: Outputs | None) -> None:
    plt = pyplot()
    groups = _top_groups(importance)[::-1]
    height = 0.8 / len(importance)
    fig, ax = plt.subplots(figsize=(8, 1.5 + 0.25 * len(groups) * max(1.0, len(importance) / 2)))
    for i, (model, shares) in enumerate(importance.items()):
        ax.barh(np.arange(len(groups)) + i * height, [100 * shares.get(g, 0.0) for g in groups], height,
                label=model)
    ax.set_yticks(np.arange(len(groups)) + 0.4 - height / 2, groups)
    ax.set_xlabel("share of split gain (%)")
    ax.set_title("Feature importance by group")
    ax.legend(fontsize="small")
    save_figure(fig, path, outputs)


def _permutation_table(perm: Any) -> list[str]:  # noqa: ANN401
    lines = [
        "## Permutation importance",
        "",
        f"`{perm.model}`: {perm.rows:,} sampled training rows, each predicted by the fold model that did not "
        f"train on it (mean per-aid AUC {perm.auc:.4f}); per feature group, the AUC lost when the group's "
        "columns are permuted across the rows of a fold (one permutation for the group). A drop near 0 "
        "says the model does not need the group, given the others; a negative one is noise. "
        "`[train] permutation_rows` sets the sample.",
        "",
        "![permutation importance](permutation.png)",
        "",
        "| group | AUC drop |",
        "|---|---:|",
    ]
    lines += [f"| {g} | {d:+.4f} |" for g, d in list(perm.drop.items())[:_TOP_GROUPS]]
    rest = list(perm.drop.values())[_TOP_GROUPS:]
    if rest:
        lines.append(f"| {len(rest)} other groups | {min(rest):+.4f} to {max(rest):+.4f} each |")
    return [*lines, ""]


def _plot_permutation(path: Path, perm: Any, outputs: Outputs | None) -> None:  # noqa: ANN401
    items = list(perm.drop.items())[:_TOP_GROUPS][::-1]
    fig, ax = pyplot().subplots(figsize=(8, 1.5 + 0.3 * len(items)))
    ax.barh(range(len(items)), [d for _, d in items], color="tab:orange")
    ax.set_yticks(range(len(items)), [g for g, _ in items])
    ax.set_xlabel("out-of-fold mean per-aid AUC lost when permuted")
    ax.set_title(f"Permutation importance ({perm.model}, {perm.rows:,} rows)")
    save_figure(fig, path, outputs)


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


def _plot(path: Path, per_aid: dict[str, dict[int, float]], outputs: Outputs | None) -> None:
    fig, ax = pyplot().subplots(figsize=(8, 4))
    names = list(per_aid)
    ax.boxplot([list(per_aid[n].values()) for n in names], vert=False)
    ax.set_yticks(range(1, len(names) + 1), names)
    ax.set_xlabel("per-aid AUC (out of fold)")
    ax.set_title("Per-aid AUC by model")
    save_figure(fig, path, outputs)


def write_features_report(
    path: str | os.PathLike[str],
    users: UserMatrix,
    missing: MissingRatePruner,
    kept: np.ndarray,
    sparse_shape: tuple[int, int],
    n_raw: int,
    dense_names: list[str],
    outputs: Outputs | None = None,
) -> None:
    """``features.md``: every field's missing rate and kept columns, and the feature sets' sizes.

    ``kept``: whether each user column survived the pruning; ``outputs``: where the file is staged.
    """
    lines = [
        "# Features",
        "",
        f"Missing-rate threshold: {missing.threshold}. Dropped fields: "
        f"{', '.join(missing.dropped_fields_) or 'none'}.",
        "",
        "| field | missing rate (train rows) | columns | kept after pruning |",
        "|---|---:|---:|---:|",
    ]
    for f, rate in zip(users.fields, missing.missing_rate_):
        lines.append(f"| {f.name} | {rate:.3f} | {f.size:,} | {int(kept[f.offset:f.stop].sum()):,} |")
    groups: dict[str, int] = {}
    for name in dense_names:
        groups[name.split("_")[0]] = groups.get(name.split("_")[0], 0) + 1
    lines += [
        "",
        f"Sparse set: {sparse_shape[1]:,} columns ({n_raw:,} raw one-hot/bag-of-tokens, "
        f"{sparse_shape[1] - n_raw:,} aid x attribute crosses).",
        "",
        f"Dense set: {len(dense_names)} columns, of which the `ctr` ones are computed "
        "per cross-validation fold by the train stage: "
        + ", ".join(f"{k} ({v})" for k, v in groups.items())
        + ".",
        "",
    ]
    with staged_path(path, outputs) as tmp:
        tmp.write_text("\n".join(lines))
