"""The train stage's design: every (model, task)'s matrices, built from row ranges of the feature files.

A *task* is what one model is trained for: a cross-validation :class:`Fold`
(train on every other fold, predict the fold's own rows and the test rows)
or the :class:`Refit` on all training rows. A task's rows fall into three
:class:`Part` s: the rows it fits on, its held-out rows and the test rows.

:class:`FoldDesign` owns what every task shares: the labels, the fold file,
the column layout and one fitted :class:`features.CTREncoder` (one counting
pass for all folds). Fold ``k``'s training rows get conversion rates without
fold ``k`` and without their own fold; its held-out rows and the test rows
without fold ``k``; for the refit, the training rows without their own fold
and the test rows from all rows. The design never holds the feature sets:
it reads row ranges of the files (:class:`pipeline.io.CSRRowReader`,
:func:`pipeline.io.npy_rows`), holds only the training matrix of the current
task (dense sets: one float32 array filled in place) and builds held-out and
test rows ``chunk_rows`` at a time. The blocks become model inputs through
:meth:`features.DesignLayout.assemble`, the one assembly the saved scorer
uses too.

The train stage builds one design and passes it to each task it runs; a Dask
worker builds its own from the same files (:mod:`pipeline.cluster`).
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator

from core import LookalikeError
from features import CTREncoder, CTRSpec, DesignLayout, FeatureSet
from pipeline.files import read_folds, read_test_pairs, read_train_pairs
from pipeline.io import CSRRowReader, npy_rows, npy_take

__all__ = [
    "Fold", "FoldDesign", "Part", "Refit", "Task", "TrainInputs", "column_group", "column_groups", "feature_names",
    "nffm_fields", "read_layout",
]

logger = logging.getLogger(__name__)

#: a chunk whose wanted rows are fewer than one in this many reads them alone (``CSRRowReader.take``):
#: the permutation importance's sample (0.6% of the rows) read every chunk five times, 61 s at full scale
_FEW_ROWS = 16


@dataclass(frozen=True)
class Fold:
    """Cross-validation fold ``k``: fit on the other folds, predict fold ``k`` and the test rows."""

    k: int

    @property
    def excluded(self) -> int:
        """The fold whose labels the task never sees."""
        return self.k

    def __str__(self) -> str:
        return f"fold {self.k}"


@dataclass(frozen=True)
class Refit:
    """Fit on all training rows; predict the test rows."""

    @property
    def excluded(self) -> int:
        """No fold is left out (``-1``)."""
        return -1

    def __str__(self) -> str:
        return "refit"


Task = Fold | Refit


class Part(Enum):
    """The rows of a task: those it fits on, its held-out fold, the test rows."""

    FIT = "fit"
    HELD = "held"
    TEST = "test"


@dataclass(frozen=True)
class TrainInputs:
    """The files the train stage reads (all a Dask worker needs besides the settings)."""

    features: Path
    pairs: Path
    folds: Path

    @property
    def columns(self) -> Path:
        """The feature sets' description (``columns.json``)."""
        return self.features / "columns.json"

    @property
    def featurizer(self) -> Path:
        """The features stage's fitted featurizer (for the saved scorer)."""
        return self.features / "featurizer.joblib"


def read_layout(columns_path: Path) -> tuple[DesignLayout, CTRSpec]:
    """The column layout and the CTR spec described by the features stage's ``columns.json``."""
    try:
        columns = json.loads(Path(columns_path).read_text())
        ctr = CTRSpec.from_dict(columns["ctr"])
        sparse, dense = columns["sparse"], columns["dense"]
        layout = DesignLayout(
            n_raw=int(columns["sparse_raw"]), n_dense=len(dense), n_ctr=ctr.n_out,
            dense_categorical=tuple(dense.index(c) for c in columns["categorical"]["dense"]),
        )
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise LookalikeError(f"{columns_path}: not a feature description of this version ({exc}); "
                             "re-run `make features`") from None
    if sparse[0] != "aid_idx" or dense[0] != "aid_idx":
        raise LookalikeError(f"{columns_path}: feature sets must start with aid_idx; re-run `make features`")
    return layout, ctr


