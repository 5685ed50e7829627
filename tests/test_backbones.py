"""Backbone encoders: shapes, padding/trimming invariance, causality, the LRU scan, the FMLP
filter, initialisation, learning and determinism (docs/method.md §Backbones)."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from faerec.config import ModelConfig
from faerec.errors import ConfigError
from faerec.models.backbones import BACKBONE_CLASSES, build_backbone
from faerec.models.backbones.fmlprec import FilterBlock, FMLPRec
from faerec.models.backbones.gru4rec import GRU4Rec
from faerec.models.backbones.layers import TokenLayout
from faerec.models.backbones.lrurec import LRUBlock, LRURec, segmented_linear_scan
from faerec.models.backbones.sasrec import SASRec, TransformerBlock
from faerec.models.base import Backbone, PlainRecommender, TrainBatch

NUM_ITEMS = 40
MAX_LEN = 12
HIDDEN = 16
ALL_BACKBONES = sorted(BACKBONE_CLASSES)
TRIMMABLE = [name for name in ALL_BACKBONES if BACKBONE_CLASSES[name].supports_trimming]


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """Small tensors: one thread is faster on a shared machine; restore it for other files."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def small_config(backbone: str, dropout: float = 0.3) -> ModelConfig:
    return ModelConfig(
        backbone=backbone,
        hidden_size=HIDDEN,
        num_layers=2,
        num_heads=2,
        hidden_dropout=dropout,
        attention_dropout=dropout,
    )


def make_backbone(
    name: str, seed: int = 0, dropout: float = 0.3, max_len: int = MAX_LEN
) -> Backbone:
    torch.manual_seed(seed)
    return build_backbone(small_config(name, dropout), NUM_ITEMS, max_len)


def left_padded_ids(lengths: list[int], seed: int = 1, width: int = MAX_LEN) -> Tensor:
    """[len(lengths), width] random item ids, row b holding lengths[b] items at the right."""
    generator = torch.Generator().manual_seed(seed)
    ids = torch.zeros(len(lengths), width, dtype=torch.long)
    for row, length in enumerate(lengths):
        if length:
            ids[row, width - length :] = torch.randint(
                1, NUM_ITEMS + 1, (length,), generator=generator
            )
    return ids


def train_batch(input_ids: Tensor, seed: int = 2) -> TrainBatch:
    """Random positives and negatives wherever the input holds a real item."""
    generator = torch.Generator().manual_seed(seed)
    real = input_ids != 0
    pos = torch.randint(1, NUM_ITEMS + 1, input_ids.shape, generator=generator) * real
    neg = torch.randint(1, NUM_ITEMS + 1, input_ids.shape, generator=generator) * real
    return TrainBatch(input_ids=input_ids, target_pos=pos, target_neg=neg)


def sasrec_blocks(backbone: Backbone) -> list[TransformerBlock]:
    assert isinstance(backbone, SASRec)
    return [block for block in backbone.blocks if isinstance(block, TransformerBlock)]


def lru_blocks(backbone: Backbone) -> list[LRUBlock]:
    assert isinstance(backbone, LRURec)
    return [block for block in backbone.blocks if isinstance(block, LRUBlock)]


def fmlp_blocks(backbone: Backbone) -> list[FilterBlock]:
    assert isinstance(backbone, FMLPRec)
    return [block for block in backbone.blocks if isinstance(block, FilterBlock)]


# every row shorter than MAX_LEN, so trimming really cuts columns; rows of <= 8 and of 9 items
# fall in different SASRec attention buckets
LENGTHS = [3, 9, 1, 8, 5, 2]


# --------------------------------------------------------------------------- registry


def test_registry_builds_each_backbone_class() -> None:
    expected = {"sasrec": SASRec, "fmlprec": FMLPRec, "lrurec": LRURec, "gru4rec": GRU4Rec}
    assert expected == BACKBONE_CLASSES
    for name, backbone_class in BACKBONE_CLASSES.items():
        backbone = make_backbone(name)
        assert type(backbone) is backbone_class
        assert backbone.name == name
        assert backbone.item_embedding.weight.shape == (NUM_ITEMS + 2, HIDDEN)
        assert (backbone.position_embedding is not None) == backbone.uses_position_embedding


