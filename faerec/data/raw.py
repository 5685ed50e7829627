"""Raw Amazon-2014 and Yelp dumps -> the generic dataset format, as the official code does it.

The official ``Preprosessing/data_process.py`` (docs/data-format.md):

* keeps interactions with rating > 0 (so all of them), and for Yelp the reviews whose date string
  lies in [date_from 00:00:00, date_to 00:00:00] (string comparison, as the official bounds are
  ``'2000-01-01 00:00:00'`` and ``'2019-12-31 00:00:00'``: reviews later on the last day are out);
* filters in a SINGLE pass (``filter_common``): an interaction is dropped when its user has fewer
  than ``user_core`` or its item fewer than ``item_core`` interactions, counted on the raw data;
  so kept users may end up shorter than ``user_core`` (not an iterated k-core);
* sorts each user's items by time (stable: ties keep file order) and numbers users and items
  1.. in order of first appearance (users in file order, items along the sorted sequences).

Item text comes from the metadata dump: Amazon ``title``, ``brand``, ``price``, ``categories``
(the first category path, as the official prompt uses) and ``description``; Yelp ``name`` and
``categories``. The 2014 Amazon metadata lines are Python literals, parsed with
``ast.literal_eval`` (never ``eval``).
"""

from __future__ import annotations

import ast
import gzip
import re
import warnings
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from faerec.data.loaders import load_generic, write_generic_dataset
from faerec.data.parsing import (
    JSONProblem,
    check_encodable,
    decode_line,
    loads_json,
    number_value,
    show,
)
from faerec.data.types import InteractionData
from faerec.errors import ConfigError, DataError

AMAZON_TEXT_TEMPLATE = (
    "Title: {title}; Brand: {brand}; Price: {price}; Categories: {categories}; "
    "Description: {description}"
)
YELP_TEXT_TEMPLATE = "Name: {name}; Categories: {categories}"

# ASCII digits only (\d would take any script's digits) and real months, days, hours, ...
_DATE = re.compile(
    r"[0-9]{4}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12][0-9]|3[01])"
    r"(?: (?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9])?"
)
_MAX_UNIX_TIME = 2**53
# Cheap look-up of a record's key so that metadata of items that were filtered out is skipped
# without parsing it (the metadata dumps are far larger than the kept item set).
_AMAZON_ASIN = re.compile(r"""["']asin["']\s*:\s*["']([^"']+)["']""")
_YELP_BUSINESS = re.compile(r""""business_id"\s*:\s*"([^"]+)\"""")

Interaction = tuple[str, str, int]  # (raw user, raw item, sortable time)


def preprocess_amazon(
    reviews: Path,
    meta: Path,
    out_dir: Path,
    user_core: int = 5,
    item_core: int = 5,
    preset_as: str = "",
) -> InteractionData:
    """Amazon-2014 ``<Category>.json[.gz]`` + ``meta_<Category>.json[.gz]`` -> ``out_dir``."""
    _check_cores(user_core, item_core)
    interactions: list[Interaction] = []
    for line_number, record in _records(reviews):
        user = _required_str(record, "reviewerID", reviews, line_number)
        item = _required_str(record, "asin", reviews, line_number)
        time = _unix_time(record, "unixReviewTime", reviews, line_number)
        if "overall" in record and _number(record, "overall", reviews, line_number) <= 0:
            continue
        interactions.append((user, item, time))

    sequences, item_tokens = _filter_and_number(interactions, user_core, item_core, reviews)
    item_fields, items_with_metadata = _join_item_metadata(
        meta,
        _AMAZON_ASIN,
        "asin",
        item_tokens,
        _amazon_item_fields,
        {"title": "", "brand": "", "price": "", "categories": [], "description": ""},
    )
    return _write_and_load(
        out_dir,
        sequences,
        item_fields,
        AMAZON_TEXT_TEMPLATE,
        {
            "source": "Amazon reviews 2014 (McAuley et al.)",
            "reviews": reviews.name,
            "meta": meta.name,
            "user_core": user_core,
            "item_core": item_core,
            "filter": "rating > 0; single pass, counts on the raw data (official filter_common)",
            "items_with_metadata": items_with_metadata,
        },
        preset_as,
    )


