"""The data contract: what every loader returns and what the split/grouping code produces.

Loaders know files; everything downstream sees only these types.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


@dataclass(frozen=True)
class InteractionData:
    """A dataset: chronological item sequences per user plus item fields for text.

    Item ids are 1..num_items; 0 is padding. ``item_fields[i]`` holds the text fields of item i
    (``item_fields[0]`` is an empty dict).
    """

    name: str
    sequences: list[np.ndarray]
    num_items: int
    item_fields: list[dict[str, Any]]
    source: Path | None = None
    #: default text template for this dataset, e.g. "Title: {title}; Attributes: {attributes}"
    text_template: str = ""
    #: precomputed float16 MiniLM matrix shipped with a bundled dataset (may seed the cache)
    bundled_embedding: Path | None = None
    #: the exact template the bundled matrix was computed with
    bundled_embedding_template: str = ""
    fingerprint: str = ""

    @property
    def num_users(self) -> int:
        return len(self.sequences)

    @property
    def num_interactions(self) -> int:
        return int(sum(len(s) for s in self.sequences))


@dataclass(frozen=True)
class SplitPart:
    """One split (train, valid or test), left-padded to ``max_len``.

    ``input_ids`` [N, L]; ``target_pos`` [N, L] (train: next item at every position, 0 on padding;
    valid/test: as the official dataset builds them); ``answer`` [N] (the item to predict,
    valid/test only; train: 0, as in the official dataset); ``user_index`` [N] (row of the user
    in the dataset).
    """

    input_ids: np.ndarray
    target_pos: np.ndarray
    answer: np.ndarray
    user_index: np.ndarray

    def __len__(self) -> int:
        return int(self.input_ids.shape[0])


@dataclass(frozen=True)
class LeaveOneOutSplit:
    """The leave-one-out split (docs/method.md §Split) plus what evaluation needs to mask
    history."""

    train: SplitPart
    valid: SplitPart
    test: SplitPart
    max_len: int
    num_items: int
    #: per user (dataset row): the set of all its items, used for training negatives
    user_items: list[np.ndarray] = field(repr=False, default_factory=list)


@dataclass(frozen=True)
class PopularityGroups:
    """Item and user groups (docs/method.md §Head and tail), indexed by item id (num_items + 2)."""

    item_counts: np.ndarray  # counts from the configured popularity source
    is_head_item: np.ndarray  # bool
    bucket_of_item: np.ndarray  # int, index into bucket_labels (-1 for never-seen ids)
    bucket_labels: list[str]
    is_head_user: np.ndarray  # bool, indexed by dataset row
    train_popularity: np.ndarray  # counts over seq[:-2] per item, never-seen items = 1
    head_ratio: float = 0.2  # the share of items (and users) that are head
    source: str = "full"  # what item_counts counted: 'full' sequences or 'train' (seq[:-2])
