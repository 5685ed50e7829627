"""Scale-out, exercised: cells searched at once within the study's concurrency, a driver joining
a real Ray head with ``--address``, and two drivers sharing one PostgreSQL study.

The head is started with ``ray start --head`` in a session of its own with a private temp dir
and stopped by killing that session's processes (never ``ray stop``, which would stop every Ray
on the machine). PostgreSQL runs from a cluster made with ``initdb`` in a temporary folder,
listening on a Unix socket only; those tests are skipped where the binaries are missing.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import optuna
import pytest

from faerec.errors import FaerecError
from faerec.study.bookkeeping import CellMonitor
from faerec.study.cell_search import CellSearch, run_concurrently
from faerec.study.lock import StudyLock
from faerec.study.progress import ProgressView
from faerec.study.reference import REFERENCE_ATTR
from faerec.study.retry import DRIVER_ATTR, RETRY_ATTR, STALE_ATTR
from faerec.study.shared import TrialSlots, driver_mark, running_elsewhere
from faerec.study.spec import parse_spec_text
from faerec.study.store import StudyStore, count_trials, open_storage, read_csv, read_json


def _harness() -> ModuleType:
    """benchmarks/kill_resume.py: its session helpers find and kill what a session started."""
    if "kill_resume" in sys.modules:
        return sys.modules["kill_resume"]
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "kill_resume.py"
    spec = importlib.util.spec_from_file_location("kill_resume", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["kill_resume"] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


harness = _harness()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# --- the pieces, without Ray ---------------------------------------------------------------------


def test_slots_are_shared_by_every_cell() -> None:
    slots = TrialSlots(2)
    assert slots.take("a", "t1") and slots.take("b", "t2")
    assert not slots.take("a", "t3")  # the study's concurrency is used up, whichever cell asks


def test_a_cell_whose_experiment_ended_gives_back_its_slots() -> None:
    slots = TrialSlots(2)
    assert slots.take("a", "t1") and slots.take("a", "t2")
    slots.release_cell("a")  # e.g. trials Tune created but never ran, after a stop
    assert slots.take("b", "t3") and slots.in_use() == 1


def test_a_slot_taken_with_spare_leaves_that_many_free_for_others() -> None:
    slots = TrialSlots(3)
    assert slots.take("final stage", "s1", spare=1)  # 1 in use, 2 free
    assert not slots.take("final stage", "s2", spare=2)  # would leave 1 free of the 2 kept
    assert slots.take("a", "t1") and slots.held("a") == 1


class _Trial:
    def __init__(self, mark: str | None) -> None:
        self.user_attrs = {} if mark is None else {DRIVER_ATTR: mark}


def test_unmarked_and_own_trials_are_this_drivers(tmp_path: Path) -> None:
    mine = driver_mark(tmp_path / "a")
    assert not running_elsewhere(_Trial(None), mine)
    assert not running_elsewhere(_Trial(mine), mine)


def test_a_trial_of_another_host_is_left_to_its_driver(tmp_path: Path) -> None:
    other = f"another-host.invalid:{tmp_path / 'b'}"
    assert running_elsewhere(_Trial(other), driver_mark(tmp_path / "a"))


def test_a_trial_of_a_folder_whose_driver_is_gone_is_not_live(tmp_path: Path) -> None:
    folder = tmp_path / "b"
    trial = _Trial(driver_mark(folder))
    mine = driver_mark(tmp_path / "a")
    with StudyLock(folder):
        assert running_elsewhere(trial, mine)  # its driver runs: hands off
    assert not running_elsewhere(trial, mine)  # lock free: retried as interrupted


def searcher(tmp_path: Path, storage: Any, target: int, driver: str) -> Any:
    """The cell's real searcher (no Ray needed to ask it for trials) on an Optuna storage."""
    from faerec.study.searcher import StudyOptunaSearch

    spec = parse_spec_text(TWO_CELLS, "spec.yaml", tmp_path)
    cell = spec.cells()[0]
    assert cell.space is not None
    if not storage.get_all_studies():
        optuna.create_study(study_name="cell", storage=storage, direction="maximize")
    return StudyOptunaSearch(
        space=cell.space,
        metric="objective",
        mode="max",
        storage=storage,
        study_name="cell",
        cell_id=cell.cell_id,
        sampler_kind="tpe",
        base_seed=0,
        tune_dir=str(tmp_path / "tune"),
        experiment="search-001",
        target=target,
        driver=driver,
    )


