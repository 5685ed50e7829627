"""One driver per study: the lock in faerec/study/lock.py, seen from real processes and the CLI."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from faerec.cli import main
from faerec.study.lock import LOCK_FILE, StudyLock, StudyLocked
from faerec.study.store import StudyStore

SPEC = """\
name: locked
datasets: [ml-100k]
backbones: [sasrec]
methods: [backbone]
search:
  trials: 2
final: {seeds: 1}
"""

HOLDER = """\
import sys, time
from faerec.study.lock import StudyLock
with StudyLock(sys.argv[1], "faerec-study run held.yaml"):
    print("locked", flush=True)
    time.sleep(600)
"""


@pytest.fixture
def holder(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], Path]]:
    """Another process that holds the lock of ``studies/locked`` until it is killed."""
    folder = tmp_path / "studies" / "locked"
    process = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(folder)], stdout=subprocess.PIPE, text=True
    )
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "locked"
    yield process, folder
    process.kill()
    process.wait()


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "faerec.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=120,
    )


def test_a_second_driver_exits_2_naming_the_holder(
    tmp_path: Path, holder: tuple[subprocess.Popen[str], Path]
) -> None:
    process, folder = holder
    spec = tmp_path / "locked.yaml"
    spec.write_text(SPEC)
    done = cli("run", str(spec), "--studies-dir", str(folder.parent), cwd=tmp_path)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert f"pid {process.pid} on {socket.gethostname()} since " in lines[0]
    assert sorted(p.name for p in folder.iterdir()) == [LOCK_FILE]  # nothing else written


def test_the_lock_itself_refuses_a_second_holder(
    holder: tuple[subprocess.Popen[str], Path],
) -> None:
    process, folder = holder
    with pytest.raises(StudyLocked, match=f"pid {process.pid} on "), StudyLock(folder):
        pass


def test_a_killed_holder_leaves_a_lock_that_is_taken_over(
    holder: tuple[subprocess.Popen[str], Path], capsys: pytest.CaptureFixture[str]
) -> None:
    process, folder = holder
    assert StudyLock.holder(folder) is not None
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert StudyLock.holder(folder) is None
    with StudyLock(folder, "faerec-study resume locked") as lock:
        assert lock.info is not None and lock.info.pid == os.getpid()
        assert StudyLock.last_holder(folder) == lock.info
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert f"taking over the lock of a driver that is gone (pid {process.pid} on " in err[0]


def test_the_lock_is_released_when_the_driver_raises(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), StudyLock(tmp_path, "run"):
        assert StudyLock.holder(tmp_path) is not None
        raise RuntimeError("crash")
    assert StudyLock.holder(tmp_path) is None
    assert (tmp_path / LOCK_FILE).read_text() == ""  # released: no holder named


def test_one_process_cannot_drive_a_study_twice(tmp_path: Path) -> None:
    with StudyLock(tmp_path, "run"), pytest.raises(StudyLocked), StudyLock(tmp_path, "again"):
        pass


def test_status_says_running_only_while_a_driver_holds_the_lock(
    tmp_path: Path,
    holder: tuple[subprocess.Popen[str], Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    from report_fixtures import make_study_store

    process, folder = holder
    make_study_store(folder.parent, "locked", n_trials=4, searched=("faerec",))
    cell = StudyStore(folder).cell("ml-100k__sasrec__faerec")
    cell.write_trials([*cell.read_trials(), {"number": 4, "state": "RUNNING"}])
    assert main(["status", "locked", "--studies-dir", str(folder.parent)]) == 0
    out = capsys.readouterr().out
    assert f"state: running, driver pid {process.pid} on " in out
    assert "running 1)" in out
    process.kill()
    process.wait()
    assert main(["status", "locked", "--studies-dir", str(folder.parent)]) == 0
    out = capsys.readouterr().out
    assert "state: interrupted (no driver runs it)" in out
    (trials,) = [line for line in out.splitlines() if line.startswith("  trials:")]
    assert "interrupted 1" in trials and "running" not in trials


def test_status_leaves_the_journal_of_a_running_driver_alone(
    holder: tuple[subprocess.Popen[str], Path], capsys: pytest.CaptureFixture[str]
) -> None:
    from report_fixtures import make_study_store

    _, folder = holder
    make_study_store(folder.parent, "locked", n_trials=4, searched=("faerec",))
    journal = StudyStore(folder).cell("ml-100k__sasrec__faerec").journal
    in_flight = journal.read_bytes() + b'{"op_code":5,"worker'  # the driver is appending
    journal.write_bytes(in_flight)
    assert main(["status", "locked", "--studies-dir", str(folder.parent)]) == 0
    assert journal.read_bytes() == in_flight
    assert not list(journal.parent.glob("*.damaged-*"))
    assert "set aside" not in capsys.readouterr().err
