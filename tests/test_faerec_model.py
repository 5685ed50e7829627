"""FAERec around the backbones: frozen LLM table, PCA init, fusion, losses, scoring, training."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pytest
import torch

from faerec.config import FAERecConfig, ModelConfig, RunConfig, resolve_config
from faerec.data import (
    InteractionData,
    LeaveOneOutSplit,
    PopularityGroups,
    leave_one_out,
    load_dataset,
    popularity_groups,
)
from faerec.errors import ConfigError
from faerec.models import build_model
from faerec.models.alignment import barlow_twins, item_infonce, split_barlow_twins
from faerec.models.backbones import BACKBONE_CLASSES, build_backbone
from faerec.models.base import PlainRecommender, TrainBatch
from faerec.models.curriculum import curriculum_weights
from faerec.models.faerec import FAERecRecommender, pca_projection
from faerec.models.gates import ScalarGate
from faerec.training import NegativeSampler

NUM_ITEMS = 10
LLM_WIDTH = 12
HIDDEN = 8
MAX_LEN = 6


def _llm_table(seed: int = 0) -> np.ndarray:
    table = np.random.default_rng(seed).normal(size=(NUM_ITEMS + 1, LLM_WIDTH)).astype(np.float32)
    table[0] = 0.0
    return table


def _popularity() -> np.ndarray:
    return np.array([1, 9, 3, 7, 1, 5, 2, 8, 4, 6, 2, 1], dtype=np.int64)  # num_items + 2


def _model(backbone: str = "sasrec", seed: int = 0, **faerec_keys: Any) -> FAERecRecommender:
    torch.manual_seed(seed)
    model_config = ModelConfig(
        backbone=backbone, hidden_size=HIDDEN, num_layers=1, num_heads=2, hidden_dropout=0.2
    )
    config = replace(FAERecConfig(enabled=True), **faerec_keys)  # type: ignore[arg-type]
    return FAERecRecommender(
        build_backbone(model_config, NUM_ITEMS, MAX_LEN), config, _llm_table(), _popularity()
    )


def _batch() -> TrainBatch:
    return TrainBatch(
        input_ids=torch.tensor([[0, 0, 1, 2, 3, 3], [4, 5, 6, 7, 8, 9]]),
        target_pos=torch.tensor([[0, 0, 2, 3, 3, 5], [5, 6, 7, 8, 9, 10]]),
        target_neg=torch.tensor([[0, 0, 7, 9, 10, 4], [1, 2, 3, 1, 2, 3]]),
    )


# --- the frozen LLM table ---------------------------------------------------------------------


def test_llm_table_is_a_frozen_buffer_with_zero_padding_rows() -> None:
    model = _model()
    table = model.llm_item_table
    assert table.shape == (NUM_ITEMS + 2, LLM_WIDTH)
    assert not table.requires_grad
    assert all(param is not table for param in model.parameters())
    assert "llm_item_table" in dict(model.named_buffers())
    assert torch.equal(table[0], torch.zeros(LLM_WIDTH))
    assert torch.equal(table[NUM_ITEMS + 1], torch.zeros(LLM_WIDTH))
    assert torch.allclose(table[1 : NUM_ITEMS + 1], torch.from_numpy(_llm_table()[1:]))


def test_gradients_reach_gate_adapter_and_id_table_never_the_llm_table() -> None:
    model = _model(w_min=0.5, period=4)  # epoch 1: both alignment weights are non-zero
    before = model.llm_item_table.clone()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    model.calculate_loss(_batch(), epoch=1).total.backward()
    for module in (model.gate, model.adapter):
        grads = [p.grad for p in module.parameters()]
        assert grads and all(g is not None and g.abs().sum() > 0 for g in grads)
    id_grad = model.backbone.item_embedding.weight.grad
    assert id_grad is not None and id_grad.abs().sum() > 0
    optimizer.step()
    assert torch.equal(model.llm_item_table, before)
    assert model.llm_item_table.grad is None


# --- initialisation -------------------------------------------------------------------------


def test_pca_projection_by_hand_is_the_covariance_eigenbasis() -> None:
    data = np.random.default_rng(3).normal(size=(30, 5)) @ np.diag([3.0, 2.0, 1.0, 0.5, 0.1])
    projected = pca_projection(data, 3).astype(np.float64)
    centred = data - data.mean(axis=0)
    eigenvalues, eigenvectors = np.linalg.eigh(np.cov(centred, rowvar=False))
    top = eigenvectors[:, ::-1][:, :3]
    # the same directions up to sign; the variances are the top eigenvalues, in order
    assert np.allclose(np.abs(projected), np.abs(centred @ top), atol=1e-4)
    assert np.allclose(projected.var(axis=0, ddof=1), eigenvalues[::-1][:3], rtol=1e-4)


def test_pca_projection_pads_missing_components_with_zeros() -> None:
    data = np.random.default_rng(4).normal(size=(3, 6))  # centred rank 2
    projected = pca_projection(data, 5)
    assert projected.shape == (3, 5)
    assert np.allclose(projected[:, 2:], 0.0, atol=1e-5)


def test_pca_init_overwrites_rows_one_onwards_from_the_padded_llm_table() -> None:
    model = _model()
    padded = np.zeros((NUM_ITEMS + 2, LLM_WIDTH), dtype=np.float32)
    padded[1 : NUM_ITEMS + 1] = _llm_table()[1:]
    expected = pca_projection(padded, HIDDEN)
    weight = model.backbone.item_embedding.weight.detach().numpy()
    assert np.allclose(weight[1:], expected[1:], atol=1e-6)


def test_without_pca_init_the_backbone_init_is_kept() -> None:
    model = _model(pca_init=False, seed=5)
    torch.manual_seed(5)
    plain = build_backbone(
        ModelConfig(hidden_size=HIDDEN, num_layers=1, num_heads=2, hidden_dropout=0.2),
        NUM_ITEMS,
        MAX_LEN,
    )
    assert torch.equal(model.backbone.item_embedding.weight, plain.item_embedding.weight)


# --- fusion and scoring ---------------------------------------------------------------------


@pytest.mark.parametrize("backbone", ["sasrec", "lrurec", "fmlprec"])
def test_fusion_by_hand_with_the_even_gate(backbone: str) -> None:
    model = _model(backbone, gate="none").eval()
    ids = torch.tensor([[0, 3, 5, 7], [0, 0, 3, 2]])
    positions = torch.arange(2, 6)
    with torch.no_grad():
        got = model.input_embeddings(ids, positions)
        id_view = model.backbone.item_embedding.weight[ids]
        llm_view = model.adapter(model.llm_item_table[ids])
        position = model.backbone.position_embeddings(positions)
        assert (position is None) == (backbone == "lrurec")
        if position is not None:
            id_view, llm_view = id_view + position, llm_view + position
        expected = model.fusion_norm(0.5 * id_view + 0.5 * llm_view)
    real = ids != 0
    assert torch.allclose(got[real], expected[real], atol=1e-6)
    if model.backbone.supports_trimming:  # padding is never read: left at zero
        assert torch.equal(got[~real], torch.zeros_like(got[~real]))
    else:  # FMLP-Rec reads padding inputs: fused like any item, as officially
        assert torch.allclose(got[~real], expected[~real], atol=1e-6)


def test_official_scoring_table_is_layernorm_of_id_plus_mapped_llm() -> None:
    model = _model(scoring="official").eval()
    with torch.no_grad():
        table = model.scoring_table()
        id_table = model.backbone.item_embedding.weight
        expected = model.fusion_norm(id_table + model.adapter(model.llm_item_table))
    assert table.shape == (NUM_ITEMS + 2, HIDDEN)
    assert torch.allclose(table, expected, atol=1e-6)


def test_id_scoring_table_is_the_id_table() -> None:
    model = _model(scoring="id")
    assert model.scoring_table() is model.backbone.item_embedding.weight


def test_gated_scoring_table_applies_the_gate_to_both_item_views() -> None:
    model = _model(scoring="gated", gate="scalar").eval()
    with torch.no_grad():
        id_table = model.backbone.item_embedding.weight
        llm_view = model.adapter(model.llm_item_table)
        assert isinstance(model.gate, ScalarGate)
        gate = torch.sigmoid(model.gate.score(torch.cat([id_table, llm_view], dim=-1)))
        expected = model.fusion_norm(gate * id_table + (1 - gate) * llm_view)
        assert torch.allclose(model.scoring_table(), expected, atol=1e-6)


def test_mapped_llm_of_distinct_rows_equals_the_adapter_per_occurrence() -> None:
    model = _model().eval()
    ids = torch.tensor([[3, 3, 0], [7, 3, 0]])
    with torch.no_grad():
        assert torch.allclose(
            model.mapped_llm(ids), model.adapter(model.llm_item_table[ids]), atol=1e-6
        )


def test_a_ranking_session_maps_the_table_once_with_the_same_values() -> None:
    model = _model().eval()
    ids = torch.tensor([[3, 3, 0], [7, 3, 0]])
    with torch.no_grad():
        outside = (model.mapped_llm(ids), model.scoring_table())
        with model.ranking_session():
            inside = (model.mapped_llm(ids), model.scoring_table())
            assert model._ranking_llm_view is not None
    assert model._ranking_llm_view is None  # dropped on exit: the next step changes weights
    for before, during in zip(outside, inside, strict=True):
        torch.testing.assert_close(during, before, atol=1e-6, rtol=1e-6)


def test_a_ranking_session_refuses_train_mode() -> None:
    """In train mode the adapter draws dropout per occurrence: nothing may be shared."""
    model = _model().train()
    with pytest.raises(RuntimeError, match="eval mode"), model.ranking_session():
        pass


# --- the training loss ----------------------------------------------------------------------


def _alignment_rows(model: FAERecRecommender, batch: TrainBatch) -> tuple[torch.Tensor, ...]:
    occurrences = torch.cat([batch.input_ids, batch.target_neg], dim=1)
    items = occurrences[occurrences != 0]
    id_rows = model.backbone.item_embedding.weight[items]
    llm_rows = model.adapter(model.llm_item_table[items])
    return items, id_rows, llm_rows


def test_total_loss_combines_the_parts_with_the_curriculum_weights() -> None:
    model = _model(w_min=0.5, period=4, align_weight=0.3, tau=0.1, gamma=0.01).eval()
    batch = _batch()
    with torch.no_grad():
        terms = model.calculate_loss(batch, epoch=1)
        items, id_rows, llm_rows = _alignment_rows(model, batch)
        popularity = torch.from_numpy(_popularity()).float()[items]
        item_loss = item_infonce(id_rows, llm_rows, items, 0.1)
        feature_loss = split_barlow_twins(id_rows, llm_rows, popularity, 0.01)
    w_item, w_feat = curriculum_weights(model.config, 1)
    assert (terms.parts["w_item"], terms.parts["w_feat"]) == (w_item, w_feat)
    assert 0 < w_feat < 1
    assert terms.parts["item_align"] == pytest.approx(float(item_loss), rel=1e-5)
    assert terms.parts["feature_align"] == pytest.approx(float(feature_loss), rel=1e-5)
    expected_total = terms.parts["rec"] + 0.3 * (
        w_item * terms.parts["item_align"] + w_feat * terms.parts["feature_align"]
    )
    assert float(terms.total) == pytest.approx(expected_total, rel=1e-5)


def test_unsplit_feature_loss_when_the_popularity_split_is_off() -> None:
    model = _model(popularity_split=False).eval()
    batch = _batch()
    with torch.no_grad():
        terms = model.calculate_loss(batch, epoch=0)
        _, id_rows, llm_rows = _alignment_rows(model, batch)
        expected = barlow_twins(id_rows, llm_rows, model.config.gamma)
    assert terms.parts["feature_align"] == pytest.approx(float(expected), rel=1e-5)


@pytest.mark.parametrize(
    ("flags", "zeroed"),
    [
        ({"item_align": False}, ["item_align"]),
        ({"feature_align": False}, ["feature_align"]),
        ({"item_align": False, "feature_align": False}, ["item_align", "feature_align"]),
    ],
)
def test_ablation_flags_zero_their_loss(flags: dict[str, Any], zeroed: list[str]) -> None:
    model = _model(w_min=0.5, period=4, **flags).eval()
    with torch.no_grad():
        terms = model.calculate_loss(_batch(), epoch=1)
    for name in zeroed:
        assert terms.parts[name] == 0.0
    assert 0 < terms.parts["w_feat"] < 1  # the weights keep their definition
    expected_total = terms.parts["rec"] + model.config.align_weight * (
        terms.parts["w_item"] * terms.parts["item_align"]
        + terms.parts["w_feat"] * terms.parts["feature_align"]
    )
    assert float(terms.total) == pytest.approx(expected_total, rel=1e-5)


# --- build_model ----------------------------------------------------------------------------


def _run_config(enabled: bool, **keys: Any) -> RunConfig:
    config = resolve_config("ml-100k", "sasrec", "faerec" if enabled else "backbone")
    config.model.hidden_size = HIDDEN
    config.data.max_seq_length = MAX_LEN
    for key, value in keys.items():
        section, _, name = key.partition(".")
        setattr(getattr(config, section), name, value)
    return config


def test_build_model_plain_backbone_when_faerec_is_off() -> None:
    model = build_model(_run_config(False, **{"train.trim_padding": False}), NUM_ITEMS)
    assert isinstance(model, PlainRecommender)
    assert model.trim_padding is False


def test_build_model_faerec_with_table_and_popularity() -> None:
    model = build_model(_run_config(True), NUM_ITEMS, _llm_table(), _popularity())
    assert isinstance(model, FAERecRecommender)
    assert model.trim_padding is True


def test_build_model_faerec_without_llm_table_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="LLM item embeddings"):
        build_model(_run_config(True), NUM_ITEMS, None, _popularity())


def test_wrong_llm_table_shape_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"expected shape \[11, d_llm\]"):
        build_model(_run_config(True), NUM_ITEMS, _llm_table()[:-2], _popularity())


def test_popularity_split_without_popularity_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="popularity_split"):
        build_model(_run_config(True), NUM_ITEMS, _llm_table(), None)


# --- one epoch of every backbone on ml-100k -------------------------------------------------

EPOCH_MAX_LEN = 20


@dataclass(frozen=True)
class Ml100k:
    data: InteractionData
    split: LeaveOneOutSplit
    groups: PopularityGroups
    table: np.ndarray


@pytest.fixture(scope="module")
def ml100k() -> Ml100k:
    data = load_dataset("ml-100k")
    assert data.bundled_embedding is not None
    return Ml100k(
        data=data,
        split=leave_one_out(data, EPOCH_MAX_LEN),
        groups=popularity_groups(data),
        table=np.load(data.bundled_embedding).astype(np.float32),
    )


@pytest.fixture()
def one_thread() -> Iterator[None]:
    """Tiny batches run fastest on one thread, above all on a machine shared with other jobs."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("backbone", sorted(BACKBONE_CLASSES))