def feature_names(columns_path: Path, feature_set: FeatureSet) -> list[str]:
    """The names of ``feature_set``'s model columns, in :meth:`features.DesignLayout.assemble`'s order."""
    layout, ctr = read_layout(columns_path)
    columns = json.loads(Path(columns_path).read_text())
    sparse, dense = list(columns["sparse"]), list(columns["dense"])
    if feature_set is FeatureSet.RAW:
        return sparse[: layout.n_raw]
    if feature_set is FeatureSet.SPARSE:
        return sparse
    return dense + ctr.names() if feature_set is FeatureSet.DENSE else dense + sparse + ctr.names()


def column_groups(columns_path: Path, feature_set: FeatureSet) -> tuple[str, ...]:
    """:func:`column_group` of each of ``feature_set``'s model columns, in order."""
    _, ctr = read_layout(columns_path)
    return tuple(column_group(n, tuple(ctr.groups)) for n in feature_names(columns_path, feature_set))


def column_group(name: str, ctr_groups: tuple[str, ...] = ("aid", "advertiser", "productType")) -> str:
    """The feature group of a model column, by the features stage's naming.

    ``aid`` (the aid's index), ``ad`` (the ad's one-hot attributes), a user
    field (its tokens, value and list length), ``aid x <field>`` (the aid
    crosses and their counts), ``CTR <field>`` (every conversion-rate
    statistic of the field, all ``ctr_groups``), ``history`` (the user's
    earlier labels), ``counts`` (rows per user).
    """
    if name == "aid_idx":
        return "aid"
    if name.startswith("ad:"):
        return "ad"
    if name.startswith("ctr_"):
        rest = name[len("ctr_"):]
        group = next((g for g in sorted(ctr_groups, key=len, reverse=True) if rest.startswith(g + "_")), None)
        if group is not None:
            return "CTR " + rest[len(group) + 1 :].rsplit("_", 1)[0]
    if name.startswith("hist_"):
        return "history"
    if name == "count_uid":
        return "counts"
    base = name.split("=", 1)[0]
    for prefix in ("count_aid_x_", "aid_x_"):
        if base.startswith(prefix):
            return "aid x " + base[len(prefix):]
    if base.startswith("aid") and "_x_" in base and base[3 : base.index("_x_")].isdigit():
        return "aid x " + base[base.index("_x_") + 3 :]
    return base[len("len_"):] if base.startswith("len_") else base


