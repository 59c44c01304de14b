"""LightGBM bags: the reference model, EasyEnsemble and BalanceCascade.

The three classifiers share :class:`BaseLGBMBagging`: the public ``fit``
validates and the private ``_fit_bags`` decides which rows each bag trains on
(the layout of imbalanced-learn's ``ensemble/_bagging.py``). The bag loop is
written here rather than taken from imbalanced-learn's
``EasyEnsembleClassifier``: that class copies all of ``X`` per bag and cannot
hand LightGBM early-stopping data, while here each bag builds its own
``lgb.Dataset`` from just its rows (about 8x faster than ``Dataset.subset``,
which keeps every column) and early-stops on rows it does not train on.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import lightgbm as lgb
import numpy as np
import scipy.sparse as sp
from scipy.special import expit
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.multiclass import check_classification_targets, type_of_target
from sklearn.utils.validation import check_is_fitted, validate_data

from core import distinct
from ensemble._device import resolve_device
from ensemble._forest import Forest
from ensemble.metrics import per_aid_auc

__all__ = [
    "BagPlan",
    "BalanceCascadeLGBM",
    "BaseLGBMBagging",
    "DEFAULT_PARAMS",
    "EasyEnsembleLGBM",
    "ReferenceLGBM",
    "cascade_keep",
    "gain_columns",
    "lgbm_param_name",
    "merge_params",
    "owned_param",
]

logger = logging.getLogger(__name__)
_Matrix = np.ndarray | sp.csr_matrix

#: LightGBM parameters of every bag unless ``params`` overrides them.
DEFAULT_PARAMS: Mapping[str, Any] = MappingProxyType({
    "learning_rate": 0.05,
    "num_leaves": 31,
    "min_child_samples": 20,
    "feature_fraction": 0.8,
    "lambda_l2": 1.0,
    # categorical columns (aid, aid x attribute crosses) have many levels:
    # LightGBM's defaults overfit them; smooth and require data per level
    "cat_smooth": 50.0,
    "cat_l2": 10.0,
    "min_data_per_group": 200,
    "max_cat_threshold": 32,
    "feature_pre_filter": False,  # with min_data_in_leaf it silently drops rare columns
    # measured on the small sparse set (61k x 9.3k): 7x faster for the same
    # AUC than LightGBM's sparse bins (bench/README.md)
    "is_enable_sparse": False,
    "force_row_wise": True,
})

# LightGBM parameters the classifiers set from their own arguments, and which argument
_OWNED = MappingProxyType({
    "objective": "binary, always", "metric": "log-loss, or the group AUC with group_column",
    "seed": "random_state", "num_threads": "n_jobs", "device_type": "device", "num_iterations": "n_estimators",
    "early_stopping_round": "early_stopping_rounds", "verbosity": "logged through the lightgbm logger",
})


@functools.lru_cache(maxsize=1)
def _aliases() -> Mapping[str, str]:
    """Every LightGBM parameter name and alias -> its canonical name (empty if this LightGBM cannot say)."""
    try:
        table = lgb.basic._ConfigAliases._get_all_param_aliases()  # noqa: SLF001 (no public listing)
    except (AttributeError, lgb.basic.LightGBMError):  # pragma: no cover - other LightGBM versions
        return MappingProxyType({})
    return MappingProxyType({alias: name for name, aliases in table.items() for alias in (name, *aliases)})


def lgbm_param_name(key: str) -> str | None:
    """LightGBM's canonical name of parameter ``key`` (an alias is fine); ``None`` when LightGBM has none.

    When this LightGBM cannot list its parameters, every key is taken as its own name.
    """
    aliases = _aliases()
    return aliases.get(key) if aliases else key


def merge_params(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` updated with ``override``, matching keys by LightGBM's canonical names.

    (LightGBM itself ignores an alias when its canonical name is also given, so
    ``{"eta": 0.1}`` over a default ``learning_rate`` must replace it here.)
    """
    out = dict(base)
    for key, value in override.items():
        name = lgbm_param_name(key) or key
        for old in [k for k in out if (lgbm_param_name(k) or k) == name]:
            del out[old]
        out[key] = value
    return out


def owned_param(key: str) -> str:
    """Why ``key`` may not go in ``params`` (the argument that sets it), or ``""`` when it may."""
    return _OWNED.get(lgbm_param_name(key) or key, "")


