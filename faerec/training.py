"""One training run: data, model, epochs, validation, early stopping, checkpoints, test.

:func:`run_trial` is the single entry point that ``faerec-study train``, a Ray Tune trial and a
plain Optuna objective all call (docs/method.md §Training objective). It knows nothing of Ray
or Optuna: they observe and steer a run through the ``on_epoch`` hook and resume it through
``checkpoint_dir``.

Resuming is a first-class path, not an afterthought: after every epoch the whole training
state (model, optimiser, best weights, early-stopping counters, history and every RNG) is
written atomically to ``checkpoint_dir/checkpoint.pt`` (the file's reading and writing live in
:mod:`faerec.checkpoint`). A run that is killed and started again with the same configuration
continues exactly where it stopped and produces the same numbers as an uninterrupted run.

A run reads top to bottom in three steps: :func:`_set_up` (seeds, data, model, the checkpoint's
state), :func:`_train` (the epochs, each one :func:`_train_epoch`) and :func:`_finish` (best
weights, test, ``best_model.pt``, the result).

On a GPU the loop avoids waiting for the device: batches go through pinned memory with
non-blocking copies, and the loss and its parts are summed on the device and read back only
every ``NAN_CHECK_EVERY`` batches and at the end of the epoch (docs/benchmarks.md, GPU).
"""

from __future__ import annotations

import ctypes
import platform
import random
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from faerec.checkpoint import (
    BEST_MODEL_FILE,
    CHECKPOINT_FILE,
    CHECKPOINT_FORMAT,
    TrainingState,
    load_checkpoint,
    save_best_model,
    save_checkpoint,
)
from faerec.checkpoint import config_differences as _config_differences  # noqa: F401 (tests)
from faerec.config import RunConfig, validate
from faerec.data.ragged import flatten_rows, row_membership
from faerec.data.types import InteractionData, LeaveOneOutSplit, PopularityGroups, SplitPart
from faerec.errors import ConfigError, TrainingError
from faerec.evaluation import EvaluationOutput, evaluate
from faerec.models.base import SequentialRecommender, TrainBatch
from faerec.results import EpochReport, GroupMetrics, RunResult
from faerec.run_progress import RunProgress

