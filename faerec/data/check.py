"""Check every dataset (and embedding file) a set of runs will use, before any of them starts.

A study runs its trials in Ray workers; data that fail there fail once per trial, after the
study folder was written. ``faerec-study validate`` and ``run``/``resume`` call
:func:`check_datasets` first, so bad data stop the command with the loader's one-line
``FILE:LINE`` message and nothing written. It imports neither torch nor Ray, and caches nothing
on disk: each dataset is loaded once per call (bundled Beauty takes well under a second).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from faerec.config import RunConfig
from faerec.data.loaders import DATASET_FILE, load_dataset, read_dataset_json
from faerec.data.parsing import json_key_line, read_item_matrix, read_lines
from faerec.data.types import InteractionData
from faerec.errors import ConfigError, DataError


def check_datasets(configs: Iterable[RunConfig]) -> dict[str, InteractionData]:
    """Load each distinct ``data.dataset`` once and check what FAERec runs would read from it.

    For a run with FAERec on: a ``.npy`` ``embedding.model`` must be a finite float matrix with
    one row per item id, and a text template (``embedding.template`` or the dataset's) must
    name fields the items have. A ``dataset.json`` ``embedding`` file is checked by the loader
    itself. The first problem raises (DataError or ConfigError, both exit code 2); returns the
    loaded datasets by ``data.dataset`` so a caller can report on them.
    """
    from faerec.embeddings import render_item_texts  # here: faerec.embeddings imports faerec.data

    loaded: dict[str, InteractionData] = {}
    checked: set[tuple[str, str]] = set()
    for config in configs:
        name = config.data.dataset
        if name not in loaded:
            loaded[name] = load_dataset(name)
        data = loaded[name]
        if not config.faerec.enabled:
            continue
        model = config.embedding.model
        if model.lower().endswith(".npy"):
            if (name, model) not in checked:
                read_item_matrix(
                    Path(model).expanduser(), data.num_items, named_by="embedding.model"
                )
                checked.add((name, model))
            continue
        template = config.embedding.template or data.text_template
        if (name, "template:" + template) not in checked:
            try:
                render_item_texts(data, template)
            except ConfigError as error:
                if config.embedding.template:
                    raise
                _blame_dataset_json(data, error)
            checked.add((name, "template:" + template))
    return loaded


def _blame_dataset_json(data: InteractionData, error: ConfigError) -> None:
    """Re-raise a bad default template as the ``text_template`` line of dataset.json when it
    came from there (a template derived from the item fields has no line to point at)."""
    meta_path = data.source / DATASET_FILE if data.source is not None else None
    if meta_path is None or not meta_path.is_file():
        raise error
    if read_dataset_json(meta_path).get("text_template") != data.text_template:
        raise error
    text = "\n".join(read_lines(meta_path))
    message = str(error).removeprefix("embedding.template")
    raise DataError(
        "'text_template'" + message, path=meta_path, line=json_key_line(text, "text_template")
    ) from None
