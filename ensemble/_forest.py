"""A LightGBM booster's trees as flat arrays, evaluated by a compiled loop (private).

Why our own evaluator: the train stage predicts every held-out row of every
fold through every tree of every bag, and ``lookalike score`` every pair;
LightGBM's own predictor took about 40 ns per tree and row here (2 cores,
31-leaf trees, 193 dense columns) and was the largest single cost after
boosting (README, "Train stage profile"). The field's compilers were
measured first: ``lleaves`` 1.3 does not build with the llvmlite that numba
0.6x needs (its legacy pass manager is gone), and ``treelite``/``tl2cgen``
(C code compiled by gcc at run time, a compiler a user may not have) was 1.4x
faster than LightGBM on 300 trees. This module flattens the trees of
``Booster.dump_model`` into arrays and walks them with numba, rows in
parallel; it follows LightGBM's decision rules (``tree.h``: numerical splits
with their missing-value type and default direction, categorical splits as
bitsets) and is tested against ``Booster.predict`` on NaN, zero, negative
and unseen categories (``tests/ensemble/test_forest.py``). Dense input only;
sparse matrices go to LightGBM.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import lightgbm as lgb
import numba
import numpy as np

__all__ = ["Forest"]

_ZERO = 1e-35  # LightGBM's kZeroThreshold
_MISSING = {"None": 0, "Zero": 1, "NaN": 2}
_CATEGORICAL = 4  # flag bit; bits 0-1: missing type, bit 3: default left
_DEFAULT_LEFT = 8


@dataclass(frozen=True)
class Forest:
    """The trees of one booster (up to an iteration), as arrays.

    Node ``j`` of the forest splits on ``feature[j]``; a child index ``c >= 0``
    is a node, ``c < 0`` the leaf ``~c``. ``roots[t]`` is tree ``t``'s first
    node, or ``~leaf`` for a tree that is a single leaf.

    Attributes
    ----------
    roots, feature, left, right : ndarray of int32
    threshold : ndarray of float64
        Numerical threshold, or for a categorical split the index of its bitset.
    flags : ndarray of uint8
        Missing type (bits 0-1), categorical (bit 2), default left (bit 3).
    cat_start : ndarray of int64
        Bitset ``i`` is ``cat_words[cat_start[i]:cat_start[i + 1]]``.
    cat_words : ndarray of uint32
    leaf_value : ndarray of float64
    sigmoid : float
        The binary objective's sigmoid (the probability is ``1 / (1 + exp(-sigmoid * raw))``).
    n_features : int
    """

    roots: np.ndarray
    feature: np.ndarray
    threshold: np.ndarray
    flags: np.ndarray
    left: np.ndarray
    right: np.ndarray
    cat_start: np.ndarray
    cat_words: np.ndarray
    leaf_value: np.ndarray
    sigmoid: float
    n_features: int

    @classmethod
    def from_booster(
        cls, booster: lgb.Booster, num_iteration: int | None = None, columns: np.ndarray | None = None,
        n_features: int | None = None,
    ) -> Forest:
        """The first ``num_iteration`` trees of a binary ``booster`` (``None`` or 0: all).

        ``columns``: for a booster trained on some columns of a wider input,
        the input column of each of its features; the forest then reads rows
        of ``n_features`` columns (no copy of the selected columns is made).
        """
        model = booster.dump_model(num_iteration=num_iteration or None)
        objective = model["objective"].split()
        if objective[0] != "binary" or model["num_tree_per_iteration"] != 1 or model.get("average_output"):
            raise ValueError(f"only binary boosted trees are flattened, not {model['objective']!r}")
        sigmoid = float(dict(kv.split(":") for kv in objective[1:]).get("sigmoid", 1.0))
        nodes: dict[str, list[Any]] = {k: [] for k in ("feature", "threshold", "flags", "left", "right")}
        bitsets: list[np.ndarray] = []
        leaves: list[float] = []
        roots = [_flatten(t["tree_structure"], nodes, bitsets, leaves) for t in model["tree_info"]]
        cat_start = np.cumsum([0, *(len(b) for b in bitsets)]).astype(np.int64)
        feature = np.asarray(nodes["feature"], dtype=np.int32)
        width = int(model["max_feature_idx"]) + 1
        if columns is not None:
            columns = np.asarray(columns, dtype=np.int32)
            if len(columns) != width or n_features is None or (len(columns) and columns.max() >= n_features):
                raise ValueError(f"columns must map the booster's {width} features into n_features input columns")
            feature, width = columns[feature], int(n_features)
        return cls(
            roots=np.asarray(roots, dtype=np.int32),
            feature=feature,
            threshold=np.asarray(nodes["threshold"], dtype=np.float64),
            flags=np.asarray(nodes["flags"], dtype=np.uint8),
            left=np.asarray(nodes["left"], dtype=np.int32),
            right=np.asarray(nodes["right"], dtype=np.int32),
            cat_start=cat_start,
            cat_words=np.concatenate(bitsets).astype(np.uint32) if bitsets else np.zeros(0, np.uint32),
            leaf_value=np.asarray(leaves, dtype=np.float64),
            sigmoid=sigmoid,
            n_features=width,
        )

    def raw_score(self, X: np.ndarray) -> np.ndarray:
        """Sum of the trees' leaf values per row of a dense ``X`` (float32 or float64)."""
        X = np.asarray(X)
        if X.ndim != 2 or X.shape[1] != self.n_features:
            raise ValueError(f"X must have {self.n_features} columns, not {X.shape}")
        if X.dtype not in (np.float32, np.float64):
            X = X.astype(np.float64)
        return _raw_scores(np.ascontiguousarray(X), self.roots, self.feature, self.threshold, self.flags, self.left,
                           self.right, self.cat_start, self.cat_words, self.leaf_value)

    def predict(self, X: np.ndarray, raw_score: bool = False) -> np.ndarray:
        """Probabilities (or raw scores), as ``Booster.predict`` gives them."""
        raw = self.raw_score(X)
        return raw if raw_score else 1.0 / (1.0 + np.exp(-self.sigmoid * raw))


