"""The saved scoring pipeline: features, CTR statistics, models and the final blend in one object.

``make train`` saves a :class:`Scorer` as ``models/scorer.joblib`` (with its
manifest). Reloaded, it scores any (aid, uid) pairs exactly as the pipeline
scored the test pairs: the same fitted featurizer, the same CTR encoder with
the same folds left out, the models of each task averaged in the same order
(the refit alone, or with ``[train] refit = false`` the fold models), the
same combiner, and the same assembly of model inputs
(:meth:`features.DesignLayout.assemble`). Every step works row by row, so the
score of a pair does not depend on the pairs scored with it or on the chunk
size (tested).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator

from core import sorted_index
from features import CTREncoder, FeatureSet, PairFeaturizer
from pipeline.design import Task

__all__ = ["ScoredModel", "Scorer"]

logger = logging.getLogger(__name__)


@dataclass
class ScoredModel:
    """One model's estimators and the task each was trained for (their scores are averaged)."""

    feature_set: FeatureSet
    tasks: list[Task]
    estimators: list[BaseEstimator]


class Scorer:
    """Score (aid, uid) pairs with everything the train stage fitted.

    Parameters
    ----------
    featurizer : PairFeaturizer
        The fitted feature pipeline of the features stage.
    encoder : CTREncoder or None
        The train stage's CTR counts (``None`` when no model uses them);
        kept :meth:`~features.CTREncoder.pooled` when every kept model is a
        refit (then no fold is ever left out).
    models : dict of name -> ScoredModel
        In the column order the combiner expects.
    final : str
        The model or combiner whose predictions are submitted.
    combiner : Blend or Stack, optional
        Fitted on the out-of-fold predictions of ``models``; ``None`` when
        ``final`` is a single model (then only that model is kept).
    """

    def __init__(
        self,
        featurizer: PairFeaturizer,
        encoder: CTREncoder | None,
        models: dict[str, ScoredModel],
        final: str,
        combiner: Any = None,  # noqa: ANN401
    ) -> None:
        self.featurizer = featurizer
        self.final = final
        self.combiner = combiner
        self.models = models if combiner is not None else {final: models[final]}
        refitted = all(task.excluded < 0 for m in self.models.values() for task in m.tasks)
        # refitted models encode from every fold: keep the counts summed over the folds (a fifth of them)
        self.encoder = encoder.pooled() if encoder is not None and refitted else encoder

    @property
    def aids(self) -> np.ndarray:
        """The aids the model knows."""
        return self.featurizer.aids_

    def aid_index(self, aid: np.ndarray) -> np.ndarray:
        """Row of each aid in :attr:`aids`; ``-1`` where the model never saw it."""
        return sorted_index(self.featurizer.aids_, aid)

    def _ctr_columns(self, task: Task) -> np.ndarray | None:
        """The conversion-rate columns read by the models of ``task`` (``None``: all, as a model without
        a column selection reads them all)."""
        wanted = []
        layout = self.featurizer.layout_
        for model in self.models.values():
            if not model.feature_set.uses_ctr:
                continue
            for t, est in zip(model.tasks, model.estimators):
                if t.excluded != task.excluded:
                    continue
                cols = layout.ctr_columns(getattr(est, "columns_", None), getattr(est, "n_features_in_", 0))
                if cols is None:
                    return None
                wanted.append(cols)
        return np.unique(np.concatenate(wanted)) if wanted else None

    def predict(self, aid_idx: np.ndarray, uid: np.ndarray, X: sp.csr_matrix) -> np.ndarray:
        """Final scores in [0, 1] of pairs (``aid_idx`` from :meth:`aid_index`).

        ``X`` holds each pair's user tokens in the featurizer's vocabulary.
        """
        aid_idx = np.asarray(aid_idx, dtype=np.int64)
        tokens_only = not any(m.feature_set.uses_token_values for m in self.models.values())
        sparse, dense = self.featurizer.transform(aid_idx, uid, X, tokens_only=tokens_only)
        layout = self.featurizer.layout_
        ctr: dict[int, np.ndarray] = {}  # by the fold left out: shared by the models of the same task

        def encoder_for(task: Task):  # noqa: ANN202
            def encode(out: np.ndarray | None) -> np.ndarray:
                if task.excluded not in ctr:
                    ctr[task.excluded] = self.encoder.transform(sparse, aid_idx, task.excluded,
                                                                columns=self._ctr_columns(task))
                if out is None:
                    return ctr[task.excluded]
                out[...] = ctr[task.excluded]
                return out

            return encode

        preds = []
        for model in self.models.values():
            total = None
            for task, est in zip(model.tasks, model.estimators):
                x = layout.assemble(model.feature_set, sparse, dense,
                                    encoder_for(task) if model.feature_set.uses_ctr else None)
                pred = est.predict_proba(x)[:, 1] / len(model.estimators)
                total = pred if total is None else total + pred
            preds.append(total)
        if self.combiner is None:
            score = preds[0]
        else:
            score = self.combiner.predict(np.column_stack(preds), self.featurizer.aids_[aid_idx])
        return np.clip(score, 0.0, 1.0)
