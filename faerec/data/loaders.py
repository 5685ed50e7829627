"""Dataset loaders: the bundled data, the generic folder format and RecBole atomic files.

Every loader returns an :class:`InteractionData`; everything downstream sees only that type.
Bad input becomes one :class:`DataError` naming the file and line, never a traceback, because
users bring their own files and need to know exactly what to fix.
The formats are documented in ``docs/data-format.md``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from faerec.atomic import write_text_atomic
from faerec.data.location import bundled_data_dir
from faerec.data.parsing import (
    JSONProblem,
    json_key_line,
    loads_json,
    parse_number,
    read_item_matrix,
    read_lines,
    show,
)
from faerec.data.types import InteractionData
from faerec.errors import DataError

BUNDLED_DATASETS = ("beauty", "yelp", "ml-100k")

#: Files of the generic format.
SEQUENCES_FILE = "sequences.txt"
ITEMS_FILE = "items.jsonl"
DATASET_FILE = "dataset.json"

#: Keys ``dataset.json`` may carry; anything else is a typo and is rejected.
DATASET_JSON_KEYS = (
    "name",
    "text_template",
    "embedding",
    "embedding_template",
    "preset_as",
    "provenance",
)

_RECBOLE_TYPES = ("token", "token_seq", "float", "float_seq")

# sequences.txt: ASCII digits only (int() would also take "1_0", "+5" or "١٢"), at most 18 of
# them so that every id fits an int64; a user id may be negative.
_MAX_ID_DIGITS = 18
_USER_ID = re.compile(rf"-?[0-9]{{1,{_MAX_ID_DIGITS}}}")
_ITEM_ID = re.compile(rf"[0-9]{{1,{_MAX_ID_DIGITS}}}")
_SEQUENCE_LINE = re.compile(rf"[ \t]*{_USER_ID.pattern}(?:[ \t]+{_ITEM_ID.pattern})*[ \t]*")
_SEPARATOR = re.compile(r"[ \t]+")


@dataclass(frozen=True)
class _BundledDataset:
    """Where one bundled dataset lives and which template its shipped embeddings used."""

    folder: str
    sequences_file: str  # generic-style sequences, or the RecBole .inter file
    text_template: str
    embedding_file: str = "emb_minilm/item_emb_minilm_l6_v2_fp16.npy"


# The templates reproduce ``emb_minilm/item_text.txt`` of each folder (checked line by line):
# list values joined with ", ", a "; "-segment whose placeholders are all empty is dropped.
# One exception: Yelp item 12182 has no categories and its shipped text keeps an empty
# "Categories: " segment, so its rendered text differs from the shipped one for that row.
_BUNDLED: dict[str, _BundledDataset] = {
    "beauty": _BundledDataset("beauty", "Beauty.txt", "Title: {title}; Attributes: {attributes}"),
    "yelp": _BundledDataset("yelp", "Yelp.txt", "Name: {name}; Categories: {categories}"),
    "ml-100k": _BundledDataset(
        "ml-100k", "ml-100k.inter", "Title: {title} ({year}); Genres: {genres}"
    ),
}

# RecBole column names of the bundled ml-100k .item file -> the field names templates use.
_ML100K_FIELDS = {"movie_title": "title", "release_year": "year", "class": "genres"}


def load_dataset(spec: str | os.PathLike[str]) -> InteractionData:
    """Load a bundled dataset by name, a generic-format folder, or RecBole atomic files."""
    text = str(spec)
    if text in _BUNDLED:
        return load_bundled(text)
    path = Path(text).expanduser()
    if not path.exists():
        raise DataError(
            f"unknown dataset {text!r}: expected one of {', '.join(BUNDLED_DATASETS)}, a dataset "
            "folder (sequences.txt + items.jsonl) or a RecBole .inter file; raw Amazon/Yelp dumps "
            "must first be converted with `faerec-study prepare` (see docs/data-format.md)"
        )
    if path.is_file():
        if path.name.endswith(".inter"):
            return load_recbole(path)
        if path.name.endswith((".json", ".json.gz")):
            raise DataError(
                "this looks like a raw review dump; convert it first with "
                "`faerec-study prepare amazon|yelp ... --out DIR` and load DIR",
                path=path,
            )
        raise DataError("expected a dataset folder or a RecBole .inter file", path=path)
    if (path / SEQUENCES_FILE).is_file():
        return load_generic(path)
    inter_files = sorted(path.glob("*.inter"))
    if len(inter_files) == 1:
        return load_recbole(inter_files[0])
    if len(inter_files) > 1:
        names = ", ".join(p.name for p in inter_files)
        raise DataError(f"several RecBole .inter files ({names}); pass one of them", path=path)
    raise DataError(
        f"no {SEQUENCES_FILE} (generic format) and no <name>.inter (RecBole) in this folder",
        path=path,
    )


def load_bundled(name: str) -> InteractionData:
    """Load one of the datasets shipped in ``bundled_data_dir()``."""
    if name not in _BUNDLED:
        raise DataError(f"unknown bundled dataset {name!r}: expected one of {BUNDLED_DATASETS}")
    entry = _BUNDLED[name]
    folder = bundled_data_dir() / entry.folder
    if not folder.is_dir():
        raise DataError(
            "bundled dataset folder not found (set FAEREC_DATA_DIR to the folder holding "
            "beauty/, yelp/ and ml-100k/)",
            path=folder,
        )
    embedding = folder / entry.embedding_file
    bundled_embedding = embedding if embedding.is_file() else None
    if entry.sequences_file.endswith(".inter"):
        sequences, item_fields = _read_recbole(
            folder / entry.sequences_file, rename=_ML100K_FIELDS, list_fields={"class"}
        )
    else:
        items_path = folder / ITEMS_FILE
        records = read_items_jsonl(items_path)
        sequences, line_numbers = read_sequences(folder / entry.sequences_file)
        item_fields = _item_fields_from_records(records, items_path)
        _check_dangling(
            sequences, line_numbers, len(item_fields) - 1, folder / entry.sequences_file
        )
    return InteractionData(
        name=name,
        sequences=sequences,
        num_items=len(item_fields) - 1,
        item_fields=item_fields,
        source=folder,
        text_template=entry.text_template,
        bundled_embedding=bundled_embedding,
        bundled_embedding_template=entry.text_template if bundled_embedding else "",
        fingerprint=dataset_fingerprint(sequences, item_fields),
    )


def load_generic(folder: str | os.PathLike[str]) -> InteractionData:
    """Load a folder in the generic format: sequences.txt + items.jsonl [+ dataset.json]."""
    folder = Path(folder)
    meta = read_dataset_json(folder / DATASET_FILE)
    sequences_path = folder / SEQUENCES_FILE
    items_path = folder / ITEMS_FILE
    records = read_items_jsonl(items_path)
    sequences, line_numbers = read_sequences(sequences_path)
    item_fields = _item_fields_from_records(records, items_path)
    _check_dangling(sequences, line_numbers, len(item_fields) - 1, sequences_path)
    return _assemble(folder, folder.name, sequences, item_fields, meta)


def load_recbole(path: str | os.PathLike[str]) -> InteractionData:
    """Load RecBole atomic files: ``<name>.inter`` [+ ``<name>.item``] [+ ``dataset.json``].

    ``path`` is the ``.inter`` file or a folder holding exactly one.
    """
    path = Path(path)
    if path.is_dir():
        inter_files = sorted(path.glob("*.inter"))
        if len(inter_files) != 1:
            raise DataError("expected exactly one <name>.inter file in this folder", path=path)
        path = inter_files[0]
    folder = path.parent
    meta = read_dataset_json(folder / DATASET_FILE)
    sequences, item_fields = _read_recbole(path)
    return _assemble(folder, path.name[: -len(".inter")], sequences, item_fields, meta)


def _assemble(
    folder: Path,
    default_name: str,
    sequences: list[np.ndarray],
    item_fields: list[dict[str, Any]],
    meta: dict[str, Any],
) -> InteractionData:
    """Build the InteractionData of a user-supplied folder, applying ``dataset.json``."""
    template = meta.get("text_template") or default_text_template(item_fields)
    embedding: Path | None = None
    if meta.get("embedding"):
        embedding = (folder / meta["embedding"]).resolve()
        meta_path = folder / DATASET_FILE
        if not embedding.is_file():
            raise DataError(
                f"'embedding' names a file that does not exist: {embedding}",
                path=meta_path,
                line=json_key_line("\n".join(read_lines(meta_path)), "embedding"),
            )
        # checked here, not when the cache is seeded, so a bad matrix stops before any work
        read_item_matrix(embedding, len(item_fields) - 1, named_by=f"'embedding' of {meta_path}")
    return InteractionData(
        name=meta.get("name") or default_name,
        sequences=sequences,
        num_items=len(item_fields) - 1,
        item_fields=item_fields,
        source=folder,
        text_template=template,
        bundled_embedding=embedding,
        bundled_embedding_template=(meta.get("embedding_template") or template)
        if embedding
        else "",
        fingerprint=dataset_fingerprint(sequences, item_fields),
    )


# --------------------------------------------------------------------------- generic format


def read_sequences(path: Path) -> tuple[list[np.ndarray], list[int]]:
    """Parse ``user_id item_id item_id ...`` lines; returns the sequences and their line numbers.

    Blank lines are skipped; everything else must be plain ASCII integers (a user id may be
    negative, item ids are >= 1), separated by spaces or tabs, one line per user.
    """
    lines = read_lines(path)
    sequences: list[np.ndarray] = []
    line_numbers: list[int] = []
    seen_users: dict[int, int] = {}
    for line_number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        if not _SEQUENCE_LINE.fullmatch(line):
            raise DataError(_bad_sequence_line(line), path=path, line=line_number)
        ids = [int(token) for token in line.split()]
        user = ids[0]
        if user in seen_users:
            raise DataError(
                f"user {user} appears twice (first on line {seen_users[user]}); "
                "give each user one line",
                path=path,
                line=line_number,
            )
        seen_users[user] = line_number
        if len(ids) == 1:
            raise DataError(f"user {user} has an empty sequence", path=path, line=line_number)
        items = ids[1:]
        if min(items) < 1:
            raise DataError(
                f"item ids are 1-based (0 is padding), got {min(items)}",
                path=path,
                line=line_number,
            )
        sequences.append(np.asarray(items, dtype=np.int64))
        line_numbers.append(line_number)
    if not sequences:
        raise DataError(
            "no user sequences in this file (expected lines 'user_id item_id item_id ...')",
            path=path,
            line=1,
        )
    return sequences, line_numbers


def _bad_sequence_line(line: str) -> str:
    """Why a sequences.txt line does not match, naming the first bad token."""
    for index, token in enumerate(_SEPARATOR.split(line.strip(" \t"))):
        if (_USER_ID if index == 0 else _ITEM_ID).fullmatch(token):
            continue
        if re.fullmatch(r"[+-]?[0-9]+", token):
            if len(token.lstrip("+-")) > _MAX_ID_DIGITS:
                return f"id {show(token)} is too long (at most {_MAX_ID_DIGITS} digits)"
            if token.startswith("-"):
                return f"item ids are 1-based (0 is padding), got {token}"
            return f"expected an id without a sign, got {show(token)}"
        break
    else:
        token = line
    return (
        "expected 'user_id item_id item_id ...' with integer ids (ASCII digits 0-9) separated "
        f"by spaces or tabs, got {show(token)}"
    )


def read_items_jsonl(path: Path) -> dict[int, dict[str, Any]]:
    """Parse ``items.jsonl``: one JSON object per line with an integer ``item_id``, ids 1..N."""
    records: dict[int, dict[str, Any]] = {}
    record_lines: dict[int, int] = {}
    for line_number, line in enumerate(read_lines(path), start=1):
        if not line.strip():
            continue
        try:
            record = loads_json(line)
        except JSONProblem as problem:
            raise DataError(str(problem), path=path, line=line_number) from None
        if not isinstance(record, dict):
            raise DataError(
                f"expected a JSON object, got {type(record).__name__}", path=path, line=line_number
            )
        item_id = record.get("item_id")
        if isinstance(item_id, bool) or not isinstance(item_id, int) or item_id < 1:
            raise DataError(
                f"expected a positive integer 'item_id', got {show(item_id)}",
                path=path,
                line=line_number,
            )
        if item_id in records:
            raise DataError(
                f"item_id {item_id} appears twice (first on line {record_lines[item_id]})",
                path=path,
                line=line_number,
            )
        fields = {key: value for key, value in record.items() if key != "item_id"}
        for key, value in fields.items():
            if not _is_text_value(value):
                raise DataError(
                    f"field {show(key)} of item {item_id}: expected a string, a number, null or "
                    f"a list of strings/numbers, got {type(value).__name__}",
                    path=path,
                    line=line_number,
                )
        records[item_id] = fields
        record_lines[item_id] = line_number
    if not records:
        raise DataError(
            "no items in this file (expected one JSON object per line)", path=path, line=1
        )
    num_items = max(records)
    if len(records) != num_items:
        missing = next(item for item in range(1, num_items + 1) if item not in records)
        raise DataError(
            f"item_id {num_items}, but item ids must be exactly 1..N without gaps and item "
            f"{missing} is missing",
            path=path,
            line=record_lines[num_items],
        )
    return records


def read_dataset_json(path: Path) -> dict[str, Any]:
    """Read the optional ``dataset.json`` ({} when absent); unknown keys are rejected."""
    if not path.exists():
        return {}
    text = "\n".join(read_lines(path))
    try:
        meta = loads_json(text)
    except JSONProblem as problem:
        line = problem.line or 1
        if problem.repeated_key:
            line = json_key_line(text, problem.repeated_key, occurrence=2)
        raise DataError(str(problem), path=path, line=line) from None
    if not isinstance(meta, dict):
        raise DataError(f"expected a JSON object, got {type(meta).__name__}", path=path, line=1)
    for key, value in meta.items():
        if key not in DATASET_JSON_KEYS:
            raise DataError(
                f"unknown key {show(key)}: expected one of {', '.join(DATASET_JSON_KEYS)}",
                path=path,
                line=json_key_line(text, key),
            )
        if key != "provenance" and not isinstance(value, str):
            raise DataError(
                f"{key!r}: expected a string, got {show(value)}",
                path=path,
                line=json_key_line(text, key),
            )
    return meta


def _item_fields_from_records(
    records: dict[int, dict[str, Any]], path: Path
) -> list[dict[str, Any]]:
    """Index item records by id (``read_items_jsonl`` made sure they are exactly 1..N)."""
    return [{}] + [records[item] for item in range(1, len(records) + 1)]


def _check_dangling(
    sequences: list[np.ndarray], line_numbers: list[int], num_items: int, path: Path
) -> None:
    """Every item of every sequence must have an item record."""
    if max(int(sequence.max()) for sequence in sequences) <= num_items:
        return
    for sequence, line_number in zip(sequences, line_numbers, strict=True):
        if sequence.max() > num_items:
            item = int(sequence[sequence > num_items][0])
            raise DataError(
                f"item {item} is not in {ITEMS_FILE} (which has items 1..{num_items})",
                path=path,
                line=line_number,
            )


def default_text_template(item_fields: Sequence[dict[str, Any]]) -> str:
    """A template naming every item field, e.g. "Title: {title}; Categories: {categories}".

    Id-like fields (``asin``, ``id``, names ending in ``_id``) carry no meaning for a text encoder
    and are left out.
    """
    names: dict[str, None] = {}
    for fields in item_fields:
        for key in fields:
            names.setdefault(key, None)
    segments = [
        f"{key.replace('_', ' ').capitalize()}: {{{key}}}"
        for key in names
        if key not in ("asin", "id") and not key.endswith("_id")
    ]
    return "; ".join(segments)


def write_generic_dataset(
    out_dir: Path,
    sequences: Sequence[Sequence[int]],
    item_fields: Sequence[dict[str, Any]],
    *,
    name: str,
    text_template: str,
    provenance: dict[str, Any] | None = None,
    preset_as: str = "",
) -> None:
    """Write sequences.txt, items.jsonl and dataset.json, each atomically.

    ``item_fields[0]`` is the padding row and is not written.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    sequence_lines = (
        f"{user} " + " ".join(str(int(item)) for item in sequence) + "\n"
        for user, sequence in enumerate(sequences, start=1)
    )
    write_text_atomic(out_dir / SEQUENCES_FILE, "".join(sequence_lines))
    item_lines = (
        json.dumps({"item_id": item_id, **fields}, ensure_ascii=False) + "\n"
        for item_id, fields in enumerate(item_fields)
        if item_id > 0
    )
    write_text_atomic(out_dir / ITEMS_FILE, "".join(item_lines))
    meta: dict[str, Any] = {"name": name, "text_template": text_template}
    if preset_as:  # whose official FAERec settings fit this data (faerec/config.py)
        meta["preset_as"] = preset_as
    if provenance is not None:
        meta["provenance"] = provenance
    write_text_atomic(out_dir / DATASET_FILE, json.dumps(meta, indent=2, ensure_ascii=False) + "\n")


