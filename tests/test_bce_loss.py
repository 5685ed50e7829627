"""The next-item BCE loss (docs/method.md §Recommendation loss) against values computed by hand."""

from __future__ import annotations

import math

import torch

from faerec.models.base import bce_next_item_loss


def test_bce_ignores_padding_positions() -> None:
    states = torch.tensor([[[1.0], [2.0]]])
    table = torch.tensor([[0.0], [1.0], [-1.0]])
    target_pos = torch.tensor([[1, 0]])
    target_neg = torch.tensor([[2, 0]])
    # one real position: pos logit 1, neg logit -1 -> -(log s(1) + log(1 - s(-1))) = -2 log s(1)
    expected = -2 * math.log(1 / (1 + math.exp(-1)))
    loss = bce_next_item_loss(states, table, target_pos, target_neg)
    assert math.isclose(float(loss), expected, rel_tol=1e-6)


def test_bce_averages_over_real_positions() -> None:
    states = torch.tensor([[[1.0], [0.0]], [[0.0], [0.0]]])
    table = torch.tensor([[0.0], [1.0], [-1.0]])
    target_pos = torch.tensor([[1, 1], [0, 1]])
    target_neg = torch.tensor([[2, 2], [0, 2]])
    # position (0,0): -2 log s(1); positions (0,1) and (1,1) have logits 0: -2 log(1/2) each
    expected = (-2 * math.log(1 / (1 + math.exp(-1))) + 2 * (2 * math.log(2))) / 3
    loss = bce_next_item_loss(states, table, target_pos, target_neg)
    assert math.isclose(float(loss), expected, rel_tol=1e-6)
