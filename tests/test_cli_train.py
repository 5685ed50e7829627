"""`faerec-study train` end to end on ml-100k with a tiny model: exit codes, table, JSON."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from faerec.cli import main

TINY_SETTINGS = [
    "--set",
    "model.hidden_size=16",
    "--set",
    "data.max_seq_length=20",
    "--set",
    "train.max_epochs=2",
    "--set",
    "train.eval_start_epoch=0",
    "--set",
    "train.num_threads=1",
    "--set",
    "train.device=cpu",
]


def _train_args(*extra: str) -> list[str]:
    return [
        "train",
        "--dataset",
        "ml-100k",
        "--backbone",
        "sasrec",
        "--method",
        "backbone",
        "--preset",
        "none",
        *TINY_SETTINGS,
        *extra,
    ]


def test_train_prints_a_table_and_writes_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run.json"
    assert main(_train_args("--json", str(out), "--output", str(tmp_path / "ckpt"), "--quiet")) == 0
    printed = capsys.readouterr().out
    header = next(line for line in printed.splitlines() if line.startswith("group"))
    assert header.split() == [
        "group",
        "users",
        "HR@5",
        "NDCG@5",
        "HR@10",
        "NDCG@10",
        "HR@20",
        "NDCG@20",
    ]
    assert any(line.split()[:2] == ["overall", "943"] for line in printed.splitlines())

    payload = json.loads(out.read_text())
    assert (payload["dataset"], payload["backbone"], payload["method"], payload["seed"]) == (
        "ml-100k",
        "sasrec",
        "backbone",
        2024,
    )
    assert payload["config"]["model"]["hidden_size"] == 16
    rows = payload["results"]
    assert set(rows[0]) == {"split", "group", "metric", "k", "value", "n_users"}
    overall_test = {
        (r["metric"], r["k"]): r for r in rows if r["split"] == "test" and r["group"] == "overall"
    }
    assert set(overall_test) == {(m, k) for m in ("hr", "ndcg") for k in (5, 10, 20)}
    assert overall_test[("hr", 20)]["n_users"] == 943
    assert {r["split"] for r in rows} == {"valid", "test"}
    assert (tmp_path / "ckpt" / "checkpoint.pt").exists()
    assert (
        json.loads((tmp_path / "ckpt" / "result.json").read_text())["best_epoch"]
        == payload["best_epoch"]
    )


def test_unknown_dataset_is_exit_code_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--dataset", "no-such-data"]) == 2
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and "unknown dataset 'no-such-data'" in error


def test_unknown_key_is_exit_code_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--dataset", "ml-100k", "--set", "train.learning_rate=0.1"]) == 2
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and "train.learning_rate" in error


def test_wrongly_typed_value_is_exit_code_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--dataset", "ml-100k", "--set", "train.max_epochs=many"]) == 2
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and "train.max_epochs: expected int" in error


@pytest.mark.parametrize("option", [["--backbone", "bert4rec"], ["--method", "magic"]])
def test_unknown_backbone_or_method_is_exit_code_2(option: list[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--dataset", "ml-100k", *option])
    assert exit_info.value.code == 2


def test_train_runs_as_a_real_process(tmp_path: Path) -> None:
    out = tmp_path / "run.json"
    args = _train_args("--json", str(out), "--set", "train.max_epochs=1")
    completed = subprocess.run(
        [sys.executable, "-m", "faerec.cli", *args], capture_output=True, text=True, timeout=300
    )
    assert completed.returncode == 0, completed.stderr
    assert "overall" in completed.stdout
    assert json.loads(out.read_text())["epochs_trained"] == 1
    # stderr is a pipe: the device line and one line per epoch, each with a UTC timestamp
    stamp = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"
    lines = completed.stderr.splitlines()
    assert re.fullmatch(rf"{stamp} device cpu \(.*\), 1 CPU thread", lines[0]), lines
    epochs = [line for line in lines if re.match(rf"{stamp} epoch 1/1 ", line)]
    assert len(epochs) == 1 and "valid ndcg@20" in epochs[0] and "\r" not in completed.stderr
    assert "best epoch 1 (valid" in completed.stdout  # epochs shown counted from 1


def test_a_budget_without_validation_is_warned_about(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["train", "--dataset", "ml-100k", "--quiet", "--set", "train.max_epochs=1"]
    args += ["--set", "model.hidden_size=16", "--set", "train.device=cpu"]
    assert main(args) == 0  # the official preset validates ml-100k's SASRec from epoch 202
    err = capsys.readouterr().err
    assert "warning: train.max_epochs 1 ends before the first validation" in err
    assert "train.eval_start_epoch 201 is 0-based: epoch 202" in err
