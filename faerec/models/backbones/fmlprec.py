"""FMLP-Rec: the SASRec encoder with each attention sub-layer replaced by a learnable
frequency-domain filter (Zhou et al. 2022; docs/method.md §Backbones).

Each filter layer is ``LN(x + Drop(irfft(rfft(x) * W)))`` over the sequence dimension, with a
learnable complex weight W of shape (1, L//2 + 1, d). Two properties are inherited from the
official code and kept for parity (docs/method.md §Backbones):

* **No mask.** The FFT mixes all positions, so during training the state at position t sees
  items after t (future leakage), and real states depend on the padding inputs. Evaluation is
  unaffected: the input excludes the target and only the last position is used.
* **Fixed length.** W has one entry per frequency of a length-L signal, so the encoder only
  accepts sequences of exactly ``max_len`` and cannot be trimmed (``supports_trimming=False``).
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor, nn

from faerec.config import ModelConfig
from faerec.models.backbones.layers import (
    LAYER_NORM_EPS,
    PointwiseFeedForward,
    init_normal_,
)
from faerec.models.base import Backbone
from faerec.models.layers import FastDropout

#: std of the random init of the filter weights (hard-coded in the official code).
FILTER_INIT_STD = 0.02


class FrequencyFilter(nn.Module):
    """The official ``FilterLayer``: a global, per-channel, learnable filter over time."""

    def __init__(self, seq_len: int, hidden_size: int, dropout: float) -> None:
        super().__init__()
        self.seq_len = seq_len
        # (real, imaginary) in the last axis: a real Parameter that any optimiser handles
        self.complex_weight = nn.Parameter(
            torch.randn(1, seq_len // 2 + 1, hidden_size, 2) * FILTER_INIT_STD
        )
        self.dropout = FastDropout(dropout)
        self.norm = nn.LayerNorm(hidden_size, eps=LAYER_NORM_EPS)

    def filter(self, hidden: Tensor) -> Tensor:
        """[B, L, d] -> [B, L, d]: the filtered signal, before dropout, residual and LN."""
        length = hidden.shape[1]
        if length != self.seq_len:
            raise ValueError(
                f"FMLP-Rec filters are built for sequences of length {self.seq_len}, got {length}"
            )
        spectrum = torch.fft.rfft(hidden, dim=1, norm="ortho")
        spectrum = spectrum * torch.view_as_complex(self.complex_weight)
        return torch.fft.irfft(spectrum, n=length, dim=1, norm="ortho")

    def forward(self, hidden: Tensor) -> Tensor:
        return self.norm(hidden + self.dropout(self.filter(hidden)))


class FilterBlock(nn.Module):
    """Frequency filter, then the point-wise FFN (the official ``Layer`` with filters on)."""

    def __init__(self, config: ModelConfig, seq_len: int) -> None:
        super().__init__()
        self.filter = FrequencyFilter(seq_len, config.hidden_size, config.hidden_dropout)
        self.feed_forward = PointwiseFeedForward(config.hidden_size, config.hidden_dropout)

    def forward(self, hidden: Tensor) -> Tensor:
        return self.feed_forward(self.filter(hidden))


class FMLPRec(Backbone):
    """Filter-enhanced MLP for sequential recommendation, the official layout."""

    name: ClassVar[str] = "fmlprec"
    supports_trimming: ClassVar[bool] = False
    uses_position_embedding: ClassVar[bool] = True

    def __init__(self, num_items: int, config: ModelConfig, max_len: int) -> None:
        super().__init__(num_items, config, max_len)
        self.input_dropout = FastDropout(config.hidden_dropout)
        self.blocks = nn.ModuleList(FilterBlock(config, max_len) for _ in range(config.num_layers))
        std = config.initializer_range
        # the filter weights are plain Parameters, so this leaves their N(0, 0.02) init alone
        self.apply(lambda module: init_normal_(module, std))

    def encode(self, inputs: Tensor, padding_mask: Tensor) -> Tensor:
        # padding_mask is deliberately unused: the official FMLP-Rec applies no mask
        hidden = inputs
        for block in self.blocks:
            hidden = block(hidden)
        return hidden


__all__ = ["FILTER_INIT_STD", "FMLPRec", "FrequencyFilter"]
