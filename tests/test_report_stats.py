"""Significance tests of the report, against values worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from faerec.report.stats import (
    format_p,
    paired_t_test,
    paired_user_wilcoxon,
    per_user_gain,
)
from faerec.results import GroupMetrics, RunResult


def _run(ranks: list[int], users: list[int]) -> RunResult:
    return RunResult(
        config={},
        best_epoch=0,
        best_value=0.0,
        select_metric="ndcg@20",
        epochs_trained=1,
        stop_reason="max_epochs",
        valid=[],
        test=[GroupMetrics("overall", len(ranks), {})],
        history=[],
        seconds=0.0,
        test_ranks=ranks,
        test_user_index=users,
    )


def test_per_user_gain_ndcg_and_hr_by_hand() -> None:
    ranks = [1, 3, 10, 11, 0]
    ndcg = per_user_gain(ranks, "ndcg", 10)
    assert ndcg == pytest.approx([1.0, 0.5, 1 / math.log2(11), 0.0, 0.0])
    assert per_user_gain(ranks, "hr", 10).tolist() == [1.0, 1.0, 1.0, 0.0, 0.0]


def test_paired_t_test_matches_the_closed_form_for_two_degrees_of_freedom() -> None:
    # d = [0.2, 0.3, 0.1]: mean 0.2, sd 0.1, t = 2*sqrt(3); with df = 2 the two-sided
    # p-value is 1 - t / sqrt(t^2 + 2) = 1 - sqrt(12/14).
    outcome = paired_t_test([0.3, 0.5, 0.4], [0.1, 0.2, 0.3])
    assert outcome.p_value == pytest.approx(1 - math.sqrt(12 / 14), rel=1e-9)
    assert outcome.n == 3


def test_paired_t_test_needs_two_seeds_and_varying_differences() -> None:
    assert paired_t_test([0.3], [0.1]).p_value is None
    constant = paired_t_test([0.3, 0.4], [0.2, 0.3])
    assert constant.p_value is None and "identical" in constant.reason


def test_wilcoxon_pairs_users_by_index_not_by_position() -> None:
    # Five users; the baseline misses all of them, the method ranks them 1..5, so every
    # per-user NDCG@10 difference is positive and distinct: exact two-sided p = 2 / 2^5.
    method = _run([5, 4, 3, 2, 1], [14, 13, 12, 11, 10])
    baseline = _run([0, 0, 0, 0, 0], [10, 11, 12, 13, 14])
    outcome = paired_user_wilcoxon({1: method}, {1: baseline}, "ndcg", 10)
    assert outcome.p_value == pytest.approx(2 / 32)
    assert outcome.n == 5


def test_wilcoxon_averages_each_users_difference_over_shared_seeds() -> None:
    # Seed 1 favours the method for every user, seed 2 equally favours the baseline: the
    # seed-averaged difference is zero for everyone, so there is nothing to test.
    users = [0, 1, 2, 3]
    method = {1: _run([1, 1, 1, 1], users), 2: _run([0, 0, 0, 0], users)}
    baseline = {1: _run([0, 0, 0, 0], users), 2: _run([1, 1, 1, 1], users)}
    outcome = paired_user_wilcoxon(method, baseline, "hr", 10)
    assert outcome.p_value == 1.0 and outcome.n == 0


def test_wilcoxon_without_stored_ranks_says_why() -> None:
    run = _run([1], [0])
    run.test_ranks = None
    outcome = paired_user_wilcoxon({1: run}, {1: _run([1], [0])}, "ndcg", 10)
    assert outcome.p_value is None and "ranks" in outcome.reason


def test_wilcoxon_agrees_with_scipy_on_a_larger_sample() -> None:
    from scipy.stats import wilcoxon

    rng = np.random.default_rng(0)
    users = list(range(300))
    ours = rng.integers(0, 21, 300)
    theirs = rng.integers(0, 25, 300)
    outcome = paired_user_wilcoxon(
        {7: _run(ours.tolist(), users)}, {7: _run(theirs.tolist(), users)}, "ndcg", 10
    )
    diffs = per_user_gain(ours, "ndcg", 10) - per_user_gain(theirs, "ndcg", 10)
    assert outcome.p_value == pytest.approx(float(wilcoxon(diffs).pvalue))


def test_wilcoxon_within_an_item_group_pairs_only_its_users() -> None:
    # Users 10-14 have tail targets, 20-22 head targets. Within the tail group the method wins
    # for all five (exact two-sided p = 2 / 2^5); the head users, where it loses, are left out.
    users = [10, 11, 12, 13, 14, 20, 21, 22]
    groups = ["tail"] * 5 + ["head"] * 3
    method = _run([5, 4, 3, 2, 1, 0, 0, 0], users)
    baseline = _run([0, 0, 0, 0, 0, 1, 1, 1], users)
    method.test_user_group = baseline.test_user_group = groups
    outcome = paired_user_wilcoxon({1: method}, {1: baseline}, "ndcg", 10, "tail_items")
    assert outcome.p_value == pytest.approx(2 / 32) and outcome.n == 5


def test_wilcoxon_within_a_group_needs_the_stored_groups() -> None:
    outcome = paired_user_wilcoxon({1: _run([1], [0])}, {1: _run([0], [0])}, "hr", 10, "head_items")
    assert outcome.p_value is None and outcome.reason == "per-user test n/a (seed files predate it)"


@pytest.mark.parametrize(
    ("p_value", "text"),
    [(None, "n/a"), (0.04321, "0.043"), (0.000512, "0.000512"), (2e-6, "<1e-4")],
)
def test_format_p(p_value: float | None, text: str) -> None:
    assert format_p(p_value) == text