def preprocess_yelp(
    reviews: Path,
    business: Path,
    out_dir: Path,
    user_core: int = 5,
    item_core: int = 5,
    date_from: str = "2000-01-01",
    date_to: str = "2019-12-31",
    preset_as: str = "",
) -> InteractionData:
    """Yelp ``yelp_academic_dataset_review.json`` + ``..._business.json`` -> ``out_dir``."""
    _check_cores(user_core, item_core)
    lowest, highest = _date_bound(date_from, "date_from"), _date_bound(date_to, "date_to")
    interactions: list[Interaction] = []
    for line_number, record in _records(reviews):
        user = _required_str(record, "user_id", reviews, line_number)
        item = _required_str(record, "business_id", reviews, line_number)
        date = _required_str(record, "date", reviews, line_number)
        if not _DATE.fullmatch(date):
            raise DataError(
                f"'date': expected YYYY-MM-DD or YYYY-MM-DD HH:MM:SS, got {show(date)}",
                path=reviews,
                line=line_number,
            )
        stars = _number(record, "stars", reviews, line_number) if "stars" in record else 1.0
        if date < lowest or date > highest or stars <= 0:
            continue
        digits = date.replace("-", "").replace(":", "").replace(" ", "")
        interactions.append((user, item, int(digits.ljust(14, "0"))))

    sequences, item_tokens = _filter_and_number(interactions, user_core, item_core, reviews)
    item_fields, items_with_metadata = _join_item_metadata(
        business,
        _YELP_BUSINESS,
        "business_id",
        item_tokens,
        _yelp_item_fields,
        {"name": "", "categories": []},
    )
    return _write_and_load(
        out_dir,
        sequences,
        item_fields,
        YELP_TEXT_TEMPLATE,
        {
            "source": "Yelp Open Dataset",
            "reviews": reviews.name,
            "business": business.name,
            "user_core": user_core,
            "item_core": item_core,
            "date_from": lowest,
            "date_to": highest,
            "filter": "stars > 0, date in [date_from, date_to] (string comparison); "
            "single pass, counts on the raw data (official filter_common)",
            "items_with_metadata": items_with_metadata,
        },
        preset_as,
    )


def _filter_and_number(
    interactions: list[Interaction], user_core: int, item_core: int, reviews: Path
) -> tuple[list[list[int]], list[str]]:
    """Single-pass core filter, chronological order, ids by first appearance
    (docs/data-format.md)."""
    user_count: dict[str, int] = {}
    item_count: dict[str, int] = {}
    for user, item, _ in interactions:
        user_count[user] = user_count.get(user, 0) + 1
        item_count[item] = item_count.get(item, 0) + 1
    history: dict[str, list[tuple[str, int]]] = {}
    for user, item, time in interactions:
        if user_count[user] >= user_core and item_count[item] >= item_core:
            history.setdefault(user, []).append((item, time))
    if not history:
        raise DataError(
            f"no interaction is left after the single-pass filter (user_core={user_core}, "
            f"item_core={item_core}; {len(interactions)} interactions read)",
            path=reviews,
        )
    item_id_of: dict[str, int] = {}
    sequences: list[list[int]] = []
    for events in history.values():
        events.sort(key=lambda event: event[1])  # stable: same-time events keep file order
        sequences.append([item_id_of.setdefault(item, len(item_id_of) + 1) for item, _ in events])
    return sequences, list(item_id_of)