def test_unknown_backbone_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="model.backbone.*'bert4rec'"):
        build_backbone(ModelConfig(backbone="bert4rec"), NUM_ITEMS, MAX_LEN)


def test_heads_must_divide_hidden_size() -> None:
    with pytest.raises(ConfigError, match="model.num_heads"):
        build_backbone(ModelConfig(hidden_size=10, num_heads=3), NUM_ITEMS, MAX_LEN)


def test_position_embedding_flags_follow_the_official_backbones() -> None:
    assert SASRec.uses_position_embedding and FMLPRec.uses_position_embedding
    assert not LRURec.uses_position_embedding and not GRU4Rec.uses_position_embedding
    assert not FMLPRec.supports_trimming
    assert SASRec.supports_trimming and LRURec.supports_trimming and GRU4Rec.supports_trimming


# --------------------------------------------------------------------------- shapes


@pytest.mark.parametrize("name", ALL_BACKBONES)
def test_encode_shapes_and_finite_states(name: str) -> None:
    backbone = make_backbone(name).eval()
    ids = left_padded_ids([0, *LENGTHS])  # an empty row must not break anything
    positions = torch.arange(MAX_LEN)
    inputs = backbone.embed(ids, positions)
    assert inputs.shape == (len(LENGTHS) + 1, MAX_LEN, HIDDEN)
    states = backbone.encode(inputs, ids != 0)
    assert states.shape == inputs.shape
    assert torch.isfinite(states).all()