def test_no_trial_is_created_beyond_the_target_whichever_driver_runs_the_others(
    tmp_path: Path,
) -> None:
    from ray.tune.search import Searcher

    storage = optuna.storages.InMemoryStorage()
    other = searcher(tmp_path, storage, 2, f"another-host.invalid:{tmp_path / 'b'}")
    mine = searcher(tmp_path, storage, 2, driver_mark(tmp_path / "a"))
    assert isinstance(other.suggest("b1"), dict) and isinstance(mine.suggest("a1"), dict)
    assert mine.suggest("a2") is None  # the target is running (one trial elsewhere): wait
    mine.on_trial_complete("a1", {"objective": 0.5, "trial_finished": True})
    other.on_trial_complete("b1", {"objective": 0.4, "trial_finished": True})
    assert mine.suggest("a3") == Searcher.FINISHED  # the study holds its target: done
    assert count_trials(optuna.load_study(study_name="cell", storage=storage).trials).done == 2


def test_a_cell_that_fails_stops_the_other_cells_and_its_error_is_raised(tmp_path: Path) -> None:
    """One cell's round cannot start; the other cell's round, which runs until the driver's stop
    switch, is stopped (and marked interrupted) and the driver gets the first cell's error."""
    spec = parse_spec_text(TWO_CELLS, "spec.yaml", tmp_path)
    store = StudyStore.at(tmp_path / "studies", spec.name)
    stop = threading.Event()
    fitting = threading.Event()

    class RunsUntilStopped:  # stands in for a Tune experiment: ends when its stopper says so
        def fit(self) -> None:
            fitting.set()
            assert stop.wait(60)

    def broken(*args: object) -> Any:
        assert fitting.wait(60)  # fail while the other cell searches (not before it starts)
        raise FaerecError("no round for this cell")

    searches = []
    for cell, new_tuner in zip(spec.cells(), (broken, lambda *a: RunsUntilStopped()), strict=True):
        study = optuna.create_study(direction="maximize")
        cell_store = store.cell(cell.cell_id)
        view = ProgressView(io.StringIO())
        monitor = CellMonitor(spec, cell, cell_store, study, view, 2, 1)
        searches.append(
            CellSearch(
                cell, cell_store, study, cell.cell_id, None, 2, monitor, new_tuner, stop.is_set
            )
        )
    with pytest.raises(FaerecError, match="no round for this cell"):
        run_concurrently(searches, abort=stop.set)
    for search in searches:
        index = read_json(search.cell_store.tune_dir / "experiments.json")
        assert [e["status"] for e in index["experiments"]] == ["interrupted"]


# --- a real Ray head --------------------------------------------------------------------------

