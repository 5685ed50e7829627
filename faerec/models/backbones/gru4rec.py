"""GRU4Rec: a recurrent baseline (Hidasi et al. 2016, in RecBole's layout).

Not part of the official FAERec code (this project's addition): embedding dropout, a
``num_layers`` GRU of width d, and a Linear projection back to d. The input layer is
Dropout(E[i]) with no LayerNorm and no positions, as in RecBole's GRU4Rec.

Padding. A GRU fed padding embeddings would still move its state (through its biases), which
would make real states depend on the amount of left padding. So each row is rotated to put its
real items first and the GRU runs on a packed sequence of the real items only, from a zero
state: real states are independent of the padding (trimming is exact), padding is never
computed, and states at padding positions are returned as zeros.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from faerec.config import ModelConfig
from faerec.models.backbones.layers import (
    TokenLayout,
    embed_real_items,
    init_normal_,
)
from faerec.models.base import Backbone
from faerec.models.layers import FastDropout


def rotate_rows(values: Tensor, shifts: Tensor) -> Tensor:
    """Row b of [B, T, d] ``values`` rotated left by ``shifts[b]``: out[b, t] = values[b, t+s]."""
    length = values.shape[1]
    steps = torch.arange(length, device=values.device)
    index = (steps.unsqueeze(0) + shifts.unsqueeze(1)) % length  # [B, T]
    return values.gather(1, index.unsqueeze(-1).expand(-1, -1, values.shape[2]))


class GRU4Rec(Backbone):
    """GRU over the item sequence, independent of left padding."""

    name: ClassVar[str] = "gru4rec"
    supports_trimming: ClassVar[bool] = True
    uses_position_embedding: ClassVar[bool] = False

    def __init__(self, num_items: int, config: ModelConfig, max_len: int) -> None:
        super().__init__(num_items, config, max_len)
        width = config.hidden_size
        self.input_dropout = FastDropout(config.hidden_dropout)
        self.gru = nn.GRU(width, width, num_layers=config.num_layers, batch_first=True, bias=True)
        self.projection = nn.Linear(width, width)
        std = config.initializer_range
        self.apply(lambda module: init_normal_(module, std))
        # recurrent matrices: Xavier-uniform as in RecBole (N(0, 0.02) would nearly freeze them)
        for name, parameter in self.gru.named_parameters():
            if name.startswith("weight_"):
                nn.init.xavier_uniform_(parameter)

    def embed(self, item_ids: Tensor, positions: Tensor) -> Tensor:
        """RecBole's GRU4Rec input layer, Dropout(E[i]) with no LayerNorm and no positions,
        computed at real items only (padding inputs are never read)."""
        return embed_real_items(item_ids, positions, self.item_embedding, None, self.input_dropout)

    def encode(self, inputs: Tensor, padding_mask: Tensor) -> Tensor:
        length = inputs.shape[1]
        real_per_row = padding_mask.sum(dim=1)
        real_first = rotate_rows(inputs, length - real_per_row)
        # an empty row still needs one step; its output lands on a padding position
        packed = pack_padded_sequence(
            real_first, real_per_row.clamp_min(1).cpu(), batch_first=True, enforce_sorted=False
        )
        # the recurrence in float32 even under bf16 autocast: errors compound over the steps,
        # and cuDNN's packed RNN is not sure to take bfloat16
        with torch.autocast(inputs.device.type, enabled=False):
            outputs, _ = self.gru(packed)
        outputs, _ = pad_packed_sequence(outputs, batch_first=True, total_length=length)
        outputs = rotate_rows(outputs, real_per_row)
        layout = TokenLayout.from_mask(padding_mask)
        return layout.unpack(self.projection(layout.pack(outputs)))


__all__ = ["GRU4Rec", "rotate_rows"]