def _flatten(node: dict[str, Any], nodes: dict[str, list[Any]], bitsets: list[np.ndarray], leaves: list[float]) -> int:
    """Append ``node``'s subtree; return its index (``~leaf`` for a leaf)."""
    if "leaf_value" in node:
        leaves.append(float(node["leaf_value"]))
        return ~(len(leaves) - 1)
    j = len(nodes["feature"])
    flags = _MISSING[node["missing_type"]] | (_DEFAULT_LEFT if node["default_left"] else 0)
    if node["decision_type"] == "==":
        cats = np.array([int(c) for c in str(node["threshold"]).split("||")], dtype=np.int64)
        words = np.zeros(int(cats.max()) // 32 + 1, dtype=np.uint64)
        np.bitwise_or.at(words, cats // 32, np.left_shift(np.uint64(1), (cats % 32).astype(np.uint64)))
        threshold, flags = float(len(bitsets)), flags | _CATEGORICAL
        bitsets.append(words)
    elif node["decision_type"] == "<=":
        threshold = float(node["threshold"])
    else:  # pragma: no cover - LightGBM writes only these two
        raise ValueError(f"unknown decision type {node['decision_type']!r}")
    for key, value in (("feature", node["split_feature"]), ("threshold", threshold), ("flags", flags),
                       ("left", 0), ("right", 0)):
        nodes[key].append(value)
    nodes["left"][j] = _flatten(node["left_child"], nodes, bitsets, leaves)
    nodes["right"][j] = _flatten(node["right_child"], nodes, bitsets, leaves)
    return j


@numba.njit(cache=True, inline="always")
def _go_left(fval: float, j: int, threshold, flags, cat_start, cat_words) -> bool:  # noqa: ANN001
    f = flags[j]
    if f & _CATEGORICAL:
        if math.isnan(fval):  # LightGBM: NaN goes right, so does a category that truncates below 0
            return False
        cat = int(fval)  # truncation towards zero: -0.4 is category 0, as in LightGBM
        if cat < 0:
            return False
        b = int(threshold[j])
        word = cat // 32
        if word >= cat_start[b + 1] - cat_start[b]:
            return False
        return (cat_words[cat_start[b] + word] >> (cat % 32)) & 1 == 1
    missing = f & 3
    if math.isnan(fval) and missing != 2:
        fval = 0.0
    if (missing == 1 and abs(fval) <= _ZERO) or (missing == 2 and math.isnan(fval)):
        return (f & _DEFAULT_LEFT) != 0
    return fval <= threshold[j]


@numba.njit(cache=True, parallel=True)
def _raw_scores(X, roots, feature, threshold, flags, left, right, cat_start, cat_words, leaf_value):  # noqa: ANN001, ANN202
    n = X.shape[0]
    out = np.zeros(n)
    block = 2048
    for b in numba.prange((n + block - 1) // block):
        lo, hi = b * block, min((b + 1) * block, n)
        for t in range(len(roots)):  # tree-major within a block: one tree's nodes stay in cache
            root = roots[t]
            for i in range(lo, hi):
                j = root
                while j >= 0:
                    j = left[j] if _go_left(X[i, feature[j]], j, threshold, flags, cat_start, cat_words) else right[j]
                out[i] += leaf_value[~j]
    return out
