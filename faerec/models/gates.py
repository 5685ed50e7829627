"""Fusion gates: how much of each item view enters the encoder, per token (spec 1.2).

Every gate maps ``(x_id, x_llm)`` of shape [B, T, d] to ``g`` in (0, 1), broadcastable to
[B, T, d]; FAERec fuses ``g * x_id + (1 - g) * x_llm``.

* ``dimension`` (official): a per-token, per-dimension MLP on the concatenated views.
* ``scalar`` (this project's own definition; the official ``simple`` gate is parsed but not
  implemented): one logistic gate per token, shared by all dimensions.
* ``bilinear`` (this project's own definition, also unimplemented upstream): one bilinear form
  per output dimension, ``g_k = sigmoid(x_id^T W_k x_llm + b_k)``.
* ``none``: a fixed even mix, ``g = 0.5`` (the no-gate ablation).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from faerec.config import GATES
from faerec.errors import ConfigError
from faerec.models.layers import FastDropout


class DimensionGate(nn.Module):
    """``sigmoid(W2 Dropout(GELU(W1 [x_id; x_llm] + b1)) + b2)`` with W1 2d->2d, W2 2d->d.

    The official code builds this after its weight init, so the Linear layers keep PyTorch's
    default init; the last bias is zeroed so that the gate starts near 0.5. The dropout is the
    backbones' ``FastDropout``: the distribution of ``nn.Dropout``, cheaper on CPU.
    """

    def __init__(self, hidden_size: int, dropout: float) -> None:
        super().__init__()
        self.hidden = nn.Linear(2 * hidden_size, 2 * hidden_size)
        self.activation = nn.GELU()
        self.dropout = FastDropout(dropout)
        self.output = nn.Linear(2 * hidden_size, hidden_size)
        with torch.no_grad():
            self.output.bias.zero_()

    def forward(self, x_id: Tensor, x_llm: Tensor) -> Tensor:
        joint = torch.cat([x_id, x_llm], dim=-1)
        return torch.sigmoid(self.output(self.dropout(self.activation(self.hidden(joint)))))


class ScalarGate(nn.Module):
    """Ours: ``g = sigmoid(w^T [x_id; x_llm] + b)``, one value per token ([B, T, 1])."""

    def __init__(self, hidden_size: int) -> None:
        super().__init__()
        self.score = nn.Linear(2 * hidden_size, 1)

    def forward(self, x_id: Tensor, x_llm: Tensor) -> Tensor:
        return torch.sigmoid(self.score(torch.cat([x_id, x_llm], dim=-1)))


class BilinearGate(nn.Module):
    """Ours: ``g_k = sigmoid(x_id^T W_k x_llm + b_k)`` for k = 1..d (``nn.Bilinear(d, d, d)``)."""

    def __init__(self, hidden_size: int) -> None:
        super().__init__()
        self.form = nn.Bilinear(hidden_size, hidden_size, hidden_size)

    def forward(self, x_id: Tensor, x_llm: Tensor) -> Tensor:
        return torch.sigmoid(self.form(x_id, x_llm))


class FixedGate(nn.Module):
    """The no-gate ablation: both views weighted 0.5, no parameters."""

    def __init__(self, value: float = 0.5) -> None:
        super().__init__()
        self.value = value

    def forward(self, x_id: Tensor, x_llm: Tensor) -> Tensor:
        return x_id.new_full((1,) * x_id.dim(), self.value)


def build_gate(kind: str, hidden_size: int, dropout: float) -> nn.Module:
    """The gate named by ``faerec.gate``; ``dropout`` only applies to the dimension gate."""
    if kind == "dimension":
        return DimensionGate(hidden_size, dropout)
    if kind == "scalar":
        return ScalarGate(hidden_size)
    if kind == "bilinear":
        return BilinearGate(hidden_size)
    if kind == "none":
        return FixedGate()
    raise ConfigError(f"faerec.gate: expected one of {', '.join(GATES)}, got {kind!r}")


__all__ = ["BilinearGate", "DimensionGate", "FixedGate", "ScalarGate", "build_gate"]