RAY_ENV = {"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}


class RayHead:
    """``ray start --head`` in a session of its own; :meth:`stop` kills that session only."""

    def __init__(self) -> None:
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.temp = Path(tempfile.mkdtemp(prefix="rh", dir="/tmp"))  # short: Ray's sockets
        env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"} | RAY_ENV
        self.log = (self.temp / "start.log").open("w")
        self.process = subprocess.Popen(
            [
                str(Path(sys.executable).with_name("ray")),
                "start",
                "--head",
                f"--port={self.port}",
                "--num-cpus=2",
                f"--temp-dir={self.temp / 'ray'}",
                "--include-dashboard=false",
                "--disable-usage-stats",
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        if self.process.wait(timeout=120) != 0:
            self.log.flush()
            output = (self.temp / "start.log").read_text()  # read before stop() removes it
            self.stop()
            pytest.fail(f"ray start failed: {output}")

    def stop(self) -> None:
        session = self.process.pid  # the session ray start led: the head's processes
        deadline = time.monotonic() + 30
        harness.kill_session(session)
        while harness.session_processes(session) and time.monotonic() < deadline:
            time.sleep(0.2)
            harness.kill_session(session)
        self.log.close()
        shutil.rmtree(self.temp, ignore_errors=True)


@pytest.fixture(scope="module")
def ray_head() -> Iterator[RayHead]:
    head = RayHead()
    try:
        yield head
    finally:
        head.stop()


def driver(root: Path, args: list[str], address: str, log: str) -> subprocess.Popen[bytes]:
    """``faerec-study ARGS`` joining the head, in its own session (killed with it at the end)."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"} | RAY_ENV
    args = [*args, "--address", address, "--reports-dir", str(root / "reports")]
    return subprocess.Popen(
        [sys.executable, "-m", "faerec.cli", *args],
        stdout=(root / log).open("w"),
        stderr=subprocess.STDOUT,
        env=env,
        cwd=root,
        start_new_session=True,
    )


def finish(process: subprocess.Popen[bytes], log: Path, timeout: float = 240) -> int:
    try:
        return process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        harness.kill_session(process.pid)
        pytest.fail(f"the driver did not end in {timeout:.0f} s:\n{log.read_text()}")
    finally:
        harness.kill_session(process.pid)  # anything of its own left behind


TWO_CELLS = """\
name: head
datasets: [ml-100k]
backbones: [sasrec, gru4rec]
methods: [backbone]
fixed:
  train.max_epochs: 1
  train.eval_start_epoch: 0
  model.hidden_size: 8
  model.num_layers: 1
  data.max_seq_length: 10
search:
  trials: 2
  seed: 5
  space:
    backbone:
      train.lr: {loguniform: [0.0005, 0.01]}
scheduler: {type: none}
resources: {cpus_per_trial: 1, max_concurrent: 3}
final: {seeds: 0}
"""
CELLS = ("ml-100k__sasrec__backbone", "ml-100k__gru4rec__backbone")


def intervals(trials: list[Any]) -> list[tuple[datetime, datetime]]:
    return [(t.datetime_start, t.datetime_complete) for t in trials]


def most_at_once(spans: list[tuple[datetime, datetime]], slack_s: float = 1.0) -> int:
    """Most trials running at once. Optuna's timestamps are written by the driver after Tune
    reports a trial's end (milliseconds after its slot was given back), so each span is read as
    ending ``slack_s`` earlier; a real extra slot would overlap for a whole trial."""
    slack = timedelta(seconds=slack_s)
    ends = [max(s, e - slack) for s, e in spans]
    events = sorted([(s, 1) for s, _ in spans] + [(e, -1) for e in ends])
    level = peak = 0
    for _, step in events:
        level += step
        peak = max(peak, level)
    return peak


def running_in_every_cell(studies: Path) -> bool:
    cells = [studies / "head" / "cells" / cell / "trials.csv" for cell in CELLS]
    return all(any(r["state"] == "RUNNING" for r in read_csv(path)) for path in cells)


@pytest.mark.ray
def test_a_study_on_a_ray_head_runs_its_cells_at_once_and_resumes_after_a_kill(
    ray_head: RayHead, tmp_path: Path
) -> None:
    spec = tmp_path / "head.yaml"
    spec.write_text(TWO_CELLS)
    studies = tmp_path / "studies"
    run = driver(
        tmp_path, ["run", str(spec), "--studies-dir", str(studies)], ray_head.address, "run.log"
    )
    log = tmp_path / "run.log"
    deadline = time.monotonic() + 180
    while not running_in_every_cell(studies):  # both cells search at the same time
        assert run.poll() is None and time.monotonic() < deadline, log.read_text()
        time.sleep(0.2)
    run.kill()  # the driver, like `kill -9`, with trials of both cells in flight
    assert finish(run, log) == -signal.SIGKILL
    assert f"ray: joining the cluster at {ray_head.address}" in log.read_text()
    args = ["resume", "head", "--studies-dir", str(studies)]
    resume = driver(tmp_path, args, ray_head.address, "resume.log")
    assert finish(resume, tmp_path / "resume.log") == 0, (tmp_path / "resume.log").read_text()
    spans: dict[str, list[tuple[datetime, datetime]]] = {}
    for cell in CELLS:
        journal = studies / "head" / "cells" / cell / "optuna.journal"
        trials = optuna.load_study(study_name=cell, storage=open_storage("", journal)).trials
        counts = count_trials(trials)
        assert counts.done == 2 and counts.running == counts.waiting == 0  # counted once each
        ran = [t for t in trials if not t.user_attrs.get(STALE_ATTR)]
        assert [t.state.name for t in ran] == ["COMPLETE", "COMPLETE"]
        assert len({json.dumps(t.params, sort_keys=True) for t in ran}) == 2  # none run twice
        retried = [t.user_attrs[RETRY_ATTR] for t in trials if RETRY_ATTR in t.user_attrs]
        assert sorted(retried) == [t.number for t in trials if t.user_attrs.get(STALE_ATTR)]
        assert len(read_csv(journal.with_name("trials.csv"))) == len(trials)
        spans[cell] = intervals(ran)
    # the resumed cells ran at the same time too (3 slots), never more trials at once than that
    first, second = spans.values()
    assert any(a0 < b1 and b0 < a1 for a0, a1 in first for b0, b1 in second)
    assert most_at_once(first + second) <= 3


# --- two drivers, one PostgreSQL study -------------------------------------------------------

PG_BIN = next(
    (
        Path(p).parent
        for p in [shutil.which("initdb"), *sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))]
        if p
    ),
    None,
)


class Postgres:
    """A throw-away PostgreSQL cluster in /tmp on a Unix socket (as user ``postgres`` when the
    tests run as root: PostgreSQL refuses to run as root)."""

    def __init__(self, bin_dir: Path) -> None:
        self.bin = bin_dir
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="pg", dir="/tmp"))
        self.data = self.root / "data"
        self.user: str | None = None
        if os.geteuid() == 0:
            try:
                account = pwd.getpwnam("postgres")
            except KeyError:
                shutil.rmtree(self.root)
                pytest.skip("running as root and there is no 'postgres' user to run PostgreSQL")
            self.user = "postgres"
            os.chown(self.root, account.pw_uid, account.pw_gid)
        self._pg("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")
        options = f"-p {self.port} -k {self.root} -c listen_addresses='' -c fsync=off"
        log = str(self.root / "server.log")
        self._pg("pg_ctl", "start", "-w", "-D", str(self.data), "-l", log, "-o", options)
        self.url = f"postgresql+psycopg2://postgres@/optuna?host={self.root}&port={self.port}"
        import psycopg2

        connection = psycopg2.connect(
            host=str(self.root), port=self.port, user="postgres", dbname="postgres"
        )
        connection.autocommit = True  # CREATE DATABASE runs outside a transaction
        connection.cursor().execute("CREATE DATABASE optuna")
        connection.close()

    def _pg(self, tool: str, *args: str) -> None:
        subprocess.run(
            [str(self.bin / tool), *args], check=True, capture_output=True, user=self.user
        )

    def stop(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self._pg("pg_ctl", "stop", "-D", str(self.data), "-m", "immediate")
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture
def postgres() -> Iterator[Postgres]:
    if PG_BIN is None:
        pytest.skip("PostgreSQL binaries (initdb, pg_ctl) not found")
    pytest.importorskip("psycopg2")
    server = Postgres(PG_BIN)
    try:
        yield server
    finally:
        server.stop()


SHARED = """\
name: shared
datasets: [ml-100k]
backbones: [sasrec]
methods: [backbone]
storage: "{url}"
fixed:
  train.max_epochs: 1
  train.eval_start_epoch: 0
  model.hidden_size: 8
  model.num_layers: 1
  data.max_seq_length: 10
search:
  trials: 3
  seed: 9
  space:
    backbone:
      train.lr: {{loguniform: [0.0005, 0.01]}}
scheduler: {{type: none}}
resources: {{cpus_per_trial: 1, max_concurrent: 1}}
final: {{seeds: 0}}
"""


@pytest.mark.ray
def test_two_drivers_share_one_database_study_to_its_exact_target(
    ray_head: RayHead, postgres: Postgres, tmp_path: Path
) -> None:
    spec = tmp_path / "shared.yaml"
    spec.write_text(SHARED.format(url=postgres.url))
    folders = [tmp_path / "studies-a", tmp_path / "studies-b"]
    processes = [
        driver(
            tmp_path,
            ["run", str(spec), "--studies-dir", str(folder)],
            ray_head.address,
            f"run-{folder.name}.log",
        )
        for folder in folders
    ]
    for process, folder in zip(processes, folders, strict=True):
        log = tmp_path / f"run-{folder.name}.log"
        assert finish(process, log) == 0, log.read_text()
    study = optuna.load_study(
        study_name="shared.ml-100k__sasrec__backbone", storage=open_storage(postgres.url, "")
    )
    trials = study.trials
    counts = count_trials(trials)
    assert counts.done == 3 and counts.running == counts.waiting == 0  # exact: not exceeded
    assert [t.state.name for t in trials] == ["COMPLETE"] * 3  # none failed, none run twice
    assert not any(t.user_attrs.get(STALE_ATTR) for t in trials)  # no live trial was retried
    marks = {driver_mark(folder / "shared") for folder in folders}
    assert {t.user_attrs[DRIVER_ATTR] for t in trials} <= marks  # each ran by one driver
    assert [REFERENCE_ATTR in t.user_attrs for t in trials].count(True) == 1  # enqueued once
    for folder in folders:  # each driver's trials.csv shows the whole shared study
        rows = read_csv(folder / "shared" / "cells" / "ml-100k__sasrec__backbone" / "trials.csv")
        assert sorted(int(r["number"]) for r in rows) == [0, 1, 2]