# --------------------------------------------------------------------------- RecBole


def _parse_recbole_header(line: str, path: Path) -> list[tuple[str, str]]:
    """``name:type`` columns of a RecBole atomic file."""
    columns: list[tuple[str, str]] = []
    for column in line.split("\t"):
        name, _, kind = column.partition(":")
        if not name or kind not in _RECBOLE_TYPES:
            raise DataError(
                f"bad RecBole header column {show(column)}: expected name:type with type one of "
                f"{', '.join(_RECBOLE_TYPES)}",
                path=path,
                line=1,
            )
        if any(name == seen for seen, _ in columns):
            raise DataError(f"column {show(name)} appears twice in the header", path=path, line=1)
        columns.append((name, kind))
    return columns


def _read_recbole_rows(path: Path) -> tuple[list[tuple[str, str]], list[tuple[int, list[str]]]]:
    """Header and (line number, values) rows of a tab-separated RecBole atomic file."""
    lines = read_lines(path)
    if not lines or not lines[0].strip():
        raise DataError("expected a name:type header line", path=path, line=1)
    columns = _parse_recbole_header(lines[0], path)
    rows: list[tuple[int, list[str]]] = []
    for line_number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        values = line.split("\t")
        if len(values) != len(columns):
            raise DataError(
                f"expected {len(columns)} tab-separated columns, got {len(values)}",
                path=path,
                line=line_number,
            )
        rows.append((line_number, values))
    return columns, rows


