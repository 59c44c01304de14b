"""The ``explore`` stage: a report on the loaded data and a profile of every seed.

Reads the load stage's files (never the raw ones) and writes

* ``explore.md`` with its figures in ``explore/``: per field its presence,
  list lengths and the conversion rate of its most frequent values (Wilson
  95% intervals); per aid its rows and base rate; how users repeat across
  rows and the rate of rows whose user converted elsewhere; Cramer's V
  between the fields on a sample of rows;
* ``seeds/<aid>.csv``: per aid, the tokens most over-represented among its
  positives (:func:`features.explore.seed_profile`), and a summary in the
  report.

Every statistic is over training rows (the test rows have no labels). The
computations are :mod:`features.explore`; this module reads, writes and draws.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd

from core import LookalikeError, Pairs, distinct
from features.explore import (
    RowCounts,
    aid_table,
    association,
    count_rows,
    length_rates,
    repetition,
    seed_profile,
    value_rates,
)
from pipeline.config import ExploreSettings
from pipeline.files import read_ads, read_train_pairs, read_user_matrix
from pipeline.io import stage_outputs
from pipeline.plots import pyplot, save_figure

__all__ = ["run_explore"]

logger = logging.getLogger(__name__)

#: aids listed in the report's seed summary (all of them are in ``seeds/``)
_REPORTED_SEEDS = 20


def run_explore(interim: str | os.PathLike[str], report: str | os.PathLike[str],
                settings: ExploreSettings | None = None) -> None:
    """Write ``report`` (markdown), its figures in ``<report dir>/explore/`` and ``<report dir>/seeds/``.

    Parameters
    ----------
    interim : path
        The load stage's folder (``users/``, ``ads.csv``, ``pairs.npz``).
    report : path
        The markdown report; its figures and the seed profiles go beside it.
    settings : ExploreSettings, optional
    """
    settings = settings or ExploreSettings()
    interim, report = Path(interim), Path(report)
    for need in (interim / "users" / "vocab.json", interim / "ads.csv", interim / "pairs.npz"):
        if not need.exists():
            raise LookalikeError(f"{need} not found: run `make load` first")
    t0 = time.perf_counter()
    users = read_user_matrix(interim / "users")
    ads = read_ads(interim / "ads.csv")
    train = read_train_pairs(interim / "pairs.npz")
    counts = count_rows(users, train, len(ads.aids), min_df=settings.min_df, max_len=settings.max_len)
    logger.info("counted %s training rows in %.1f s", f"{len(train):,}", time.perf_counter() - t0)
    aids = aid_table(train, ads.aids)
    per_user, history = repetition(train)
    assoc = association(users, train, settings.association_rows, settings.max_levels, settings.seed)
    figures, seeds = report.parent / "explore", report.parent / "seeds"
    with stage_outputs() as outputs:
        fig_dir, seed_dir = outputs.path(figures), outputs.path(seeds)
        fig_dir.mkdir(parents=True)
        seed_dir.mkdir(parents=True)
        lines = _header(train, aids, settings)
        lines += _fields_section(counts, settings, fig_dir)
        lines += _aids_section(aids, fig_dir)
        lines += _users_section(per_user, history)
        lines += _association_section(assoc, settings, fig_dir)
        lines += _seeds_section(counts, ads.aids, settings, seed_dir)
        with open(outputs.path(report), "w") as fh:
            fh.write("\n".join(lines))
    logger.info("wrote %s, %s/ and %s/ in %.1f s", report, figures, seeds, time.perf_counter() - t0)


def _header(train: Pairs, aids: pd.DataFrame, settings: ExploreSettings) -> list[str]:
    n, pos = len(train), int(train.label.sum())
    return [
        "# Data exploration",
        "",
        f"{n:,} training rows, {pos:,} positives (base rate {pos / max(n, 1):.4f}), {len(aids):,} aids, "
        f"{len(distinct(train.uid)):,} users. Every figure counts training rows (a user in three rows "
        "counts three times, as the models see it); intervals are Wilson 95% intervals. Written by "
        "`make explore` from the loaded data (`lookalike explore --help`).",
        "",
    ]


def _fields_section(counts: RowCounts, settings: ExploreSettings, fig_dir: Path) -> list[str]:
    lines = [
        "## Fields",
        "",
        "Presence: share of rows whose user has the field. Rate present / missing: conversion rate of those "
        "rows and of the others. Per field, `explore/field_<name>.png`: the conversion rate of the "
        f"{settings.top_values} values held by the most rows (at least {settings.min_support:,} rows each; "
        "every other value pooled as `other`, a row counted once per value it holds) and the rows and rate "
        f"by list length ({settings.max_len}+ pooled).",
        "",
        "| field | kind | presence | mean length (present) | rate present | rate missing | values counted |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    base = counts.aid_pos.sum() / max(int(counts.aid_rows.sum()), 1)
    for i, f in enumerate(counts.fields):
        rows, pos = counts.length_rows[i], counts.length_pos[i]
        n = max(int(rows.sum()), 1)
        present = rows[1:].sum()
        mean_len = (rows[1:] * np.arange(1, len(rows))).sum() / max(present, 1)
        rate_p = pos[1:].sum() / present if present else float("nan")
        rate_m = pos[0] / rows[0] if rows[0] else float("nan")
        lines.append(f"| {f.name} | {f.kind} | {present / n:.3f} | {mean_len:.2f} | {rate_p:.4f} | {rate_m:.4f} "
                     f"| {len(counts.field_columns(f.name)):,} of {f.size:,} |")
        _plot_field(f.name, value_rates(counts, f.name, settings.top_values, settings.min_support),
                    length_rates(counts, f.name), base, fig_dir / f"field_{f.name}.png")
    lines += ["", "Per field: " + ", ".join(f"[{f.name}](explore/field_{f.name}.png)" for f in counts.fields), ""]
    return lines


def _plot_field(name: str, values: pd.DataFrame, lengths: pd.DataFrame, base: float, path: Path) -> None:
    plt = pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    y = np.arange(len(values))[::-1]
    left.barh(y, values["rate"], xerr=_error_bars(values), color="tab:blue", ecolor="gray", capsize=2)
    left.set_yticks(y, [f"{v} ({r:,})" for v, r in zip(values["value"], values["rows"], strict=True)],
                    fontsize="small")
    left.axvline(base, color="black", linestyle="--", linewidth=1, label=f"all rows {base:.4f}")
    left.legend(fontsize="small", loc="lower right")
    left.set_xlabel("conversion rate (95% CI)")
    left.set_title(f"{name}: rate by value (rows)")
    x = np.arange(len(lengths))
    right.bar(x, lengths["share"], color="lightgray")
    right.set_xticks(x, lengths["length"], fontsize="x-small", rotation=90)
    right.set_ylabel("share of rows")
    twin = right.twinx()
    twin.errorbar(x, lengths["rate"], yerr=_error_bars(lengths), color="tab:red", marker=".", capsize=2)
    twin.axhline(base, color="black", linestyle="--", linewidth=1)
    twin.set_ylabel("conversion rate", color="tab:red")
    right.set_title(f"{name}: list length")
    save_figure(fig, path)  # inside the staged folder: renamed with it


def _error_bars(table: pd.DataFrame) -> np.ndarray:
    """Matplotlib's two rows of interval half-widths (rounding can put a bound a hair past the rate)."""
    rate = table["rate"].to_numpy()
    return np.maximum(np.vstack([rate - table["ci_low"].to_numpy(), table["ci_high"].to_numpy() - rate]), 0.0)