def nffm_fields(columns_path: Path, feature_set: FeatureSet) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The :class:`ensemble.NFFMClassifier` role of each of ``feature_set``'s columns, and the ad-side fields.

    By the features stage's naming: ``aid_idx`` of the sparse set is the id
    field ``aid``; ``ad:<attribute>_<value>`` a token of field
    ``ad:<attribute>`` and ``ad:creativeSize_num`` a number; a user token
    ``<field>=<value>`` a token of ``<field>``; the aid crosses are unused
    (the interaction layer crosses the fields itself). Of the dense set and
    the statistics (``full``), the category-id columns are unused and every
    other column is a number.
    """
    layout, _ = read_layout(columns_path)
    columns = json.loads(Path(columns_path).read_text())
    sparse = list(columns["sparse"])

    def sparse_role(k: int, name: str) -> str:
        if name == "aid_idx":
            return "#aid"
        if name == "ad:creativeSize_num":
            return "+"
        if name.startswith("ad:"):
            return name.rsplit("_", 1)[0]
        return name.split("=", 1)[0] if k < layout.n_raw and "=" in name else "-"

    roles = [sparse_role(k, n) for k, n in enumerate(sparse)]
    if feature_set is FeatureSet.RAW:
        roles = roles[: layout.n_raw]
    elif feature_set is FeatureSet.FULL:
        categorical = set(columns["categorical"]["dense"])
        roles = ["-" if n in categorical else "+" for n in columns["dense"]] + roles + ["+"] * layout.n_ctr
    else:
        raise ValueError(f"the nffm model reads the raw or full set, not {feature_set}")
    ad = tuple(sorted({r.lstrip("#") for r in roles if r in ("#aid",) or r.startswith("ad:")}))
    return tuple(roles), ad


@dataclass(frozen=True)
class _Source:
    """The feature files of the training or the test pairs."""

    sparse: CSRRowReader
    dense: Path
    aid_idx: np.ndarray

    @classmethod
    def open(cls, features: Path, part: str, aid_idx: np.ndarray) -> _Source:
        sparse = CSRRowReader(features / f"sparse_{part}.npz")
        if sparse.shape[0] != len(aid_idx):
            raise LookalikeError(f"{sparse.path} has {sparse.shape[0]:,} rows for {len(aid_idx):,} {part} pairs; "
                                 "re-run `make features`")
        return cls(sparse, features / f"dense_{part}.npy", aid_idx)


class FoldDesign:
    """Design matrices of every task, for the feature sets of the configured models.

    Parameters
    ----------
    inputs : TrainInputs
    feature_sets : iterable of FeatureSet
        The sets the models need (the CTR counts are made only for sets that use them).
    chunk_rows : int
        Rows read and assembled at a time.

    Attributes
    ----------
    y : ndarray of int8
        Training labels.
    folds : ndarray
        The fold of every training row.
    n_folds : int
    layout : DesignLayout
    encoder : CTREncoder or None
        Fitted on all training rows with their folds (``None`` when no set uses it).
    """

    def __init__(self, inputs: TrainInputs, feature_sets: set[FeatureSet], chunk_rows: int = 500_000) -> None:
        self.chunk_rows = chunk_rows
        self.inputs = inputs
        self.feature_sets = frozenset(feature_sets)
        train, test = read_train_pairs(inputs.pairs), read_test_pairs(inputs.pairs)
        self.y = train.label.astype(np.int8)
        self.folds = read_folds(inputs.folds, len(train))
        self.n_folds = int(self.folds.max()) + 1
        self.layout, spec = read_layout(inputs.columns)
        self._train = _Source.open(inputs.features, "train", train.aid_idx)
        self._test = _Source.open(inputs.features, "test", test.aid_idx)
        self.encoder: CTREncoder | None = None
        if any(fs.uses_ctr for fs in self.feature_sets):
            self.encoder = CTREncoder(spec, chunk_rows).fit(
                self._train.sparse, self.y, aid_idx=train.aid_idx, folds=self.folds
            )
        self._fit_cache: tuple[tuple, np.ndarray | sp.csr_matrix] | None = None

    def fit_rows(self, task: Task) -> np.ndarray:
        """Whether each training row is one ``task`` fits on."""
        return self.folds != task.excluded

    def labels(self, task: Task) -> np.ndarray:
        """Labels of the rows ``task`` fits on."""
        return self.y[self.fit_rows(task)]

    def chunks(
        self, feature_set: FeatureSet, task: Task, part: Part, into: np.ndarray | None = None,
        rows: np.ndarray | None = None, ctr_columns: np.ndarray | None = None,
    ) -> Iterator[np.ndarray | sp.csr_matrix]:
        """The design of ``part``'s rows of ``task``, chunk by chunk, in row order.

        For the dense set, ``into`` (rows of ``part`` x columns) is filled in
        place and the chunks yielded are its row slices. ``rows`` (``FIT`` and
        ``HELD``): sorted positions among the part's rows, to build only those.
        ``ctr_columns``: the conversion-rate columns a model reads (others
        are left NaN: see :meth:`features.CTREncoder.transform`); all by default.
        """
        source = self._test if part is Part.TEST else self._train
        n, at = source.sparse.shape[0], 0
        wanted = None
        if rows is not None:
            if part is Part.TEST:
                raise ValueError("rows select among the fit or held-out rows only")
            in_part = self.fit_rows(task) if part is Part.FIT else ~self.fit_rows(task)
            wanted = np.zeros(n, dtype=bool)
            wanted[np.flatnonzero(in_part)[rows]] = True
        for start in range(0, n, self.chunk_rows):
            stop = min(start + self.chunk_rows, n)
            keep = np.arange(start, stop)
            if wanted is not None:
                keep = keep[wanted[start:stop]]
            elif part is not Part.TEST:
                held = self.folds[start:stop] == task.excluded
                keep = keep[held if part is Part.HELD else ~held]
            if not len(keep):
                continue
            few = len(keep) * _FEW_ROWS < stop - start  # read those rows alone, not the chunk's range
            local = np.arange(len(keep)) if few else keep - start
            tokens = source.sparse.take(keep, data=feature_set.uses_token_values) if few else \
                source.sparse.rows(start, stop, data=feature_set.uses_token_values)
            dense = encode_ctr = out = None
            if feature_set.uses_ctr:
                dense = npy_take(source.dense, keep) if few else npy_rows(source.dense, start, stop)[local]
                also = self.folds[keep] if part is Part.FIT else -1  # training rows: without their own fold too
                encode_ctr = functools.partial(self.encoder.transform, tokens, source.aid_idx[keep], task.excluded,
                                               also, local, columns=ctr_columns)
            if into is not None and feature_set is FeatureSet.DENSE:
                out = into[at : at + len(keep)]
            at += len(keep)
            sparse = tokens[local] if feature_set.uses_token_values else tokens  # the dense set reads no values
            yield self.layout.assemble(feature_set, sparse, dense, encode_ctr, out=out)

    def matrix(
        self, feature_set: FeatureSet, task: Task, rows: np.ndarray | None = None
    ) -> np.ndarray | sp.csr_matrix:
        """Design of the rows ``task`` fits on, or of ``rows`` of them (sorted positions among
        them); kept for the next model of the same task, set and rows."""
        key = (feature_set, task, None if rows is None else rows.tobytes())
        if self._fit_cache is not None and self._fit_cache[0] == key:
            return self._fit_cache[1]
        self._fit_cache = None
        if feature_set is FeatureSet.DENSE:  # filled in place: no second copy of the rows
            n = int(self.fit_rows(task).sum()) if rows is None else len(rows)
            X = np.empty((n, self.layout.n_dense + self.layout.n_ctr), np.float32)
            for _ in self.chunks(feature_set, task, Part.FIT, into=X, rows=rows):
                pass
        else:
            X = sp.vstack(list(self.chunks(feature_set, task, Part.FIT, rows=rows)), format="csr")
        self._fit_cache = (key, X)
        return X

    def release(self) -> None:
        """Drop the cached training matrix (the counts stay)."""
        self._fit_cache = None

    def predict(self, estimator: BaseEstimator, feature_set: FeatureSet, task: Task, part: Part) -> np.ndarray:
        """Probabilities of ``part``'s rows (``HELD`` or ``TEST``) of ``task``, chunk by chunk.

        Only the conversion-rate columns the estimator reads are computed
        (its ``columns_``, the column selection of the bagged LightGBMs).
        """
        if part is Part.FIT:
            raise ValueError("predict held-out or test rows, not the rows a model was fitted on")
        if part is Part.HELD and isinstance(task, Refit):
            return np.empty(0)
        ctr = self.layout.ctr_columns(getattr(estimator, "columns_", None), getattr(estimator, "n_features_in_", 0)) \
            if feature_set.uses_ctr else None
        return np.concatenate([estimator.predict_proba(X)[:, 1]
                               for X in self.chunks(feature_set, task, part, ctr_columns=ctr)])
