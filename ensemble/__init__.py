"""Models: reference LightGBM, EasyEnsemble, BalanceCascade, blending, stacking, metrics."""

from ensemble._bagging import BalanceCascadeLGBM, BaseLGBMBagging, EasyEnsembleLGBM, ReferenceLGBM
from ensemble._device import resolve_device
from ensemble._peraid import PerAidLGBM
from ensemble.metrics import AidAUC, per_aid_auc

__all__ = [
    "AidAUC",
    "BalanceCascadeLGBM",
    "BaseLGBMBagging",
    "EasyEnsembleLGBM",
    "PerAidLGBM",
    "ReferenceLGBM",
    "per_aid_auc",
    "resolve_device",
]
