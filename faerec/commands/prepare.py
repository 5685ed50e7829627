"""`faerec-study prepare amazon|yelp`: raw review dumps -> a dataset folder in the generic format.

The result loads with ``--dataset DIR`` like any other dataset (docs/data-format.md). Its
``dataset.json`` records ``preset_as``: which of the authors' datasets' FAERec settings the
``official`` preset gives it (docs/method.md §Presets). ``--preset-as`` chooses it; by default
Yelp dumps get ``yelp`` and Amazon dumps the dataset their category names (Beauty -> beauty,
Grocery_and_Gourmet_Food -> food, any other category -> generic).
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any

from faerec.config import PRESET_AS
from faerec.data.raw import preprocess_amazon, preprocess_yelp
from faerec.data.types import InteractionData
from faerec.text import plural

#: Amazon-2014 categories the authors ran, and the preset each one takes.
AMAZON_CATEGORY_PRESETS = {"Beauty": "beauty", "Grocery_and_Gourmet_Food": "food"}


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "prepare",
        help="convert raw Amazon-2014 or Yelp dumps into a dataset folder",
        description=(
            "Preprocess raw review dumps as the official FAERec code does (single-pass "
            "user/item core filter on the raw counts, chronological order, ids by first "
            "appearance) and write sequences.txt + items.jsonl + dataset.json into --out."
        ),
    )
    sources = parser.add_subparsers(dest="source", metavar="SOURCE")
    sources.required = True

    amazon = sources.add_parser(
        "amazon",
        help="Amazon reviews 2014: <Category>.json[.gz] + meta_<Category>.json[.gz]",
        description="Amazon reviews 2014 (e.g. Beauty, Grocery_and_Gourmet_Food).",
    )
    amazon.add_argument(
        "--reviews", type=Path, required=True, help="review dump (.json or .json.gz)"
    )
    amazon.add_argument(
        "--meta", type=Path, required=True, help="metadata dump (.json or .json.gz)"
    )
    _add_common_arguments(
        amazon,
        "the category of the file names: Beauty -> beauty, "
        "Grocery_and_Gourmet_Food -> food, others -> generic",
    )
    amazon.set_defaults(handler=_prepare_amazon)

    yelp = sources.add_parser(
        "yelp",
        help="Yelp Open Dataset: review + business JSON-lines dumps",
        description="Yelp Open Dataset (yelp_academic_dataset_review/business.json).",
    )
    yelp.add_argument(
        "--reviews", type=Path, required=True, help="yelp_academic_dataset_review.json"
    )
    yelp.add_argument(
        "--business", type=Path, required=True, help="yelp_academic_dataset_business.json"
    )
    _add_common_arguments(yelp, "yelp")
    yelp.add_argument(
        "--date-from", default="2000-01-01", help="first review date kept (default 2000-01-01)"
    )
    yelp.add_argument(
        "--date-to",
        default="2019-12-31",
        help="last review date kept, compared as 'DATE 00:00:00' like the official code "
        "(default 2019-12-31)",
    )
    yelp.set_defaults(handler=_prepare_yelp)


def _add_common_arguments(parser: argparse.ArgumentParser, preset_default: str) -> None:
    parser.add_argument("--out", type=Path, required=True, help="output dataset folder")
    parser.add_argument(
        "--preset-as",
        choices=PRESET_AS,
        help="whose official FAERec settings this data takes, written to dataset.json "
        f"(default: {preset_default})",
    )
    parser.add_argument(
        "--user-core", type=int, default=5, help="drop users with fewer raw interactions (5)"
    )
    parser.add_argument(
        "--item-core", type=int, default=5, help="drop items with fewer raw interactions (5)"
    )


def amazon_category(path: Path) -> str:
    """The category of an Amazon-2014 dump from its file name: ``reviews_Beauty_5.json.gz`` and
    ``meta_Beauty.json`` give ``Beauty``."""
    name = re.sub(r"\.json(\.gz)?$|\.gz$", "", path.name)
    return re.sub(r"^(reviews|meta)_|_5$", "", name)


def amazon_preset_as(reviews: Path, meta: Path) -> str:
    """The preset an Amazon dump takes by default: its category's, or generic (see module doc)."""
    for path in (reviews, meta):
        preset = AMAZON_CATEGORY_PRESETS.get(amazon_category(path))
        if preset:
            return preset
    return "generic"


def _prepare_amazon(args: argparse.Namespace) -> int:
    preset_as = args.preset_as or amazon_preset_as(args.reviews, args.meta)
    data = preprocess_amazon(
        args.reviews, args.meta, args.out, args.user_core, args.item_core, preset_as=preset_as
    )
    return _report(data, args.out, preset_as)


def _prepare_yelp(args: argparse.Namespace) -> int:
    data = preprocess_yelp(
        args.reviews,
        args.business,
        args.out,
        args.user_core,
        args.item_core,
        date_from=args.date_from,
        date_to=args.date_to,
        preset_as=args.preset_as or "yelp",
    )
    return _report(data, args.out, args.preset_as or "yelp")


def _report(data: InteractionData, out: Path, preset_as: str) -> int:
    print(
        f"wrote {out}: {plural(data.num_users, 'user')}, {plural(data.num_items, 'item')}, "
        f"{plural(data.num_interactions, 'interaction')}, preset_as {preset_as} "
        f"(use it with --dataset {out})"
    )
    return 0
