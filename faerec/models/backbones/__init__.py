"""The backbone encoders and the registry that builds one from a :class:`ModelConfig`.

Every backbone implements :class:`faerec.models.base.Backbone`: SASRec, FMLP-Rec and LRURec as
in the official FAERec code (docs/method.md §Backbones), GRU4Rec as this project's addition.
"""

from __future__ import annotations

from faerec.config import ModelConfig
from faerec.errors import ConfigError
from faerec.models.backbones.fmlprec import FMLPRec
from faerec.models.backbones.gru4rec import GRU4Rec
from faerec.models.backbones.lrurec import LRURec
from faerec.models.backbones.sasrec import SASRec
from faerec.models.base import Backbone

#: ``model.backbone`` value -> class.
BACKBONE_CLASSES: dict[str, type[Backbone]] = {
    "sasrec": SASRec,
    "fmlprec": FMLPRec,
    "lrurec": LRURec,
    "gru4rec": GRU4Rec,
}


def build_backbone(config: ModelConfig, num_items: int, max_len: int) -> Backbone:
    """A freshly initialised backbone for ``num_items`` items and sequences of ``max_len``.

    Initialisation draws from torch's global RNG, so seed it first for a reproducible model.
    """
    backbone_class = BACKBONE_CLASSES.get(config.backbone)
    if backbone_class is None:
        choices = ", ".join(BACKBONE_CLASSES)
        raise ConfigError(
            f"model.backbone: unknown backbone {config.backbone!r} (choose from {choices})"
        )
    if config.hidden_size < 1 or config.num_layers < 1:
        raise ConfigError(
            f"model.hidden_size and model.num_layers must be >= 1, "
            f"got {config.hidden_size} and {config.num_layers}"
        )
    if backbone_class is SASRec and (config.num_heads < 1 or config.hidden_size % config.num_heads):
        raise ConfigError(
            f"model.num_heads: {config.num_heads} must be >= 1 and divide "
            f"model.hidden_size {config.hidden_size}"
        )
    if num_items < 1 or max_len < 1:
        raise ConfigError(
            f"a backbone needs num_items >= 1 and max_len >= 1, got {num_items}, {max_len}"
        )
    return backbone_class(num_items, config, max_len)


__all__ = ["BACKBONE_CLASSES", "FMLPRec", "GRU4Rec", "LRURec", "SASRec", "build_backbone"]
