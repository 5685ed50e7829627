"""The alignment losses reproduce the official code (golden files) and stay well defined."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from faerec.models.alignment import (
    _infonce_dense,
    barlow_twins,
    item_infonce,
    split_barlow_twins,
)

GOLDEN = Path(__file__).parent / "golden"


@pytest.fixture(scope="module")
def infonce_golden() -> dict[str, np.ndarray]:
    with np.load(GOLDEN / "infonce.npz") as archive:
        return {key: archive[key] for key in archive.files}


@pytest.fixture(scope="module")
def barlow_golden() -> dict[str, np.ndarray]:
    with np.load(GOLDEN / "barlow_twins.npz") as archive:
        return {key: archive[key] for key in archive.files}


@pytest.mark.parametrize("tau_index", [0, 1, 2])
def test_infonce_matches_official_golden(
    infonce_golden: dict[str, np.ndarray], tau_index: int
) -> None:
    tau = float(infonce_golden["taus"][tau_index])
    loss = item_infonce(
        torch.from_numpy(infonce_golden["id_emb"]),
        torch.from_numpy(infonce_golden["llm_emb"]),
        torch.from_numpy(infonce_golden["item_ids"]),
        tau,
    )
    assert float(loss) == pytest.approx(float(infonce_golden["losses"][tau_index]), rel=1e-5)


def test_barlow_twins_unsplit_matches_official_golden(barlow_golden: dict[str, np.ndarray]) -> None:
    loss = barlow_twins(
        torch.from_numpy(barlow_golden["id_emb"]),
        torch.from_numpy(barlow_golden["llm_emb"]),
        float(barlow_golden["gamma"]),
    )
    assert float(loss) == pytest.approx(float(barlow_golden["loss_unsplit"]), rel=1e-5)


def test_barlow_twins_split_matches_official_golden(barlow_golden: dict[str, np.ndarray]) -> None:
    popularity = torch.from_numpy(barlow_golden["popularity"])
    assert float(torch.median(popularity)) == float(barlow_golden["median"])
    loss = split_barlow_twins(
        torch.from_numpy(barlow_golden["id_emb"]),
        torch.from_numpy(barlow_golden["llm_emb"]),
        popularity,
        float(barlow_golden["gamma"]),
    )
    assert float(loss) == pytest.approx(float(barlow_golden["loss_split"]), rel=1e-5)


def test_split_skips_a_group_with_fewer_than_two_rows() -> None:
    torch.manual_seed(0)
    a, b = torch.randn(4, 3), torch.randn(4, 3)
    # median of [1, 1, 1, 9] is 1: every row is "high", the low group is empty
    popularity = torch.tensor([1.0, 1.0, 1.0, 9.0])
    assert torch.allclose(split_barlow_twins(a, b, popularity, 0.005), barlow_twins(a, b, 0.005))
    # median of [1, 5, 9, 9] (lower middle) is 5: low = the single row with 1, skipped
    popularity = torch.tensor([1.0, 5.0, 9.0, 9.0])
    expected = barlow_twins(a[1:], b[1:], 0.005)
    assert torch.allclose(split_barlow_twins(a, b, popularity, 0.005), expected)


def test_barlow_twins_by_hand_on_two_rows() -> None:
    # one dimension, so no off-diagonal term: loss = (1 - C)^2 with C close to -1
    a = torch.tensor([[0.0], [2.0]])
    b = torch.tensor([[1.0], [-1.0]])
    std_a, std_b = 2.0 / np.sqrt(2.0), 2.0 / np.sqrt(2.0)  # unbiased std of two points
    a_hat = np.array([-1.0, 1.0]) / (std_a + 1e-5)
    b_hat = np.array([1.0, -1.0]) / (std_b + 1e-5)
    correlation = float((a_hat * b_hat).sum() / 2)
    assert float(barlow_twins(a, b, 0.5)) == pytest.approx((1 - correlation) ** 2, rel=1e-6)


def _tied_batch(seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    table = torch.randn(12, 8, generator=generator, requires_grad=True)
    item_ids = torch.randint(1, 12, (60,), generator=generator)
    llm = torch.randn(60, 8, generator=generator, requires_grad=True)
    return table, item_ids, llm


def test_infonce_shared_anchor_path_equals_dense_form_value_and_gradient() -> None:
    table, item_ids, llm = _tied_batch(1)
    fast = item_infonce(table[item_ids], llm, item_ids, 0.05)
    fast_grads = torch.autograd.grad(fast, [table, llm])
    dense = _infonce_dense(
        F.normalize(table[item_ids], dim=-1), F.normalize(llm, dim=-1), item_ids, 0.05
    )
    dense_grads = torch.autograd.grad(dense, [table, llm])
    assert float(fast.detach()) == pytest.approx(float(dense.detach()), rel=1e-5)
    for got, expected in zip(fast_grads, dense_grads, strict=True):
        assert torch.allclose(got, expected, atol=1e-6)


def test_infonce_with_a_single_item_is_zero_with_finite_gradient() -> None:
    table = torch.randn(3, 4, requires_grad=True)
    item_ids = torch.full((5,), 2)
    loss = item_infonce(table[item_ids], torch.randn(5, 4), item_ids, 0.05)
    (grad,) = torch.autograd.grad(loss, [table])
    assert float(loss.detach()) == 0.0
    assert torch.isfinite(grad).all()


def test_infonce_masks_other_occurrences_of_the_same_item() -> None:
    # two occurrences of item 1 plus item 2: row 0 sees itself and item 2, never row 1
    anchors = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    candidates = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.6, 0.8]])
    item_ids = torch.tensor([1, 1, 2])
    tau = 0.5
    # rows 0 and 1 (item 1): logits [1, masked, 0.6] / tau; row 2: [0, 0, 0.8] / tau
    row0 = -np.log(np.exp(1 / tau) / (np.exp(1 / tau) + np.exp(0.6 / tau)))
    row2 = -np.log(np.exp(0.8 / tau) / (np.exp(0.8 / tau) + 2 * np.exp(0.0 / tau)))
    expected = (2 * row0 + row2) / 3
    assert float(item_infonce(anchors, candidates, item_ids, tau)) == pytest.approx(
        expected, rel=1e-6
    )
