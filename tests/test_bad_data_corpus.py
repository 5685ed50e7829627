"""A generated corpus of bad data files: every one is refused in one line naming file and line.

Hypothesis writes many broken variants of small valid inputs (the generic format, RecBole
``.inter``/``.item``, raw Amazon/Yelp dumps plain and gzipped, and item embedding ``.npy``
files named by ``embedding.model`` or ``dataset.json``). For each it asserts what a user sees:
one :class:`FaerecError` with exit code 2 whose message is a single line starting with
``FILE:LINE:`` (``FILE:`` for binary .npy files), and nothing written. The bulk calls the loader
functions; a handful of representative cases run the real ``faerec-study`` command in a
subprocess and also check stderr (exactly one line, no traceback) and that no ``studies/``
folder appears. The formats are those of docs/data-format.md.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from faerec.cli import main
from faerec.config import EmbeddingConfig, resolve_config
from faerec.data import load_dataset, preprocess_amazon, preprocess_yelp
from faerec.data.check import check_datasets
from faerec.embeddings import prepare_item_embeddings
from faerec.errors import FaerecError

SETTINGS = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    derandomize=True,  # the same corpus on every run: a failure is reproducible from the log
)

SEQUENCE_LINES = ["1 1 2 3", "2 2 3", "3 3 1 2"]
ITEM_LINES = [
    '{"item_id": 1, "title": "Red lipstick", "tags": ["makeup"]}',
    '{"item_id": 2, "title": "Nail file"}',
    '{"item_id": 3, "title": "Soap", "price": 2.5}',
]
INTER_HEADER = "user_id:token\titem_id:token\ttimestamp:float"
INTER_LINES = ["u1\ta\t10", "u1\tb\t20", "u2\tb\t5", "u2\tc\t7", "u3\ta\t1", "u3\tc\t2"]


@contextlib.contextmanager
def scratch() -> Iterator[Path]:
    """A fresh folder per generated example (pytest's tmp_path is shared by all examples)."""
    with tempfile.TemporaryDirectory(prefix="faerec-bad-") as name:
        yield Path(name)


def every(name: str, values: list[Any], **rest: Any) -> Callable[[Any], Any]:
    """One explicit Hypothesis example per listed value (``rest`` fixes the other arguments),
    so each hand-picked case runs on every run besides the generated ones."""

    def decorate(test: Any) -> Any:
        for value in values:
            test = example(**{name: value}, **rest)(test)
        return test

    return decorate


def listing(folder: Path) -> set[str]:
    return {str(path.relative_to(folder)) for path in folder.rglob("*")}


def refusal(call: Callable[[], object], folder: Path) -> str:
    """The one-line message of the error ``call`` raises; asserts exit code 2, nothing written."""
    before = listing(folder)
    with pytest.raises(FaerecError) as caught:
        call()
    message = str(caught.value)
    assert caught.value.exit_code == 2, message
    assert "\n" not in message and "\r" not in message, message
    assert "Traceback" not in message
    assert listing(folder) == before, "a refused input must leave nothing behind"
    return message


def assert_names(message: str, path: Path, line: int | None) -> None:
    prefix = f"{path}:{line}: " if line is not None else f"{path}: "
    assert message.startswith(prefix), f"expected {prefix!r}, got {message!r}"


# --------------------------------------------------------------------------- file layout


@st.composite
def layouts(draw: st.DrawFn, count: int) -> tuple[list[int], str]:
    """Blank lines before each of ``count`` lines, and the line ending (LF or CRLF)."""
    blanks = draw(st.lists(st.integers(0, 2), min_size=count, max_size=count))
    return blanks, draw(st.sampled_from(["\n", "\r\n"]))


def lay_out(lines: list[str], blanks: list[int], ending: str) -> tuple[str, list[int]]:
    """File text with blank lines inserted, and the physical (1-based) line of each input line."""
    out: list[str] = []
    physical: list[int] = []
    for line, blank in zip(lines, blanks, strict=True):
        out.extend([""] * blank)
        out.append(line)
        physical.append(len(out))
    return "".join(line + ending for line in out), physical


def write_generic(folder: Path, sequences: str | bytes, items: str | bytes) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, content in (("sequences.txt", sequences), ("items.jsonl", items)):
        data = content.encode("utf-8") if isinstance(content, str) else content
        (folder / name).write_bytes(data)
    return folder


def good_items() -> str:
    return "".join(line + "\n" for line in ITEM_LINES)


def good_sequences() -> str:
    return "".join(line + "\n" for line in SEQUENCE_LINES)


# --------------------------------------------------------------------------- sequences.txt

# Tokens Python's int() (or a careless split) would accept or misread, and plain garbage.
LISTED_ID_TOKENS = ["1_0", "+2", "-2", "0", "00", "2.0", "1e3", "0x10", "nan", "²", "١٢", "३"]
LISTED_ID_TOKENS += ["9" * 30, "1\xa01", "1\x0b1", "1\u20281", "1\x851", "x", ""]
BAD_ID_TOKENS = st.one_of(
    st.sampled_from(LISTED_ID_TOKENS[:-1]),
    st.integers(10**18, 10**40).map(str),  # too long for an int64 id
    st.text(st.characters(categories=["Nd"], exclude_characters="0123456789"), min_size=1),
    st.tuples(st.integers(1, 3), st.sampled_from(["\x0b", "\x0c", "\xa0", "\u2028", "\x85"])).map(
        lambda pair: f"{pair[0]}{pair[1]}{pair[0]}"
    ),
)


@SETTINGS
@given(
    token=BAD_ID_TOKENS,
    target=st.integers(0, 2),
    position=st.integers(1, 3),
    layout=layouts(3),
)
@every("token", LISTED_ID_TOKENS[:-1], target=1, position=1, layout=([0, 0, 0], "\n"))
def test_sequence_id_that_is_not_a_plain_ascii_integer_is_refused_on_its_line(
    token: str, target: int, position: int, layout: tuple[list[int], str]
) -> None:
    lines = list(SEQUENCE_LINES)
    tokens = lines[target].split()
    tokens.insert(min(position, len(tokens)), token)
    lines[target] = " ".join(tokens)
    text, physical = lay_out(lines, *layout)
    with scratch() as root:
        folder = write_generic(root / "shop", text, good_items())
        message = refusal(lambda: load_dataset(folder), root)
    assert_names(message, folder / "sequences.txt", physical[target])


# --------------------------------------------------------------------------- items.jsonl


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


LISTED_ITEM_RECORDS = [
    '{"item_id": NaN}',
    '{"item_id": 2, "price": Infinity}',
    '{"item_id": 2, "price": -Infinity}',
    '{"item_id": 2, "price": 1e999}',
    '{"item_id": 2, "item_id": 3}',
    '{"item_id": 2, "title": "a", "title": "b"}',
    '{"item_id": 2.0}',
    '{"item_id": "2"}',
    '{"item_id": true}',
    '{"item_id": 0}',
    '{"item_id": -2}',
    '{"item_id": null}',
    '{"title": "no id"}',
    '{"item_id": 2, "title": {"nested": 1}}',
    '{"item_id": 2, "title": "\\ud800"}',
    '{"item_id": 2, "title": "unterminated}',
    '{"item_id": 2,}',
    '{"item_id": 2} trailing',
    '{"item_id": 2, "price": ' + "9" * 5000 + "}",
    "\ufeff" + '{"item_id": 2}',
    nested(100_000),
    '{"item_id": 2, "t": ' + nested(5000) + "}",
    "[]",
    "null",
    '"text"',
    "7",
    '{"item_id": 2, "title": "Nail',
]
BAD_ITEM_RECORDS = st.one_of(
    st.sampled_from(LISTED_ITEM_RECORDS),
    st.integers(2000, 100_000).map(nested),  # deeper than the parser's recursion limit
    st.integers(2000, 100_000).map(lambda depth: '{"item_id": 2, "t": ' + nested(depth) + "}"),
    st.recursive(  # valid JSON that is not an object
        st.none() | st.booleans() | st.integers() | st.text(max_size=5),
        lambda inner: st.lists(inner, max_size=3),
        max_leaves=5,
    ).map(json.dumps),
    st.integers(1, len(ITEM_LINES[1]) - 1).map(lambda cut: ITEM_LINES[1][:cut]),  # cut short
)


@SETTINGS
@given(record=BAD_ITEM_RECORDS, layout=layouts(3))
@every("record", LISTED_ITEM_RECORDS, layout=([0, 1, 0], "\r\n"))
def test_item_line_that_is_not_a_clean_record_is_refused_on_its_line(
    record: str, layout: tuple[list[int], str]
) -> None:
    lines = [ITEM_LINES[0], record, ITEM_LINES[2]]
    text, physical = lay_out(lines, *layout)
    with scratch() as root:
        folder = write_generic(root / "shop", good_sequences(), text)
        message = refusal(lambda: load_dataset(folder), root)
    assert_names(message, folder / "items.jsonl", physical[1])


# Bytes that are not UTF-8: Latin-1 letters, a stray continuation byte, a cut sequence,
# an encoded surrogate, an overlong form.
BAD_BYTES = st.sampled_from([b"\xe9", b"\xff", b"\x80", b"\xc3", b"\xed\xa0\x80", b"\xc0\xaf"])


@SETTINGS
@given(
    bad=BAD_BYTES,
    name=st.sampled_from(["sequences.txt", "items.jsonl"]),
    target=st.integers(0, 2),
    column=st.integers(0, 8),
    layout=layouts(3),
)
def test_non_utf8_byte_in_a_generic_file_is_reported_on_its_physical_line(
    bad: bytes, name: str, target: int, column: int, layout: tuple[list[int], str]
) -> None:
    lines = list(SEQUENCE_LINES if name == "sequences.txt" else ITEM_LINES)
    text, physical = lay_out(lines, *layout)
    raw_lines = text.encode("utf-8").split(b"\n")
    index = physical[target] - 1
    line = raw_lines[index]
    cut = min(column, len(line.rstrip(b"\r")))
    raw_lines[index] = line[:cut] + bad + line[cut:]
    content = b"\n".join(raw_lines)
    with scratch() as root:
        folder = root / "shop"
        if name == "sequences.txt":
            write_generic(folder, content, good_items())
        else:
            write_generic(folder, good_sequences(), content)
        message = refusal(lambda: load_dataset(folder), root)
    assert_names(message, folder / name, physical[target])
    assert "UTF-8" in message


@pytest.mark.parametrize(
    ("sequences", "items", "name", "line"),
    [
        ("", good_items(), "sequences.txt", 1),  # empty file
        ("\n\n  \n", good_items(), "sequences.txt", 1),  # only blank lines
        (good_sequences(), "", "items.jsonl", 1),
        ("\ufeff" + good_sequences(), good_items(), "sequences.txt", 1),  # BOM
        (good_sequences(), "\ufeff" + good_items(), "items.jsonl", 1),
        ("1 1 2\n2 1 2\n1 3\n", good_items(), "sequences.txt", 3),  # user twice
        ("1 1 2\n2\n", good_items(), "sequences.txt", 2),  # user without items
        ("1 1 2\r3 1\n", good_items(), "sequences.txt", 1),  # a lone CR is not a line break
        (good_sequences(), '{"item_id": 1}\n{"item_id": 3}\n', "items.jsonl", 2),  # gap
    ],
)
def test_whole_file_problems_name_a_line_too(
    tmp_path: Path, sequences: str, items: str, name: str, line: int
) -> None:
    folder = write_generic(tmp_path / "shop", sequences, items)
    assert_names(refusal(lambda: load_dataset(folder), tmp_path), folder / name, line)


@pytest.mark.parametrize(
    ("meta", "line"),
    [
        ('{\n  "name": "x",\n  "colour": "red"\n}\n', 3),
        ('{\n  "name": "x",\n  "text_template": 5\n}\n', 3),
        ('{\n  "name": "x",\n  "name": "y"\n}\n', 3),
        ('{\n  "name": "x",\n  "provenance": ' + nested(5000) + "\n}\n", 1),
        ('{\n  "name": "x"\n  "embedding": "e.npy"\n}\n', 3),
        ("[1, 2]\n", 1),
        ("", 1),
        ('{\n  "embedding": "missing.npy"\n}\n', 2),
    ],
)
def test_bad_dataset_json_names_file_and_line(tmp_path: Path, meta: str, line: int) -> None:
    folder = write_generic(tmp_path / "shop", good_sequences(), good_items())
    (folder / "dataset.json").write_text(meta, encoding="utf-8")
    message = refusal(lambda: load_dataset(folder), tmp_path)
    assert_names(message, folder / "dataset.json", line)


def test_crlf_files_load_like_lf_files(tmp_path: Path) -> None:
    lf = write_generic(tmp_path / "lf", good_sequences(), good_items())
    crlf = write_generic(
        tmp_path / "crlf",
        good_sequences().replace("\n", "\r\n"),
        good_items().replace("\n", "\r\n"),
    )
    assert load_dataset(crlf).fingerprint == load_dataset(lf).fingerprint


# --------------------------------------------------------------------------- RecBole


LISTED_TIMESTAMPS = ["nan", "NaN", "inf", "-inf", "Infinity", "1e999", "1_0", "١٢", "", " "]
LISTED_TIMESTAMPS += ["noon", "-5", "0x10", "1e3e3"]
BAD_TIMESTAMPS = st.one_of(
    st.sampled_from(LISTED_TIMESTAMPS),
    st.integers(-(10**12), -1).map(str),
    st.text(st.characters(categories=["Nd"], exclude_characters="0123456789"), min_size=1),
)


@SETTINGS
@given(timestamp=BAD_TIMESTAMPS, target=st.integers(0, 5), layout=layouts(7))
@every("timestamp", LISTED_TIMESTAMPS, target=3, layout=([0] * 7, "\n"))
def test_recbole_timestamp_that_is_not_a_finite_number_is_refused_on_its_line(
    timestamp: str, target: int, layout: tuple[list[int], str]
) -> None:
    rows = list(INTER_LINES)
    user, item, _ = rows[target].split("\t")
    rows[target] = f"{user}\t{item}\t{timestamp}"
    blanks, ending = layout
    blanks[0] = 0  # the header is line 1
    text, physical = lay_out([INTER_HEADER, *rows], blanks, ending)
    with scratch() as root:
        inter = root / "m.inter"
        inter.write_text(text, encoding="utf-8")
        message = refusal(lambda: load_dataset(inter), root)
    assert_names(message, inter, physical[target + 1])


@pytest.mark.parametrize(
    ("inter", "item", "name", "line"),
    [
        ("", None, "m.inter", 1),
        (INTER_HEADER + "\n", None, "m.inter", 2),  # header only
        ("user_id:token\titem_id:token\tuser_id:token\nu1\ta\tu1\n", None, "m.inter", 1),
        (INTER_HEADER + "\nu1\ta\t1\nu1\ta\n", None, "m.inter", 3),  # too few columns
        (INTER_HEADER + "\nu1\ta\t1\t9\n", None, "m.inter", 2),  # too many columns
        ("\ufeff" + INTER_HEADER + "\nu1\ta\t1\n", None, "m.inter", 1),
        (INTER_HEADER + "\nu1\ta\t1\n", "item_id:token\tprice:float\na\tnan\n", "m.item", 2),
        (INTER_HEADER + "\nu1\ta\t1\n", "item_id:token\tv:float_seq\na\t1 inf\n", "m.item", 2),
        (INTER_HEADER + "\nu1\ta\t1\n", "item_id:token\tprice:float\na\t1_0\n", "m.item", 2),
        (INTER_HEADER + "\nu1\ta\t1\n", "item_id:token\nb\n", "m.inter", 2),  # not in .item
    ],
)
def test_bad_recbole_files_name_file_and_line(
    tmp_path: Path, inter: str, item: str | None, name: str, line: int
) -> None:
    (tmp_path / "m.inter").write_text(inter, encoding="utf-8")
    if item is not None:
        (tmp_path / "m.item").write_text(item, encoding="utf-8")
    message = refusal(lambda: load_dataset(tmp_path / "m.inter"), tmp_path)
    assert_names(message, tmp_path / name, line)


def test_recbole_item_tokens_in_other_scripts_are_tokens_not_integers(tmp_path: Path) -> None:
    """'١' and '٢' are opaque tokens, numbered by first appearance, not read as 1 and 2."""
    inter = tmp_path / "m.inter"
    inter.write_text("user_id:token\titem_id:token\nu1\t٢\nu1\t١\n", encoding="utf-8")
    assert load_dataset(inter).sequences[0].tolist() == [1, 2]


# --------------------------------------------------------------------------- raw dumps


def amazon_review(index: int) -> dict[str, Any]:
    return {
        "reviewerID": f"A{index % 7}",
        "asin": f"X{index % 5}",
        "unixReviewTime": 1_300_000_000 + index,
        "overall": 5.0,
    }


def yelp_review(index: int) -> dict[str, Any]:
    return {
        "user_id": f"u{index % 7}",
        "business_id": f"b{index % 5}",
        "stars": 4,
        "date": "2015-06-01 12:00:00",
    }


AMAZON_META = "".join(
    f"{{'asin': 'X{i}', 'title': 'T{i}', 'categories': [['Beauty']]}}\n" for i in range(5)
)
YELP_BUSINESS = "".join(
    json.dumps({"business_id": f"b{i}", "name": f"N{i}", "categories": "Food"}) + "\n"
    for i in range(5)
)

# JSON values of unixReviewTime that are not whole seconds from 0 to 2**53.
LISTED_UNIX_TIMES = [
    "NaN",
    "Infinity",
    "-Infinity",
    "1e999",
    '"nan"',
    '"inf"',
    '"1_0"',
    '"١٢"',
    "-1",
    "1.5",
    str(2**60),
    "1" + "0" * 40,
    "true",
    "null",
    '"soon"',
    "[1]",
]
BAD_UNIX_TIMES = st.sampled_from(LISTED_UNIX_TIMES)
# JSON values of a Yelp date that are not YYYY-MM-DD[ HH:MM:SS] in ASCII digits.
LISTED_DATES = [
    json.dumps(date)
    for date in [
        "٢٠١٥-06-01",
        "2015-13-01",
        "2015-06-32",
        "2015-06-01 25:00:00",
        "2015-6-1",
        "01/06/2015",
        "",
        "2015-06-01T12:00:00",
    ]
] + ["20150601", "null", "NaN", '["2015-06-01"]']
BAD_DATES = st.one_of(
    st.sampled_from(LISTED_DATES),
    st.text(st.characters(categories=["Nd"], exclude_characters="0123456789"), min_size=4).map(
        lambda digits: json.dumps(f"{digits[:4]}-06-01")
    ),
)


def write_dump(path: Path, data: bytes) -> Path:
    path.write_bytes(gzip.compress(data) if path.name.endswith(".gz") else data)
    return path


@SETTINGS
@given(
    case=st.tuples(st.just("amazon"), BAD_UNIX_TIMES) | st.tuples(st.just("yelp"), BAD_DATES),
    filler=st.integers(0, 3000),  # long enough to cross the 8 KiB chunks of a text reader
    suffix=st.sampled_from([".json", ".json.gz"]),
    crlf=st.booleans(),
)
@every(
    "case",
    [("amazon", value) for value in LISTED_UNIX_TIMES] + [("yelp", v) for v in LISTED_DATES],
    filler=2,
    suffix=".json",
    crlf=False,
)
def test_raw_review_with_a_bad_time_is_refused_on_its_line(
    case: tuple[str, str], filler: int, suffix: str, crlf: bool
) -> None:
    source, value = case
    make, key = (amazon_review, "unixReviewTime") if source == "amazon" else (yelp_review, "date")
    lines = [json.dumps(make(i)) for i in range(filler)]
    rest = {k: v for k, v in make(filler).items() if k != key}
    lines.append(json.dumps(rest)[:-1] + f', "{key}": {value}}}')
    ending = "\r\n" if crlf else "\n"
    data = "".join(line + ending for line in lines).encode("utf-8")
    with scratch() as root:
        reviews = write_dump(root / f"reviews{suffix}", data)
        meta = root / "meta.json"
        meta.write_text(AMAZON_META if source == "amazon" else YELP_BUSINESS, encoding="utf-8")
        out = root / "out"
        if source == "amazon":
            message = refusal(lambda: preprocess_amazon(reviews, meta, out, 1, 1), root)
        else:
            message = refusal(lambda: preprocess_yelp(reviews, meta, out, 1, 1), root)
    assert_names(message, reviews, filler + 1)


LISTED_RAW_LINES = [
    '{"reviewerID": "A", "asin": "X", "unixReviewTime": 5, "reviewerID": "B"}',
    '{"reviewerID": "A", "asin": "X", "unixReviewTime": 5, "overall": NaN}',
    '{"reviewerID": "A", "asin": "X", "unixReviewTime": 5, "overall": "nan"}',
    '{"reviewerID": "\\udc80", "asin": "X", "unixReviewTime": 5}',
    "{'reviewerID': '\\ud800', 'asin': 'X', 'unixReviewTime': 5}",
    '{"reviewerID": "A", "asin": "X"}',
    '["A", "X", 5]',
    "not json",
    "__import__('os').system('echo owned')",
    "{'reviewerID': 'A', 'asin': 'X', 'unixReviewTime': 5",
    '{"reviewerID": ' + nested(5000) + "}",
    nested(50_000),
]
BAD_RAW_LINES = st.one_of(
    st.integers(2000, 50_000).map(lambda depth: '{"reviewerID": ' + nested(depth) + "}"),
    st.integers(2000, 50_000).map(nested),
    st.sampled_from(LISTED_RAW_LINES),
)


@SETTINGS
@given(
    line=BAD_RAW_LINES,
    filler=st.integers(0, 50),
    suffix=st.sampled_from([".json", ".json.gz"]),
)
@every("line", LISTED_RAW_LINES, filler=3, suffix=".json.gz")
def test_raw_review_line_that_is_not_a_clean_record_is_refused_on_its_line(
    line: str, filler: int, suffix: str
) -> None:
    lines = [json.dumps(amazon_review(i)) for i in range(filler)] + [line]
    data = "".join(entry + "\n" for entry in lines).encode("utf-8")
    with scratch() as root:
        reviews = write_dump(root / f"reviews{suffix}", data)
        meta = root / "meta.json"
        meta.write_text(AMAZON_META, encoding="utf-8")
        message = refusal(lambda: preprocess_amazon(reviews, meta, root / "out", 1, 1), root)
    assert_names(message, reviews, filler + 1)


@SETTINGS
@given(
    bad=BAD_BYTES,
    filler=st.integers(0, 3000),
    which=st.sampled_from(["reviews", "meta"]),
    suffix=st.sampled_from([".json", ".json.gz"]),
)
def test_non_utf8_byte_in_a_raw_dump_is_reported_on_its_physical_line(
    bad: bytes, filler: int, which: str, suffix: str
) -> None:
    reviews_text = "".join(json.dumps(amazon_review(i)) + "\n" for i in range(filler + 1))
    meta_lines = (AMAZON_META.splitlines() * (1 + filler // 5))[: filler + 1]
    lines = reviews_text.splitlines() if which == "reviews" else meta_lines
    data = bytearray()
    for index, line in enumerate(lines):
        encoded = line.encode("utf-8")
        if index == filler:
            encoded = encoded[:5] + bad + encoded[5:]
        data += encoded + b"\n"
    with scratch() as root:
        path = write_dump(root / f"{which}{suffix}", bytes(data))
        other = root / ("meta.json" if which == "reviews" else "reviews.json")
        other.write_text(AMAZON_META if which == "reviews" else reviews_text, encoding="utf-8")
        reviews, meta = (path, other) if which == "reviews" else (other, path)
        message = refusal(lambda: preprocess_amazon(reviews, meta, root / "out", 1, 1), root)
    assert_names(message, path, filler + 1)
    assert "UTF-8" in message


@SETTINGS
@given(data=st.data(), lines=st.integers(1, 400))
def test_truncated_gzip_dump_is_refused_with_a_line(data: st.DataObject, lines: int) -> None:
    text = "".join(json.dumps(amazon_review(i)) + "\n" for i in range(lines))
    packed = gzip.compress(text.encode("utf-8"))
    cut = data.draw(st.integers(1, len(packed) - 1))
    with scratch() as root:
        reviews = root / "reviews.json.gz"
        reviews.write_bytes(packed[:cut])
        meta = root / "meta.json"
        meta.write_text(AMAZON_META, encoding="utf-8")
        message = refusal(lambda: preprocess_amazon(reviews, meta, root / "out", 1, 1), root)
    assert re.match(rf"{re.escape(str(reviews))}:\d+: ", message), message
    assert "gzip" in message


@pytest.mark.parametrize(
    ("content", "line", "words"),
    [
        (b"", 1, "no records"),
        (b"\n\n", 1, "no records"),
        (b"\xef\xbb\xbf" + b'{"reviewerID": "A"}\n', 1, "byte-order mark"),
        (b"\xff\xfe{\x00", 1, "UTF-16"),
        (gzip.compress(b'{"a": 1}\n'), 1, "gzip-compressed"),  # a .gz file named .json
    ],
)
def test_raw_dump_whole_file_problems_name_a_line(
    tmp_path: Path, content: bytes, line: int, words: str
) -> None:
    reviews = tmp_path / "reviews.json"
    reviews.write_bytes(content)
    meta = tmp_path / "meta.json"
    meta.write_text(AMAZON_META, encoding="utf-8")
    message = refusal(lambda: preprocess_amazon(reviews, meta, tmp_path / "out", 1, 1), tmp_path)
    assert_names(message, reviews, line)
    assert words in message


def test_plain_dump_named_gz_is_refused_on_line_1(tmp_path: Path) -> None:
    reviews = tmp_path / "reviews.json.gz"
    reviews.write_text(json.dumps(amazon_review(0)) + "\n", encoding="utf-8")
    meta = tmp_path / "meta.json"
    meta.write_text(AMAZON_META, encoding="utf-8")
    message = refusal(lambda: preprocess_amazon(reviews, meta, tmp_path / "out", 1, 1), tmp_path)
    assert_names(message, reviews, 1)
    assert "not gzip data" in message


# --------------------------------------------------------------------------- .npy matrices


def npy_bytes(array: np.ndarray, allow_pickle: bool = False) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=allow_pickle)
    return buffer.getvalue()


MATRIX_KINDS = [
    "empty",
    "garbage",
    "truncated",
    "object",
    "dtype",
    "rows",
    "ndim",
    "width",
    "nonfinite",
    "overflow",
    "npz",
    "text",
    "header",
]


@st.composite
def bad_matrices(draw: st.DrawFn, kind: str) -> bytes:
    """The bytes of a .npy file that is not a finite float [4, d] matrix (3 items + padding)."""
    good = np.ones((4, 3), dtype=np.float32)
    if kind == "empty":
        return b""
    if kind == "garbage":
        return draw(st.binary(min_size=1, max_size=64))
    if kind == "truncated":
        raw = npy_bytes(good)
        return raw[: draw(st.integers(1, len(raw) - 1))]
    if kind == "object":
        return npy_bytes(np.array([[1.0, "a"]] * 4, dtype=object), allow_pickle=True)
    if kind == "dtype":
        dtypes = [np.int64, np.int8, np.bool_, np.complex64, "U3", "V8"]
        dtype = np.dtype(draw(st.sampled_from(dtypes)))
        return npy_bytes(np.zeros((4, 3), dtype=dtype))
    if kind == "rows":
        rows = draw(st.integers(0, 10).filter(lambda n: n != 4))
        return npy_bytes(np.ones((rows, 3), dtype=np.float32))
    if kind == "ndim":
        shape = draw(st.sampled_from([(), (4,), (4, 3, 2), (1, 4, 3)]))
        return npy_bytes(np.ones(shape, dtype=np.float32))
    if kind == "width":
        return npy_bytes(np.ones((4, 0), dtype=np.float32))
    if kind == "nonfinite":
        bad = good.copy()
        bad[draw(st.integers(1, 3)), draw(st.integers(0, 2))] = draw(
            st.sampled_from([np.nan, np.inf, -np.inf])
        )
        return npy_bytes(bad)
    if kind == "overflow":  # finite in float64, infinite in float32
        bad64 = good.astype(np.float64)
        bad64[draw(st.integers(1, 3)), 0] = 1e300
        return npy_bytes(bad64)
    if kind == "npz":
        buffer = io.BytesIO()
        np.savez(buffer, matrix=good)
        return buffer.getvalue()
    if kind == "header":  # the header dict cut open: numpy's own parser fails on it
        raw = npy_bytes(good)
        return raw.replace(b"}", draw(st.sampled_from([b" ", b"(", b"'"])), 1)
    return b"0.1 0.2 0.3\n" * 4  # a text matrix, not .npy


@pytest.mark.parametrize("kind", MATRIX_KINDS)
@settings(SETTINGS, max_examples=4)
@given(data=st.data())
def test_bad_npy_named_by_dataset_json_is_refused_naming_the_npy(
    kind: str, data: st.DataObject
) -> None:
    content = data.draw(bad_matrices(kind))
    with scratch() as root:
        folder = write_generic(root / "shop", good_sequences(), good_items())
        (folder / "emb.npy").write_bytes(content)
        (folder / "dataset.json").write_text('{"embedding": "emb.npy"}', encoding="utf-8")
        message = refusal(lambda: load_dataset(folder), root)
    assert_names(message, (folder / "emb.npy").resolve(), None)
    assert "dataset.json" in message


@pytest.mark.parametrize("kind", MATRIX_KINDS)
@settings(SETTINGS, max_examples=4)
@given(data=st.data())
def test_bad_npy_as_embedding_model_is_refused_naming_the_npy(
    kind: str, data: st.DataObject
) -> None:
    content = data.draw(bad_matrices(kind))
    with scratch() as root:
        folder = write_generic(root / "shop", good_sequences(), good_items())
        matrix = root / "emb.npy"
        matrix.write_bytes(content)
        dataset = load_dataset(folder)
        message = refusal(
            lambda: prepare_item_embeddings(dataset, EmbeddingConfig(model=str(matrix))), root
        )
        assert_names(message, matrix, None)
        assert message.endswith("(named by embedding.model)"), message
        config = resolve_config(
            str(folder), "sasrec", "faerec", "none", {"embedding.model": str(matrix)}
        )
        assert_names(refusal(lambda: check_datasets([config]), root), matrix, None)


def test_good_npy_matrix_passes_the_check(tmp_path: Path) -> None:
    folder = write_generic(tmp_path / "shop", good_sequences(), good_items())
    matrix = tmp_path / "emb.npy"
    np.save(matrix, np.ones((4, 5), dtype=np.float16))
    config = resolve_config(
        str(folder), "sasrec", "faerec", "none", {"embedding.model": str(matrix)}
    )
    assert check_datasets([config])[str(folder)].num_items == 3


def test_dataset_json_template_naming_an_unknown_field_is_refused_on_its_line(
    tmp_path: Path,
) -> None:
    folder = write_generic(tmp_path / "shop", good_sequences(), good_items())
    (folder / "dataset.json").write_text(
        '{\n  "name": "shop",\n  "text_template": "Title: {titel}"\n}\n', encoding="utf-8"
    )
    config = resolve_config(str(folder), "sasrec", "faerec", "none")
    message = refusal(lambda: check_datasets([config]), tmp_path)
    assert_names(message, folder / "dataset.json", 3)
    assert "unknown field {titel}" in message


# --------------------------------------------------------------------------- the real command


def run_cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "faerec.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
    )


def assert_cli_refuses(args: list[str], cwd: Path, path: Path, line: int | None) -> None:
    before = listing(cwd)
    completed = run_cli(args, cwd)
    assert completed.returncode == 2, completed.stderr
    assert "Traceback" not in completed.stderr
    lines = completed.stderr.splitlines()
    assert len(lines) == 1, completed.stderr
    location = f"{path}:{line}: " if line is not None else f"{path}: "
    assert lines[0].startswith(f"faerec-study: error: {location}"), lines[0]
    assert listing(cwd) == before, "nothing may be written (no studies/ folder)"


def study_spec(root: Path, methods: str = "[backbone]", extra: str = "") -> Path:
    spec = root / "spec.yaml"
    spec.write_text(
        f"name: bad\ndatasets: [shop]\nbackbones: [sasrec]\nmethods: {methods}\n{extra}",
        encoding="utf-8",
    )
    return spec


BROKEN_FOLDERS: list[tuple[str, str, str, str, int | None]] = [
    # (id, file, content, the file the error names, line)
    ("digit-grouping", "sequences.txt", "1 1 2\n2 1_0 3\n", "sequences.txt", 2),
    ("30-digit-id", "sequences.txt", "1 1 2\n2 " + "9" * 30 + "\n", "sequences.txt", 2),
    ("deep-json", "items.jsonl", '{"item_id": 1}\n' + nested(100_000) + "\n", "items.jsonl", 2),
    ("zero-byte-npy", "emb.npy", "", "emb.npy", None),
]


@pytest.mark.parametrize(
    ("file", "content", "named", "line"),
    [case[1:] for case in BROKEN_FOLDERS],
    ids=[case[0] for case in BROKEN_FOLDERS],
)
@pytest.mark.parametrize("command", ["validate", "run"])
def test_study_commands_refuse_bad_data_before_writing_anything(
    tmp_path: Path, command: str, file: str, content: str, named: str, line: int | None
) -> None:
    folder = write_generic(tmp_path / "shop", good_sequences(), good_items())
    (folder / file).write_text(content, encoding="utf-8")
    if file.endswith(".npy"):
        (folder / "dataset.json").write_text('{"embedding": "emb.npy"}', encoding="utf-8")
    spec = study_spec(tmp_path)
    path = (folder / named).resolve()
    assert_cli_refuses([command, str(spec)], tmp_path, path, line)


def test_run_refuses_a_bad_embedding_model_of_a_faerec_cell(tmp_path: Path) -> None:
    write_generic(tmp_path / "shop", good_sequences(), good_items())
    matrix = tmp_path / "emb.npy"
    np.save(matrix, np.ones((3, 4), dtype=np.float32))  # one row short
    spec = study_spec(tmp_path, "[faerec]", f"fixed:\n  embedding.model: {matrix}\n")
    assert_cli_refuses(["run", str(spec)], tmp_path, matrix, None)


def test_recbole_nan_timestamp_is_refused_by_validate(tmp_path: Path) -> None:
    inter = tmp_path / "shop" / "shop.inter"
    inter.parent.mkdir()
    inter.write_text(INTER_HEADER + "\nu1\ta\t1\nu1\tb\tnan\n", encoding="utf-8")
    assert_cli_refuses(["validate", str(study_spec(tmp_path))], tmp_path, inter.resolve(), 3)


def test_prepare_reports_a_latin1_byte_on_its_line_of_a_large_plain_dump(tmp_path: Path) -> None:
    lines = [json.dumps(amazon_review(i)) for i in range(5000)]
    data = "".join(line + "\n" for line in lines).encode("utf-8")
    offset = len("".join(line + "\n" for line in lines[:4321]).encode("utf-8"))
    data = data[: offset + 20] + "é".encode("latin-1") + data[offset + 20 :]
    reviews = tmp_path / "reviews.json"
    reviews.write_bytes(data)
    meta = tmp_path / "meta.json"
    meta.write_text(AMAZON_META, encoding="utf-8")
    argv = ["prepare", "amazon", "--reviews", str(reviews), "--meta", str(meta)]
    assert_cli_refuses([*argv, "--out", str(tmp_path / "out")], tmp_path, reviews, 4322)


def test_embed_refuses_a_zero_byte_npy_in_one_line(tmp_path: Path) -> None:
    folder = write_generic(tmp_path / "shop", good_sequences(), good_items())
    matrix = tmp_path / "emb.npy"
    matrix.write_bytes(b"")
    completed = run_cli(["embed", "--dataset", str(folder), "--model", str(matrix)], tmp_path)
    assert completed.returncode == 2 and "Traceback" not in completed.stderr
    assert completed.stderr.splitlines() == [
        f"faerec-study: error: {matrix}: empty file (0 bytes); expected a .npy matrix (named by "
        "embedding.model)"
    ]


def test_in_process_validate_prints_one_line_for_a_bad_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    write_generic(tmp_path / "shop", "1 1 2\n2 ١٢\n", good_items())
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        assert main(["validate", str(study_spec(tmp_path))]) == 2
    assert stderr.getvalue().count("\n") == 1
    assert f"{(tmp_path / 'shop' / 'sequences.txt').resolve()}:2: " in stderr.getvalue()


def test_validate_checks_every_searched_embedding_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    write_generic(tmp_path / "shop", good_sequences(), good_items())
    good, bad = tmp_path / "good.npy", tmp_path / "bad.npy"
    np.save(good, np.ones((4, 2), dtype=np.float32))
    bad.write_bytes(b"")
    space = f"search:\n  space:\n    faerec:\n      embedding.model: {{choice: [{good}, {bad}]}}\n"
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        assert main(["validate", str(study_spec(tmp_path, "[faerec]", space))]) == 2
    assert stderr.getvalue().startswith(f"faerec-study: error: {bad}: empty file")


def test_train_refuses_bad_data_in_one_line_before_writing_its_output(tmp_path: Path) -> None:
    folder = write_generic(tmp_path / "shop", "1 1 2\n2 1_0\n", good_items())
    argv = ["train", "--dataset", str(folder), "--output", str(tmp_path / "run")]
    assert_cli_refuses(argv, tmp_path, folder / "sequences.txt", 2)


def test_prepare_prints_no_python_warning_for_a_bad_literal_line(tmp_path: Path) -> None:
    """`1if` makes Python's parser warn ("invalid decimal literal"): still exactly one line."""
    reviews = tmp_path / "reviews.json"
    reviews.write_text(
        json.dumps(amazon_review(0)) + "\n{'reviewerID': 1if 1 else 2}\n", encoding="utf-8"
    )
    meta = tmp_path / "meta.json"
    meta.write_text(AMAZON_META, encoding="utf-8")
    argv = ["prepare", "amazon", "--reviews", str(reviews), "--meta", str(meta)]
    assert_cli_refuses([*argv, "--out", str(tmp_path / "out")], tmp_path, reviews, 2)


def test_resume_refuses_data_that_went_bad_before_writing_anything(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The study was started on good data; the file has since been damaged."""
    from faerec.atomic import write_json_atomic
    from faerec.study.spec import parse_spec_text
    from faerec.study.store import StudyStore

    folder = write_generic(tmp_path / "shop", good_sequences(), good_items())
    spec = parse_spec_text(study_spec(tmp_path).read_text(), "spec.yaml", tmp_path)
    store = StudyStore(tmp_path / "studies" / "bad")
    cells = [cell.cell_id for cell in spec.cells()]
    write_json_atomic(store.study_json, {"name": "bad", "spec": spec.to_dict(), "cells": cells})
    (folder / "sequences.txt").write_text("1 1 2\n2 1 nan\n", encoding="utf-8")
    before = listing(tmp_path)
    argv = ["resume", "bad", "--studies-dir", str(tmp_path / "studies")]
    assert main([*argv, "--reports-dir", str(tmp_path / "reports")]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"faerec-study: error: {folder.resolve() / 'sequences.txt'}:2: ")
    assert listing(tmp_path) == before
