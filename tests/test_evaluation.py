"""The evaluator on hand-built score matrices: masking, ranks, groups, sampled negatives."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import Tensor

from faerec.config import EvalConfig, ModelConfig
from faerec.data.types import SplitPart
from faerec.evaluation import evaluate, sample_eval_negatives
from faerec.models.base import Backbone, LossTerms, SequentialRecommender, TrainBatch


class _PassThrough(Backbone):
    """Encoder that returns its input: the user vector reaches the scoring layer unchanged."""

    name = "pass-through"
    uses_position_embedding = False

    def encode(self, inputs: Tensor, padding_mask: Tensor) -> Tensor:
        return inputs


class FixedScores(SequentialRecommender):
    """A real SequentialRecommender whose scores are a given [users, num_items + 2] matrix.

    Row u of the split asks for user u by putting ``u + 1`` as its last input id; the input
    layer maps id u + 1 to the one-hot vector e_u and the scoring table is the matrix transposed,
    so ``full_sort_predict`` returns exactly ``scores[u]``.
    """

    user_vectors: Tensor
    table: Tensor

    def __init__(self, scores: np.ndarray) -> None:
        users, rows = scores.shape
        backbone = _PassThrough(rows - 2, ModelConfig(hidden_size=users), max_len=4)
        super().__init__(backbone)
        one_hot = torch.cat([torch.zeros(1, users), torch.eye(users)])
        self.register_buffer("user_vectors", one_hot)
        self.register_buffer("table", torch.tensor(scores, dtype=torch.float32).T.contiguous())

    def input_embeddings(self, item_ids: Tensor, positions: Tensor) -> Tensor:
        return self.user_vectors[item_ids]

    def calculate_loss(self, batch: TrainBatch, epoch: int) -> LossTerms:
        raise NotImplementedError("evaluation-only test model")

    def scoring_table(self) -> Tensor:
        return self.table


def _part(answers: list[int], lengths: list[int] | None = None) -> SplitPart:
    """Rows whose last input id names the user (u + 1); ``lengths`` varies the left padding."""
    n = len(answers)
    lengths = lengths or [1] * n
    input_ids = np.zeros((n, 4), dtype=np.int64)
    for row, length in enumerate(lengths):
        input_ids[row, 4 - length :] = row + 1
    return SplitPart(
        input_ids=input_ids,
        target_pos=np.zeros((n, 4), dtype=np.int64),
        answer=np.array(answers, dtype=np.int64),
        user_index=np.arange(n),
    )


# one user, num_items = 5, rows 0..6; history = [3], answer = 5 scored -0.1
MASKING_SCORES = np.array([[0.9, -1.0, 0.3, 0.8, -0.2, -0.1, 0.95]])


def test_official_masking_scores_history_zero_and_keeps_padding_rows() -> None:
    # ranking: row 6 (0.95), row 0 (0.9), item 2 (0.3), item 3 (history -> 0), item 5 (-0.1)
    out = evaluate(
        FixedScores(MASKING_SCORES),
        _part([5]),
        [np.array([3])],
        {},
        EvalConfig(ks=[5], masking="official"),
        "cpu",
    )
    assert out.ranks.tolist() == [5]


def test_clean_masking_removes_history_and_padding_rows() -> None:
    # rows 0, 6 and item 3 at -inf: item 2 (0.3), then the answer
    out = evaluate(
        FixedScores(MASKING_SCORES),
        _part([5]),
        [np.array([3])],
        {},
        EvalConfig(ks=[5], masking="clean"),
        "cpu",
    )
    assert out.ranks.tolist() == [2]


def test_answer_outside_top_k_gets_rank_zero() -> None:
    out = evaluate(
        FixedScores(MASKING_SCORES),
        _part([5]),
        [np.array([3])],
        {},
        EvalConfig(ks=[1, 3], masking="official"),
        "cpu",
    )
    assert out.ranks.tolist() == [0]
    assert out.overall == {"hr@1": 0.0, "ndcg@1": 0.0, "hr@3": 0.0, "ndcg@3": 0.0}


def _three_users() -> tuple[np.ndarray, SplitPart, list[np.ndarray]]:
    # num_items = 6, rows 0..7; answers 1, 2, 3 reach ranks 1, 3 and 2 under official masking
    scores = np.array(
        [
            [-9, 0.9, 0.5, 0.4, 0.3, 0.2, 0.1, -9],  # answer 1 scores highest
            [-9, 0.9, 0.5, 0.8, 0.3, 0.2, 0.1, -9],  # items 1, 3, then answer 2
            [-9, 0.9, 0.5, 0.4, 0.3, 0.2, 0.1, -9],  # history {1} -> 0: item 2, then answer 3
        ]
    )
    part = _part([1, 2, 3], lengths=[1, 3, 2])
    history = [np.array([], dtype=np.int64), np.array([6]), np.array([1, 1])]
    return scores, part, history


def test_ranks_and_metrics_per_group() -> None:
    scores, part, history = _three_users()
    masks = {"overall": np.array([True, True, True]), "tail_items": np.array([False, True, True])}
    out = evaluate(FixedScores(scores), part, history, masks, EvalConfig(ks=[1, 3]), "cpu")
    assert out.ranks.tolist() == [1, 3, 2]
    tail = out.group("tail_items")
    assert tail.n_users == 2
    assert tail.values["hr@1"] == 0.0
    assert tail.values["ndcg@3"] == pytest.approx((0.5 + 1 / np.log2(3)) / 2)
    assert out.group("overall").values["hr@1"] == pytest.approx(1 / 3)


def test_empty_groups_are_left_out() -> None:
    scores, part, history = _three_users()
    masks = {"overall": np.ones(3, dtype=bool), "head_users": np.zeros(3, dtype=bool)}
    out = evaluate(FixedScores(scores), part, history, masks, EvalConfig(ks=[1]), "cpu")
    assert [g.group for g in out.groups] == ["overall"]


def test_batch_size_does_not_change_ranks() -> None:
    scores, part, history = _three_users()
    one = evaluate(FixedScores(scores), part, history, {}, EvalConfig(ks=[3], batch_size=1), "cpu")
    many = evaluate(
        FixedScores(scores), part, history, {}, EvalConfig(ks=[3], batch_size=64), "cpu"
    )
    assert one.ranks.tolist() == many.ranks.tolist() == [1, 3, 2]


def test_sampled_rank_counts_strictly_higher_negatives() -> None:
    # num_items = 4; the answer 2 scores 0.5; negatives come from {1, 3, 4} minus history {4}
    scores = np.array([[0.0, 0.5, 0.5, 0.9, 0.7, 0.0]])
    config = EvalConfig(mode="sampled", num_negatives=50, ks=[1, 5])
    out = evaluate(FixedScores(scores), _part([2]), [np.array([4])], {}, config, "cpu", seed=3)
    negatives = sample_eval_negatives([np.array([4])], np.array([2]), 4, 50, seed=3)[0]
    # item 1 ties with the answer (not counted), item 3 outranks it
    assert out.ranks.tolist() == [1 + int((negatives == 3).sum())]


def test_sampled_negatives_avoid_history_and_answer() -> None:
    rng = np.random.default_rng(0)
    history = [rng.choice(np.arange(1, 31), size=size, replace=False) for size in (0, 5, 25)]
    answers = np.array([7, 8, 9])
    negatives = sample_eval_negatives(history, answers, num_items=30, num_negatives=200, seed=1)
    assert negatives.shape == (3, 200)
    assert negatives.min() >= 1 and negatives.max() <= 30
    for row in range(3):
        forbidden = set(history[row].tolist()) | {int(answers[row])}
        assert not forbidden & set(negatives[row].tolist())


def test_sampled_mode_is_deterministic_under_a_seed() -> None:
    history = [np.array([1, 2]), np.array([3])]
    first = sample_eval_negatives(history, np.array([4, 5]), 50, 100, seed=11)
    again = sample_eval_negatives(history, np.array([4, 5]), 50, 100, seed=11)
    other = sample_eval_negatives(history, np.array([4, 5]), 50, 100, seed=12)
    assert np.array_equal(first, again)
    assert not np.array_equal(first, other)


def test_sampled_evaluation_repeats_exactly() -> None:
    scores, part, history = _three_users()
    config = EvalConfig(mode="sampled", num_negatives=20, ks=[1, 3], batch_size=2)
    first = evaluate(FixedScores(scores), part, history, {}, config, "cpu", seed=5)
    again = evaluate(FixedScores(scores), part, history, {}, config, "cpu", seed=5)
    assert first.ranks.tolist() == again.ranks.tolist()
    assert first.overall == again.overall
