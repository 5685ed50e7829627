"""The Ray Tune trainable: one trial = one :func:`faerec.training.run_trial` call.

This module runs inside Ray's worker processes, which import it by name (the package must be
installed). It is deliberately small: it pins torch threads to the CPUs Ray assigned, resolves the
trial's configuration, resumes from the newest readable checkpoint it is offered (Tune's, when
Tune restarts the trial; an interrupted attempt's, for a retry: :func:`restore_checkpoint`) and
reports after every epoch; a resumed trial's first report also carries its earlier epochs.
Validation scores are never about test data: the search calls ``run_trial`` with
``evaluate_test=False``.

What it reports (the searcher and the driver read these keys):

* every epoch: ``epoch`` (0-based), ``loss``, ``seconds``, ``w_item``/``w_feat``,
  ``gpu_mem_mb`` (peak GPU memory of the epoch, on a GPU),
  ``valid/<metric>`` on validated epochs, ``epochs_trained``, ``trial_seconds`` and, once a
  validation exists, the objective(s) (``objective`` or ``objective_0``, ``objective_1``...): the
  metric at the epoch early stopping currently selects. Schedulers see this value;
* at the end, one more report with ``trial_finished`` and the objective(s) read from the run's
  final validation (any group: overall, head, tail), or ``trial_error`` with a one-line message
  when the run raised. Errors are reported rather than raised, so a deterministic failure
  (a NaN loss) is recorded once and not retried; Ray still retries a worker that died.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from faerec.run_progress import say

#: config keys the driver adds to every trial (besides the searched parameters)
CELL_KEY = "faerec_cell"
TRIAL_NUMBER_KEY = "faerec_trial"
#: the Tune folders of earlier attempts of a retried trial, newest first (faerec.study.retry)
RESUME_KEY = "faerec_resume_from"
#: in the first result of a trial resumed from a checkpoint: its earlier epochs' results (JSON)
HISTORY_KEY = "faerec_earlier_epochs"
#: the config keys that are not the trial's parameters
DRIVER_KEYS = (CELL_KEY, TRIAL_NUMBER_KEY, RESUME_KEY)
#: result keys
FINISHED_KEY = "trial_finished"
ERROR_KEY = "trial_error"
EPOCHS_KEY = "epochs_trained"
SECONDS_KEY = "trial_seconds"
#: peak GPU memory of the epoch in MiB (trials on a GPU only)
GPU_MEMORY_KEY = "gpu_mem_mb"
VALID_PREFIX = "valid/"


def objective_keys(count: int) -> list[str]:
    """Result keys of the objectives: ``objective``, or ``objective_0``... for several."""
    return ["objective"] if count == 1 else [f"objective_{i}" for i in range(count)]


def error_message(error: BaseException) -> str:
    """One line for trials.csv: our errors as they are, others with their type."""
    from faerec.errors import FaerecError

    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    if not isinstance(error, FaerecError):
        text = f"{type(error).__name__}: {text}" if text else type(error).__name__
    return text[:500]


class ObjectiveTracker:
    """Turns the trainer's epoch reports into Tune results with the study's objective values."""

    def __init__(self, objectives: list[dict[str, str]], select_metric: str) -> None:
        self.objectives = objectives
        self.keys = objective_keys(len(objectives))
        self.select_metric = select_metric
        self.valid_by_epoch: dict[int, dict[str, float]] = {}

    def epoch_result(self, report: Any) -> dict[str, Any]:
        result: dict[str, Any] = {
            "epoch": report.epoch,
            "loss": report.loss,
            "seconds": report.seconds,
            EPOCHS_KEY: report.epoch + 1,
        }
        if report.cpu_seconds is not None:
            result["cpu_seconds"] = report.cpu_seconds
        for name in ("w_item", "w_feat"):
            if name in report.weights:
                result[name] = report.weights[name]
        if report.gpu_mem_mb is not None:
            result[GPU_MEMORY_KEY] = report.gpu_mem_mb
        if report.valid is not None:
            self.valid_by_epoch[report.epoch] = dict(report.valid)
            result.update({VALID_PREFIX + k: v for k, v in report.valid.items()})
        values = {}
        for key, objective in zip(self.keys, self.objectives, strict=True):
            value = self._selected_value(objective, report)
            if value is not None:
                values[key] = value
        if len(values) == len(self.keys):
            result.update(values)
        return result

    def _selected_value(self, objective: dict[str, str], report: Any) -> float | None:
        """The metric at the epoch early stopping selects so far (per-epoch metrics are overall)."""
        if objective["group"] != "overall" or report.best_epoch is None:
            return None
        if objective["name"] == self.select_metric and report.best_value is not None:
            return float(report.best_value)
        selected = self.valid_by_epoch.get(report.best_epoch, {})
        return float(selected[objective["name"]]) if objective["name"] in selected else None

    def final_result(self, run: Any) -> dict[str, Any]:
        """The objective(s) from the run's final validation (best epoch), any user group."""
        groups = {g.group: g.values for g in run.valid}
        result: dict[str, Any] = {EPOCHS_KEY: run.epochs_trained}
        for key, objective in zip(self.keys, self.objectives, strict=True):
            values = groups.get(objective["group"], {})
            if objective["name"] not in values:
                known = ", ".join(sorted(groups)) or "none"
                result[ERROR_KEY] = (
                    f"{objective['metric']} was not computed (validation groups: {known})"
                )
                return result
            result[key] = float(values[objective["name"]])
        result[FINISHED_KEY] = True
        return result


