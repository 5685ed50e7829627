"""SASRec: a stack of post-LN Transformer blocks with causal self-attention
(docs/method.md §Backbones).

Each block is ``LN(x + Drop(Dense(MHA(x))))`` followed by the point-wise FFN, as in the
official ``Encoder``. The attention mask is the official additive one: 0 where a query may look
(an earlier-or-same real key), -10000 elsewhere; in float32 ``exp(-10000)`` underflows to
exactly 0, so a real position never reads padding. With the absolute positions that trimming
passes in, states at real positions do not depend on the left padding, and trimming is exact.

Speed, same result. Since padding is never read, everything runs on the real tokens only:
projections, LayerNorms and the FFN on the packed [M, d] tokens (:class:`TokenLayout`), and the
attention on small grids of rows of similar length (:class:`AttentionPlan`) instead of the full
[B, T, T]. On Beauty, where ~11% of a [256, 50] batch is real, this is several times faster.
The departure: states at padding positions are returned as zeros (the official code computes
finite values there that no loss or score reads), and the input layer leaves padding at zero.
Ranking reads only each row's last state, so ``encode_last`` runs the last block's queries,
projection and FFN on one token per row: the same values up to float rounding (about 1e-6),
and on bundled Beauty the same rank for every test user, for less work (docs/benchmarks.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor, nn

from faerec.config import ModelConfig
from faerec.models.backbones.layers import (
    LAYER_NORM_EPS,
    PointwiseFeedForward,
    TokenLayout,
    embed_real_items,
    init_normal_,
)
from faerec.models.base import Backbone
from faerec.models.layers import FastDropout, fast_dropout

#: The official additive mask value for keys a query must not see.
MASKED_SCORE = -10000.0
#: Narrowest attention grid of :class:`AttentionPlan` (shorter rows share it).
MIN_BUCKET_WIDTH = 8


def causal_padding_bias(padding_mask: Tensor, dtype: torch.dtype) -> Tensor:
    """[B, T] bool (True = real) -> [B, 1, T, T] additive attention bias (0 or -10000).

    A query at position t may attend to key s when s <= t and s is a real item.
    """
    length = padding_mask.shape[1]
    causal = torch.ones(length, length, dtype=torch.bool, device=padding_mask.device).tril()
    allowed = causal.unsqueeze(0) & padding_mask.unsqueeze(1)  # [B, T(query), T(key)]
    bias = torch.zeros(allowed.shape, dtype=dtype, device=padding_mask.device)
    bias.masked_fill_(~allowed, MASKED_SCORE)
    return bias.unsqueeze(1)


def masked_attention(
    query: Tensor,
    key: Tensor,
    value: Tensor,
    attention_bias: Tensor,
    dropout: float,
    training: bool,
) -> Tensor:
    """softmax(Q K^T / sqrt(d_head) + bias) V with dropout on the weights, as the official code.

    Written out rather than ``scaled_dot_product_attention``: on CPU, with a mask and dropout,
    that runs the same math with a slower dropout (see ``fast_dropout``).
    """
    scores = torch.matmul(query, key.transpose(-1, -2)) * (query.shape[-1] ** -0.5)
    weights = torch.softmax(scores + attention_bias, dim=-1)
    return torch.matmul(fast_dropout(weights, dropout, training), value)


@dataclass(frozen=True)
class AttentionBucket:
    """Rows of similar length, laid out left-padded on a small [rows, width] grid."""

    token_index: Tensor  # [M_g] positions of this bucket's tokens among the packed tokens
    slot: Tensor  # [M_g] flat position of each token in the [rows * width] grid
    rows: int
    width: int
    bias: Tensor  # [rows, 1, width, width] causal + padding additive bias


@dataclass(frozen=True)
class AttentionPlan:
    """How to run attention on packed tokens without the full [B, T, T] grid.

    Training batches are mostly short sequences with a few long ones; attending on the full
    grid would cost B * T^2 per head. Rows are grouped by their length rounded up to a power of
    two (at least :data:`MIN_BUCKET_WIDTH`, at most T), and each group attends on its own
    small grid. Each row still attends causally over exactly its own real items, so the result
    is the same as on the full grid.
    """

    buckets: list[AttentionBucket]
    restore_order: Tensor  # [M]: concatenated bucket outputs -> packed token order

    @classmethod
    def build(cls, layout: TokenLayout, dtype: torch.dtype) -> AttentionPlan:
        lengths = layout.row_lengths
        device = lengths.device
        rounded = torch.exp2(torch.ceil(torch.log2(lengths.clamp_min(1).to(torch.float64))))
        # clamp(min > max) yields max: widths never exceed T
        row_width = rounded.long().clamp(min=MIN_BUCKET_WIDTH, max=layout.length)
        token_row = layout.row_of_token()
        token_width = row_width.index_select(0, token_row)
        buckets: list[AttentionBucket] = []
        for width in sorted(set(row_width[lengths > 0].tolist())):
            rows = torch.nonzero((row_width == width) & (lengths > 0)).squeeze(1)
            rank_of_row = torch.full_like(lengths, -1)
            rank_of_row[rows] = torch.arange(rows.shape[0], device=device)
            token_index = torch.nonzero(token_width == width).squeeze(1)
            row = token_row.index_select(0, token_index)
            column = width - lengths.index_select(0, row) + layout.step_in_sequence[token_index]
            columns = torch.arange(width, device=device)
            key_is_real = columns.unsqueeze(0) >= (width - lengths[rows]).unsqueeze(1)
            buckets.append(
                AttentionBucket(
                    token_index=token_index,
                    slot=rank_of_row.index_select(0, row) * width + column,
                    rows=int(rows.shape[0]),
                    width=width,
                    bias=causal_padding_bias(key_is_real, dtype),
                )
            )
        restore_order = torch.empty(layout.num_tokens, dtype=torch.long, device=device)
        if buckets:
            bucket_order = torch.cat([bucket.token_index for bucket in buckets])
            restore_order[bucket_order] = torch.arange(layout.num_tokens, device=device)
        return cls(buckets=buckets, restore_order=restore_order)


class MultiHeadSelfAttention(nn.Module):
    """The official ``SelfAttention`` sub-layer, post-LN, with Q/K/V in one fused Linear.

    Works on packed real tokens [M, d]; attention runs bucket by bucket (:class:`AttentionPlan`).
    """

    def __init__(
        self, hidden_size: int, num_heads: int, attention_dropout: float, hidden_dropout: float
    ) -> None:
        super().__init__()
        if hidden_size % num_heads:
            raise ValueError(
                f"hidden_size {hidden_size} is not a multiple of num_heads {num_heads}"
            )
        self.hidden_size = hidden_size
        self.num_heads = num_heads
        self.head_size = hidden_size // num_heads
        self.attention_dropout = attention_dropout
        # one matmul instead of three; each of the three blocks is initialised like its own Linear
        self.query_key_value = nn.Linear(hidden_size, 3 * hidden_size)
        self.output = nn.Linear(hidden_size, hidden_size)
        self.output_dropout = FastDropout(hidden_dropout)
        self.norm = nn.LayerNorm(hidden_size, eps=LAYER_NORM_EPS)

    def forward(self, tokens: Tensor, plan: AttentionPlan) -> Tensor:
        qkv = self.query_key_value(tokens)
        contexts = [self._attend_bucket(qkv, bucket) for bucket in plan.buckets]
        if contexts:
            context = torch.cat(contexts).index_select(0, plan.restore_order)
        else:
            context = tokens.new_zeros(tokens.shape)
        return self.norm(tokens + self.output_dropout(self.output(context)))

    def forward_last(self, tokens: Tensor, plan: AttentionPlan) -> tuple[Tensor, Tensor]:
        """The sub-layer's output at each row's last token only, and those tokens' indices.

        Keys and values still come from every token; queries, the output projection and the
        LayerNorm run on one token per row (rows grouped by attention bucket).
        """
        qkv = self.query_key_value(tokens)
        if not plan.buckets:
            empty = torch.zeros(0, dtype=torch.long, device=tokens.device)
            return tokens.new_zeros(0, tokens.shape[1]), empty
        per_bucket = [self._attend_bucket_last(qkv, bucket) for bucket in plan.buckets]
        last = torch.cat([tokens_last for _, tokens_last in per_bucket])
        context = torch.cat([bucket_context for bucket_context, _ in per_bucket])
        residual = tokens.index_select(0, last)
        update = self.output_dropout(self.output(context))
        return self.norm(residual + update), last

    def _bucket_qkv(self, qkv: Tensor, bucket: AttentionBucket) -> tuple[Tensor, Tensor, Tensor]:
        """[M, 3d] packed Q/K/V -> the bucket's query, key, value, each [rows, heads, w, d_h]."""
        grid = qkv.new_zeros(bucket.rows * bucket.width, qkv.shape[1])
        grid.index_copy_(0, bucket.slot, qkv.index_select(0, bucket.token_index))
        grid = grid.view(bucket.rows, bucket.width, 3, self.num_heads, self.head_size)
        query, key, value = grid.permute(2, 0, 3, 1, 4).unbind(0)
        return query, key, value

    def _attend_bucket(self, qkv: Tensor, bucket: AttentionBucket) -> Tensor:
        """[M, 3d] packed Q/K/V -> [M_g, d] attention context of one bucket's tokens."""
        query, key, value = self._bucket_qkv(qkv, bucket)
        context = masked_attention(
            query, key, value, bucket.bias, self.attention_dropout, self.training
        )
        context = context.transpose(1, 2).reshape(bucket.rows * bucket.width, self.hidden_size)
        return context.index_select(0, bucket.slot)

    def _attend_bucket_last(self, qkv: Tensor, bucket: AttentionBucket) -> tuple[Tensor, Tensor]:
        """The context of each bucket row's last token [rows, d], and those tokens' indices.

        Rows are left-padded on the grid, so a row's last token sits in its last column.
        """
        query, key, value = self._bucket_qkv(qkv, bucket)
        context = masked_attention(
            query[:, :, -1:],
            key,
            value,
            bucket.bias[:, :, -1:],
            self.attention_dropout,
            self.training,
        )
        last = bucket.token_index[bucket.slot % bucket.width == bucket.width - 1]
        return context.reshape(bucket.rows, self.hidden_size), last