def _join_item_metadata(
    path: Path,
    key_pattern: re.Pattern[str],
    id_key: str,
    item_tokens: list[str],
    parse_fields: Callable[[dict[str, Any], Path, int], dict[str, Any]],
    empty: dict[str, Any],
) -> tuple[list[dict[str, Any]], int]:
    """Item fields in item-id order (row 0 empty) and how many items had a metadata line.

    Only metadata lines of kept items are parsed; items without one get ``empty`` fields.
    """
    wanted = set(item_tokens)
    metadata: dict[str, dict[str, Any]] = {}
    for line_number, record in _records(path, key_pattern=key_pattern, wanted=wanted):
        token = _required_str(record, id_key, path, line_number)
        if token in wanted:
            metadata[token] = parse_fields(record, path, line_number)
    fields: list[dict[str, Any]] = [{}] + [
        {id_key: token, **metadata.get(token, empty)} for token in item_tokens
    ]
    return fields, len(metadata)


def _write_and_load(
    out_dir: Path,
    sequences: list[list[int]],
    item_fields: list[dict[str, Any]],
    template: str,
    provenance: dict[str, Any],
    preset_as: str = "",
) -> InteractionData:
    """Write the generic format, then load it back so the result is exactly what users load."""
    provenance = {
        **provenance,
        "users": len(sequences),
        "items": len(item_fields) - 1,
        "interactions": sum(len(sequence) for sequence in sequences),
    }
    try:
        write_generic_dataset(
            out_dir,
            sequences,
            item_fields,
            name=out_dir.name,
            text_template=template,
            provenance=provenance,
            preset_as=preset_as,
        )
    except OSError as error:
        raise DataError(f"cannot write the dataset ({error.strerror})", path=out_dir) from None
    return load_generic(out_dir)


# --------------------------------------------------------------------------- records