def placement_overrides(assigned: dict[str, float]) -> dict[str, Any]:
    """Settings that follow what Ray gave the trial; the study's own settings win over them.

    Torch threads = the trial's CPUs (at least one): two trials with two threads each on two
    cores run 3x slower than one thread each (docs/ray-tune-notes.md §Threads per trial). The
    device is CUDA when the trial holds a GPU or a share of one (Ray sets CUDA_VISIBLE_DEVICES
    to it), else the CPU.
    """
    return {
        "train.num_threads": max(1, int(assigned.get("CPU", 1))),
        "train.device": "auto" if assigned.get("GPU", 0) > 0 else "cpu",
    }


def train_trial(config: dict[str, Any]) -> None:
    """Tune's function trainable for one trial of a cell (see the module docstring)."""
    import ray
    from ray import tune

    started = time.perf_counter()
    cell = config[CELL_KEY]
    params = {k: v for k, v in config.items() if k not in DRIVER_KEYS}
    assigned = ray.get_runtime_context().get_assigned_resources()
    overrides = {**placement_overrides(assigned), **cell["overrides"], **params}

    def seconds() -> float:
        return time.perf_counter() - started

    try:
        from faerec.config import resolve_config
        from faerec.training import run_trial

        run_config = resolve_config(
            cell["dataset"], cell["backbone"], cell["method"], cell["preset"], overrides
        )
    except Exception as error:  # reported, not raised: a bad configuration never gets better
        tune.report({ERROR_KEY: error_message(error), SECONDS_KEY: seconds()})
        return

    tracker = ObjectiveTracker(cell["objectives"], run_config.train.select_metric)

    earlier: list[dict[str, Any]] = []

    def on_epoch(report: Any) -> None:
        result = tracker.epoch_result(report)
        result[SECONDS_KEY] = seconds()
        if earlier:  # the epochs the checkpoint holds, once: the driver's epochs.csv gets them all
            result[HISTORY_KEY] = json.dumps(earlier)
            earlier.clear()
        if report.checkpoint_dir:
            tune.report(result, checkpoint=tune.Checkpoint.from_directory(report.checkpoint_dir))
        else:
            tune.report(result)

    with tempfile.TemporaryDirectory(prefix="faerec-trial-") as workdir:
        history = restore_checkpoint(
            Path(workdir), tune.get_checkpoint(), config.get(RESUME_KEY) or []
        )
        earlier += [tracker.epoch_result(report) for report in history]
        try:
            run = run_trial(
                run_config, on_epoch=on_epoch, checkpoint_dir=workdir, evaluate_test=False
            )
        except Exception as error:
            tune.report({ERROR_KEY: error_message(error), SECONDS_KEY: seconds()})
            return
    final = tracker.final_result(run)
    if earlier:  # resumed from a checkpoint of a run that had trained all its epochs
        final[HISTORY_KEY] = json.dumps(earlier)
    final[SECONDS_KEY] = run.seconds  # the run's own time, across restarts from checkpoints
    tune.report(final)


def restore_checkpoint(workdir: Path, tune_checkpoint: Any, attempt_dirs: list[str]) -> list[Any]:
    """Fill ``workdir`` with the newest readable checkpoint of this trial; returns the epochs it
    holds (:class:`faerec.results.EpochReport`; empty: the trial starts from scratch).

    Candidates, in order: Tune's own checkpoint of this trial (Tune restarting it after its
    worker died), then the checkpoints of earlier attempts of a retried trial (folders from
    :func:`faerec.study.retry.attempt_dirs`, each newest checkpoint first). A checkpoint that is
    missing or cut short (its driver was killed while it was copied) is skipped, so a trial
    never fails for want of one.
    """
    candidates: list[tuple[str, Any]] = []
    if tune_checkpoint is not None:
        candidates.append((str(tune_checkpoint.path), tune_checkpoint.to_directory))
    for folder in attempt_dirs:
        for found in sorted(Path(folder).glob("checkpoint_*"), reverse=True):
            candidates.append((str(found), lambda to, found=found: _copy_tree(found, to)))
    for where, fill in candidates:
        _empty(workdir)
        try:
            fill(str(workdir))
        except Exception as error:  # a folder deleted or half-copied under us
            _warn(f"checkpoint {where} is unusable ({error_message(error)})")
            continue
        history, problem = read_checkpoint(workdir)
        if problem is None:
            _warn(f"resuming from {where}")
            return history
        _warn(f"checkpoint {where} is unusable ({problem})")
    _empty(workdir)
    if candidates:
        _warn("no usable checkpoint: the trial starts from scratch")
    return []


def read_checkpoint(folder: Path) -> tuple[list[Any], str | None]:
    """(the epochs of the checkpoint in ``folder``, why training cannot resume from it or None)."""
    import torch

    from faerec.results import EpochReport
    from faerec.training import CHECKPOINT_FILE, CHECKPOINT_FORMAT

    path = folder / CHECKPOINT_FILE
    if not path.is_file():
        return [], f"no {CHECKPOINT_FILE}"
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        return [], f"{CHECKPOINT_FILE} cannot be read: {error_message(error)}"
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        return [], f"{CHECKPOINT_FILE} is not a format-{CHECKPOINT_FORMAT} checkpoint"
    try:
        return [EpochReport(**report) for report in payload.get("history", [])], None
    except TypeError as error:
        return [], f"{CHECKPOINT_FILE} has an unknown epoch history ({error})"


def _copy_tree(source: Path, target: str) -> None:
    shutil.copytree(source, target, dirs_exist_ok=True)


def _empty(folder: Path) -> None:
    for child in folder.iterdir():
        if child.is_dir():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)


def _warn(text: str) -> None:
    """To the trial's log (the worker's stderr, a file: timestamped)."""
    say(f"faerec-study trial: {text}")
