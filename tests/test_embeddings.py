"""Item texts, the packaged MiniLM encoder, the embedding cache and the .npy source."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from faerec.cli import main
from faerec.config import EmbeddingConfig
from faerec.data import InteractionData, load_dataset, write_generic_dataset
from faerec.embeddings import (
    EmbeddingCacheWarning,
    load_item_embeddings,
    prepare_item_embeddings,
    render_item_texts,
)
from faerec.errors import ConfigError, DataError

TINY_TEMPLATE = "Title: {title}; Tags: {tags}"


def _bundled_texts(data: InteractionData) -> list[str]:
    assert data.bundled_embedding is not None
    lines = (data.bundled_embedding.parent / "item_text.txt").read_text(encoding="utf-8")
    texts = [""]
    for line in lines.split("\n"):
        if line:
            item, _, text = line.partition("\t")
            assert int(item) == len(texts)
            texts.append(text)
    return texts


def _fields_data(item_fields: list[dict[str, object]]) -> InteractionData:
    return InteractionData(
        name="hand",
        sequences=[np.array([1, 2])],
        num_items=len(item_fields) - 1,
        item_fields=item_fields,
    )


# --- rendering ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["beauty", "ml-100k"])
def test_default_template_reproduces_the_bundled_item_text(name: str) -> None:
    data = load_dataset(name)
    assert render_item_texts(data, data.text_template) == _bundled_texts(data)


def test_yelp_template_reproduces_the_bundled_text_except_the_one_item_without_categories() -> None:
    # item 12182 has no categories: the template drops the empty segment, the shipped text
    # keeps "Categories: " (that row is re-encoded instead of taken from the bundled matrix)
    data = load_dataset("yelp")
    rendered, bundled = render_item_texts(data, data.text_template), _bundled_texts(data)
    differing = [i for i, (a, b) in enumerate(zip(rendered, bundled, strict=True)) if a != b]
    assert differing == [12182]
    assert rendered[12182] == "Name: Bank of America"


def test_segment_with_only_empty_placeholders_is_dropped() -> None:
    data = _fields_data(
        [{}, {"title": "", "attributes": ["a", "b"]}, {"title": "T", "attributes": []}]
    )
    texts = render_item_texts(data, "Title: {title}; Attributes: {attributes}")
    assert texts == ["", "Attributes: a, b", "Title: T"]


def test_segments_keep_literals_braces_and_partly_filled_placeholders() -> None:
    data = _fields_data([{}, {"title": "Toy Story", "year": "", "genres": ["Comedy"]}])
    template = "Movie; {title} ({year}); {{{genres}}}"
    assert render_item_texts(data, template) == ["", "Movie; Toy Story (); {Comedy}"]


def test_missing_field_of_one_item_renders_empty() -> None:
    data = _fields_data([{}, {"title": "A", "brand": "B"}, {"title": "C"}])
    assert render_item_texts(data, "{title}; by {brand}") == ["", "A; by B", "C"]


def test_unknown_field_is_a_config_error() -> None:
    data = _fields_data([{}, {"title": "A"}])
    with pytest.raises(ConfigError, match=r"unknown field \{titel\}.*item fields: title"):
        render_item_texts(data, "Title: {titel}")


def test_unmatched_brace_is_a_config_error() -> None:
    data = _fields_data([{}, {"title": "A"}])
    with pytest.raises(ConfigError, match="unmatched"):
        render_item_texts(data, "Title: {title")


def test_empty_template_without_dataset_default_is_a_config_error() -> None:
    data = _fields_data([{}, {"title": "A"}])
    with pytest.raises(ConfigError, match="embedding.template"):
        load_item_embeddings(data, EmbeddingConfig(template=""))


# --- the cache, with the real packaged MiniLM -----------------------------------------------


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("tiny")
    fields: list[dict[str, object]] = [{}]
    for item in range(1, 11):
        fields.append({"title": f"Item {item}", "tags": ["red", "blue"] if item % 2 else []})
    write_generic_dataset(
        folder,
        [[1, 2, 3, 4, 5], [6, 7, 8, 9, 10], [2, 4, 6, 8, 10]],
        fields,
        name="tiny",
        text_template=TINY_TEMPLATE,
    )
    return folder


@pytest.fixture(scope="module")
def tiny_cache(tmp_path_factory: pytest.TempPathFactory, tiny_dataset: Path) -> Path:
    """A cache folder in which the tiny dataset was embedded once (a cache miss)."""
    cache = tmp_path_factory.mktemp("cache")
    result = prepare_item_embeddings(
        load_dataset(str(tiny_dataset)), EmbeddingConfig(cache_dir=str(cache))
    )
    assert result.source == "computed"
    return cache


def test_cache_miss_encodes_every_item_and_writes_matrix_and_sidecar(tiny_cache: Path) -> None:
    (matrix_file,) = tiny_cache.glob("*.npy")
    (sidecar_file,) = tiny_cache.glob("*.json")
    matrix = np.load(matrix_file)
    sidecar = json.loads(sidecar_file.read_text())
    assert matrix.shape == (11, 384) and matrix.dtype == np.float32
    assert np.all(matrix[0] == 0.0)
    assert np.allclose(np.linalg.norm(matrix[1:], axis=1), 1.0, atol=1e-4)
    assert sidecar["rows_encoded"] == 10 and sidecar["template"] == TINY_TEMPLATE
    assert sidecar["shape"] == [11, 384]
    assert not list(tiny_cache.glob(".*"))  # no temp files left behind


def test_cache_hit_returns_the_stored_matrix(tiny_dataset: Path, tiny_cache: Path) -> None:
    (matrix_file,) = tiny_cache.glob("*.npy")
    result = prepare_item_embeddings(
        load_dataset(str(tiny_dataset)), EmbeddingConfig(cache_dir=str(tiny_cache))
    )
    assert result.source == "cache"
    assert result.cache_path == matrix_file
    assert np.array_equal(result.matrix, np.load(matrix_file))


@pytest.mark.parametrize(
    "damage", ["garbage bytes", "wrong shape", "empty file", "broken header", "npz archive"]
)
def test_corrupt_cache_file_is_reported_and_recomputed(
    tiny_dataset: Path, tiny_cache: Path, tmp_path: Path, damage: str
) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    (original,) = tiny_cache.glob("*.npy")
    damaged = cache / original.name
    if damage == "garbage bytes":
        damaged.write_bytes(b"not a numpy file")
    elif damage == "empty file":
        damaged.write_bytes(b"")
    elif damage == "broken header":  # numpy's header parser fails with tokenize errors
        damaged.write_bytes(original.read_bytes().replace(b"}", b"(", 1))
    elif damage == "npz archive":
        with open(damaged, "wb") as handle:
            np.savez(handle, matrix=np.load(original))
    else:
        np.save(damaged, np.zeros((4, 384), dtype=np.float32))
    with pytest.warns(EmbeddingCacheWarning, match="corrupt"):
        result = prepare_item_embeddings(
            load_dataset(str(tiny_dataset)), EmbeddingConfig(cache_dir=str(cache))
        )
    assert result.source == "computed"
    assert np.allclose(result.matrix, np.load(original), atol=1e-5)
    assert np.load(damaged).shape == (11, 384)


def test_another_template_is_another_cache_entry(tiny_dataset: Path, tmp_path: Path) -> None:
    data = load_dataset(str(tiny_dataset))
    first = prepare_item_embeddings(data, EmbeddingConfig(cache_dir=str(tmp_path)))
    second = prepare_item_embeddings(
        data, EmbeddingConfig(cache_dir=str(tmp_path), template="Product {title}")
    )
    assert first.cache_path != second.cache_path
    assert not np.allclose(first.matrix, second.matrix)


def test_encoder_reproduces_the_bundled_minilm_rows(tmp_path: Path) -> None:
    """Texts encoded here agree with the shipped float16 matrix (same model, normalised)."""
    bundled_data = load_dataset("ml-100k")
    texts = _bundled_texts(bundled_data)[1:9]
    folder = tmp_path / "ds"
    write_generic_dataset(
        folder,
        [[1, 2, 3, 4, 5, 6, 7, 8]],
        [{}] + [{"text": t} for t in texts],
        name="copy",
        text_template="{text}",
    )
    result = prepare_item_embeddings(
        load_dataset(str(folder)), EmbeddingConfig(cache_dir=str(tmp_path / "c"))
    )
    assert result.encoded_rows == 8
    assert bundled_data.bundled_embedding is not None
    bundled = np.load(bundled_data.bundled_embedding).astype(np.float32)[1:9]
    assert np.allclose(result.matrix[1:], bundled, atol=2e-3)


def test_bundled_matrix_seeds_the_cache_without_encoding(tmp_path: Path) -> None:
    data = load_dataset("ml-100k")
    result = prepare_item_embeddings(data, EmbeddingConfig(cache_dir=str(tmp_path)))
    assert (result.source, result.encoded_rows, result.seeded_rows) == ("computed", 0, 1682)
    assert data.bundled_embedding is not None
    assert np.array_equal(result.matrix, np.load(data.bundled_embedding).astype(np.float32))


def test_only_items_whose_text_changed_are_re_encoded(tiny_dataset: Path, tmp_path: Path) -> None:
    data = load_dataset(str(tiny_dataset))
    texts = render_item_texts(data, TINY_TEMPLATE)
    shipped = tmp_path / "emb"
    shipped.mkdir()
    fake_rows = np.arange(11 * 384, dtype=np.float16).reshape(11, 384) / 4096
    np.save(shipped / "matrix.npy", fake_rows)
    stale = {**dict(enumerate(texts)), 3: "an older text of item 3"}
    (shipped / "item_text.txt").write_text(
        "".join(f"{item}\t{stale[item]}\n" for item in range(1, 11)), encoding="utf-8"
    )
    with_shipped = replace(data, bundled_embedding=shipped / "matrix.npy")
    result = prepare_item_embeddings(with_shipped, EmbeddingConfig(cache_dir=str(tmp_path / "c")))
    assert (result.seeded_rows, result.encoded_rows) == (9, 1)
    kept = [1, 2, 4, 5, 6, 7, 8, 9, 10]
    assert np.array_equal(result.matrix[kept], fake_rows[kept].astype(np.float32))
    assert np.linalg.norm(result.matrix[3]) == pytest.approx(1.0, abs=1e-4)


def test_unusable_shipped_matrix_is_reported_and_every_item_encoded(
    tiny_dataset: Path, tmp_path: Path
) -> None:
    data = load_dataset(str(tiny_dataset))
    shipped = tmp_path / "emb"
    shipped.mkdir()
    (shipped / "matrix.npy").write_bytes(b"")  # a 0-byte file, e.g. an interrupted copy
    (shipped / "item_text.txt").write_text("1\tx\n", encoding="utf-8")
    with_shipped = replace(data, bundled_embedding=shipped / "matrix.npy")
    with pytest.warns(EmbeddingCacheWarning, match="empty file"):
        result = prepare_item_embeddings(
            with_shipped, EmbeddingConfig(cache_dir=str(tmp_path / "c"))
        )
    assert (result.seeded_rows, result.encoded_rows) == (0, 10)


# --- other sources --------------------------------------------------------------------------


def test_npy_matrix_with_one_row_per_item_is_used_as_is(tiny_dataset: Path, tmp_path: Path) -> None:
    matrix = np.random.default_rng(0).normal(size=(11, 7)).astype(np.float64)
    path = tmp_path / "emb.npy"
    np.save(path, matrix)
    loaded = load_item_embeddings(load_dataset(str(tiny_dataset)), EmbeddingConfig(model=str(path)))
    assert loaded.dtype == np.float32 and loaded.shape == (11, 7)
    assert np.all(loaded[0] == 0.0)
    assert np.allclose(loaded[1:], matrix[1:])


def test_npy_matrix_with_wrong_shape_is_refused(tiny_dataset: Path, tmp_path: Path) -> None:
    path = tmp_path / "emb.npy"
    np.save(path, np.zeros((10, 7), dtype=np.float32))  # forgot the padding row
    with pytest.raises(DataError, match=r"expected a matrix of shape \[11, d\].*got \[10, 7\]"):
        load_item_embeddings(load_dataset(str(tiny_dataset)), EmbeddingConfig(model=str(path)))


def test_missing_model_path_is_a_config_error(tiny_dataset: Path, tmp_path: Path) -> None:
    config = EmbeddingConfig(model=str(tmp_path / "no-model"), cache_dir=str(tmp_path))
    with pytest.raises(ConfigError, match="no such file or folder"):
        load_item_embeddings(load_dataset(str(tiny_dataset)), config)


def test_folder_that_is_not_a_sentence_transformers_model_is_a_config_error(
    tiny_dataset: Path, tmp_path: Path
) -> None:
    config = EmbeddingConfig(model=str(tmp_path), cache_dir=str(tmp_path / "c"))
    with pytest.raises(ConfigError, match="modules.json"):
        load_item_embeddings(load_dataset(str(tiny_dataset)), config)


# --- the command ----------------------------------------------------------------------------


def test_embed_command_prints_cache_path_and_shape(
    tiny_dataset: Path, tiny_cache: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["embed", "--dataset", str(tiny_dataset), "--cache-dir", str(tiny_cache)])
    out = capsys.readouterr().out
    (matrix_file,) = tiny_cache.glob("*.npy")
    assert code == 0
    assert str(matrix_file) in out
    assert "shape 11 x 384" in out and "found in cache" in out


def test_embed_command_reports_bad_template_as_one_line_error(
    tiny_dataset: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["embed", "--dataset", str(tiny_dataset), "--template", "{nope}"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and "unknown field {nope}" in err
