"""Read a study store (docs/store-layout.md) into plain records and pandas frames.

The report reads only these files, through :mod:`faerec.study.store` (the one owner of their
paths and formats), and never trains or starts Ray, so a report of a finished study takes
seconds and can be rebuilt at any time. Anything missing or malformed becomes one
:class:`~faerec.errors.DataError` that names the file, so a user knows what to re-run; a damaged
journal or final seed is set aside by the store exactly as the driver would.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from faerec.errors import DataError
from faerec.results import TIDY_COLUMNS, RunResult
from faerec.study.sessions import read_sessions
from faerec.study.store import CellStore, StudyStore, read_json

if TYPE_CHECKING:
    import optuna


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
    #: the spec's Optuna database URL ("" when the cell keeps its own journal)
    storage_url: str = ""

    @property
    def store(self) -> CellStore:
        return CellStore(self.path)

    @property
    def journal_path(self) -> Path:
        return self.store.journal

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
    #: sessions.json: when its drivers ran (faerec.study.sessions)
    sessions: list[dict[str, Any]] = field(default_factory=list)

    @property
    def description(self) -> str:
        return str(self.meta.get("description") or "")


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


def load_cell(
    study_name: str, cell_dir: Path, *, allow_incomplete: bool = False, storage_url: str = ""
) -> CellRecord:
    """Read one cell folder (cell.json, best.json, trials.csv, epochs.csv, final/)."""
    store = CellStore(Path(cell_dir))
    if not store.root.is_dir():
        raise DataError(
            "cell folder listed in study.json is missing (the study has not run this cell yet)",
            path=store.root,
        )
    info = store.read_info()
    finals = store.read_seeds()
    if not finals and not allow_incomplete:
        raise DataError(
            f"cell '{info['cell_id']}' has no final results (final/seed_<s>.json): the study is "
            "incomplete; run the study again to finish it",
            path=store.final_dir,
        )
    trials = _read_csv(store.trials_csv)
    if not trials.empty:
        missing = [c for c in ("number", "state", "value") if c not in trials.columns]
        if missing:
            raise DataError(f"missing column(s) {', '.join(missing)}", path=store.trials_csv)
    return CellRecord(
        study=study_name,
        cell_id=str(info["cell_id"]),
        dataset=str(info["dataset"]),
        backbone=str(info["backbone"]),
        method=str(info["method"]),
        path=store.root,
        info=info,
        best=store.read_best(),
        trials=trials,
        epochs=_read_csv(store.epochs_csv),
        finals=finals,
        storage_url=storage_url,
    )


def reference_cell(cell: CellRecord) -> CellRecord | None:
    """The cell's preset retrained over the final seeds (``final/reference_seed_<s>.json``) as
    a cell of its own, with the method ``<method>-defaults``; None without such runs."""
    from faerec.study.reference import reference_method

    finals = CellStore(cell.path).read_reference_seeds()
    if not finals:
        return None
    method = reference_method(cell.method)
    return dataclasses.replace(
        cell,
        cell_id=cell.cell_id + method.removeprefix(cell.method),
        method=method,
        info={**cell.info, "method": method, "has_space": False, "reference_of": cell.cell_id},
        best=None,
        trials=pd.DataFrame(),
        epochs=pd.DataFrame(),
        finals=finals,
    )


def load_study(study_dir: Path, *, allow_incomplete: bool = False) -> StudyRecord:
    """Read a whole study folder; DataError if it is missing or incomplete.

    With ``allow_incomplete`` a cell without final seeds is kept out of the tables and listed
    in ``StudyRecord.incomplete`` instead of failing, so a partial report can still be made.
    """
    store = StudyStore(Path(study_dir))
    study_dir = store.root
    if not study_dir.is_dir():
        raise DataError("no such study folder", path=study_dir)
    meta_path = store.study_json
    if not meta_path.is_file():
        raise DataError(
            "not a study folder (no study.json): run `faerec-study run` first", path=study_dir
        )
    meta = _require_keys(read_json(meta_path), ("name", "cells"), meta_path)
    if not isinstance(meta["cells"], list) or not meta["cells"]:
        raise DataError("'cells' must be a non-empty list of cell ids", path=meta_path)
    name = str(meta["name"])
    spec = meta.get("spec")
    storage_url = str(spec.get("storage") or "") if isinstance(spec, dict) else ""
    cells: list[CellRecord] = []
    incomplete: list[str] = []
    for cell_id in meta["cells"]:
        cell = load_cell(
            name,
            store.cell(str(cell_id)).root,
            allow_incomplete=allow_incomplete,
            storage_url=storage_url,
        )
        if cell.finals:
            cells.append(cell)
        else:
            incomplete.append(cell.cell_id)
        reference = reference_cell(cell)
        if reference is not None:
            cells.append(reference)
    if not cells:
        raise DataError(
            "no cell has final results yet: the study is incomplete; run it again to finish it",
            path=study_dir,
        )
    spec_text = store.read_spec_text()
    try:
        sessions = read_sessions(store.sessions_json)
    except (OSError, ValueError):  # the time it ran is a fact about cost, never a result
        sessions = []
    return StudyRecord(
        name=name,
        path=study_dir,
        meta=meta,
        cells=cells,
        incomplete=incomplete,
        spec_text=spec_text,
        sessions=sessions,
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
    """The cell's Optuna study, from its journal or the spec's database (None when it has none).

    Opened through the store like the driver opens it (a cut last journal record is set aside).
    """
    return cell.store.load_optuna_study(cell.study, cell.storage_url)
