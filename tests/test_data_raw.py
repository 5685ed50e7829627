"""Raw Amazon-2014 / Yelp dumps -> generic format, as the official preprocessing does it."""

from __future__ import annotations

import gzip
import json
from collections.abc import Sequence
from pathlib import Path

import pytest

from faerec.cli import main
from faerec.data import load_dataset, preprocess_amazon, preprocess_yelp
from faerec.errors import ConfigError, DataError

# Counts after the rating filter: users A:2 B:2 C:2 D:1 E:1, items X:3 Y:3 Z:1 W:1 (line 8 has
# rating 0 and is dropped before counting). With cores 2/2 the single pass keeps lines 1-4 and 6;
# C keeps only X (length 1 < user_core: the official filter is not an iterated k-core).
AMAZON_REVIEWS: list[dict[str, object]] = [
    {"reviewerID": "A", "asin": "X", "unixReviewTime": 30, "overall": 5.0},
    {"reviewerID": "B", "asin": "Y", "unixReviewTime": 10, "overall": 4.0},
    {"reviewerID": "A", "asin": "Y", "unixReviewTime": 20, "overall": 3.0},
    {"reviewerID": "B", "asin": "X", "unixReviewTime": 10, "overall": 2.0},
    {"reviewerID": "C", "asin": "Z", "unixReviewTime": 5, "overall": 1.0},
    {"reviewerID": "C", "asin": "X", "unixReviewTime": 7, "overall": 5.0},
    {"reviewerID": "D", "asin": "Y", "unixReviewTime": 1, "overall": 5.0},
    {"reviewerID": "A", "asin": "W", "unixReviewTime": 40, "overall": 0.0},
    {"reviewerID": "E", "asin": "W", "unixReviewTime": 3, "overall": 4.0},
]
# 2014 metadata: Python literals (single quotes), not JSON.
AMAZON_META = [
    "{'asin': 'X', 'title': 'Lipstick \"Red\"', 'brand': 'Acme', 'price': 12.5, "
    "'categories': [['Beauty', 'Makeup'], ['Gifts']], 'description': \"It's red\", "
    "'salesRank': {'Beauty': 3}}",
    "{'asin': 'Z', 'title': 'Never kept'}",
]
# u1, u2 kept; line 3 is after '2019-12-31 00:00:00' (official bound), 6 and 7 outside the range.
YELP_REVIEWS: list[dict[str, object]] = [
    {"user_id": "u1", "business_id": "b1", "stars": 5, "date": "2019-05-01 10:00:00"},
    {"user_id": "u1", "business_id": "b2", "stars": 4, "date": "2019-03-01 09:00:00"},
    {"user_id": "u2", "business_id": "b1", "stars": 3, "date": "2019-12-31 10:00:00"},
    {"user_id": "u2", "business_id": "b2", "stars": 3, "date": "2019-06-01 00:00:00"},
    {"user_id": "u2", "business_id": "b1", "stars": 2, "date": "2019-02-01 00:00:00"},
    {"user_id": "u3", "business_id": "b2", "stars": 5, "date": "1999-12-31 23:59:59"},
    {"user_id": "u3", "business_id": "b1", "stars": 5, "date": "2020-01-02 00:00:00"},
]
YELP_BUSINESS: list[dict[str, object]] = [
    {"business_id": "b1", "name": "Cafe", "categories": "Coffee & Tea, Cafes"},
    {"business_id": "b2", "name": "Bank", "categories": None},
    {"business_id": "b3", "name": "Other", "categories": "Shopping"},
]


