"""Per-seed models: one bagged model per aid beside the global one.

Every aid is its own seed package, and the metric only ranks rows inside an
aid, so a model per aid learns the aid's taste directly, where a global model
must learn it through interactions with the aid column; but it sees only the
aid's rows. :class:`PerAidLGBM` offers both, plus a hybrid, and cross-
validation (and the blend) decide per aid.
"""

from __future__ import annotations

import logging

import numpy as np
from joblib import Parallel, delayed
from scipy.special import logit
from sklearn.base import BaseEstimator, clone
from sklearn.utils.validation import check_is_fitted, validate_data

from ensemble._bagging import BinaryClassifierMixin, EasyEnsembleLGBM, _column, validate_binary

__all__ = ["PerAidLGBM"]

logger = logging.getLogger(__name__)
_CLIP = 1e-7


def _log_odds(p: np.ndarray) -> np.ndarray:
    return logit(np.clip(p, _CLIP, 1.0 - _CLIP))


class PerAidLGBM(BinaryClassifierMixin, BaseEstimator):
    """One copy of a bagged LightGBM classifier per aid, with a global fallback.

    Parameters
    ----------
    estimator : BaseLGBMBagging
        The model of every aid (cloned), and of the global model.
    group_column : int, default=0
        Column of ``X`` holding the aid (``aid_idx`` in the feature sets).
    min_positives : int, default=30
        An aid needs this many positives, and as many negatives, for its own
        model; smaller seeds are scored by the global model (listed in
        :attr:`fallback_`).
    hybrid : bool, default=False
        ``False`` (granularity ``per_aid``): an aid's model sees only its own
        rows. ``True`` (``hybrid``): it boosts from the global model's
        log-odds (LightGBM ``init_score``), so it learns only the aid's
        *corrections* to the shared model and early stopping on the aid's
        held-out rows decides how far to move from it: strength is shared
        across aids, and a small seed stays close to the global model. (The
        global score of a training row is in-sample; that makes the
        corrections conservative, never optimistic: the reported score is
        out of fold.)
    n_jobs : int, default=1
        Aids trained at once (threads; each aid's LightGBM then uses one
        thread). Results do not depend on it.

    Attributes
    ----------
    global_ : estimator or None
        Fitted on all rows; ``None`` for ``per_aid`` when every aid has its own model.
    models_ : dict of aid -> estimator
    fallback_ : list
        Aids scored by the global model.
    classes_ : ndarray of shape (2,)
    """

    _fitted_attr = "models_"

    def __init__(
        self, estimator: BaseEstimator | None = None, group_column: int = 0, min_positives: int = 30,
        hybrid: bool = False, n_jobs: int = 1,
    ) -> None:
        self.estimator = estimator
        self.group_column = group_column
        self.min_positives = min_positives
        self.hybrid = hybrid
        self.n_jobs = n_jobs

    def _base(self) -> BaseEstimator:
        if self.estimator is None:
            return EasyEnsembleLGBM()
        return self.estimator

    def fit(self, X, y) -> "PerAidLGBM":  # noqa: ANN001
        """Fit the global model (when needed) and one model per aid with enough positives and negatives."""
        X, y01 = validate_binary(self, X, y)
        groups = _column(X, self.group_column)
        aids, inverse = np.unique(groups, return_inverse=True)
        pos = np.bincount(inverse, weights=y01, minlength=len(aids))
        neg = np.bincount(inverse, minlength=len(aids)) - pos
        own = (pos >= self.min_positives) & (neg >= self.min_positives)
        self.fallback_ = aids[~own].tolist()
        self.global_ = None
        init = None
        if self.hybrid or not own.all():
            self.global_ = clone(self._base()).fit(X, y01)
            if self.hybrid:
                init = _log_odds(self.global_.predict_proba(X)[:, 1])
        parallel = self.n_jobs not in (None, 1)

        def fit_one(a_pos: int):  # noqa: ANN202
            rows = np.flatnonzero(inverse == a_pos)
            est = clone(self._base())
            if parallel:
                est.set_params(n_jobs=1)
            return est.fit(X[rows], y01[rows], init_score=None if init is None else init[rows])

        todo = np.flatnonzero(own)
        fitted = Parallel(n_jobs=self.n_jobs, prefer="threads")(delayed(fit_one)(i) for i in todo)
        self.models_ = {aids[i].item(): est for i, est in zip(todo, fitted)}
        logger.info("%d aids with their own model, %d scored by the global model (fewer than %d positives "
                    "or negatives)", len(self.models_), len(self.fallback_), self.min_positives)
        return self

    def predict_proba(self, X) -> np.ndarray:  # noqa: ANN001
        """Each row scored by its aid's model, or by the global model."""
        check_is_fitted(self, "models_")
        X = validate_data(
            self, X, accept_sparse="csr", ensure_all_finite="allow-nan", reset=False, dtype=(np.float32, np.float64)
        )
        groups = _column(X, self.group_column)
        p = np.full(X.shape[0], np.nan)
        if self.global_ is not None:
            p = self.global_.predict_proba(X)[:, 1]
        for a, est in self.models_.items():
            rows = np.flatnonzero(groups == a)
            if len(rows):
                init = _log_odds(p[rows]) if self.hybrid else None
                p[rows] = est.predict_proba(X[rows], init_score=init)[:, 1]
        if np.isnan(p).any():
            unseen = np.unique(groups[np.isnan(p)])[:5].tolist()
            raise ValueError(f"rows of aids never seen in fit (first: {unseen}) and no global model")
        return np.column_stack([1.0 - p, p])

