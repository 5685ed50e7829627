"""The final stage: each cell's chosen configuration, retrained with several seeds, tested once.

The configuration comes from the cell's ``best.json`` (the best trial, or the preset for a cell
without a space). Seed ``i`` (0-based) trains with ``train.seed = <the cell's train.seed> + i``,
i.e. 2024, 2025, ... with the default seed. Runs are Ray tasks, at most ``max_concurrent`` at a
time, each pinned to its CPUs like a trial. A seed whose ``final/seed_<s>.json`` exists is never
run again; a running seed keeps a resumable checkpoint in ``final/seed_<s>.ckpt/`` (removed once
its JSON is written), so a killed study loses at most the epoch in progress.

A running seed shows its epochs like a trial (docs/study-spec.md, "What a run shows"): after
each epoch the Ray task rewrites ``progress.json`` in its checkpoint folder (the run's epochs so
far), and the driver, which wakes every second anyway, reads it when it changed. A file, not a
Ray actor: nothing to start or to outlive the driver, and the worker stays the one writer. The
file is derived, never read as a result, and goes with the checkpoint folder; one left by a
killed run is only the starting point of the next attempt's elapsed time.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from faerec.study.progress import ProgressView, show_final_epoch
from faerec.study.reference import plan_reference
from faerec.study.shared import TrialSlots
from faerec.study.spec import Cell, StudySpec
from faerec.study.store import StudyStore, read_json, write_json_atomic
from faerec.study.trainable import error_message

#: how often the driver wakes up to check for Ctrl-C (and for epochs) while seeds train
POLL_INTERVAL_S = 1.0
#: in a running seed's checkpoint folder: its epochs so far, for the driver's progress lines
PROGRESS_FILE = "progress.json"


@dataclass(frozen=True)
class FinalJob:
    cell_id: str
    seed: int
    config: dict[str, Any]
    output: Path
    checkpoint_dir: Path
    #: the cell's preset retrained as its reference row (faerec.study.reference)
    reference: bool = False

    @property
    def progress_json(self) -> Path:
        return self.checkpoint_dir / PROGRESS_FILE


class ProgressWriter:
    """The task's side of ``progress.json``: ``run_trial``'s epoch hook, rewriting the file.

    Every epoch carries ``attempt``, the driver's mark for this submission, so the driver shows
    only the epochs trained for it. A run resumed from its checkpoint keeps the epochs an earlier
    attempt recorded before the one it resumes at, so ``elapsed`` (seconds since the run first
    started) counts them. Best effort: a display must never fail a run.
    """

    def __init__(self, path: Path, attempt: str, metric: str) -> None:
        self.path = path
        self.attempt = attempt
        self.metric = metric
        self.started = time.perf_counter()
        self.earlier = read_progress(path)
        self.epochs: list[dict[str, Any]] | None = None
        self.base = 0.0  # the run's seconds before this attempt

    def __call__(self, report: Any) -> None:
        if self.epochs is None:  # this attempt's first epoch: keep what came before it
            self.epochs = [e for e in self.earlier if e["epoch"] < report.epoch]
            elapsed = [e.get("elapsed") for e in self.epochs]
            self.base = max((t for t in elapsed if isinstance(t, (int, float))), default=0.0)
        valid = report.valid or {}
        self.epochs.append(
            {
                "attempt": self.attempt,
                "epoch": report.epoch,
                "seconds": report.seconds,
                "elapsed": self.base + time.perf_counter() - self.started,
                "value": valid.get(self.metric),
                "gpu_mem_mb": report.gpu_mem_mb,
            }
        )
        with contextlib.suppress(OSError, ValueError):  # a full disk: the run goes on
            write_json_atomic(self.path, {"epochs": self.epochs})


def read_progress(path: Path) -> list[dict[str, Any]]:
    """The epochs recorded in a ``progress.json``, in order; none when it is missing or
    unreadable (it only feeds the display)."""
    try:
        epochs = json.loads(path.read_text(encoding="utf-8"))["epochs"]
    except (OSError, ValueError, KeyError, TypeError):
        return []
    if not isinstance(epochs, list):
        return []
    return [e for e in epochs if isinstance(e, dict) and type(e.get("epoch")) is int]


class RunWatch:
    """The driver's side of one submitted job's ``progress.json``: each new epoch shown once."""

    def __init__(self, job: FinalJob, metric: str, extend_max_epochs: int = 0) -> None:
        self.job = job
        self.metric = metric
        self.attempt = uuid.uuid4().hex
        self.max_epochs = int(job.config["train"]["max_epochs"])
        #: the cap a run trains on to once it passed its own (``final.extend_max_epochs``)
        self.extended = max(self.max_epochs, extend_max_epochs)
        self.shown = -1  # the last epoch shown
        self.stamp: tuple[int, int, int] | None = None

    def poll(self, progress: ProgressView) -> None:
        """Show the epochs the job recorded since the last poll (a stat when none)."""
        try:
            stat = self.job.progress_json.stat()
        except OSError:
            return
        stamp = (stat.st_mtime_ns, stat.st_ino, stat.st_size)
        if stamp == self.stamp:
            return
        self.stamp = stamp
        for entry in read_progress(self.job.progress_json):
            if entry.get("attempt") != self.attempt or entry["epoch"] <= self.shown:
                continue  # an earlier driver's epochs, or shown already
            show_final_epoch(
                progress,
                self.job.cell_id,
                self.job.seed,
                self.job.reference,
                self.max_epochs if entry["epoch"] < self.max_epochs else self.extended,
                self.metric,
                entry,
            )
            self.shown = entry["epoch"]

    def done(self, progress: ProgressView) -> None:
        """The job ended: its last epochs, then its line goes."""
        self.poll(progress)
        progress.final_run_done(self.job.cell_id, self.job.seed, self.job.reference)


def train_final_seed(
    config: dict[str, Any],
    checkpoint_dir: str,
    attempt: str = "",
    metric: str = "",
    extend_max_epochs: int = 0,
) -> dict[str, Any]:
    """Runs in a Ray worker: one full training with test evaluation; errors come back as text.
    After each epoch, ``progress.json`` in ``checkpoint_dir`` gets the epoch
    (:class:`ProgressWriter`; ``metric``: the validation score it records). A run that stops at
    its cap trains on from its checkpoint up to ``extend_max_epochs`` when that is higher
    (``final.extend_max_epochs``; faerec.checkpoint: the same as having had that cap)."""
    writer = ProgressWriter(Path(checkpoint_dir) / PROGRESS_FILE, attempt, metric)  # the clock
    import ray

    from faerec.config import RunConfig, set_key

    try:
        from faerec.training import run_trial

        run_config = RunConfig.from_dict(config)
        assigned = ray.get_runtime_context().get_assigned_resources()
        if run_config.train.num_threads == 0:
            set_key(run_config, "train.num_threads", max(1, int(assigned.get("CPU", 1))))
        if run_config.train.device == "auto" and assigned.get("GPU", 0) <= 0:
            set_key(run_config, "train.device", "cpu")
        result = run_trial(
            run_config, on_epoch=writer, checkpoint_dir=checkpoint_dir, evaluate_test=True
        )
        if result.stop_reason == "max_epochs" and extend_max_epochs > run_config.train.max_epochs:
            set_key(run_config, "train.max_epochs", extend_max_epochs)
            result = run_trial(
                run_config, on_epoch=writer, checkpoint_dir=checkpoint_dir, evaluate_test=True
            )
    except Exception as error:
        return {"error": error_message(error)}
    return {"result": result.to_dict()}


class FinalStage:
    """Plans the seeds still missing per cell, runs them as Ray tasks, writes their results.

    Runs draw on the study's :class:`~faerec.study.shared.TrialSlots`, so a cell's seeds can
    train while other cells still search (:meth:`add` then :meth:`step` from the driver's main
    thread), and a slot that a search's last trials leave free is not left idle.
    """

    #: the owner of the final runs' slots in the study's TrialSlots
    SLOT_OWNER = "final stage"

    def __init__(
        self, spec: StudySpec, store: StudyStore, progress: ProgressView, guard: Any
    ) -> None:
        self.spec = spec
        self.store = store
        self.progress = progress
        self.guard = guard
        self.totals: dict[str, int] = {}
        self.done: dict[str, int] = {}
        #: the validation score a final run's line shows (a trial's shows the same)
        self.metric = spec.search.objectives[0].name
        self.queue: list[FinalJob] = []
        self.pending: dict[Any, FinalJob] = {}
        self.watches: dict[Any, RunWatch] = {}
        self.errors: list[str] = []
        self.slots: TrialSlots | None = None
        self.resources: dict[str, float] = {}
        #: slots to leave free for others first in line (searches still to start trials)
        self.spare: Callable[[], int] = lambda: 0
        self._remote: Any = None

    def plan(self, cells: list[Cell]) -> list[FinalJob]:
        """The seeds still to run, per cell, in cell order."""
        jobs: list[FinalJob] = []
        for cell in cells:
            cell_store = self.store.cell(cell.cell_id)
            if not cell_store.best_json.exists() or self.spec.final_seeds == 0:
                continue
            config = read_json(cell_store.best_json)["config"]
            base_seed = int(config["train"]["seed"])
            seeds = [base_seed + i for i in range(self.spec.final_seeds)]
            done = set(cell_store.done_seeds())
            self.totals[cell.cell_id] = len(seeds)
            self.done[cell.cell_id] = len(done & set(seeds))
            for seed in seeds:
                if seed in done:
                    continue
                seeded = {**config, "train": {**config["train"], "seed": seed}}
                jobs.append(
                    FinalJob(
                        cell.cell_id,
                        seed,
                        seeded,
                        cell_store.seed_json(seed),
                        cell_store.seed_checkpoint_dir(seed),
                    )
                )
            reference = plan_reference(self.spec, cell, cell_store, seeds)  # the preset's row
            self.totals[cell.cell_id] += reference.total
            self.done[cell.cell_id] += reference.done
            jobs += [
                FinalJob(cell.cell_id, *missing, reference=True) for missing in reference.missing
            ]
            self.show(cell.cell_id, running=0)
        return jobs

    def show(self, cell_id: str, running: int) -> None:
        """The cell's line (the view estimates its ETA from the epochs it sees)."""
        self.progress.update(
            cell_id,
            concurrency=self._concurrency(),
            stage="final" if self.done[cell_id] < self.totals[cell_id] else "done",
            final_done=self.done[cell_id],
            final_total=self.totals[cell_id],
            running=running,
        )

    # -- running -------------------------------------------------------------------------

    def attach(self, slots: TrialSlots, resources: dict[str, float]) -> None:
        """The study's slots and each run's resources (once Ray runs)."""
        self.slots = slots
        self.resources = resources

    def add(self, jobs: list[FinalJob]) -> None:
        """Queue ``jobs``; they start as slots come free."""
        self.queue += jobs

    def busy(self) -> bool:
        return bool(self.queue or self.pending)

    def step(self, timeout: float) -> None:
        """Start queued runs in the free slots, wait up to ``timeout`` seconds for one to end,
        show new epochs and collect what ended (its JSON written, its slot given back)."""
        import ray

        assert self.slots is not None, "attach() the study's slots first"
        spare = self.spare() if self.queue else 0
        while self.queue and self.slots.take(self.SLOT_OWNER, _slot_key(self.queue[0]), spare):
            self._submit(self.queue.pop(0))
        if not self.pending:
            if timeout > 0:
                time.sleep(timeout)
            return
        ready, _ = ray.wait(list(self.pending), num_returns=1, timeout=timeout)
        for watch in self.watches.values():
            watch.poll(self.progress)
        for ref in ready:
            job = self.pending.pop(ref)
            self.watches.pop(ref).done(self.progress)
            self.slots.give_back(self.SLOT_OWNER, _slot_key(job))
            error = self._collect(ref, job)
            if error:
                self.errors.append(f"{job.cell_id}: final seed {job.seed} failed: {error}")
            self._show_running()

    def cancel(self) -> None:
        """Stop every running run now (each resumes from its last epoch's checkpoint) and start
        no more."""
        import ray

        self.queue.clear()
        refs = list(self.pending)
        # a run that has just ended is left alone: force-cancelling a task whose reply is on
        # its way has crashed Ray's core worker (task_manager.cc), turning exit 3 into exit 1
        ended, _ = ray.wait(refs, num_returns=len(refs), timeout=0) if refs else ([], [])
        for ref, job in list(self.pending.items()):
            if ref not in ended:
                ray.cancel(ref, force=True)
            if self.slots is not None:
                self.slots.give_back(self.SLOT_OWNER, _slot_key(job))
        self.pending.clear()
        self.watches.clear()

    def run(
        self, jobs: list[FinalJob], max_concurrent: int, resources: dict[str, float]
    ) -> list[str]:
        """Train every job (with ``max_concurrent`` slots of its own unless :meth:`attach`
        gave the study's); returns one error line per failed seed."""
        if self.slots is None:
            self.attach(TrialSlots(max_concurrent), resources)
        self.add(jobs)
        try:
            while self.busy():
                self.step(POLL_INTERVAL_S)
                if self.guard is not None:
                    self.guard.check()
        finally:
            self.cancel()
        return self.errors

    def _submit(self, job: FinalJob) -> None:
        if self._remote is None:
            import ray

            self._remote = ray.remote(train_final_seed).options(
                num_cpus=self.resources["cpu"], num_gpus=self.resources["gpu"], max_retries=2
            )
        job.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        watch = RunWatch(job, self.metric, self.spec.final_extend_max_epochs)
        ref = self._remote.remote(
            job.config,
            str(job.checkpoint_dir),
            watch.attempt,
            self.metric,
            self.spec.final_extend_max_epochs,
        )
        self.pending[ref] = job
        self.watches[ref] = watch
        self._show_running()

    def _collect(self, ref: Any, job: FinalJob) -> str | None:
        import ray

        try:
            payload = ray.get(ref)
        except Exception as error:  # the worker died even after Ray's retries
            return error_message(error)
        if "error" in payload:
            return str(payload["error"])
        write_json_atomic(job.output, payload["result"])
        shutil.rmtree(job.checkpoint_dir, ignore_errors=True)
        self.done[job.cell_id] += 1
        return None

    def _concurrency(self) -> int:
        """Runs at once: the study's slots, or before Ray starts what the spec asks (else 1)."""
        if self.slots is not None:
            return self.slots.total
        return self.spec.resources.max_concurrent or 1

    def _show_running(self) -> None:
        running: dict[str, int] = {}
        for job in self.pending.values():
            running[job.cell_id] = running.get(job.cell_id, 0) + 1
        for cell_id in self.totals:
            self.show(cell_id, running.get(cell_id, 0))


def _slot_key(job: FinalJob) -> str:
    """A run's name in the study's slots: its cell, seed and row."""
    return f"{job.cell_id}:{job.seed}:{'reference' if job.reference else 'tuned'}"
