"""The leave-one-out split of docs/method.md §Split, exactly as the official ``SASRecDataset``
builds it.

For a user with n >= 4 items: train = items[:-3] -> items[1:-2], valid = items[:-2] -> items[-2],
test = items[:-1] -> items[-1]. Short users follow the official ``filter_user``: n = 1 is unused,
n = 2 gives one training row ([i1] -> [i2]) and no evaluation, n = 3 gives no training row and
valid/test rows whose ``target_pos`` is all zeros. Rows are left-padded and cut to the last
``max_len`` items. The arrays are built with index arithmetic, not per-user Python loops, so a
30k-user dataset splits in well under a second.
"""

from __future__ import annotations

import numpy as np

from faerec.data.types import InteractionData, LeaveOneOutSplit, SplitPart
from faerec.errors import DataError


def leave_one_out(data: InteractionData, max_len: int = 50) -> LeaveOneOutSplit:
    """Split every user's sequence into its train, valid and test rows (docs/method.md §Split)."""
    if max_len < 1:
        raise DataError(f"max_len must be a positive integer, got {max_len}")
    lengths = np.fromiter((len(s) for s in data.sequences), dtype=np.int64, count=data.num_users)
    starts = np.zeros(data.num_users, dtype=np.int64)
    np.cumsum(lengths[:-1], out=starts[1:])
    flat = (
        np.concatenate(data.sequences).astype(np.int64)
        if data.num_users
        else np.zeros(0, dtype=np.int64)
    )
    users = np.arange(data.num_users, dtype=np.int64)

    # train: n >= 4 -> items[:n-3] -> items[1:n-2]; n == 2 -> [i1] -> [i2]; n in {1, 3}: no row.
    train_users = users[(lengths >= 4) | (lengths == 2)]
    train_input_len = np.where(lengths[train_users] == 2, 1, lengths[train_users] - 3)
    train = _part(
        flat,
        starts[train_users],
        train_input_len,
        train_users,
        max_len,
        answer=np.zeros(len(train_users), dtype=np.int64),  # the official train answer is [0]
        zero_targets=np.zeros(len(train_users), dtype=bool),
    )

    # valid / test: every user with n >= 3; n == 3 rows carry all-zero targets (filter_user).
    eval_users = users[lengths >= 3]
    eval_starts = starts[eval_users]
    eval_lengths = lengths[eval_users]
    short = eval_lengths == 3
    valid = _part(
        flat,
        eval_starts,
        eval_lengths - 2,
        eval_users,
        max_len,
        answer=flat[eval_starts + eval_lengths - 2],
        zero_targets=short,
    )
    test = _part(
        flat,
        eval_starts,
        eval_lengths - 1,
        eval_users,
        max_len,
        answer=flat[eval_starts + eval_lengths - 1],
        zero_targets=short,
    )
    user_items = _distinct_items_per_user(flat, lengths)
    return LeaveOneOutSplit(
        train=train,
        valid=valid,
        test=test,
        max_len=max_len,
        num_items=data.num_items,
        user_items=user_items,
    )


def _part(
    flat: np.ndarray,
    starts: np.ndarray,
    input_lengths: np.ndarray,
    user_index: np.ndarray,
    max_len: int,
    *,
    answer: np.ndarray,
    zero_targets: np.ndarray,
) -> SplitPart:
    """Rows whose input is items[:m] and whose targets are items[1:m+1], left-padded to max_len."""
    input_ids = _left_padded_window(flat, starts, starts + input_lengths, max_len)
    target_pos = _left_padded_window(flat, starts + 1, starts + 1 + input_lengths, max_len)
    target_pos[zero_targets] = 0
    return SplitPart(
        input_ids=input_ids,
        target_pos=target_pos,
        answer=answer.astype(np.int64),
        user_index=user_index.astype(np.int64),
    )


def _left_padded_window(
    flat: np.ndarray, starts: np.ndarray, ends: np.ndarray, max_len: int
) -> np.ndarray:
    """Matrix whose row r holds flat[starts[r]:ends[r]], cut to its last max_len, padded left."""
    positions = ends[:, None] - max_len + np.arange(max_len, dtype=np.int64)[None, :]
    inside = positions >= starts[:, None]
    if flat.size == 0:
        return np.zeros((len(starts), max_len), dtype=np.int64)
    return np.where(inside, flat[np.where(inside, positions, 0)], 0).astype(np.int64)


def _distinct_items_per_user(flat: np.ndarray, lengths: np.ndarray) -> list[np.ndarray]:
    """Each user's distinct items, sorted (what negative sampling must avoid), in one sort."""
    owner = np.repeat(np.arange(len(lengths), dtype=np.int64), lengths)
    order = np.lexsort((flat, owner))
    sorted_items, sorted_owner = flat[order], owner[order]
    keep = np.ones(len(order), dtype=bool)
    keep[1:] = (sorted_items[1:] != sorted_items[:-1]) | (sorted_owner[1:] != sorted_owner[:-1])
    distinct_counts = np.bincount(sorted_owner[keep], minlength=len(lengths))
    return np.split(sorted_items[keep], np.cumsum(distinct_counts)[:-1])