@pytest.mark.parametrize("name", ALL_BACKBONES)
def test_encode_last_is_the_last_state_of_encode(name: str) -> None:
    """Ranking reads ``encode_last``: the same vectors as ``encode(...)[:, -1]``, up to float
    rounding (SASRec runs its last block on one token per row), for rows in several attention
    buckets, a full row and an empty one."""
    backbone = make_backbone(name).eval()
    ids = left_padded_ids([0, 12, *LENGTHS])
    with torch.no_grad():
        inputs = backbone.embed(ids, torch.arange(MAX_LEN))
        last = backbone.encode_last(inputs, ids != 0)
        states = backbone.encode(inputs, ids != 0)
    assert last.shape == (ids.shape[0], HIDDEN)
    torch.testing.assert_close(last, states[:, -1], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", TRIMMABLE)
def test_packed_backbones_return_zero_states_at_padding(name: str) -> None:
    backbone = make_backbone(name).eval()
    ids = left_padded_ids(LENGTHS)
    states = backbone.encode(backbone.embed(ids, torch.arange(MAX_LEN)), ids != 0)
    assert torch.equal(states[ids == 0], torch.zeros_like(states[ids == 0]))


# --------------------------------------------------------------------------- trimming


@pytest.mark.parametrize("name", TRIMMABLE)
def test_trimming_gives_the_same_states_and_loss(name: str) -> None:
    backbone = make_backbone(name).eval()
    trimmed = PlainRecommender(backbone, trim_padding=True)
    full = PlainRecommender(backbone, trim_padding=False)
    ids = left_padded_ids(LENGTHS)
    batch = train_batch(ids)
    with torch.no_grad():
        states_trimmed, trimmed_ids = trimmed.sequence_states(ids)
        states_full, _ = full.sequence_states(ids)
        width = trimmed_ids.shape[1]
        assert width == max(LENGTHS) < MAX_LEN
        real = trimmed_ids != 0
        torch.testing.assert_close(
            states_trimmed[real], states_full[:, -width:][real], atol=1e-5, rtol=0
        )
        torch.testing.assert_close(trimmed.last_state(ids), full.last_state(ids), atol=1e-5, rtol=0)
        loss_trimmed = trimmed.calculate_loss(batch, epoch=0).total
        loss_full = full.calculate_loss(batch, epoch=0).total
    torch.testing.assert_close(loss_trimmed, loss_full, atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", TRIMMABLE)
def test_real_states_ignore_extra_left_padding(name: str) -> None:
    """Same sequences, 12 vs 20 columns: identical states at the real positions."""
    backbone = make_backbone(name, max_len=MAX_LEN + 8).eval()
    short = left_padded_ids(LENGTHS)
    long = torch.cat([torch.zeros(len(LENGTHS), 8, dtype=torch.long), short], dim=1)
    with torch.no_grad():
        states_short = backbone.encode(
            backbone.embed(short, torch.arange(8, 8 + MAX_LEN)), short != 0
        )
        states_long = backbone.encode(backbone.embed(long, torch.arange(8 + MAX_LEN)), long != 0)
    torch.testing.assert_close(states_long[:, 8:], states_short, atol=1e-5, rtol=0)


# --------------------------------------------------------------------------- SASRec


def test_sasrec_is_causal() -> None:
    backbone = make_backbone("sasrec").eval()
    ids = left_padded_ids([10, 10])
    changed = ids.clone()
    changed[:, 7] = changed[:, 7] % NUM_ITEMS + 1
    positions = torch.arange(MAX_LEN)
    with torch.no_grad():
        before = backbone.encode(backbone.embed(ids, positions), ids != 0)
        after = backbone.encode(backbone.embed(changed, positions), changed != 0)
    torch.testing.assert_close(before[:, :7], after[:, :7], atol=0, rtol=0)
    assert (before[:, 7:] - after[:, 7:]).abs().amax(dim=-1).min() > 1e-6


def full_grid_sasrec(backbone: SASRec, ids: Tensor) -> Tensor:
    """The official computation, written plainly: full [B, T, T] additive mask, no packing."""
    blocks = sasrec_blocks(backbone)
    heads = blocks[0].attention.num_heads
    batch, length = ids.shape
    assert backbone.position_embedding is not None
    hidden = backbone.item_embedding(ids) + backbone.position_embedding.weight[:length]
    hidden = backbone.input_norm(hidden)
    allowed = (ids > 0)[:, None, None, :] & torch.ones(length, length, dtype=torch.bool).tril()
    additive = (1.0 - allowed.float()) * -10000.0
    for block in blocks:
        attention = block.attention
        query, key, value = attention.query_key_value(hidden).chunk(3, dim=-1)

        def split(x: Tensor) -> Tensor:
            return x.view(batch, length, heads, -1).transpose(1, 2)

        scores = split(query) @ split(key).transpose(-1, -2) / math.sqrt(HIDDEN // heads)
        context = torch.softmax(scores + additive, dim=-1) @ split(value)
        context = context.transpose(1, 2).reshape(batch, length, HIDDEN)
        hidden = attention.norm(hidden + attention.output(context))
        ffn = block.feed_forward
        hidden = ffn.norm(hidden + ffn.contract(F.gelu(ffn.expand(hidden))))
    return hidden


def test_sasrec_matches_the_full_grid_official_computation() -> None:
    backbone = make_backbone("sasrec").eval()
    assert isinstance(backbone, SASRec)
    ids = left_padded_ids([12, *LENGTHS])  # a full row plus rows in several buckets
    with torch.no_grad():
        packed = backbone.encode(backbone.embed(ids, torch.arange(MAX_LEN)), ids != 0)
        reference = full_grid_sasrec(backbone, ids)
    real = ids != 0
    torch.testing.assert_close(packed[real], reference[real], atol=1e-5, rtol=1e-5)


def test_sasrec_gradients_match_the_full_grid_official_computation() -> None:
    backbone = make_backbone("sasrec").eval()
    assert isinstance(backbone, SASRec)
    ids = left_padded_ids([12, *LENGTHS])
    real = ids != 0
    probe = torch.randn(int(real.sum()), HIDDEN, generator=torch.Generator().manual_seed(4))
    gradients = []
    for states in (
        lambda: backbone.encode(backbone.embed(ids, torch.arange(MAX_LEN)), real),
        lambda: full_grid_sasrec(backbone, ids),
    ):
        backbone.zero_grad()
        (states()[real] * probe).sum().backward()
        gradients.append(
            {
                name: torch.zeros_like(p) if p.grad is None else p.grad.clone()
                for name, p in backbone.named_parameters()
            }
        )
    for name, gradient in gradients[0].items():
        torch.testing.assert_close(gradient, gradients[1][name], atol=1e-5, rtol=1e-4, msg=name)


def test_sasrec_official_init() -> None:
    backbone = make_backbone("sasrec")
    attention = sasrec_blocks(backbone)[0].attention
    assert torch.equal(attention.query_key_value.bias, torch.zeros(3 * HIDDEN))
    assert torch.equal(attention.norm.weight, torch.ones(HIDDEN))
    # like the official init_weights, the frozen padding row is drawn too (not zero)
    assert backbone.item_embedding.weight[0].abs().sum() > 0
    big = build_backbone(ModelConfig(hidden_size=128), 2000, 50)
    assert abs(float(big.item_embedding.weight.detach().std()) - 0.02) < 1e-3


# --------------------------------------------------------------------------- LRURec


def sequential_recurrence(inputs: Tensor, decay: Tensor, step_in_segment: Tensor) -> Tensor:
    states = torch.zeros_like(inputs)
    for index in range(inputs.shape[0]):
        carried = decay * states[index - 1] if step_in_segment[index] > 0 else 0
        states[index] = inputs[index] + carried
    return states


def test_parallel_scan_equals_the_sequential_recurrence() -> None:
    torch.manual_seed(3)
    segment_lengths = [1, 7, 16, 3, 33]
    steps = torch.cat([torch.arange(n) for n in segment_lengths])
    inputs = torch.randn(len(steps), 5, dtype=torch.cfloat)
    decay = torch.polar(torch.rand(5) * 0.19 + 0.8, torch.rand(5) * 2 * math.pi)
    expected = sequential_recurrence(inputs, decay, steps)
    torch.testing.assert_close(segmented_linear_scan(inputs, decay, steps), expected)


def test_lru_layer_matches_the_official_masked_recurrence() -> None:
    """Official semantics on the padded grid: h_t = lambda * m_{t-1} * h_{t-1} + u_t."""
    backbone = make_backbone("lrurec").eval()
    assert isinstance(backbone, LRURec)
    layer = lru_blocks(backbone)[0].recurrence
    ids = left_padded_ids(LENGTHS)
    mask = ids != 0
    with torch.no_grad():
        inputs = backbone.embed(ids, torch.arange(MAX_LEN))
        driven = layer.driving_inputs(inputs)  # [B, T, N]
        decay = layer.eigenvalues()
        expected = torch.zeros_like(driven)
        for t in range(MAX_LEN):
            carry = decay * expected[:, t - 1] * mask[:, t - 1, None] if t else 0
            expected[:, t] = driven[:, t] + carry
        layout = TokenLayout.from_mask(mask)
        packed = layer.recurrent_states(layout.pack(inputs), layout.step_in_sequence)
    torch.testing.assert_close(packed, expected[mask], atol=1e-5, rtol=1e-5)


def test_lru_ring_init_and_truncated_normal_weights() -> None:
    backbone = make_backbone("lrurec")
    layer = lru_blocks(backbone)[0].recurrence
    with torch.no_grad():
        radius = layer.eigenvalues().abs()
        assert radius.min() >= 0.8 - 1e-6 and radius.max() <= 0.99 + 1e-6
        torch.testing.assert_close(torch.exp(layer.gamma_log), torch.sqrt(1 - radius**2))
    assert layer.state_size == 2 * HIDDEN
    for weight in (
        backbone.item_embedding.weight,
        layer.input_projection.weight,
        lru_blocks(backbone)[0].feed_forward.expand.weight,
    ):
        assert weight.abs().max() <= 0.04 + 1e-7


# --------------------------------------------------------------------------- FMLP-Rec


def test_fmlp_filter_at_identity_weight_returns_its_input() -> None:
    backbone = make_backbone("fmlprec")
    assert isinstance(backbone, FMLPRec)
    frequency_filter = fmlp_blocks(backbone)[0].filter
    assert frequency_filter.complex_weight.shape == (1, MAX_LEN // 2 + 1, HIDDEN, 2)
    with torch.no_grad():
        frequency_filter.complex_weight[..., 0] = 1.0
        frequency_filter.complex_weight[..., 1] = 0.0
    signal = torch.randn(3, MAX_LEN, HIDDEN)
    torch.testing.assert_close(frequency_filter.filter(signal), signal, atol=1e-5, rtol=1e-5)


def test_fmlp_mixes_future_items_as_the_official_code() -> None:
    """Documented leakage (docs/method.md §Backbones): an earlier state changes when a later
    item does."""
    backbone = make_backbone("fmlprec").eval()
    ids = left_padded_ids([10])
    changed = ids.clone()
    changed[0, -1] = changed[0, -1] % NUM_ITEMS + 1
    positions = torch.arange(MAX_LEN)
    with torch.no_grad():
        before = backbone.encode(backbone.embed(ids, positions), ids != 0)
        after = backbone.encode(backbone.embed(changed, positions), changed != 0)
    assert (before[0, 3] - after[0, 3]).abs().max() > 1e-6


def test_fmlp_rejects_a_sequence_of_another_length() -> None:
    backbone = make_backbone("fmlprec")
    with pytest.raises(ValueError, match="length 12"):
        backbone.encode(
            torch.zeros(1, MAX_LEN - 2, HIDDEN), torch.ones(1, MAX_LEN - 2, dtype=torch.bool)
        )


# --------------------------------------------------------------------------- learning, determinism


@pytest.mark.parametrize("name", ALL_BACKBONES)
def test_a_few_adam_steps_reduce_the_loss(name: str) -> None:
    model = PlainRecommender(make_backbone(name, dropout=0.1))
    batch = train_batch(left_padded_ids(LENGTHS))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.eval()  # measure without dropout noise, train with it
    with torch.no_grad():
        start = float(model.calculate_loss(batch, epoch=0).total)
    model.train()
    torch.manual_seed(5)
    for _ in range(15):
        loss = model.calculate_loss(batch, epoch=0).total
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        end = float(model.calculate_loss(batch, epoch=0).total)
    assert end < 0.9 * start


@pytest.mark.parametrize("name", ALL_BACKBONES)
def test_same_seed_same_model_and_same_training_loss(name: str) -> None:
    batch = train_batch(left_padded_ids(LENGTHS))
    losses = []
    for _ in range(2):
        model = PlainRecommender(make_backbone(name, seed=11)).train()
        torch.manual_seed(12)
        losses.append(model.calculate_loss(batch, epoch=0).total)
    assert torch.equal(losses[0], losses[1])
    first, second = make_backbone(name, seed=11), make_backbone(name, seed=11)
    for (key, a), (_, b) in zip(
        first.state_dict().items(), second.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), key
    different = make_backbone(name, seed=13)
    assert not torch.equal(first.item_embedding.weight, different.item_embedding.weight)


def test_sasrec_step_time_is_measured_not_asserted(capsys: pytest.CaptureFixture[str]) -> None:
    """One forward+backward of plain SASRec at B=256, L=50, d=128 (printed, never asserted)."""
    torch.manual_seed(0)
    num_items = 12101
    model = PlainRecommender(build_backbone(ModelConfig(hidden_size=128), num_items, 50)).train()
    generator = torch.Generator().manual_seed(0)
    # Beauty-like lengths: mostly short (median 3), a few reaching 50
    lengths = torch.clamp(torch.distributions.Geometric(0.18).sample((256,)).long() + 1, max=50)
    lengths[0] = 50
    ids = torch.zeros(256, 50, dtype=torch.long)
    for row, length in enumerate(lengths.tolist()):
        ids[row, 50 - length :] = torch.randint(1, num_items + 1, (length,), generator=generator)
    real = ids != 0
    batch = TrainBatch(
        ids,
        torch.randint(1, num_items + 1, ids.shape, generator=generator) * real,
        torch.randint(1, num_items + 1, ids.shape, generator=generator) * real,
    )
    timings = []
    for _ in range(3):
        start = time.perf_counter()
        model.calculate_loss(batch, epoch=0).total.backward()
        timings.append(time.perf_counter() - start)
    with capsys.disabled():
        print(
            f"\nSASRec B=256 L=50 d=128 forward+backward: {1000 * min(timings):.1f} ms (1 thread)"
        )
