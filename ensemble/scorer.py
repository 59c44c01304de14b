"""The saved scoring pipeline: features, fold models and the final blend in one object.

``make train`` saves a :class:`Scorer` as ``models/scorer.joblib`` (with its
manifest). Reloaded, it scores any (aid, uid) pairs exactly as the pipeline
scored the test pairs: the same fitted featurizer, the CTR block and models
refitted on all rows (or, with ``[train] refit = false``, each fold's block
and models, averaged in the same order), and the same combiner. Every step
works row by row, so the score of a pair does not depend on the pairs scored
with it or on the chunk size (tested).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import scipy.sparse as sp

from features.ctr import CTRBlock
from features.featurizer import PairFeaturizer
from pipeline.arrays import sorted_index

__all__ = ["Scorer", "design_matrix"]

logger = logging.getLogger(__name__)


def design_matrix(
    fset: str, sparse: sp.csr_matrix, dense: np.ndarray | None, ctr: np.ndarray | None, n_raw: int
) -> Any:  # noqa: ANN401
    """The model input of feature set ``fset`` for some rows.

    ``raw``: the first ``n_raw`` sparse columns; ``sparse``: all of them;
    ``dense``: the dense set then the CTR block; ``full``: dense, sparse, CTR.
    """
    if fset == "raw":
        return sparse[:, :n_raw]
    if fset == "sparse":
        return sparse
    if fset == "dense":
        return np.hstack([dense, ctr])
    if fset == "full":
        return sp.hstack([sp.csr_matrix(dense), sparse, sp.csr_matrix(ctr)], format="csr")
    raise ValueError(f"unknown feature set {fset!r}")


class Scorer:
    """Score (aid, uid) pairs with everything the train stage fitted.

    Parameters
    ----------
    featurizer : PairFeaturizer
        The fitted feature pipeline of the features stage.
    ctr_blocks : list of CTRBlock
        The CTR block of each estimator position: each fold's, or the one of
        all rows for refitted models.
    models : dict of name -> (feature set, list of estimators)
        Fold estimators (averaged) or the one refitted estimator, in the
        column order the combiner expects.
    final : str
        The model or combiner whose predictions are submitted.
    combiner : Blend or Stack, optional
        Fitted on the out-of-fold predictions of ``models``; ``None`` when
        ``final`` is a single model.
    """

    def __init__(
        self,
        featurizer: PairFeaturizer,
        ctr_blocks: list[CTRBlock],
        models: dict[str, tuple[str, list[Any]]],
        final: str,
        combiner: Any = None,  # noqa: ANN401
    ) -> None:
        self.featurizer = featurizer
        self.ctr_blocks = ctr_blocks
        self.combiner = combiner
        self.final = final
        # a single final model needs only itself
        self.models = models if combiner is not None else {final: models[final]}

    @property
    def aids(self) -> np.ndarray:
        """The aids the model knows."""
        return self.featurizer.aids_

    def aid_index(self, aid: np.ndarray) -> np.ndarray:
        """Row of each aid in :attr:`aids`; ``-1`` where the model never saw it."""
        return sorted_index(self.featurizer.aids_, aid)

    def predict(self, aid_idx: np.ndarray, uid: np.ndarray, X: sp.csr_matrix) -> np.ndarray:
        """Final scores in [0, 1] of pairs (``aid_idx`` from :meth:`aid_index`).

        ``X`` holds each pair's user tokens in the featurizer's vocabulary.
        """
        aid_idx = np.asarray(aid_idx, dtype=np.int64)
        sparse, dense = self.featurizer.transform(aid_idx, uid, X)
        n_raw = self.featurizer.n_raw_
        ctr: list[np.ndarray | None] = [None] * len(self.ctr_blocks)
        if any(fset in ("dense", "full") for fset, _ in self.models.values()):
            ctr = [block.transform(sparse, aid_idx) for block in self.ctr_blocks]
        preds = []
        for fset, estimators in self.models.values():
            total = None
            n_folds = len(estimators)
            for k, est in enumerate(estimators):
                x = design_matrix(fset, sparse, dense, ctr[k] if fset in ("dense", "full") else None, n_raw)
                pred = est.predict_proba(x)[:, 1] / n_folds
                total = pred if total is None else total + pred
            preds.append(total)
        if self.combiner is None:
            score = preds[0]
        else:
            score = self.combiner.predict(np.column_stack(preds), self.featurizer.aids_[aid_idx])
        return np.clip(score, 0.0, 1.0)
