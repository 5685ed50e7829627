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
from faerec.data.loaders import load_dataset
from faerec.data.parsing import read_item_matrix
from faerec.data.types import InteractionData


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
            render_item_texts(data, template)
            checked.add((name, "template:" + template))
    return loaded
