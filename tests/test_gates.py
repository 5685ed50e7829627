"""Each fusion gate against values computed by hand on tiny tensors with set weights."""

from __future__ import annotations

import math

import pytest
import torch

from faerec.errors import ConfigError
from faerec.models.gates import (
    BilinearGate,
    DimensionGate,
    FixedGate,
    ScalarGate,
    build_gate,
)


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def _gelu(x: float) -> float:
    return 0.5 * x * (1.0 + math.erf(x / math.sqrt(2.0)))


X_ID = torch.tensor([[[1.0, -2.0]]])  # [B=1, T=1, d=2]
X_LLM = torch.tensor([[[0.5, 3.0]]])


def test_dimension_gate_by_hand() -> None:
    gate = DimensionGate(hidden_size=2, dropout=0.1).eval()
    with torch.no_grad():
        gate.hidden.weight.copy_(
            torch.tensor(
                [
                    [0.1, 0.2, 0.3, 0.4],
                    [-0.5, 0.0, 0.5, 0.0],
                    [0.0, 1.0, 0.0, -1.0],
                    [0.2, 0.2, 0.2, 0.2],
                ]
            )
        )
        gate.hidden.bias.copy_(torch.tensor([0.1, -0.1, 0.0, 0.3]))
        gate.output.weight.copy_(torch.tensor([[1.0, 0.0, -1.0, 0.5], [0.0, 2.0, 0.0, -0.5]]))
        gate.output.bias.copy_(torch.tensor([0.2, -0.3]))
    joint = [1.0, -2.0, 0.5, 3.0]
    hidden = [
        0.1 * 1 + 0.2 * -2 + 0.3 * 0.5 + 0.4 * 3 + 0.1,
        -0.5 * 1 + 0.5 * 0.5 - 0.1,
        1.0 * -2 - 1.0 * 3 + 0.0,
        0.2 * sum(joint) + 0.3,
    ]
    activated = [_gelu(h) for h in hidden]
    expected = [
        _sigmoid(activated[0] - activated[2] + 0.5 * activated[3] + 0.2),
        _sigmoid(2.0 * activated[1] - 0.5 * activated[3] - 0.3),
    ]
    g = gate(X_ID, X_LLM)
    assert g.shape == (1, 1, 2)
    assert g.flatten().tolist() == pytest.approx(expected, rel=1e-6)


def test_dimension_gate_starts_with_zero_output_bias_and_shapes() -> None:
    gate = DimensionGate(hidden_size=8, dropout=0.1)
    assert torch.equal(gate.output.bias, torch.zeros(8))
    assert gate.hidden.in_features == 16 and gate.hidden.out_features == 16
    assert gate.output.in_features == 16 and gate.output.out_features == 8
    assert gate.dropout.p == 0.1


def test_scalar_gate_by_hand_is_one_value_per_token() -> None:
    gate = ScalarGate(hidden_size=2)
    with torch.no_grad():
        gate.score.weight.copy_(torch.tensor([[0.5, 0.25, -1.0, 0.1]]))
        gate.score.bias.copy_(torch.tensor([0.05]))
    expected = _sigmoid(0.5 * 1 + 0.25 * -2 - 1.0 * 0.5 + 0.1 * 3 + 0.05)
    g = gate(X_ID, X_LLM)
    assert g.shape == (1, 1, 1)
    assert float(g.detach()) == pytest.approx(expected, rel=1e-6)
    fused = g * X_ID + (1 - g) * X_LLM  # broadcasts over the d dimensions
    assert fused.shape == (1, 1, 2)


