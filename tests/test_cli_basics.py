"""The CLI's common edges, through the real `faerec-study` command in a subprocess.

--version, --data-dir (before or after the command name, beating FAEREC_DATA_DIR), validate
with several files, "did you mean" for a dataset name, report cut-offs that were never
measured, and counts that read "1 epoch" rather than "1 epochs".
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from report_fixtures import make_study_store

import faerec
from faerec.text import did_you_mean, plural

REPO = Path(__file__).resolve().parents[1]
QUICK_SPEC = REPO / "search_spaces" / "quick.yaml"


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``faerec-study ARGS`` as a user runs it (the entry point's module), env added to ours."""
    return subprocess.run(
        [sys.executable, "-m", "faerec.cli", *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**os.environ, **(env or {})},
    )


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data folder whose beauty/ has 8 users and 10 items (bundled layout, bundled fields)."""
    root = tmp_path_factory.mktemp("data")
    folder = root / "beauty"
    folder.mkdir()
    rng = random.Random(0)
    lines = [" ".join(map(str, [u, *rng.sample(range(1, 11), 5)])) for u in range(1, 9)]
    (folder / "Beauty.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    items = [{"item_id": i, "title": f"item {i}", "attributes": ["a"]} for i in range(1, 11)]
    (folder / "items.jsonl").write_text(
        "".join(json.dumps(item) + "\n" for item in items), encoding="utf-8"
    )
    return root


# --- --version -------------------------------------------------------------------------------


def test_version_prints_the_package_version() -> None:
    completed = cli("--version")
    assert (completed.returncode, completed.stdout.strip()) == (
        0,
        f"faerec-study {faerec.__version__}",
    )


# --- --data-dir --------------------------------------------------------------------------------


def test_data_dir_after_the_command_beats_the_environment(tiny_data: Path) -> None:
    completed = cli(
        "validate", str(QUICK_SPEC), "--data-dir", str(tiny_data),
        env={"FAEREC_DATA_DIR": str(tiny_data / "missing")},
    )  # fmt: skip
    assert "data beauty: 8 users, 10 items" in completed.stdout, completed.stderr


def test_data_dir_before_the_command_is_used(tiny_data: Path) -> None:
    completed = cli("--data-dir", str(tiny_data), "validate", str(QUICK_SPEC))
    assert "data beauty: 8 users, 10 items" in completed.stdout, completed.stderr


def test_data_dir_that_is_not_a_folder_is_one_line_and_exit_2(tmp_path: Path) -> None:
    completed = cli("--data-dir", str(tmp_path / "nope"), "validate", str(QUICK_SPEC))
    assert completed.returncode == 2
    assert completed.stderr.strip().splitlines() == [
        f"faerec-study: error: --data-dir {tmp_path / 'nope'}: not a folder"
    ]


# --- validate with several files --------------------------------------------------------------


@pytest.fixture()
def bad_spec(tmp_path: Path) -> Path:
    path = tmp_path / "bad.yaml"
    path.write_text("name: bad\nbogus: 1\n", encoding="utf-8")
    return path


def test_validate_reports_every_file_after_a_bad_one(bad_spec: Path, tiny_data: Path) -> None:
    completed = cli("validate", str(bad_spec), str(QUICK_SPEC), "--data-dir", str(tiny_data))
    assert f"{QUICK_SPEC}: ok" in completed.stdout
    assert f"in {bad_spec}" in completed.stderr.splitlines()[-1]


def test_validate_exits_2_when_any_file_is_bad(bad_spec: Path, tiny_data: Path) -> None:
    completed = cli("validate", str(QUICK_SPEC), str(bad_spec), "--data-dir", str(tiny_data))
    assert completed.returncode == 2


def test_validate_exits_0_when_every_file_is_good(tiny_data: Path) -> None:
    completed = cli("validate", str(QUICK_SPEC), str(QUICK_SPEC), "--data-dir", str(tiny_data))
    assert (completed.returncode, completed.stdout.count(": ok\n")) == (0, 2)


def test_validate_names_each_bad_files_data_error(tmp_path: Path, tiny_data: Path) -> None:
    broken = tmp_path / "data"
    shutil.copytree(tiny_data, broken)
    (broken / "beauty" / "Beauty.txt").write_text("1 1 x\n", encoding="utf-8")
    completed = cli("validate", str(QUICK_SPEC), str(QUICK_SPEC), "--data-dir", str(broken))
    errors = [line for line in completed.stderr.splitlines() if "error:" in line]
    assert len(errors) == 2 and all(str(QUICK_SPEC) in line for line in errors)


# --- did you mean -------------------------------------------------------------------------------


def test_train_suggests_the_closest_bundled_dataset() -> None:
    completed = cli("train", "--dataset", "ml100k")
    assert completed.returncode == 2
    assert "(did you mean 'ml-100k'?)" in completed.stderr
    assert len(completed.stderr.strip().splitlines()) == 1


def test_did_you_mean_is_empty_when_nothing_is_close() -> None:
    assert did_you_mean("zzzz", ["beauty", "yelp", "ml-100k"]) == ""


# --- report cut-offs ------------------------------------------------------------------------------


def test_report_refuses_a_cut_off_that_was_not_measured(tmp_path: Path) -> None:
    make_study_store(tmp_path / "studies", "demo")
    completed = cli(
        "report", "demo", "--studies-dir", str(tmp_path / "studies"),
        "--reports-dir", str(tmp_path / "reports"), "--ks", "10,50",
    )  # fmt: skip
    assert completed.returncode == 2
    assert "K = 50 not measured" in completed.stderr
    assert not (tmp_path / "reports").exists()


# --- plurals ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("count", "noun", "expected"),
    [(1, "epoch", "1 epoch"), (0, "epoch", "0 epochs"), (2, "parameter", "2 parameters")],
)
def test_plural_agrees_with_the_count(count: int, noun: str, expected: str) -> None:
    assert plural(count, noun) == expected


def test_plural_takes_an_irregular_form() -> None:
    assert plural(3, "study", "studies") == "3 studies"


def test_plural_separates_thousands() -> None:
    assert plural(22363, "user") == "22,363 users"


def test_train_says_1_epoch(tiny_data: Path) -> None:
    completed = cli(
        "train", "--dataset", "beauty", "--data-dir", str(tiny_data), "--quiet",
        "--set", "train.max_epochs=1", "--set", "train.eval_start_epoch=0",
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr
    assert " 1 epoch, " in completed.stdout.splitlines()[0]


def test_validate_notes_a_patience_shorter_than_the_curriculum(
    tmp_path: Path, tiny_data: Path
) -> None:
    spec = tmp_path / "short.yaml"
    spec.write_text(
        "name: short\ndatasets: [beauty]\nbackbones: [sasrec]\nmethods: [backbone, faerec]\n"
        "preset: official\n"
        "fixed: {train.max_epochs: 100, train.eval_start_epoch: 0, train.patience: 5}\n",
        encoding="utf-8",
    )
    completed = cli("validate", str(spec), "--data-dir", str(tiny_data))
    assert completed.returncode == 0, completed.stderr
    notes = [line for line in completed.stderr.splitlines() if "early stopping waits" in line]
    assert len(notes) == 1 and notes[0].endswith("(beauty__sasrec__faerec)")
    assert "waits 5 epochs" in notes[0] and "period of 30" in notes[0]
