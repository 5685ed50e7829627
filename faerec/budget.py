"""Can a run select an epoch? One check for ``train`` (a warning) and ``validate`` (an error).

Early stopping picks the best *validated* epoch. ``train.eval_start_epoch`` is a 0-based epoch
index (the official presets start late: FAERec on Beauty validates from index 61, the 62nd
epoch), so a short budget such as ``train.max_epochs=50`` ends before the first validation. The
trainer then validates only its last epoch to have a model at all: nothing is selected, and
early stopping never acts. A search is worse off still: ASHA judges a trial on its validation
score, so a grace period that ends before the first validation judges nothing.

Epoch numbers in these messages are 1-based counts ("the 62nd epoch"), like the progress bars;
see docs/store-layout.md for how epochs are counted in stored files.
"""

from __future__ import annotations

from faerec.config import RunConfig


def first_validated_epoch(config: RunConfig) -> int:
    """The 1-based number of the first epoch that validates (``eval_start_epoch`` + 1)."""
    return config.train.eval_start_epoch + 1


def selection_problem(config: RunConfig) -> str | None:
    """Why this run could not select an epoch on validation, or None when it can."""
    start, epochs = config.train.eval_start_epoch, config.train.max_epochs
    if start < epochs:
        return None
    return (
        f"train.max_epochs {epochs} ends before the first validation (train.eval_start_epoch "
        f"{start} is 0-based: epoch {start + 1}), so no epoch is selected and early stopping "
        f"never acts; expected train.eval_start_epoch < train.max_epochs, e.g. "
        f"train.eval_start_epoch=0"
    )


def grace_problem(config: RunConfig, grace_epochs: int) -> str | None:
    """Why a scheduler's grace period (in epochs, 1-based) cannot judge this run, or None."""
    first = first_validated_epoch(config)
    epochs = config.train.max_epochs
    if grace_epochs < first:
        return (
            f"{grace_epochs} ends before the first validated epoch {first} "
            f"(train.eval_start_epoch {config.train.eval_start_epoch}, 0-based), so trials "
            f"would be judged before any validation; expected >= {first}, or a lower "
            "train.eval_start_epoch in fixed"
        )
    if grace_epochs > epochs:
        return (
            f"{grace_epochs} is longer than train.max_epochs {epochs}, so no trial is ever "
            f"stopped early; expected <= {epochs}"
        )
    return None


__all__ = ["first_validated_epoch", "grace_problem", "selection_problem"]
