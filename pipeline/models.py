"""The model registry: what a model name means, which feature set it needs, how it is built.

A model is named ``<kind>_<set>[_peraid | _hybrid]`` in ``[train] models``.
A :class:`ModelKind` declares the feature sets and granularities it accepts
and builds its unfitted estimator from the typed :class:`TrainSettings`; the
train stage asks the registry and never special-cases a library. The
LightGBM kinds are ``reference`` (one LightGBM on all rows), ``easy``
(EasyEnsemble) and ``cascade`` (BalanceCascade); ``nffm`` is the
field-aware neural network (:class:`ensemble.NFFMClassifier`, PyTorch) on the
``raw`` and ``full`` sets. A new model family adds one :class:`ModelKind` to
:data:`KINDS`.

Granularity: ``global`` (no suffix; one model, the aid is a column),
``peraid`` (one copy per aid) or ``hybrid`` (per aid, boosting from the
global model's log-odds); see :class:`ensemble.PerAidLGBM`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from enum import StrEnum
from typing import TYPE_CHECKING, Protocol

from sklearn.base import BaseEstimator

from ensemble import BalanceCascadeLGBM, BaseLGBMBagging, EasyEnsembleLGBM, NFFMClassifier, PerAidLGBM, ReferenceLGBM
from features import FeatureSet

if TYPE_CHECKING:
    from pipeline.config import TrainSettings

__all__ = [
    "KINDS", "Granularity", "LightGBMKind", "ModelColumns", "ModelKind", "ModelSpec", "NFFMKind", "build_model",
    "parse_model",
]


class Granularity(StrEnum):
    """One model for all aids, one per aid, or one per aid boosting from the global one."""

    GLOBAL = "global"
    PERAID = "peraid"
    HYBRID = "hybrid"


@dataclass(frozen=True)
class ModelColumns:
    """What a model may know of its design's columns.

    Attributes
    ----------
    categorical : list of int
        Columns LightGBM may split as categories.
    fields : tuple of str
        One :class:`ensemble.NFFMClassifier` role per column (see
        :func:`pipeline.design.nffm_fields`); empty where no model asks for it.
    ad_fields : tuple of str
        The ad-side fields among them.
    """

    categorical: list[int]
    fields: tuple[str, ...] = ()
    ad_fields: tuple[str, ...] = ()


class ModelKind(Protocol):
    """What the train stage needs to know of a model family."""

    name: str
    feature_sets: tuple[FeatureSet, ...]
    granularities: tuple[Granularity, ...]
    needs_fields: bool  #: whether :meth:`build` reads :attr:`ModelColumns.fields`

    def build(self, feature_set: FeatureSet, settings: TrainSettings, columns: ModelColumns) -> BaseEstimator:
        """The unfitted estimator of one model (any granularity wrapping is the registry's)."""


@dataclass(frozen=True)
class LightGBMKind:
    """A bagged LightGBM classifier of :mod:`ensemble` (all four feature sets).

    ``[train.lgbm]`` goes to the estimator's ``params`` as it is; dense-set
    models train on ``[train] device``, the others on the CPU (LightGBM builds
    sparse histograms there even in its GPU learner).
    """

    name: str
    estimator: type[BaseLGBMBagging]
    granularities: tuple[Granularity, ...] = tuple(Granularity)
    feature_sets: tuple[FeatureSet, ...] = tuple(FeatureSet)
    needs_fields: bool = False

    def build(self, feature_set: FeatureSet, settings: TrainSettings, columns: ModelColumns) -> BaseEstimator:
        """The estimator with the ``[train]`` settings."""
        return self.estimator(
            n_bags=settings.n_bags,
            ratio=settings.ratio,
            n_estimators=settings.n_estimators,
            early_stopping_rounds=settings.early_stopping_rounds,
            validation_fraction=settings.validation_fraction,
            categorical_feature=columns.categorical,
            group_column=0 if settings.early_stopping_metric == "aid_auc" else None,  # aid_idx: column 0
            device=settings.device if feature_set is FeatureSet.DENSE else "cpu",
            n_jobs=settings.n_jobs or None,
            random_state=settings.seed,
            params=dict(settings.lgbm),
            gain_share=settings.gain_share,
        )


@dataclass(frozen=True)
class NFFMKind:
    """The field-aware neural network (:class:`ensemble.NFFMClassifier`), one global model.

    ``raw``: the tokens of every kept user field, the ad's fields and the
    aid; ``full``: those and the dense set and statistics as numeric inputs
    (the aid crosses unused: the interaction layer crosses the fields itself).
    Settings: ``[train.nffm]``, and ``[train]`` seed, device, n_jobs and
    validation_fraction.
    """

    name: str = "nffm"
    feature_sets: tuple[FeatureSet, ...] = (FeatureSet.RAW, FeatureSet.FULL)
    granularities: tuple[Granularity, ...] = (Granularity.GLOBAL,)
    needs_fields: bool = True

    def build(self, feature_set: FeatureSet, settings: TrainSettings, columns: ModelColumns) -> BaseEstimator:
        """The estimator with the ``[train.nffm]`` settings."""
        nn = settings.nffm
        return NFFMClassifier(
            fields=columns.fields or None, ad_fields=columns.ad_fields, interactions=nn.interactions,
            embedding_dim=nn.embedding_dim, hidden=nn.hidden, dropout=nn.dropout, learning_rate=nn.learning_rate,
            weight_decay=nn.weight_decay, batch_size=nn.batch_size, epochs=nn.epochs, patience=nn.patience,
            ratio=nn.ratio, n_bags=nn.n_bags, validation_fraction=settings.validation_fraction, group_column=0,  # aid_idx: column 0
            device=settings.device,
            n_jobs=settings.n_jobs or None, random_state=settings.seed,
        )


#: Every model kind by name (read-only). A cascade has no hybrid: its stage
#: thresholds are on its own scores, not on an init score's.
KINDS: Mapping[str, ModelKind] = MappingProxyType({
    kind.name: kind
    for kind in (
        LightGBMKind("reference", ReferenceLGBM),
        LightGBMKind("easy", EasyEnsembleLGBM),
        LightGBMKind("cascade", BalanceCascadeLGBM, granularities=(Granularity.GLOBAL, Granularity.PERAID)),
        NFFMKind(),
    )
})


@dataclass(frozen=True)
class ModelSpec:
    """A parsed model name."""

    name: str
    kind: str
    feature_set: FeatureSet
    granularity: Granularity

    @property
    def per_aid(self) -> bool:
        """Whether the model is one copy per aid (``peraid`` or ``hybrid``)."""
        return self.granularity is not Granularity.GLOBAL


def parse_model(name: str) -> ModelSpec:
    """The spec of ``<kind>_<set>[_peraid | _hybrid]``; a ``ValueError`` saying what is wrong."""
    kind_name, _, rest = name.partition("_")
    set_name, _, granularity = rest.partition("_")
    kind = KINDS.get(kind_name)
    usage = (f"use <kind>_<set>[_peraid | _hybrid] with kind in {sorted(KINDS)} and set in "
             f"{[s.value for s in FeatureSet]}")
    if kind is None or set_name not in {s.value for s in kind.feature_sets}:
        raise ValueError(f"unknown model {name!r}: {usage}")
    try:
        gran = Granularity(granularity or "global")
    except ValueError:
        raise ValueError(f"unknown model {name!r}: {usage}") from None
    if gran not in kind.granularities:
        raise ValueError(f"{name}: kind {kind_name!r} has no {gran} granularity "
                         f"(it has {', '.join(g.value for g in kind.granularities)})")
    return ModelSpec(name, kind_name, FeatureSet(set_name), gran)


def build_model(spec: ModelSpec, settings: TrainSettings, columns: ModelColumns) -> BaseEstimator:
    """The unfitted estimator of ``spec``: its kind's, wrapped per aid for ``peraid`` and ``hybrid``.

    Per-aid models train their aids in parallel threads with one LightGBM
    thread each; with ``[train] n_jobs`` set, its threads go to one aid at a
    time. They keep every column (``[train] gain_share`` applies to global
    models): a pilot on one aid's few thousand rows is too noisy to drop
    columns by, and would be paid once per aid.
    """
    est = KINDS[spec.kind].build(spec.feature_set, settings, columns)
    if not spec.per_aid:
        return est
    if "gain_share" in est.get_params():
        est.set_params(gain_share=1.0)
    n_aid_jobs = 1 if settings.n_jobs else (os.cpu_count() or 1)
    return PerAidLGBM(est, group_column=0, min_positives=settings.min_positives,
                      hybrid=spec.granularity is Granularity.HYBRID, n_jobs=n_aid_jobs)
