"""Why FMLP-Rec cannot skip its padding (docs/benchmarks.md, FMLP-Rec and padding).

Its filter ``irfft(rfft(x) * W)`` over the L positions is a circular convolution with the
kernel ``h = irfft(W)``: ``y[t] = sum_s h[(t - s) mod L] x[s]``. Zero padding alone would be
harmless to one filter, but the padding is not zero (the input layer puts LayerNorm(P[t])
there) and each block writes non-zero values into it (the wrap-around, LayerNorm, FFN), which
the next block reads at the real positions.
"""

from __future__ import annotations

import torch

from faerec.config import ModelConfig
from faerec.models.backbones.fmlprec import FMLPRec, FrequencyFilter

LENGTH = 12
REAL = 4  # real items at the last REAL positions, padding before them


def _model() -> FMLPRec:
    torch.manual_seed(0)
    model = FMLPRec(30, ModelConfig(hidden_size=16, num_layers=2), LENGTH)
    return model.eval()


def _inputs(model: FMLPRec) -> tuple[torch.Tensor, torch.Tensor]:
    ids = torch.tensor([[0] * (LENGTH - REAL) + [3, 7, 11, 5]])
    with torch.no_grad():
        return model.embed(ids, torch.arange(LENGTH)), ids != 0


def test_filter_is_a_circular_convolution_with_the_inverse_transform_of_its_weights() -> None:
    torch.manual_seed(1)
    layer = FrequencyFilter(LENGTH, 16, 0.0)
    x = torch.randn(2, LENGTH, 16, dtype=torch.float64)
    kernel = torch.fft.irfft(torch.view_as_complex(layer.complex_weight.double()), n=LENGTH, dim=1)
    lags = (torch.arange(LENGTH)[:, None] - torch.arange(LENGTH)[None, :]) % LENGTH  # [t, s]
    expected = torch.einsum("tsd,bsd->btd", kernel[0][lags], x)
    with torch.no_grad():
        weight = torch.view_as_complex(layer.complex_weight.double())
        spectrum = torch.fft.rfft(x, dim=1, norm="ortho") * weight
        filtered = torch.fft.irfft(spectrum, n=LENGTH, dim=1, norm="ortho")
    assert torch.allclose(filtered, expected, atol=1e-12)


def test_the_input_layer_puts_non_zero_vectors_at_padding_positions() -> None:
    model = _model()
    inputs, real = _inputs(model)
    assert inputs[0, ~real[0]].abs().sum(dim=-1).min() > 0.1


def test_real_states_change_with_what_sits_at_the_padding_positions() -> None:
    model = _model()
    inputs, real = _inputs(model)
    zeroed = inputs.masked_fill(~real.unsqueeze(-1), 0.0)
    with torch.no_grad():
        official = model.encode(inputs, real)[0, -REAL:]
        skipped = model.encode(zeroed, real)[0, -REAL:]
    assert (official - skipped).abs().max() > 1e-3


def test_a_block_writes_non_zero_values_into_zero_padding() -> None:
    model = _model()
    inputs, real = _inputs(model)
    zeroed = inputs.masked_fill(~real.unsqueeze(-1), 0.0)
    with torch.no_grad():
        after_first = model.blocks[0](zeroed)
    assert after_first[0, ~real[0]].abs().sum(dim=-1).min() > 0.1
