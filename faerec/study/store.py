"""The study store: ``studies/<name>/`` exactly as docs/store-layout.md describes it.

The report reads only these files, and a killed run must never leave a half-written one, so
every write goes through :mod:`faerec.atomic` (a temporary file in the same folder, then
``os.replace``). This module knows paths and file formats only: no Optuna, no Ray, no torch.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from faerec.atomic import write_bytes_atomic, write_json_atomic, write_text_atomic
from faerec.errors import FaerecError

__all__ = [
    "CellStore",
    "StudyStore",
    "TrialCounts",
    "count_trials",
    "read_csv",
    "read_json",
    "write_bytes_atomic",
    "write_csv_atomic",
    "write_json_atomic",
    "write_text_atomic",
]

TRIAL_COLUMNS = ("number", "state", "value", "epochs", "seconds", "error", "params", "retry_of")
#: trial states that have ended (the trial will never run again)
FINISHED_STATES = ("COMPLETE", "PRUNED", "FAIL")
#: the states a trials.csv row can have
TRIAL_STATES = (*FINISHED_STATES, "RUNNING")
EPOCH_COLUMNS_HEAD = ("trial", "epoch", "loss")
EPOCH_COLUMNS_TAIL = ("seconds", "w_item", "w_feat")


# --- trial counts (the one definition of "trials done") -----------------------------------------


@dataclass(frozen=True)
class TrialCounts:
    """A cell's trials by state.

    ``done`` is what counts towards the cell's trial target: COMPLETE, PRUNED and FAIL trials
    (a failed configuration was tried; running it again would most likely fail again), but not
    ``interrupted`` ones: a FAIL that a stopped driver left behind and whose parameters were
    enqueued again (some trial has ``retry_of`` = its number), because the retry stands in for it.
    ``running`` and ``waiting`` (enqueued, not started) do not count.
    """

    complete: int = 0
    pruned: int = 0
    failed: int = 0
    running: int = 0
    interrupted: int = 0
    waiting: int = 0

    @property
    def done(self) -> int:
        return self.complete + self.pruned + self.failed

    @property
    def total(self) -> int:
        return self.done + self.running + self.interrupted + self.waiting


def count_trials(trials: Iterable[Any]) -> TrialCounts:
    """Count trials by state; the only place that decides what "done" means (see TrialCounts).

    Each item is a state name (``"COMPLETE"``, ``"PRUNED"``, ``"FAIL"``, ``"RUNNING"``,
    ``"WAITING"``, or ``"INTERRUPTED"`` for a retried FAIL), a trials.csv row (a mapping with
    ``state``, ``number`` and optionally ``retry_of``) or an Optuna ``FrozenTrial`` (its
    ``state.name``, ``number`` and ``user_attrs["retry_of"]``). For rows and trials, a FAIL
    whose number some trial names in ``retry_of`` is counted as interrupted.
    """
    items = [_state_number_retry(t) for t in trials]
    retried = {retry for _, _, retry in items if retry is not None}
    counts = dict.fromkeys(("COMPLETE", "PRUNED", "FAIL", "RUNNING", "INTERRUPTED", "WAITING"), 0)
    for state, number, _ in items:
        if state == "FAIL" and number is not None and number in retried:
            state = "INTERRUPTED"
        if state in counts:
            counts[state] += 1
    return TrialCounts(
        complete=counts["COMPLETE"],
        pruned=counts["PRUNED"],
        failed=counts["FAIL"],
        running=counts["RUNNING"],
        interrupted=counts["INTERRUPTED"],
        waiting=counts["WAITING"],
    )


def _state_number_retry(trial: Any) -> tuple[str, int | None, int | None]:
    """(state, number, retry_of) of a state name, a trials.csv row or an Optuna trial."""
    if isinstance(trial, str):
        return trial.upper(), None, None
    if isinstance(trial, Mapping):
        return (
            str(trial.get("state", "")).upper(),
            _as_int(trial.get("number")),
            _as_int(trial.get("retry_of")),
        )
    attrs = getattr(trial, "user_attrs", None) or {}
    return str(trial.state.name), _as_int(trial.number), _as_int(attrs.get("retry_of"))


def _as_int(value: Any) -> int | None:
    """An integer from a CSV cell, a JSON value or a float like ``3.0``; None when absent."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return int(number) if math.isfinite(number) and number == int(number) else None


# --- writes (atomic, through faerec.atomic) -----------------------------------------------------


