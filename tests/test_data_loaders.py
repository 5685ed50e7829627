"""Dataset loaders: bundled data, the generic format, RecBole atomic files, and their errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from faerec.data import load_dataset
from faerec.errors import DataError


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def _items_jsonl(*records: dict[str, object]) -> str:
    return "".join(json.dumps(record) + "\n" for record in records)


@pytest.fixture
def generic_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "shop"
    _write(folder / "sequences.txt", "1 1 2 3\n2 3 1\n\n3 2\n")
    _write(
        folder / "items.jsonl",
        _items_jsonl(
            {"item_id": 1, "title": "Red lipstick", "tags": ["makeup", "red"], "sku_id": "A1"},
            {"item_id": 2, "title": "Nail file", "tags": []},
            {"item_id": 3, "title": "Soap", "price": 2.5},
        ),
    )
    return folder


# --------------------------------------------------------------------------- bundled


def test_bundled_beauty_loads_with_its_text_fields_and_embedding() -> None:
    data = load_dataset("beauty")
    assert (data.num_users, data.num_items, data.num_interactions) == (22363, 12101, 198502)
    assert data.sequences[0].tolist() == [1, 2, 3, 4, 5]
    assert data.item_fields[1]["title"] == "OPI Nail Lacquer, Simmer and Shimmer, 0.5-Fluid Ounce"
    assert data.item_fields[1]["attributes"] == ["OPI", "Makeup", "Nails", "Nail Polish"]
    assert data.text_template == "Title: {title}; Attributes: {attributes}"
    assert data.bundled_embedding is not None and data.bundled_embedding.is_file()
    assert data.bundled_embedding_template == data.text_template
    assert len(data.fingerprint) == 64


def test_bundled_yelp_loads_names_and_categories() -> None:
    data = load_dataset("yelp")
    assert (data.num_users, data.num_items, data.num_interactions) == (30431, 20033, 316354)
    assert data.item_fields[2]["name"] == "Sal's Pizza"
    assert data.text_template == "Name: {name}; Categories: {categories}"


def test_bundled_ml100k_keeps_raw_ids_and_orders_by_timestamp() -> None:
    data = load_dataset("ml-100k")
    assert (data.num_users, data.num_items, data.num_interactions) == (943, 1682, 100000)
    assert data.item_fields[1] == {
        "title": "Toy Story",
        "year": "1995",
        "genres": ["Animation", "Children's", "Comedy"],
    }
    assert data.text_template == "Title: {title} ({year}); Genres: {genres}"
    # the first user of the file is 196; rebuild its sequence by a stable sort on time
    assert data.source is not None
    lines = (data.source / "ml-100k.inter").read_text(encoding="utf-8").splitlines()
    rows = [line.split("\t") for line in lines[1:]]
    user_rows = [row for row in rows if row[0] == "196"]
    expected = [int(row[1]) for row in sorted(user_rows, key=lambda row: float(row[3]))]
    assert data.sequences[0].tolist() == expected


def test_fingerprint_is_stable_across_loads() -> None:
    assert load_dataset("beauty").fingerprint == load_dataset("beauty").fingerprint


def test_data_dir_can_be_overridden_by_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write(tmp_path / "beauty" / "Beauty.txt", "1 1 2\n")
    _write(tmp_path / "beauty" / "items.jsonl", _items_jsonl({"item_id": 1}, {"item_id": 2}))
    monkeypatch.setenv("FAEREC_DATA_DIR", str(tmp_path))
    data = load_dataset("beauty")
    assert data.num_items == 2 and data.bundled_embedding is None


# --------------------------------------------------------------------------- generic format


def test_generic_folder_loads_sequences_and_item_fields(generic_dir: Path) -> None:
    data = load_dataset(str(generic_dir))
    assert [s.tolist() for s in data.sequences] == [[1, 2, 3], [3, 1], [2]]
    assert data.num_items == 3
    assert data.item_fields[0] == {}
    assert data.item_fields[1] == {
        "title": "Red lipstick",
        "tags": ["makeup", "red"],
        "sku_id": "A1",
    }
    assert data.name == "shop"
    assert data.source == generic_dir


def test_generic_default_template_names_every_text_field(generic_dir: Path) -> None:
    data = load_dataset(str(generic_dir))
    assert data.text_template == "Title: {title}; Tags: {tags}; Price: {price}"


def test_dataset_json_sets_name_template_and_embedding(generic_dir: Path) -> None:
    np.save(generic_dir / "emb.npy", np.zeros((4, 8), dtype=np.float16))
    meta = {"name": "my-shop", "text_template": "{title}", "embedding": "emb.npy"}
    _write(generic_dir / "dataset.json", json.dumps(meta))
    data = load_dataset(str(generic_dir))
    assert (data.name, data.text_template) == ("my-shop", "{title}")
    assert data.bundled_embedding == (generic_dir / "emb.npy").resolve()
    assert data.bundled_embedding_template == "{title}"


def test_same_content_gives_the_same_fingerprint(generic_dir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    _write(copy / "sequences.txt", "10  1 2 3\n20 3 1\n30 2\n")
    _write(copy / "items.jsonl", (generic_dir / "items.jsonl").read_text())
    assert load_dataset(str(copy)).fingerprint == load_dataset(str(generic_dir)).fingerprint
    _write(copy / "sequences.txt", "10 1 2 3\n20 1 3\n30 2\n")
    assert load_dataset(str(copy)).fingerprint != load_dataset(str(generic_dir)).fingerprint


# --------------------------------------------------------------------------- RecBole


def test_recbole_files_group_by_user_and_sort_stably_by_time(tmp_path: Path) -> None:
    inter = _write(
        tmp_path / "rb" / "shop.inter",
        "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
        "u2\tb\t5\t30\n"
        "u1\tc\t4\t20\n"
        "u2\ta\t3\t10\n"
        "u1\ta\t3\t20\n"
        "u1\tb\t3\t5\n",
    )
    _write(
        tmp_path / "rb" / "shop.item",
        "item_id:token\ttitle:token_seq\tprice:float\n"
        "a\tRed lipstick\t2.5\n"
        "b\tNail file\t\n"
        "c\tSoap bar\t1\n",
    )
    data = load_dataset(str(inter))
    # u2: a(10) b(30); u1: b(5) c(20) a(20, tie keeps file order); ids by first appearance
    assert [s.tolist() for s in data.sequences] == [[1, 2], [2, 3, 1]]
    assert data.item_fields[1:] == [
        {"title": "Red lipstick", "price": 2.5},
        {"title": "Nail file", "price": None},
        {"title": "Soap bar", "price": 1.0},
    ]
    assert data.name == "shop"
    assert load_dataset(str(tmp_path / "rb")).fingerprint == data.fingerprint


def test_recbole_keeps_integer_ids_that_are_exactly_one_to_n(tmp_path: Path) -> None:
    inter = _write(
        tmp_path / "m.inter",
        "user_id:token\titem_id:token\n7\t3\n7\t1\n8\t2\n",
    )
    data = load_dataset(str(inter))
    assert [s.tolist() for s in data.sequences] == [[3, 1], [2]]
    assert data.item_fields == [{}, {}, {}, {}]


def test_recbole_remaps_integer_ids_with_gaps(tmp_path: Path) -> None:
    inter = _write(tmp_path / "m.inter", "user_id:token\titem_id:token\n7\t30\n7\t10\n8\t30\n")
    assert [s.tolist() for s in load_dataset(str(inter)).sequences] == [[1, 2], [1]]


# --------------------------------------------------------------------------- errors


def _error(spec: Path | str) -> str:
    with pytest.raises(DataError) as caught:
        load_dataset(str(spec))
    return str(caught.value)


@pytest.mark.parametrize(
    ("sequences", "line", "words"),
    [
        ("1 1 2\n2 1 x\n", 2, "'x'"),
        ("1 1 2\n2 1 2.5\n", 2, "'2.5'"),
        ("1 1 2\n2\n", 2, "empty sequence"),
        ("1 1 2\n2 0 1\n", 2, "1-based"),
        ("1 1 2\n1 2\n", 2, "appears twice"),
        ("1 1 2\n\n3 2 9\n", 3, "item 9 is not in items.jsonl"),
    ],
)
def test_bad_sequence_lines_name_file_and_line(
    generic_dir: Path, sequences: str, line: int, words: str
) -> None:
    path = _write(generic_dir / "sequences.txt", sequences)
    message = _error(generic_dir)
    assert message.startswith(f"{path}:{line}: ")
    assert words in message


@pytest.mark.parametrize(
    ("items", "line", "words"),
    [
        ('{"item_id": 1}\n{"item_id": 2, \n', 2, "invalid JSON"),
        ('{"item_id": 1}\n["item_id", 2]\n', 2, "JSON object"),
        ('{"item_id": 1}\n{"item_id": "2"}\n', 2, "positive integer 'item_id'"),
        ('{"item_id": 1}\n{"item_id": 1}\n', 2, "appears twice"),
        ('{"item_id": 1}\n{"item_id": 2, "title": {"a": 1}}\n', 2, "field 'title' of item 2"),
    ],
)
def test_bad_item_lines_name_file_and_line(
    generic_dir: Path, items: str, line: int, words: str
) -> None:
    path = _write(generic_dir / "items.jsonl", items)
    message = _error(generic_dir)
    assert message.startswith(f"{path}:{line}: ")
    assert words in message


def test_item_ids_with_a_gap_are_rejected_on_the_line_of_the_largest_id(
    generic_dir: Path,
) -> None:
    path = _write(generic_dir / "items.jsonl", _items_jsonl({"item_id": 1}, {"item_id": 3}))
    message = _error(generic_dir)
    assert message.startswith(f"{path}:2: ") and "item 2 is missing" in message


def test_missing_items_file_is_named(generic_dir: Path) -> None:
    (generic_dir / "items.jsonl").unlink()
    assert _error(generic_dir) == f"{generic_dir / 'items.jsonl'}: file not found"


def test_unknown_dataset_json_key_is_rejected(generic_dir: Path) -> None:
    path = _write(generic_dir / "dataset.json", '{"text_templat": "{title}"}')
    message = _error(generic_dir)
    assert message.startswith(f"{path}:1: ") and "unknown key 'text_templat'" in message


def test_unknown_dataset_name_lists_the_choices() -> None:
    message = _error("food")
    assert "unknown dataset 'food'" in message and "beauty, yelp, ml-100k" in message


def test_folder_without_data_files_is_rejected(tmp_path: Path) -> None:
    assert "no sequences.txt" in _error(tmp_path)


def test_raw_dump_points_to_the_prepare_command(tmp_path: Path) -> None:
    assert "faerec-study prepare" in _error(_write(tmp_path / "Beauty.json.gz", ""))


@pytest.mark.parametrize(
    ("inter", "line", "words"),
    [
        ("user_id:token\titem_id:token\nu1\n", 2, "expected 2 tab-separated columns"),
        ("user_id\titem_id:token\nu1\ta\n", 1, "bad RecBole header column 'user_id'"),
        ("uid:token\titem_id:token\nu1\ta\n", 1, "user_id:token and item_id:token"),
        ("user_id:token\titem_id:token\ttimestamp:float\nu1\ta\tnoon\n", 2, "timestamp"),
        ("user_id:token\titem_id:token\nu1\ta\nu1\tzz\n", 3, "item 'zz' is not in m.item"),
    ],
)
def test_bad_recbole_rows_name_file_and_line(
    tmp_path: Path, inter: str, line: int, words: str
) -> None:
    path = _write(tmp_path / "m.inter", inter)
    _write(tmp_path / "m.item", "item_id:token\ttitle:token_seq\na\tRed\n")
    message = _error(path)
    assert message.startswith(f"{path}:{line}: ")
    assert words in message
