"""The study store: the one owner of ``studies/<name>/`` paths and file formats, read and write.

The engine writes through it, the report reads through it, and the test fixtures write through
it, so the layout below exists once (docs/store-layout.md shows the same text; a test keeps the
two in step). A study is hours of unattended work, so the store never loses a finished trial:

* every write is atomic (:mod:`faerec.atomic`: a temporary file, then ``os.replace``);
* a derived file (trials.csv, epochs.csv, best.json, results.csv) is never replaced by one that
  holds less finished work than it did: the old file is kept and one line says why;
* an Optuna journal whose last record was cut by a crash is repaired before it is opened (the
  whole original is kept beside it), so nothing is ever appended onto a partial line;
* a final-seed JSON that does not hold a valid result is moved aside, never deleted, and is
  not counted as done, so the final stage computes it again.

No Ray and no torch here; Optuna only inside :func:`open_storage`.
"""

from __future__ import annotations

import csv
import fnmatch
import io
import json
import math
import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from faerec.atomic import TEMPORARY, write_bytes_atomic, write_json_atomic, write_text_atomic
from faerec.errors import DataError, FaerecError
from faerec.results import EPOCHS_COUNTED_FROM, RunResult
from faerec.run_progress import say
from faerec.study.lock import LOCK_FILE, StudyLock

if TYPE_CHECKING:
    import optuna

__all__ = [
    "LAYOUT",
    "CellStore",
    "StudyStore",
    "TrialCounts",
    "check_folder_writable",
    "count_trials",
    "export_study",
    "list_studies",
    "open_storage",
    "optuna_study_name",
    "read_csv",
    "read_json",
    "read_run_result",
    "repair_journal",
    "write_bytes_atomic",
    "write_csv_atomic",
    "write_json_atomic",
    "write_text_atomic",
]

#: the study folder; docs/store-layout.md shows this text verbatim (tests/test_store_damage.py)
LAYOUT = """\
studies/<name>/
  spec.yaml              # the user's spec as given (copy)
  study.json             # {"name", "description", "spec_hash", "spec": <resolved spec dict>,
                         #  "created", "updated", "epochs_counted_from": 1 (0 in studies
                         #  created before it: epochs.csv counts from there),
                         #  "command": "faerec-study run ...",
                         #  "versions": {"faerec", "torch", "optuna", "ray", "python"},
                         #  "cells": ["<cell_id>", ...]}
  driver.lock            # the running driver: {"pid", "host", "since", "command"}, locked with
                         #  flock while it runs; empty (or stale, lock free) otherwise
  sessions.json          # the drivers that ran it: [{"started", "last_seen", "ended" (null
                         #  while running, or for a killed driver), "outcome" (finished|failed|
                         #  interrupted|error), "host", "pid", "command"}] (faerec.study.sessions)
  results.csv            # tidy final-stage table, columns:
                         #  study,dataset,backbone,method,seed,split,group,metric,k,value,n_users
  cells/<cell_id>/       # cell_id = "<dataset>__<backbone>__<method>" (dataset name sanitised)
    cell.json            # {"cell_id", "dataset", "backbone", "method", "has_space": bool,
                         #  "n_trials_target", "metric", "direction"}
    optuna.journal       # Optuna JournalStorage file, study_name = cell_id (optuna-dashboard
                         #  opens it); absent when the spec names a database (`storage`), where
                         #  the study is called "<name>.<cell_id>"
    optuna.journal.damaged-<UTC time>  # the whole journal as it was before a cut last record
                         #  was set aside (the journal itself keeps every complete record)
    tune/                # the Ray Tune experiment folder (resume state)
    trials.csv           # one row per trial: number, state (COMPLETE|PRUNED|FAIL|RUNNING),
                         #  value, epochs, seconds, error, params (JSON string), retry_of
                         #  (the trial whose parameters this one runs again, else empty)
    epochs.csv           # per trial and epoch: trial, epoch, loss, <valid metrics ...>, seconds,
                         #  cpu_seconds (of the trial's process, all threads), w_item, w_feat
    best.json            # {"params": {...}, "value": float, "trial": int,
                         #  "config": <resolved RunConfig dict of the best trial>}
    final/seed_<s>.json  # faerec.results.RunResult.to_dict() of each final-stage seed
                         #  (epochs counted from 1, "epochs_counted_from": 1; absent: from 0),
                         #  with test_ranks / test_user_index for paired per-user tests
                         #  and test_user_group ("head"/"tail": the test target item's group)
    final/reference_seed_<s>.json
                         # a searched cell's preset configuration retrained on seed s (same
                         #  format; final.reference in docs/study-spec.md); the report reads
                         #  them as the method "<method>-defaults"
    final/seed_<s>.json.corrupt-<UTC time>  # a seed file that held no valid result, set aside
                         #  (the seed is run again)
"""