@pytest.mark.usefixtures("one_thread")
def test_every_backbone_trains_one_faerec_epoch_on_ml100k(ml100k: Ml100k, backbone: str) -> None:
    data, split, groups = ml100k.data, ml100k.split, ml100k.groups
    config = resolve_config(
        "ml-100k",
        backbone,
        "faerec",
        overrides={
            "model.hidden_size": 32,
            "data.max_seq_length": EPOCH_MAX_LEN,
            "faerec.w_min": 0.5,
            "faerec.period": 4,
        },
    )
    torch.manual_seed(0)
    model = build_model(config, data.num_items, ml100k.table, groups.train_popularity)
    assert isinstance(model, FAERecRecommender)
    llm_before = model.llm_item_table.clone()
    id_before = model.backbone.item_embedding.weight.detach().clone()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    sampler = NegativeSampler(split.user_items, data.num_items)
    rng = np.random.default_rng(0)
    order = rng.permutation(len(split.train))
    model.train()
    for start in range(0, len(order), 256):
        rows = order[start : start + 256]
        target_pos = split.train.target_pos[rows]
        batch = TrainBatch(
            input_ids=torch.from_numpy(split.train.input_ids[rows]),
            target_pos=torch.from_numpy(target_pos),
            target_neg=torch.from_numpy(
                sampler.sample(split.train.user_index[rows], target_pos, rng)
            ),
        )
        terms = model.calculate_loss(batch, epoch=1)
        assert torch.isfinite(terms.total)
        assert terms.parts["item_align"] > 0 and terms.parts["feature_align"] > 0
        optimizer.zero_grad()
        terms.total.backward()
        optimizer.step()
    assert torch.equal(model.llm_item_table, llm_before)
    assert not torch.equal(model.backbone.item_embedding.weight, id_before)
    model.eval()
    with torch.no_grad():
        scores = model.full_sort_predict(torch.from_numpy(split.test.input_ids[:8]))
    assert scores.shape == (8, data.num_items + 2)
    assert torch.isfinite(scores).all()
