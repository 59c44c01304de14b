"""Compiled passes of :class:`features.ctr.CTREncoder` (private).

Every sparse column of a CTR field, crossed with a group code of the row's aid
(aid, advertiser, product type), is a *key*:
``base[g, f] + code * n_tokens[f] + (column - start[f])``. Three passes over
CSR row chunks:

- :func:`mark_keys` flags the keys present in the fitting rows;
- :func:`count_keys` adds each key's rows and positives per fold
  (``counts[key, 0 | 1, fold]``), the same per ``group code x field`` (the
  prior's counts) and per fold (the overall rate);
- :func:`encode_rows` writes each row's aggregates of the smoothed rates of
  its known keys, leaving out the folds ``exclude_a[row]`` and
  ``exclude_b[row]`` (``-1``: none), so one set of counts yields every
  cross-fitted statistic.

The per-key and per-row formulas are those of
:class:`features.SparseTargetEncoder`, which the tests use as the reference.
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = ["count_keys", "encode_rows", "logits", "mark_keys"]

AGG_CODES = {"mean": 0, "max": 1, "count": 2, "lor": 3}
_EPS = 1e-6


@numba.njit(cache=True, inline="always")
def _key(g: int, f: int, code: int, col: int, base: np.ndarray, start: np.ndarray, n_tok: np.ndarray) -> int:
    return base[g, f] + code * n_tok[f] + col - start[f]


@numba.njit(cache=True, inline="always")
def _field_of(c: int, col_field: np.ndarray) -> int:
    """CTR field of sparse column ``c``; ``-1`` outside every field (or beyond the fitted columns)."""
    return col_field[c] if c < len(col_field) else -1


@numba.njit(cache=True)
def mark_keys(indptr, indices, order, row_codes, col_field, start, n_tok, base, seen):  # noqa: ANN001, ANN201
    """Set ``seen[key]`` for every key of the rows (visited in ``order``)."""
    for r in order:
        for p in range(indptr[r], indptr[r + 1]):
            c = indices[p]
            f = _field_of(c, col_field)
            if f < 0:
                continue
            for g in range(row_codes.shape[1]):
                seen[_key(g, f, row_codes[r, g], c, base, start, n_tok)] = True


@numba.njit(cache=True)
def count_keys(  # noqa: ANN201
    indptr, indices, order, row_codes, row_fold, row_y, col_field, start, n_tok, base, key_map, counts, group_counts,
    fold_counts,
):  # noqa: ANN001
    """Add the rows' keys to ``counts`` (key, 0 rows | 1 positives, fold) and the group and fold totals.

    Rows are visited in ``order`` (integer sums: the order changes only the speed).
    """
    for r in order:
        fr, yr = row_fold[r], row_y[r]
        fold_counts[0, fr] += 1
        fold_counts[1, fr] += yr
        for p in range(indptr[r], indptr[r + 1]):
            c = indices[p]
            f = _field_of(c, col_field)
            if f < 0:
                continue
            for g in range(row_codes.shape[1]):
                code = row_codes[r, g]
                k = key_map[_key(g, f, code, c, base, start, n_tok)]
                counts[k, 0, fr] += 1
                counts[k, 1, fr] += yr
                group_counts[g, code, f, 0, fr] += 1
                group_counts[g, code, f, 1, fr] += yr


@numba.njit(cache=True, inline="always")
def _odds(p: float) -> float:
    p = min(max(p, _EPS), 1.0 - _EPS)
    return p / (1.0 - p)


@numba.njit(cache=True, inline="always")
def _logit(p: float) -> float:
    return np.log(_odds(p))


@numba.njit(cache=True)
def logits(p):  # noqa: ANN001, ANN201
    """:func:`_logit` of every element (the same compiled code as the per-key one)."""
    out = np.empty_like(p)
    flat, res = p.ravel(), out.ravel()
    for i in range(len(flat)):
        res[i] = _logit(flat[i])
    return out


@numba.njit(cache=True, parallel=True)
def encode_rows(  # noqa: ANN201, PLR0913
    indptr, indices, rows, order, row_codes, exclude_a, exclude_b, col_field, start, n_tok, base, key_map, counts,
    priors, prior_logits, smoothing, agg_codes, out_start, needed, out,
):  # noqa: ANN001
    """Write the aggregates of the known keys' smoothed rates of rows ``rows`` into ``out`` (see the module doc).

    Rows are visited in ``order`` (rows of one aid together: their keys are
    neighbours in the tables, which keeps them in cache); each row's output
    depends only on that row. The sum of log-odds ratios is accumulated as a
    product of clipped odds with one ``log`` per ``group x field`` (the prior
    is the same for every key of a row's ``group x field``): the same value
    up to rounding, at a fraction of the cost of one ``log`` per key (the
    kernel's hot spot; README, "Train stage profile").
    ``priors[a + 1, b + 1, g, code, f]`` is the prior of ``group code x
    field`` without folds ``a`` and ``b``; ``prior_logits`` its clipped logit.
    Only the ``group x field`` pairs with ``needed[g, f]`` are computed; the
    others' columns are NaN.
    """
    n_rows = len(rows)
    n_groups, n_fields = row_codes.shape[1], len(start)
    n_folds = counts.shape[2]
    block = 512
    for b in numba.prange((n_rows + block - 1) // block):
        # sum of rates, max, count, log of the odds product flushed so far, odds product
        acc = np.empty((n_groups, n_fields, 5))
        for j in range(b * block, min((b + 1) * block, n_rows)):
            i = order[j]
            r = rows[i]
            ea, eb = exclude_a[i], exclude_b[i]
            for g in range(n_groups):
                for f in range(n_fields):
                    acc[g, f, 0] = 0.0
                    acc[g, f, 1] = -np.inf
                    acc[g, f, 2] = 0.0
                    acc[g, f, 3] = 0.0
                    acc[g, f, 4] = 1.0
            for p in range(indptr[r], indptr[r + 1]):
                c = indices[p]
                f = _field_of(c, col_field)
                if f < 0:
                    continue
                for g in range(n_groups):
                    if not needed[g, f]:
                        continue
                    code = row_codes[i, g]
                    key = _key(g, f, code, c, base, start, n_tok)
                    if key >= len(key_map) or key_map[key] < 0:
                        continue
                    k_idx = key_map[key]
                    n = 0
                    npos = 0
                    for k in range(n_folds):
                        if k != ea and k != eb:
                            n += counts[k_idx, 0, k]
                            npos += counts[k_idx, 1, k]
                    if n <= 0:
                        continue
                    prior = priors[ea + 1, eb + 1, g, code, f]
                    rate = (npos + smoothing * prior) / (n + smoothing)
                    acc[g, f, 0] += rate
                    acc[g, f, 1] = max(acc[g, f, 1], rate)
                    acc[g, f, 2] += 1.0
                    if _wants_lor(agg_codes, g, f):
                        prod = acc[g, f, 4] * _odds(rate)  # each factor within [1e-6, 1e6]: no overflow
                        if prod < 1e-200 or prod > 1e200:
                            acc[g, f, 3] += np.log(prod)
                            prod = 1.0
                        acc[g, f, 4] = prod
            for g in range(n_groups):
                for f in range(n_fields):
                    col = out_start[g, f]
                    cnt = acc[g, f, 2]
                    for a in range(agg_codes.shape[2]):
                        code = agg_codes[g, f, a]
                        if code < 0:
                            break
                        if not needed[g, f]:
                            out[i, col] = np.nan
                        elif code == 0:
                            out[i, col] = acc[g, f, 0] / cnt if cnt > 0 else np.nan
                        elif code == 1:
                            out[i, col] = acc[g, f, 1] if cnt > 0 else np.nan
                        elif code == 2:
                            out[i, col] = cnt
                        else:
                            prior_logit = prior_logits[ea + 1, eb + 1, g, row_codes[i, g], f]
                            out[i, col] = acc[g, f, 3] + np.log(acc[g, f, 4]) - cnt * prior_logit
                        col += 1


@numba.njit(cache=True, inline="always")
def _wants_lor(agg_codes: np.ndarray, g: int, f: int) -> bool:
    for a in range(agg_codes.shape[2]):
        if agg_codes[g, f, a] == 3:
            return True
    return False