def _aids_section(aids: pd.DataFrame, fig_dir: Path) -> list[str]:
    rate = aids["rate"].to_numpy()
    q = np.quantile(rate, [0.0, 0.1, 0.5, 0.9, 1.0])
    plt = pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    left.hist(rate, bins=min(40, max(5, len(rate) // 3)), color="tab:blue")
    left.set_xlabel("base rate")
    left.set_ylabel("aids")
    left.set_title("Base rate per aid")
    right.scatter(aids["positives"], rate, s=8)
    right.set_xscale("log")
    right.set_xlabel("positives (seed size)")
    right.set_ylabel("base rate")
    right.set_title("Seed size and base rate")
    save_figure(fig, fig_dir / "aids.png")
    lines = [
        "## Aids",
        "",
        f"{len(aids):,} aids with training rows. Base rate: min {q[0]:.4f}, 10% {q[1]:.4f}, median {q[2]:.4f}, "
        f"90% {q[3]:.4f}, max {q[4]:.4f}; positives per aid: median {int(aids['positives'].median()):,}, "
        f"min {int(aids['positives'].min()):,}, max {int(aids['positives'].max()):,}.",
        "",
        "![aids](explore/aids.png)",
        "",
        "| aid | rows | positives | rate | 95% CI |",
        "|---:|---:|---:|---:|---|",
    ]
    for r in aids.itertuples():
        lines.append(f"| {r.aid} | {r.rows:,} | {r.positives:,} | {r.rate:.4f} | {r.ci_low:.4f}-{r.ci_high:.4f} |")
    return [*lines, ""]


def _users_section(per_user: pd.DataFrame, history: pd.DataFrame) -> list[str]:
    lines = [
        "## Users across rows",
        "",
        "| rows per user | users | rows |",
        "|---|---:|---:|",
        *[f"| {r.rows_per_user} | {r.users:,} | {r.rows:,} |" for r in per_user.itertuples()],
        "",
        "The history signal: the conversion rate of a row by what the same user's *other* training rows say "
        "(the pipeline's `hist_` features use the same labels, cross-fitted).",
        "",
        "| the user's other rows | rows | positives | rate | 95% CI |",
        "|---|---:|---:|---:|---|",
        *[f"| {r.user} | {r.rows:,} | {r.positives:,} | {r.rate:.4f} | {r.ci_low:.4f}-{r.ci_high:.4f} |"
          for r in history.itertuples()],
        "",
    ]
    return lines


def _association_section(assoc: pd.DataFrame, settings: ExploreSettings, fig_dir: Path) -> list[str]:
    plt = pyplot()
    n = len(assoc)
    fig, ax = plt.subplots(figsize=(1.5 + 0.38 * n, 1.0 + 0.38 * n))
    im = ax.imshow(assoc.to_numpy(), vmin=0, vmax=1, cmap="viridis")
    ax.set_xticks(range(n), assoc.columns, rotation=90, fontsize="small")
    ax.set_yticks(range(n), assoc.index, fontsize="small")
    fig.colorbar(im, ax=ax, shrink=0.8, label="Cramer's V")
    ax.set_title("Association between fields")
    save_figure(fig, fig_dir / "association.png")
    v = assoc.to_numpy().copy()
    np.fill_diagonal(v, np.nan)
    pairs = sorted(((v[i, j], assoc.index[i], assoc.columns[j]) for i in range(n) for j in range(i + 1, n)
                    if assoc.index[i] != "label" and assoc.columns[j] != "label"), reverse=True)[:10]
    label = assoc["label"].drop("label").sort_values(ascending=False)
    return [
        "## Associations",
        "",
        f"Cramer's V on {settings.association_rows:,} sampled training rows (all when fewer). A field is one "
        "value per row: for a list field, the user's token of it held by the most users; "
        f"the {settings.max_levels - 2} most frequent values kept, the rest pooled into one level, `missing` "
        "a level of its own.",
        "",
        "![association](explore/association.png)",
        "",
        "Strongest pairs: " + ", ".join(f"{a} x {b} {x:.3f}" for x, a, b in pairs) + ".",
        "",
        "With the label: " + ", ".join(f"{k} {x:.3f}" for k, x in label.head(10).items()) + ".",
        "",
    ]


def _seeds_section(counts: RowCounts, aid_ids: np.ndarray, settings: ExploreSettings, seed_dir: Path) -> list[str]:
    order = np.argsort(-counts.aid_pos, kind="stable")
    lines = [
        "## Seed profiles",
        "",
        "Per aid, the tokens most over-represented among its positives against its negatives: the log-odds "
        "ratio of holding the token (0.5 added to each cell), shrunk towards 0 by its standard error "
        "(empirical Bayes over the aid's tokens, DerSimonian-Laird, so that a token seen in a handful of rows cannot top the "
        f"list), for tokens held by at least {settings.seed_min_support} of the aid's rows. The "
        f"{settings.seed_tokens} first of every aid are in [`seeds/<aid>.csv`](seeds/) with their support; "
        f"the {_REPORTED_SEEDS} largest seeds here, three tokens each (field=value, shrunk log-odds ratio, "
        "share of positives / of negatives holding it).",
        "",
        "| aid | positives | top tokens |",
        "|---:|---:|---|",
    ]
    written = 0
    for rank, a in enumerate(order):
        if counts.aid_rows[a] == 0:
            continue
        prof = seed_profile(counts, int(a), settings.seed_tokens, settings.seed_min_support)
        prof.to_csv(seed_dir / f"{aid_ids[a]}.csv", index=False)
        written += 1
        if rank < _REPORTED_SEEDS:
            top = "; ".join(f"{r.field}={r.value} {r.shrunk_log_odds_ratio:+.2f} "
                            f"({r.share_of_positives:.1%} / {r.share_of_negatives:.1%})"
                            for r in prof.head(3).itertuples())
            lines.append(f"| {aid_ids[a]} | {int(counts.aid_pos[a]):,} | {top} |")
    logger.info("wrote %d seed profiles", written)
    return [*lines, ""]