@dataclass(frozen=True)
class BagPlan:
    """The rows of every bag, drawn from the labels before any bag trains.

    A bagging model that draws its bags from the labels alone (EasyEnsemble,
    the reference model) can say which rows it will read before it reads
    any: :meth:`BaseLGBMBagging.plan`. A caller that builds its design matrix
    row by row then builds only those rows (:meth:`restrict`): at the
    competition's scale an EasyEnsemble of 3 bags at ratio 1 reads about a
    fifth of the training rows.

    Attributes
    ----------
    n_rows : int
        Rows of the labels the plan was drawn from.
    bags : tuple of ndarray
        Per bag, the sorted positions of the rows it trains on.
    stops : tuple of (ndarray or None)
        Per bag, the sorted positions of its early-stopping rows (``None``: none).
    negative_share : tuple of float
        Per bag, the share of all negatives it trains on (undoes the undersampling).
    """

    n_rows: int
    bags: tuple[np.ndarray, ...]
    stops: tuple[np.ndarray | None, ...]
    negative_share: tuple[float, ...]

    @property
    def rows(self) -> np.ndarray:
        """Sorted positions of every row some bag trains or early-stops on."""
        parts = [*self.bags, *(s for s in self.stops if s is not None)]
        return distinct(np.concatenate(parts)) if parts else np.empty(0, np.int64)

    def restrict(self) -> tuple[np.ndarray, BagPlan]:
        """``(rows, plan)``: :attr:`rows`, and this plan in positions of those rows only.

        ``fit(X[rows], y[rows], plan=plan)`` trains the same bags as
        ``fit(X, y)`` (the same boosters, bit for bit).
        """
        rows = self.rows

        def local(pos: np.ndarray | None) -> np.ndarray | None:
            return None if pos is None else np.searchsorted(rows, pos)

        return rows, BagPlan(len(rows), tuple(local(b) for b in self.bags), tuple(local(s) for s in self.stops),
                             self.negative_share)


class BinaryClassifierMixin(ClassifierMixin):
    """What every binary classifier of :mod:`ensemble` shares: :meth:`predict` from
    ``predict_proba`` and the tags (sparse input, NaN allowed, two classes only).

    ``_fitted_attr`` names the attribute that :meth:`predict` checks is fitted.
    """

    _fitted_attr: str

    def predict(self, X: _Matrix) -> np.ndarray:
        """Class with the higher probability (above :meth:`_threshold`)."""
        check_is_fitted(self, self._fitted_attr)
        return self.classes_[(self.predict_proba(X)[:, 1] > self._threshold()).astype(int)]

    def _threshold(self) -> float:
        """Score above which :meth:`predict` says ``classes_[1]``."""
        return 0.5

    def __sklearn_tags__(self):  # noqa: D105, ANN204
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        tags.input_tags.allow_nan = True
        tags.classifier_tags.multi_class = False
        return tags


def binary_labels(est: BaseEstimator, y: np.ndarray) -> np.ndarray:
    """``y`` as int8 0/1 (1 = the larger class label), for drawing a plan; an error unless binary."""
    classes, y01 = np.unique(np.asarray(y).ravel(), return_inverse=True)
    if len(classes) != 2:
        raise ValueError(f"{type(est).__name__} needs binary labels; got {len(classes)} class(es)")
    return y01.astype(np.int8)