def test_bilinear_gate_by_hand() -> None:
    gate = BilinearGate(hidden_size=2, rank=2)
    with torch.no_grad():
        gate.left.weight.copy_(torch.tensor([[1.0, 0.0], [0.5, 0.5]]))  # u_1, u_2
        gate.right.weight.copy_(torch.tensor([[0.0, 1.0], [2.0, 0.0]]))  # v_1, v_2
        gate.output.weight.copy_(torch.tensor([[1.0, -1.0], [0.2, 0.3]]))  # P
        gate.output.bias.copy_(torch.tensor([0.1, -0.1]))
    # x_id = (1, -2), x_llm = (0.5, 3): u.x_id = (1, -0.5), v.x_llm = (3, 1), products (3, -0.5)
    g = gate(X_ID, X_LLM)
    assert g.shape == (1, 1, 2)
    assert g.flatten().tolist() == pytest.approx(
        [_sigmoid(3.0 + 0.5 + 0.1), _sigmoid(0.6 - 0.15 - 0.1)], rel=1e-6
    )


def test_bilinear_gate_is_the_bilinear_form_of_its_factors() -> None:
    torch.manual_seed(0)
    gate = BilinearGate(hidden_size=6, rank=3)
    x_id, x_llm = torch.randn(2, 4, 6), torch.randn(2, 4, 6)
    u, v, p = gate.left.weight, gate.right.weight, gate.output.weight
    forms = torch.einsum("kj,ja,jb->kab", p, u, v)  # W_k = sum_j P_kj u_j v_j^T, rank <= 3
    logits = torch.einsum("nta,kab,ntb->ntk", x_id, forms, x_llm) + gate.output.bias
    assert torch.allclose(gate(x_id, x_llm), torch.sigmoid(logits), atol=1e-6)
    assert int(torch.linalg.matrix_rank(forms[0])) <= 3


def test_bilinear_gate_parameters_grow_as_rank_times_width() -> None:
    gate = BilinearGate(hidden_size=128)
    assert gate.rank == 32
    assert sum(p.numel() for p in gate.parameters()) == 3 * 32 * 128 + 128  # d^3 = 2,097,152
    assert BilinearGate(hidden_size=2).rank == 1


def test_bilinear_gate_values_lie_in_the_open_unit_interval() -> None:
    torch.manual_seed(1)
    gate = BilinearGate(hidden_size=16)
    with torch.no_grad():
        g = gate(torch.randn(4, 5, 16), torch.randn(4, 5, 16))
    assert g.shape == (4, 5, 16)
    assert bool(((g > 0) & (g < 1)).all())
    assert abs(float(g.mean()) - 0.5) < 0.1  # zero bias: it starts near an even mix


def test_bilinear_gate_passes_gradients_to_both_views_and_every_weight() -> None:
    torch.manual_seed(2)
    gate = BilinearGate(hidden_size=8)
    x_id = torch.randn(2, 3, 8, requires_grad=True)
    x_llm = torch.randn(2, 3, 8, requires_grad=True)
    gate(x_id, x_llm).sum().backward()
    for tensor in (x_id, x_llm, *gate.parameters()):
        assert tensor.grad is not None and bool(tensor.grad.abs().sum() > 0)


def test_no_gate_is_an_even_mix_without_parameters() -> None:
    gate = FixedGate()
    assert list(gate.parameters()) == []
    g = gate(X_ID, X_LLM)
    fused = g * X_ID + (1 - g) * X_LLM
    assert torch.allclose(fused, (X_ID + X_LLM) / 2)


def test_dimension_gate_dropout_only_in_training() -> None:
    torch.manual_seed(0)
    gate = DimensionGate(hidden_size=4, dropout=0.5)
    x_id, x_llm = torch.randn(2, 3, 4), torch.randn(2, 3, 4)
    gate.eval()
    assert torch.equal(gate(x_id, x_llm), gate(x_id, x_llm))
    gate.train()
    assert not torch.equal(gate(x_id, x_llm), gate(x_id, x_llm))


@pytest.mark.parametrize(
    ("kind", "cls"),
    [
        ("dimension", DimensionGate),
        ("scalar", ScalarGate),
        ("bilinear", BilinearGate),
        ("none", FixedGate),
    ],
)
def test_build_gate_by_name(kind: str, cls: type) -> None:
    assert isinstance(build_gate(kind, 4, 0.1), cls)


def test_unknown_gate_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="faerec.gate"):
        build_gate("simple", 4, 0.1)
