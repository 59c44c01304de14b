"""Small array helpers shared by the stages."""

from __future__ import annotations

import numpy as np

__all__ = ["sorted_index"]


def sorted_index(table: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Position of each of ``values`` in the sorted array ``table``; ``-1`` where absent."""
    table, values = np.asarray(table), np.asarray(values)
    if len(table) == 0:
        return np.full(values.shape, -1, dtype=np.int64)
    pos = np.minimum(np.searchsorted(table, values), len(table) - 1)
    return np.where(table[pos] == values, pos, -1).astype(np.int64)
