"""One training run: data, model, epochs, validation, early stopping, checkpoints, test.

:func:`run_trial` is the single entry point that ``faerec-study train``, a Ray Tune trial and a
plain Optuna objective all call (docs/method.md §Training objective). It knows nothing of Ray
or Optuna: they observe and steer a run through the ``on_epoch`` hook and resume it through
``checkpoint_dir``.

Resuming is a first-class path, not an afterthought: after every epoch the whole training
state (model, optimiser, best weights, early-stopping counters, history and every RNG) is
written atomically to ``checkpoint_dir/checkpoint.pt``. A run that is killed and started again
with the same configuration continues exactly where it stopped and produces the same numbers
as an uninterrupted run.

On a GPU the loop avoids waiting for the device: batches go through pinned memory with
non-blocking copies, and the loss and its parts are summed on the device and read back only
every ``NAN_CHECK_EVERY`` batches and at the end of the epoch (docs/benchmarks.md, GPU).
"""

from __future__ import annotations

import ctypes
import json
import platform
import random
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from faerec.atomic import atomic_path
from faerec.config import RunConfig, validate
from faerec.data.ragged import flatten_rows, row_membership
from faerec.data.types import InteractionData, SplitPart
from faerec.errors import ConfigError, TrainingError
from faerec.evaluation import EvaluationOutput, evaluate
from faerec.models.base import SequentialRecommender, TrainBatch
from faerec.results import EpochReport, GroupMetrics, RunResult
from faerec.run_progress import RunProgress

__all__ = [
    "BEST_MODEL_FILE",
    "CHECKPOINT_FILE",
    "NAN_CHECK_EVERY",
    "NegativeSampler",
    "autocast_context",
    "batch_to_device",
    "compile_backbone",
    "evaluation_history",
    "matmul_precision",
    "resolve_device",
    "run_trial",
    "train_one_epoch",
]

CHECKPOINT_FILE = "checkpoint.pt"
BEST_MODEL_FILE = "best_model.pt"
#: bump when the checkpoint layout changes; older files are refused with a clear message
CHECKPOINT_FORMAT = 1
#: keys that may differ between a checkpoint and the resuming run: where and how fast it runs,
#: not what it computes
RESUME_IGNORED_KEYS = frozenset({"train.device", "train.num_threads", "train.compile"})
#: batches between two reads of the device-side loss sums: each read is one host sync, and a
#: NaN loss is noticed at the next read (so at most this many batches are computed in vain)
NAN_CHECK_EVERY = 32
#: resampling rounds before the exact (slower) fallback for users who own most items
_REJECTION_ROUNDS = 64

EpochHook = Callable[[EpochReport], bool | None]


# --- small pieces ------------------------------------------------------------------------------


