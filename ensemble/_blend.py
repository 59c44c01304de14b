"""Blending and stacking of out-of-fold predictions, scored with nested folds.

They read only prediction matrices (one column per model: out-of-fold on
train, fold-averaged on test), never model internals.

Only the order of scores inside an aid counts, so the combiners work on
within-aid ranks. A rank taken inside the *scored* set would make a pair's
score depend on the pairs scored with it (and a model reloaded to score a
few new pairs would disagree with the pipeline). :class:`AidRank` instead
learns, per aid and model, the distribution of the out-of-fold scores and
maps a score to its position in it: the same monotone map for every row, so
combined scores are computed one row at a time.
"""

from __future__ import annotations

import logging

import numpy as np
from scipy.optimize import minimize
from scipy.special import expit, logit, softmax
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.linear_model import LogisticRegression
from sklearn.utils.validation import check_is_fitted

from ensemble.metrics import aid_groups, per_aid_auc
from core import sorted_index

__all__ = ["COMBINERS", "AidRank", "Blend", "Stack", "fit_blend_weights", "make_combiner", "nested_oof"]

#: The combiners of several models' predictions, by name (see :func:`make_combiner`).
COMBINERS: tuple[str, ...] = ("blend_rank", "blend_score", "stack")

logger = logging.getLogger(__name__)


class AidRank(TransformerMixin, BaseEstimator):
    """Each score's quantile among the reference scores of its aid and column.

    ``fit`` stores, for every aid and column, ``n_quantiles`` quantiles of the
    reference scores; ``transform`` interpolates between them (the empirical
    CDF, smoothed), plus ``1e-6`` times the score, so the map stays strictly
    increasing beyond the reference range: ranks inside an aid never tie where
    the scores do not.

    Parameters
    ----------
    n_quantiles : int, default=1001

    Attributes
    ----------
    aids_ : ndarray
        The aids seen by ``fit``, sorted.
    knots_ : list of list of (ndarray, ndarray)
        Per aid, per column: the distinct quantile values and their levels.
    """

    def __init__(self, n_quantiles: int = 1001) -> None:
        self.n_quantiles = n_quantiles

    def fit(self, scores: np.ndarray, aid: np.ndarray) -> "AidRank":
        """Learn the per-aid score distributions of ``scores`` (rows x models)."""
        scores = np.asarray(scores, dtype=np.float64)
        levels = np.linspace(0.0, 1.0, self.n_quantiles)
        self.aids_, self.knots_ = [], []
        for a, idx in aid_groups(aid):
            per_col = []
            for j in range(scores.shape[1]):
                q = np.quantile(scores[idx, j], levels)
                x, inv = np.unique(q, return_inverse=True)
                lv = np.bincount(inv.ravel(), weights=levels) / np.bincount(inv.ravel())
                per_col.append((x, lv))
            self.aids_.append(a)
            self.knots_.append(per_col)
        self.aids_ = np.asarray(self.aids_)
        self.n_features_in_ = scores.shape[1]
        return self

    def transform(self, scores: np.ndarray, aid: np.ndarray) -> np.ndarray:
        """Rank of every score within its aid's reference distribution, in about [0, 1]."""
        check_is_fitted(self, "knots_")
        scores = np.asarray(scores, dtype=np.float64)
        aid = np.asarray(aid)
        known = sorted_index(self.aids_, aid) >= 0
        if not known.all():
            raise ValueError(f"aids never seen in fit: {np.unique(aid[~known])[:5].tolist()}")
        out = np.empty_like(scores)
        for a, idx in aid_groups(aid):
            knots = self.knots_[int(np.searchsorted(self.aids_, a))]
            for j, (x, lv) in enumerate(knots):
                out[idx, j] = np.interp(scores[idx, j], x, lv) + 1e-6 * scores[idx, j]
        return out


def _rowdot(inputs: np.ndarray, w: np.ndarray) -> np.ndarray:
    """``inputs @ w`` computed row by row in a fixed order.

    A BLAS product may sum a row in a different order depending on how many
    rows it gets, so a pair's score would change (in the last bits) with the
    chunk it is scored in; a contiguous row sum does not.
    """
    return np.ascontiguousarray(np.asarray(inputs, dtype=np.float64) * w).sum(axis=1)


def fit_blend_weights(inputs: np.ndarray, y: np.ndarray, aid: np.ndarray, max_evals: int = 120) -> np.ndarray:
    """Non-negative weights (summing to 1) that maximise the mean per-aid AUC of ``inputs @ w``.

    Nelder-Mead over softmax parameters, from equal weights. Equal weights
    when no aid in these rows has both classes (nothing to rank).
    """
    m = inputs.shape[1]
    if m == 1 or np.isnan(per_aid_auc(y, inputs[:, 0], aid).mean):
        return np.full(m, 1.0 / m)

    def loss(theta: np.ndarray) -> float:
        return -per_aid_auc(y, _rowdot(inputs, softmax(theta)), aid).mean

    # an explicit simplex: scipy's default steps from zeros are 0.00025, inside ``xatol``,
    # so the search would stop at once on equal weights
    simplex = np.vstack([np.zeros(m), 2.0 * np.eye(m)])
    res = minimize(
        loss, np.zeros(m), method="Nelder-Mead",
        options={"maxfev": max_evals, "xatol": 1e-3, "fatol": 1e-6, "initial_simplex": simplex},
    )
    return softmax(res.x)


