"""Fusion gates: how much of each item view enters the encoder, per token.

Every gate maps ``(x_id, x_llm)`` of shape [B, T, d] to ``g`` in (0, 1), broadcastable to
[B, T, d]; FAERec fuses ``g * x_id + (1 - g) * x_llm``.

* ``dimension`` (official): a per-token, per-dimension MLP on the concatenated views.
* ``scalar`` (this project's own definition; the official ``simple`` gate is parsed but not
  implemented): one logistic gate per token, shared by all dimensions.
* ``bilinear`` (this project's own definition, also unimplemented upstream): one low-rank
  bilinear form per output dimension, ``g_k = sigmoid(x_id^T W_k x_llm + b_k)`` with every
  ``W_k`` built from ``r`` shared rank-one terms (see :class:`BilinearGate`).
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


def bilinear_rank(hidden_size: int) -> int:
    """The rank of the bilinear gate: a quarter of the width (32 at d = 128), at least 1."""
    return max(1, hidden_size // 4)


class BilinearGate(nn.Module):
    """Ours: a rank-``r`` bilinear gate, ``g = sigmoid(P ((U x_id) * (V x_llm)) + b)``.

    Per output dimension k this is ``g_k = sigmoid(sum_j P_kj (u_j . x_id)(v_j . x_llm) + b_k)``,
    i.e. the bilinear form ``x_id^T W_k x_llm + b_k`` with ``W_k = sum_j P_kj u_j v_j^T``: every
    ``W_k`` has rank at most ``r`` and all d of them share the r factor pairs (u_j, v_j). This is
    this project's own definition. The full form (``nn.Bilinear(d, d, d)``, one free d x d
    matrix per dimension) has d^3 weights (2.1 M at d = 128) and made a Beauty training batch
    20-30 times slower than the dimension gate; the factorised one has ``3 r d + d`` weights
    (12.4 k at d = 128, r = 32), costs about ``3 r d`` multiply-adds per token, and trains as fast
    as the other gates (benchmarks/bench_gates.py, docs/benchmarks.md).
    U, V and P keep PyTorch's default init and the bias starts at zero, so the gate starts
    near 0.5 like the dimension gate.
    """

    def __init__(self, hidden_size: int, rank: int | None = None) -> None:
        super().__init__()
        self.rank = bilinear_rank(hidden_size) if rank is None else rank
        if self.rank < 1:
            raise ValueError(f"BilinearGate: rank must be >= 1, got {self.rank}")
        self.left = nn.Linear(hidden_size, self.rank, bias=False)  # U: x_id -> r
        self.right = nn.Linear(hidden_size, self.rank, bias=False)  # V: x_llm -> r
        self.output = nn.Linear(self.rank, hidden_size)  # P and b: r -> d
        with torch.no_grad():
            self.output.bias.zero_()

    def forward(self, x_id: Tensor, x_llm: Tensor) -> Tensor:
        return torch.sigmoid(self.output(self.left(x_id) * self.right(x_llm)))


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


__all__ = [
    "BilinearGate",
    "DimensionGate",
    "FixedGate",
    "ScalarGate",
    "bilinear_rank",
    "build_gate",
]
