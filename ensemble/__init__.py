"""Models: reference LightGBM, EasyEnsemble, BalanceCascade, per-aid models, NFFM, blending, stacking, metrics.

Pure, array-in / array-out estimators and functions; nothing here reads or
writes files or imports the ``pipeline`` or ``features`` packages.
"""

from ensemble._bagging import (
    DEFAULT_PARAMS,
    BagPlan,
    BalanceCascadeLGBM,
    BaseLGBMBagging,
    EasyEnsembleLGBM,
    ReferenceLGBM,
    lgbm_param_name,
    owned_param,
)
from ensemble._blend import COMBINERS, AidRank, Blend, Stack, make_combiner, nested_oof
from ensemble._device import DEVICES, resolve_device
from ensemble._peraid import PerAidLGBM
from ensemble.importance import gain_importance, group_shares, has_gain_importance, permuted_columns
from ensemble.metrics import AidAUC, fold_scores, per_aid_auc
from ensemble.nffm import NFFMClassifier

__all__ = [
    "COMBINERS",
    "DEFAULT_PARAMS",
    "DEVICES",
    "AidAUC",
    "AidRank",
    "BagPlan",
    "BalanceCascadeLGBM",
    "BaseLGBMBagging",
    "Blend",
    "EasyEnsembleLGBM",
    "NFFMClassifier",
    "PerAidLGBM",
    "ReferenceLGBM",
    "Stack",
    "fold_scores",
    "gain_importance",
    "group_shares",
    "has_gain_importance",
    "lgbm_param_name",
    "make_combiner",
    "nested_oof",
    "owned_param",
    "per_aid_auc",
    "permuted_columns",
    "resolve_device",
]
