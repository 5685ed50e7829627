"""Damaged or unwritable study files never cost a finished trial (faerec/study/store.py).

A cut journal record, a derived file about to shrink, a corrupt final seed, a read-only folder,
a folder whose study has another name: each is met with one line and no lost work.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
from report_fixtures import make_study_store, tiny_run_result

from faerec.cli import main
from faerec.errors import DataError
from faerec.report.load import load_study, open_optuna_study
from faerec.study.retry import INTERRUPTED_ERROR
from faerec.study.spec import parse_spec_text
from faerec.study.store import (
    LAYOUT,
    CellStore,
    StudyStore,
    read_csv,
    repair_journal,
    write_json_atomic,
)

REPO = Path(__file__).resolve().parent.parent
SEARCHED = "ml-100k__sasrec__faerec"
CUT_RECORD = b'{"op_code":5,"worker_id":"w","trial_id":3,"param_na'

SPEC = """\
name: {name}
datasets: [ml-100k]
backbones: [sasrec]
methods: [backbone]
search:
  trials: 2
final: {{seeds: 1}}
"""


@pytest.fixture
def study(tmp_path: Path) -> StudyStore:
    """A finished study with one searched cell (a real Optuna journal) and one preset cell."""
    make_study_store(
        tmp_path / "studies",
        "demo",
        methods=("backbone", "faerec"),
        searched=("faerec",),
        seeds=(2024,),
        n_trials=4,
    )
    return StudyStore(tmp_path / "studies" / "demo")


def n_trials(cell: CellStore) -> int:
    storage = cell.open_storage()
    return len(optuna.load_study(study_name=cell.cell_id, storage=storage).trials)


# --- the Optuna journal ------------------------------------------------------------------------


def test_status_sets_aside_a_cut_last_journal_record(
    study: StudyStore, capsys: pytest.CaptureFixture[str]
) -> None:
    journal = study.cell(SEARCHED).journal
    whole = journal.read_bytes()
    journal.write_bytes(whole + CUT_RECORD)
    assert main(["status", "demo", "--studies-dir", str(study.root.parent)]) == 0
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "set aside a cut last record" in line
    assert journal.read_bytes() == whole
    (backup,) = journal.parent.glob("optuna.journal.damaged-*")
    assert backup.read_bytes() == whole + CUT_RECORD
    assert backup.name in line


def test_opening_a_cut_journal_keeps_every_complete_record_and_appends_cleanly(
    study: StudyStore,
) -> None:
    cell = study.cell(SEARCHED)
    before = n_trials(cell)
    cell.journal.write_bytes(cell.journal.read_bytes() + CUT_RECORD)
    storage = cell.open_storage()
    optuna_study = optuna.load_study(study_name=cell.cell_id, storage=storage)
    assert len(optuna_study.trials) == before
    lr = optuna.distributions.FloatDistribution(1e-4, 1e-2, log=True)
    trial = optuna_study.ask({"train.lr": lr})
    optuna_study.tell(trial, 0.01)
    lines = cell.journal.read_bytes().split(b"\n")
    assert lines[-1] == b"" and all(isinstance(json.loads(x), dict) for x in lines[:-1])
    assert n_trials(cell) == before + 1


def test_the_report_opens_a_cut_journal_like_the_driver(study: StudyStore) -> None:
    journal = study.cell(SEARCHED).journal
    journal.write_bytes(journal.read_bytes() + CUT_RECORD)
    record = load_study(study.root)
    (cell,) = [c for c in record.cells if c.cell_id == SEARCHED]
    optuna_study = open_optuna_study(cell)
    assert optuna_study is not None and len(optuna_study.trials) == 4
    assert len(list(journal.parent.glob("optuna.journal.damaged-*"))) == 1


def test_a_whole_journal_is_left_alone(study: StudyStore) -> None:
    journal = study.cell(SEARCHED).journal
    whole = journal.read_bytes()
    assert repair_journal(journal) is None
    assert journal.read_bytes() == whole
    assert not list(journal.parent.glob("*.damaged-*"))


def test_damage_before_the_last_records_is_refused_naming_the_line(study: StudyStore) -> None:
    journal = study.cell(SEARCHED).journal
    lines = journal.read_bytes().split(b"\n")
    lines[2] = b"{not json"
    damaged = b"\n".join(lines) + CUT_RECORD
    journal.write_bytes(damaged)
    with pytest.raises(DataError, match=r"optuna\.journal:3: not an Optuna journal record"):
        repair_journal(journal)
    assert journal.read_bytes() == damaged  # nothing cut


def test_opening_a_journal_damaged_in_the_middle_names_the_line(study: StudyStore) -> None:
    cell = study.cell(SEARCHED)
    lines = cell.journal.read_bytes().split(b"\n")
    lines[4] = b"{not json"
    cell.journal.write_bytes(b"\n".join(lines))
    with pytest.raises(DataError, match=r"optuna\.journal:5: not an Optuna journal record"):
        cell.open_storage()


# --- derived files never shrink ----------------------------------------------------------------

FINISHED = [
    {"number": 0, "state": "COMPLETE", "value": 0.1},
    {"number": 1, "state": "PRUNED", "value": 0.05},
    {"number": 2, "state": "FAIL"},
]


def test_trials_csv_is_never_rewritten_with_fewer_finished_trials(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cell = CellStore(tmp_path / "cell")
    assert cell.write_trials(FINISHED)
    before = cell.trials_csv.read_bytes()
    assert not cell.write_trials(FINISHED[:1])
    assert cell.trials_csv.read_bytes() == before
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "trials.csv: kept as it was" in line and "finished trial(s) 1, 2" in line


def test_a_finished_trial_never_turns_back_into_a_running_one(tmp_path: Path) -> None:
    cell = CellStore(tmp_path / "cell")
    cell.write_trials(FINISHED)
    assert not cell.write_trials([*FINISHED[:2], {"number": 2, "state": "RUNNING"}])
    assert [r["state"] for r in read_csv(cell.trials_csv)] == ["COMPLETE", "PRUNED", "FAIL"]


def test_trials_csv_takes_new_trials(tmp_path: Path) -> None:
    cell = CellStore(tmp_path / "cell")
    cell.write_trials(FINISHED)
    assert cell.write_trials([*FINISHED, {"number": 3, "state": "RUNNING"}])
    assert len(read_csv(cell.trials_csv)) == 4


def test_epochs_csv_never_loses_an_epoch_row(tmp_path: Path) -> None:
    cell = CellStore(tmp_path / "cell")
    rows = [{"trial": 0, "epoch": e, "loss": 1.0} for e in range(3)]
    assert cell.write_epochs(rows)
    assert not cell.write_epochs(rows[:2])
    assert len(read_csv(cell.epochs_csv)) == 3


def test_best_json_never_falls_back_to_a_worse_trial(tmp_path: Path) -> None:
    cell = CellStore(tmp_path / "cell")
    assert cell.write_best({"trial": 4, "value": 0.3, "params": {}})
    assert not cell.write_best({"trial": 1, "value": 0.2, "params": {}})
    assert cell.write_best({"trial": 7, "value": 0.4, "params": {}})
    assert json.loads(cell.best_json.read_text())["trial"] == 7
    assert cell.write_best({"trial": 9, "value": 0.1, "params": {}}, "minimize")


def test_results_csv_never_loses_a_final_seed(tmp_path: Path) -> None:
    store = StudyStore(tmp_path / "s")
    columns = ("dataset", "backbone", "method", "seed", "value")
    rows = [{"dataset": "d", "backbone": "b", "method": "m", "seed": s, "value": 1} for s in (1, 2)]
    assert store.write_results(columns, rows)
    assert not store.write_results(columns, rows[:1])
    assert len(read_csv(store.results_csv)) == 2


# --- corrupt final seeds -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "content",
    [b"\xff\xfe{", b'{"config": {}, "best_epoch": ', b'{"config": {}}'],
    ids=["invalid-utf8", "invalid-json", "missing-keys"],
)
def test_a_corrupt_seed_is_moved_aside_and_not_counted(
    tmp_path: Path, content: bytes, capsys: pytest.CaptureFixture[str]
) -> None:
    cell = CellStore(tmp_path / "cell")
    write_json_atomic(cell.seed_json(2024), tiny_run_result(2024).to_dict())
    cell.seed_json(2025).write_bytes(content)
    assert cell.done_seeds() == [2024]
    (aside,) = cell.set_aside_seeds()
    assert aside.name.startswith("seed_2025.json.corrupt-")
    assert aside.read_bytes() == content
    assert not cell.seed_json(2025).exists()
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "seed_2025.json" in line and "the seed will be run again" in line


def test_status_counts_set_aside_seeds(
    study: StudyStore, capsys: pytest.CaptureFixture[str]
) -> None:
    study.cell(SEARCHED).seed_json(2024).write_text("{")
    assert main(["status", "demo", "--studies-dir", str(study.root.parent)]) == 0
    out = capsys.readouterr().out
    assert "final: 0/1 seeds, 1 set aside" in out
    assert "final: 1/1 seeds\n" in out  # the other cell


# --- unwritable folders, resume in the right folder ----------------------------------------


def write_study(studies: Path, folder: str, name: str) -> StudyStore:
    """A study folder as ``run`` leaves it before its first trial (a real, valid spec)."""
    spec = parse_spec_text(SPEC.format(name=name), "spec.yaml", REPO)
    store = StudyStore(studies / folder)
    write_json_atomic(
        store.study_json,
        {"name": name, "spec": spec.to_dict(), "cells": [c.cell_id for c in spec.cells()]},
    )
    return store


@pytest.fixture
def shared_tmp() -> Iterator[Path]:
    """A temporary folder another user can enter (pytest's own are private to root)."""
    folder = Path(tempfile.mkdtemp(prefix="faerec-ro-"))
    folder.chmod(0o755)
    yield folder
    for path in [folder, *folder.rglob("*")]:
        if path.is_dir():
            path.chmod(0o755)
    shutil.rmtree(folder)


def _others_can_read(path: Path) -> bool:
    """Whether a user with no rights of its own can read ``path`` (every folder above it
    searchable, the file readable): else the dropped-privilege CLI cannot even import."""
    folders_ok = all(folder.stat().st_mode & 0o001 for folder in path.parents)
    return folders_ok and bool(path.stat().st_mode & 0o004)


def cli_unprivileged(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """The CLI as a user without write access (root writes anywhere: run it as nobody)."""
    prefix = []
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            pytest.skip("running as root without setpriv to drop privileges")
        code = Path(__file__).resolve().parent.parent / "faerec" / "cli.py"
        if not _others_can_read(code):
            pytest.skip(f"{code.parent.parent}: a folder above it is private to its owner")
        prefix = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    return subprocess.run(
        [*prefix, sys.executable, "-m", "faerec.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=120,
        env={**os.environ, "HOME": str(cwd)},
    )


def test_resume_of_a_read_only_study_exits_2_naming_the_folder(shared_tmp: Path) -> None:
    store = write_study(shared_tmp / "studies", "ro", "ro")
    store.root.chmod(0o555)
    done = cli_unprivileged("resume", "ro", "--studies-dir", "studies", cwd=shared_tmp)
    assert done.returncode == 2
    (line,) = done.stderr.strip().splitlines()
    assert f"{store.root}: cannot write here" in line and "Traceback" not in done.stderr
    assert sorted(p.name for p in store.root.iterdir()) == ["study.json"]


def test_run_into_a_read_only_studies_dir_exits_2_naming_it(shared_tmp: Path) -> None:
    studies = shared_tmp / "studies"
    studies.mkdir(mode=0o555)
    studies.chmod(0o555)
    (shared_tmp / "ro.yaml").write_text(SPEC.format(name="ro"))
    done = cli_unprivileged("run", "ro.yaml", "--studies-dir", "studies", cwd=shared_tmp)
    assert done.returncode == 2
    (line,) = done.stderr.strip().splitlines()
    assert f"{studies}: cannot write here" in line
    assert not list(studies.iterdir())


def test_run_with_a_read_only_reports_dir_exits_2_before_any_work(shared_tmp: Path) -> None:
    reports = shared_tmp / "reports"
    reports.mkdir()
    reports.chmod(0o555)
    (shared_tmp / "studies").mkdir(mode=0o777)
    (shared_tmp / "studies").chmod(0o777)
    (shared_tmp / "ro.yaml").write_text(SPEC.format(name="ro"))
    done = cli_unprivileged(
        "run", "ro.yaml", "--studies-dir", "studies", "--reports-dir", "reports", cwd=shared_tmp
    )
    assert done.returncode == 2
    (line,) = done.stderr.strip().splitlines()
    assert f"{reports}: cannot write here" in line
    assert not list((shared_tmp / "studies").iterdir())


@pytest.mark.parametrize("how", ["by-path", "by-name"])
def test_resume_refuses_a_folder_that_holds_another_study(
    tmp_path: Path, how: str, capsys: pytest.CaptureFixture[str]
) -> None:
    studies = tmp_path / "studies"
    write_study(studies, "copy", "original")
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    target = str(studies / "copy") if how == "by-path" else "copy"
    assert main(["resume", target, "--studies-dir", str(studies)]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "holds the study 'original'" in line and "nothing was written" in line
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


def test_run_refuses_a_folder_that_holds_another_study(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    studies = tmp_path / "studies"
    write_study(studies, "renamed", "original")
    (tmp_path / "renamed.yaml").write_text(SPEC.format(name="renamed"))
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    assert main(["run", str(tmp_path / "renamed.yaml"), "--studies-dir", str(studies)]) == 2
    assert "holds the study 'original', not 'renamed'" in capsys.readouterr().err
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


# --- status of every study, the layout ----------------------------------------------------------


def test_status_without_a_name_lists_the_studies(
    study: StudyStore, capsys: pytest.CaptureFixture[str]
) -> None:
    write_study(study.root.parent, "fresh", "fresh")
    assert main(["status", "--studies-dir", str(study.root.parent)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].split() == ["study", "cells", "trials", "seeds", "reference", "state"]
    # no results.csv, and the searched cell's preset not retrained yet
    assert lines[1].split() == ["demo", "2", "4/4", "2/2", "0/1", "interrupted"]
    assert lines[2].split() == ["fresh", "1", "0/0", "0/1", "0/0", "interrupted"]


def test_a_finished_study_is_listed_as_finished(
    study: StudyStore, capsys: pytest.CaptureFixture[str]
) -> None:
    study.write_results(("study",), [{"study": "demo"}])
    write_json_atomic(study.cell(SEARCHED).reference_json(2024), tiny_run_result(2024).to_dict())
    assert main(["status", "--studies-dir", str(study.root.parent)]) == 0
    assert capsys.readouterr().out.strip().splitlines()[1].split()[-1] == "finished"


def test_a_study_missing_reference_runs_is_not_finished(
    study: StudyStore, capsys: pytest.CaptureFixture[str]
) -> None:
    study.write_results(("study",), [{"study": "demo"}])
    assert main(["status", "--studies-dir", str(study.root.parent)]) == 0
    assert capsys.readouterr().out.strip().splitlines()[1].split()[-1] == "interrupted"


def test_status_counts_the_reference_runs_of_a_searched_cell(
    study: StudyStore, capsys: pytest.CaptureFixture[str]
) -> None:
    write_json_atomic(study.cell(SEARCHED).reference_json(2024), tiny_run_result(2024).to_dict())
    assert main(["status", "demo", "--studies-dir", str(study.root.parent)]) == 0
    out = capsys.readouterr().out
    assert "final: 1/1 seeds, reference 1/1\n" in out  # the searched cell
    assert "final: 1/1 seeds\n" in out  # the preset cell has no reference runs


def test_docs_show_the_layout_the_store_defines() -> None:
    assert LAYOUT in (REPO / "docs" / "store-layout.md").read_text(encoding="utf-8")


def test_the_report_counts_running_trials_of_a_stopped_study_as_interrupted(
    study: StudyStore,
) -> None:
    from faerec.report.tables import search_summary

    cell = study.cell(SEARCHED)
    storage = cell.open_storage()
    optuna.load_study(study_name=SEARCHED, storage=storage).ask()  # left RUNNING by a dead driver
    (record,) = [c for c in load_study(study.root).cells if c.cell_id == SEARCHED]
    counts = search_summary(record).counts
    assert counts.get("INTERRUPTED") == 1 and "RUNNING" not in counts


def test_an_interrupted_and_retried_attempt_is_counted_apart_not_listed_as_a_failure(
    study: StudyStore,
) -> None:
    from faerec.report.tables import search_summary, trial_counts_text

    cell = study.cell(SEARCHED)
    optuna_study = optuna.load_study(study_name=SEARCHED, storage=cell.open_storage())
    stopped = optuna_study.ask()  # a driver stop marks it failed and enqueues its retry
    optuna_study.tell(stopped, state=optuna.trial.TrialState.FAIL)
    optuna_study.enqueue_trial(stopped.params, user_attrs={"retry_of": stopped.number})
    retry = optuna_study.ask()
    optuna_study.tell(retry, 0.01)
    rows: list[dict[str, object]] = [dict(row) for row in cell.read_trials()]
    rows += [
        {"number": stopped.number, "state": "FAIL", "error": INTERRUPTED_ERROR},
        {"number": retry.number, "state": "COMPLETE", "value": 0.01, "retry_of": stopped.number},
    ]
    cell.write_trials(rows)
    (record,) = [c for c in load_study(study.root).cells if c.cell_id == SEARCHED]
    summary = search_summary(record)
    assert stopped.number not in [number for number, _ in summary.failures]
    text = trial_counts_text(summary)
    assert text.startswith("5 trials of 4 planned: ")
    assert text.endswith(
        "; plus 1 attempt cut short by a driver stop "
        "(a resume re-runs each from its last checkpoint)"
    )
