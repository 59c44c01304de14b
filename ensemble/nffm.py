"""A field-aware neural network (NFFM) for sparse (aid, user) designs, beside the LightGBM bags.

The model family of the public top solutions of the Tencent lookalike
competitions: each token has one embedding *per other field*, and each field
pair ``(i, j)`` interacts as ``v(i -> j) * v(j -> i)`` (field-aware
factorisation, Juan et al. 2016), fed into an MLP (Yang et al.'s NFFM, the
2017 champion; the "operation-aware" network of 2019 describes the same
layer). Our own module (:mod:`ensemble._nffm_net`, about 80 lines of
PyTorch): DeepCTR-Torch and FuxiCTR expect one id per field in a dense
tensor, so the multi-valued interest / kw / topic fields and the CSR rows of
our feature sets would need padding and an input adapter bigger than the
layer itself; ``torch.nn.EmbeddingBag`` pools the CSR rows as they are.

How the columns of ``X`` are read is the ``fields`` parameter, one role per
column:

``"<field>"``
    a token of ``<field>`` (its value weights it; a field's tokens in a row
    are pooled by their mean);
``"#<field>"``
    the column's value is an id of ``<field>`` (a non-negative integer, as
    the ``aid_idx`` column); ids above those seen in ``fit`` share one bucket;
``"+"``
    a numeric input (``sign(x) log1p|x|``, standardised on the training rows;
    missing values 0) to the MLP and the linear term;
``"-"``
    not used.

``fields=None`` makes every column a numeric input (an MLP without
embeddings; the scikit-learn contract checks run so).

PyTorch is an optional extra; this module imports it only in ``fit`` and
``predict_proba``. A fitted model keeps each network's weights as a
``state_dict`` of NumPy arrays (:attr:`NFFMClassifier.weights_`), so it pickles without torch
objects and predicts the same on any machine with PyTorch.
"""

from __future__ import annotations

import contextlib
import copy
import importlib.util
import logging
import math
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator
from sklearn.metrics import roc_auc_score
from sklearn.utils.validation import check_is_fitted, validate_data
from tqdm.auto import tqdm

from core import distinct
from ensemble._bagging import (
    BagPlan, BinaryClassifierMixin, _column, _undo_undersampling, binary_labels, validate_binary,
)
from ensemble.metrics import per_aid_auc

if TYPE_CHECKING:
    import torch

__all__ = ["INTERACTIONS", "NFFMClassifier", "resolve_torch_device", "torch_available"]

#: rows encoded (and scaled) at a time
_BLOCK_ROWS = 65_536

logger = logging.getLogger(__name__)

#: which field pairs interact: every pair, user fields with ad fields only, or none (linear + MLP)
INTERACTIONS = ("all", "user_ad", "none")
INSTALL_HINT = "pip install 'lookalike[nn]'"


def torch_available() -> bool:
    """Whether PyTorch can be imported here (without importing it)."""
    return importlib.util.find_spec("torch") is not None


def _torch() -> Any:  # noqa: ANN401
    if not torch_available():
        raise ImportError(f"the nffm model needs PyTorch: {INSTALL_HINT}")
    import torch

    return torch


def resolve_torch_device(requested: str) -> str:
    """The PyTorch device for the pipeline's ``device`` setting.

    ``cpu``: the CPU. ``auto``: CUDA when PyTorch sees a GPU, else the CPU
    (logged). ``gpu`` or ``cuda``: CUDA, and an error when there is none.
    """
    torch = _torch()
    if requested == "cpu":
        return "cpu"
    if requested not in ("auto", "gpu", "cuda"):
        raise ValueError(f"device must be one of auto, cpu, gpu, cuda; got {requested!r}")
    if torch.cuda.is_available():
        return "cuda"
    if requested == "auto":
        logger.info("device auto: PyTorch sees no CUDA GPU; the nffm model trains on the CPU")
        return "cpu"
    raise ValueError(f"device {requested!r}: PyTorch sees no CUDA GPU here; use device = \"auto\" or \"cpu\"")


