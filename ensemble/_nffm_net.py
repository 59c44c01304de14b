"""The PyTorch network of :class:`ensemble.NFFMClassifier` (imported only when the model is used).

Kept apart from the estimator so that importing :mod:`ensemble` never needs
PyTorch (an optional extra: ``pip install 'lookalike[nn]'``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

__all__ = ["NFFMNet", "inverse_cells", "pair_products"]


class _PairProducts(torch.autograd.Function):
    """``pooled[:, ij] * pooled[:, ji]`` with a backward that gathers instead of scattering.

    Autograd's backward of the two ``index_select`` calls zero-fills the whole
    ``(n, F*F, k)`` grid twice and scatter-adds into it (``index_add_``):
    about half of a training step on the CPU. The pairs ``(i, j)``, ``i < j``,
    are distinct, so each grid position is ``ij`` of at most one pair, ``ji``
    of at most one other, or neither: the gradient is one gather of
    ``[grad * b, grad * a, 0]`` by the position's inverse index.
    """

    @staticmethod
    def forward(ctx: Any, pooled: torch.Tensor, ij: torch.Tensor, ji: torch.Tensor,  # noqa: ANN401
                inverse: torch.Tensor) -> torch.Tensor:
        a, b = pooled.index_select(1, ij), pooled.index_select(1, ji)
        ctx.save_for_backward(a, b, inverse)
        return a * b

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None, None]:  # noqa: ANN401
        a, b, inverse = ctx.saved_tensors
        parts = torch.cat([grad * b, grad * a, grad.new_zeros(grad.shape[0], 1, grad.shape[2])], dim=1)
        return parts.index_select(1, inverse), None, None, None


def pair_products(pooled: torch.Tensor, ij: torch.Tensor, ji: torch.Tensor, inverse: torch.Tensor) -> torch.Tensor:
    """Element-wise products ``pooled[:, ij[p]] * pooled[:, ji[p]]`` for every pair ``p``.

    ``pooled``: ``(n, cells, k)``; ``ij`` and ``ji``: distinct cells, no cell
    in both; ``inverse[c]``: ``p`` where ``ij[p] == c``, ``n_pairs + p`` where
    ``ji[p] == c``, else ``2 * n_pairs``.
    """
    return _PairProducts.apply(pooled, ij, ji, inverse)


def inverse_cells(ij: torch.Tensor, ji: torch.Tensor, n_cells: int) -> torch.Tensor:
    """The ``inverse`` index of :func:`pair_products` for cells ``ij``, ``ji`` of ``n_cells``."""
    n_pairs = len(ij)
    inverse = torch.full((n_cells,), 2 * n_pairs, dtype=torch.long)
    inverse[ij] = torch.arange(n_pairs)
    inverse[ji] = torch.arange(n_pairs, 2 * n_pairs)
    return inverse


class NFFMNet(nn.Module):
    """Field-aware embeddings, the NFFM interaction layer, an MLP and a linear term.

    Every embedding row (a token, or an id of an id field) holds one
    ``k``-vector *towards each field*: ``v(t -> j)``. A row's tokens of field
    ``i`` are pooled (their value-weighted mean) into ``P[i, j]``; the field
    pair ``(i, j)`` interacts as the element-wise product
    ``P[i, j] * P[j, i]``. The logit is ``bias + linear + sum of all products
    (the FFM term) + MLP(products, numeric inputs)``.

    Parameters
    ----------
    n_rows : int
        Embedding rows (tokens and ids of every field).
    n_fields : int
    k : int
        Embedding size per (row, target field).
    pairs : tensor of int64, shape (n_pairs, 2)
        The interacting field pairs ``(i, j)``, ``i < j``; may be empty.
    n_numeric : int
        Numeric inputs (already standardised).
    hidden : tuple of int
        Widths of the MLP's hidden layers (none: no MLP).
    dropout : float
    """

    def __init__(
        self, n_rows: int, n_fields: int, k: int, pairs: torch.Tensor, n_numeric: int,
        hidden: tuple[int, ...], dropout: float,
    ) -> None:
        super().__init__()
        self.n_fields, self.k = n_fields, k
        pairs = pairs.reshape(-1, 2).long()
        self.register_buffer("pairs", pairs)
        # (i, j) and (j, i) as positions in the flattened (field, field) grid: one index_select each
        self.register_buffer("ij", pairs[:, 0] * max(n_fields, 1) + pairs[:, 1], persistent=False)
        self.register_buffer("ji", pairs[:, 1] * max(n_fields, 1) + pairs[:, 0], persistent=False)
        self.register_buffer("inverse", inverse_cells(self.ij, self.ji, max(n_fields, 1) ** 2), persistent=False)
        self.emb = nn.EmbeddingBag(max(n_rows, 1), max(n_fields, 1) * k, mode="sum")
        self.lin = nn.EmbeddingBag(max(n_rows, 1), 1, mode="sum")
        nn.init.normal_(self.emb.weight, std=0.01)
        nn.init.zeros_(self.lin.weight)
        self.bias = nn.Parameter(torch.zeros(1))
        self.num_lin = nn.Linear(n_numeric, 1) if n_numeric else None
        width = len(self.pairs) * k + n_numeric
        layers: list[nn.Module] = []
        for h in hidden if width else ():
            layers += [nn.Linear(width, h), nn.ReLU(), nn.Dropout(dropout)]
            width = h
        self.mlp = nn.Sequential(*layers, nn.Linear(width, 1)) if layers else None

    def forward(
        self, idx: torch.Tensor, weights: torch.Tensor, bag_offsets: torch.Tensor, row_offsets: torch.Tensor,
        numeric: torch.Tensor,
    ) -> torch.Tensor:
        """Logits of a batch.

        ``idx`` / ``weights``: the batch's embedding rows and pooling weights,
        grouped by (row, field); ``bag_offsets``: where each (row, field) bag
        starts (``n_batch * n_fields`` of them); ``row_offsets``: where each
        row starts; ``numeric``: ``(n_batch, n_numeric)``.
        """
        n = numeric.shape[0]
        out = self.bias.expand(n)
        inputs = [numeric] if numeric.shape[1] else []
        if self.n_fields:
            out = out + self.lin(idx, row_offsets, per_sample_weights=weights).squeeze(1)
            if len(self.pairs):
                pooled = self.emb(idx, bag_offsets, per_sample_weights=weights)
                pooled = pooled.view(n, self.n_fields * self.n_fields, self.k)  # row i * F + j: P[i, j]
                products = pair_products(pooled, self.ij, self.ji, self.inverse)  # (n, n_pairs, k)
                out = out + products.sum(dim=(1, 2))
                inputs.insert(0, products.flatten(1))
        if self.num_lin is not None:
            out = out + self.num_lin(numeric).squeeze(1)
        if self.mlp is not None and inputs:
            out = out + self.mlp(torch.cat(inputs, dim=1)).squeeze(1)
        return out
