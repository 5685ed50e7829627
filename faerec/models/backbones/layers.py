"""Building blocks shared by the backbones, and the two weight initialisations they use.

Layers FAERec needs too (the dropout) live in :mod:`faerec.models.layers`.

The block layout follows the official encoder: every sub-layer is post-LN, i.e.
``LayerNorm(x + Dropout(sublayer(x)))``, with LayerNorm eps 1e-12 as in the authors' own
LayerNorm class (which computes the same biased-variance normalisation as ``nn.LayerNorm``).

Speed. Training batches are mostly padding (on Beauty about 11% of the [B, 50] grid holds real
items), so backbones whose real states do not depend on padding run their position-wise layers
on the real tokens only (:class:`TokenLayout`) and return zero states at padding positions.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from faerec.models.layers import FastDropout

#: eps of every LayerNorm inside the encoders (the official value).
LAYER_NORM_EPS = 1e-12


@dataclass(frozen=True)
class TokenLayout:
    """Where the real items of a padded [B, T] batch sit in its flattened [B * T] grid.

    ``pack`` keeps the real positions (row by row, in time order); ``unpack`` puts them back
    and fills padding positions with zeros. Both are differentiable.
    """

    flat_index: Tensor  # [M] long: b * T + t for every real (b, t), in row-major order
    step_in_sequence: Tensor  # [M] long: 0, 1, 2, ... along the real items of each row
    row_lengths: Tensor  # [B] long: number of real items per row
    batch_size: int
    length: int

    @classmethod
    def from_mask(cls, padding_mask: Tensor) -> TokenLayout:
        """From a [B, T] bool mask (True = real item)."""
        batch_size, length = padding_mask.shape
        flat_mask = padding_mask.reshape(-1)
        flat_index = torch.nonzero(flat_mask, as_tuple=False).squeeze(1)
        steps = padding_mask.long().cumsum(dim=1) - 1
        return cls(
            flat_index=flat_index,
            step_in_sequence=steps.reshape(-1).index_select(0, flat_index),
            row_lengths=padding_mask.sum(dim=1),
            batch_size=batch_size,
            length=length,
        )

    @property
    def num_tokens(self) -> int:
        return int(self.flat_index.shape[0])

    def row_of_token(self) -> Tensor:
        """[M] long: the batch row of every real token."""
        return torch.div(self.flat_index, self.length, rounding_mode="floor")

    def pack(self, grid: Tensor) -> Tensor:
        """[B, T, *rest] -> [M, *rest]."""
        flat = grid.reshape(self.batch_size * self.length, *grid.shape[2:])
        return flat.index_select(0, self.flat_index)

    def unpack(self, tokens: Tensor) -> Tensor:
        """[M, *rest] -> [B, T, *rest] with zeros at padding positions."""
        flat = tokens.new_zeros(self.batch_size * self.length, *tokens.shape[1:])
        flat.index_copy_(0, self.flat_index, tokens)
        return flat.view(self.batch_size, self.length, *tokens.shape[1:])


def embed_real_items(
    item_ids: Tensor,
    positions: Tensor,
    item_embedding: nn.Embedding,
    position_embedding: nn.Embedding | None,
    transform: Callable[[Tensor], Tensor],
) -> Tensor:
    """[B, T] ids, [T] absolute positions -> [B, T, d] ``transform(E[i] (+ P[t]))`` computed at
    real items only, zeros at padding.

    For backbones whose real states never read padding inputs: the same states as the
    full-grid input layer, without the cost of embedding, normalising and dropping out padding.
    """
    layout = TokenLayout.from_mask(item_ids != 0)
    tokens = item_embedding(item_ids.reshape(-1).index_select(0, layout.flat_index))
    if position_embedding is not None:
        time_index = layout.flat_index - layout.row_of_token() * layout.length
        tokens = tokens + position_embedding(positions.index_select(0, time_index))
    return layout.unpack(transform(tokens))


class PointwiseFeedForward(nn.Module):
    """The official ``Intermediate`` block: d -> 4d -> d with GELU, dropout, residual, LN.

    Applied to each position independently, so it never mixes information across time and
    keeps every backbone's causality and padding behaviour intact (inputs may be [..., d]).
    """

    def __init__(self, hidden_size: int, dropout: float) -> None:
        super().__init__()
        self.expand = nn.Linear(hidden_size, 4 * hidden_size)
        # exact (erf) GELU, as the official ``gelu`` function
        self.activation = nn.GELU()
        self.contract = nn.Linear(4 * hidden_size, hidden_size)
        self.dropout = FastDropout(dropout)
        self.norm = nn.LayerNorm(hidden_size, eps=LAYER_NORM_EPS)

    def forward(self, hidden: Tensor) -> Tensor:
        update = self.contract(self.activation(self.expand(hidden)))
        return self.norm(hidden + self.dropout(update))


def init_normal_(module: nn.Module, std: float) -> None:
    """The official SASRec/FMLP-Rec init, for ``module.apply``.

    Linear and Embedding weights ~ N(0, std), Linear biases 0, LayerNorm (1, 0). Like the
    official code this also overwrites the padding row 0 of an embedding table: the row stays
    frozen (``padding_idx`` has no gradient) but is not zero, which matters where padding
    inputs are seen (FMLP-Rec) and where row 0 is ranked (official evaluation).
    """
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, mean=0.0, std=std)
    if isinstance(module, nn.Linear) and module.bias is not None:
        nn.init.zeros_(module.bias)
    if isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


def init_truncated_normal_(module: nn.Module, std: float) -> None:
    """The official LRURec init, for ``module.apply``: as :func:`init_normal_`, but weights
    are drawn from N(0, std) truncated to [-2 std, 2 std] (the official +-0.04 at std 0.02)."""
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.trunc_normal_(module.weight, mean=0.0, std=std, a=-2.0 * std, b=2.0 * std)
    if isinstance(module, nn.Linear) and module.bias is not None:
        nn.init.zeros_(module.bias)
    if isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


__all__ = [
    "LAYER_NORM_EPS",
    "PointwiseFeedForward",
    "TokenLayout",
    "embed_real_items",
    "init_normal_",
    "init_truncated_normal_",
]