__all__ = [
    "BEST_MODEL_FILE",
    "CHECKPOINT_FILE",
    "CHECKPOINT_FORMAT",
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
    Trimming after each training pass and each epoch keeps many concurrent trials within the
    machine's memory (docs/benchmarks.md, memory).
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


# --- the loop -----------------------------------------------------------------------------------


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


# --- the run: set-up, epochs, finish ----------------------------------------------------------


@dataclass
class _Run:
    """What one run builds once (:func:`_set_up`) and its epochs and finish then read."""

    config: RunConfig
    device: torch.device
    #: ``time.perf_counter()`` when this call of :func:`run_trial` began
    started: float
    data: InteractionData
    split: LeaveOneOutSplit
    groups: PopularityGroups
    model: SequentialRecommender
    optimizer: torch.optim.Optimizer
    rng: np.random.Generator
    sampler: NegativeSampler
    valid_history: list[np.ndarray]
    valid_masks: dict[str, np.ndarray]
    checkpoint_path: Path | None
    state: TrainingState
    #: training seconds spent before a resume (0 for a fresh run)
    seconds_before: float
    #: where FAERec's item embeddings came from (empty for a plain backbone)
    embedding_facts: dict[str, Any]

    def validate(self, epoch: int) -> dict[str, float]:
        """Rank the validation users and let the state keep the weights if they are the best."""
        output = evaluate(
            self.model,
            self.split.valid,
            self.valid_history,
            self.valid_masks,
            self.config.eval,
            self.device,
            self.config.train.seed,
        )
        metric = self.config.train.select_metric
        self.state.record_validation(epoch, output.overall[metric], output.groups, self.model)
        return output.overall


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
        run = _set_up(config, device, started, checkpoint_dir, progress)
        stop_reason, last_epoch = _train(run, on_epoch, progress)
        return _finish(run, stop_reason, last_epoch, evaluate_test)


def _set_up(
    config: RunConfig,
    device: torch.device,
    started: float,
    checkpoint_dir: str | Path | None,
    progress: bool,
) -> _Run:
    """Seeds, data, embeddings, model and optimiser; then the checkpoint's state, if any."""
    from faerec.data import leave_one_out, load_dataset, popularity_groups, user_group_masks
    from faerec.models import build_model

    seed = config.train.seed
    _seed_everything(seed)
    if config.train.num_threads > 0:
        torch.set_num_threads(config.train.num_threads)

    data = load_dataset(config.data.dataset)
    split = leave_one_out(data, config.data.max_seq_length)
    groups = popularity_groups(data, config.data.head_ratio, config.data.popularity_source)
    llm_table, embedding_facts = _item_embeddings(config, data, progress)
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
        state = load_checkpoint(checkpoint_path, config, model, optimizer, rng)
    else:
        state = TrainingState()
    return _Run(
        config=config,
        device=device,
        started=started,
        data=data,
        split=split,
        groups=groups,
        model=model,
        optimizer=optimizer,
        rng=rng,
        sampler=sampler,
        valid_history=valid_history,
        valid_masks=valid_masks,
        checkpoint_path=checkpoint_path,
        state=state,
        seconds_before=state.seconds,
        embedding_facts=embedding_facts,
    )


def _item_embeddings(
    config: RunConfig, data: InteractionData, progress: bool
) -> tuple[np.ndarray | None, dict[str, Any]]:
    """FAERec's LLM item table and where it came from; (None, {}) for a plain backbone."""
    if not config.faerec.enabled:
        return None, {}
    from faerec.embeddings import prepare_item_embeddings

    embeddings = prepare_item_embeddings(data, config.embedding, progress)
    facts = {
        "embedding_source": embeddings.source,
        "embedding_cache_key": None
        if embeddings.cache_path is None
        else embeddings.cache_path.name,
        "embedding_dim": int(embeddings.matrix.shape[1]),
    }
    return embeddings.matrix, facts


def _train(run: _Run, on_epoch: EpochHook | None, progress: bool) -> tuple[str, int]:
    """Epochs from where the state stands until the run finishes or the hook stops it.

    Returns (stop reason, last epoch trained; ``next_epoch - 1`` if none was). After each epoch
    the checkpoint is written before the hook sees the epoch, so a run killed in the hook
    resumes after that epoch.
    """
    state, config = run.state, run.config
    stop_reason = state.finished or "max_epochs"
    epoch = state.next_epoch - 1
    bar = _progress_bar(progress, state, config.train.max_epochs, len(run.split.train), config)
    try:
        if state.finished is not None:
            return stop_reason, epoch
        for epoch in range(state.next_epoch, config.train.max_epochs):
            report = _train_epoch(run, epoch, bar)
            if run.checkpoint_path is not None:
                save_checkpoint(
                    run.checkpoint_path, config, run.model, run.optimizer, state, run.rng, epoch
                )
            hook_says_stop = bool(on_epoch(report)) if on_epoch is not None else False
            if state.finished is not None:
                return state.finished, epoch
            if hook_says_stop:
                return "hook", epoch
        return stop_reason, epoch
    finally:
        if bar is not None:
            bar.close()


def _train_epoch(run: _Run, epoch: int, bar: RunProgress | None) -> EpochReport:
    """One epoch, its validation when due, and the state's bookkeeping; the epoch's report."""
    state, config, device = run.state, run.config, run.device
    max_epochs = config.train.max_epochs
    epoch_started, cpu_started = time.perf_counter(), time.process_time()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    if bar is not None:
        bar.start_epoch(epoch)
    loss, parts, weights = train_one_epoch(
        run.model, run.optimizer, run.split.train, run.sampler, run.rng, epoch, config, device, bar
    )
    _release_free_memory()  # validation then starts from live memory, not the epoch's heap
    valid: dict[str, float] | None = None
    must_validate = epoch == max_epochs - 1 and state.best_value is None
    if _validates_at(epoch, config) or must_validate:
        valid = run.validate(epoch)
    if bar is not None:
        bar.end_epoch(loss, valid, state.best_value, state.best_epoch)
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
        checkpoint_dir=None if run.checkpoint_path is None else str(run.checkpoint_path.parent),
        weights=weights,
        gpu_mem_mb=_peak_gpu_memory_mb(device),
        cpu_seconds=time.process_time() - cpu_started,
    )
    state.history.append(report)
    state.seconds = run.seconds_before + (time.perf_counter() - run.started)
    return report