def _column_index(columns: list[tuple[str, str]], name: str) -> int | None:
    names = [column for column, _ in columns]
    return names.index(name) if name in names else None


def _read_recbole(
    inter_path: Path,
    *,
    rename: dict[str, str] | None = None,
    list_fields: set[str] | None = None,
) -> tuple[list[np.ndarray], list[dict[str, Any]]]:
    """Sequences (users in order of first appearance, items by timestamp) and item fields.

    Raw item ids are kept when they are exactly the integers 1..N (so precomputed embedding rows
    keep lining up); otherwise items are numbered in order of first appearance.
    """
    rename = rename or {}
    list_fields = list_fields or set()
    columns, rows = _read_recbole_rows(inter_path)
    user_column = _column_index(columns, "user_id")
    item_column = _column_index(columns, "item_id")
    if user_column is None or item_column is None:
        raise DataError(
            "the header must have user_id:token and item_id:token columns", path=inter_path, line=1
        )
    time_column = _column_index(columns, "timestamp")
    if not rows:
        raise DataError("no interaction rows after the header", path=inter_path, line=2)

    rows_of_user: dict[str, list[int]] = {}
    timestamps: list[float] = []
    for row_index, (line_number, values) in enumerate(rows):
        user, item = values[user_column].strip(), values[item_column].strip()
        if not user or not item:
            raise DataError("empty user_id or item_id", path=inter_path, line=line_number)
        if time_column is not None:
            timestamp = parse_number(values[time_column].strip())
            if timestamp is None or timestamp < 0:
                raise DataError(
                    "timestamp: expected a finite number >= 0 in plain decimal, got "
                    + show(values[time_column]),
                    path=inter_path,
                    line=line_number,
                )
            timestamps.append(timestamp)
        rows_of_user.setdefault(user, []).append(row_index)

    item_path = inter_path.with_name(inter_path.name[: -len(".inter")] + ".item")
    item_records = (
        _read_recbole_items(item_path, rename, list_fields) if item_path.is_file() else None
    )
    known_items: Iterable[str]
    if item_records is not None:
        known_items = item_records.keys()
        for line_number, values in rows:
            if values[item_column].strip() not in item_records:
                raise DataError(
                    f"item {show(values[item_column].strip())} is not in {item_path.name}",
                    path=inter_path,
                    line=line_number,
                )
    else:
        known_items = {values[item_column].strip() for _, values in rows}

    ordered_rows: list[list[int]] = []
    for user_rows in rows_of_user.values():
        if time_column is not None:
            user_rows = sorted(user_rows, key=timestamps.__getitem__)  # stable: ties keep order
        ordered_rows.append(user_rows)

    item_id_of: dict[str, int] = {}
    raw_ids = _as_one_to_n(known_items)
    if raw_ids is not None:
        item_id_of = raw_ids
    else:
        for user_rows in ordered_rows:
            for row_index in user_rows:
                item_id_of.setdefault(rows[row_index][1][item_column].strip(), len(item_id_of) + 1)
    sequences = [
        np.asarray(
            [item_id_of[rows[row_index][1][item_column].strip()] for row_index in user_rows],
            dtype=np.int64,
        )
        for user_rows in ordered_rows
    ]
    item_fields: list[dict[str, Any]] = [{} for _ in range(len(item_id_of) + 1)]
    if item_records is not None:
        for token, item_id in item_id_of.items():
            item_fields[item_id] = item_records[token]
    return sequences, item_fields