@contextlib.contextmanager
def _threads(torch: Any, n: int | None) -> Iterator[None]:  # noqa: ANN401
    """PyTorch's intra-op threads set to ``n`` for the block (``None``: unchanged)."""
    before = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class NFFMClassifier(BinaryClassifierMixin, BaseEstimator):
    """Field-aware neural network on sparse token rows (NFFM), trained by minibatch Adam.

    Parameters
    ----------
    fields : sequence of str, optional
        One role per column of ``X`` (see the module's docstring); ``None``:
        every column a numeric input.
    ad_fields : sequence of str, default=()
        The ad-side fields (for ``interactions="user_ad"``).
    interactions : {"all", "user_ad", "none"}, default="all"
        Which field pairs interact.
    embedding_dim : int, default=8
        Size of each field-aware embedding.
    hidden : sequence of int, default=(256, 128)
        The MLP's hidden widths (empty: no MLP; the FFM and linear terms remain).
    dropout : float, default=0.1
    learning_rate : float, default=1e-3
        Adam's step size.
    weight_decay : float, default=0.0
        Adam's L2 penalty.
    batch_size : int, default=2048
    epochs : int, default=4
        Maximum passes over the training rows.
    patience : int, default=0
        Stop after this many epochs without a better AUC on the early-stopping rows.
    ratio : float, default=0.0
        Negatives drawn per positive (undersampling, undone in
        :meth:`predict_proba` as the bags do); 0 keeps every negative.
    n_bags : int, default=1
        Networks trained, each on its own draw of held-out rows and
        negatives and from its own initialisation and batch order; their
        log-odds are averaged. One network's scores move a lot with its seed
        (deep CTR models overfit within an epoch or two), and the average is
        steadier (README, "The neural model (NFFM)").
    validation_fraction : float, default=0.1
        Share of each class held out of each network's training for early
        stopping (0: none; every epoch is kept).
    group_column : int, optional
        Early stopping on the mean per-group AUC of the early-stopping rows,
        grouped by this column's values (the aid's, for the competition's
        metric); ``None``: their AUC.
    device : {"auto", "cpu", "gpu", "cuda"}, default="cpu"
        See :func:`resolve_torch_device`.
    n_jobs : int, optional
        PyTorch threads while fitting and predicting (``None``: PyTorch's
        default). Results are deterministic for a fixed seed and thread count.
    random_state : int, default=0
    verbose : bool, default=True
        A progress bar over the batches (on a terminal only).

    Attributes
    ----------
    classes_ : ndarray
    field_names_ : tuple of str
        The embedded fields (token and id fields), in order.
    emb_of_column_ : ndarray of int64
        Per column, its embedding row (token columns), else -1.
    id_columns_ : ndarray of int64
        The id columns; :attr:`id_base_` and :attr:`id_size_` their rows.
    numeric_columns_ : ndarray of int64
    numeric_mean_, numeric_scale_ : ndarray of float32
    field_of_row_ : ndarray of int64
        The field of each embedding row.
    pairs_ : ndarray of int64, shape (n_pairs, 2)
    negative_share_ : float
        Share of the negatives each network trained on.
    weights_ : list of dict of str -> ndarray
        Per network, its ``state_dict`` as NumPy arrays.
    best_epoch_ : list of int
        Per network, the epoch whose weights were kept (1-based).
    history_ : list of list of dict
        Per network, per epoch: training loss and early-stopping AUC.
    device_ : str
    """

    _fitted_attr = "weights_"

    def __init__(
        self,
        fields: Sequence[str] | None = None,
        ad_fields: Sequence[str] = (),
        interactions: str = "all",
        embedding_dim: int = 8,
        hidden: Sequence[int] = (256, 128),
        dropout: float = 0.1,
        learning_rate: float = 1e-3,
        weight_decay: float = 0.0,
        batch_size: int = 2048,
        epochs: int = 4,
        patience: int = 0,
        ratio: float = 0.0,
        n_bags: int = 1,
        validation_fraction: float = 0.1,
        group_column: int | None = None,
        device: str = "cpu",
        n_jobs: int | None = None,
        random_state: int = 0,
        verbose: bool = True,
    ) -> None:
        self.fields = fields
        self.ad_fields = ad_fields
        self.interactions = interactions
        self.embedding_dim = embedding_dim
        self.hidden = hidden
        self.dropout = dropout
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.epochs = epochs
        self.patience = patience
        self.ratio = ratio
        self.n_bags = n_bags
        self.validation_fraction = validation_fraction
        self.group_column = group_column
        self.device = device
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.verbose = verbose

    # ------------------------------------------------------------------ plan
    def plan(self, y: np.ndarray) -> BagPlan:
        """The rows :meth:`fit` trains and early-stops on, drawn from ``y`` and ``random_state``
        alone: one bag per network (see :class:`ensemble.BagPlan`)."""
        return self._draw_plan(binary_labels(self, y))

    def _draw_plan(self, y: np.ndarray) -> BagPlan:
        rng = np.random.default_rng(self.random_state)  # one stream, the bags drawn in turn
        pos, neg = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
        bags = [self._draw_bag(rng, pos, neg) for _ in range(self.n_bags)]
        return BagPlan(len(y), *(tuple(part) for part in zip(*bags, strict=True)))

    def _draw_bag(
        self, rng: np.random.Generator, pos: np.ndarray, neg: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray | None, float]:
        """One network's training rows, early-stopping rows (or ``None``) and share of the negatives."""

        def split(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            n_hold = int(round(self.validation_fraction * len(rows)))
            if n_hold < 1 or n_hold >= len(rows):
                return rows, rows[:0]
            perm = rng.permutation(rows)
            return np.sort(perm[n_hold:]), np.sort(perm[:n_hold])

        fit_pos, hold_pos = split(pos)
        fit_neg, hold_neg = split(neg)
        share = 1.0
        if self.ratio > 0:
            n_fit = min(len(fit_neg), max(1, math.ceil(self.ratio * len(fit_pos))))
            share = n_fit / max(len(fit_neg), 1)
            fit_neg = np.sort(rng.choice(fit_neg, n_fit, replace=False))
            n_hold = min(len(hold_neg), max(1, math.ceil(self.ratio * len(hold_pos))))
            hold_neg = np.sort(rng.choice(hold_neg, n_hold, replace=False)) if len(hold_neg) else hold_neg
        stop = np.sort(np.r_[hold_pos, hold_neg]) if len(hold_pos) and len(hold_neg) else None
        return np.sort(np.r_[fit_pos, fit_neg]), stop, share

    # ------------------------------------------------------------------ fit
    def fit(self, X: sp.csr_matrix | np.ndarray, y: np.ndarray, plan: BagPlan | None = None) -> NFFMClassifier:
        """Train on ``X``, ``y`` (binary): the rows of ``plan`` (by default :meth:`plan` of ``y``).

        Parameters
        ----------
        X : csr_matrix or ndarray, shape (n_rows, n_columns)
        y : array-like of shape (n_rows,)
        plan : BagPlan, optional
            One bag per network and its early-stopping rows, as :meth:`plan`
            drew them (possibly :meth:`BagPlan.restrict` ed to those rows).
        """
        torch = _torch()
        X, y01 = validate_binary(self, X, y)
        self._check_params(X.shape[1])
        if plan is None:
            plan = self._draw_plan(y01)
        if plan.n_rows != X.shape[0] or len(plan.bags) != self.n_bags:
            raise ValueError(f"the plan must hold {self.n_bags} bag(s) over the {X.shape[0]} rows of X")
        if len(set(plan.negative_share)) != 1:
            raise ValueError("the plan's bags must train on the same share of the negatives")
        X = sp.csr_matrix(X) if not sp.issparse(X) else X.tocsr()
        self.device_ = resolve_torch_device(self.device)
        self._learn_columns(X, distinct(np.concatenate(plan.bags)))
        self.negative_share_ = float(plan.negative_share[0])
        self.weights_, self.best_epoch_, self.history_, nets = [], [], [], []
        with _threads(torch, self.n_jobs), torch.random.fork_rng(devices=[]):
            for bag, (fit_rows, stop_rows) in enumerate(zip(plan.bags, plan.stops, strict=True)):
                torch.manual_seed(self.random_state + bag)
                net = self._build_net(torch)
                rate = float(np.clip(y01[fit_rows].mean(), 1e-6, 1 - 1e-6))
                net.bias.data.fill_(math.log(rate / (1 - rate)))  # start from the base rate, not from 0.5
                net = net.to(self.device_)
                net, best_epoch, history = self._train(torch, net, X, y01, fit_rows, stop_rows, bag)
                self.weights_.append({k: v.detach().cpu().numpy().copy() for k, v in net.state_dict().items()})
                self.best_epoch_.append(best_epoch)
                self.history_.append(history)
                nets.append(net)
        self.__dict__["_net_cache"] = nets
        return self

    def _check_params(self, n_columns: int) -> None:
        if self.interactions not in INTERACTIONS:
            raise ValueError(f"interactions must be one of {INTERACTIONS}, got {self.interactions!r}")
        if self.fields is not None and len(self.fields) != n_columns:
            raise ValueError(f"fields has {len(self.fields)} roles for {n_columns} columns")
        for key in ("embedding_dim", "batch_size", "epochs", "n_bags"):
            if getattr(self, key) < 1:
                raise ValueError(f"{key} must be at least 1, got {getattr(self, key)}")
        if self.patience < 0 or self.ratio < 0 or not 0 <= self.validation_fraction < 1 or not 0 <= self.dropout < 1:
            raise ValueError("patience and ratio must be >= 0, validation_fraction and dropout in [0, 1)")

    def _learn_columns(self, X: sp.csr_matrix, rows: np.ndarray) -> None:
        """The field of every column, the embedding rows, the numeric scaling (from ``rows``)."""
        roles = ["+"] * X.shape[1] if self.fields is None else list(self.fields)
        names: list[str] = []
        index: dict[str, int] = {}
        kind: dict[str, str] = {}
        for role in roles:
            if role in ("+", "-"):
                continue
            is_id = role.startswith("#")
            name = role[1:] if is_id else role
            if not name:
                raise ValueError(f"field role {role!r} names no field")
            if kind.setdefault(name, "id" if is_id else "token") != ("id" if is_id else "token"):
                raise ValueError(f"field {name!r} is both a token field and an id field")
            if name not in index:
                index[name] = len(names)
                names.append(name)
        roles_arr = np.asarray(roles, dtype=object)
        field_of_col = np.array([index.get(r.lstrip("#"), -1) if r not in ("+", "-") else -1 for r in roles],
                                dtype=np.int64)
        is_id_col = np.array([r.startswith("#") for r in roles], dtype=bool)
        self.field_names_ = tuple(names)
        # embedding rows, field-major: a field's token columns (in column order) or its ids (seen + 1 unknown)
        self.emb_of_column_ = np.full(X.shape[1], -1, dtype=np.int64)
        id_cols = np.flatnonzero(is_id_col)
        id_base, id_size, field_of_row = np.zeros(len(id_cols), np.int64), np.zeros(len(id_cols), np.int64), []
        n_rows = 0
        for f in range(len(names)):
            cols = np.flatnonzero((field_of_col == f) & ~is_id_col)
            if len(cols):
                self.emb_of_column_[cols] = n_rows + np.arange(len(cols))
                field_of_row.append(np.full(len(cols), f))
                n_rows += len(cols)
            for j in np.flatnonzero(field_of_col[id_cols] == f):
                values = _column(X, id_cols[j])[rows]
                if values.size and (values.min() < 0 or not np.array_equal(values, np.round(values))):
                    raise ValueError(f"column {id_cols[j]} ({roles_arr[id_cols[j]]}) holds ids: "
                                     "non-negative integers only")
                id_base[j], id_size[j] = n_rows, int(values.max()) + 2 if values.size else 1
                field_of_row.append(np.full(id_size[j], f))
                n_rows += id_size[j]
        self.id_columns_, self.id_base_, self.id_size_ = id_cols, id_base, id_size
        self.field_of_row_ = np.concatenate(field_of_row) if field_of_row else np.empty(0, np.int64)
        self.n_emb_rows_ = n_rows
        self.numeric_columns_ = np.flatnonzero(roles_arr == "+")
        self.numeric_mean_, self.numeric_scale_ = self._numeric_scaling(X, rows)
        ad = {f for f in self.ad_fields}
        pairs = [(i, j) for i in range(len(names)) for j in range(i + 1, len(names))
                 if self.interactions == "all" or
                 (self.interactions == "user_ad" and (names[i] in ad) != (names[j] in ad))]
        self.pairs_ = np.array(pairs, dtype=np.int64).reshape(-1, 2)

    def _numeric_scaling(self, X: sp.csr_matrix, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Mean and standard deviation of each squashed numeric column over ``rows`` (NaN left out),
        two passes over blocks of rows: no dense copy of every row's numbers."""
        cols = self.numeric_columns_
        count, total, squares = np.zeros(len(cols)), np.zeros(len(cols)), np.zeros(len(cols))

        def blocks() -> Iterator[tuple[np.ndarray, np.ndarray]]:
            for start in range(0, len(rows), _BLOCK_ROWS):
                values = _squash(X[rows[start : start + _BLOCK_ROWS]][:, cols].toarray()).astype(np.float64)
                seen = ~np.isnan(values)
                yield values, seen

        for values, seen in blocks():
            count += seen.sum(axis=0)
            total += np.where(seen, values, 0.0).sum(axis=0)
        with np.errstate(all="ignore"):
            mean = np.nan_to_num(np.divide(total, count, out=np.zeros(len(cols)), where=count > 0))
            for values, seen in blocks():
                squares += np.where(seen, (values - mean) ** 2, 0.0).sum(axis=0)
            scale = np.nan_to_num(np.sqrt(np.divide(squares, count, out=np.zeros(len(cols)), where=count > 0)))
        return mean.astype(np.float32), np.where(scale > 0, scale, 1.0).astype(np.float32)

    def _build_net(self, torch: Any) -> Any:  # noqa: ANN401
        from ensemble._nffm_net import NFFMNet

        return NFFMNet(self.n_emb_rows_, len(self.field_names_), self.embedding_dim, torch.from_numpy(self.pairs_),
                       len(self.numeric_columns_), tuple(int(h) for h in self.hidden), self.dropout)

    def _train(
        self, torch: Any, net: Any, X: sp.csr_matrix, y: np.ndarray,  # noqa: ANN401
        fit_rows: np.ndarray, stop_rows: np.ndarray | None, bag: int,
    ) -> tuple[Any, int, list[dict[str, float]]]:
        """Train network ``bag`` of the plan: the network with its best epoch's weights, that epoch
        (1-based) and the per-epoch history."""
        rng = np.random.default_rng(self.random_state + 1 + bag)
        opt = torch.optim.Adam(net.parameters(), lr=self.learning_rate, weight_decay=self.weight_decay,
                               fused=True)  # one kernel per step: 5x faster than the loop over tensors
        loss_fn = torch.nn.BCEWithLogitsLoss()
        train_x, stop_x = self._encode(X, fit_rows), None
        y_fit = torch.from_numpy(y[fit_rows].astype(np.float32))
        use_stop = stop_rows is not None and 0 < y[stop_rows].sum() < len(stop_rows)
        if use_stop:
            stop_x = self._encode(X, stop_rows)
            groups = None if self.group_column is None else _column(X, self.group_column)[stop_rows]
        best, best_state, best_epoch, bad = -np.inf, None, 0, 0
        history: list[dict[str, float]] = []
        n = len(fit_rows)
        for epoch in range(1, self.epochs + 1):
            net.train()
            order = rng.permutation(n)
            total = 0.0
            starts = range(0, n, self.batch_size)
            desc = f"nffm {bag + 1}/{self.n_bags} epoch {epoch}" if self.n_bags > 1 else f"nffm epoch {epoch}"
            for start in tqdm(starts, desc=desc, unit="batch", leave=False,
                              disable=None if self.verbose else True):
                batch = np.sort(order[start : start + self.batch_size])  # sorted: faster CSR row gathers
                logits = net(*self._tensors(torch, train_x, batch))
                loss = loss_fn(logits, y_fit[batch].to(self.device_))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += float(loss.detach()) * len(batch)
            entry = {"epoch": epoch, "loss": total / max(n, 1)}
            if use_stop:
                scores = self._logits(torch, net, stop_x)
                auc = (roc_auc_score(y[stop_rows], scores) if groups is None
                       else per_aid_auc(y[stop_rows], scores, groups).mean)
                entry["stop_auc"] = float(auc)
                if auc > best:
                    best, best_state, bad, best_epoch = auc, copy.deepcopy(net.state_dict()), 0, epoch
                else:
                    bad += 1
            history.append(entry)
            logger.debug("nffm network %d epoch %d: %s", bag + 1, epoch, entry)
            if use_stop and bad > self.patience:
                break
        if best_state is None:
            best_state, best_epoch = copy.deepcopy(net.state_dict()), len(history)
        net.load_state_dict(best_state)
        net.eval()
        return net, best_epoch, history

    # ------------------------------------------------------------------ encoding
    def _encode(self, X: sp.csr_matrix, rows: np.ndarray | None = None) -> _Encoded:
        """Rows of ``X`` (every row, or ``rows``) as embedding rows with pooling weights (grouped by
        field) and numeric inputs, a block of rows at a time: the temporaries (8 bytes per stored
        value) stay those of one block, not of a fold's design (at full scale, 20 GB for the refit)."""
        n = X.shape[0] if rows is None else len(rows)
        parts = [self._encode_block(X[start : start + _BLOCK_ROWS] if rows is None
                                    else X[rows[start : start + _BLOCK_ROWS]])
                 for start in range(0, n, _BLOCK_ROWS)]
        if len(parts) == 1:
            return parts[0]
        if not parts:
            return self._encode_block(X[:0])
        return _Encoded(sp.vstack([p.tokens for p in parts], format="csr"),
                        np.concatenate([p.numeric for p in parts]))

    def _encode_block(self, X: sp.csr_matrix) -> _Encoded:
        """:meth:`_encode` of every row of ``X``."""
        X = X.tocsr()
        n = X.shape[0]
        row_of = np.repeat(np.arange(n, dtype=np.int64), np.diff(X.indptr))
        emb = self.emb_of_column_[X.indices]
        keep = emb >= 0
        rows, emb, vals = [row_of[keep]], [emb[keep]], [X.data[keep].astype(np.float32)]
        for col, base, size in zip(self.id_columns_, self.id_base_, self.id_size_, strict=True):
            ids = _column(X, col)
            ok = (ids >= 0) & (ids < size - 1) & (ids == np.round(ids))
            rows.append(np.arange(n, dtype=np.int64))
            emb.append(base + np.where(ok, ids, size - 1).astype(np.int64))
            vals.append(np.ones(n, np.float32))
        tokens = sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(emb))),
                               shape=(n, max(self.n_emb_rows_, 1)))
        tokens.sum_duplicates()  # also sorts each row's entries: field-major rows group them by field
        n_fields = len(self.field_names_)
        if n_fields:  # pooling weights: value / number of the row's tokens in the field (a mean)
            bag = np.repeat(np.arange(n, dtype=np.int64), np.diff(tokens.indptr)) * n_fields
            bag += self.field_of_row_[tokens.indices]
            counts = np.bincount(bag, minlength=n * n_fields)
            tokens.data = (tokens.data / counts[bag]).astype(np.float32)
        numeric = _squash(X[:, self.numeric_columns_].toarray())
        numeric = np.nan_to_num((numeric - self.numeric_mean_) / self.numeric_scale_, nan=0.0, posinf=0.0,
                                neginf=0.0).astype(np.float32)
        return _Encoded(tokens, numeric)

    def _tensors(self, torch: Any, enc: _Encoded, rows: np.ndarray | slice) -> tuple:  # noqa: ANN401
        tokens, numeric = enc.tokens[rows], enc.numeric[rows]
        n, n_fields = tokens.shape[0], len(self.field_names_)
        per_row = np.diff(tokens.indptr)
        if n_fields:
            bag = np.repeat(np.arange(n, dtype=np.int64), per_row) * n_fields + self.field_of_row_[tokens.indices]
            counts = np.bincount(bag, minlength=n * n_fields)
            bag_offsets = np.r_[0, np.cumsum(counts)[:-1]]
        else:
            bag_offsets = np.zeros(0, np.int64)
        dev = self.device_
        return (torch.from_numpy(tokens.indices.astype(np.int64)).to(dev),
                torch.from_numpy(tokens.data.astype(np.float32)).to(dev),
                torch.from_numpy(bag_offsets.astype(np.int64)).to(dev),
                torch.from_numpy(tokens.indptr[:-1].astype(np.int64)).to(dev),
                torch.from_numpy(np.ascontiguousarray(numeric)).to(dev))

    def _logits(self, torch: Any, net: Any, enc: _Encoded) -> np.ndarray:  # noqa: ANN401
        """Logits of every row, in blocks of exactly ``batch_size`` rows (the last one padded with
        empty rows): the matrix products of a few rows take other kernels than those of many, so a
        row's score would otherwise depend on how many rows came with it."""
        net.eval()
        out = []
        n, size = enc.tokens.shape[0], self.batch_size
        with torch.no_grad():
            for start in range(0, n, size):
                block = _Encoded(enc.tokens[start : start + size], enc.numeric[start : start + size])
                m = block.tokens.shape[0]
                if m < size:
                    block = _Encoded(
                        sp.vstack([block.tokens, sp.csr_matrix((size - m, block.tokens.shape[1]), dtype=np.float32)],
                                  format="csr"),
                        np.vstack([block.numeric, np.zeros((size - m, block.numeric.shape[1]), np.float32)]))
                out.append(net(*self._tensors(torch, block, slice(None))).cpu().numpy()[:m])
        return np.concatenate(out).astype(np.float64) if out else np.empty(0)

    # ------------------------------------------------------------------ predict
    def _nets(self, torch: Any) -> list[Any]:  # noqa: ANN401
        """The networks with the fitted weights (kept from ``fit``; rebuilt from :attr:`weights_`
        after unpickling, on the CPU where the fitting device is not here)."""
        nets = self.__dict__.get("_net_cache")
        if nets is None:
            if self.device_ != "cpu" and not torch.cuda.is_available():
                self.device_ = "cpu"
            nets = []
            for weights in self.weights_:
                net = self._build_net(torch)
                net.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in weights.items()})
                nets.append(net.to(self.device_))
            self.__dict__["_net_cache"] = nets
        return nets

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.pop("_net_cache", None)  # the weights_ arrays are the saved state
        return state

    def decision_function(self, X: sp.csr_matrix | np.ndarray) -> np.ndarray:
        """The networks' mean log-odds, at the class balance they trained on (before the
        undersampling is undone)."""
        check_is_fitted(self, "weights_")
        torch = _torch()
        X = validate_data(self, X, accept_sparse="csr", ensure_all_finite="allow-nan", reset=False,
                          dtype=(np.float32, np.float64))
        X = sp.csr_matrix(X) if not sp.issparse(X) else X.tocsr()
        with _threads(torch, self.n_jobs):
            enc = self._encode(X)
            return np.mean([self._logits(torch, net, enc) for net in self._nets(torch)], axis=0)

    def predict_proba(self, X: sp.csr_matrix | np.ndarray) -> np.ndarray:
        """Probabilities of ``classes_``; the negative undersampling undone. Each row's score depends
        on that row alone."""
        p = _undo_undersampling(1.0 / (1.0 + np.exp(-self.decision_function(X))), self.negative_share_)
        return np.column_stack([1.0 - p, p])



class _Encoded:
    """Rows as embedding rows with pooling weights (CSR over embedding rows) and numeric inputs."""

    __slots__ = ("numeric", "tokens")

    def __init__(self, tokens: sp.csr_matrix, numeric: np.ndarray) -> None:
        self.tokens, self.numeric = tokens, numeric


def _squash(values: np.ndarray) -> np.ndarray:
    """``sign(x) log1p|x|``: counts and rates on one scale before standardising."""
    return (np.sign(values) * np.log1p(np.abs(values))).astype(np.float32)
