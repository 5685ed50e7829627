"""LRURec: linear recurrent units for sequential recommendation (Yue et al. 2024;
docs/method.md §Backbones).

Each block is an LRU layer followed by the point-wise FFN. The LRU layer runs a complex
diagonal linear recurrence over a state of width N = 2d,

    h_t = lambda * h_{t-1} + gamma * (B x_t + b),        y_t = Re(C h_t + c),

and returns ``LN(x + Drop(y))``. lambda = exp(-exp(nu_log) + i exp(theta_log)) is initialised
on a ring (|lambda| in [0.8, 0.99], phase in [0, 2 pi)) and gamma = sqrt(1 - |lambda|^2) keeps
the state's scale. The complex projections are held as real Linears on stacked
(real, imaginary) parts, which is the same function with the same init distribution.

The recurrence runs on the real items only, packed back to back (one segment per sequence),
with a log-depth parallel scan (:func:`segmented_linear_scan`); encoder states at padding
positions are returned as zeros.

Padding. Each sequence's state starts from zero at its first real item, so the state at a real
position depends only on real items. The official code instead runs over the padded grid
(left-padded to a power of two) and drops the carry out of a padding position; with left
padding both give the same states at every real position. They differ only at padding
positions (here 0, officially a function of the padding input), which no loss or score reads.
Hence ``supports_trimming=True`` and trimming is exact. The input layer likewise computes
LayerNorm(Dropout(E[i])) (the official order) at real items only.

Init: weights of every Linear and Embedding ~ N(0, std) truncated to +-2 std (+-0.04), biases 0,
LayerNorm (1, 0); nu/theta/gamma keep the ring init. This is FAERec's LRURec
(``FAERec/src/models.py``). The authors' plain LRURec (``Backbone/src``) truncates only the
complex LRU projections and draws the other weights from the untruncated N(0, std), a
difference of 5% of the draws beyond +-2 std; ``model.truncated_init=false`` does that, and
the official preset of the plain LRURec sets it.
"""

from __future__ import annotations

import math
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
    init_truncated_normal_,
)
from faerec.models.base import Backbone
from faerec.models.layers import FastDropout

#: Ring of the initial eigenvalue magnitudes (the official values).
RADIUS_MIN = 0.8
RADIUS_MAX = 0.99


def segmented_linear_scan(inputs: Tensor, decay: Tensor, step_in_segment: Tensor) -> Tensor:
    """h_i = decay * h_{i-1} + inputs_i along dim 0, restarting from h = 0 at every segment.

    ``inputs`` [M, N] (complex or real) holds segments back to back (here: the real items of
    each sequence, in time order); ``decay`` is [N]; ``step_in_segment`` [M] long counts
    0, 1, 2, ... within each segment. A Hillis-Steele scan in ceil(log2(longest segment))
    vectorised steps: after the step with offset k, h_i holds the decayed sum of the last 2k
    inputs of its own segment, so doubling k covers every segment. Only rows with
    ``step_in_segment >= k`` take a contribution from k rows back (the same segment); the
    others are left alone, which also skips most of the work on short sequences.
    """
    if inputs.shape[0] == 0:
        return inputs
    longest = int(step_in_segment.max()) + 1
    states = inputs
    power = decay  # decay ** offset
    offset = 1
    while offset < longest:
        receivers = torch.nonzero(step_in_segment >= offset).squeeze(1)
        carried = power * states.index_select(0, receivers - offset)
        states = states.index_add(0, receivers, carried)
        power = power * power
        offset *= 2
    return states


