"""Ranking evaluation: full ranking (official) or sampled negatives, metrics per user group.

docs/method.md §Ranking and metrics. The official protocol ranks every item row for each
user, with the user's history scored 0 (not -inf) and the padding row 0 and the extra row
``num_items + 1`` left rankable; ``masking="clean"`` sets all three to -inf instead. HR@K
and NDCG@K (IDCG = 1, one answer per user) are computed from one 1-based rank per user, so
every group, every cut-off and any paired per-user test comes from the same array.

Ties: in full mode the rank is the answer's position in ``torch.topk``, whose order among equal
scores is unspecified, exactly as in the official code (it matters only for the official
masking, where all history items share the score 0). In sampled mode the answer is ranked
against ``eval.num_negatives`` uniform negatives (with replacement, never a history item or
the answer) as 1 + the number of negatives scoring *strictly* higher, so ties go to the answer.

Speed: users are evaluated in order of input length so that each batch shares most of its left
padding, which the model trims (``SequentialRecommender.sequence_states``). On 5-core data most
users are short, so this cuts the encoder's work several-fold without changing any score:
in eval mode a user's representation does not depend on the other users of its batch. For the
same reason a batch is encoded in passes of at most ``EVAL_TOKENS_PER_PASS`` tokens on the CPU,
which bounds the memory of the longest batches (docs/benchmarks.md, memory). The model encodes
only each user's last position (``Backbone.encode_last``) and may compute per-item quantities
once for the whole pass (``SequentialRecommender.ranking_session``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from faerec.config import EvalConfig
from faerec.data.ragged import flatten_rows, row_membership
from faerec.data.types import SplitPart
from faerec.errors import ConfigError
from faerec.models.base import SequentialRecommender
from faerec.results import GroupMetrics

__all__ = [
    "EVAL_TOKENS_PER_PASS",
    "EvaluationOutput",
    "evaluate",
    "hr_ndcg",
    "metric_names",
    "ranks_from_topk",
    "sample_eval_negatives",
    "topk_metrics",
]


#: encoder tokens (users x encoded width) per forward pass in evaluation (``_encoder_passes``)
EVAL_TOKENS_PER_PASS = 8192


@dataclass
class EvaluationOutput:
    """Metrics per user group plus the rank of every evaluated row (in ``part`` order)."""

    groups: list[GroupMetrics]
    #: 1-based rank of the answer per row of the part; 0 = outside the top max(ks) (full mode)
    ranks: np.ndarray
    #: dataset row of each entry of ``ranks``
    user_index: np.ndarray

    def group(self, name: str) -> GroupMetrics:
        """The metrics of one group (KeyError if the group was empty or not requested)."""
        for metrics in self.groups:
            if metrics.group == name:
                return metrics
        raise KeyError(name)

    @property
    def overall(self) -> dict[str, float]:
        return self.group("overall").values


def metric_names(ks: Iterable[int]) -> list[str]:
    """``['hr@5', 'ndcg@5', 'hr@10', ...]`` in cut-off order."""
    names: list[str] = []
    for k in sorted(set(ks)):
        names.extend((f"hr@{k}", f"ndcg@{k}"))
    return names


def ranks_from_topk(topk_items: np.ndarray, answers: np.ndarray) -> np.ndarray:
    """[N, K] ranked item lists and [N] answers -> [N] 1-based rank of the answer, 0 if absent.

    If an answer appears several times in a list (never the case for ``torch.topk``), its
    first position counts.
    """
    topk = np.asarray(topk_items)
    answer = np.asarray(answers).reshape(-1)
    if topk.ndim != 2 or topk.shape[0] != answer.shape[0]:
        raise ValueError(
            f"expected topk [N, K] and answers [N], got {topk.shape} and {answer.shape}"
        )
    hits = topk == answer[:, None]
    found = hits.any(axis=1)
    return np.where(found, hits.argmax(axis=1) + 1, 0).astype(np.int64)


def hr_ndcg(ranks: np.ndarray, ks: Iterable[int]) -> dict[str, float]:
    """Mean HR@K and NDCG@K over users from 1-based ranks (0 = not ranked within the cut-off).

    With one relevant item per user IDCG = 1, so NDCG@K = 1 / log2(rank + 1) when rank <= K.
    An empty array gives NaN (there is no mean of nothing).
    """
    rank = np.asarray(ranks, dtype=np.int64).reshape(-1)
    out: dict[str, float] = {}
    gains = np.zeros(rank.shape, dtype=np.float64)
    ranked = rank > 0
    gains[ranked] = 1.0 / np.log2(rank[ranked] + 1.0)
    for k in sorted(set(ks)):
        within = ranked & (rank <= k)
        if rank.size == 0:
            out[f"hr@{k}"] = float("nan")
            out[f"ndcg@{k}"] = float("nan")
            continue
        out[f"hr@{k}"] = float(within.mean())
        out[f"ndcg@{k}"] = float(np.where(within, gains, 0.0).mean())
    return out


def topk_metrics(
    topk_items: np.ndarray, answers: np.ndarray, ks: Iterable[int]
) -> dict[str, float]:
    """HR/NDCG@K straight from ranked lists, exactly as the official ``recall_at_k``/``ndcg_k``.

    The official NDCG sums the gain of *every* position that holds the answer, so a list with
    the answer twice scores more than 1 / log2(rank + 1). Real top-K lists have distinct items,
    where this equals ``hr_ndcg(ranks_from_topk(...))``; this function exists to check parity
    with the official code on arbitrary lists (tests/golden/metrics.json).
    """
    topk = np.asarray(topk_items)
    answer = np.asarray(answers).reshape(-1)
    out: dict[str, float] = {}
    # same operations in the same order as the official loops (sequential sums, math.log),
    # so that the floats agree to the last bit
    discounts = np.array([math.log(j + 2, 2) for j in range(topk.shape[1])])
    hits = (topk == answer[:, None]).astype(np.float64)
    dcg_running = np.cumsum(hits / discounts, axis=1)
    for k in sorted(set(ks)):
        hit_any = hits[:, :k].any(axis=1).astype(np.float64)
        out[f"hr@{k}"] = float(np.cumsum(hit_any)[-1] / len(answer))
        out[f"ndcg@{k}"] = float(np.cumsum(dcg_running[:, k - 1])[-1] / len(answer))
    return out


# --- building blocks ---------------------------------------------------------------------------


def sample_eval_negatives(
    history: Sequence[np.ndarray],
    answers: np.ndarray,
    num_items: int,
    num_negatives: int,
    seed: int,
    chunk_rows: int = 4096,
) -> np.ndarray:
    """[N, num_negatives] items drawn uniformly from 1..num_items, never in a row's history or
    answer; drawn with replacement, like the original SASRec sampled protocol.

    Vectorised rejection sampling: draw everything, redraw only the rejected entries. The
    result depends only on (inputs, seed), never on the evaluation batch size.
    """
    answer = np.asarray(answers, dtype=np.int64).reshape(-1)
    rows_total = answer.shape[0]
    rng = np.random.default_rng(seed)
    negatives = rng.integers(1, num_items + 1, size=(rows_total, num_negatives), dtype=np.int64)
    flat, offsets = flatten_rows(history)
    for start in range(0, rows_total, chunk_rows):
        rows = np.arange(start, min(start + chunk_rows, rows_total))
        member = row_membership(flat, offsets, rows, num_items + 2)
        member[np.arange(len(rows)), answer[rows]] = True
        allowed = num_items - member[:, 1 : num_items + 1].sum(axis=1)
        if np.any(allowed <= 0):
            bad = int(rows[np.argmax(allowed <= 0)])
            raise ConfigError(
                f"eval.mode=sampled: user row {bad} has no item left to sample as a negative"
            )
        block = negatives[rows]
        rejected = member[np.arange(len(rows))[:, None], block]
        while rejected.any():
            where = np.nonzero(rejected)
            block[where] = rng.integers(1, num_items + 1, size=len(where[0]), dtype=np.int64)
            rejected[where] = member[where[0], block[where]]
        negatives[rows] = block
    return negatives


def _validate_eval_config(config: EvalConfig) -> list[int]:
    if config.mode not in ("full", "sampled"):
        raise ConfigError(f"eval.mode: expected full or sampled, got {config.mode!r}")
    if config.masking not in ("official", "clean"):
        raise ConfigError(f"eval.masking: expected official or clean, got {config.masking!r}")
    ks = sorted(set(int(k) for k in config.ks))
    if not ks or ks[0] <= 0:
        raise ConfigError(f"eval.ks: expected positive cut-offs, got {config.ks!r}")
    if config.batch_size <= 0:
        raise ConfigError(f"eval.batch_size: expected a positive number, got {config.batch_size!r}")
    return ks


def _full_ranks(
    model: SequentialRecommender,
    part: SplitPart,
    order: np.ndarray,
    history: Sequence[np.ndarray],
    config: EvalConfig,
    max_k: int,
    device: torch.device,
) -> np.ndarray:
    """Ranks of the answers among all item rows, within the top ``max_k`` (else 0)."""
    num_rows = model.num_items + 2
    k = min(max_k, num_rows)
    flat, offsets = flatten_rows([history[i] for i in order])
    history_score = 0.0 if config.masking == "official" else float("-inf")
    table = model.scoring_table()
    ranks = np.zeros(len(part), dtype=np.int64)
    for start in range(0, len(order), config.batch_size):
        rows = order[start : start + config.batch_size]
        passes = _encoder_passes(model, part.input_ids[rows], device)
        # full_sort_predict's product, once per batch: the passes bound the encoder's memory,
        # and concatenating their [pass, items] score blocks would copy every score again
        scores = _cat([model.last_state(ids) for ids in passes]) @ table.T
        # history of batch row j sits at flat[offsets[start + j] : offsets[start + j + 1]]
        lo, hi = offsets[start], offsets[start + len(rows)]
        if hi > lo:
            row_of = np.repeat(
                np.arange(len(rows)), np.diff(offsets[start : start + len(rows) + 1])
            )
            scores[
                torch.from_numpy(row_of).to(device), torch.from_numpy(flat[lo:hi]).to(device)
            ] = history_score
        if config.masking == "clean":
            scores[:, 0] = float("-inf")
            scores[:, num_rows - 1] = float("-inf")
        top = torch.topk(scores, k, dim=1).indices.cpu().numpy()
        ranks[rows] = ranks_from_topk(top, part.answer[rows])
    return ranks


def _encoder_passes(
    model: SequentialRecommender, input_ids: np.ndarray, device: torch.device
) -> list[torch.Tensor]:
    """``input_ids`` [B, L] cut into row blocks of at most :data:`EVAL_TOKENS_PER_PASS` tokens.

    The blocks bound the memory one forward pass allocates on the CPU (the longest Beauty batch
    has ~30k real tokens: 60 MB per [tokens, 4d] activation, and glibc keeps what a pass frees)
    and change no state, since in eval mode a user's state does not depend on the other users
    it is encoded with. Width counts what the model encodes: the longest sequence where it trims
    padding, else all L positions. A GPU gets the whole batch in one pass.
    """
    trims = model.trim_padding and model.backbone.supports_trimming
    width = int((input_ids != 0).sum(axis=1).max(initial=1)) if trims else input_ids.shape[1]
    step = max(1, EVAL_TOKENS_PER_PASS // max(width, 1)) if device.type == "cpu" else len(input_ids)
    return [
        torch.from_numpy(np.ascontiguousarray(input_ids[start : start + step])).to(device)
        for start in range(0, len(input_ids), step)
    ]


def _cat(blocks: list[torch.Tensor]) -> torch.Tensor:
    return blocks[0] if len(blocks) == 1 else torch.cat(blocks)


def _sampled_ranks(
    model: SequentialRecommender,
    part: SplitPart,
    order: np.ndarray,
    history: Sequence[np.ndarray],
    config: EvalConfig,
    device: torch.device,
    seed: int,
) -> np.ndarray:
    """Rank of the answer among itself and its sampled negatives: 1 + #negatives scored higher.

    Ties count in the answer's favour (a negative must score *strictly* higher to outrank it).
    """
    negatives = sample_eval_negatives(
        history, part.answer, model.num_items, config.num_negatives, seed
    )
    candidates = np.concatenate([part.answer.reshape(-1, 1).astype(np.int64), negatives], axis=1)
    table = model.scoring_table()
    ranks = np.zeros(len(part), dtype=np.int64)
    for start in range(0, len(order), config.batch_size):
        rows = order[start : start + config.batch_size]
        passes = _encoder_passes(model, part.input_ids[rows], device)
        states = _cat([model.last_state(ids) for ids in passes])  # [B, d]
        items = torch.from_numpy(candidates[rows]).to(device)  # [B, 1 + n]
        scores = (table[items] * states[:, None, :]).sum(-1)
        higher = (scores[:, 1:] > scores[:, :1]).sum(dim=1)
        ranks[rows] = (higher + 1).cpu().numpy()
    return ranks


def evaluate(
    model: SequentialRecommender,
    part: SplitPart,
    history: Sequence[np.ndarray],
    group_masks: Mapping[str, np.ndarray],
    config: EvalConfig,
    device: torch.device | str,
    seed: int = 0,
) -> EvaluationOutput:
    """Rank each row's answer and report HR/NDCG@K per user group.

    ``history[r]`` holds the items masked for row r: the *full* user sequence before the answer
    (valid: ``seq[:-2]``, test: ``seq[:-1]``), not the truncated model input. ``group_masks``
    maps a group name to a bool mask over the rows ('overall', all rows, is added when absent);
    empty groups are left out of the output.
    ``seed`` fixes the negatives of sampled mode (full mode is deterministic).
    """
    ks = _validate_eval_config(config)
    if len(history) != len(part):
        raise ValueError(f"history has {len(history)} rows, the split part {len(part)}")
    device = torch.device(device)
    lengths = (part.input_ids != 0).sum(axis=1)
    order = np.argsort(lengths, kind="stable")
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), model.ranking_session():
            if config.mode == "full":
                ranks = _full_ranks(model, part, order, history, config, ks[-1], device)
            else:
                ranks = _sampled_ranks(model, part, order, history, config, device, seed)
    finally:
        model.train(was_training)
    masks = dict(group_masks)
    if "overall" not in masks:
        masks = {"overall": np.ones(len(part), dtype=bool), **masks}
    groups: list[GroupMetrics] = []
    for name, mask in masks.items():
        selected = np.asarray(mask, dtype=bool)
        if selected.shape != (len(part),):
            raise ValueError(
                f"group {name!r}: mask of shape {selected.shape}, expected ({len(part)},)"
            )
        n_users = int(selected.sum())
        if n_users == 0:
            continue
        groups.append(
            GroupMetrics(group=name, n_users=n_users, values=hr_ndcg(ranks[selected], ks))
        )
    return EvaluationOutput(groups=groups, ranks=ranks, user_index=np.asarray(part.user_index))