def write_csv_atomic(
    path: str | Path, columns: Sequence[str], rows: Iterable[Mapping[str, Any]]
) -> None:
    """A CSV with a header; missing cells are empty, floats keep full precision."""
    buffer = io.StringIO()
    writer = csv.DictWriter(
        buffer, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n"
    )
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _csv_cell(v) for k, v in row.items()})
    write_text_atomic(path, buffer.getvalue())


def read_json(path: str | Path) -> Any:
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise FaerecError(f"{path}: cannot read ({error.strerror})", exit_code=2) from None
    except json.JSONDecodeError as error:
        raise FaerecError(
            f"{path}:{error.lineno}: not valid JSON ({error.msg})", exit_code=2
        ) from None


def read_csv(path: str | Path) -> list[dict[str, str]]:
    """Rows of a CSV as text (an absent file has no rows)."""
    path = Path(path)
    if not path.exists():
        return []
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def _csv_cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, float):
        return "" if not math.isfinite(value) else repr(value)
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True)
    return value


# --- paths -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CellStore:
    """Files of one cell: ``studies/<name>/cells/<cell_id>/``."""

    root: Path

    @property
    def cell_id(self) -> str:
        return self.root.name

    @property
    def cell_json(self) -> Path:
        return self.root / "cell.json"

    @property
    def journal(self) -> Path:
        return self.root / "optuna.journal"

    @property
    def tune_dir(self) -> Path:
        return self.root / "tune"

    @property
    def trials_csv(self) -> Path:
        return self.root / "trials.csv"

    @property
    def epochs_csv(self) -> Path:
        return self.root / "epochs.csv"

    @property
    def best_json(self) -> Path:
        return self.root / "best.json"

    @property
    def final_dir(self) -> Path:
        return self.root / "final"

    def seed_json(self, seed: int) -> Path:
        return self.final_dir / f"seed_{seed}.json"

    def seed_checkpoint_dir(self, seed: int) -> Path:
        """Where a final-stage run keeps its resumable checkpoint until its JSON is written."""
        return self.final_dir / f"seed_{seed}.ckpt"

    def done_seeds(self) -> list[int]:
        """Seeds whose final result is on disk."""
        if not self.final_dir.is_dir():
            return []
        seeds = []
        for path in self.final_dir.glob("seed_*.json"):
            number = path.stem.removeprefix("seed_")
            if number.lstrip("-").isdigit():
                seeds.append(int(number))
        return sorted(seeds)

    def write_trials(self, rows: Iterable[Mapping[str, Any]], extra_value_columns: int = 0) -> None:
        """trials.csv; a multi-objective study adds value_1, value_2, ... after value."""
        columns = list(TRIAL_COLUMNS)
        for index in range(extra_value_columns):
            columns.insert(3 + index, f"value_{index + 1}")
        write_csv_atomic(self.trials_csv, columns, rows)

    def write_epochs(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """epochs.csv: trial, epoch, loss, every validation metric seen, seconds, w_item, w_feat."""
        fixed = set(EPOCH_COLUMNS_HEAD) | set(EPOCH_COLUMNS_TAIL)
        metrics = sorted({k for row in rows for k in row if k not in fixed}, key=_metric_order)
        write_csv_atomic(
            self.epochs_csv, [*EPOCH_COLUMNS_HEAD, *metrics, *EPOCH_COLUMNS_TAIL], rows
        )


def _metric_order(name: str) -> tuple[str, int]:
    """hr@5, hr@10, hr@20, ndcg@5, ... (numeric order of K)."""
    base, _, k = name.partition("@")
    return base, int(k) if k.isdigit() else 0


@dataclass(frozen=True)
class StudyStore:
    """Files of one study: ``<studies_dir>/<name>/``."""

    root: Path

    @classmethod
    def at(cls, studies_dir: str | Path, name: str) -> StudyStore:
        return cls(Path(studies_dir).resolve() / name)

    @property
    def name(self) -> str:
        return self.root.name

    @property
    def spec_yaml(self) -> Path:
        return self.root / "spec.yaml"

    @property
    def study_json(self) -> Path:
        return self.root / "study.json"

    @property
    def results_csv(self) -> Path:
        return self.root / "results.csv"

    def cell(self, cell_id: str) -> CellStore:
        return CellStore(self.root / "cells" / cell_id)

    def exists(self) -> bool:
        return self.study_json.is_file()

    def load_study_json(self) -> dict[str, Any]:
        if not self.exists():
            raise FaerecError(
                f"no study named {self.name!r} in {self.root.parent} (expected {self.study_json})",
                exit_code=2,
            )
        payload = read_json(self.study_json)
        if not isinstance(payload, dict) or "spec" not in payload:
            raise FaerecError(f"{self.study_json}: not a faerec-study study file", exit_code=2)
        return payload