def _read_recbole_items(
    path: Path, rename: dict[str, str], list_fields: set[str]
) -> dict[str, dict[str, Any]]:
    """Item fields of a RecBole ``.item`` file keyed by the raw item token.

    token and token_seq values stay strings (a token_seq title must not be split into words),
    except the columns in ``list_fields``; float columns become numbers.
    """
    columns, rows = _read_recbole_rows(path)
    item_column = _column_index(columns, "item_id")
    if item_column is None:
        raise DataError("the header must have an item_id:token column", path=path, line=1)
    records: dict[str, dict[str, Any]] = {}
    for line_number, values in rows:
        token = values[item_column].strip()
        if not token:
            raise DataError("empty item_id", path=path, line=line_number)
        if token in records:
            raise DataError(f"item {show(token)} appears twice", path=path, line=line_number)
        fields: dict[str, Any] = {}
        for index, (name, kind) in enumerate(columns):
            if index == item_column:
                continue
            raw = values[index].strip()
            value: Any
            if kind == "float":
                value = parse_number(raw) if raw else None
                bad = raw and value is None
            elif kind == "float_seq":
                value = [parse_number(part) for part in raw.split()]
                bad = None in value
            else:
                value = raw.split() if name in list_fields else raw
                bad = False
            if bad:
                raise DataError(
                    f"column {show(name)}: expected {kind} (finite numbers in plain decimal), got "
                    + show(raw),
                    path=path,
                    line=line_number,
                )
            fields[rename.get(name, name)] = value
        records[token] = fields
    return records


