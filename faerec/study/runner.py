"""The study driver: per cell an Optuna study run by Ray Tune, then the final stage, the report.

One process coordinates everything (the "driver"). For each cell that has a search space it
opens the cell's Optuna study (``cells/<id>/optuna.journal``, or the spec's RDB ``storage``) and
runs Ray Tune experiments under ``cells/<id>/tune/`` until the study holds ``search.trials``
finished trials:

* an unfinished experiment is restored (``Tuner.restore(..., resume_errored=True)``): finished
  trials are never re-run and running ones continue from their last checkpoint;
* otherwise a new experiment continues the same Optuna study with only the missing trials, after
  failing (and re-enqueueing once) the trials a killed driver left RUNNING, with the sampler
  reseeded by the number of trials so far (no configuration is proposed twice).

``tune/experiments.json`` records which experiments finished. Ctrl-C and SIGTERM both become
Tune's graceful stop (SIGUSR1, docs/ray-tune-notes.md §Signals); the driver notices them itself
and ends with
:class:`StudyInterrupted` (exit code 3). The driver reaches training only through
:mod:`faerec.study.trainable` and :mod:`faerec.study.final`, which call ``run_trial``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import platform
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from types import FrameType
from typing import Any, TextIO, cast

import yaml

from faerec.errors import FaerecError
from faerec.study.progress import ProgressView, show_trial_epoch
from faerec.study.spec import Cell, StudySpec, changed_keys, spec_hash
from faerec.study.store import (
    CellStore,
    StudyStore,
    count_trials,
    optuna_study_name,
    read_csv,
    read_json,
    write_json_atomic,
    write_text_atomic,
)
from faerec.study.trainable import CELL_KEY, VALID_PREFIX, objective_keys
from faerec.text import plural

#: Ray and Tune settings for a quiet, local, resumable run
#: (docs/ray-tune-notes.md §Quiet local settings)
QUIET_RAY_ENVIRONMENT = {
    "RAY_AUTH_MODE": "disabled",
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_AIR_NEW_OUTPUT": "0",
    "RAY_CHDIR_TO_TRIAL_DIR": "0",
    "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "0",
    "RAY_TRAIN_ENABLE_V2_MIGRATION_WARNINGS": "0",
}
#: settings the driver depends on, always set: the driver handles SIGINT itself, and epochs before
#: the first validation report no objective (the schedulers ignore them)
REQUIRED_TUNE_ENVIRONMENT = {
    "TUNE_DISABLE_SIGINT_HANDLER": "1",
    "TUNE_DISABLE_STRICT_METRIC_CHECKING": "1",
}
#: epochs.csv is rewritten at most this often while trials run (and at every trial's end)
EPOCHS_WRITE_INTERVAL_S = 5.0


class StudyInterrupted(FaerecError):
    """Ctrl-C or SIGTERM: the state is saved; running the study again resumes it."""

    exit_code = 3


@dataclass
class RunOptions:
    studies_dir: Path
    reports_dir: Path
    address: str | None = None
    max_concurrent: int | None = None
    command: str = ""
    progress_stream: TextIO | None = None


# --- signals -----------------------------------------------------------------------------------


class InterruptGuard:
    """Turns SIGINT and SIGTERM into Tune's graceful stop and remembers that it happened.

    Tune stops a running ``fit()`` cleanly on SIGUSR1 (it saves the experiment state); SIGTERM
    would otherwise abort the process through Ray's handler (docs/ray-tune-notes.md §Signals).
    A second signal raises KeyboardInterrupt, for a user who really wants out now.
    """

    def __init__(self) -> None:
        self.interrupted = False
        self._previous: dict[int, Any] = {}
        self._active = False

    def __enter__(self) -> InterruptGuard:
        if threading.current_thread() is not threading.main_thread():
            return self
        self._active = True
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1):
            self._previous[signum] = signal.getsignal(signum)
        signal.signal(signal.SIGINT, self._on_signal)
        signal.signal(signal.SIGTERM, self._on_signal)
        # Tune installs its own SIGUSR1 handler inside fit(); outside fit() ours ignores it.
        signal.signal(signal.SIGUSR1, lambda signum, frame: None)
        return self

    def reinstall(self) -> None:
        """ray.init() installs a SIGTERM handler that aborts the process; take SIGTERM back."""
        if self._active:
            signal.signal(signal.SIGTERM, self._on_signal)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self.interrupted:
            raise KeyboardInterrupt
        self.interrupted = True
        os.kill(os.getpid(), signal.SIGUSR1)

    def check(self) -> None:
        if self.interrupted:
            raise StudyInterrupted("interrupted")

    def __exit__(self, *exc: object) -> None:
        if not self._active:
            return
        for signum, handler in self._previous.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
        self._active = False


# --- Ray ---------------------------------------------------------------------------------------


class RaySession:
    """Starts Ray on first use (a finished study never starts it) and stops what it started."""

    def __init__(self, address: str | None, guard: InterruptGuard, progress: ProgressView) -> None:
        self.address = address or os.environ.get("RAY_ADDRESS") or None
        self.guard = guard
        self.progress = progress
        self._started = False
        self._ready = False

    def ensure(self) -> None:
        if self._ready:
            return
        for key, value in QUIET_RAY_ENVIRONMENT.items():
            if key != "RAY_AUTH_MODE" or not self.address:  # a cluster's auth is its own
                os.environ.setdefault(key, value)
        os.environ.update(REQUIRED_TUNE_ENVIRONMENT)
        import optuna
        import ray

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        if not ray.is_initialized():
            if self.address:
                self.progress.message(f"ray: joining the cluster at {self.address}")
                ray.init(address=self.address, log_to_driver=False, logging_level=logging.ERROR)
            else:
                self.progress.message(f"ray: starting a local Ray ({os.cpu_count()} CPUs)")
                ray.init(
                    num_cpus=os.cpu_count(),
                    include_dashboard=False,
                    log_to_driver=False,
                    logging_level=logging.ERROR,
                    _temp_dir=_short_temp_dir(),
                )
            self._started = True
        logging.getLogger("ray").setLevel(logging.ERROR)
        self.guard.reinstall()
        self._ready = True

    def resources(self) -> dict[str, float]:
        import ray

        return {k: float(v) for k, v in ray.cluster_resources().items()}

    def shutdown(self) -> None:
        if self._started:
            import ray

            ray.shutdown()
            self._started = False
        self._ready = False


def _short_temp_dir() -> str:
    """Ray puts Unix sockets under its temp dir; their paths must stay under ~107 characters."""
    candidate = Path(tempfile.gettempdir()) / "ray"
    return str(candidate) if len(str(candidate)) < 40 else "/tmp/ray"


# --- per-cell bookkeeping ----------------------------------------------------------------------


class ExperimentIndex:
    """``tune/experiments.json``: the Tune experiments of a cell and whether each finished."""

    def __init__(self, tune_dir: Path) -> None:
        self.tune_dir = tune_dir
        self.path = tune_dir / "experiments.json"
        self.entries: list[dict[str, Any]] = (
            read_json(self.path)["experiments"] if self.path.exists() else []
        )

    def unfinished(self) -> dict[str, Any] | None:
        for entry in self.entries:
            if entry["status"] == "running":
                return entry
        return None

    def new(self, num_samples: int) -> dict[str, Any]:
        entry = {
            "name": f"search-{len(self.entries) + 1:03d}",
            "num_samples": num_samples,
            "status": "running",
        }
        self.entries.append(entry)
        self._save()
        return entry

    def mark(self, entry: dict[str, Any], status: str) -> None:
        entry["status"] = status
        self._save()

    def _save(self) -> None:
        write_json_atomic(self.path, {"experiments": self.entries})


class CellMonitor:
    """The driver's view of one cell's search: keeps trials.csv, epochs.csv, best.json and the
    progress line current. The searcher calls it (see ``faerec.study.searcher.SearchMonitor``)."""

    def __init__(
        self,
        spec: StudySpec,
        cell: Cell,
        cell_store: CellStore,
        study: Any,
        progress: ProgressView,
        target: int,
        concurrency: int,
    ) -> None:
        self.spec = spec
        self.cell = cell
        self.store = cell_store
        self.study = study
        self.progress = progress
        self.target = target
        self.concurrency = max(1, concurrency)
        self.epoch_rows: dict[tuple[int, int], dict[str, Any]] = {}
        for row in read_csv(cell_store.epochs_csv):
            self.epoch_rows[(int(row["trial"]), int(row["epoch"]))] = row
        self._last_epochs_write = 0.0
        self._epochs_dirty = False

    # SearchMonitor
    def trial_started(self, number: int, params: dict[str, Any]) -> None:
        self.refresh(write_files=True)

    def trial_result(self, number: int, result: dict[str, Any]) -> None:
        if "epoch" not in result:
            return
        row: dict[str, Any] = {"trial": number, "epoch": result["epoch"]}
        for key in ("loss", "seconds", "w_item", "w_feat"):
            if key in result:
                row[key] = result[key]
        for key, value in result.items():
            if isinstance(key, str) and key.startswith(VALID_PREFIX):
                row[key[len(VALID_PREFIX) :]] = value
        self.epoch_rows[(number, int(result["epoch"]))] = row
        show_trial_epoch(self.progress, self.spec, self.cell, number, result)
        self._epochs_dirty = True
        if time.monotonic() - self._last_epochs_write >= EPOCHS_WRITE_INTERVAL_S:
            self.write_epochs()

    def trial_finished(self, number: int) -> None:
        self.progress.trial_done(self.cell.cell_id, number)
        self.refresh(write_files=True)

    # files and progress
    def write_epochs(self) -> None:
        rows = [self.epoch_rows[key] for key in sorted(self.epoch_rows)]
        self.store.write_epochs(rows)
        self._last_epochs_write = time.monotonic()
        self._epochs_dirty = False

    def refresh(self, write_files: bool) -> None:
        trials = self.study.get_trials(deepcopy=False)
        if write_files:
            if self._epochs_dirty:
                self.write_epochs()
            self.store.write_trials(
                [trial_row(t) for t in trials if t.state.name != "WAITING"],
                extra_value_columns=len(self.spec.search.objectives) - 1,
            )
            best = best_record(self.spec, self.cell, trials)
            if best is not None:
                self.store.write_best(best, self.spec.search.objectives[0].direction)
        self.progress.update(
            self.cell.cell_id, **search_progress(self.spec, trials, self.target, self.concurrency)
        )


def trial_row(trial: Any) -> dict[str, Any]:
    """One trials.csv row from an Optuna FrozenTrial."""
    state = trial.state.name
    values: list[float | None] = list(trial.values) if trial.values else []
    if state == "PRUNED" and trial.intermediate_values:
        values = [trial.intermediate_values[max(trial.intermediate_values)]]
    row: dict[str, Any] = {
        "number": trial.number,
        "state": state,
        "value": values[0] if values else None,
        "epochs": trial.user_attrs.get("epochs"),
        "seconds": trial.user_attrs.get("seconds"),
        "error": trial.user_attrs.get("error", ""),
        "params": json.dumps(trial.params, sort_keys=True),
        "retry_of": trial.user_attrs.get("retry_of"),
    }
    if (
        row["seconds"] is None
        and trial.datetime_start is not None
        and trial.datetime_complete is not None
    ):
        row["seconds"] = (trial.datetime_complete - trial.datetime_start).total_seconds()
    for index, value in enumerate(values[1:], start=1):
        row[f"value_{index}"] = value
    return row


def best_record(spec: StudySpec, cell: Cell, trials: list[Any]) -> dict[str, Any] | None:
    """best.json of a searched cell: the best COMPLETE trial (several metrics: the Pareto front,
    and of it the trial best on the first metric)."""
    complete = [t for t in trials if t.state.name == "COMPLETE" and t.values]
    if not complete:
        return None
    objectives = spec.search.objectives

    def dominates(a: Any, b: Any) -> bool:
        better_or_equal = all(
            (x >= y if o.direction == "maximize" else x <= y)
            for x, y, o in zip(a.values, b.values, objectives, strict=True)
        )
        return better_or_equal and tuple(a.values) != tuple(b.values)

    sign = 1.0 if objectives[0].direction == "maximize" else -1.0
    best = max(complete, key=lambda t: (sign * t.values[0], -t.number))
    record: dict[str, Any] = {
        "params": dict(best.params),
        "value": float(best.values[0]),
        "trial": best.number,
        "metric": objectives[0].metric,
        "config": spec.cell_config(cell, dict(best.params)).to_dict(),
    }
    if len(objectives) > 1:
        front = [t for t in complete if not any(dominates(o, t) for o in complete)]
        record["values"] = [float(v) for v in best.values]
        record["metrics"] = [o.metric for o in objectives]
        record["pareto"] = [
            {"trial": t.number, "values": [float(v) for v in t.values], "params": dict(t.params)}
            for t in sorted(front, key=lambda t: t.number)
        ]
    return record


def search_progress(
    spec: StudySpec, trials: list[Any], target: int, concurrency: int
) -> dict[str, Any]:
    """Fields of a cell's progress line from its Optuna trials."""
    counts = count_trials(trials)
    complete = [t for t in trials if t.state.name == "COMPLETE" and t.values]
    best = ""
    if complete:
        if spec.multi_objective:
            best = f"{len(complete)} on the front" if len(complete) == 1 else "see best.json"
        else:
            sign = 1.0 if spec.search.objectives[0].direction == "maximize" else -1.0
            top = max(complete, key=lambda t: sign * t.values[0])
            best = f"{top.values[0]:.4f} (#{top.number})"
    durations = [
        (t.datetime_complete - t.datetime_start).total_seconds()
        for t in trials
        if t.state.name in ("COMPLETE", "PRUNED") and t.datetime_start and t.datetime_complete
    ]
    eta_at = None
    if durations and target > counts.done:
        mean = sum(durations) / len(durations)
        eta_at = time.monotonic() + mean * math.ceil((target - counts.done) / concurrency)
    return {
        "stage": "search",
        "target": target,
        "running": counts.running,
        "complete": counts.complete,
        "pruned": counts.pruned,
        "failed": counts.failed,
        "best": best,
        "eta_at": eta_at,
    }


