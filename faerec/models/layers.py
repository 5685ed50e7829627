"""Layers shared by the backbones and by FAERec.

They live here, not under ``faerec/models/backbones/``, so that FAERec and its gates never
import a backbone module: FAERec must work with any encoder it is given (see
``docs/architecture.md``; ``tests/test_layering.py`` enforces it).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def fast_dropout(values: Tensor, p: float, training: bool) -> Tensor:
    """Inverted dropout with the same distribution as ``F.dropout``, about twice as fast on CPU
    forward plus backward (``torch.rand_like`` and a threshold instead of ``bernoulli_``)."""
    if not training or p == 0.0:
        return values
    if p >= 1.0:
        return torch.zeros_like(values)
    keep_scale = torch.rand_like(values).ge_(p).mul_(1.0 / (1.0 - p))
    return values * keep_scale


class FastDropout(nn.Dropout):
    """``nn.Dropout`` computed by :func:`fast_dropout` (drop-in: same class, same argument)."""

    def forward(self, input: Tensor) -> Tensor:
        return fast_dropout(input, self.p, self.training)