TRIAL_COLUMNS = ("number", "state", "value", "epochs", "seconds", "error", "params", "retry_of")
#: trial states that have ended (the trial will never run again)
FINISHED_STATES = ("COMPLETE", "PRUNED", "FAIL")
#: the states a trials.csv row can have
TRIAL_STATES = (*FINISHED_STATES, "RUNNING")
EPOCH_COLUMNS_HEAD = ("trial", "epoch", "loss")
EPOCH_COLUMNS_TAIL = ("seconds", "cpu_seconds", "w_item", "w_feat")
#: what a study folder holds only for work in progress (the driver's lock, Ray Tune's resume
#: state and trial checkpoints, a final run's checkpoint): an export leaves these out
RESUME_STATE = (LOCK_FILE, "cells/*/tune", "cells/*/final/*.ckpt")
SEED_FILE = re.compile(r"^seed_(-?\d+)\.json$")
#: a searched cell's preset retrained on a final seed (faerec.study.reference)
REFERENCE_SEED_FILE = re.compile(r"^reference_seed_(-?\d+)\.json$")
SET_ASIDE_SEED_FILE = re.compile(r"^seed_(-?\d+)\.json\.corrupt-")
#: the keys of a final-seed JSON that faerec.results.RunResult cannot do without
RUN_RESULT_KEYS = ("config", "best_epoch", "valid", "test", "history")


def notice(message: str) -> None:
    """One line on stderr about something the store did to keep work safe."""
    if message not in _NOTICES:
        _NOTICES.add(message)
        say(f"faerec-study: {message}")


_NOTICES: set[str] = set()


def _utc_stamp() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")


def _aside_path(path: Path, kind: str) -> Path:
    """``<name>.<kind>-<UTC time>`` beside ``path``, never an existing file."""
    base = path.with_name(f"{path.name}.{kind}-{_utc_stamp()}")
    candidate, number = base, 1
    while candidate.exists():
        number += 1
        candidate = base.with_name(f"{base.name}.{number}")
    return candidate


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