def _seed_sizes(y: np.ndarray, aid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each aid (sorted) and its seed size, ``log(1 + positives)`` in these rows."""
    aids, inv = np.unique(aid, return_inverse=True)
    return aids, np.log1p(np.bincount(inv.ravel(), weights=np.asarray(y, dtype=np.float64), minlength=len(aids)))


def _lookup(keys: np.ndarray, values: np.ndarray, aid: np.ndarray) -> np.ndarray:
    """``values`` of each row's aid (``keys`` sorted); an aid not in ``keys`` is an error."""
    pos = sorted_index(keys, np.asarray(aid))
    if (pos < 0).any():
        raise ValueError(f"aids never seen in fit: {np.unique(np.asarray(aid)[pos < 0])[:5].tolist()}")
    return values[pos]


class Blend(BaseEstimator):
    """Weighted average of model scores (``method="score"``) or of their within-aid ranks (``"rank"``).

    Parameters
    ----------
    method : {"rank", "score"}, default="rank"
    by_seed_size : bool, default=False
        Fit one set of weights per seed-size class: the aids are split at
        quantiles of ``log(1 + positives)`` into ``n_size_bins`` classes of
        about equal numbers of aids, so per-aid models can count more in large
        seeds and the global model in small ones. The metric is a mean over
        aids, so each class's weights are searched on its own aids' rows.
    n_size_bins : int, default=3
        Number of seed-size classes (fewer when there are under
        ``min_aids_per_bin`` aids per class, or ties).
    min_aids_per_bin : int, default=10
    max_rows : int, default=1_000_000
        The weights are searched on at most this many rows (a seeded random
        sample): each evaluation of the metric sorts every row of every aid
        (1.8 s at 8.8M rows, about 120 evaluations per fit), and a few
        weights need far fewer rows. The rank map always uses every row.
    seed : int, default=0
        Seed of that sample.

    Attributes
    ----------
    weights_ : ndarray of shape (n_bins, n_models)
        Per seed-size class (one class without ``by_seed_size``), weights
        summing to 1, fitted on out-of-fold predictions to maximise the mean
        per-aid AUC.
    size_edges_ : ndarray of shape (n_bins - 1,)
        Upper edges (inclusive) of the seed-size classes, on ``log(1 + positives)``.
    aids_ : ndarray
        The aids seen in fit, sorted.
    size_bin_ : ndarray
        The seed-size class of each of ``aids_``.
    ranker_ : AidRank or None
        The within-aid rank map (``method="rank"``).
    """

    def __init__(
        self, method: str = "rank", by_seed_size: bool = False, n_size_bins: int = 3, min_aids_per_bin: int = 10,
        max_rows: int = 1_000_000, seed: int = 0,
    ) -> None:
        self.method = method
        self.by_seed_size = by_seed_size
        self.n_size_bins = n_size_bins
        self.min_aids_per_bin = min_aids_per_bin
        self.max_rows = max_rows
        self.seed = seed

    def _inputs(self, scores: np.ndarray, aid: np.ndarray) -> np.ndarray:
        return self.ranker_.transform(scores, aid) if self.ranker_ is not None else np.asarray(scores, dtype=np.float64)

    def _size_classes(self, y: np.ndarray, aid: np.ndarray) -> None:
        self.aids_, size = _seed_sizes(y, aid)
        n_bins = min(self.n_size_bins, len(self.aids_) // self.min_aids_per_bin) if self.by_seed_size else 1
        edges = np.empty(0)
        if n_bins > 1:  # edges are seed sizes that occur, so no class is empty
            edges = np.unique(np.quantile(size, np.arange(1, n_bins) / n_bins, method="lower"))
            edges = edges[edges < size.max()]
        self.size_edges_ = edges
        self.size_bin_ = np.searchsorted(edges, size, side="left")

    def fit(self, scores: np.ndarray, y: np.ndarray, aid: np.ndarray) -> "Blend":
        """Fit the rank map, the seed-size classes and their weights on out-of-fold predictions ``scores``."""
        if self.method not in ("rank", "score"):
            raise ValueError(f"unknown blend method {self.method!r}")
        scores, y, aid = np.asarray(scores), np.asarray(y), np.asarray(aid)
        self.ranker_ = AidRank().fit(scores, aid) if self.method == "rank" else None
        self._size_classes(y, aid)
        rows = np.arange(len(y))
        if len(y) > self.max_rows:
            rows = np.sort(np.random.default_rng(self.seed).choice(len(y), self.max_rows, replace=False))
            logger.info("blend weights searched on %d of %d rows", self.max_rows, len(y))
        inputs, y, aid = self._inputs(scores[rows], aid[rows]), y[rows], aid[rows]
        bins = self._bins(aid)
        self.weights_ = np.vstack([
            fit_blend_weights(inputs[bins == b], y[bins == b], aid[bins == b]) for b in range(len(self.size_edges_) + 1)
        ])
        return self

    def _bins(self, aid: np.ndarray) -> np.ndarray:
        if len(self.size_edges_) == 0:
            return np.zeros(len(aid), dtype=np.intp)
        return _lookup(self.aids_, self.size_bin_, aid)

    def model_weights(self, aid: np.ndarray) -> np.ndarray:
        """Per row (its aid), each model's weight."""
        check_is_fitted(self, "weights_")
        return self.weights_[self._bins(aid)]

    def predict(self, scores: np.ndarray, aid: np.ndarray) -> np.ndarray:
        """The blended score of each row."""
        return _rowdot(self._inputs(scores, aid), self.model_weights(aid))


class Stack(BaseEstimator):
    """Logistic regression on each model's logit and its within-aid rank.

    With ``by_seed_size``, each rank also enters multiplied by the aid's
    standardised seed size (``log(1 + positives)`` in the fitting rows), so a
    model's weight can change with the size of the seed: per-aid models can
    count more for large seeds and the global model for small ones.

    Attributes
    ----------
    ranker_ : AidRank
    meta_ : LogisticRegression
    aids_ : ndarray
        The aids seen in fit, sorted (``by_seed_size`` only).
    seed_size_ : ndarray
        Standardised log seed size of each of ``aids_`` (``by_seed_size`` only).
    """

    def __init__(self, seed: int = 0, by_seed_size: bool = False) -> None:
        self.seed = seed
        self.by_seed_size = by_seed_size

    def _features(self, scores: np.ndarray, aid: np.ndarray) -> np.ndarray:
        clipped = np.clip(np.asarray(scores, dtype=np.float64), 1e-6, 1 - 1e-6)
        ranks = self.ranker_.transform(scores, aid)
        cols = [logit(clipped), ranks]
        if self.by_seed_size:
            cols.append(ranks * self.size_of(aid)[:, None])
        return np.column_stack(cols)

    def size_of(self, aid: np.ndarray) -> np.ndarray:
        """Standardised log seed size of each row's aid."""
        return _lookup(self.aids_, self.seed_size_, aid)

    def fit(self, scores: np.ndarray, y: np.ndarray, aid: np.ndarray) -> "Stack":
        """Fit the rank map and the meta-learner on out-of-fold predictions ``scores``."""
        self.ranker_ = AidRank().fit(scores, aid)
        if self.by_seed_size:
            self.aids_, size = _seed_sizes(y, aid)
            self.seed_size_ = (size - size.mean()) / (size.std() or 1.0)
        self.meta_ = LogisticRegression(C=1.0, max_iter=1000, random_state=self.seed).fit(self._features(scores, aid), y)
        return self

    def model_weights(self, aid: np.ndarray) -> np.ndarray:
        """Per row (its aid), each model's coefficient on its within-aid rank (with the seed-size term)."""
        check_is_fitted(self, "meta_")
        m = self.ranker_.n_features_in_
        coef = self.meta_.coef_[0]
        w = np.tile(coef[m : 2 * m], (len(aid), 1))
        if self.by_seed_size:
            w = w + self.size_of(aid)[:, None] * coef[2 * m : 3 * m]
        return w

    def predict(self, scores: np.ndarray, aid: np.ndarray) -> np.ndarray:
        """The meta-learner's probability of each row."""
        check_is_fitted(self, "meta_")
        decision = _rowdot(self._features(scores, aid), self.meta_.coef_[0]) + self.meta_.intercept_[0]
        return expit(decision)  # LogisticRegression.predict_proba, row by row (see _rowdot)


def make_combiner(kind: str, seed: int = 0, by_seed_size: bool = False) -> Blend | Stack:
    """``"blend_rank"``, ``"blend_score"`` or ``"stack"``, unfitted (see :class:`Blend` and :class:`Stack`)."""
    if kind == "stack":
        return Stack(seed=seed, by_seed_size=by_seed_size)
    if kind in ("blend_rank", "blend_score"):
        return Blend(method=kind.removeprefix("blend_"), by_seed_size=by_seed_size, seed=seed)
    raise ValueError(f"unknown combiner {kind!r}")


def nested_oof(
    scores: np.ndarray, y: np.ndarray, aid: np.ndarray, folds: np.ndarray, kind: str, seed: int = 0,
    by_seed_size: bool = False,
) -> np.ndarray:
    """Honest out-of-fold predictions of a blend or stack.

    For each fold, the combiner (rank map, weights or meta-learner) is fitted
    on the other folds' out-of-fold predictions only, then applied to the fold.
    """
    out = np.empty(len(y))
    for k in np.unique(folds):
        fit, held = folds != k, folds == k
        out[held] = make_combiner(kind, seed, by_seed_size).fit(scores[fit], y[fit], aid[fit]).predict(scores[held], aid[held])
    return out
