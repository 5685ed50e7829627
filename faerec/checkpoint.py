"""Checkpoint I/O of one training run: the resumable ``checkpoint.pt`` and ``best_model.pt``.

:func:`faerec.training.run_trial` writes ``checkpoint.pt`` after every epoch and ``best_model.pt``
at the end, in its ``checkpoint_dir``. Both are plain dictionaries of tensors, numbers and strings,
so they load with ``torch.load(..., weights_only=True)`` (no pickled code runs), and both are
written through :mod:`faerec.atomic`, so a killed run leaves the old file or the new one.

A checkpoint holds the whole training state (:class:`TrainingState`: best weights, early-stopping
counters, history) besides model, optimiser and every RNG, so that a resumed run produces the
same numbers as an uninterrupted one. It is refused when it was written for another
configuration, except for the keys in :data:`RESUME_IGNORED_KEYS` and a *raised*
``train.max_epochs``: the cap only decides when a run stops, so a run resumed under a higher cap
(one that stopped at its old cap included) trains on exactly as if it had had that cap from the
start. That holds once it has validated at least once (a run that never validated is made to
validate at its last epoch), so such a checkpoint refuses a new cap.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from faerec.atomic import atomic_path
from faerec.config import RunConfig, flatten
from faerec.errors import ConfigError, TrainingError
from faerec.results import EpochReport, GroupMetrics

__all__ = [
    "BEST_MODEL_FILE",
    "CHECKPOINT_FILE",
    "CHECKPOINT_FORMAT",
    "RESUME_IGNORED_KEYS",
    "TrainingState",
    "config_differences",
    "cpu_state_dict",
    "load_checkpoint",
    "save_best_model",
    "save_checkpoint",
]

CHECKPOINT_FILE = "checkpoint.pt"
BEST_MODEL_FILE = "best_model.pt"
#: bump when the checkpoint layout changes; older files are refused with a clear message
CHECKPOINT_FORMAT = 1
#: keys that may differ between a checkpoint and the resuming run: where and how fast it runs,
#: not what it computes
RESUME_IGNORED_KEYS = frozenset({"train.device", "train.num_threads", "train.compile"})


def cpu_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A copy of the weights on the CPU: later training steps must not change it."""
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


@dataclass
class TrainingState:
    """Everything that must survive a restart, besides model and optimiser weights."""

    next_epoch: int = 0
    best_value: float | None = None
    best_epoch: int | None = None
    best_state: dict[str, torch.Tensor] | None = None
    best_valid: list[GroupMetrics] = field(default_factory=list)
    bad_validations: int = 0
    history: list[EpochReport] = field(default_factory=list)
    #: "early_stopping" | "max_epochs" once training is over; None while it can go on
    finished: str | None = None
    seconds: float = 0.0

    def record_validation(
        self, epoch: int, value: float, groups: list[GroupMetrics], model: torch.nn.Module
    ) -> bool:
        """Keep the weights if ``value`` beats the best so far (strictly, like the official
        EarlyStopping); return whether it did."""
        if self.best_value is None or value > self.best_value:
            self.best_value = value
            self.best_epoch = epoch
            self.best_state = cpu_state_dict(model)
            self.best_valid = groups
            self.bad_validations = 0
            return True
        self.bad_validations += 1
        return False


