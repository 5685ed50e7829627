"""Item popularity, head/tail groups and popularity buckets (docs/method.md §Head and tail).

Official behaviour (``ht_process.classify_head_and_tail``): item counts over the full sequences,
valid and test items included; the top floor(head_ratio * |I|) items by count are head items,
ties broken by first appearance (users in dataset order); the top floor(head_ratio * |U|) users
by sequence length are head users, ties broken by dataset row. The feature-level loss uses a
different popularity: counts over each sequence without its last two items, never-seen items 1.
``source='train'`` counts only those training interactions for the head/tail cut as well, so no
validation or test item leaks into the grouping.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from faerec.data.types import InteractionData, LeaveOneOutSplit, PopularityGroups, SplitPart
from faerec.errors import DataError

POPULARITY_SOURCES = ("full", "train")

#: Buckets of the official ``--do_eval`` breakdown: (lowest count, highest count, label).
BUCKETS: tuple[tuple[int, float, str], ...] = (
    (1, 4, "1-4"),
    (5, 9, "5-9"),
    (10, 19, "10-19"),
    (20, 49, "20-49"),
    (50, float("inf"), "50+"),
)
BUCKET_LABELS = [label for _, _, label in BUCKETS]

#: Names of the row groups every evaluation reports, in display order.
GROUP_NAMES = (
    "overall",
    "head_items",
    "tail_items",
    *(f"bucket_{label}" for label in BUCKET_LABELS),
    "head_users",
    "tail_users",
)


def popularity_groups(
    data: InteractionData, head_ratio: float = 0.2, source: str = "full"
) -> PopularityGroups:
    """Head/tail items and users, count buckets and the training popularity of every item id."""
    if source not in POPULARITY_SOURCES:
        raise DataError(
            f"popularity source must be one of {', '.join(POPULARITY_SOURCES)}, got {source!r}"
        )
    if not 0.0 <= head_ratio <= 1.0:
        raise DataError(f"head_ratio must be between 0 and 1, got {head_ratio}")
    size = data.num_items + 2
    full_items = _concat(data.sequences)
    train_items = _concat([sequence[:-2] for sequence in data.sequences])

    counted = full_items if source == "full" else train_items
    item_counts = np.bincount(counted, minlength=size).astype(np.int64)
    # First appearance of every id in the counted stream; ids never seen sort after all others.
    first_seen = np.full(size, len(counted), dtype=np.int64)
    seen_ids, first_index = np.unique(counted, return_index=True)
    first_seen[seen_ids] = first_index
    candidates = np.arange(1, data.num_items + 1)
    ranking = candidates[np.lexsort((first_seen[candidates], -item_counts[candidates]))]
    n_head = int(data.num_items * head_ratio)
    is_head_item = np.zeros(size, dtype=bool)
    is_head_item[ranking[:n_head]] = True

    bucket_of_item = np.full(size, -1, dtype=np.int64)
    for index, (low, high, _) in enumerate(BUCKETS):
        bucket_of_item[(item_counts >= low) & (item_counts <= high)] = index

    lengths = np.fromiter((len(s) for s in data.sequences), dtype=np.int64, count=data.num_users)
    user_ranking = np.argsort(-lengths, kind="stable")
    is_head_user = np.zeros(data.num_users, dtype=bool)
    is_head_user[user_ranking[: int(data.num_users * head_ratio)]] = True

    train_popularity = np.bincount(train_items, minlength=size).astype(np.int64)
    train_popularity[train_popularity == 0] = 1  # official: Counter.get(item, 1)

    return PopularityGroups(
        item_counts=item_counts,
        is_head_item=is_head_item,
        bucket_of_item=bucket_of_item,
        bucket_labels=list(BUCKET_LABELS),
        is_head_user=is_head_user,
        train_popularity=train_popularity,
        head_ratio=head_ratio,
        source=source,
    )


def user_group_masks(part: SplitPart, groups: PopularityGroups) -> dict[str, np.ndarray]:
    """Boolean masks over the rows of ``part``: item groups by answer item, user groups by user."""
    answer = np.asarray(part.answer).reshape(-1)
    is_item = (answer > 0) & (answer < len(groups.is_head_item) - 1)
    is_head = is_item & groups.is_head_item[answer]
    masks: dict[str, np.ndarray] = {
        "overall": np.ones(len(answer), dtype=bool),
        "head_items": is_head,
        "tail_items": is_item & ~is_head,
    }
    bucket = groups.bucket_of_item[answer]
    for index, label in enumerate(groups.bucket_labels):
        masks[f"bucket_{label}"] = bucket == index
    head_user = groups.is_head_user[part.user_index]
    masks["head_users"] = head_user
    masks["tail_users"] = ~head_user
    return masks


def dataset_statistics(
    data: InteractionData, split: LeaveOneOutSplit, groups: PopularityGroups
) -> dict[str, Any]:
    """Plain-number summary of a dataset, its split and its groups (for logs and reports)."""
    n_head = int(groups.is_head_item.sum())
    items_per_bucket = {
        label: int((groups.bucket_of_item[1 : data.num_items + 1] == index).sum())
        for index, label in enumerate(groups.bucket_labels)
    }
    return {
        "dataset": data.name,
        "fingerprint": data.fingerprint,
        "users": data.num_users,
        "items": data.num_items,
        "interactions": data.num_interactions,
        "avg_length": round(data.num_interactions / data.num_users, 4) if data.num_users else 0.0,
        "n_head_items": n_head,
        "n_tail_items": data.num_items - n_head,
        "n_head_users": int(groups.is_head_user.sum()),
        "n_train": len(split.train),
        "n_valid": len(split.valid),
        "n_test": len(split.test),
        "n_eval_users": len(split.test),
        "max_len": split.max_len,
        "head_ratio": groups.head_ratio,
        "popularity_source": groups.source,
        "items_per_bucket": items_per_bucket,
    }


def _concat(sequences: list[np.ndarray]) -> np.ndarray:
    parts = [sequence for sequence in sequences if len(sequence)]
    return np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, dtype=np.int64)
