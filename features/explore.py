"""Statistics of the loaded data for the exploration report and the seed profiles.

Pure functions of the :class:`core.UserMatrix` and the training
:class:`core.Pairs` (the ``explore`` stage in :mod:`pipeline.stages.explore`
reads the files and draws the plots). Everything is counted over *training
rows* (pairs), not users: a user in three rows counts three times, as the
models see it.

* :class:`RowCounts`: one pass over the training rows (:func:`count_rows`)
  counts, per field, the rows by list length and their positives, and per
  ``aid x token`` the rows holding the token and their positives. The
  per-value conversion rates, the length tables and the seed profiles all
  derive from it.
* :func:`value_rates`, :func:`length_rates`: conversion rate with a Wilson
  interval (:func:`wilson_interval`), the values below a support threshold
  pooled into one bar.
* :func:`aid_table`, :func:`repetition`: per aid rows and base rates; how
  often users repeat across rows, and the rate of rows whose user converted
  on another row (the signal of the history features).
* :func:`association`: Cramer's V between fields (and the aid and the
  label) on a sample of rows, each field reduced to one categorical value
  per row (see the function).
* :func:`seed_profile`: the tokens most over-represented among an aid's
  positives against its negatives, by an empirical-Bayes shrunk log-odds
  ratio.

The counting pass is a numba loop over the rows' CSR entries (one read of
each row's tokens for all the counts; at full scale, 8.8M rows, README
"Benchmarks"); the rest is NumPy/SciPy on the counts.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np
import pandas as pd
from scipy.stats.contingency import association as _scipy_association

from core import FieldBlock, Pairs, UserMatrix

__all__ = [
    "RowCounts",
    "aid_table",
    "association",
    "count_rows",
    "cramers_v",
    "length_rates",
    "repetition",
    "seed_profile",
    "value_rates",
    "wilson_interval",
]


def wilson_interval(k: np.ndarray, n: np.ndarray, z: float = 1.96) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval of the proportions ``k / n`` (NaN where ``n == 0``).

    Vectorised; equal to ``scipy.stats.binomtest(k, n).proportion_ci(method="wilson")``
    for ``z = 1.96`` (tested).
    """
    k, n = np.asarray(k, dtype=np.float64), np.asarray(n, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = k / n
        denom = 1.0 + z * z / n
        centre = (p + z * z / (2 * n)) / denom
        half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return np.clip(centre - half, 0.0, 1.0), np.clip(centre + half, 0.0, 1.0)


@dataclass(frozen=True)
class RowCounts:
    """Counts over the training rows (see :func:`count_rows`).

    Attributes
    ----------
    fields : list of FieldBlock
        The user matrix's fields, in column order.
    max_len : int
        List lengths of ``max_len`` and more share the last length bin.
    length_rows, length_pos : ndarray of shape (n_fields, max_len + 1)
        Rows whose user holds ``l`` tokens of the field, and their positives.
    columns : ndarray of int64
        The user-matrix columns counted per aid (those held by at least ``min_df`` users).
    token_rows, token_pos : ndarray of shape (n_aids, len(columns))
        Per aid, the rows whose user holds the column's token, and their positives.
    other_rows, other_pos : ndarray of shape (n_fields,)
        Token occurrences (and positives) of the columns not counted per aid.
    aid_rows, aid_pos : ndarray of shape (n_aids,)
        Rows and positives per aid.
    """

    fields: list[FieldBlock]
    max_len: int
    length_rows: np.ndarray
    length_pos: np.ndarray
    columns: np.ndarray
    token_rows: np.ndarray
    token_pos: np.ndarray
    other_rows: np.ndarray
    other_pos: np.ndarray
    aid_rows: np.ndarray
    aid_pos: np.ndarray

    def field_index(self, name: str) -> int:
        """Position of field ``name`` in :attr:`fields`."""
        for i, f in enumerate(self.fields):
            if f.name == name:
                return i
        raise KeyError(name)

    def field_columns(self, name: str) -> np.ndarray:
        """Positions in :attr:`columns` of field ``name``'s counted columns."""
        f = self.fields[self.field_index(name)]
        return np.flatnonzero((self.columns >= f.offset) & (self.columns < f.stop))


@numba.njit(cache=True, nogil=True)
def _count_pass(indptr, indices, col_field, col_slot, user_row, aid_idx, y, n_fields, max_len,  # noqa: ANN001, ANN202, PLR0913
                length_rows, length_pos, token_rows, token_pos, other_rows, other_pos):
    lens = np.zeros(n_fields, np.int64)
    for r in range(len(user_row)):
        u, a, yy = user_row[r], aid_idx[r], y[r]
        lens[:] = 0
        if u >= 0:
            for j in range(indptr[u], indptr[u + 1]):
                c = indices[j]
                f = col_field[c]
                lens[f] += 1
                s = col_slot[c]
                if s >= 0:
                    token_rows[a, s] += 1
                    token_pos[a, s] += yy
                else:
                    other_rows[f] += 1
                    other_pos[f] += yy
        for f in range(n_fields):
            b = min(lens[f], max_len)
            length_rows[f, b] += 1
            length_pos[f, b] += yy


def _column_fields(users: UserMatrix) -> tuple[np.ndarray, np.ndarray]:
    """Per user-matrix column, the position of its field and the column's document frequency."""
    col_field = np.zeros(users.n_cols, np.int32)
    df = np.zeros(users.n_cols, np.int64)
    for i, f in enumerate(users.fields):
        col_field[f.offset : f.stop] = i
        df[f.offset : f.stop] = f.df
    return col_field, df


def count_rows(users: UserMatrix, train: Pairs, n_aids: int, min_df: int = 20, max_len: int = 30) -> RowCounts:
    """One pass over the training rows: the counts of :class:`RowCounts`.

    Parameters
    ----------
    users : UserMatrix
    train : Pairs
        Training pairs (``label`` set); a ``user_row`` of ``-1`` counts as a user with no tokens.
    n_aids : int
        Number of aids (``aid_idx`` ranges over ``0 .. n_aids - 1``).
    min_df : int, default=20
        Columns held by fewer users are not counted per aid (their
        occurrences go to :attr:`RowCounts.other_rows`): they cannot be
        estimated, and they would make the per-aid tables ``n_aids`` times
        the vocabulary.
    max_len : int, default=30
        Last list-length bin (``max_len`` or more tokens).
    """
    if train.label is None:
        raise ValueError("count_rows needs labelled (training) pairs")
    n_fields = len(users.fields)
    col_field, df = _column_fields(users)
    columns = np.flatnonzero(df >= min_df)
    col_slot = np.full(users.n_cols, -1, np.int64)
    col_slot[columns] = np.arange(len(columns))
    length_rows = np.zeros((n_fields, max_len + 1), np.int64)
    length_pos = np.zeros_like(length_rows)
    token_rows = np.zeros((n_aids, len(columns)), np.int32)
    token_pos = np.zeros_like(token_rows)
    other_rows, other_pos = np.zeros(n_fields, np.int64), np.zeros(n_fields, np.int64)
    y = train.label.astype(np.int64)
    _count_pass(users.indptr, users.indices, col_field, col_slot, train.user_row.astype(np.int64),
                train.aid_idx.astype(np.int64), y, n_fields, max_len, length_rows, length_pos, token_rows,
                token_pos, other_rows, other_pos)
    aid_rows = np.bincount(train.aid_idx, minlength=n_aids)
    aid_pos = np.bincount(train.aid_idx, weights=y, minlength=n_aids).astype(np.int64)
    return RowCounts(list(users.fields), max_len, length_rows, length_pos, columns, token_rows, token_pos,
                     other_rows, other_pos, aid_rows, aid_pos)


def _rates(rows: np.ndarray, pos: np.ndarray, z: float) -> dict[str, np.ndarray]:
    lo, hi = wilson_interval(pos, rows, z)
    with np.errstate(invalid="ignore", divide="ignore"):
        rate = pos / rows
    return {"rows": rows, "positives": pos, "rate": rate, "ci_low": lo, "ci_high": hi}


def value_rates(counts: RowCounts, field: str, top_k: int = 15, min_support: int = 1000,
                z: float = 1.96) -> pd.DataFrame:
    """Conversion rate of the rows holding each of ``field``'s most frequent values.

    The ``top_k`` values held by the most rows among those held by at least
    ``min_support`` rows, in that order, then one ``other`` row pooling every
    other value's occurrences (a row holding two pooled values counts twice,
    as it does in the value rows; values held by fewer than the counting
    ``min_df`` users are in it too). Columns: ``value`` (the field's id, or
    ``"other"``), ``rows``, ``positives``, ``rate``, ``ci_low``, ``ci_high``.
    """
    block = counts.fields[counts.field_index(field)]
    slots = counts.field_columns(field)
    rows = counts.token_rows[:, slots].sum(axis=0, dtype=np.int64)
    pos = counts.token_pos[:, slots].sum(axis=0, dtype=np.int64)
    eligible = np.flatnonzero(rows >= min_support)
    top = eligible[np.argsort(-rows[eligible], kind="stable")[:top_k]]
    rest = np.setdiff1d(np.arange(len(slots)), top)
    values = block.values[counts.columns[slots[top]] - block.offset]
    i = counts.field_index(field)
    out = pd.DataFrame({"value": [str(v) for v in values] + ["other"],
                        **_rates(np.r_[rows[top], rows[rest].sum() + counts.other_rows[i]],
                                 np.r_[pos[top], pos[rest].sum() + counts.other_pos[i]], z)})
    return out[out["rows"] > 0].reset_index(drop=True)


def length_rates(counts: RowCounts, field: str, z: float = 1.96) -> pd.DataFrame:
    """Rows by the number of ``field`` tokens their user holds (0 = field missing), with
    their conversion rate. Columns: ``length`` (``"<max_len>+"`` for the last bin), ``rows``,
    ``positives``, ``rate``, ``ci_low``, ``ci_high``, ``share`` (of all rows)."""
    i = counts.field_index(field)
    rows, pos = counts.length_rows[i], counts.length_pos[i]
    labels = [str(n) for n in range(counts.max_len)] + [f"{counts.max_len}+"]
    out = pd.DataFrame({"length": labels, **_rates(rows, pos, z)})
    out["share"] = rows / max(int(rows.sum()), 1)
    return out[out["rows"] > 0].reset_index(drop=True)


def aid_table(train: Pairs, aids: np.ndarray, z: float = 1.96) -> pd.DataFrame:
    """Per aid (``aids[aid_idx]``): ``rows``, ``positives``, ``rate`` and its Wilson interval,
    for the aids with training rows, by aid."""
    n = len(aids)
    rows = np.bincount(train.aid_idx, minlength=n)
    pos = np.bincount(train.aid_idx, weights=train.label, minlength=n).astype(np.int64)
    out = pd.DataFrame({"aid": aids, **_rates(rows, pos, z)})
    return out[out["rows"] > 0].reset_index(drop=True)


def repetition(train: Pairs, max_rows: int = 5, z: float = 1.96) -> tuple[pd.DataFrame, pd.DataFrame]:
    """How users repeat across training rows, and what their other rows' labels say.

    Returns
    -------
    per_user : DataFrame
        ``rows_per_user`` (``"<max_rows>+"`` pooled), ``users``, ``rows`` (the rows of those users).
    history : DataFrame
        Rows split by whether the row's user has a positive on *another*
        training row (``other positive``), only negatives there (``other rows,
        no positive``) or no other row (``only row``): ``rows``, ``positives``,
        ``rate`` and its Wilson interval.
    """
    uids, inverse, per = np.unique(train.uid, return_inverse=True, return_counts=True)
    y = train.label.astype(np.int64)
    pos_of_user = np.bincount(inverse, weights=y, minlength=len(uids))
    capped = np.minimum(per, max_rows)
    users = np.bincount(capped, minlength=max_rows + 1)[1:]
    rows = np.bincount(capped, weights=per, minlength=max_rows + 1)[1:].astype(np.int64)
    labels = [str(n) for n in range(1, max_rows)] + [f"{max_rows}+"]
    per_user = pd.DataFrame({"rows_per_user": labels, "users": users, "rows": rows})
    other_pos = pos_of_user[inverse] - y
    group = np.where(per[inverse] == 1, 2, np.where(other_pos > 0, 0, 1))
    names = ["other positive", "other rows, no positive", "only row"]
    g_rows = np.bincount(group, minlength=3)
    g_pos = np.bincount(group, weights=y, minlength=3).astype(np.int64)
    history = pd.DataFrame({"user": names, **_rates(g_rows, g_pos, z)})
    return per_user, history


@numba.njit(cache=True, nogil=True)
def _main_token(indptr, indices, rows, col_field, df, n_fields):  # noqa: ANN001, ANN202
    """Per row and field, the held column with the highest document frequency (-1: none)."""
    out = np.full((len(rows), n_fields), -1, np.int64)
    best = np.zeros(n_fields, np.int64)
    for i in range(len(rows)):
        u = rows[i]
        if u < 0:
            continue
        best[:] = -1
        for j in range(indptr[u], indptr[u + 1]):
            c = indices[j]
            f = col_field[c]
            if df[c] > best[f]:
                best[f] = df[c]
                out[i, f] = c
    return out


def _codes(values: np.ndarray, max_levels: int) -> np.ndarray:
    """Categorical codes: the ``max_levels - 1`` most frequent values (ties by value), the rest one level."""
    uniq, inv, cnt = np.unique(values, return_inverse=True, return_counts=True)
    order = np.lexsort((uniq, -cnt))
    rank = np.empty(len(uniq), np.int64)
    rank[order] = np.arange(len(uniq))
    return np.minimum(rank[inv], max_levels - 1)


def _field_codes(main: np.ndarray, max_levels: int) -> np.ndarray:
    """Levels of a field's main token (``-1``: none): the ``max_levels - 2`` most frequent values,
    one level pooling the others, and ``missing`` always a level of its own (the last)."""
    codes = np.full(len(main), max_levels - 1, np.int64)
    present = main >= 0
    if present.any():
        codes[present] = _codes(main[present], max_levels - 1)
    return codes


def cramers_v(a: np.ndarray, b: np.ndarray) -> float:
    """Cramer's V of two categorical code arrays (``scipy.stats.contingency.association``);
    0 when either has one level."""
    table = np.zeros((int(a.max()) + 1, int(b.max()) + 1), np.int64)
    np.add.at(table, (a, b), 1)
    table = table[table.sum(axis=1) > 0][:, table.sum(axis=0) > 0]
    if min(table.shape) < 2:
        return 0.0
    return float(_scipy_association(table, method="cramer"))


def association(users: UserMatrix, train: Pairs, sample: int = 200_000, max_levels: int = 20,
                seed: int = 0) -> pd.DataFrame:
    """Cramer's V between every two fields, the ``aid`` and the ``label``, on sampled training rows.

    Each field is one categorical value per row: the user's token of the
    field held by the most users (its "main" value; ``missing`` when it has
    none, always a level of its own), with the ``max_levels - 2`` most
    frequent values kept and the rest pooled into one level (``max_levels``
    levels at most; the aid likewise, without a missing level). For a
    single-valued field that is its value; for a list field it is the most
    common token of the list. ``sample`` rows are drawn without
    replacement (all rows when there are fewer). Returns a square DataFrame.
    """
    if max_levels < 3:
        raise ValueError(f"max_levels must be at least 3 (a value, the pooled rest, missing), got {max_levels}")
    rng = np.random.default_rng(seed)
    take = np.sort(rng.choice(len(train), min(sample, len(train)), replace=False))
    col_field, df = _column_fields(users)
    main = _main_token(users.indptr, users.indices, train.user_row[take].astype(np.int64), col_field, df,
                       len(users.fields))
    variables = {f.name: _field_codes(main[:, i], max_levels) for i, f in enumerate(users.fields)}
    variables["aid"] = _codes(train.aid_idx[take], max_levels)
    variables["label"] = train.label[take].astype(np.int64)
    names = list(variables)
    v = np.eye(len(names))
    for i in range(len(names)):
        for j in range(i + 1, len(names)):
            v[i, j] = v[j, i] = cramers_v(variables[names[i]], variables[names[j]])
    return pd.DataFrame(v, index=names, columns=names)


def _between_variance(effect: np.ndarray, var: np.ndarray) -> float:
    """DerSimonian-Laird estimate of the variance of the true effects behind ``effect``
    (each observed with sampling variance ``var``): ``max(0, (Q - (k - 1)) / (S1 - S2 / S1))``
    with weights ``w = 1 / var``, ``Q = sum w (effect - mean_w)^2``, ``S1 = sum w``, ``S2 = sum w^2``."""
    if len(effect) < 2:
        return 0.0
    w = 1.0 / var
    s1, s2 = float(w.sum()), float((w * w).sum())
    mean = float((w * effect).sum() / s1)
    q = float((w * (effect - mean) ** 2).sum())
    return max(0.0, (q - (len(effect) - 1)) / (s1 - s2 / s1))


def seed_profile(counts: RowCounts, aid_pos: int, top_k: int = 50, min_support: int = 20) -> pd.DataFrame:
    """The tokens most over-represented among aid ``aid_pos``'s positives against its negatives.

    For every counted token held by at least ``min_support`` of the aid's
    rows: ``a`` of its ``P`` positives and ``b`` of its ``N`` negatives hold
    it. The log-odds ratio with Haldane's 0.5 in each cell,
    ``lor = log((a+.5)/(P-a+.5)) - log((b+.5)/(N-b+.5))``, has the variance
    ``se^2 = 1/(a+.5) + 1/(P-a+.5) + 1/(b+.5) + 1/(N-b+.5)``. The shrunk
    ratio is the normal empirical-Bayes posterior mean
    ``lor * tau^2 / (tau^2 + se^2)``, with ``tau^2`` the between-token
    variance of ``lor`` over the aid's tokens, estimated as in a
    random-effects meta-analysis (DerSimonian-Laird, :func:`_between_variance`,
    which weighs each token by its precision: the plain method of moments,
    ``var(lor) - mean(se^2)``, is swamped by the rare tokens' huge ``se^2``
    and gave 0 for some full-scale aids): a token seen in a handful of rows
    moves towards 0 however extreme its raw ratio. The ``top_k`` tokens by
    shrunk ratio, highest first.

    Columns: ``field``, ``value``, ``positives`` (``a``), ``negatives``
    (``b``), ``share_of_positives`` (``a/P``), ``share_of_negatives``
    (``b/N``), ``log_odds_ratio``, ``se``, ``shrunk_log_odds_ratio``.
    """
    P, R = int(counts.aid_pos[aid_pos]), int(counts.aid_rows[aid_pos])
    N = R - P
    a = counts.token_pos[aid_pos].astype(np.float64)
    b = counts.token_rows[aid_pos].astype(np.float64) - a
    keep = np.flatnonzero(a + b >= min_support)
    empty = pd.DataFrame(columns=["field", "value", "positives", "negatives", "share_of_positives",
                                  "share_of_negatives", "log_odds_ratio", "se", "shrunk_log_odds_ratio"])
    if P == 0 or N == 0 or not len(keep):
        return empty
    a, b = a[keep], b[keep]
    lor = np.log((a + 0.5) / (P - a + 0.5)) - np.log((b + 0.5) / (N - b + 0.5))
    se2 = 1 / (a + 0.5) + 1 / (P - a + 0.5) + 1 / (b + 0.5) + 1 / (N - b + 0.5)
    tau2 = _between_variance(lor, se2)
    shrunk = lor * tau2 / (tau2 + se2)
    order = np.lexsort((keep, -shrunk))[:top_k]
    cols = counts.columns[keep[order]]
    offsets = np.array([f.offset for f in counts.fields])
    fidx = np.searchsorted(offsets, cols, side="right") - 1
    return pd.DataFrame({
        "field": [counts.fields[i].name for i in fidx],
        "value": [int(counts.fields[i].values[c - counts.fields[i].offset]) for i, c in zip(fidx, cols, strict=True)],
        "positives": a[order].astype(np.int64),
        "negatives": b[order].astype(np.int64),
        "share_of_positives": a[order] / P,
        "share_of_negatives": b[order] / N,
        "log_odds_ratio": lor[order],
        "se": np.sqrt(se2[order]),
        "shrunk_log_odds_ratio": shrunk[order],
    })