# --- the study ---------------------------------------------------------------------------------


@dataclass
class CellOutcome:
    cell_id: str
    errors: list[str] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return bool(self.errors)


class StudyRunner:
    """Runs one study to completion (or to an interruption) and returns the exit code."""

    def __init__(self, spec: StudySpec, options: RunOptions) -> None:
        self.spec = spec
        self.options = options
        self.store = StudyStore.at(options.studies_dir, spec.name)
        self.progress = ProgressView(options.progress_stream)
        self.guard = InterruptGuard()
        self.ray = RaySession(options.address, self.guard, self.progress)

    # -- top level -----------------------------------------------------------------------

    def run(self) -> int:
        prepare_store(self.spec, self.store, self.options.command)
        for cell in self.spec.cells():
            self.progress.add_cell(cell.cell_id)
        outcomes: list[CellOutcome] = []
        final_errors: list[str] = []
        try:
            with self.guard:
                for cell in self.spec.cells():
                    self.guard.check()
                    if cell.space is None:
                        self.write_preset_best(cell)
                        self.progress.update(
                            cell.cell_id, stage="preset", best="preset configuration"
                        )
                        continue
                    outcomes.append(self.search_cell(cell))
                self.guard.check()
                failed = {o.cell_id for o in outcomes if o.failed}
                final_errors = self.final_stage(failed)
                self.guard.check()
        except StudyInterrupted:
            self.progress.close()
            hint = f"faerec-study resume {self.spec.name}"
            default_dir = Path("studies").resolve()
            if self.store.root.parent != default_dir:
                hint += f" --studies-dir {self.store.root.parent}"
            print(f"interrupted; resume with: {hint}", file=sys.stderr)
            return StudyInterrupted.exit_code
        finally:
            self.progress.close()
            self.ray.shutdown()
        has_results = write_results_csv(self.spec, self.store) > 0
        touch_study_json(self.store)
        problems = [error for o in outcomes for error in o.errors] + final_errors
        if has_results:
            self.build_report(incomplete=bool(problems))
        else:
            self.progress.message("report: skipped, no final results yet")
        if problems:
            print("faerec-study: some cells failed:", file=sys.stderr)
            for line in problems:
                print(f"  {line}", file=sys.stderr)
            return 1
        return 0

    # -- search --------------------------------------------------------------------------

    def search_cell(self, cell: Cell) -> CellOutcome:
        import optuna

        from faerec.study.reference import enqueue_reference, note_reference
        from faerec.study.searcher import (
            count_done,
            fail_stale_trials,
            open_storage,
            register_monitor,
        )

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        cell_store = self.store.cell(cell.cell_id)
        storage = open_storage(self.spec.storage, str(cell_store.journal))
        study_name = self.study_name(cell)
        study = optuna.create_study(
            study_name=study_name,
            storage=storage,
            load_if_exists=True,
            directions=[cast(Any, o.direction) for o in self.spec.search.objectives],
        )
        note_reference(self.progress, cell, enqueue_reference(study, self.spec, cell))
        target = self.spec.trials_for(cell)
        index = ExperimentIndex(cell_store.tune_dir)
        concurrency = 1
        monitor = CellMonitor(
            self.spec, cell, cell_store, study, self.progress, target, concurrency
        )
        register_monitor(cell.cell_id, monitor)
        try:
            while True:
                self.guard.check()
                experiment = index.unfinished()
                restored = experiment is not None and has_saved_state(
                    cell_store.tune_dir / experiment["name"]
                )
                if not restored:  # no Tune state will resume them (a restored searcher checks)
                    fail_stale_trials(study)
                if experiment is None and count_done(study.get_trials(deepcopy=False)) >= target:
                    break
                self.ray.ensure()
                concurrency = self.concurrency()
                monitor.concurrency = concurrency
                from ray import tune

                if experiment is not None and restored:
                    tuner = tune.Tuner.restore(
                        str(cell_store.tune_dir / experiment["name"]),
                        trainable=self.trainable(),
                        resume_errored=True,
                        # restated: trials created after a restore would otherwise lack it
                        param_space=self.param_space(cell),
                    )
                else:
                    if experiment is not None:  # killed before Tune saved anything: start over
                        index.mark(experiment, "abandoned")
                    remaining = target - count_done(study.get_trials(deepcopy=False))
                    if remaining <= 0:
                        break
                    experiment = index.new(remaining)
                    tuner = self.new_tuner(cell, study_name, storage, experiment, concurrency)
                monitor.refresh(write_files=False)
                done_before = count_done(study.get_trials(deepcopy=False))
                tuner.fit()
                self.guard.check()
                index.mark(experiment, "finished")
                if not restored and count_done(study.get_trials(deepcopy=False)) == done_before:
                    raise FaerecError(
                        f"{cell.cell_id}: a search round finished without adding a trial; "
                        f"see {cell_store.tune_dir / experiment['name']}"
                    )
                remove_checkpoints(cell_store.tune_dir / experiment["name"])
        finally:
            monitor.refresh(write_files=True)
            register_monitor(cell.cell_id, None)
        return self.cell_outcome(cell, study.get_trials(deepcopy=False))

    def study_name(self, cell: Cell) -> str:
        """cell_id in the cell's own journal; with a shared database, prefixed by the study."""
        return optuna_study_name(self.spec.name, cell.cell_id, self.spec.storage)

    def concurrency(self) -> int:
        if self.options.max_concurrent:
            return self.options.max_concurrent
        if self.spec.resources.max_concurrent:
            return self.spec.resources.max_concurrent
        cpus = self.ray.resources().get("CPU", 1.0)
        return max(1, int(cpus // self.spec.resources.cpus_per_trial))

    def trial_resources(self) -> dict[str, float]:
        """CPUs as asked; GPUs only where the cluster has some (a GPU request on a CPU-only
        machine would leave the trial pending forever, docs/ray-tune-notes.md §Resources)."""
        has_gpu = self.ray.resources().get("GPU", 0.0) > 0
        return {
            "cpu": self.spec.resources.cpus_per_trial,
            "gpu": self.spec.resources.gpus_per_trial if has_gpu else 0.0,
        }

    def trainable(self) -> Any:
        from ray import tune

        from faerec.study.trainable import train_trial

        return tune.with_resources(train_trial, self.trial_resources())

    def new_tuner(
        self,
        cell: Cell,
        study_name: str,
        storage: Any,
        experiment: dict[str, Any],
        concurrency: int,
    ) -> Any:
        from ray import tune

        from faerec.study.searcher import StudyOptunaSearch

        objectives = self.spec.search.objectives
        keys = objective_keys(len(objectives))
        assert cell.space is not None
        searcher = StudyOptunaSearch(
            space=cell.space,
            metric=keys[0] if len(keys) == 1 else keys,
            mode=objectives[0].mode if len(keys) == 1 else [o.mode for o in objectives],
            storage=storage,
            study_name=study_name,
            cell_id=cell.cell_id,
            sampler_kind=self.spec.search.sampler,
            base_seed=self.spec.search.seed,
        )
        base = self.spec.cell_config(cell)
        return tune.Tuner(
            self.trainable(),
            param_space=self.param_space(cell),
            tune_config=tune.TuneConfig(
                search_alg=searcher,
                scheduler=make_scheduler(
                    self.spec, base.train.eval_start_epoch, base.train.max_epochs
                ),
                metric=keys[0],
                mode=objectives[0].mode,
                num_samples=experiment["num_samples"],
                max_concurrent_trials=concurrency,
                reuse_actors=True,
                trial_name_creator=trial_name,
                trial_dirname_creator=trial_name,
            ),
            run_config=tune.RunConfig(
                name=experiment["name"],
                storage_path=str(self.store.cell(cell.cell_id).tune_dir),
                verbose=0,
                checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
                failure_config=tune.FailureConfig(max_failures=self.spec.resources.max_failures),
            ),
        )

    def param_space(self, cell: Cell) -> dict[str, Any]:
        """What every trial of the cell gets besides its parameters (plain, absolute values)."""
        payload = {
            "dataset": cell.dataset,
            "backbone": cell.backbone,
            "method": cell.method,
            "preset": self.spec.preset,
            "overrides": self.spec.overrides(),
            "objectives": [dataclasses.asdict(o) for o in self.spec.search.objectives],
        }
        return {CELL_KEY: payload}

    def cell_outcome(self, cell: Cell, trials: list[Any]) -> CellOutcome:
        """A cell fails when it has trials and every one of them failed."""
        outcome = CellOutcome(cell.cell_id)
        finished = [t for t in trials if t.state.name in ("COMPLETE", "PRUNED", "FAIL")]
        if finished and all(t.state.name == "FAIL" for t in finished):
            messages = Counter(t.user_attrs.get("error", "unknown error") for t in finished)
            summary = "; ".join(f"{m} ({plural(n, 'trial')})" for m, n in messages.most_common())
            outcome.errors.append(
                f"{cell.cell_id}: all {plural(len(finished), 'trial')} failed: {summary}"
            )
            self.progress.update(cell.cell_id, stage="failed", running=0, eta_at=None)
        return outcome

    def write_preset_best(self, cell: Cell) -> None:
        """A cell without a space has no trials: its 'best' configuration is its preset."""
        record = {
            "params": {},
            "value": None,
            "trial": None,
            "metric": self.spec.search.objectives[0].metric,
            "config": self.spec.cell_config(cell).to_dict(),
        }
        write_json_atomic(self.store.cell(cell.cell_id).best_json, record)

    # -- final stage and report -----------------------------------------------------------

    def final_stage(self, failed_cells: set[str]) -> list[str]:
        from faerec.study.final import FinalStage

        stage = FinalStage(self.spec, self.store, self.progress, self.guard)
        jobs = stage.plan([c for c in self.spec.cells() if c.cell_id not in failed_cells])
        if not jobs:
            return []
        self.ray.ensure()
        return stage.run(jobs, self.concurrency(), self.trial_resources())

    def build_report(self, incomplete: bool) -> None:
        """The report of the study; with failed cells, a report of the cells that have results."""
        try:
            from faerec.report import build_report
        except ImportError:
            where = self.store.results_csv
            self.progress.message(f"report: faerec.report.build_report is missing; see {where}")
            return
        out_dir = Path(self.options.reports_dir).resolve() / self.spec.name
        build_report(
            [self.store.root],
            out_dir,
            list(self.spec.report_formats),
            command=self.options.command or None,
            allow_incomplete=incomplete,
        )
        self.progress.message(f"report: {out_dir}")


def has_saved_state(experiment_dir: Path) -> bool:
    """Whether Tune saved the experiment's state at least once.

    ``Tuner.can_restore`` only looks for ``tuner.pkl``, which Tune writes before any trial
    starts; a driver killed before the first state snapshot leaves nothing to resume, and
    restoring it would silently start over with the searcher's original seed.
    """
    return any(experiment_dir.glob("experiment_state-*.json"))


def remove_checkpoints(experiment_dir: Path) -> None:
    """A finished experiment is never restored: its trials' checkpoints are dead weight (tens of
    MB per trial on real data)."""
    for checkpoint in experiment_dir.glob("*/checkpoint_*"):
        shutil.rmtree(checkpoint, ignore_errors=True)


def trial_name(trial: Any) -> str:
    """Short Tune trial names and folders (the default embeds every parameter)."""
    return f"trial_{trial.trial_id}"


def make_scheduler(spec: StudySpec, eval_start_epoch: int, max_epochs: int) -> Any:
    """ASHA, the median rule, or none; measured in epochs (``training_iteration``).

    No trial is judged before it has validated: the grace period is at least the epoch at which
    validation starts. ``max_t`` is one past the last epoch because the trainable's closing
    report (with the final objective) is one more iteration.
    """
    settings = spec.scheduler
    if settings.type == "none":
        return None
    grace = min(max(settings.grace_epochs, eval_start_epoch + 1), max_epochs)
    if settings.type == "asha":
        from ray.tune.schedulers import ASHAScheduler

        return ASHAScheduler(
            time_attr="training_iteration",
            max_t=max_epochs + 1,
            grace_period=grace,
            reduction_factor=settings.reduction_factor,
        )
    from faerec.study.searcher import ContinuingMedianStoppingRule

    return ContinuingMedianStoppingRule(
        time_attr="training_iteration",
        grace_period=grace,
        min_samples_required=settings.min_samples,
        hard_stop=True,
    )


# --- store files -------------------------------------------------------------------------------


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def prepare_store(spec: StudySpec, store: StudyStore, command: str) -> None:
    """Create or re-open ``studies/<name>/``; refuse a spec that changed what results mean."""
    spec_dict = spec.to_dict()
    created = _now()
    if store.exists():
        previous = store.load_study_json()
        changes = changed_keys(previous["spec"], spec_dict)
        if changes:
            raise FaerecError(
                f"{spec.source}: the study {spec.name!r} in {store.root} was run with a different "
                f"spec; these changes would mix incompatible results: {', '.join(changes)}. "
                "Restore them or choose a new name (search.trials, final.seeds, description, "
                "report, resources, search.sampler and search.seed may change)",
                exit_code=2,
            )
        created = previous.get("created", created)
    text = spec.text or yaml.safe_dump(spec_dict, sort_keys=False)
    write_text_atomic(store.spec_yaml, text)
    write_json_atomic(
        store.study_json,
        {
            "name": spec.name,
            "description": spec.description,
            "spec_hash": spec_hash(spec_dict),
            "spec": spec_dict,
            "created": created,
            "updated": _now(),
            "command": command,
            "versions": {
                "faerec": _version("faerec-study"),
                "torch": _version("torch"),
                "optuna": _version("optuna"),
                "ray": _version("ray"),
                "python": platform.python_version(),
            },
            "cells": [c.cell_id for c in spec.cells()],
        },
    )
    for cell in spec.cells():
        write_json_atomic(
            store.cell(cell.cell_id).cell_json,
            {
                "cell_id": cell.cell_id,
                "dataset": cell.dataset_label,
                "dataset_source": cell.dataset,
                "backbone": cell.backbone,
                "method": cell.method,
                "has_space": cell.space is not None,
                "n_trials_target": spec.trials_for(cell),
                "metric": spec.search.objectives[0].metric
                if not spec.multi_objective
                else [o.metric for o in spec.search.objectives],
                "direction": spec.search.objectives[0].direction
                if not spec.multi_objective
                else [o.direction for o in spec.search.objectives],
            },
        )


def touch_study_json(store: StudyStore) -> None:
    payload = store.load_study_json()
    payload["updated"] = _now()
    write_json_atomic(store.study_json, payload)


def write_results_csv(spec: StudySpec, store: StudyStore) -> int:
    """The tidy final-stage table over every cell and seed on disk."""
    from faerec.results import TIDY_COLUMNS
    from faerec.study.reference import reference_result_rows

    rows: list[dict[str, Any]] = []
    for cell in spec.cells():
        cell_store = store.cell(cell.cell_id)
        for seed, result in cell_store.read_seeds().items():
            for row in result.tidy_rows(spec.name, seed):
                rows.append({**row, "dataset": cell.dataset_label})
        rows += reference_result_rows(spec, cell, cell_store)
    store.write_results(TIDY_COLUMNS, rows)
    return len(rows)


def run_study(spec: StudySpec, options: RunOptions) -> int:
    """Run (or resume) a study; the exit code of ``faerec-study run``."""
    return StudyRunner(spec, options).run()
