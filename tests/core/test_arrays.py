"""The shared array helpers against obviously-correct references."""

from __future__ import annotations

import numpy as np

import pytest

from core import distinct, row_chunks, search_sorted, sorted_index, take_rows


def test_sorted_index_matches_a_dict() -> None:
    rng = np.random.default_rng(0)
    table = np.unique(rng.integers(0, 100, size=30))
    values = rng.integers(-5, 110, size=200)
    where = {int(v): i for i, v in enumerate(table)}
    assert sorted_index(table, values).tolist() == [where.get(int(v), -1) for v in values]
    assert sorted_index(np.zeros(0, np.int64), values).tolist() == [-1] * 200


@pytest.mark.parametrize(("n_values", "n_table"), [(0, 3000), (10, 3000), (5000, 3000), (20000, 300_000)])
def test_search_sorted_equals_numpy_in_any_order(n_values: int, n_table: int) -> None:
    rng = np.random.default_rng(n_values)
    table = np.sort(rng.integers(0, n_table // 3, size=n_table))  # repeated entries: the left-most position
    values = rng.integers(-10, n_table // 3 + 10, size=n_values)  # below, inside and past the table, repeats
    assert np.array_equal(search_sorted(table, values), np.searchsorted(table, values))
    where = {}
    for i, v in enumerate(np.unique(table)):
        where[int(v)] = i
    uniq = np.unique(table)
    assert sorted_index(uniq, values).tolist() == [where.get(int(v), -1) for v in values]


def test_take_rows_matches_indexing_a_csr_matrix() -> None:
    import scipy.sparse as sp

    X = sp.random(40, 9, density=0.3, format="csr", random_state=1)
    for rows in (np.array([3, 0, 3, 39, 17]), np.arange(5, 21), np.arange(0, 40), np.array([7])):
        indptr, indices = take_rows(X.indptr, X.indices, rows)
        ref = X[rows]
        assert np.array_equal(indptr, ref.indptr) and np.array_equal(indices, ref.indices)
        assert indptr.dtype == np.int64


def test_row_chunks_cover_every_row_once() -> None:
    for n, size in ((0, 3), (10, 3), (9, 3), (5, 100)):
        chunks = list(row_chunks(n, size))
        assert np.array_equal(np.concatenate([np.arange(n)[c] for c in chunks] or [np.zeros(0)]), np.arange(n))
        assert all(c.stop - c.start <= size for c in chunks)


@pytest.mark.parametrize("n", [0, 1, 7, 5000])
def test_distinct_equals_a_set(n: int) -> None:
    values = np.random.default_rng(n).integers(-50, 50, size=n)
    assert distinct(values).tolist() == sorted(set(values.tolist()))
    assert distinct(values).dtype == values.dtype
