"""Models: the plain backbones and FAERec behind one contract (see :mod:`faerec.models.base`).

:func:`build_model` is the one place that turns a :class:`~faerec.config.RunConfig` into a
:class:`~faerec.models.base.SequentialRecommender`.
"""

from __future__ import annotations

import os

import numpy as np

from faerec.config import RunConfig
from faerec.errors import ConfigError
from faerec.models.base import PlainRecommender, SequentialRecommender

#: oneDNN, which runs torch's CPU GELU, caches a JIT kernel with a scratchpad for every tensor
#: shape it meets (up to 1024 by default). Batch shapes vary, so the cache grew by ~7 MB per
#: shape: +210 MB in one Beauty evaluation. Without the cache the kernels are the same (the
#: same numbers) at no measurable cost (docs/benchmarks.md, memory). Read by oneDNN at its first
#: use, hence set on import of the models, before any of them runs; a value set outside wins.
os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "0")


def build_model(
    config: RunConfig,
    num_items: int,
    llm_table: np.ndarray | None = None,
    train_popularity: np.ndarray | None = None,
) -> SequentialRecommender:
    """The plain backbone, or FAERec around it when ``config.faerec.enabled``.

    ``llm_table`` is [num_items + 1, d_llm] (row = item id), as
    :func:`faerec.embeddings.load_item_embeddings` returns it; FAERec requires it.
    ``train_popularity`` (indexed by item id) feeds the popularity split of the feature loss.
    """
    from faerec.models.backbones import build_backbone

    backbone = build_backbone(config.model, num_items, config.data.max_seq_length)
    trim = config.train.trim_padding
    if not config.faerec.enabled:
        return PlainRecommender(backbone, trim_padding=trim)
    if llm_table is None:
        raise ConfigError(
            f"method {config.method!r} uses FAERec and needs LLM item embeddings "
            "(embedding.model); none were given"
        )
    from faerec.models.faerec import FAERecRecommender

    return FAERecRecommender(
        backbone,
        config.faerec,
        llm_table,
        train_popularity=train_popularity,
        trim_padding=trim,
    )


__all__ = ["build_model"]