class LinearRecurrentUnit(nn.Module):
    """The official ``LRULayer``: LRU recurrence, output projection, dropout, residual, LN.

    Works on packed real tokens [M, d] (see :class:`TokenLayout`), one segment per sequence.
    """

    def __init__(self, hidden_size: int, dropout: float) -> None:
        super().__init__()
        self.state_size = 2 * hidden_size
        radius_sq = torch.rand(self.state_size) * (RADIUS_MAX**2 - RADIUS_MIN**2) + RADIUS_MIN**2
        phase = torch.rand(self.state_size).clamp_min(1e-6) * (2 * math.pi)
        nu = -0.5 * torch.log(radius_sq)  # |lambda| = exp(-nu)
        self.nu_log = nn.Parameter(torch.log(nu))
        self.theta_log = nn.Parameter(torch.log(phase))
        self.gamma_log = nn.Parameter(0.5 * torch.log(1 - radius_sq))
        # B x + b as [real parts | imaginary parts]
        self.input_projection = nn.Linear(hidden_size, 2 * self.state_size)
        # Re(C h + c) = C_re h_re - C_im h_im + c_re, as one real Linear on [h_re | h_im]
        self.output_projection = nn.Linear(2 * self.state_size, hidden_size)
        self.dropout = FastDropout(dropout)
        self.norm = nn.LayerNorm(hidden_size, eps=LAYER_NORM_EPS)

    def eigenvalues(self) -> Tensor:
        """[N] complex lambda of the diagonal recurrence."""
        return torch.polar(torch.exp(-torch.exp(self.nu_log)), torch.exp(self.theta_log))

    def driving_inputs(self, tokens: Tensor) -> Tensor:
        """[M, d] -> [M, N] complex gamma * (B x + b)."""
        real, imaginary = self.input_projection(tokens).chunk(2, dim=-1)
        # complex64 even when autocast made the projection bfloat16 (there is no complex bf16,
        # and the recurrence is the step that needs the precision)
        return torch.complex(real.float(), imaginary.float()) * torch.exp(self.gamma_log)

    def recurrent_states(self, tokens: Tensor, step_in_sequence: Tensor) -> Tensor:
        """[M, d] packed tokens, [M] step of each within its sequence -> [M, N] complex states."""
        return segmented_linear_scan(
            self.driving_inputs(tokens), self.eigenvalues(), step_in_sequence
        )

    def forward(self, tokens: Tensor, step_in_sequence: Tensor) -> Tensor:
        states = self.recurrent_states(tokens, step_in_sequence)
        output = self.output_projection(torch.cat([states.real, states.imag], dim=-1))
        return self.norm(tokens + self.dropout(output))


class LRUBlock(nn.Module):
    """LRU layer, then the point-wise FFN (the official ``LRUBlock``)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.recurrence = LinearRecurrentUnit(config.hidden_size, config.hidden_dropout)
        self.feed_forward = PointwiseFeedForward(config.hidden_size, config.hidden_dropout)

    def forward(self, tokens: Tensor, step_in_sequence: Tensor) -> Tensor:
        return self.feed_forward(self.recurrence(tokens, step_in_sequence))


class LRURec(Backbone):
    """LRURec as in the official code: no position embeddings, truncated-normal init."""

    name: ClassVar[str] = "lrurec"
    supports_trimming: ClassVar[bool] = True
    uses_position_embedding: ClassVar[bool] = False

    def __init__(self, num_items: int, config: ModelConfig, max_len: int) -> None:
        super().__init__(num_items, config, max_len)
        self.input_dropout = FastDropout(config.hidden_dropout)
        self.blocks = nn.ModuleList(LRUBlock(config) for _ in range(config.num_layers))
        std = config.initializer_range
        # touches Linear/Embedding/LayerNorm only: nu/theta/gamma keep their ring init
        if config.truncated_init:
            self.apply(lambda module: init_truncated_normal_(module, std))
        else:  # the authors' plain LRURec: only its complex LRU projections are cut
            self.apply(lambda module: init_normal_(module, std))
            for unit in self.modules():
                if isinstance(unit, LinearRecurrentUnit):
                    init_truncated_normal_(unit.input_projection, std)
                    init_truncated_normal_(unit.output_projection, std)

    def embed(self, item_ids: Tensor, positions: Tensor) -> Tensor:
        """The official LRURec input layer, LayerNorm(Dropout(E[i])) with no positions, computed
        at real items only (padding inputs are never read)."""
        return embed_real_items(
            item_ids,
            positions,
            self.item_embedding,
            None,
            lambda tokens: self.input_norm(self.input_dropout(tokens)),
        )

    def encode(self, inputs: Tensor, padding_mask: Tensor) -> Tensor:
        layout = TokenLayout.from_mask(padding_mask)
        tokens = layout.pack(inputs)
        for block in self.blocks:
            tokens = block(tokens, layout.step_in_sequence)
        return layout.unpack(tokens)


__all__ = ["LRURec", "LinearRecurrentUnit", "segmented_linear_scan"]
