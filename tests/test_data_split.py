"""The leave-one-out split (docs/method.md §Split) against the official golden rows and
hand-built cases."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from faerec.data import InteractionData, leave_one_out, load_dataset
from faerec.data.types import SplitPart

GOLDEN = Path(__file__).parent / "golden" / "beauty_split_first300.npz"


def _toy(sequences: list[list[int]], num_items: int) -> InteractionData:
    return InteractionData(
        name="toy",
        sequences=[np.asarray(s, dtype=np.int64) for s in sequences],
        num_items=num_items,
        item_fields=[{} for _ in range(num_items + 1)],
    )


@pytest.mark.parametrize("part_name", ["train", "valid", "test"])
def test_first_300_beauty_users_match_the_official_dataset(part_name: str) -> None:
    golden = np.load(GOLDEN)
    split = leave_one_out(load_dataset("beauty"), max_len=50)
    part: SplitPart = getattr(split, part_name)
    rows = part.user_index < 300
    assert np.array_equal(part.user_index[rows], np.arange(300))
    for array in ("input_ids", "target_pos", "answer"):
        expected = golden[f"{part_name}_{array}"]
        assert np.array_equal(getattr(part, array)[rows].reshape(expected.shape), expected), array


def test_short_users_follow_the_official_filter_user() -> None:
    # n=1 unused; n=2 train only; n=3 valid/test only, with all-zero targets; n=5 regular.
    split = leave_one_out(_toy([[7], [1, 2], [3, 4, 5], [1, 2, 3, 4, 5]], 7), max_len=4)
    assert split.train.user_index.tolist() == [1, 3]
    assert split.train.input_ids.tolist() == [[0, 0, 0, 1], [0, 0, 1, 2]]
    assert split.train.target_pos.tolist() == [[0, 0, 0, 2], [0, 0, 2, 3]]
    assert split.train.answer.tolist() == [0, 0]
    assert split.valid.user_index.tolist() == [2, 3]
    assert split.valid.input_ids.tolist() == [[0, 0, 0, 3], [0, 1, 2, 3]]
    assert split.valid.target_pos.tolist() == [[0, 0, 0, 0], [0, 2, 3, 4]]
    assert split.valid.answer.tolist() == [4, 4]
    assert split.test.user_index.tolist() == [2, 3]
    assert split.test.input_ids.tolist() == [[0, 0, 3, 4], [1, 2, 3, 4]]
    assert split.test.target_pos.tolist() == [[0, 0, 0, 0], [2, 3, 4, 5]]
    assert split.test.answer.tolist() == [5, 5]


def test_long_sequences_keep_their_last_max_len_items() -> None:
    split = leave_one_out(_toy([list(range(1, 11))], 10), max_len=3)
    assert split.train.input_ids.tolist() == [[5, 6, 7]]
    assert split.train.target_pos.tolist() == [[6, 7, 8]]
    assert split.valid.input_ids.tolist() == [[6, 7, 8]]
    assert split.test.input_ids.tolist() == [[7, 8, 9]]
    assert split.test.target_pos.tolist() == [[8, 9, 10]]


def test_user_items_are_each_users_distinct_items_sorted() -> None:
    split = leave_one_out(_toy([[3, 1, 3, 2], [5]], 5))
    assert [items.tolist() for items in split.user_items] == [[1, 2, 3], [5]]
    assert (split.max_len, split.num_items) == (50, 5)