class BaseLGBMBagging(BinaryClassifierMixin, BaseEstimator):
    """Shared machinery: validation, one LightGBM per bag, averaged probabilities.

    Parameters
    ----------
    n_bags : int, default=10
        Number of bags (LightGBM models).
    ratio : float, default=1.0
        Negatives drawn per positive in each bag.
    n_estimators : int, default=300
        Maximum boosting rounds per bag.
    early_stopping_rounds : int, default=30
        Stop a bag when its held-out AUC has not improved for this many rounds
        (0 disables early stopping).
    validation_fraction : float, default=0.1
        Share of the positives (and as many times ``ratio`` negatives not in
        the bag) that each bag holds out for early stopping.
    categorical_feature : list of int, default=None
        Columns LightGBM treats as categorical.
    group_column : int, default=None
        Column of ``X`` holding the group (the aid). When set, early stopping
        watches the mean per-group AUC, the competition metric, instead of the
        global AUC (which also rewards separating the aids' base rates and
        stops too early for the ranking inside each aid).
    device : {"auto", "cpu", "gpu", "cuda"}, default="cpu"
        LightGBM device; ``auto`` uses a working GPU backend, else the CPU.
    n_jobs : int, default=None
        LightGBM threads (``None``: all cores).
    random_state : int, default=0
        Seed of the bag draws and of LightGBM.
    params : mapping of str to scalar, default=None
        LightGBM parameters of every bag (any name or alias LightGBM knows,
        as the ``**kwargs`` of LightGBM's own scikit-learn wrapper), over
        :data:`DEFAULT_PARAMS`. The parameters this class sets from its own
        arguments (objective, metric, seed, threads, device, rounds, early
        stopping) are refused here: see :func:`owned_param`.
    gain_share : float, default=1.0
        Column selection: before the bags, a *pilot* LightGBM (the same
        parameters, ``selection_rounds`` rounds on at most ``selection_rows``
        rows of the first bag) ranks the columns by split gain, and the bags
        train on the fewest columns that hold this share of it
        (:func:`gain_columns`). A boosting round costs about as much per
        column, so this is the bags' speed. ``1.0`` keeps every column and
        trains no pilot.
    selection_rows : int, default=200_000
        Rows the pilot trains on (a seeded sample of the first bag's rows).
    selection_rounds : int, default=60
        Boosting rounds of the pilot.

    Attributes
    ----------
    estimators_ : list of lightgbm.Booster
        One booster per bag.
    classes_ : ndarray of shape (2,)
    n_features_in_ : int
    device_ : str
        The device the bags were trained on.
    forests_ : list of Forest
        The bags' trees (up to their best iteration) as flat arrays: dense
        input is predicted by this compiled evaluator, which gives
        LightGBM's scores (tested to 1e-12) about twice as fast; sparse
        input goes to LightGBM's own predictor (README, "Train stage profile").
    sort_columns_ : list of int
        The input columns the trees split on most near their roots: rows to
        predict are sorted by them first (:meth:`_row_order`).
    columns_ : ndarray of int
        The input columns the bags were trained on, in increasing order (all
        of them unless ``gain_share < 1``); the boosters' feature ``j`` is
        input column ``columns_[j]``.
    pilot_gain_ : ndarray of float or None
        Per input column, its share of the pilot's split gain (``None``
        without a pilot).
    """

    def __init__(
        self,
        n_bags: int = 10,
        ratio: float = 1.0,
        n_estimators: int = 300,
        early_stopping_rounds: int = 30,
        validation_fraction: float = 0.1,
        categorical_feature: list[int] | None = None,
        group_column: int | None = None,
        device: str = "cpu",
        n_jobs: int | None = None,
        random_state: int = 0,
        params: Mapping[str, Any] | None = None,
        gain_share: float = 1.0,
        selection_rows: int = 200_000,
        selection_rounds: int = 60,
    ) -> None:
        self.n_bags = n_bags
        self.ratio = ratio
        self.n_estimators = n_estimators
        self.early_stopping_rounds = early_stopping_rounds
        self.validation_fraction = validation_fraction
        self.categorical_feature = categorical_feature
        self.group_column = group_column
        self.device = device
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.params = params
        self.gain_share = gain_share
        self.selection_rows = selection_rows
        self.selection_rounds = selection_rounds

    _fitted_attr = "estimators_"

    # -- public API --------------------------------------------------------
    def fit(
        self, X: _Matrix, y: np.ndarray, init_score: np.ndarray | None = None, plan: BagPlan | None = None
    ) -> "BaseLGBMBagging":
        """Train the bags on ``X``, ``y`` (binary).

        ``init_score``: optional log-odds per row (at the full class balance)
        that every bag boosts from, so the bags learn corrections to it (see
        :class:`ensemble.PerAidLGBM`'s hybrid). Bags that undersample the
        negatives shift it by ``-log(share kept)``.

        ``plan``: the bags to train (positions in ``X``), as :meth:`plan`
        drew them, possibly :meth:`BagPlan.restrict` ed to the rows they read;
        by default the bags are drawn here, the same way.
        """
        X, y01 = validate_binary(self, X, y)
        if self.n_bags < 1 or self.ratio <= 0:
            raise ValueError("n_bags must be >= 1 and ratio > 0")
        if not 0.0 < self.gain_share <= 1.0 or self.selection_rows < 2 or self.selection_rounds < 1:
            raise ValueError("gain_share must be in (0, 1], selection_rows >= 2 and selection_rounds >= 1")
        if plan is not None and plan.n_rows != X.shape[0]:
            raise ValueError(f"the plan is for {plan.n_rows} rows, X has {X.shape[0]}")
        for key in self.params or {}:
            if owned_param(key):
                raise ValueError(f"params: {key!r} is set by {type(self).__name__} itself ({owned_param(key)})")
        self.device_ = resolve_device(self.device)
        self.estimators_: list[lgb.Booster] = []
        self.boosts_from_init_ = init_score is not None
        if init_score is not None:
            init_score = np.asarray(init_score, dtype=np.float64).ravel()
            if init_score.shape != (X.shape[0],) or not np.isfinite(init_score).all():
                raise ValueError(f"init_score must hold one finite value per row ({X.shape[0]})")
            if not isinstance(self, (ReferenceLGBM, EasyEnsembleLGBM)):
                raise ValueError(f"{type(self).__name__} does not boost from an init_score")
        self._init = init_score
        rng = np.random.default_rng(self.random_state)
        if plan is None:
            plan = self._draw_plan(y01, rng)  # None: the bags are drawn as they train (the cascade)
        self._select_columns(X, y01, plan)
        try:
            self._fit_bags(X, y01, rng, plan)
        finally:
            del self._init
        self.forests_ = [Forest.from_booster(b, b.best_iteration or None, self.columns_, X.shape[1])
                         for b in self.estimators_]
        self.sort_columns_ = _first_split_columns(self.forests_)
        return self

    def predict_proba(self, X: _Matrix, init_score: np.ndarray | None = None) -> np.ndarray:
        """Average of the bags' probabilities of class ``classes_[1]``.

        ``init_score`` is required when the bags were fitted with one (the
        same log-odds for these rows), and refused otherwise.
        """
        check_is_fitted(self, "estimators_")
        X = validate_data(
            self, X, accept_sparse="csr", ensure_all_finite="allow-nan", reset=False,
            dtype=(np.float32, np.float64),
        )
        if (init_score is not None) != getattr(self, "boosts_from_init_", False):
            raise ValueError("pass init_score to predict_proba exactly when fit had one")
        order = self._row_order(X)
        if order is not None:
            X = X[order]
            init_score = None if init_score is None else np.asarray(init_score)[order]
        p = np.zeros(X.shape[0])
        for bag, beta in enumerate(self._betas()):
            if init_score is not None:  # the bag's margin plus the init is the log-odds at full balance
                p += expit(self._bag_predict(bag, X, raw_score=True) + np.asarray(init_score, dtype=np.float64))
                continue
            p += _undo_undersampling(self._bag_predict(bag, X), beta)
        p /= len(self.estimators_)
        p = _unsort(p, order)
        return np.column_stack([1.0 - p, p])

    def _row_order(self, X: _Matrix) -> np.ndarray | None:
        """An order of the rows of a dense ``X`` that groups rows taking the same first branches
        (by :attr:`sort_columns_`), or ``None`` to keep them as they are.

        The compiled forests walk the trees row after row, and rows that take
        the same branches as the row before keep the CPU's branch predictions
        right: on 400k held-out rows at full scale, rows sorted by their aid
        were scored in 0.8 of the time of the file's order (README, "Train
        stage profile"). Every row's score is its own, so the order changes
        nothing but the time.
        """
        columns = getattr(self, "sort_columns_", None)
        if not columns or sp.issparse(X) or X.shape[0] < _SORT_ROWS_FROM:
            return None
        return np.lexsort(tuple(X[:, c] for c in reversed(columns)))

    def _bag_predict(self, bag: int, X: _Matrix, raw_score: bool = False) -> np.ndarray:
        """Bag ``bag``'s probabilities (or margins) up to its best iteration: the compiled forest for
        dense input (models saved before it existed have none), else LightGBM's predictor."""
        forests = getattr(self, "forests_", None)
        if forests is not None and not sp.issparse(X):
            return forests[bag].predict(X, raw_score=raw_score)
        booster = self.estimators_[bag]
        return booster.predict(self._subset(X), num_iteration=booster.best_iteration or None, raw_score=raw_score)

    def plan(self, y: np.ndarray) -> BagPlan | None:
        """The bags :meth:`fit` would train on labels ``y``: drawn from ``y`` and
        ``random_state`` alone. ``None`` for a model whose later bags depend on
        the earlier ones (BalanceCascade)."""
        return self._draw_plan(binary_labels(self, y), np.random.default_rng(self.random_state))

    # -- column selection ----------------------------------------------------
    def _select_columns(self, X: _Matrix, y: np.ndarray, plan: BagPlan | None) -> None:
        """Set :attr:`columns_` (and :attr:`pilot_gain_`) from a pilot LightGBM, or keep every column.

        The pilot's rows are a sample of the first bag (the plan's, or for a
        model that draws as it trains, the positives and ``ratio`` times as
        many negatives), drawn from a stream of its own so that the bags are
        the same with or without selection, and the same for a plan
        restricted to its rows (:meth:`BagPlan.restrict`).
        """
        n_cols = X.shape[1]
        self.columns_ = np.arange(n_cols)
        self.pilot_gain_ = None
        if self.gain_share >= 1.0 or n_cols < 2:
            return
        rng = np.random.default_rng([self.random_state, 1])
        if plan is not None:
            first = plan.bags[0]
        else:
            pos, neg = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
            n_neg = min(len(neg), max(1, int(math.ceil(self.ratio * len(pos)))))
            first = np.sort(np.r_[pos, rng.choice(neg, n_neg, replace=False)])
        rows = np.sort(rng.choice(first, self.selection_rows, replace=False)) if len(first) > self.selection_rows \
            else first
        params = self._params(self.random_state)
        cat = self.categorical_feature if self.categorical_feature is not None else "auto"
        pilot = lgb.train(params, lgb.Dataset(X[rows], y[rows], categorical_feature=cat, params=params),
                          num_boost_round=self.selection_rounds)
        gain = pilot.feature_importance("gain").astype(np.float64)
        if not gain.sum() > 0:  # no split at all: nothing to rank the columns by
            logger.debug("the pilot made no split: every column kept")
            return
        self.pilot_gain_ = gain / gain.sum()
        self.columns_ = gain_columns(self.pilot_gain_, self.gain_share)
        logger.debug("pilot on %s rows: %d of %d columns hold %.3f of its gain", f"{len(rows):,}",
                     len(self.columns_), n_cols, self.gain_share)

    def _subset(self, X: _Matrix, rows: np.ndarray | None = None) -> _Matrix:
        """``X``'s ``rows`` (all by default) in the selected columns, one copy."""
        columns = getattr(self, "columns_", None)
        if columns is None or len(columns) == X.shape[1]:
            return X if rows is None else X[rows]
        if rows is None:
            return X[:, columns]
        return X[rows][:, columns] if sp.issparse(X) else X[np.ix_(rows, columns)]

    def _bag_categorical(self) -> list[int] | str:
        """The categorical columns among the selected ones, as positions in them (LightGBM's ``auto`` if unset)."""
        if self.categorical_feature is None:
            return "auto"
        return np.flatnonzero(np.isin(self.columns_, self.categorical_feature)).tolist()

    # -- for subclasses -----------------------------------------------------
    def _fit_bags(self, X: _Matrix, y: np.ndarray, rng: np.random.Generator, plan: BagPlan | None) -> None:
        """Train the bags of ``plan`` (drawn by :meth:`_draw_plan` unless given)."""
        if plan is None:
            raise ValueError(f"{type(self).__name__} draws its bags as it trains: it takes no plan")
        self.negative_share_ = list(plan.negative_share)
        for b, (bag, stop) in enumerate(zip(plan.bags, plan.stops, strict=True)):
            self.estimators_.append(self._train_bag(X, y, bag, stop, self.random_state + b, plan.negative_share[b]))

    def _draw_plan(self, y: np.ndarray, rng: np.random.Generator) -> BagPlan | None:
        """The bags on 0/1 labels ``y``, drawn with ``rng``."""
        raise NotImplementedError

    def _betas(self) -> list[float]:
        """Per bag, the share of negatives it kept (1.0 = no correction)."""
        return [1.0] * len(self.estimators_)

    def _params(self, seed: int) -> dict[str, Any]:
        return {
            "objective": "binary",
            "metric": "binary_logloss",
            **merge_params(DEFAULT_PARAMS, self.params or {}),
            "seed": seed,
            "deterministic": True,
            "num_threads": self.n_jobs or 0,
            "device_type": self.device_,
            "verbose": -1,
        }

    def _train_bag(
        self, X: _Matrix, y: np.ndarray, bag: np.ndarray, stop: np.ndarray | None, seed: int, beta: float = 1.0
    ) -> lgb.Booster:
        """One LightGBM on rows ``bag``, early-stopped on rows ``stop`` (not in the bag).

        ``beta``: the share of negatives the bag kept (shifts an init score).
        """
        params = self._params(seed)
        init = getattr(self, "_init", None)

        def offset(rows: np.ndarray) -> np.ndarray | None:
            return None if init is None else init[rows] - math.log(beta)

        dtrain = lgb.Dataset(self._subset(X, bag), y[bag], categorical_feature=self._bag_categorical(),
                             params=params, free_raw_data=True, init_score=offset(bag))
        use_stop = stop is not None and self.early_stopping_rounds > 0 and 0 < y[stop].sum() < len(stop)
        valid = [lgb.Dataset(self._subset(X, stop), y[stop], reference=dtrain, init_score=offset(stop))] \
            if use_stop else []
        callbacks = [lgb.early_stopping(self.early_stopping_rounds, verbose=False)] if use_stop else []
        feval = None
        if use_stop and self.group_column is not None:
            groups = _column(X[stop], self.group_column)
            params["metric"] = "None"
            feval = _group_auc_metric(groups)
        return lgb.train(
            params, dtrain, num_boost_round=self.n_estimators, valid_sets=valid, callbacks=callbacks, feval=feval
        )

    def _split_positives(
        self, pos: np.ndarray, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        """Positives to train on and positives held out for early stopping."""
        n_hold = int(round(self.validation_fraction * len(pos))) if self.early_stopping_rounds > 0 else 0
        if n_hold < 1 or n_hold >= len(pos):
            return pos, pos[:0]
        perm = rng.permutation(pos)
        return np.sort(perm[n_hold:]), np.sort(perm[:n_hold])

    def _draw_bag(
        self, pos: np.ndarray, negatives: np.ndarray, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray | None, int]:
        """A bag: the positives (less a held-out share) and ``ratio`` times as many
        of ``negatives``; early-stopping rows: the held-out positives and negatives
        not in the bag. Returns (bag rows, stop rows, negatives drawn)."""
        fit_pos, hold_pos = self._split_positives(pos, rng)
        n_neg = min(len(negatives), max(1, int(math.ceil(self.ratio * len(fit_pos)))))
        chosen = rng.choice(len(negatives), n_neg, replace=False)
        spare = np.ones(len(negatives), dtype=bool)
        spare[chosen] = False
        bag = np.sort(np.r_[fit_pos, negatives[chosen]])
        return bag, _stop_rows(hold_pos, negatives[spare], self.ratio, rng), n_neg


#: rows from which predictions sort them first (:meth:`BaseLGBMBagging._row_order`)
_SORT_ROWS_FROM = 4096


def _first_split_columns(forests: list[Forest], k: int = 2) -> list[int]:
    """The ``k`` input columns most split on at the roots (weight 2) and their children (weight 1)."""
    votes: dict[int, int] = {}
    for forest in forests:
        for root in forest.roots:
            if root < 0:
                continue
            votes[int(forest.feature[root])] = votes.get(int(forest.feature[root]), 0) + 2
            for child in (forest.left[root], forest.right[root]):
                if child >= 0:
                    votes[int(forest.feature[child])] = votes.get(int(forest.feature[child]), 0) + 1
    return [c for c, _ in sorted(votes.items(), key=lambda cv: (-cv[1], cv[0]))[:k]]


def _unsort(values: np.ndarray, order: np.ndarray | None) -> np.ndarray:
    """``values`` computed on rows ``X[order]``, back in the rows' own order."""
    if order is None:
        return values
    out = np.empty_like(values)
    out[order] = values
    return out


def gain_columns(gain: np.ndarray, share: float) -> np.ndarray:
    """The fewest columns whose ``gain`` adds up to at least ``share`` of the total, in increasing order.

    Columns are taken by decreasing gain (ties: the lower index first); a
    column without gain is never needed unless ``share`` is 1, which keeps
    every column.
    """
    gain = np.asarray(gain, dtype=np.float64)
    if share >= 1.0:
        return np.arange(len(gain))
    order = np.argsort(-gain, kind="stable")
    total = gain.sum()
    if not total > 0:
        return np.arange(len(gain))
    k = int(np.searchsorted(np.cumsum(gain[order]), share * total, side="left")) + 1
    return np.sort(order[: min(k, len(gain))])


def validate_binary(est: BaseEstimator, X: _Matrix, y: np.ndarray) -> tuple[_Matrix, np.ndarray]:
    """Validate ``X`` (csr or float array, NaN allowed) and a binary ``y``; set ``est.classes_``.

    Returns ``X`` and ``y`` as int8 0/1 (1 = ``classes_[1]``).
    """
    X, y = validate_data(est, X, y, accept_sparse="csr", ensure_all_finite="allow-nan", dtype=(np.float32, np.float64))
    check_classification_targets(y)
    y_type = type_of_target(y)
    if y_type != "binary":
        raise ValueError(f"Only binary classification is supported. The type of the target is {y_type}.")
    est.classes_, y01 = np.unique(y, return_inverse=True)
    if len(est.classes_) < 2:
        raise ValueError(f"{type(est).__name__} needs samples of 2 classes; got one class")
    return X, y01.astype(np.int8)


def _column(X: _Matrix, j: int) -> np.ndarray:
    col = X[:, j]
    return np.asarray(col.toarray()).ravel() if sp.issparse(col) else np.asarray(col).ravel()


def _group_auc_metric(groups: np.ndarray):  # noqa: ANN202
    """LightGBM ``feval``: mean per-group AUC (higher is better)."""

    def metric(preds: np.ndarray, data: lgb.Dataset) -> tuple[str, float, bool]:
        res = per_aid_auc(data.get_label(), preds, groups)
        return "mean_group_auc", (res.mean if np.isfinite(res.mean) else 0.5), True

    return metric


def _undo_undersampling(p: np.ndarray, beta: float) -> np.ndarray:
    """Probability on all rows from one trained on a ``beta`` share of the negatives.

    Undersampling multiplies the odds by ``1 / beta``; this divides them back.
    """
    if beta >= 1.0:
        return p
    return beta * p / (beta * p + 1.0 - p)


def _stop_rows(
    hold_pos: np.ndarray, spare_neg: np.ndarray, ratio: float, rng: np.random.Generator
) -> np.ndarray | None:
    if not len(hold_pos) or not len(spare_neg):
        return None
    n_neg = min(len(spare_neg), max(1, int(math.ceil(ratio * len(hold_pos)))))
    return np.sort(np.r_[hold_pos, rng.choice(spare_neg, n_neg, replace=False)])


class ReferenceLGBM(BaseLGBMBagging):
    """One LightGBM on all training rows, no rebalancing (``n_bags`` and ``ratio`` unused).

    Early stopping uses ``validation_fraction`` of the rows of each class.
    """

    def _draw_plan(self, y: np.ndarray, rng: np.random.Generator) -> BagPlan:
        pos, neg = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
        fit_pos, hold_pos = self._split_positives(pos, rng)
        fit_neg, hold_neg = self._split_positives(neg, rng)
        bag = np.sort(np.r_[fit_pos, fit_neg])
        stop = np.sort(np.r_[hold_pos, hold_neg]) if len(hold_pos) and len(hold_neg) else None
        return BagPlan(len(y), (bag,), (stop,), (1.0,))


class EasyEnsembleLGBM(BaseLGBMBagging):
    """EasyEnsemble: every bag has all positives and an independent draw of negatives.

    Each bag trains on the positives (less those held out for early stopping)
    and ``ratio`` times as many negatives drawn without replacement; its
    probabilities are mapped back to the full class balance before averaging.

    Attributes
    ----------
    negative_share_ : list of float
        Share of the negatives each bag trained on.
    """

    def _draw_plan(self, y: np.ndarray, rng: np.random.Generator) -> BagPlan:
        pos, neg = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
        bags, stops, shares = [], [], []
        for _ in range(self.n_bags):
            bag, stop, n_neg = self._draw_bag(pos, neg, rng)
            bags.append(bag)
            stops.append(stop)
            shares.append(n_neg / len(neg))
        return BagPlan(len(y), tuple(bags), tuple(stops), tuple(shares))

    def _betas(self) -> list[float]:
        return list(self.negative_share_)


def cascade_keep(scores: np.ndarray, keep_rate: float) -> np.ndarray:
    """Positions of the negatives a cascade stage keeps: the ``ceil(keep_rate * n)``
    with the highest ensemble scores (ties keep the earlier position)."""
    k = int(math.ceil(keep_rate * len(scores)))
    order = np.argsort(-scores, kind="stable")
    return np.sort(order[:k])


class BalanceCascadeLGBM(BaseLGBMBagging):
    """BalanceCascade (Liu, Wu & Zhou, 2009), with LightGBM bags.

    Training rule: start with every negative. Stage ``t`` trains a bag on the
    positives and ``ratio`` times as many negatives drawn from those still in
    play. The ensemble of stages ``1..t`` (mean probability) then scores the
    negatives in play; the ``keep_rate`` share it scores highest (its false
    positives at the threshold ``threshold_t`` that keeps that false-positive
    rate) stay, the rest, already scored below the threshold, are dropped.
    ``keep_rate = (n_bag_neg / n_neg) ** (1 / (n_bags - 1))``, so the last stage
    draws from about as many negatives as it uses.

    Prediction rule, a cascade: stage ``t`` has only seen rows that passed the
    stages before it (it never saw an easy negative, so on the rows that
    stage 1 rejects it has no say). A row rejected at stage ``t`` (its ensemble
    score ``e_t`` below ``threshold_t``) scores ``(t - 1 + e_t) / n_bags``; a row
    that passes every stage scores ``(n_bags - 1 + e_T) / n_bags``. Deeper rows
    rank higher; within a depth, the ensemble score orders them. The score is
    then rescaled monotonically so that 0.5 means "passes every stage with
    ``e_T = 0.5``", the decision point of :meth:`predict`. (Averaging
    every stage over every row instead ranked *below chance* on noisy data:
    0.36 mean per-aid AUC on ``medium``, fold 0.) Scores rank, they are not
    calibrated probabilities.

    Attributes
    ----------
    keep_rate_ : float
        Share of the in-play negatives each stage keeps.
    thresholds_ : list of float
        Ensemble score a row needs to pass each stage but the last.
    negatives_per_stage_ : list of int
        Negatives in play when each stage drew its bag.
    """

    def _draw_plan(self, y: np.ndarray, rng: np.random.Generator) -> None:
        return None  # each stage draws from the negatives the earlier stages kept

    def _fit_bags(self, X: _Matrix, y: np.ndarray, rng: np.random.Generator, plan: BagPlan | None) -> None:
        if plan is not None:
            raise ValueError("BalanceCascadeLGBM draws its bags as it trains: it takes no plan")
        pos, neg = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
        n_bag_neg = min(len(neg), max(1, int(math.ceil(self.ratio * len(pos)))))
        self.keep_rate_ = (n_bag_neg / len(neg)) ** (1.0 / (self.n_bags - 1)) if self.n_bags > 1 else 1.0
        in_play = neg
        score_sum = np.zeros(len(neg))  # ensemble score of every negative, by position in `neg`
        alive = np.arange(len(neg))  # positions (in `neg`) of the negatives in play
        self.negatives_per_stage_ = []
        self.thresholds_ = []
        for b in range(self.n_bags):
            self.negatives_per_stage_.append(len(in_play))
            bag, stop, _ = self._draw_bag(pos, in_play, rng)
            booster = self._train_bag(X, y, bag, stop, self.random_state + b)
            self.estimators_.append(booster)
            if b == self.n_bags - 1:
                break
            score_sum[alive] += booster.predict(self._subset(X, in_play), num_iteration=booster.best_iteration or None)
            keep = cascade_keep(score_sum[alive], self.keep_rate_)
            self.thresholds_.append(float(score_sum[alive][keep].min() / (b + 1)))
            alive, in_play = alive[keep], in_play[keep]
        logger.debug("cascade negatives per stage: %s", self.negatives_per_stage_)

    def predict_proba(self, X: _Matrix) -> np.ndarray:
        """Cascade scores (see the class docstring), as a two-column array."""
        check_is_fitted(self, "estimators_")
        X = validate_data(
            self, X, accept_sparse="csr", ensure_all_finite="allow-nan", reset=False,
            dtype=(np.float32, np.float64),
        )
        order = self._row_order(X)
        if order is not None:
            X = X[order]
        n_stages = len(self.estimators_)
        score = np.zeros(X.shape[0])
        running = np.zeros(X.shape[0])
        alive = np.ones(X.shape[0], dtype=bool)
        for t in range(n_stages):
            running += self._bag_predict(t, X)
            e = running / (t + 1)
            if t < n_stages - 1:
                rejected = alive & (e < self.thresholds_[t])
            else:
                rejected = alive
            score[rejected] = (t + e[rejected]) / n_stages
            alive &= ~rejected
        # monotone rescaling that puts "passes every stage with e_T = 0.5" at 0.5,
        # so predict (> 0.5) agrees with the argmax of these columns
        s0 = (n_stages - 0.5) / n_stages
        score = _unsort(np.where(score <= s0, 0.5 * score / s0, 0.5 + 0.5 * (score - s0) / (1.0 - s0)), order)
        return np.column_stack([1.0 - score, score])
