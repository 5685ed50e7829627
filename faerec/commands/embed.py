"""`faerec-study embed`: compute (or find) the LLM item embeddings of a dataset ahead of time.

Training computes the same matrix on first use; running this once before a study keeps the
encoder out of the trials and shows where the cache file lives.
"""

from __future__ import annotations

import argparse
from typing import Any

from faerec.config import EmbeddingConfig
from faerec.data import load_dataset
from faerec.embeddings import prepare_item_embeddings
from faerec.text import plural


def register(subparsers: Any) -> None:
    defaults = EmbeddingConfig()
    parser = subparsers.add_parser(
        "embed",
        help="compute and cache the LLM item embeddings of a dataset",
        description=(
            "Render every item's text with the template, encode it with a local "
            "sentence-transformers model (never the network) and cache the matrix; prints the "
            "cache file and the matrix shape. A .npy --model is only checked."
        ),
    )
    parser.add_argument(
        "--dataset", required=True, help="bundled name (beauty, yelp, ml-100k) or a dataset folder"
    )
    parser.add_argument(
        "--model",
        default=defaults.model,
        help="'minilm' (packaged all-MiniLM-L6-v2, default), a sentence-transformers model "
        "folder, or a .npy matrix with one row per item id",
    )
    parser.add_argument(
        "--template",
        default=defaults.template,
        help="item text template with {field} placeholders (default: the dataset's own)",
    )
    parser.add_argument(
        "--cache-dir",
        default=defaults.cache_dir,
        help="cache folder (default: $FAEREC_CACHE_DIR, else ~/.cache/faerec-study/embeddings)",
    )
    parser.add_argument(
        "--batch-size", type=int, default=defaults.batch_size, help="sentences per encoder batch"
    )
    parser.set_defaults(handler=run_embed)


def run_embed(args: argparse.Namespace) -> int:
    config = EmbeddingConfig(
        model=args.model,
        template=args.template,
        cache_dir=args.cache_dir,
        batch_size=args.batch_size,
    )
    data = load_dataset(args.dataset)
    result = prepare_item_embeddings(data, config, progress=True)
    rows, width = result.matrix.shape
    if result.cache_path is None:
        print(f"{args.model}: {rows} rows x {width} (no cache needed for a .npy matrix)")
        return 0
    how = {
        "cache": "found in cache",
        "computed": (
            f"computed ({plural(result.encoded_rows, 'item')} encoded, "
            f"{result.seeded_rows} taken from the bundled matrix)"
        ),
    }[result.source]
    print(f"{result.cache_path}")
    print(f"shape {rows} x {width} (item ids 0..{rows - 1}, row 0 = padding), {how}")
    return 0
