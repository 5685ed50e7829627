"""Curriculum weights that share the alignment budget between the item and feature losses.

``curriculum_weights(config, epoch)`` returns ``(w_item, w_feat)``, constant within an epoch,
with ``w_item + w_feat = 1`` for every schedule:

* ``cosine`` (official, docs/method.md §Curriculum): periodic; starts with pure item-level
  alignment, moves weight to the feature level until mid-period and back, every ``period`` epochs.
* ``linear`` (this project's own, not in the official code): a monotone ramp of ``w_item`` from
  ``w_max`` down to ``w_min`` over ``ramp_epochs`` epochs after the warm-up, then held at
  ``w_min``. It follows the abstract's "avoid premature optimisation of the feature-level
  objective" with no periodic return, so a study can compare schedule shapes
  (docs/method.md §Curriculum).
* ``constant`` (the no-curriculum ablation): ``(constant_item_weight, 1 - constant_item_weight)``.

In every schedule the warm-up epochs (``epoch < warmup``) give ``(1, 0)``; the constant
schedule ignores the warm-up, since it stands for "no curriculum". The ablation flags
``item_align`` / ``feature_align`` switch a *loss* off in the model; they do not change these
weights.
"""

from __future__ import annotations

import math

from faerec.config import CURRICULA, FAERecConfig
from faerec.errors import ConfigError


def cosine_item_weight(epoch: int, w_min: float, w_max: float, period: int, warmup: int) -> float:
    """``(w_max - w_min) * (1 + cos(2 pi (e - W) / P)) / 2 + w_min`` after warm-up
    (docs/method.md §Curriculum)."""
    if epoch < warmup:
        return 1.0
    phase = (1.0 + math.cos(2.0 * math.pi * (epoch - warmup) / period)) / 2.0
    return (w_max - w_min) * phase + w_min


def linear_item_weight(
    epoch: int, w_min: float, w_max: float, ramp_epochs: int, warmup: int
) -> float:
    """Monotone ramp (ours): ``w_max`` at the first epoch after warm-up, ``w_min`` from
    ``warmup + ramp_epochs`` on, linear in between."""
    if epoch < warmup:
        return 1.0
    progress = min(1.0, (epoch - warmup) / ramp_epochs)
    return w_max - (w_max - w_min) * progress


def curriculum_weights(config: FAERecConfig, epoch: int) -> tuple[float, float]:
    """``(w_item, w_feat)`` for the 0-based ``epoch`` under ``config.curriculum``."""
    if epoch < 0:
        raise ValueError(f"curriculum_weights: epoch must be >= 0, got {epoch}")
    if config.curriculum == "cosine":
        w_item = cosine_item_weight(epoch, config.w_min, config.w_max, config.period, config.warmup)
    elif config.curriculum == "linear":
        w_item = linear_item_weight(
            epoch, config.w_min, config.w_max, config.ramp_epochs, config.warmup
        )
    elif config.curriculum == "constant":
        w_item = config.constant_item_weight
    else:
        raise ConfigError(
            f"faerec.curriculum: expected one of {', '.join(CURRICULA)}, got {config.curriculum!r}"
        )
    return w_item, 1.0 - w_item


__all__ = ["cosine_item_weight", "curriculum_weights", "linear_item_weight"]
