"""The shared sorted-lookup helper against a dict."""

from __future__ import annotations

import numpy as np

from pipeline.arrays import sorted_index


def test_sorted_index_matches_a_dict() -> None:
    rng = np.random.default_rng(0)
    table = np.unique(rng.integers(0, 100, size=30))
    values = rng.integers(-5, 110, size=200)
    where = {int(v): i for i, v in enumerate(table)}
    assert sorted_index(table, values).tolist() == [where.get(int(v), -1) for v in values]
    assert sorted_index(np.zeros(0, np.int64), values).tolist() == [-1] * 200
