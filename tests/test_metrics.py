"""HR/NDCG from ranks and ranked lists: hand-computed cases and the official golden vectors."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from faerec.evaluation import hr_ndcg, metric_names, ranks_from_topk, topk_metrics

GOLDEN = Path(__file__).parent / "golden" / "metrics.json"


def _golden() -> tuple[np.ndarray, np.ndarray, dict[str, float]]:
    payload = json.loads(GOLDEN.read_text())
    answers = np.array([a[0] for a in payload["answers"]])
    return answers, np.array(payload["top20"]), payload["metrics"]


def test_rank_one_scores_one() -> None:
    assert hr_ndcg(np.array([1]), [1, 5]) == {
        "hr@1": 1.0,
        "ndcg@1": 1.0,
        "hr@5": 1.0,
        "ndcg@5": 1.0,
    }


def test_rank_three_has_ndcg_one_half() -> None:
    # 1 / log2(3 + 1) = 1 / 2
    metrics = hr_ndcg(np.array([3]), [2, 3, 5])
    assert metrics["hr@2"] == 0.0 and metrics["ndcg@2"] == 0.0
    assert metrics["hr@3"] == 1.0 and metrics["ndcg@3"] == 0.5
    assert metrics["ndcg@5"] == 0.5


def test_unranked_users_count_as_misses() -> None:
    # ranks 1, 0 (outside the list), 7: HR@10 = 2/3, NDCG@10 = (1 + 1/log2(8)) / 3 = (1 + 1/3) / 3
    metrics = hr_ndcg(np.array([1, 0, 7]), [10])
    assert metrics["hr@10"] == pytest.approx(2 / 3)
    assert metrics["ndcg@10"] == pytest.approx((1 + 1 / 3) / 3)


def test_ranks_from_topk_is_one_based_and_zero_when_absent() -> None:
    topk = np.array([[7, 3, 9], [7, 3, 9], [7, 3, 9]])
    ranks = ranks_from_topk(topk, np.array([7, 9, 4]))
    assert ranks.tolist() == [1, 3, 0]


def test_metric_names_are_ordered_by_cutoff() -> None:
    assert metric_names([20, 5, 10]) == ["hr@5", "ndcg@5", "hr@10", "ndcg@10", "hr@20", "ndcg@20"]


def test_official_golden_metrics_reproduced_exactly() -> None:
    answers, top20, expected = _golden()
    assert topk_metrics(top20, answers, [5, 10, 20]) == expected


def test_ranks_path_matches_golden_on_lists_without_repeats() -> None:
    # Real top-K lists never repeat an item; there the rank path equals the official formula.
    answers, top20, _ = _golden()
    distinct = np.array([len(set(row)) == len(row) for row in top20])
    assert distinct.sum() > 100
    via_ranks = hr_ndcg(ranks_from_topk(top20[distinct], answers[distinct]), [5, 10, 20])
    official = topk_metrics(top20[distinct], answers[distinct], [5, 10, 20])
    assert via_ranks == pytest.approx(official, rel=1e-12)


def test_empty_rank_array_gives_nan() -> None:
    metrics = hr_ndcg(np.zeros(0, dtype=np.int64), [10])
    assert math.isnan(metrics["hr@10"]) and math.isnan(metrics["ndcg@10"])
