"""The two alignment losses of FAERec between the ID view and the LLM view of items.

* :func:`item_infonce` aligns whole items (spec 1.6): each ID vector must pick out the LLM vector
  of the same item among the batch's items.
* :func:`barlow_twins` / :func:`split_barlow_twins` align feature dimensions (spec 1.7): the
  cross-correlation of the two views should be the identity, computed separately for popular
  and unpopular items so that head items do not dominate the statistics.

Both are vectorised over the N rows of a batch (N is a few thousand on the bundled data), and
reproduce the official code's numbers (``tests/golden/``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

#: Added to the per-dimension standard deviation, as in the official code.
STD_EPSILON = 1e-5


def item_infonce(id_emb: Tensor, llm_emb: Tensor, item_ids: Tensor, tau: float) -> Tensor:
    """One-directional InfoNCE from ID anchors to LLM candidates (spec 1.6).

    ``id_emb`` and ``llm_emb`` are [N, d] (row n = one occurrence of item ``item_ids[n]``).
    Other occurrences of the same item are not negatives, so their logits are masked out; the
    diagonal (the positive) is always kept.
    """
    if id_emb.shape != llm_emb.shape or id_emb.shape[0] != item_ids.shape[0]:
        raise ValueError(
            f"item_infonce: expected id_emb, llm_emb [N, d] and item_ids [N], got "
            f"{tuple(id_emb.shape)}, {tuple(llm_emb.shape)}, {tuple(item_ids.shape)}"
        )
    anchors = F.normalize(id_emb, dim=-1)
    candidates = F.normalize(llm_emb, dim=-1)
    logits = anchors @ candidates.T / tau
    rows = torch.arange(item_ids.shape[0], device=item_ids.device)
    same_item = item_ids.unsqueeze(1) == item_ids.unsqueeze(0)
    same_item[rows, rows] = False
    logits = logits.masked_fill(same_item, float("-inf"))
    return F.cross_entropy(logits, rows)


def _standardise(features: Tensor) -> Tensor:
    """Per-dimension zero mean and unit (unbiased) standard deviation over the rows."""
    return (features - features.mean(dim=0)) / (features.std(dim=0) + STD_EPSILON)


def barlow_twins(a: Tensor, b: Tensor, gamma: float) -> Tensor:
    """Barlow-Twins loss of two [N, d] views (spec 1.7, one group; needs N >= 2).

    ``C = â^T b̂ / N``; the loss is ``sum_i (1 - C_ii)^2 + gamma * sum_{i != j} C_ij^2``.
    """
    if a.shape != b.shape or a.dim() != 2:
        raise ValueError(
            f"barlow_twins: expected two [N, d] views, got {tuple(a.shape)}, {tuple(b.shape)}"
        )
    correlation = _standardise(a).T @ _standardise(b) / a.shape[0]
    diagonal = torch.diagonal(correlation)
    on_diagonal = (1.0 - diagonal).pow(2).sum()
    off_diagonal = correlation.pow(2).sum() - diagonal.pow(2).sum()
    return on_diagonal + gamma * off_diagonal


def split_barlow_twins(a: Tensor, b: Tensor, popularity: Tensor, gamma: float) -> Tensor:
    """Barlow-Twins summed over the high- and low-popularity rows of the batch (spec 1.7).

    The split is the batch median of ``popularity`` (duplicates included; ``torch.median``
    takes the lower middle value), high = ``popularity >= median``. A group with fewer than two
    rows has no standard deviation and is skipped, as in the official code.
    """
    if popularity.shape[0] != a.shape[0]:
        raise ValueError(
            f"split_barlow_twins: expected one popularity per row ({a.shape[0]}), "
            f"got {tuple(popularity.shape)}"
        )
    if a.shape[0] == 0:
        return a.sum() * 0.0
    high = popularity >= torch.median(popularity)
    total = a.new_zeros(())
    for group in (high, ~high):
        if int(group.sum()) > 1:
            total = total + barlow_twins(a[group], b[group], gamma)
    return total


__all__ = ["STD_EPSILON", "barlow_twins", "item_infonce", "split_barlow_twins"]
