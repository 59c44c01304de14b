"""Feature transformers: pruning, CTR statistics, counts, user history."""

from features._ctr import SparseTargetEncoder
from features._keys import KeyCounter, LeaveSelfOutHistory
from features._pruning import FrequencyPruner, MissingRatePruner

__all__ = [
    "FrequencyPruner",
    "KeyCounter",
    "LeaveSelfOutHistory",
    "MissingRatePruner",
    "SparseTargetEncoder",
]
