"""Popularity groups (docs/method.md §Head and tail): the official Beauty golden and a
hand-computed toy."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from faerec.data import (
    GROUP_NAMES,
    InteractionData,
    dataset_statistics,
    leave_one_out,
    load_dataset,
    popularity_groups,
    user_group_masks,
)
from faerec.errors import DataError

GOLDEN_DIR = Path(__file__).parent / "golden"

# Item stream in user order: 1 2 3 4 | 2 3 5 | 3 2 | 5 | 4 1 2 6 2
# full counts: 1:2 2:5 3:3 4:2 5:2 6:1; first appearance of the tied 1, 4, 5: 1 < 4 < 5
# seq[:-2]:   [1 2] [2] [] [] [4 1 2] -> 1:2 2:3 4:1
TOY = [[1, 2, 3, 4], [2, 3, 5], [3, 2], [5], [4, 1, 2, 6, 2]]


def _toy(sequences: list[list[int]], num_items: int) -> InteractionData:
    return InteractionData(
        name="toy",
        sequences=[np.asarray(s, dtype=np.int64) for s in sequences],
        num_items=num_items,
        item_fields=[{} for _ in range(num_items + 1)],
    )


def test_beauty_head_tail_matches_the_official_classification() -> None:
    with open(GOLDEN_DIR / "beauty_head_tail.json", encoding="utf-8") as stream:
        golden = json.load(stream)
    data = load_dataset("beauty")
    groups = popularity_groups(data, head_ratio=golden["head_ratio"])
    assert sorted(np.flatnonzero(groups.is_head_item).tolist()) == sorted(golden["head_items"])
    assert data.num_items - int(groups.is_head_item.sum()) == golden["n_tail_items"]
    assert np.flatnonzero(groups.is_head_user).tolist() == sorted(golden["head_users_zero_based"])
    expected_popularity = np.ones(data.num_items + 2, dtype=np.int64)
    for item, count in golden["train_popularity"].items():
        expected_popularity[int(item)] = count
    assert np.array_equal(groups.train_popularity, expected_popularity)


def test_toy_head_items_break_count_ties_by_first_appearance() -> None:
    groups = popularity_groups(_toy(TOY, 6), head_ratio=0.5)
    assert groups.item_counts.tolist() == [0, 2, 5, 3, 2, 2, 1, 0]
    assert np.flatnonzero(groups.is_head_item).tolist() == [1, 2, 3]


def test_toy_train_popularity_counts_all_but_the_last_two_items() -> None:
    groups = popularity_groups(_toy(TOY, 6), head_ratio=0.5)
    assert groups.train_popularity.tolist() == [1, 2, 3, 1, 1, 1, 1, 1]


def test_toy_train_source_counts_training_interactions_only() -> None:
    groups = popularity_groups(_toy(TOY, 6), head_ratio=0.5, source="train")
    assert groups.item_counts.tolist() == [0, 2, 3, 0, 1, 0, 0, 0]
    assert np.flatnonzero(groups.is_head_item).tolist() == [1, 2, 4]
    assert groups.source == "train"


def test_toy_buckets_use_the_official_count_ranges() -> None:
    groups = popularity_groups(_toy(TOY, 6), head_ratio=0.5)
    assert groups.bucket_labels == ["1-4", "5-9", "10-19", "20-49", "50+"]
    assert groups.bucket_of_item.tolist() == [-1, 0, 1, 0, 0, 0, 0, -1]


def test_head_users_are_the_longest_with_ties_by_row() -> None:
    groups = popularity_groups(_toy([[1, 2, 3], [1, 2], [2, 3, 1], [3, 1, 2]], 3), head_ratio=0.5)
    assert groups.is_head_user.tolist() == [True, False, True, False]


def test_user_group_masks_on_the_toy_test_rows() -> None:
    data = _toy(TOY, 6)
    groups = popularity_groups(data, head_ratio=0.5)
    test = leave_one_out(data).test  # users 0, 1, 4 -> answers 4, 5, 2
    masks = user_group_masks(test, groups)
    assert tuple(masks) == GROUP_NAMES
    assert {name: mask.tolist() for name, mask in masks.items()} == {
        "overall": [True, True, True],
        "head_items": [False, False, True],
        "tail_items": [True, True, False],
        "bucket_1-4": [True, True, False],
        "bucket_5-9": [False, False, True],
        "bucket_10-19": [False, False, False],
        "bucket_20-49": [False, False, False],
        "bucket_50+": [False, False, False],
        "head_users": [True, False, True],  # lengths 4, 3, 5: head users are rows 4 and 0
        "tail_users": [False, True, False],
    }


def test_dataset_statistics_of_the_toy() -> None:
    data = _toy(TOY, 6)
    groups = popularity_groups(data, head_ratio=0.5)
    stats = dataset_statistics(data, leave_one_out(data), groups)
    assert {key: stats[key] for key in ("users", "items", "interactions", "avg_length")} == {
        "users": 5,
        "items": 6,
        "interactions": 15,
        "avg_length": 3.0,
    }
    assert (stats["n_head_items"], stats["n_tail_items"]) == (3, 3)
    assert (stats["n_train"], stats["n_valid"], stats["n_test"]) == (3, 3, 3)
    assert (stats["head_ratio"], stats["popularity_source"]) == (0.5, "full")


def test_unknown_popularity_source_is_a_data_error() -> None:
    with pytest.raises(DataError, match="popularity source"):
        popularity_groups(_toy(TOY, 6), source="valid")