def _as_one_to_n(tokens: Iterable[str]) -> dict[str, int] | None:
    """``{token: int}`` when the tokens are exactly the integers 1..N written plainly, else None."""
    mapping: dict[str, int] = {}
    for token in tokens:
        if not _ITEM_ID.fullmatch(token) or (len(token) > 1 and token[0] == "0"):
            return None
        mapping[token] = int(token)
    if sorted(mapping.values()) != list(range(1, len(mapping) + 1)):
        return None
    return mapping


# --------------------------------------------------------------------------- helpers


def dataset_fingerprint(
    sequences: Sequence[np.ndarray], item_fields: Sequence[dict[str, Any]]
) -> str:
    """sha256 over the sequences and item fields: equal data give equal fingerprints.

    Caches (embeddings, splits) key on it, so it must not depend on where or how data were read.
    """
    digest = hashlib.sha256(b"faerec-dataset-v1\0")
    lengths = np.fromiter(
        (len(sequence) for sequence in sequences), dtype="<i8", count=len(sequences)
    )
    digest.update(lengths.tobytes())
    if len(sequences):
        digest.update(np.concatenate(sequences).astype("<i8").tobytes())
    digest.update(
        json.dumps(
            list(item_fields), sort_keys=True, ensure_ascii=False, separators=(",", ":")
        ).encode("utf-8")
    )
    return digest.hexdigest()


def _is_text_value(value: Any) -> bool:
    """Item fields are rendered into text: scalars or flat lists of scalars only."""
    if value is None or isinstance(value, (str, int, float)):
        return True
    return isinstance(value, list) and all(
        isinstance(part, (str, int, float)) and not isinstance(part, bool) for part in value
    )
