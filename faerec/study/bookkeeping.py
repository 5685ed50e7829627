"""The driver's records of a study, kept without Ray: what the report and ``status`` read.

* :class:`ExperimentIndex`: ``tune/experiments.json``, the Tune experiments of a cell (one per
  search round; a round left ``running`` by a stopped driver becomes ``interrupted``);
* :class:`CellMonitor`: follows a cell's search (the searcher calls it) and keeps
  ``trials.csv``, ``epochs.csv``, ``best.json`` and the progress line current; it works on any
  object with Optuna's ``get_trials(deepcopy=False)``;
* :func:`trial_row`, :func:`best_record`, :func:`search_progress`: those files' content from
  Optuna's FrozenTrials;
* :func:`prepare_store`, :func:`touch_study_json`, :func:`write_results_csv`: the study-level
  files (docs/store-layout.md).
"""

from __future__ import annotations

import json
import platform
import time
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml

from faerec.errors import FaerecError
from faerec.results import EPOCHS_COUNTED_FROM
from faerec.study.progress import ProgressView, show_trial_epoch
from faerec.study.spec import Cell, StudySpec, changed_keys, spec_hash
from faerec.study.store import (
    CellStore,
    StudyStore,
    count_trials,
    read_csv,
    read_json,
    write_json_atomic,
    write_text_atomic,
)
from faerec.study.trainable import HISTORY_KEY, VALID_PREFIX

#: epochs.csv is rewritten at most this often while trials run (and at every trial's end)
EPOCHS_WRITE_INTERVAL_S = 5.0


class ExperimentIndex:
    """``tune/experiments.json``: the Tune experiments of a cell and whether each finished."""

    def __init__(self, tune_dir: Path) -> None:
        self.tune_dir = tune_dir
        self.path = tune_dir / "experiments.json"
        self.entries: list[dict[str, Any]] = (
            read_json(self.path)["experiments"] if self.path.exists() else []
        )

    def close_interrupted(self) -> list[str]:
        """Mark experiments a stopped driver left ``running`` as ``interrupted`` (no Tune
        experiment is ever restored: Optuna holds what finished); returns their names."""
        names = [e["name"] for e in self.entries if e["status"] == "running"]
        for entry in self.entries:
            if entry["status"] == "running":
                entry["status"] = "interrupted"
        if names:
            self._save()
        return names

    def new(self, num_samples: int) -> dict[str, Any]:
        """A new experiment, named after the first ``search-NNN`` that is not taken."""
        taken = {e["name"] for e in self.entries}
        number = len(self.entries) + 1
        while f"search-{number:03d}" in taken or (self.tune_dir / f"search-{number:03d}").exists():
            number += 1
        entry = {
            "name": f"search-{number:03d}",
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
        self.epochs_from = cell_store.epochs_from()
        for row in read_csv(cell_store.epochs_csv):
            self.epoch_rows[(int(row["trial"]), int(row["epoch"]))] = row
        self._last_epochs_write = 0.0
        self._epochs_dirty = False
        #: trials running now (read by the signal handler: a plain set, no locks)
        self.running: set[int] = set()

    # SearchMonitor
    def trial_started(self, number: int, params: dict[str, Any]) -> None:
        self.running.add(number)
        self.refresh(write_files=True)

    def trial_result(self, number: int, result: dict[str, Any]) -> None:
        if HISTORY_KEY in result:  # a trial resumed from a checkpoint: the epochs before it
            for earlier in json.loads(result[HISTORY_KEY]):
                row = epoch_row(number, earlier, self.epochs_from)
                self.epoch_rows[(number, int(row["epoch"]))] = row
        if "epoch" not in result:
            return
        row = epoch_row(number, result, self.epochs_from)
        self.epoch_rows[(number, int(row["epoch"]))] = row
        show_trial_epoch(self.progress, self.spec, self.cell, number, result)
        self._epochs_dirty = True
        if time.monotonic() - self._last_epochs_write >= EPOCHS_WRITE_INTERVAL_S:
            self.write_epochs()

    def trial_finished(self, number: int) -> None:
        self.running.discard(number)
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


def epoch_row(number: int, result: dict[str, Any], epochs_from: int = 1) -> dict[str, Any]:
    """One epochs.csv row from a trial's epoch result (faerec.study.trainable's keys, whose
    ``epoch`` is the 0-based index), its epoch counted from ``epochs_from``."""
    row: dict[str, Any] = {"trial": number, "epoch": int(result["epoch"]) + epochs_from}
    for key in ("loss", "seconds", "cpu_seconds", "w_item", "w_feat"):
        if key in result:
            row[key] = result[key]
    for key, value in result.items():
        if isinstance(key, str) and key.startswith(VALID_PREFIX):
            row[key[len(VALID_PREFIX) :]] = value
    return row


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
    # the ETA is the view's, from the epochs it sees (faerec.study.progress)
    return {
        "stage": "search",
        "target": target,
        "running": counts.running,
        "trials": counts,
        "best": best,
        "concurrency": concurrency,
    }


# --- study files ------------------------------------------------------------------------------


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
    previous: dict[str, Any] = {}
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
            # a new study counts epochs from 1 in epochs.csv; an older one keeps counting from 0
            EPOCHS_COUNTED_FROM: previous.get(EPOCHS_COUNTED_FROM, 0) if previous else 1,
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
        # the spec keeps the user's order: `resume` rebuilds the search space from it, and
        # Optuna refuses a categorical whose choices come back in another order
        sort_keys=False,
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
    write_json_atomic(store.study_json, payload, sort_keys=False)


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
