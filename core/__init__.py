"""The shared layer below ``features``, ``ensemble`` and ``pipeline``.

Error types, the in-memory containers of loaded data (users, ads, pairs) and
small array helpers. It imports only NumPy and SciPy: no file I/O, no
command line, nothing from the packages above it (see README, "Architecture").
"""

from core.arrays import distinct, row_chunks, search_sorted, sorted_index, take_rows
from core.containers import AdTable, FieldBlock, Pairs, UserMatrix
from core.errors import InputFormatError, LookalikeError

__all__ = [
    "AdTable",
    "FieldBlock",
    "InputFormatError",
    "LookalikeError",
    "Pairs",
    "UserMatrix",
    "distinct",
    "row_chunks",
    "search_sorted",
    "sorted_index",
    "take_rows",
]