class TransformerBlock(nn.Module):
    """Self-attention, then the point-wise FFN (the official ``Layer`` with filters off)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.attention = MultiHeadSelfAttention(
            config.hidden_size, config.num_heads, config.attention_dropout, config.hidden_dropout
        )
        self.feed_forward = PointwiseFeedForward(config.hidden_size, config.hidden_dropout)

    def forward(self, tokens: Tensor, plan: AttentionPlan) -> Tensor:
        return self.feed_forward(self.attention(tokens, plan))

    def forward_last(self, tokens: Tensor, plan: AttentionPlan) -> tuple[Tensor, Tensor]:
        """The block's output at each row's last token, and those tokens' indices."""
        attended, last = self.attention.forward_last(tokens, plan)
        return self.feed_forward(attended), last


class SASRec(Backbone):
    """Self-attentive sequential recommendation (Kang & McAuley 2018), the official layout."""

    name: ClassVar[str] = "sasrec"
    supports_trimming: ClassVar[bool] = True
    uses_position_embedding: ClassVar[bool] = True

    def __init__(self, num_items: int, config: ModelConfig, max_len: int) -> None:
        super().__init__(num_items, config, max_len)
        self.input_dropout = FastDropout(config.hidden_dropout)
        self.blocks = nn.ModuleList(TransformerBlock(config) for _ in range(config.num_layers))
        std = config.initializer_range
        self.apply(lambda module: init_normal_(module, std))

    def embed(self, item_ids: Tensor, positions: Tensor) -> Tensor:
        """Dropout(LayerNorm(E[i] + P[t])) as the base class, computed at real items only."""
        return embed_real_items(
            item_ids,
            positions,
            self.item_embedding,
            self.position_embedding,
            lambda tokens: self.input_dropout(self.input_norm(tokens)),
        )

    def encode(self, inputs: Tensor, padding_mask: Tensor) -> Tensor:
        # states at real positions never read padding, so only real tokens are computed
        layout = TokenLayout.from_mask(padding_mask)
        plan = AttentionPlan.build(layout, inputs.dtype)
        tokens = layout.pack(inputs)
        for block in self.blocks:
            tokens = block(tokens, plan)
        return layout.unpack(tokens)

    def encode_last(self, inputs: Tensor, padding_mask: Tensor) -> Tensor:
        """The last block runs its queries, projection and FFN on each row's last token only:
        ranking reads nothing else, and on Beauty that is ~1 token in 9."""
        layout = TokenLayout.from_mask(padding_mask)
        plan = AttentionPlan.build(layout, inputs.dtype)
        tokens = layout.pack(inputs)
        *earlier, final = self.blocks
        for block in earlier:
            tokens = block(tokens, plan)
        assert isinstance(final, TransformerBlock)
        states, last = final.forward_last(tokens, plan)
        out = states.new_zeros(layout.batch_size, states.shape[1])
        return out.index_copy_(0, layout.row_of_token().index_select(0, last), states)


__all__ = [
    "MASKED_SCORE",
    "MIN_BUCKET_WIDTH",
    "AttentionPlan",
    "MultiHeadSelfAttention",
    "SASRec",
    "causal_padding_bias",
    "masked_attention",
]