# --- reads and writes ---------------------------------------------------------------------------


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
    """Parse a JSON file; a missing or malformed file is a DataError naming it (and the line)."""
    path = Path(path)
    if not path.is_file():
        raise DataError("file not found", path=path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise DataError(
            f"invalid JSON: {error.msg} (column {error.colno})", path=path, line=error.lineno
        ) from None
    except UnicodeDecodeError as error:
        raise DataError(f"not UTF-8 text (byte {error.start})", path=path) from None
    except OSError as error:
        raise DataError(f"cannot read ({error.strerror})", path=path) from None


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


def read_run_result(path: str | Path) -> RunResult:
    """A final seed's result; DataError (naming the file) unless it is a tested RunResult."""
    path = Path(path)
    payload = read_json(path)
    if not isinstance(payload, dict):
        raise DataError(f"expected a JSON object, got {type(payload).__name__}", path=path)
    missing = [k for k in RUN_RESULT_KEYS if k not in payload]
    if missing:
        raise DataError(f"missing key(s) {', '.join(repr(k) for k in missing)}", path=path)
    try:
        result = RunResult.from_dict(payload)
    except (TypeError, KeyError, ValueError, AttributeError) as error:
        raise DataError(f"not a RunResult: {error}", path=path) from None
    if not result.test:
        raise DataError("no test metrics ('test' is empty): final seeds must be tested", path=path)
    ranks, users = result.test_ranks, result.test_user_index
    if ranks is not None and users is not None and len(ranks) != len(users):
        raise DataError(
            f"test_ranks has {len(ranks)} entries but test_user_index has {len(users)}", path=path
        )
    groups = result.test_user_group
    if ranks is not None and groups is not None and len(groups) != len(ranks):
        raise DataError(
            f"test_user_group has {len(groups)} entries but test_ranks has {len(ranks)}", path=path
        )
    return result


# --- the Optuna journal and storage -------------------------------------------------------------


def repair_journal(path: str | Path) -> str | None:
    """Set aside a journal's cut last record; the message printed, or None if it was whole.

    Optuna appends one JSON record per line. A driver killed mid-append leaves a last line
    without its newline (or not valid JSON); Optuna skips it when reading, but its next append
    would glue a new record onto it and make the journal unreadable. The whole original is
    copied to ``<journal>.damaged-<UTC time>`` first, then the journal is cut back to the end of
    its last complete record. Damage before the last records cannot be repaired by cutting
    (complete records would be lost): that is a DataError naming the line.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as error:
        raise DataError(f"cannot read ({error.strerror})", path=path) from None
    if not data or (data.endswith(b"\n") and _is_record(data[data.rfind(b"\n", 0, -1) + 1 :])):
        return None  # the common case: the last record is whole (Optuna checks the others)
    end, records, bad_line = _intact_prefix(data)
    if end == len(data):
        return None
    if bad_line is not None:
        raise DataError(
            "not an Optuna journal record, and complete records follow it: the journal is "
            "damaged before its end; restore it from a backup",
            path=path,
            line=bad_line,
        )
    backup = _aside_path(path, "damaged")
    write_bytes_atomic(backup, data)
    os.truncate(path, end)
    message = (
        f"{path}: set aside a cut last record ({len(data) - end} bytes after record {records}); "
        f"the {records} complete records are kept, the original is in {backup.name}"
    )
    notice(message)
    return message


def _is_record(line: bytes) -> bool:
    try:
        return isinstance(json.loads(line), dict)
    except ValueError:  # JSONDecodeError and UnicodeDecodeError
        return False


def _intact_prefix(data: bytes) -> tuple[int, int, int | None]:
    """(bytes of complete records, their number, line of damage followed by good records)."""
    pos, records = 0, 0
    while pos < len(data):
        newline = data.find(b"\n", pos)
        if newline == -1 or not _is_record(data[pos:newline]):
            if newline != -1 and any(_is_record(x) for x in data[newline + 1 :].split(b"\n")):
                return pos, records, records + 1
            return pos, records, None
        records += 1
        pos = newline + 1
    return pos, records, None


def open_storage(url: str, journal_path: str | Path, *, repair: bool = True) -> Any:
    """The Optuna storage of a cell: the spec's database URL, else the cell's journal file.

    The one way every part of the project opens a cell's trials (driver, report, tests). The
    journal is repaired first (:func:`repair_journal`) unless ``repair`` is False.
    """
    import optuna
    from optuna.storages.journal import JournalFileBackend

    if url:
        from faerec.study.shared import open_database

        return open_database(url)
    if repair:
        repair_journal(journal_path)
    try:
        return optuna.storages.JournalStorage(JournalFileBackend(str(journal_path)))
    except ValueError:  # Optuna met a line that is not a record (JSONDecodeError and its own)
        _, records, _ = _intact_prefix(Path(journal_path).read_bytes())
        raise DataError(
            "not an Optuna journal record; the journal is damaged before its end: restore it "
            "from a backup",
            path=journal_path,
            line=records + 1,
        ) from None


def optuna_study_name(study: str, cell_id: str, url: str) -> str:
    """cell_id in the cell's own journal; in a shared database, prefixed by the study's name."""
    return f"{study}.{cell_id}" if url else cell_id


# --- guards: derived files never lose finished work ---------------------------------------------


def _lost_trials(old: list[dict[str, str]], new: list[Mapping[str, Any]]) -> list[int]:
    """Numbers of finished trials in ``old`` that ``new`` lacks or holds in another state."""
    now = {_as_int(r.get("number")): str(r.get("state", "")) for r in new}
    lost = []
    for row in old:
        number = _as_int(row.get("number"))
        if row.get("state") in FINISHED_STATES and now.get(number) != row.get("state"):
            lost.append(number if number is not None else -1)
    return sorted(lost)


def _keep_old(path: Path, what: str) -> bool:
    notice(f"{path}: kept as it was: the new version would lose {what}")
    return False


# --- paths -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CellStore:
    """Files of one cell: ``studies/<name>/cells/<cell_id>/``."""

    root: Path

    @property
    def cell_id(self) -> str:
        return self.root.name

    @property
    def study_root(self) -> Path:
        return self.root.parent.parent

    def epochs_from(self) -> int:
        """Where ``epochs.csv`` starts counting epochs: 1, or 0 in a study created before
        study.json recorded ``epochs_counted_from`` (it keeps its convention)."""
        try:
            payload = read_json(self.study_root / "study.json")
        except (OSError, ValueError, DataError):
            return 1
        return int(payload.get(EPOCHS_COUNTED_FROM, 0)) if isinstance(payload, dict) else 1

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

    # -- reads ------------------------------------------------------------------------------

    def read_info(self) -> dict[str, Any]:
        """cell.json (DataError naming it unless it is an object with the cell's identity)."""
        info = read_json(self.cell_json)
        if not isinstance(info, dict):
            raise DataError("expected a JSON object", path=self.cell_json)
        missing = [k for k in ("cell_id", "dataset", "backbone", "method") if k not in info]
        if missing:
            raise DataError(
                f"missing key(s) {', '.join(repr(k) for k in missing)}", path=self.cell_json
            )
        return info

    def read_trials(self) -> list[dict[str, str]]:
        return read_csv(self.trials_csv)

    def read_best(self) -> dict[str, Any] | None:
        """best.json, or None before the search has one."""
        return read_json(self.best_json) if self.best_json.is_file() else None

    def reference_json(self, seed: int) -> Path:
        """The cell's preset retrained on ``seed`` (the reference row; faerec.study.reference)."""
        return self.final_dir / f"reference_seed_{seed}.json"

    def reference_checkpoint_dir(self, seed: int) -> Path:
        return self.final_dir / f"reference_seed_{seed}.ckpt"

    def read_reference_seeds(self) -> dict[int, RunResult]:
        """The valid reference results by seed, checked like :meth:`read_seeds`."""
        return self.read_seeds(REFERENCE_SEED_FILE)

    def read_seeds(self, pattern: re.Pattern[str] = SEED_FILE) -> dict[int, RunResult]:
        """The valid final-seed results by seed.

        A seed file that does not hold a valid, tested result is moved aside to
        ``seed_<s>.json.corrupt-<UTC time>`` (never deleted) with a one-line message, and is
        left out, so the final stage runs that seed again.
        """
        results: dict[int, RunResult] = {}
        if not self.final_dir.is_dir():
            return results
        for path in sorted(self.final_dir.iterdir()):
            match = pattern.match(path.name)
            if not match or not path.is_file():
                continue
            try:
                results[int(match.group(1))] = read_run_result(path)
            except DataError as error:
                self._set_aside_seed(path, str(error))
        return dict(sorted(results.items()))

    def done_seeds(self) -> list[int]:
        """Seeds whose valid final result is on disk (see :meth:`read_seeds`)."""
        return list(self.read_seeds())

    def set_aside_seeds(self) -> list[Path]:
        """Seed files moved aside as corrupt (kept for a person to look at)."""
        if not self.final_dir.is_dir():
            return []
        return sorted(p for p in self.final_dir.iterdir() if SET_ASIDE_SEED_FILE.match(p.name))

    def _set_aside_seed(self, path: Path, problem: str) -> None:
        target = _aside_path(path, "corrupt")
        try:
            os.replace(path, target)
        except OSError as error:
            notice(f"{problem}; not counted as done (cannot move it aside: {error.strerror})")
            return
        notice(f"{problem}; moved aside to {target.name}, the seed will be run again")

    def repair_journal(self) -> str | None:
        """:func:`repair_journal`, unless another live driver is appending to this journal
        (its last line may be a record in the middle of being written)."""
        if StudyLock.held_by_another_process(self.study_root):
            return None
        try:
            return repair_journal(self.journal)
        except OSError as error:  # a read-only study: Optuna still reads it, skipping the cut
            notice(f"{self.journal}: its last record is cut; cannot repair it ({error.strerror})")
            return None

    def open_storage(self, url: str = "") -> Any:
        """The cell's Optuna storage (see :func:`open_storage`), its journal repaired first."""
        if not url:
            self.repair_journal()
        return open_storage(url, self.journal, repair=False)

    def load_optuna_study(self, study: str, url: str = "") -> optuna.Study | None:
        """The cell's Optuna study (None when it has none yet).

        A journal holding exactly one study under another name is accepted too: the name is
        only a convention between engine and report.
        """
        if not url and not self.journal.is_file():
            return None
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        where = self.journal if not url else f"{url} (cell {self.cell_id})"
        try:
            storage = self.open_storage(url)
            names = [s.study_name for s in storage.get_all_studies()]
        except (OSError, ValueError, KeyError) as error:
            raise DataError(f"unreadable Optuna storage: {error}", path=where) from None
        name = optuna_study_name(study, self.cell_id, url)
        if name not in names:
            if url or not names:
                return None
            if len(names) > 1:
                raise DataError(f"holds studies {names} but none named {name!r}", path=where)
            name = names[0]
        return optuna.load_study(study_name=name, storage=storage)

    # -- writes (each keeps the old file rather than lose finished work) ------------------------

    def write_trials(self, rows: Iterable[Mapping[str, Any]], extra_value_columns: int = 0) -> bool:
        """trials.csv; a multi-objective study adds value_1, value_2, ... after value.

        Refused (old file kept, one line on stderr, False) when a finished trial of the old
        file would be missing or in another state.
        """
        rows = list(rows)
        lost = _lost_trials(read_csv(self.trials_csv), rows)
        if lost:
            return _keep_old(self.trials_csv, f"finished trial(s) {_numbers(lost)}")
        columns = list(TRIAL_COLUMNS)
        for index in range(extra_value_columns):
            columns.insert(3 + index, f"value_{index + 1}")
        write_csv_atomic(self.trials_csv, columns, rows)
        return True

    def write_epochs(self, rows: Sequence[Mapping[str, Any]]) -> bool:
        """epochs.csv: trial, epoch, loss, every validation metric seen, seconds, w_item, w_feat.

        Refused (False) when an epoch row of the old file would be missing.
        """
        old = {
            (_as_int(r.get("trial")), _as_int(r.get("epoch"))) for r in read_csv(self.epochs_csv)
        }
        new = {(_as_int(r.get("trial")), _as_int(r.get("epoch"))) for r in rows}
        missing = old - new
        if missing:
            trials = sorted({t for t, _ in missing if t is not None})
            return _keep_old(
                self.epochs_csv, f"{len(missing)} epoch row(s) of trial(s) {_numbers(trials)}"
            )
        fixed = set(EPOCH_COLUMNS_HEAD) | set(EPOCH_COLUMNS_TAIL)
        metrics = sorted({k for row in rows for k in row if k not in fixed}, key=_metric_order)
        write_csv_atomic(
            self.epochs_csv, [*EPOCH_COLUMNS_HEAD, *metrics, *EPOCH_COLUMNS_TAIL], rows
        )
        return True

    def write_best(self, record: Mapping[str, Any], direction: str = "maximize") -> bool:
        """best.json; refused (False) when the old one names a better trial (on the first
        metric): a best configuration never gets worse as trials are added."""
        old = self.read_best() or {}
        old_value, new_value = old.get("value"), record.get("value")
        if isinstance(old_value, (int, float)) and old.get("trial") is not None:
            sign = 1.0 if direction == "maximize" else -1.0
            if not isinstance(new_value, (int, float)) or sign * new_value < sign * old_value:
                return _keep_old(self.best_json, f"its best trial {old['trial']} ({old_value})")
        write_json_atomic(self.best_json, dict(record))
        return True


def _numbers(numbers: Sequence[int]) -> str:
    shown = ", ".join(str(n) for n in numbers[:10])
    return shown + (f" and {len(numbers) - 10} more" if len(numbers) > 10 else "")


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

    @property
    def sessions_json(self) -> Path:
        return self.root / "sessions.json"

    @property
    def lock_file(self) -> Path:
        return self.root / LOCK_FILE

    @property
    def cells_dir(self) -> Path:
        return self.root / "cells"

    def cell(self, cell_id: str) -> CellStore:
        return CellStore(self.cells_dir / cell_id)

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

    def read_spec_text(self) -> str:
        """spec.yaml as the user wrote it ("" when absent)."""
        try:
            return self.spec_yaml.read_text(encoding="utf-8") if self.spec_yaml.is_file() else ""
        except (OSError, UnicodeDecodeError) as error:
            raise DataError(f"cannot read: {error}", path=self.spec_yaml) from None

    def write_results(self, columns: Sequence[str], rows: Sequence[Mapping[str, Any]]) -> bool:
        """results.csv; refused (False) when a (dataset, backbone, method, seed) of the old file
        would be missing."""
        key = ("dataset", "backbone", "method", "seed")

        def seeds(table: Iterable[Mapping[str, Any]]) -> set[tuple[str, ...]]:
            return {tuple(str(r.get(k, "")) for k in key) for r in table}

        missing = seeds(read_csv(self.results_csv)) - seeds(rows)
        if missing:
            shown = ", ".join("/".join(m) for m in sorted(missing)[:5])
            return _keep_old(self.results_csv, f"the final seed(s) {shown}")
        write_csv_atomic(self.results_csv, columns, rows)
        return True

    def check_writable(self) -> None:
        """Exit 2 naming the first folder or file a driver could not write, before any work.

        Files written in place (journals, the lock) are opened for appending, which changes
        nothing; folders are probed by :func:`check_folder_writable`.
        """
        folders = [self.root]
        files: list[Path] = []
        if self.root.is_dir():
            folders += [self.cells_dir] if self.cells_dir.is_dir() else []
            files.append(self.lock_file)
            for cell_dir in sorted(self.cells_dir.glob("*/")) if self.cells_dir.is_dir() else []:
                cell = CellStore(cell_dir)
                folders += [p for p in (cell.root, cell.final_dir, cell.tune_dir) if p.is_dir()]
                files.append(cell.journal)
        for folder in folders:
            check_folder_writable(folder, "a study must be able to write its folder")
        for path in files:
            if not path.exists():
                continue
            try:
                with path.open("ab"):
                    pass
            except OSError as error:
                raise FaerecError(
                    f"{path}: cannot write it ({error.strerror}); a study must be able to "
                    "write its folder",
                    exit_code=2,
                ) from None


def check_folder_writable(folder: str | Path, why: str) -> None:
    """Exit 2 naming ``folder`` (or, when it does not exist yet, the first existing folder
    above it) unless a file can be created there.

    Probed with a real temporary file: permissions alone say nothing for root or a read-only
    file system.
    """
    existing = Path(folder).resolve()
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise FaerecError(f"{existing}: not a folder; {why}", exit_code=2)
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as error:
        raise FaerecError(
            f"{existing}: cannot write here ({error.strerror}); {why}", exit_code=2
        ) from None


def list_studies(studies_dir: str | Path) -> list[StudyStore]:
    """The studies (folders with a study.json) in ``studies_dir``, by name."""
    folder = Path(studies_dir).resolve()
    if not folder.is_dir():
        return []
    return [StudyStore(p) for p in sorted(folder.iterdir()) if (p / "study.json").is_file()]


@dataclass(frozen=True)
class Export:
    """What :func:`export_study` wrote: the new folder, its size, what it left out."""

    root: Path
    files: int
    bytes: int
    left_out: tuple[str, ...]


def export_study(source: StudyStore, destination: str | Path, *, replace: bool = False) -> Export:
    """Copy ``source`` to ``destination/<name>/`` without its :data:`RESUME_STATE`.

    The copy holds everything the report reads and every finished trial and final seed, so it
    can be archived or committed beside a paper (checkpoints are most of a study's size), and
    ``resume`` on it runs only what is missing. The copy is made in a temporary folder and
    renamed into place, so an interrupted export leaves no half-written study; with ``replace``
    an earlier export is swapped out only once the new one is complete.
    """
    source.load_study_json()  # exit 2 unless it is a study
    target = Path(destination).resolve() / source.name
    if target == source.root or source.root in target.parents:
        raise FaerecError(
            f"{target}: an export must go outside the study it copies ({source.root})",
            exit_code=2,
        )
    if target.exists() and not replace:
        raise FaerecError(
            f"{target}: already exists; pass --replace to overwrite an earlier export",
            exit_code=2,
        )
    if target.exists() and not (target / "study.json").is_file():
        raise FaerecError(
            f"{target}: exists and holds no study; an export only replaces an earlier export",
            exit_code=2,
        )
    left_out: list[str] = []

    def ignore(folder: str, names: list[str]) -> set[str]:
        relative = Path(folder).relative_to(source.root)
        skipped = {
            name
            for name in names
            if any(fnmatch.fnmatch((relative / name).as_posix(), p) for p in RESUME_STATE)
        }
        left_out.extend((relative / name).as_posix() for name in sorted(skipped))
        # a running driver's half-written temporaries (its finished files are replaced whole)
        return skipped | set(fnmatch.filter(names, TEMPORARY))

    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{source.name}.export-", dir=target.parent))
    try:
        shutil.copytree(source.root, staging / source.name, ignore=ignore)
        if target.exists():
            old = staging / "previous"
            os.replace(target, old)
        os.replace(staging / source.name, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    files = [p for p in target.rglob("*") if p.is_file()]
    return Export(target, len(files), sum(p.stat().st_size for p in files), tuple(left_out))
