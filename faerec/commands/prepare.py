"""`faerec-study prepare amazon|yelp`: raw review dumps -> a dataset folder in the generic format.

The result loads with ``--dataset DIR`` like any other dataset (docs/data-format.md).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from faerec.data.raw import preprocess_amazon, preprocess_yelp
from faerec.data.types import InteractionData


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
    _add_common_arguments(amazon)
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
    _add_common_arguments(yelp)
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


def _add_common_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, required=True, help="output dataset folder")
    parser.add_argument(
        "--user-core", type=int, default=5, help="drop users with fewer raw interactions (5)"
    )
    parser.add_argument(
        "--item-core", type=int, default=5, help="drop items with fewer raw interactions (5)"
    )


def _prepare_amazon(args: argparse.Namespace) -> int:
    data = preprocess_amazon(args.reviews, args.meta, args.out, args.user_core, args.item_core)
    return _report(data, args.out)


def _prepare_yelp(args: argparse.Namespace) -> int:
    data = preprocess_yelp(
        args.reviews,
        args.business,
        args.out,
        args.user_core,
        args.item_core,
        date_from=args.date_from,
        date_to=args.date_to,
    )
    return _report(data, args.out)


def _report(data: InteractionData, out: Path) -> int:
    print(
        f"wrote {out}: {data.num_users} users, {data.num_items} items, "
        f"{data.num_interactions} interactions (use it with --dataset {out})"
    )
    return 0