def _finish(run: _Run, stop_reason: str, last_epoch: int, evaluate_test: bool) -> RunResult:
    """Load the best weights, test them once, leave ``best_model.pt``; the run's result."""
    from faerec.data import user_group_masks

    config, state, split = run.config, run.state, run.split
    if state.best_state is None:
        # stopped (by the hook) before any validation: the final weights are the only candidate
        run.validate(max(last_epoch, 0))
    assert state.best_state is not None and state.best_value is not None
    assert state.best_epoch is not None
    run.model.load_state_dict(state.best_state)

    test_groups: list[GroupMetrics] | None = None
    test_ranks: list[int] | None = None
    test_users: list[int] | None = None
    test_user_group: list[str] | None = None
    if evaluate_test:
        test_history = evaluation_history(run.data, split.test, 1)
        test_masks = user_group_masks(split.test, run.groups)
        test_output: EvaluationOutput = evaluate(
            run.model, split.test, test_history, test_masks, config.eval, run.device,
            config.train.seed,
        )  # fmt: skip
        test_groups = test_output.groups
        test_ranks = test_output.ranks.astype(int).tolist()
        test_users = test_output.user_index.astype(int).tolist()
        head, tail = test_masks["head_items"], test_masks["tail_items"]
        test_user_group = np.where(head, "head", np.where(tail, "tail", "")).tolist()

    if run.checkpoint_path is not None:
        save_best_model(run.checkpoint_path.parent, config, state)

    return RunResult(
        config=config.to_dict(),
        best_epoch=state.best_epoch,
        best_value=float(state.best_value),
        select_metric=config.train.select_metric,
        epochs_trained=state.next_epoch,
        stop_reason=stop_reason,
        valid=state.best_valid,
        test=test_groups,
        history=list(state.history),
        seconds=run.seconds_before + (time.perf_counter() - run.started),
        test_ranks=test_ranks,
        test_user_index=test_users,
        test_user_group=test_user_group,
        data_stats=_data_stats(run),
        environment={**_environment(config, run.device), **run.embedding_facts},
    )


def _data_stats(run: _Run) -> dict[str, Any]:
    """The dataset's statistics and the evaluation protocol the metrics were taken under."""
    from faerec.data import dataset_statistics

    config = run.config
    stats = dict(dataset_statistics(run.data, run.split, run.groups))
    stats.setdefault("head_ratio", config.data.head_ratio)
    stats.setdefault("popularity_source", config.data.popularity_source)
    stats["eval_mode"] = config.eval.mode
    stats["eval_masking"] = config.eval.masking
    if config.eval.mode == "sampled":
        stats["eval_num_negatives"] = config.eval.num_negatives
    return stats


# --- progress display ---------------------------------------------------------------------------


def _progress_bar(
    enabled: bool, state: TrainingState, max_epochs: int, rows: int, config: RunConfig
) -> RunProgress | None:
    """One display for the whole run (faerec.run_progress), from the epoch it resumes at."""
    if not enabled:
        return None
    batches = -(-rows // config.train.batch_size)
    return RunProgress(max_epochs, batches, state.next_epoch, config.train.select_metric)