def config_differences(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """``key: old in the checkpoint, new now`` for every key that matters to the numbers."""
    old, new = flatten(saved), flatten(current)
    keys = sorted((set(old) | set(new)) - RESUME_IGNORED_KEYS)
    return [
        f"{k}: {old.get(k)!r} in the checkpoint, {new.get(k)!r} now"
        for k in keys
        if old.get(k) != new.get(k)
    ]


def _atomic_torch_save(payload: dict[str, Any], path: Path) -> None:
    with atomic_path(path) as temp:
        torch.save(payload, temp)


def save_checkpoint(
    path: Path,
    config: RunConfig,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    state: TrainingState,
    rng: np.random.Generator,
    epoch: int,
) -> None:
    """Write the resumable state after ``epoch`` to ``path``, atomically."""
    payload: dict[str, Any] = {
        "format": CHECKPOINT_FORMAT,
        "config": config.to_dict(),
        "epoch": epoch,
        "model": cpu_state_dict(model),
        "optimizer": optimizer.state_dict(),
        "next_epoch": state.next_epoch,
        "best_value": state.best_value,
        "best_epoch": state.best_epoch,
        "best_state": state.best_state,
        "best_valid": [asdict(g) for g in state.best_valid],
        "bad_validations": state.bad_validations,
        "history": [asdict(report) for report in state.history],
        "finished": state.finished,
        "seconds": state.seconds,
        # the numpy generator state holds 128-bit integers: keep it as JSON text
        "rng_numpy": json.dumps(rng.bit_generator.state),
        "rng_torch": torch.get_rng_state(),
        "rng_cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    _atomic_torch_save(payload, path)


def load_checkpoint(
    path: Path,
    config: RunConfig,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    rng: np.random.Generator,
) -> TrainingState:
    """Restore model, optimiser and RNGs from ``path`` in place; return the training state.

    A file that cannot be read raises :class:`TrainingError`; one written for a different
    configuration raises :class:`ConfigError` naming the first differences.
    """
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # a truncated or foreign file: say which one
        raise TrainingError(
            f"{path}: cannot read the checkpoint ({error}); delete it to start over"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise TrainingError(f"{path}: not a faerec-study checkpoint (format {CHECKPOINT_FORMAT})")
    saved_config = payload["config"]
    raised_cap = _raised_cap(saved_config, config, payload)
    if raised_cap:  # compare everything else
        saved_config = {**saved_config, "train": {**saved_config["train"]}}
        saved_config["train"]["max_epochs"] = config.train.max_epochs
    differences = config_differences(saved_config, config.to_dict())
    if differences:
        raise ConfigError(
            f"{path} was written for a different configuration ({'; '.join(differences[:3])}"
            f"{'; ...' if len(differences) > 3 else ''}): use the same settings or a new directory"
        )
    stopped_at_cap = payload["finished"] == "max_epochs"  # trains on under a raised cap
    model.load_state_dict(payload["model"])
    optimizer.load_state_dict(payload["optimizer"])
    rng.bit_generator.state = json.loads(payload["rng_numpy"])
    torch.set_rng_state(payload["rng_torch"])
    if payload["rng_cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(payload["rng_cuda"])
    return TrainingState(
        next_epoch=int(payload["next_epoch"]),
        best_value=payload["best_value"],
        best_epoch=payload["best_epoch"],
        best_state=payload["best_state"],
        best_valid=[GroupMetrics(**g) for g in payload["best_valid"]],
        bad_validations=int(payload["bad_validations"]),
        history=[EpochReport(**report) for report in payload["history"]],
        finished=None if raised_cap and stopped_at_cap else payload["finished"],
        seconds=float(payload["seconds"]),
    )


def _raised_cap(saved: dict[str, Any], config: RunConfig, payload: dict[str, Any]) -> bool:
    """Whether ``config`` only raises the checkpoint's ``train.max_epochs`` (see the module)."""
    old_cap = saved.get("train", {}).get("max_epochs")
    return (
        isinstance(old_cap, int)
        and config.train.max_epochs > old_cap
        and payload.get("best_value") is not None
    )


def save_best_model(folder: Path, config: RunConfig, state: TrainingState) -> None:
    """``folder/best_model.pt``: the selected weights with what selected them."""
    _atomic_torch_save(
        {
            "model": state.best_state,
            "config": config.to_json(),
            "best_epoch": state.best_epoch,
            "best_value": state.best_value,
            "select_metric": config.train.select_metric,
        },
        folder / BEST_MODEL_FILE,
    )