def resolve_device(name: str) -> torch.device:
    """``auto`` -> cuda when available, else cpu; anything else must be a usable torch device."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise ConfigError(
            f"train.device: expected auto, cpu, cuda or cuda:N, got {name!r}"
        ) from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"train.device: {name!r} requested but no CUDA device is available")
    if device.type not in ("cpu", "cuda"):
        raise ConfigError(f"train.device: expected auto, cpu, cuda or cuda:N, got {name!r}")
    return device


def evaluation_history(data: InteractionData, part: SplitPart, held_out: int) -> list[np.ndarray]:
    """Per row: the user's *full* sequence minus its last ``held_out`` items (the items masked
    at ranking time): 2 for validation (``seq[:-2]``), 1 for test (``seq[:-1]``)."""
    return [data.sequences[int(u)][:-held_out] for u in part.user_index]


class NegativeSampler:
    """One uniform training negative per real position, never an item of the user's sequence.

    Negatives come from [1, num_items + 1] like the official ``neg_sample`` (the extra row
    ``num_items + 1`` included). Vectorised rejection sampling: draw the whole batch, check it
    against a [B, num_items + 2] membership matrix, redraw only the rejected entries.
    """

    def __init__(self, user_items: Sequence[np.ndarray], num_items: int) -> None:
        self.num_items = num_items
        self._flat, self._offsets = flatten_rows(user_items)

    def sample(
        self, users: np.ndarray, target_pos: np.ndarray, rng: np.random.Generator
    ) -> np.ndarray:
        """``users`` [B] dataset rows, ``target_pos`` [B, L] (0 = no target) -> negatives [B, L]."""
        width = self.num_items + 2
        member = row_membership(self._flat, self._offsets, np.asarray(users, dtype=np.int64), width)
        rows, cols = np.nonzero(target_pos)
        draws = rng.integers(1, width, size=len(rows), dtype=np.int64)
        rejected = member[rows, draws]
        for _ in range(_REJECTION_ROUNDS):
            if not rejected.any():
                break
            redo = np.nonzero(rejected)[0]
            draws[redo] = rng.integers(1, width, size=len(redo), dtype=np.int64)
            rejected[redo] = member[rows[redo], draws[redo]]
        if rejected.any():
            # users who own nearly every item: pick uniformly among their allowed items exactly
            redo = np.nonzero(rejected)[0]
            allowed = ~member[rows[redo]]
            allowed[:, 0] = False
            choice = rng.integers(0, allowed.sum(axis=1))
            draws[redo] = (np.cumsum(allowed, axis=1) > choice[:, None]).argmax(axis=1)
        negatives = np.zeros(target_pos.shape, dtype=np.int64)
        negatives[rows, cols] = draws
        return negatives


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _release_free_memory() -> None:
    """Hand freed heap memory back to the OS (glibc only; a no-op elsewhere).

    Batches allocate tensors of varying size; glibc keeps the freed chunks, so the resident
    size of a long run creeps up by ~100-200 MB per Beauty epoch while live memory stays flat.
    Trimming once per epoch keeps many concurrent trials within the machine's memory.
    """
    global _MALLOC_TRIM
    if _MALLOC_TRIM is None:
        try:
            _MALLOC_TRIM = ctypes.CDLL("libc.so.6").malloc_trim
        except (OSError, AttributeError):
            _MALLOC_TRIM = False
    if _MALLOC_TRIM:
        _MALLOC_TRIM(0)


_MALLOC_TRIM: Any = None


def _cpu_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


def _atomic_torch_save(payload: dict[str, Any], path: Path) -> None:
    with atomic_path(path) as temp:
        torch.save(payload, temp)


def _group_dicts(groups: list[GroupMetrics]) -> list[dict[str, Any]]:
    return [asdict(g) for g in groups]


def _groups_from_dicts(payload: list[dict[str, Any]]) -> list[GroupMetrics]:
    return [GroupMetrics(**g) for g in payload]


def _config_differences(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    from faerec.config import flatten

    old, new = flatten(saved), flatten(current)
    keys = sorted((set(old) | set(new)) - RESUME_IGNORED_KEYS)
    return [
        f"{k}: {old.get(k)!r} in the checkpoint, {new.get(k)!r} now"
        for k in keys
        if old.get(k) != new.get(k)
    ]


# --- training state -----------------------------------------------------------------------------


@dataclass
class _TrainingState:
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
            self.best_state = _cpu_state_dict(model)
            self.best_valid = groups
            self.bad_validations = 0
            return True
        self.bad_validations += 1
        return False


def _save_checkpoint(
    path: Path,
    config: RunConfig,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    state: _TrainingState,
    rng: np.random.Generator,
    epoch: int,
) -> None:
    payload: dict[str, Any] = {
        "format": CHECKPOINT_FORMAT,
        "config": config.to_dict(),
        "epoch": epoch,
        "model": _cpu_state_dict(model),
        "optimizer": optimizer.state_dict(),
        "next_epoch": state.next_epoch,
        "best_value": state.best_value,
        "best_epoch": state.best_epoch,
        "best_state": state.best_state,
        "best_valid": _group_dicts(state.best_valid),
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


def _load_checkpoint(
    path: Path,
    config: RunConfig,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    rng: np.random.Generator,
) -> _TrainingState:
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # a truncated or foreign file: say which one
        raise TrainingError(
            f"{path}: cannot read the checkpoint ({error}); delete it to start over"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise TrainingError(f"{path}: not a faerec-study checkpoint (format {CHECKPOINT_FORMAT})")
    differences = _config_differences(payload["config"], config.to_dict())
    if differences:
        raise ConfigError(
            f"{path} was written for a different configuration ({'; '.join(differences[:3])}"
            f"{'; ...' if len(differences) > 3 else ''}): use the same settings or a new directory"
        )
    model.load_state_dict(payload["model"])
    optimizer.load_state_dict(payload["optimizer"])
    rng.bit_generator.state = json.loads(payload["rng_numpy"])
    torch.set_rng_state(payload["rng_torch"])
    if payload["rng_cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(payload["rng_cuda"])
    return _TrainingState(
        next_epoch=int(payload["next_epoch"]),
        best_value=payload["best_value"],
        best_epoch=payload["best_epoch"],
        best_state=payload["best_state"],
        best_valid=_groups_from_dicts(payload["best_valid"]),
        bad_validations=int(payload["bad_validations"]),
        history=[EpochReport(**report) for report in payload["history"]],
        finished=payload["finished"],
        seconds=float(payload["seconds"]),
    )


# --- the run ------------------------------------------------------------------------------------


def _validates_at(epoch: int, config: RunConfig) -> bool:
    start, every = config.train.eval_start_epoch, config.train.eval_every
    return epoch >= start and (epoch - start) % every == 0


def batch_to_device(
    input_ids: np.ndarray, target_pos: np.ndarray, negatives: np.ndarray, device: torch.device
) -> TrainBatch:
    """Numpy batch -> :class:`TrainBatch` on ``device``.

    On CUDA the three arrays travel as one pinned block with a non-blocking copy, so the host
    can prepare the next batch while the device still works; on the CPU they are shared, not
    copied.
    """
    if device.type != "cuda":
        return TrainBatch(
            torch.from_numpy(input_ids), torch.from_numpy(target_pos), torch.from_numpy(negatives)
        )
    block = torch.from_numpy(np.stack([input_ids, target_pos, negatives]).astype(np.int64))
    block = block.pin_memory().to(device, non_blocking=True)
    return TrainBatch(block[0], block[1], block[2])


def autocast_context(config: RunConfig, device: torch.device) -> AbstractContextManager[Any]:
    """bfloat16 autocast for the forward pass and loss when ``train.precision`` is bf16."""
    return torch.autocast(
        device_type=device.type,
        dtype=torch.bfloat16,
        enabled=config.train.precision == "bf16",
    )


@contextmanager
def matmul_precision(config: RunConfig, device: torch.device) -> Iterator[None]:
    """TF32 matrix products on CUDA unless ``train.precision`` is fp32-strict (which also turns
    cuDNN's TF32 off); the process-wide switches are restored afterwards. No-op on the CPU."""
    if device.type != "cuda":
        yield
        return
    strict = config.train.precision == "fp32-strict"
    saved = (torch.get_float32_matmul_precision(), torch.backends.cudnn.allow_tf32)
    torch.set_float32_matmul_precision("highest" if strict else "high")
    torch.backends.cudnn.allow_tf32 = not strict
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(saved[0])
        torch.backends.cudnn.allow_tf32 = saved[1]


def compile_backbone(model: SequentialRecommender, backend: str = "inductor") -> None:
    """``train.compile``: compile the backbone's encoder in place (dynamic shapes, since trimmed
    batches vary in length). The weights and their state-dict names do not change."""
    backbone = model.backbone
    compiled = torch.compile(backbone.encode, dynamic=True, backend=backend)
    backbone.encode = compiled  # type: ignore[method-assign]


class _LossAccumulator:
    """Per-batch loss and parts kept on the device, read back in blocks.

    Reading happens every :data:`NAN_CHECK_EVERY` batches and at the end; the sums are then
    taken on the host in batch order, in float64, exactly as per-batch ``float()`` reads would.
    """

    def __init__(self, epoch: int, config: RunConfig) -> None:
        self.epoch = epoch
        self.config = config
        self.names: list[str] = []
        self.pending: list[torch.Tensor] = []
        self.rows: list[list[float]] = []

    def add(self, total: torch.Tensor, losses: dict[str, torch.Tensor]) -> None:
        self.names = list(losses)
        values = [total.detach(), *losses.values()]
        self.pending.append(torch.stack([v.detach().float().reshape(()) for v in values]))

    def read(self) -> None:
        """One host sync: move the pending rows over and fail on the first non-finite loss."""
        if not self.pending:
            return
        first_index = len(self.rows)
        block = torch.stack(self.pending).cpu().double().numpy()
        self.pending = []
        for offset, row in enumerate(block.tolist()):
            if not np.isfinite(row[0]):
                parts_text = ", ".join(
                    f"{k}={v:.4g}" for k, v in zip(self.names, row[1:], strict=True)
                )
                raise TrainingError(
                    f"NaN loss at epoch {self.epoch}, batch {first_index + offset}: "
                    f"total={row[0]} ({parts_text}); try a lower train.lr "
                    f"(now {self.config.train.lr})"
                )
            self.rows.append(row)

    def mean_loss(self) -> float:
        return sum(row[0] for row in self.rows) / max(len(self.rows), 1)

    def mean_parts(self) -> dict[str, float]:
        count = max(len(self.rows), 1)
        return {
            name: sum(row[i + 1] for row in self.rows) / count for i, name in enumerate(self.names)
        }


def train_one_epoch(
    model: SequentialRecommender,
    optimizer: torch.optim.Optimizer,
    train: SplitPart,
    sampler: NegativeSampler,
    rng: np.random.Generator,
    epoch: int,
    config: RunConfig,
    device: torch.device,
    bar: Any = None,
) -> tuple[float, dict[str, float], dict[str, float]]:
    """One pass over the shuffled training rows; returns (mean loss, mean parts, weights).

    A non-finite loss raises :class:`TrainingError` naming the first bad batch, at the next read
    of the accumulated losses (so after at most ``NAN_CHECK_EVERY`` batches).
    """
    model.train()
    order = rng.permutation(len(train))
    batch_size = config.train.batch_size
    losses = _LossAccumulator(epoch, config)
    weights: dict[str, float] = {}
    for batch_index, start in enumerate(range(0, len(order), batch_size)):
        rows = order[start : start + batch_size]
        target_pos = train.target_pos[rows]
        negatives = sampler.sample(train.user_index[rows], target_pos, rng)
        batch = batch_to_device(train.input_ids[rows], target_pos, negatives, device)
        with autocast_context(config, device):
            terms = model.calculate_loss(batch, epoch)
        optimizer.zero_grad(set_to_none=True)
        terms.total.backward()
        optimizer.step()
        losses.add(terms.total, terms.losses)
        weights = dict(terms.weights)
        if (batch_index + 1) % NAN_CHECK_EVERY == 0:
            losses.read()
            if bar is not None:
                bar.set_postfix_str(f"loss={losses.mean_loss():.4f}", refresh=False)
        if bar is not None:
            bar.update(1)
    losses.read()
    return losses.mean_loss(), losses.mean_parts(), weights


def _peak_gpu_memory_mb(device: torch.device) -> float | None:
    """Peak memory torch allocated on ``device`` since the last reset (None on the CPU)."""
    if device.type != "cuda":
        return None
    return torch.cuda.max_memory_allocated(device) / 2**20


def _environment(config: RunConfig, device: torch.device) -> dict[str, Any]:
    if device.type == "cuda":
        device_name = torch.cuda.get_device_name(device)
    else:
        device_name = platform.processor() or platform.machine()
    return {
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "numpy": np.__version__,
        "device": str(device),
        "device_name": device_name,
        "torch_threads": torch.get_num_threads(),
        "embedding_model": config.embedding.model if config.faerec.enabled else None,
    }


def run_trial(
    config: RunConfig,
    on_epoch: EpochHook | None = None,
    checkpoint_dir: str | Path | None = None,
    evaluate_test: bool = True,
    progress: bool = False,
) -> RunResult:
    """Train one configuration, select the best epoch on validation, test it once.

    ``on_epoch`` sees an :class:`EpochReport` after every epoch (after the checkpoint is written)
    and stops the run by returning True (``stop_reason = "hook"``). With ``checkpoint_dir`` the
    run resumes from ``checkpoint.pt`` there if it exists (same configuration required) and
    leaves ``best_model.pt`` at the end. Test metrics come from the best validation weights and
    are never used for selection.
    """
    started = time.perf_counter()
    validate(config)
    device = resolve_device(config.train.device)
    with matmul_precision(config, device):
        return _run_trial(
            config, device, started, on_epoch, checkpoint_dir, evaluate_test, progress
        )


def _run_trial(
    config: RunConfig,
    device: torch.device,
    started: float,
    on_epoch: EpochHook | None,
    checkpoint_dir: str | Path | None,
    evaluate_test: bool,
    progress: bool,
) -> RunResult:
    """:func:`run_trial` on a resolved device, inside its matmul-precision settings."""
    from faerec.data import (
        dataset_statistics,
        leave_one_out,
        load_dataset,
        popularity_groups,
        user_group_masks,
    )
    from faerec.models import build_model

    seed = config.train.seed
    _seed_everything(seed)
    if config.train.num_threads > 0:
        torch.set_num_threads(config.train.num_threads)

    data = load_dataset(config.data.dataset)
    split = leave_one_out(data, config.data.max_seq_length)
    groups = popularity_groups(data, config.data.head_ratio, config.data.popularity_source)
    llm_table = None
    embedding_facts: dict[str, Any] = {}
    if config.faerec.enabled:
        from faerec.embeddings import prepare_item_embeddings

        embeddings = prepare_item_embeddings(data, config.embedding, progress)
        llm_table = embeddings.matrix
        embedding_facts = {
            "embedding_source": embeddings.source,
            "embedding_cache_key": None
            if embeddings.cache_path is None
            else embeddings.cache_path.name,
            "embedding_dim": int(llm_table.shape[1]),
        }
    if len(split.train) == 0:
        raise TrainingError(
            f"dataset {data.name!r} has no training sequences (users need >= 2 items)"
        )
    if len(split.valid) == 0:
        raise TrainingError(
            f"dataset {data.name!r} has no users to validate (users need >= 3 items)"
        )

    torch.manual_seed(seed)  # model init must not depend on what ran before (e.g. embeddings)
    model = build_model(config, data.num_items, llm_table, groups.train_popularity).to(device)
    if config.train.compile:
        compile_backbone(model)
    optimizer = torch.optim.Adam(
        model.parameters(), lr=config.train.lr, weight_decay=config.train.weight_decay
    )
    rng = np.random.default_rng(seed)
    sampler = NegativeSampler(split.user_items, data.num_items)
    valid_history = evaluation_history(data, split.valid, 2)
    valid_masks = user_group_masks(split.valid, groups)

    checkpoint_path = None if checkpoint_dir is None else Path(checkpoint_dir) / CHECKPOINT_FILE
    if checkpoint_path is not None and checkpoint_path.exists():
        state = _load_checkpoint(checkpoint_path, config, model, optimizer, rng)
    else:
        state = _TrainingState()
    seconds_before = state.seconds
    metric = config.train.select_metric
    max_epochs = config.train.max_epochs

    def validate_now(epoch: int) -> dict[str, float]:
        output = evaluate(model, split.valid, valid_history, valid_masks, config.eval, device, seed)
        state.record_validation(epoch, output.overall[metric], output.groups, model)
        return output.overall

    stop_reason = state.finished or "max_epochs"
    epoch = state.next_epoch - 1
    bar = _progress_bar(progress, state, max_epochs, len(split.train), config)
    if state.finished is None:
        for epoch in range(state.next_epoch, max_epochs):
            epoch_started = time.perf_counter()
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            if bar is not None:
                bar.start_epoch(epoch)
            try:
                loss, parts, weights = train_one_epoch(
                    model, optimizer, split.train, sampler, rng, epoch, config, device, bar
                )
                valid: dict[str, float] | None = None
                must_validate = epoch == max_epochs - 1 and state.best_value is None
                if _validates_at(epoch, config) or must_validate:
                    valid = validate_now(epoch)
                if bar is not None:
                    bar.end_epoch(loss, valid, state.best_value, state.best_epoch)
            except BaseException:
                if bar is not None:
                    bar.close()
                raise
            state.next_epoch = epoch + 1
            _release_free_memory()
            if valid is not None and state.bad_validations >= config.train.patience:
                state.finished = "early_stopping"
            elif epoch == max_epochs - 1:
                state.finished = "max_epochs"
            report = EpochReport(
                epoch=epoch,
                loss=loss,
                loss_parts=parts,
                valid=valid,
                best_value=state.best_value,
                best_epoch=state.best_epoch,
                seconds=time.perf_counter() - epoch_started,
                checkpoint_dir=None if checkpoint_path is None else str(checkpoint_path.parent),
                weights=weights,
                gpu_mem_mb=_peak_gpu_memory_mb(device),
            )
            state.history.append(report)
            state.seconds = seconds_before + (time.perf_counter() - started)
            if checkpoint_path is not None:
                _save_checkpoint(checkpoint_path, config, model, optimizer, state, rng, epoch)
            hook_says_stop = bool(on_epoch(report)) if on_epoch is not None else False
            if state.finished is not None:
                stop_reason = state.finished
                break
            if hook_says_stop:
                stop_reason = "hook"
                break

    if bar is not None:
        bar.close()
    if state.best_state is None:
        # stopped (by the hook) before any validation: the final weights are the only candidate
        validate_now(max(epoch, 0))
    assert state.best_state is not None and state.best_value is not None
    assert state.best_epoch is not None
    model.load_state_dict(state.best_state)

    test_groups: list[GroupMetrics] | None = None
    test_ranks: list[int] | None = None
    test_users: list[int] | None = None
    test_user_group: list[str] | None = None
    if evaluate_test:
        test_history = evaluation_history(data, split.test, 1)
        test_masks = user_group_masks(split.test, groups)
        test_output: EvaluationOutput = evaluate(
            model, split.test, test_history, test_masks, config.eval, device, seed
        )
        test_groups = test_output.groups
        test_ranks = test_output.ranks.astype(int).tolist()
        test_users = test_output.user_index.astype(int).tolist()
        head, tail = test_masks["head_items"], test_masks["tail_items"]
        test_user_group = np.where(head, "head", np.where(tail, "tail", "")).tolist()

    if checkpoint_path is not None:
        _atomic_torch_save(
            {
                "model": state.best_state,
                "config": config.to_json(),
                "best_epoch": state.best_epoch,
                "best_value": state.best_value,
                "select_metric": metric,
            },
            checkpoint_path.parent / BEST_MODEL_FILE,
        )

    data_stats = dict(dataset_statistics(data, split, groups))
    data_stats.setdefault("head_ratio", config.data.head_ratio)
    data_stats.setdefault("popularity_source", config.data.popularity_source)
    data_stats["eval_mode"] = config.eval.mode
    data_stats["eval_masking"] = config.eval.masking
    if config.eval.mode == "sampled":
        data_stats["eval_num_negatives"] = config.eval.num_negatives
    return RunResult(
        config=config.to_dict(),
        best_epoch=state.best_epoch,
        best_value=float(state.best_value),
        select_metric=metric,
        epochs_trained=state.next_epoch,
        stop_reason=stop_reason,
        valid=state.best_valid,
        test=test_groups,
        history=list(state.history),
        seconds=seconds_before + (time.perf_counter() - started),
        test_ranks=test_ranks,
        test_user_index=test_users,
        test_user_group=test_user_group,
        data_stats=data_stats,
        environment={**_environment(config, device), **embedding_facts},
    )


# --- progress display ---------------------------------------------------------------------------


def _progress_bar(
    enabled: bool, state: _TrainingState, max_epochs: int, rows: int, config: RunConfig
) -> RunProgress | None:
    """One display for the whole run (faerec.run_progress), from the epoch it resumes at."""
    if not enabled:
        return None
    batches = -(-rows // config.train.batch_size)
    return RunProgress(max_epochs, batches, state.next_epoch, config.train.select_metric)
