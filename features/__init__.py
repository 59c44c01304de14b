"""Feature transformers: pruning, CTR statistics, crosses, user history."""

from features._pruning import FrequencyPruner, MissingRatePruner

__all__ = ["FrequencyPruner", "MissingRatePruner"]
