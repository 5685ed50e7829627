"""The two alignment losses of FAERec between the ID view and the LLM view of items.

* :func:`item_infonce` aligns whole items (docs/method.md §Item-level alignment):
  each ID vector must pick out the LLM vector
  of the same item among the batch's items.
* :func:`barlow_twins` / :func:`split_barlow_twins` align feature dimensions
  (docs/method.md §Feature-level alignment): the
  cross-correlation of the two views should be the identity, computed separately for popular
  and unpopular items so that head items do not dominate the statistics.

Both are vectorised over the N rows of a batch (N is a few thousand on the bundled data), and
reproduce the official code's numbers (``tests/golden/``).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable

#: Added to the per-dimension standard deviation, as in the official code.
STD_EPSILON = 1e-5


def item_infonce(id_emb: Tensor, llm_emb: Tensor, item_ids: Tensor, tau: float) -> Tensor:
    """One-directional InfoNCE from ID anchors to LLM candidates
    (docs/method.md §Item-level alignment).

    ``id_emb`` and ``llm_emb`` are [N, d] (row n = one occurrence of item ``item_ids[n]``).
    Other occurrences of the same item are not negatives, so their logits are masked out; the
    diagonal (the positive) is always kept. Returns the mean cross-entropy over the N rows.

    When every occurrence of an item has the same ID vector (always so in FAERec, where the
    rows are ``E_id[item_ids]``), the loss is computed from one anchor per distinct item,
    [U, N] logits instead of [N, N]: the same value, and the same gradient for the ID table,
    at a fraction of the cost on long sequences (ml-100k: U = 1.7k, N = 25k). Otherwise the
    dense [N, N] form is used.
    """
    if id_emb.shape != llm_emb.shape or id_emb.dim() != 2 or id_emb.shape[0] != item_ids.shape[0]:
        raise ValueError(
            f"item_infonce: expected id_emb, llm_emb [N, d] and item_ids [N], got "
            f"{tuple(id_emb.shape)}, {tuple(llm_emb.shape)}, {tuple(item_ids.shape)}"
        )
    if item_ids.shape[0] == 0:
        return id_emb.sum() * 0.0 + llm_emb.sum() * 0.0
    anchors = F.normalize(id_emb, dim=-1)
    candidates = F.normalize(llm_emb, dim=-1)
    distinct, inverse = torch.unique(item_ids, return_inverse=True)
    first_row = torch.full_like(distinct, item_ids.shape[0]).scatter_reduce(
        0, inverse, torch.arange(item_ids.shape[0], device=item_ids.device), reduce="amin"
    )
    if distinct.shape[0] < item_ids.shape[0] and torch.equal(id_emb, id_emb[first_row[inverse]]):
        return _infonce_shared_anchors(anchors[first_row], candidates, inverse, tau)
    return _infonce_dense(anchors, candidates, item_ids, tau)


def _infonce_dense(anchors: Tensor, candidates: Tensor, item_ids: Tensor, tau: float) -> Tensor:
    """The official form: [N, N] logits, same-item pairs off the diagonal set to -inf."""
    logits = anchors @ candidates.T / tau
    rows = torch.arange(item_ids.shape[0], device=item_ids.device)
    same_item = item_ids.unsqueeze(1) == item_ids.unsqueeze(0)
    same_item[rows, rows] = False
    logits = logits.masked_fill(same_item, float("-inf"))
    return F.cross_entropy(logits, rows)


class _OtherItemsLogSumExp(torch.autograd.Function):
    """``lse_u = log sum_{m: inverse[m] != u} exp(a_u . c_m)`` for anchors [U, d], candidates
    [N, d], with one [U, N] buffer reused in place through forward and backward.

    Autograd over the plain expression would keep several [U, N] temporaries (the masked
    copy, the shifted exponentials, the gradient mask); on ml-100k U x N is 43M entries, so
    the fused form roughly halves the time of the item-level loss.
    """

    @staticmethod
    def forward(ctx: Any, anchors: Tensor, candidates: Tensor, inverse: Tensor) -> Tensor:
        # float32 under autocast too: backward runs outside autocast and must see one dtype
        # (bf16 logits would also make the log-sum-exp coarse); autograd casts the gradients
        # back to the inputs' dtypes
        with torch.autocast(anchors.device.type, enabled=False):
            return _OtherItemsLogSumExp._forward(ctx, anchors.float(), candidates.float(), inverse)

    @staticmethod
    def _forward(ctx: Any, anchors: Tensor, candidates: Tensor, inverse: Tensor) -> Tensor:
        weights = anchors @ candidates.T  # [U, N] logits, turned into weights in place
        columns = torch.arange(candidates.shape[0], device=inverse.device)
        # Each column m holds exactly one same-item entry, (inverse[m], m). A finite floor
        # instead of -inf keeps everything defined when one item fills the batch.
        weights.index_put_((inverse, columns), weights.new_full((), torch.finfo(weights.dtype).min))
        shift = weights.amax(dim=1, keepdim=True)
        weights.sub_(shift).exp_()
        totals = weights.sum(dim=1)
        ctx.save_for_backward(anchors, candidates, weights, totals)
        return totals.log() + shift.squeeze(1)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_output: Tensor) -> tuple[Tensor | None, Tensor | None, None]:
        anchors, candidates, weights, totals = ctx.saved_tensors
        # d lse_u / d logit_um = softmax weight; masked entries hold exp(floor - shift) = 0.
        grad_logits = weights * (grad_output / totals).unsqueeze(1)
        grad_anchors = grad_logits @ candidates if ctx.needs_input_grad[0] else None
        grad_candidates = grad_logits.T @ anchors if ctx.needs_input_grad[1] else None
        return grad_anchors, grad_candidates, None


def _infonce_shared_anchors(
    item_anchors: Tensor, candidates: Tensor, inverse: Tensor, tau: float
) -> Tensor:
    """The same loss with one anchor per distinct item.

    Row n (item u = ``inverse[n]``) has denominator ``exp(s_nn) + sum_{m: item(m) != u}
    exp(s_um)``; the sum over other items does not depend on which occurrence of u is the
    anchor, so it is one masked log-sum-exp per distinct item.
    """
    scaled_anchors = item_anchors / tau  # scaling [U, d] is cheaper than scaling [U, N]
    other_items = _OtherItemsLogSumExp.apply(scaled_anchors, candidates, inverse)  # [U]
    positive = (scaled_anchors[inverse] * candidates).sum(-1)  # [N]
    return (torch.logaddexp(positive, other_items[inverse]) - positive).mean()


def _standardise(features: Tensor) -> Tensor:
    """Per-dimension zero mean and unit (unbiased) standard deviation over the rows."""
    return (features - features.mean(dim=0)) / (features.std(dim=0) + STD_EPSILON)


def barlow_twins(a: Tensor, b: Tensor, gamma: float) -> Tensor:
    """Barlow-Twins loss of two [N, d] views (one group; needs N >= 2).

    docs/method.md §Feature-level alignment.

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
    """Barlow-Twins summed over the high- and low-popularity rows of the batch
    (docs/method.md §Feature-level alignment).

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
