"""Significance tests of a method against its backbone.

Two paired tests, because they answer different questions:

* **paired t-test over seeds** (``scipy.stats.ttest_rel``): is the mean over training seeds
  better? Seeds are paired by their seed number (same seed = same initialisation stream).
  It has few degrees of freedom (n_seeds - 1), so it is conservative.
* **Wilcoxon signed-rank over users** (``scipy.stats.wilcoxon``): is the method better for the
  typical test user? Per-user NDCG@K / HR@K come from the stored 1-based test ranks; users are
  paired by ``test_user_index`` *within the same seed*; the per-user differences are then
  averaged over the seeds both methods share, so each user is one observation. Users whose
  difference is exactly zero are dropped (``zero_method="wilcox"``), as is standard. Within
  the head-item or tail-item columns only the users whose test target is in that item group
  take part (``RunResult.test_user_group``); seed files that predate it get no such test.

Neither test is corrected for multiple comparisons; the report says so.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as scipy_stats

from faerec.results import RunResult

SIGNIFICANCE_LEVEL = 0.05


@dataclass(frozen=True)
class TestOutcome:
    """A p-value, or None with the reason the test could not be run."""

    p_value: float | None
    #: seeds (t-test) or users with a non-zero difference (Wilcoxon)
    n: int
    reason: str = ""

    @property
    def significant(self) -> bool:
        return self.p_value is not None and self.p_value < SIGNIFICANCE_LEVEL


def paired_t_test(method_values: Sequence[float], baseline_values: Sequence[float]) -> TestOutcome:
    """Two-sided paired t-test of equal-length per-seed values."""
    a = np.asarray(method_values, dtype=np.float64)
    b = np.asarray(baseline_values, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"paired samples differ in length: {a.shape} vs {b.shape}")
    n = int(a.size)
    if n < 2:
        return TestOutcome(None, n, "needs at least 2 shared seeds")
    diff = a - b
    if np.allclose(diff, diff[0], rtol=0.0, atol=1e-15):
        return TestOutcome(None, n, "differences are identical across seeds")
    result = scipy_stats.ttest_rel(a, b)
    p_value = float(result.pvalue)
    return TestOutcome(None if math.isnan(p_value) else p_value, n)


def per_user_gain(ranks: Sequence[int] | np.ndarray, metric: str, k: int) -> np.ndarray:
    """Per-user NDCG@K or HR@K from 1-based ranks (0 = outside the evaluated top list).

    One relevant item per user, so IDCG = 1 and NDCG@K = 1 / log2(rank + 1) for rank <= K.
    """
    rank = np.asarray(ranks, dtype=np.int64)
    hit = (rank > 0) & (rank <= k)
    if metric == "hr":
        return hit.astype(np.float64)
    if metric == "ndcg":
        gain = np.zeros(rank.shape, dtype=np.float64)
        gain[hit] = 1.0 / np.log2(rank[hit] + 1.0)
        return gain
    raise ValueError(f"unknown metric {metric!r}: expected 'hr' or 'ndcg'")


#: the per-user test's reason when a seed file has ranks but no per-user item group
PREDATES_USER_GROUP = "per-user test n/a (seed files predate it)"
#: result groups whose users the per-user test can select: None = every user
USER_TEST_GROUPS: dict[str, str | None] = {
    "overall": None,
    "head_items": "head",
    "tail_items": "tail",
}


def _user_series(
    result: RunResult, metric: str, k: int, group: str | None
) -> dict[int, float] | None:
    """Per-user gains by ``test_user_index``; only users whose target is in ``group``."""
    if result.test_ranks is None or result.test_user_index is None:
        return None
    if group is not None and result.test_user_group is None:
        return None
    gains = per_user_gain(result.test_ranks, metric, k)
    users = (int(u) for u in result.test_user_index)
    if group is None:
        return dict(zip(users, gains.tolist(), strict=True))
    assert result.test_user_group is not None
    return {
        user: gain
        for user, gain, own in zip(users, gains.tolist(), result.test_user_group, strict=True)
        if own == group
    }


def paired_user_wilcoxon(
    method_runs: Mapping[int, RunResult],
    baseline_runs: Mapping[int, RunResult],
    metric: str,
    k: int,
    group: str = "overall",
) -> TestOutcome:
    """Wilcoxon signed-rank test on per-user differences, paired within each shared seed.

    ``group`` (a key of USER_TEST_GROUPS) keeps the users whose test target item is in that
    item group, as stored per user in ``RunResult.test_user_group``.
    """
    if group not in USER_TEST_GROUPS:
        raise ValueError(
            f"no per-user test for group {group!r}: expected one of {', '.join(USER_TEST_GROUPS)}"
        )
    selected = USER_TEST_GROUPS[group]
    seeds = sorted(set(method_runs) & set(baseline_runs))
    if not seeds:
        return TestOutcome(None, 0, "no shared seeds")
    diff_sum: dict[int, float] = {}
    diff_count: dict[int, int] = {}
    for seed in seeds:
        runs = (method_runs[seed], baseline_runs[seed])
        if any(r.test_ranks is None or r.test_user_index is None for r in runs):
            return TestOutcome(None, 0, "per-user test ranks not stored")
        ours = _user_series(runs[0], metric, k, selected)
        theirs = _user_series(runs[1], metric, k, selected)
        if ours is None or theirs is None:
            return TestOutcome(None, 0, PREDATES_USER_GROUP)
        for user in ours.keys() & theirs.keys():
            diff_sum[user] = diff_sum.get(user, 0.0) + ours[user] - theirs[user]
            diff_count[user] = diff_count.get(user, 0) + 1
    if not diff_sum:
        return TestOutcome(None, 0, "no user evaluated by both methods")
    diffs = np.array([diff_sum[u] / diff_count[u] for u in sorted(diff_sum)], dtype=np.float64)
    nonzero = int(np.count_nonzero(np.abs(diffs) > 1e-12))
    if nonzero == 0:
        return TestOutcome(1.0, 0, "every user scores the same under both methods")
    result = scipy_stats.wilcoxon(diffs, zero_method="wilcox", alternative="two-sided")
    p_value = float(result.pvalue)
    return TestOutcome(None if math.isnan(p_value) else p_value, nonzero)


def format_p(p_value: float | None) -> str:
    """p-values as a paper prints them: 3 significant digits, '<1e-4' below that."""
    if p_value is None:
        return "n/a"
    if p_value < 1e-4:
        return "<1e-4"
    return f"{p_value:.3g}" if p_value < 0.001 else f"{p_value:.3f}"
