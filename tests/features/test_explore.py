"""The exploration statistics against plain loops over tiny data."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy.stats import binomtest
from scipy.stats.contingency import association as scipy_association

from core import FieldBlock, Pairs, UserMatrix
from features.explore import (
    aid_table,
    association,
    count_rows,
    cramers_v,
    length_rates,
    repetition,
    seed_profile,
    value_rates,
    wilson_interval,
)


def _users(seed: int = 0, n_users: int = 300) -> tuple[UserMatrix, list[list[int]]]:
    """A single-valued field of 4 values and a list field of 12 tokens, some users without the list."""
    rng = np.random.default_rng(seed)
    skew = 1.0 / np.arange(1, 13) ** 1.5  # a few common tokens, a tail of rare ones
    rows = []
    for _ in range(n_users):
        single = [int(rng.integers(0, 4))]
        n = int(rng.choice([0, 0, 1, 2, 3, 5, 8]))
        multi = sorted(4 + rng.choice(12, n, replace=False, p=skew / skew.sum())) if n else []
        rows.append(single + [int(c) for c in multi])
    indptr = np.r_[0, np.cumsum([len(r) for r in rows])].astype(np.int64)
    indices = np.concatenate([np.array(r, np.int32) for r in rows])
    df = np.bincount(indices, minlength=16)
    fields = [FieldBlock("age", 0, np.arange(10, 14), df[:4], "single"),
              FieldBlock("interest1", 4, np.arange(100, 112), df[4:], "multi")]
    return UserMatrix(indptr, indices, np.arange(1000, 1000 + n_users), fields), rows


def _pairs(n_users: int, seed: int = 1, n_rows: int = 900, n_aids: int = 3) -> Pairs:
    rng = np.random.default_rng(seed)
    user_row = rng.integers(0, n_users, n_rows)
    aid_idx = rng.integers(0, n_aids, n_rows).astype(np.int32)
    label = (rng.random(n_rows) < 0.2).astype(np.int8)
    return Pairs(aid=aid_idx + 7, uid=user_row + 1000, aid_idx=aid_idx, user_row=user_row, label=label)


def test_wilson_interval_is_scipys() -> None:
    k, n = np.array([0, 1, 5, 50, 99, 100]), np.array([10, 10, 40, 100, 100, 100])
    lo, hi = wilson_interval(k, n)
    for i in range(len(k)):
        ci = binomtest(int(k[i]), int(n[i])).proportion_ci(confidence_level=0.95, method="wilson")
        assert lo[i] == pytest.approx(ci.low, abs=2e-4) and hi[i] == pytest.approx(ci.high, abs=2e-4)
    assert np.isnan(wilson_interval(np.array([0]), np.array([0]))[0][0])


def test_row_counts_match_a_loop_over_the_rows() -> None:
    users, lists = _users()
    train = _pairs(users.n_users)
    counts = count_rows(users, train, n_aids=3, min_df=30, max_len=4)
    want_len = np.zeros((2, 5), np.int64)
    want_len_pos = np.zeros((2, 5), np.int64)
    want_tok = np.zeros((3, 16), np.int64)
    want_tok_pos = np.zeros((3, 16), np.int64)
    for u, a, y in zip(train.user_row, train.aid_idx, train.label, strict=True):
        toks = lists[u]
        for f, n in enumerate([sum(t < 4 for t in toks), sum(t >= 4 for t in toks)]):
            want_len[f, min(n, 4)] += 1
            want_len_pos[f, min(n, 4)] += y
        for t in toks:
            want_tok[a, t] += 1
            want_tok_pos[a, t] += y
    assert np.array_equal(counts.length_rows, want_len) and np.array_equal(counts.length_pos, want_len_pos)
    df = np.r_[users.fields[0].df, users.fields[1].df]
    kept = np.flatnonzero(df >= 30)
    assert 0 < len(kept) < 16  # some columns are not counted per aid
    assert np.array_equal(counts.columns, kept)
    assert np.array_equal(counts.token_rows, want_tok[:, kept])
    assert np.array_equal(counts.token_pos, want_tok_pos[:, kept])
    dropped = np.setdiff1d(np.arange(16), kept)
    for f, (lo, hi) in enumerate([(0, 4), (4, 16)]):
        cols = dropped[(dropped >= lo) & (dropped < hi)]
        assert counts.other_rows[f] == want_tok[:, cols].sum()
        assert counts.other_pos[f] == want_tok_pos[:, cols].sum()
    assert np.array_equal(counts.aid_rows, np.bincount(train.aid_idx, minlength=3))


def test_value_and_length_rates_pool_what_is_below_the_support() -> None:
    users, lists = _users()
    train = _pairs(users.n_users)
    counts = count_rows(users, train, n_aids=3, min_df=30, max_len=4)
    table = value_rates(counts, "interest1", top_k=3, min_support=60)
    occurrences: dict[int, list[int]] = {}
    for u, y in zip(train.user_row, train.label, strict=True):
        for t in lists[u]:
            if t >= 4:
                occurrences.setdefault(100 + t - 4, []).append(int(y))
    eligible = {v: ys for v, ys in occurrences.items()
                if len(ys) >= 60 and users.fields[1].df[v - 100] >= 30}
    top = sorted(eligible, key=lambda v: (-len(eligible[v]), v))[:3]
    assert table["value"].tolist() == [str(v) for v in top] + ["other"]
    for v, row in zip(top, table.itertuples(), strict=False):
        assert row.rows == len(occurrences[v]) and row.positives == sum(occurrences[v])
        assert row.rate == pytest.approx(np.mean(occurrences[v]))
        ci = binomtest(row.positives, row.rows).proportion_ci(method="wilson")
        assert row.ci_low == pytest.approx(ci.low, abs=2e-4) and row.ci_high == pytest.approx(ci.high, abs=2e-4)
    rest = [y for v, ys in occurrences.items() if v not in top for y in ys]
    assert table.iloc[-1]["rows"] == len(rest) and table.iloc[-1]["positives"] == sum(rest)
    lengths = length_rates(counts, "interest1")
    n_of = [min(sum(t >= 4 for t in lists[u]), 4) for u in train.user_row]
    for row in lengths.itertuples():
        n = 4 if row.length == "4+" else int(row.length)
        assert row.rows == n_of.count(n)
    assert lengths["share"].sum() == pytest.approx(1.0)


def test_aid_table_and_repetition_match_loops() -> None:
    users, _ = _users()
    train = _pairs(users.n_users, n_rows=400)
    table = aid_table(train, np.array([7, 8, 9, 10]))
    assert table["aid"].tolist() == [7, 8, 9]  # aid 10 has no rows
    for row in table.itertuples():
        ys = train.label[train.aid == row.aid]
        assert row.rows == len(ys) and row.positives == ys.sum() and row.rate == pytest.approx(ys.mean())
    per_user, history = repetition(train, max_rows=3)
    rows_of = pd.Series(train.uid).value_counts()
    assert per_user["users"].tolist() == [(rows_of == 1).sum(), (rows_of == 2).sum(), (rows_of >= 3).sum()]
    assert per_user["rows"].sum() == len(train)
    groups = {"other positive": [], "other rows, no positive": [], "only row": []}
    for i in range(len(train)):
        others = [j for j in range(len(train)) if j != i and train.uid[j] == train.uid[i]]
        key = "only row" if not others else (
            "other positive" if any(train.label[j] for j in others) else "other rows, no positive")
        groups[key].append(int(train.label[i]))
    for row in history.itertuples():
        assert row.rows == len(groups[row.user]) and row.positives == sum(groups[row.user])


def test_cramers_v_is_scipys_and_association_is_symmetric() -> None:
    rng = np.random.default_rng(0)
    a = rng.integers(0, 4, 500)
    b = (a + (rng.random(500) < 0.3) * rng.integers(0, 3, 500)) % 5
    table = pd.crosstab(a, b).to_numpy()
    assert cramers_v(a, b) == pytest.approx(scipy_association(table, method="cramer"))
    chi2 = sum((table[i, j] - table[i].sum() * table[:, j].sum() / 500) ** 2
               / (table[i].sum() * table[:, j].sum() / 500) for i in range(4) for j in range(5))
    assert cramers_v(a, b) == pytest.approx(math.sqrt(chi2 / (500 * 3)))  # by hand: min(r, c) - 1 = 3
    assert cramers_v(a, np.zeros(500, np.int64)) == 0.0
    users, lists = _users()
    train = _pairs(users.n_users)
    v = association(users, train, sample=10_000, max_levels=5)
    assert list(v.index) == ["age", "interest1", "aid", "label"]
    assert np.allclose(v.to_numpy(), v.to_numpy().T) and np.allclose(np.diag(v), 1.0)
    assert ((v.to_numpy() >= 0) & (v.to_numpy() <= 1 + 1e-12)).all()
    # the age of a row is its user's one value: the V of age and label by hand
    age = np.array([lists[u][0] for u in train.user_row])
    assert v.loc["age", "label"] == pytest.approx(cramers_v(age, train.label.astype(np.int64)))


def test_seed_profiles_shrink_towards_zero_and_rank_the_planted_token_first() -> None:
    users, lists = _users(n_users=2000, seed=3)
    rng = np.random.default_rng(5)
    user_row = rng.integers(0, users.n_users, 20_000)
    aid_idx = rng.integers(0, 2, 20_000).astype(np.int32)
    has = np.array([107 - 100 + 4 in lists[u] for u in user_row])  # interest1 value 107 (column 11)
    p = np.where((aid_idx == 0) & has, 0.5, 0.05)
    label = (rng.random(20_000) < p).astype(np.int8)
    train = Pairs(aid=aid_idx + 7, uid=user_row + 1000, aid_idx=aid_idx, user_row=user_row, label=label)
    counts = count_rows(users, train, n_aids=2, min_df=1)
    prof = seed_profile(counts, 0, top_k=5, min_support=20)
    assert (prof.iloc[0]["field"], prof.iloc[0]["value"]) == ("interest1", 107)
    # the columns by hand for the top token
    rows0 = aid_idx == 0
    a = int((label[rows0] & has[rows0]).sum())
    b = int((~label[rows0].astype(bool) & has[rows0]).sum())
    P, N = int(label[rows0].sum()), int(rows0.sum() - label[rows0].sum())
    top = prof.iloc[0]
    assert (top["positives"], top["negatives"]) == (a, b)
    lor = math.log((a + .5) / (P - a + .5)) - math.log((b + .5) / (N - b + .5))
    assert top["log_odds_ratio"] == pytest.approx(lor)
    assert top["se"] == pytest.approx(math.sqrt(1 / (a + .5) + 1 / (P - a + .5) + 1 / (b + .5) + 1 / (N - b + .5)))
    assert prof["shrunk_log_odds_ratio"].is_monotonic_decreasing
    assert (prof["shrunk_log_odds_ratio"].abs() <= prof["log_odds_ratio"].abs() + 1e-12).all()
    # tau^2 by hand (DerSimonian-Laird, a loop) over every token with support: the top token's shrinkage
    full = seed_profile(counts, 0, top_k=1000, min_support=20)
    effects, variances = full["log_odds_ratio"].tolist(), (full["se"] ** 2).tolist()
    weights = [1 / v for v in variances]
    centre = sum(w * e for w, e in zip(weights, effects)) / sum(weights)
    q = sum(w * (e - centre) ** 2 for w, e in zip(weights, effects))
    tau2 = max(0.0, (q - (len(effects) - 1)) / (sum(weights) - sum(w * w for w in weights) / sum(weights)))
    assert tau2 > 0
    assert top["shrunk_log_odds_ratio"] == pytest.approx(lor * tau2 / (tau2 + top["se"] ** 2))
    # the aid without the planted effect has nothing shrunk far from zero
    assert seed_profile(counts, 1, min_support=20)["shrunk_log_odds_ratio"].abs().max() < 0.3