def _records(
    path: Path,
    *,
    key_pattern: re.Pattern[str] | None = None,
    wanted: set[str] | None = None,
) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, record) for every non-blank line of a JSON-lines or Python-literal dump.

    Lines are read as bytes and decoded one by one, so a bad byte is reported on its own
    physical line. With ``key_pattern`` and ``wanted``, lines whose key is found and not wanted
    are skipped unparsed. A file without any record is an error.
    """
    opener: Callable[..., Any] = gzip.open if path.name.endswith(".gz") else open
    line_number = 0
    non_blank = 0
    try:
        with opener(path, "rb") as stream:
            for line_number, raw in enumerate(stream, start=1):
                line = decode_line(raw, path, line_number)
                if not line.strip():
                    continue
                non_blank += 1
                if key_pattern is not None and wanted is not None:
                    found = key_pattern.search(line)
                    if found is not None and found.group(1) not in wanted:
                        continue
                yield line_number, _parse_record(line, path, line_number)
    except FileNotFoundError:
        raise DataError("file not found", path=path) from None
    except (gzip.BadGzipFile, EOFError, zlib.error) as error:
        if isinstance(error, EOFError):
            problem = "the gzip data end early here (a truncated download or copy?)"
        elif line_number == 0:
            problem = "not gzip data, though the name ends in .gz (name a plain file without .gz)"
        else:
            problem = "the gzip data are corrupt here (expected a complete .gz file)"
        raise DataError(problem, path=path, line=line_number + 1) from None
    except IsADirectoryError:
        raise DataError("expected a file, got a folder", path=path) from None
    except OSError as error:
        raise DataError(f"cannot read ({error.strerror or error})", path=path) from None
    if non_blank == 0:
        raise DataError(
            "no records in this file (expected one JSON object per line)", path=path, line=1
        )


def _parse_record(line: str, path: Path, line_number: int) -> dict[str, Any]:
    """A JSON object, or a Python-literal dict (the 2014 Amazon metadata), never ``eval``."""
    try:
        record = loads_json(line)
    except JSONProblem as problem:
        if not problem.syntax:  # valid JSON syntax with a refused value: no second guess
            raise DataError(str(problem), path=path, line=line_number) from None
        try:
            with warnings.catch_warnings():  # e.g. "invalid decimal literal": one line, no noise
                warnings.simplefilter("ignore")
                record = ast.literal_eval(line.strip())
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            raise DataError(
                "expected one JSON object or Python-literal dict per line",
                path=path,
                line=line_number,
            ) from None
        if "\\" in line:  # escapes may spell lone surrogates, which cannot be written out
            try:
                check_encodable(record)
            except JSONProblem as problem:
                raise DataError(str(problem), path=path, line=line_number) from None
    if not isinstance(record, dict):
        raise DataError(
            f"expected a JSON object (one record per line), got {type(record).__name__}",
            path=path,
            line=line_number,
        )
    return record


def _required_str(record: dict[str, Any], key: str, path: Path, line_number: int) -> str:
    value = record.get(key)
    if isinstance(value, str) and value:
        return value
    if value is None:
        raise DataError(f"missing key {key!r}", path=path, line=line_number)
    raise DataError(
        f"{key!r}: expected a non-empty string, got {show(value)}", path=path, line=line_number
    )


def _number(record: dict[str, Any], key: str, path: Path, line_number: int) -> float:
    """A finite number (a JSON number, or a string spelling one in plain decimal)."""
    value = number_value(record.get(key))
    if value is None:
        raise DataError(
            f"{key!r}: expected a finite number, got {show(record.get(key))}",
            path=path,
            line=line_number,
        )
    return value


def _unix_time(record: dict[str, Any], key: str, path: Path, line_number: int) -> int:
    """Whole seconds since 1970, from 0 to 2**53 (beyond that a float cannot hold them exactly)."""
    if key not in record:
        raise DataError(f"missing key {key!r}", path=path, line=line_number)
    number = number_value(record[key])
    if number is None or number != int(number) or not 0 <= number <= _MAX_UNIX_TIME:
        raise DataError(
            f"{key!r}: expected a Unix time in whole seconds (an integer from 0 to 2**53), "
            f"got {show(record[key])}",
            path=path,
            line=line_number,
        )
    return int(number)


def _text(value: Any) -> str:
    """A metadata value as one string (numbers such as prices included); missing -> ""."""
    if value is None:
        return ""
    return value if isinstance(value, str) else str(value)


def _amazon_item_fields(record: dict[str, Any], path: Path, line_number: int) -> dict[str, Any]:
    categories = record.get("categories") or []
    if not categories and isinstance(record.get("category"), list):
        categories = [record["category"]]  # the 2018 metadata has one flat "category" list
    if not isinstance(categories, list) or not all(isinstance(c, list) for c in categories):
        raise DataError(
            f"'categories': expected a list of category paths (lists), got {show(categories)}",
            path=path,
            line=line_number,
        )
    first_path = [_text(name) for name in categories[0]] if categories else []
    return {
        "title": _text(record.get("title")),
        "brand": _text(record.get("brand")),
        "price": _text(record.get("price")),
        "categories": first_path,
        "description": _description(record.get("description")),
    }


def _description(value: Any) -> str:
    """The 2014 description is a string; the 2018 one a list of paragraphs."""
    if isinstance(value, list):
        return " ".join(_text(part) for part in value if _text(part))
    return _text(value)


def _yelp_item_fields(record: dict[str, Any], path: Path, line_number: int) -> dict[str, Any]:
    raw = record.get("categories")
    if raw is None:
        categories: list[str] = []
    elif isinstance(raw, str):
        categories = [name.strip() for name in raw.split(",") if name.strip()]
    elif isinstance(raw, list):
        categories = [_text(name).strip() for name in raw if _text(name).strip()]
    else:
        raise DataError(
            f"'categories': expected a comma-separated string, got {show(raw)}",
            path=path,
            line=line_number,
        )
    return {"name": _text(record.get("name")), "categories": categories}


def _check_cores(user_core: int, item_core: int) -> None:
    for key, value in (("user_core", user_core), ("item_core", item_core)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{key}: expected a positive integer, got {value!r}")


def _date_bound(value: str, key: str) -> str:
    """A date bound as the official code compares it: 'YYYY-MM-DD' means 'YYYY-MM-DD 00:00:00'."""
    if not isinstance(value, str) or not _DATE.fullmatch(value):
        raise ConfigError(f"{key}: expected YYYY-MM-DD or 'YYYY-MM-DD HH:MM:SS', got {value!r}")
    return value if " " in value else f"{value} 00:00:00"