def _write_lines(path: Path, lines: list[str]) -> Path:
    text = "".join(line + "\n" for line in lines)
    if path.name.endswith(".gz"):
        with gzip.open(path, "wt", encoding="utf-8") as stream:
            stream.write(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def _json_lines(records: Sequence[object]) -> list[str]:
    return [json.dumps(record) for record in records]


def _read_jsonl(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture
def amazon_files(tmp_path: Path) -> tuple[Path, Path]:
    reviews = _write_lines(tmp_path / "Beauty.json.gz", _json_lines(AMAZON_REVIEWS))
    meta = _write_lines(tmp_path / "meta_Beauty.json.gz", AMAZON_META)
    return reviews, meta


@pytest.fixture
def yelp_files(tmp_path: Path) -> tuple[Path, Path]:
    reviews = _write_lines(tmp_path / "review.json", _json_lines(YELP_REVIEWS))
    business = _write_lines(tmp_path / "business.json", _json_lines(YELP_BUSINESS))
    return reviews, business


def test_amazon_sequences_follow_the_official_single_pass_filter(
    amazon_files: tuple[Path, Path], tmp_path: Path
) -> None:
    out = tmp_path / "beauty-raw"
    preprocess_amazon(*amazon_files, out, user_core=2, item_core=2)
    # users A, B, C by first appearance; A: Y(20) X(30); B: Y, X tie at 10 keeps file order
    assert (out / "sequences.txt").read_text() == "1 1 2\n2 1 2\n3 2\n"


def test_amazon_items_carry_the_metadata_text_fields(
    amazon_files: tuple[Path, Path], tmp_path: Path
) -> None:
    out = tmp_path / "beauty-raw"
    preprocess_amazon(*amazon_files, out, user_core=2, item_core=2)
    assert _read_jsonl(out / "items.jsonl") == [
        {
            "item_id": 1,
            "asin": "Y",
            "title": "",
            "brand": "",
            "price": "",
            "categories": [],
            "description": "",
        },
        {
            "item_id": 2,
            "asin": "X",
            "title": 'Lipstick "Red"',
            "brand": "Acme",
            "price": "12.5",
            "categories": ["Beauty", "Makeup"],
            "description": "It's red",
        },
    ]


def test_amazon_output_loads_as_a_generic_dataset(
    amazon_files: tuple[Path, Path], tmp_path: Path
) -> None:
    out = tmp_path / "beauty-raw"
    returned = preprocess_amazon(*amazon_files, out, user_core=2, item_core=2)
    meta = json.loads((out / "dataset.json").read_text())
    assert meta["name"] == "beauty-raw"
    assert meta["text_template"] == (
        "Title: {title}; Brand: {brand}; Price: {price}; Categories: {categories}; "
        "Description: {description}"
    )
    assert meta["provenance"]["user_core"] == 2
    loaded = load_dataset(str(out))
    assert loaded.fingerprint == returned.fingerprint
    assert (loaded.num_users, loaded.num_items, loaded.text_template) == (
        3,
        2,
        meta["text_template"],
    )


def test_amazon_reviews_may_be_python_literals_in_a_plain_file(tmp_path: Path) -> None:
    reviews = _write_lines(tmp_path / "r.json", [repr(record) for record in AMAZON_REVIEWS])
    meta = _write_lines(tmp_path / "m.json", AMAZON_META)
    data = preprocess_amazon(reviews, meta, tmp_path / "out", user_core=2, item_core=2)
    assert [s.tolist() for s in data.sequences] == [[1, 2], [1, 2], [2]]


def test_metadata_is_never_evaluated_as_code(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    reviews = _write_lines(tmp_path / "r.json", _json_lines(AMAZON_REVIEWS))
    meta = _write_lines(
        tmp_path / "m.json", [f"{{'asin': 'X', 'title': __import__('pathlib').Path('{marker}')}}"]
    )
    with pytest.raises(DataError) as caught:
        preprocess_amazon(reviews, meta, tmp_path / "out", user_core=2, item_core=2)
    assert str(caught.value).startswith(f"{meta}:1: ")
    assert not marker.exists()


@pytest.mark.parametrize(
    ("line", "words"),
    [
        ('{"reviewerID": "A", "asin": "X", "unixReviewTime": 30', "one JSON object"),
        ('{"reviewerID": "A", "unixReviewTime": 30, "overall": 5.0}', "missing key 'asin'"),
        ('{"reviewerID": "A", "asin": "X", "unixReviewTime": "soon"}', "'unixReviewTime'"),
        ('["A", "X", 30]', "JSON object"),
    ],
)
def test_malformed_review_lines_name_file_and_line(tmp_path: Path, line: str, words: str) -> None:
    reviews = _write_lines(tmp_path / "r.json.gz", _json_lines(AMAZON_REVIEWS[:2]) + [line])
    meta = _write_lines(tmp_path / "m.json", AMAZON_META)
    with pytest.raises(DataError) as caught:
        preprocess_amazon(reviews, meta, tmp_path / "out")
    assert str(caught.value).startswith(f"{reviews}:3: ")
    assert words in str(caught.value)


def test_nothing_left_after_the_filter_is_a_data_error(
    amazon_files: tuple[Path, Path], tmp_path: Path
) -> None:
    with pytest.raises(DataError, match="no interaction is left"):
        preprocess_amazon(*amazon_files, tmp_path / "out", user_core=50, item_core=50)


def test_yelp_keeps_the_official_date_window_and_order(
    yelp_files: tuple[Path, Path], tmp_path: Path
) -> None:
    out = tmp_path / "yelp-raw"
    data = preprocess_yelp(*yelp_files, out, user_core=2, item_core=2)
    # u1: b2 (03-01), b1 (05-01) -> b2=1, b1=2; u2: b1 (02-01), b2 (06-01)
    assert (out / "sequences.txt").read_text() == "1 1 2\n2 2 1\n"
    assert _read_jsonl(out / "items.jsonl") == [
        {"item_id": 1, "business_id": "b2", "name": "Bank", "categories": []},
        {
            "item_id": 2,
            "business_id": "b1",
            "name": "Cafe",
            "categories": ["Coffee & Tea", "Cafes"],
        },
    ]
    assert data.text_template == "Name: {name}; Categories: {categories}"


def test_yelp_date_window_is_configurable(yelp_files: tuple[Path, Path], tmp_path: Path) -> None:
    data = preprocess_yelp(
        *yelp_files, tmp_path / "out", user_core=1, item_core=1, date_to="2020-12-31"
    )
    assert data.num_interactions == 6  # only the 1999 review is out


def test_yelp_bad_date_names_file_and_line(tmp_path: Path) -> None:
    review = {"user_id": "u1", "business_id": "b1", "stars": 5, "date": "05/01/2019"}
    reviews = _write_lines(tmp_path / "r.json", _json_lines([*YELP_REVIEWS[:1], review]))
    business = _write_lines(tmp_path / "b.json", _json_lines(YELP_BUSINESS))
    with pytest.raises(DataError) as caught:
        preprocess_yelp(reviews, business, tmp_path / "out", user_core=1, item_core=1)
    assert str(caught.value).startswith(f"{reviews}:2: ")


def test_bad_core_is_a_config_error(yelp_files: tuple[Path, Path], tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="user_core"):
        preprocess_yelp(*yelp_files, tmp_path / "out", user_core=0)


def test_missing_dump_is_named(tmp_path: Path) -> None:
    with pytest.raises(DataError) as caught:
        preprocess_amazon(tmp_path / "nope.json.gz", tmp_path / "m.json", tmp_path / "out")
    assert str(caught.value) == f"{tmp_path / 'nope.json.gz'}: file not found"


def test_prepare_command_writes_the_dataset(
    amazon_files: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    reviews, meta = amazon_files
    out = tmp_path / "food"
    argv = ["prepare", "amazon", "--reviews", str(reviews), "--meta", str(meta), "--out", str(out)]
    assert main([*argv, "--user-core", "2", "--item-core", "2"]) == 0
    assert "3 users, 2 items, 5 interactions" in capsys.readouterr().out
    assert load_dataset(str(out)).num_users == 3


def test_prepare_command_reports_bad_input_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    reviews = _write_lines(tmp_path / "review.json", ["not json"])
    business = _write_lines(tmp_path / "business.json", _json_lines(YELP_BUSINESS))
    argv = ["prepare", "yelp", "--reviews", str(reviews), "--business", str(business)]
    assert main([*argv, "--out", str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err
    assert error.startswith(f"faerec-study: error: {reviews}:1: ")
    assert error.count("\n") == 1


def test_amazon_2018_metadata_is_read_too(tmp_path: Path) -> None:
    reviews = _write_lines(tmp_path / "r.json", _json_lines(AMAZON_REVIEWS))
    record = {"asin": "X", "title": "T", "category": ["Beauty", "Skin"], "description": ["a", "b"]}
    meta = _write_lines(tmp_path / "m.json", _json_lines([record]))
    data = preprocess_amazon(reviews, meta, tmp_path / "out", user_core=2, item_core=2)
    assert data.item_fields[2]["categories"] == ["Beauty", "Skin"]
    assert data.item_fields[2]["description"] == "a b"
