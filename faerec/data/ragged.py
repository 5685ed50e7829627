"""Ragged per-row integer arrays (one user's items per row) as one flat array plus offsets.

Both the trainer (negatives that avoid a user's items) and the evaluator (history masking)
need per-user item sets as fast boolean rows; numpy only, so the data layer stays torch-free.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def flatten_rows(arrays: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Per-row arrays -> (flat items, offsets [N + 1]); row r is ``flat[off[r] : off[r + 1]]``."""
    lengths = np.fromiter((len(a) for a in arrays), dtype=np.int64, count=len(arrays))
    offsets = np.zeros(len(arrays) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    if len(arrays) == 0 or offsets[-1] == 0:
        return np.zeros(0, dtype=np.int64), offsets
    flat = np.concatenate([np.asarray(a, dtype=np.int64).reshape(-1) for a in arrays])
    return flat, offsets


def row_membership(
    flat: np.ndarray, offsets: np.ndarray, rows: np.ndarray, width: int
) -> np.ndarray:
    """Boolean [len(rows), width] matrix: True where the item belongs to that row's set."""
    member = np.zeros((len(rows), width), dtype=bool)
    starts = offsets[rows]
    lengths = offsets[rows + 1] - starts
    total = int(lengths.sum())
    if total:
        row_of = np.repeat(np.arange(len(rows)), lengths)
        # position of each entry inside the flat array: start of its row + rank within the row
        within = np.arange(total) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        member[row_of, flat[np.repeat(starts, lengths) + within]] = True
    return member
