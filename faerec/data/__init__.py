"""The data layer: load datasets, split them leave-one-out, group items and users by popularity.

Loaders know files; everything downstream sees only the types of :mod:`faerec.data.types`.
"""

from faerec.data.groups import (
    BUCKET_LABELS,
    GROUP_NAMES,
    POPULARITY_SOURCES,
    dataset_statistics,
    popularity_groups,
    user_group_masks,
)
from faerec.data.loaders import (
    BUNDLED_DATASETS,
    dataset_fingerprint,
    load_dataset,
    write_generic_dataset,
)
from faerec.data.location import bundled_data_dir
from faerec.data.raw import preprocess_amazon, preprocess_yelp
from faerec.data.split import leave_one_out
from faerec.data.types import InteractionData, LeaveOneOutSplit, PopularityGroups, SplitPart

__all__ = [
    "BUCKET_LABELS",
    "BUNDLED_DATASETS",
    "GROUP_NAMES",
    "POPULARITY_SOURCES",
    "InteractionData",
    "LeaveOneOutSplit",
    "PopularityGroups",
    "SplitPart",
    "bundled_data_dir",
    "dataset_fingerprint",
    "dataset_statistics",
    "leave_one_out",
    "load_dataset",
    "popularity_groups",
    "preprocess_amazon",
    "preprocess_yelp",
    "user_group_masks",
    "write_generic_dataset",
]
