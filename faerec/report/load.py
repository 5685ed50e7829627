"""Read a study store (docs/store-layout.md) into plain records and pandas frames.

The report reads only these files and never trains or starts Ray, so a report of a finished
study takes seconds and can be rebuilt at any time. Anything missing or malformed becomes one
:class:`~faerec.errors.DataError` that names the file, so a user knows what to re-run.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from faerec.errors import DataError
from faerec.results import TIDY_COLUMNS, RunResult

if TYPE_CHECKING:
    import optuna

SEED_FILE = re.compile(r"^seed_(-?\d+)\.json$")
TRIAL_STATES = ("COMPLETE", "PRUNED", "FAIL", "RUNNING")


@dataclass
class CellRecord:
    """One (dataset, backbone, method) cell of a study: its search and its final seeds."""

    study: str
    cell_id: str
    dataset: str
    backbone: str
    method: str
    path: Path
    info: dict[str, Any]
    #: best.json, or None when the search has not produced one
    best: dict[str, Any] | None
    #: trials.csv (empty frame when the cell has no search space)
    trials: pd.DataFrame
    #: epochs.csv (empty frame when absent)
    epochs: pd.DataFrame
    #: final-stage results by seed
    finals: dict[int, RunResult] = field(default_factory=dict)

    @property
    def journal_path(self) -> Path:
        return self.path / "optuna.journal"

    @property
    def has_search(self) -> bool:
        """True when the cell searched a space (a journal or trial rows exist)."""
        return bool(self.info.get("has_space", False)) or not self.trials.empty

    @property
    def objective_names(self) -> list[str]:
        """The searched metric(s): cell.json ``metric`` as a list (one or two entries)."""
        metric = self.info.get("metric")
        if isinstance(metric, list):
            return [str(m) for m in metric]
        return [str(metric)] if metric else []

    @property
    def directions(self) -> list[str]:
        direction = self.info.get("direction", "maximize")
        if isinstance(direction, list):
            return [str(d) for d in direction]
        return [str(direction)] * max(1, len(self.objective_names))


@dataclass
class StudyRecord:
    """A study folder: study.json plus its cells."""

    name: str
    path: Path
    meta: dict[str, Any]
    cells: list[CellRecord]
    #: cells listed in study.json that have no final results (only with allow_incomplete)
    incomplete: list[str] = field(default_factory=list)
    #: spec.yaml as the user wrote it ("" when absent)
    spec_text: str = ""

    @property
    def description(self) -> str:
        return str(self.meta.get("description") or "")


def read_json(path: Path) -> Any:
    """Parse a JSON file; a missing or malformed file is a DataError naming it."""
    if not path.is_file():
        raise DataError("file not found", path=path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise DataError(
            f"invalid JSON: {error.msg} (column {error.colno})", path=path, line=error.lineno
        ) from None
    except (OSError, UnicodeDecodeError) as error:
        raise DataError(f"cannot read: {error}", path=path) from None


def _require_keys(payload: Any, keys: tuple[str, ...], path: Path) -> dict[str, Any]:
    if not isinstance(payload, dict):
        raise DataError(f"expected a JSON object, got {type(payload).__name__}", path=path)
    missing = [k for k in keys if k not in payload]
    if missing:
        raise DataError(f"missing key(s) {', '.join(repr(k) for k in missing)}", path=path)
    return payload


def _read_csv(path: Path) -> pd.DataFrame:
    """Read an optional CSV; absent or empty files give an empty frame."""
    if not path.is_file() or path.stat().st_size == 0:
        return pd.DataFrame()
    try:
        return pd.read_csv(path)
    except pd.errors.EmptyDataError:
        return pd.DataFrame()
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as error:
        raise DataError(f"malformed CSV: {str(error).strip().splitlines()[0]}", path=path) from None


def _read_run_result(path: Path) -> RunResult:
    payload = _require_keys(
        read_json(path), ("config", "best_epoch", "valid", "test", "history"), path
    )
    try:
        result = RunResult.from_dict(payload)
    except TypeError as error:
        raise DataError(f"not a RunResult: {error}", path=path) from None
    if not result.test:
        raise DataError("no test metrics ('test' is empty): final seeds must be tested", path=path)
    ranks, users = result.test_ranks, result.test_user_index
    if ranks is not None and users is not None and len(ranks) != len(users):
        raise DataError(
            f"test_ranks has {len(ranks)} entries but test_user_index has {len(users)}", path=path
        )
    return result


def load_cell(study_name: str, cell_dir: Path, *, allow_incomplete: bool = False) -> CellRecord:
    """Read one cell folder (cell.json, best.json, trials.csv, epochs.csv, final/)."""
    if not cell_dir.is_dir():
        raise DataError(
            "cell folder listed in study.json is missing (the study has not run this cell yet)",
            path=cell_dir,
        )
    info = _require_keys(
        read_json(cell_dir / "cell.json"),
        ("cell_id", "dataset", "backbone", "method"),
        cell_dir / "cell.json",
    )
    best_path = cell_dir / "best.json"
    best = read_json(best_path) if best_path.is_file() else None
    finals: dict[int, RunResult] = {}
    final_dir = cell_dir / "final"
    if final_dir.is_dir():
        for path in sorted(final_dir.iterdir()):
            match = SEED_FILE.match(path.name)
            if match:
                finals[int(match.group(1))] = _read_run_result(path)
    if not finals and not allow_incomplete:
        raise DataError(
            f"cell '{info['cell_id']}' has no final results (final/seed_<s>.json): the study is "
            "incomplete; run the study again to finish it",
            path=final_dir,
        )
    trials = _read_csv(cell_dir / "trials.csv")
    if not trials.empty:
        missing = [c for c in ("number", "state", "value") if c not in trials.columns]
        if missing:
            raise DataError(f"missing column(s) {', '.join(missing)}", path=cell_dir / "trials.csv")
    return CellRecord(
        study=study_name,
        cell_id=str(info["cell_id"]),
        dataset=str(info["dataset"]),
        backbone=str(info["backbone"]),
        method=str(info["method"]),
        path=cell_dir,
        info=info,
        best=best,
        trials=trials,
        epochs=_read_csv(cell_dir / "epochs.csv"),
        finals=dict(sorted(finals.items())),
    )


def load_study(study_dir: Path, *, allow_incomplete: bool = False) -> StudyRecord:
    """Read a whole study folder; DataError if it is missing or incomplete.

    With ``allow_incomplete`` a cell without final seeds is kept out of the tables and listed
    in ``StudyRecord.incomplete`` instead of failing, so a partial report can still be made.
    """
    study_dir = Path(study_dir)
    if not study_dir.is_dir():
        raise DataError("no such study folder", path=study_dir)
    meta_path = study_dir / "study.json"
    if not meta_path.is_file():
        raise DataError(
            "not a study folder (no study.json): run `faerec-study run` first", path=study_dir
        )
    meta = _require_keys(read_json(meta_path), ("name", "cells"), meta_path)
    if not isinstance(meta["cells"], list) or not meta["cells"]:
        raise DataError("'cells' must be a non-empty list of cell ids", path=meta_path)
    name = str(meta["name"])
    cells: list[CellRecord] = []
    incomplete: list[str] = []
    for cell_id in meta["cells"]:
        cell = load_cell(
            name, study_dir / "cells" / str(cell_id), allow_incomplete=allow_incomplete
        )
        if cell.finals:
            cells.append(cell)
        else:
            incomplete.append(cell.cell_id)
    if not cells:
        raise DataError(
            "no cell has final results yet: the study is incomplete; run it again to finish it",
            path=study_dir,
        )
    spec_path = study_dir / "spec.yaml"
    try:
        spec_text = spec_path.read_text(encoding="utf-8") if spec_path.is_file() else ""
    except (OSError, UnicodeDecodeError) as error:
        raise DataError(f"cannot read: {error}", path=spec_path) from None
    return StudyRecord(
        name=name,
        path=study_dir,
        meta=meta,
        cells=cells,
        incomplete=incomplete,
        spec_text=spec_text,
    )


def tidy_frame(studies: list[StudyRecord]) -> pd.DataFrame:
    """Every final seed as tidy rows (``faerec.results.TIDY_COLUMNS``), valid and test.

    Dataset, backbone and method come from cell.json so that a dataset given as a path is
    labelled by the study's sanitised name, the same in every table.
    """
    rows: list[dict[str, Any]] = []
    for study in studies:
        for cell in study.cells:
            for seed, result in cell.finals.items():
                for row in result.tidy_rows(study.name, seed=seed):
                    row.update(dataset=cell.dataset, backbone=cell.backbone, method=cell.method)
                    rows.append(row)
    frame = pd.DataFrame(rows, columns=list(TIDY_COLUMNS))
    return frame.astype({"seed": "int64", "k": "int64", "value": "float64", "n_users": "int64"})


def open_optuna_study(cell: CellRecord) -> optuna.Study | None:
    """The cell's Optuna study from ``optuna.journal`` (None when the cell has no journal).

    The study is named after the cell id; a journal holding exactly one study under another
    name is accepted too, since the name is only a convention between engine and report.
    """
    path = cell.journal_path
    if not path.is_file():
        return None
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        storage = JournalStorage(JournalFileBackend(str(path)))
        names = [s.study_name for s in storage.get_all_studies()]
    except (OSError, ValueError, KeyError) as error:
        raise DataError(f"unreadable Optuna journal: {error}", path=path) from None
    if cell.cell_id in names:
        name = cell.cell_id
    elif len(names) == 1:
        name = names[0]
    elif not names:
        return None
    else:
        raise DataError(f"journal holds studies {names} but none named '{cell.cell_id}'", path=path)
    return optuna.load_study(study_name=name, storage=storage)
