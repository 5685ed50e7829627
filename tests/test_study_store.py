"""The study store: atomic writes and the file formats of docs/store-layout.md."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
from report_fixtures import tiny_run_result

from faerec.errors import FaerecError
from faerec.study.store import (
    CellStore,
    StudyStore,
    read_csv,
    write_bytes_atomic,
    write_csv_atomic,
    write_json_atomic,
)


def test_atomic_write_replaces_the_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "deep" / "file.json"
    write_json_atomic(target, {"a": 1})
    write_json_atomic(target, {"a": 2})
    assert json.loads(target.read_text()) == {"a": 2}
    assert [p.name for p in target.parent.iterdir()] == ["file.json"]


class Unserialisable:
    pass


def test_a_failed_write_keeps_the_old_file_intact(tmp_path: Path) -> None:
    target = tmp_path / "study.json"
    write_json_atomic(target, {"version": 1})
    with pytest.raises(TypeError):
        write_json_atomic(target, {"version": Unserialisable()})
    assert json.loads(target.read_text()) == {"version": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["study.json"]


def test_an_interrupted_write_removes_its_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupted(fd: int) -> None:
        raise KeyboardInterrupt

    target = tmp_path / "trials.csv"
    target.write_text("old\n")
    monkeypatch.setattr("os.fsync", interrupted)  # Ctrl-C while the new content is flushed
    with pytest.raises(KeyboardInterrupt):
        write_bytes_atomic(target, b"new\n")
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["trials.csv"]


def test_json_never_contains_nan(tmp_path: Path) -> None:
    target = tmp_path / "best.json"
    write_json_atomic(target, {"value": math.nan, "values": [1.0, math.inf]})
    assert json.loads(target.read_text()) == {"value": None, "values": [1.0, None]}


def test_csv_cells_keep_full_precision_and_encode_params(tmp_path: Path) -> None:
    target = tmp_path / "t.csv"
    rows = [{"number": 0, "value": 0.1234567890123, "params": {"b": 1, "a": 0.5}, "error": None}]
    write_csv_atomic(target, ["number", "value", "params", "error"], rows)
    (row,) = read_csv(target)
    assert float(row["value"]) == 0.1234567890123
    assert json.loads(row["params"]) == {"a": 0.5, "b": 1}
    assert row["error"] == ""


def test_trials_csv_columns_follow_the_layout(tmp_path: Path) -> None:
    cell = CellStore(tmp_path / "cells" / "ml-100k__sasrec__faerec")
    cell.write_trials([{"number": 0, "state": "COMPLETE", "value": 0.1}])
    with cell.trials_csv.open() as handle:
        assert next(csv.reader(handle)) == [
            "number",
            "state",
            "value",
            "epochs",
            "seconds",
            "error",
            "params",
            "retry_of",
        ]
    cell.write_trials([{"number": 0, "state": "COMPLETE", "value": 0.1, "value_1": 0.2}], 1)
    assert read_csv(cell.trials_csv)[0]["value_1"] == "0.2"


def test_epochs_csv_puts_metrics_between_loss_and_seconds(tmp_path: Path) -> None:
    cell = CellStore(tmp_path / "c")
    rows = [
        {"trial": 0, "epoch": 0, "loss": 1.0, "seconds": 0.5},
        {
            "trial": 0,
            "epoch": 1,
            "loss": 0.9,
            "ndcg@20": 0.1,
            "hr@5": 0.2,
            "ndcg@5": 0.05,
            "hr@10": 0.3,
            "seconds": 0.4,
            "w_item": 0.9,
            "w_feat": 0.1,
        },
    ]
    cell.write_epochs(rows)
    with cell.epochs_csv.open() as handle:
        header = next(csv.reader(handle))
    assert header == [
        "trial",
        "epoch",
        "loss",
        "hr@5",
        "hr@10",
        "ndcg@5",
        "ndcg@20",
        "seconds",
        "cpu_seconds",
        "w_item",
        "w_feat",
    ]


def test_done_seeds_reads_final_folder(tmp_path: Path) -> None:
    cell = CellStore(tmp_path / "c")
    assert cell.done_seeds() == []
    write_json_atomic(cell.seed_json(2025), tiny_run_result(2025).to_dict())
    write_json_atomic(cell.seed_json(2024), tiny_run_result(2024).to_dict())
    cell.seed_checkpoint_dir(2026).mkdir(parents=True)
    assert cell.done_seeds() == [2024, 2025]


def test_paths_follow_the_layout(tmp_path: Path) -> None:
    store = StudyStore.at(tmp_path, "beauty")
    cell = store.cell("beauty__sasrec__faerec")
    assert store.spec_yaml == tmp_path / "beauty" / "spec.yaml"
    assert store.results_csv == tmp_path / "beauty" / "results.csv"
    assert (
        cell.journal == tmp_path / "beauty" / "cells" / "beauty__sasrec__faerec" / "optuna.journal"
    )
    assert cell.seed_json(2024).name == "seed_2024.json" and cell.tune_dir.name == "tune"


def test_a_missing_study_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FaerecError, match="no study named 'nope'") as caught:
        StudyStore.at(tmp_path, "nope").load_study_json()
    assert caught.value.exit_code == 2
