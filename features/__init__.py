"""Feature transformers: pruning, conversion-rate statistics, counts, user history, the pair featurizer.

Pure, array-in / array-out estimators; nothing here reads or writes files
or imports the ``pipeline`` package.
"""

from features._keys import KeyCounter, LeaveSelfOutHistory
from features._pruning import FrequencyPruner, MissingRatePruner
from features.ctr import CTR_AGGREGATIONS, CTREncoder, CTRSpec
from features.design import DesignLayout, FeatureSet
from features.featurizer import PairFeaturizer
from features.folds import make_folds

__all__ = [
    "CTR_AGGREGATIONS",
    "CTREncoder",
    "CTRSpec",
    "DesignLayout",
    "FeatureSet",
    "FrequencyPruner",
    "KeyCounter",
    "LeaveSelfOutHistory",
    "MissingRatePruner",
    "PairFeaturizer",
    "make_folds",
]
