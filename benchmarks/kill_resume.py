"""Kill a study anywhere, resume it, and check that nothing was lost or run twice.

Runs a small real study (ml-100k, SASRec with 16 hidden units, 6 trials of at most 3 epochs,
ASHA, two trials at a time, one final seed) with the real CLI, first to the end as the
reference (its wall time sets the range of kill moments), then ``--rounds`` times with a signal
at a random moment (seeded, uniform over the reference wall time). The signals take turns:
SIGINT and SIGTERM to the driver, SIGKILL of the driver, SIGKILL of everything the driver
started ("SIGKILL-group": the driver starts in its own session, and every process of that
session gets SIGKILL: the driver, its Ray and the trial workers, nothing else). In a
``--rekill-fraction`` of the rounds the first resume is signalled too (a random kind, at a
moment uniform over half the reference wall time). A fifth kind,
"SIGTERM-twice", sends a second SIGTERM as soon as the driver has said it got the first
("stop now"). After each kill,
``faerec-study resume`` runs until it exits 0 (at most ``--max-resumes`` times), then
:func:`check_study` checks the store:

* every searched cell has exactly ``search.trials`` finished trials, none RUNNING or waiting;
* no parameter set ran to an end twice (the sampler is seeded);
* every final seed (and reference seed) is on disk, ``results.csv`` has rows;
* every trial that had finished before the kill (trials.csv right after it) is unchanged;
* ``faerec-study report`` builds the report.

Each driver gets its own temporary folder (``TMPDIR``, so its own Ray temp dir); the harness only
ever signals the sessions it started (Linux: read from /proc), never ``ray stop``. Usage::

    python benchmarks/kill_resume.py --rounds 30 --seed 1 [--rekill-fraction 0.2]

It prints a table (round, signal, moment, resumes needed, outcome) and writes
benchmarks/results/kill_resume.json (command, machine, load, versions, rounds).
tests/test_kill_resume.py runs a few fixed moments through the same functions.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "kill_resume.json"
NAME = "kill-resume"
CELL = "ml-100k__sasrec__backbone"
SIGNALS = ("SIGINT", "SIGTERM", "SIGKILL", "SIGKILL-group", "SIGTERM-twice")
#: signals after which the driver must exit 3 (interrupted) or 0 (it had just finished)
STOPPING_SIGNALS = ("SIGINT", "SIGTERM", "SIGTERM-twice")
#: "SIGTERM-twice" sends its second signal once the driver has said it got the first (two
#: signals close together can reach Python as one), or after this long
SECOND_SIGNAL_WAIT_S = 5.0
#: a gentle stop (SIGINT, SIGTERM) that takes longer than this is a failure of the round
STOP_TIMEOUT_S = 120.0
#: one driver run (reference or resume) that takes longer than this is a failure of the round
RUN_TIMEOUT_S = 600.0

SPEC = f"""\
name: {NAME}
datasets: [ml-100k]
backbones: [sasrec]
methods: [backbone]
fixed:
  train.max_epochs: 3
  train.eval_start_epoch: 0
  model.hidden_size: 16
  model.num_layers: 1
  data.max_seq_length: 20
search:
  trials: 6
  seed: 7
  space:
    backbone:
      train.lr: {{loguniform: [0.0005, 0.01]}}
      model.hidden_dropout: {{uniform: [0.1, 0.5]}}
scheduler: {{type: asha, grace_epochs: 1, reduction_factor: 2}}
resources: {{cpus_per_trial: 1, max_concurrent: 2}}
final: {{seeds: 1}}
report: {{formats: [md]}}
"""


# --- one driver process ------------------------------------------------------------------------


class Driver:
    """``faerec-study run|resume`` in its own session with its own TMPDIR."""

    def __init__(self, root: Path, args: list[str], log_name: str) -> None:
        self.root = root
        self.temp = Path(tempfile.mkdtemp(prefix="kr", dir="/tmp"))  # short: Ray's sockets
        env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
        env["TMPDIR"] = str(self.temp)
        self.log_path = root / log_name
        self._log = self.log_path.open("w")
        self.started = time.monotonic()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "faerec.cli", *args],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=root,
            start_new_session=True,
        )

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def send(self, kind: str) -> None:
        """SIGINT/SIGTERM/SIGKILL to the driver, SIGTERM twice, or SIGKILL to everything it
        started."""
        if kind == "SIGKILL-group":
            kill_session(self.process.pid)
        elif kind == "SIGTERM-twice":  # "stop now", while the first one waits for epochs
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGTERM)
                deadline = time.monotonic() + SECOND_SIGNAL_WAIT_S
                while self.process.poll() is None and time.monotonic() < deadline:
                    self._log.flush()
                    if "SIGTERM: stopping" in self.log_path.read_text(errors="replace"):
                        break  # the first one is taken: a second one now is not merged with it
                    time.sleep(0.01)
                self.process.send_signal(signal.SIGTERM)
        else:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(getattr(signal, kind))

    def wait(self, timeout: float) -> int | None:
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def cleanup(self) -> None:
        """Kill what is left of this driver's session (Ray's helpers and trial workers outlive a
        killed driver for a while) and wait until it is gone."""
        kill_session(self.process.pid)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=30)
        deadline = time.monotonic() + 30
        while session_processes(self.process.pid) and time.monotonic() < deadline:
            time.sleep(0.1)
            kill_session(self.process.pid)
        self._log.close()
        shutil.rmtree(self.temp, ignore_errors=True)


def session_processes(session: int) -> list[int]:
    """Processes of a session (Linux /proc). The driver starts one; Ray's processes stay in it,
    but Ray's workers get process groups of their own, so killing the driver's group is not
    enough to take everything it started."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        fields = text[text.rindex(")") + 2 :].split()  # state, ppid, pgrp, session, ...
        if int(fields[3]) == session and fields[0] != "Z":
            pids.append(int(stat.parent.name))
    return pids


def kill_session(session: int) -> None:
    """SIGKILL to every process of ``session`` (only ever one this harness started)."""
    for pid in session_processes(session):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


@dataclass
class Study:
    """A study folder of this harness: its spec, store and reports."""

    root: Path

    @property
    def studies(self) -> Path:
        return self.root / "studies"

    @property
    def reports(self) -> Path:
        return self.root / "reports"

    @property
    def cell(self) -> Path:
        return self.studies / NAME / "cells" / CELL

    def run_args(self) -> list[str]:
        spec = self.root / "spec.yaml"
        if not spec.exists():
            spec.write_text(SPEC)
        return ["run", str(spec), *self._dirs()]

    def resume_args(self) -> list[str]:
        """``resume``; or ``run`` again when the kill came before the study was written.

        Data checks and the lock come before the store, so an early kill leaves no study.json
        and ``resume`` rightly answers "no study named ..."; a user then re-runs the spec.
        """
        if not (self.studies / NAME / "study.json").exists():
            return self.run_args()
        return ["resume", NAME, *self._dirs()]

    def _dirs(self) -> list[str]:
        return ["--studies-dir", str(self.studies), "--reports-dir", str(self.reports)]


def finished_rows(study: Study) -> dict[str, dict[str, str]]:
    """trials.csv rows of trials that have ended, by number (a snapshot to compare later)."""
    from faerec.study.store import FINISHED_STATES, read_csv

    return {
        row["number"]: row
        for row in read_csv(study.cell / "trials.csv")
        if row.get("state") in FINISHED_STATES
    }


# --- the checks --------------------------------------------------------------------------------


def check_study(study: Study, before: dict[str, dict[str, str]] | None = None) -> list[str]:
    """Problems of a study that a resume has finished (empty: none); see the module docstring."""
    import optuna

    from faerec.study.final import FinalStage
    from faerec.study.progress import ProgressView
    from faerec.study.retry import STALE_ATTR
    from faerec.study.spec import spec_from_dict
    from faerec.study.store import StudyStore, count_trials, open_storage, optuna_study_name

    problems: list[str] = []
    store = StudyStore.at(study.studies, NAME)
    spec = spec_from_dict(store.load_study_json()["spec"], str(store.study_json))
    for cell in spec.cells():
        if cell.space is None:
            continue
        cell_store = store.cell(cell.cell_id)
        storage = open_storage(spec.storage, str(cell_store.journal), repair=False)
        name = optuna_study_name(spec.name, cell.cell_id, spec.storage)
        trials = optuna.load_study(study_name=name, storage=storage).get_trials(deepcopy=False)
        counts = count_trials(trials)
        target = spec.trials_for(cell)
        if counts.done != target:
            problems.append(f"{cell.cell_id}: {counts.done} finished trials, asked {target}")
        if counts.running or counts.waiting:
            problems.append(
                f"{cell.cell_id}: {counts.running} RUNNING and {counts.waiting} waiting trials"
            )
        ended = [
            t
            for t in trials
            if t.state.name in ("COMPLETE", "PRUNED")
            or (t.state.name == "FAIL" and not t.user_attrs.get(STALE_ATTR))
        ]
        seen: dict[str, int] = {}
        for trial in ended:
            key = json.dumps(trial.params, sort_keys=True)
            if key in seen:
                problems.append(
                    f"{cell.cell_id}: trials {seen[key]} and {trial.number} ran the same "
                    f"parameters {key}"
                )
            seen[key] = trial.number
        rows = {r["number"]: r for r in cell_store.read_trials()}
        if sorted(int(n) for n in rows) != sorted(
            t.number for t in trials if t.state.name != "WAITING"
        ):
            problems.append(f"{cell.cell_id}: trials.csv does not list the Optuna trials")
        for number, old in (before or {}).items():
            new = rows.get(number)
            same = ("state", "value", "params", "epochs")
            if new is None or any(old.get(k) != new.get(k) for k in same):
                problems.append(f"{cell.cell_id}: trial {number} changed after it had finished")
    with open(os.devnull, "w") as quiet:
        missing = FinalStage(spec, store, ProgressView(quiet), None).plan(list(spec.cells()))
    if missing:
        problems.append(
            "final runs missing: " + ", ".join(f"{j.cell_id} seed {j.seed}" for j in missing)
        )
    if not store.results_csv.exists() or len(store.results_csv.read_text().splitlines()) < 2:
        problems.append("results.csv has no rows")
    report = subprocess.run(
        [
            sys.executable,
            "-m",
            "faerec.cli",
            "report",
            NAME,
            "--studies-dir",
            str(study.studies),
            "--reports-dir",
            str(study.root / "report-check"),
        ],
        capture_output=True,
        text=True,
    )
    if report.returncode != 0:
        problems.append(f"faerec-study report exited {report.returncode}: {report.stderr[-300:]}")
    return problems


# --- a round -----------------------------------------------------------------------------------


#: when to send the signal: seconds after the driver started, or a condition on the study
Moment = float | Callable[[Study], bool]


@dataclass
class RoundResult:
    round: int
    signal: str
    #: when the signal was sent, seconds after the driver started (-1: the run ended before)
    moment_s: float
    rekill: str = ""
    #: whether the rekill came before the resume had ended by itself
    rekill_sent: bool = False
    exit_after_signal: int | None = None
    stop_seconds: float | None = None
    resumes: int = 0
    resume_exits: list[int | None] = field(default_factory=list)
    seconds: float = 0.0
    problems: list[str] = field(default_factory=list)
    #: things worth knowing that are no failure (see :func:`judge_exit`)
    notes: list[str] = field(default_factory=list)

    @property
    def outcome(self) -> str:
        if self.problems:
            return "FAIL: " + "; ".join(self.problems)
        return "ok" + "".join(f" ({note})" for note in self.notes)


def judge_exit(result: RoundResult, who: str, kind: str, code: int | None) -> None:
    """After SIGINT/SIGTERM a driver exits 3 (interrupted) or 0 (it was just done). Death by
    the signal itself (-2, -15) is noted, not failed: the signal came before the driver had
    taken the signals over (Python's start-up and imports), when it had written nothing."""
    if code in (0, 3):
        return
    if code in (-signal.SIGINT, -signal.SIGTERM):
        result.notes.append(f"{who} died of {kind} before taking it over")
    else:
        result.problems.append(f"{kind} ended {who} with exit {code}")


def signal_driver(driver: Driver, study: Study, kind: str, moment: Moment) -> float | None:
    """Wait for ``moment`` and send ``kind``; returns when it was sent (None: the driver ended
    first)."""
    while driver.process.poll() is None:
        due = moment(study) if callable(moment) else driver.elapsed >= moment
        if due:
            driver.send(kind)
            return driver.elapsed
        time.sleep(0.05)
    return None


def run_round(
    study: Study,
    number: int,
    kind: str,
    moment: Moment,
    *,
    rekill: tuple[str, float] | None = None,
    damage: Callable[[Study], None] | None = None,
    max_resumes: int = 4,
) -> RoundResult:
    """Start the study, signal it at ``moment``, resume until done, check (see the docstring).

    ``rekill`` = (signal, seconds): also signal the first resume. ``damage`` runs on the store
    right after the kill (e.g. delete the checkpoints of the trials in flight).
    """
    started = time.monotonic()
    result = RoundResult(
        number, kind, -1.0, rekill=f"{rekill[0]}@{rekill[1]:.1f}s" if rekill else ""
    )
    driver = Driver(study.root, study.run_args(), f"round{number}-run.log")
    try:
        sent = signal_driver(driver, study, kind, moment)
        result.moment_s = round(sent, 2) if sent is not None else -1.0
        timeout = STOP_TIMEOUT_S if kind in ("SIGINT", "SIGTERM") else 30.0
        stop_started = time.monotonic()
        result.exit_after_signal = driver.wait(timeout if sent is not None else RUN_TIMEOUT_S)
        result.stop_seconds = round(time.monotonic() - stop_started, 2)
        if result.exit_after_signal is None:
            result.problems.append(f"the driver did not stop within {timeout:.0f} s of {kind}")
    finally:
        driver.cleanup()
    if sent is not None and kind in STOPPING_SIGNALS:
        judge_exit(result, "the driver", kind, result.exit_after_signal)
    before = finished_rows(study)
    if damage is not None:
        damage(study)
    done = result.exit_after_signal == 0
    while not done and result.resumes < max_resumes:
        result.resumes += 1
        resume = Driver(
            study.root, study.resume_args(), f"round{number}-resume{result.resumes}.log"
        )
        try:
            if rekill is not None and result.resumes == 1:
                result.rekill_sent = signal_driver(resume, study, rekill[0], rekill[1]) is not None
            code = resume.wait(RUN_TIMEOUT_S)
        finally:
            resume.cleanup()
        rekilled = rekill is not None and result.resumes == 1 and result.rekill_sent
        if rekill is not None and rekilled and rekill[0] in STOPPING_SIGNALS:
            judge_exit(result, "the first resume", rekill[0], code)
        result.resume_exits.append(code)
        done = code == 0
        if code in (1, 2):
            log = (study.root / f"round{number}-resume{result.resumes}.log").read_text()
            result.problems.append(f"resume {result.resumes} exited {code}: {log[-400:]}")
    if not done:
        result.problems.append(f"not finished after {result.resumes} resumes")
    else:
        result.problems += check_study(study, before)
    result.seconds = round(time.monotonic() - started, 1)
    return result


def rekill_text(result: RoundResult) -> str:
    """The rekill column: kind@moment, "(late)" when the resume had ended before it."""
    if not result.rekill:
        return ""
    return result.rekill if result.rekill_sent else f"{result.rekill} (late)"


def delete_checkpoints(study: Study) -> None:
    """Damage: every Tune checkpoint of the cell is gone (so those of the trials in flight)."""
    for checkpoint in (study.cell / "tune").glob("*/*/checkpoint_*"):
        shutil.rmtree(checkpoint, ignore_errors=True)


# --- the benchmark -----------------------------------------------------------------------------


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _load() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    except OSError:
        return ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--rekill-fraction", type=float, default=0.2)
    parser.add_argument("--max-resumes", type=int, default=4)
    parser.add_argument("--workdir", type=Path, default=None, help="default: a temporary folder")
    parser.add_argument(
        "--keep", action="store_true", help="keep the folders of rounds that passed"
    )
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="kill-resume-"))
    workdir.mkdir(parents=True, exist_ok=True)
    load_before = _load()
    rng = random.Random(args.seed)

    reference = Study(workdir / "reference")
    reference.root.mkdir(parents=True, exist_ok=True)
    driver = Driver(reference.root, reference.run_args(), "run.log")
    try:
        code = driver.wait(RUN_TIMEOUT_S)
        wall = driver.elapsed
    finally:
        driver.cleanup()
    reference_problems = [f"reference run exited {code}"] if code != 0 else check_study(reference)
    print(f"reference: {wall:.1f} s, {reference_problems or 'ok'}")
    if reference_problems:
        return 1

    rounds: list[RoundResult] = []
    header = (
        f"{'round':>5}  {'signal':<13}  {'moment s':>8}  {'rekill':<25}  {'resumes':>7}  outcome"
    )
    print(header)
    for number in range(1, args.rounds + 1):
        kind = SIGNALS[(number - 1) % len(SIGNALS)]
        moment = rng.uniform(0.0, wall)
        rekill = None
        if rng.random() < args.rekill_fraction:
            rekill = (rng.choice(SIGNALS), rng.uniform(0.0, wall / 2))  # resumes are shorter
        study = Study(workdir / f"round{number:03d}")
        study.root.mkdir(parents=True, exist_ok=True)
        result = run_round(study, number, kind, moment, rekill=rekill, max_resumes=args.max_resumes)
        rounds.append(result)
        print(
            f"{number:>5}  {kind:<13}  {result.moment_s:>8.1f}  {rekill_text(result):<25}  "
            f"{result.resumes:>7}  {result.outcome}",
            flush=True,
        )
        if not result.problems and not args.keep:
            shutil.rmtree(study.root, ignore_errors=True)

    failed = [r for r in rounds if r.problems]
    print(f"{len(rounds) - len(failed)}/{len(rounds)} rounds ok; folders under {workdir}")
    payload = {
        "command": " ".join(["python", "benchmarks/kill_resume.py", *(argv or sys.argv[1:])]),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "uptime_before": load_before,
            "uptime_after": _load(),
        },
        "versions": {p: _version(p) for p in ("faerec-study", "torch", "ray", "optuna")}
        | {"python": platform.python_version()},
        "spec": SPEC,
        "reference_seconds": round(wall, 1),
        "rounds": [asdict(r) | {"outcome": r.outcome} for r in rounds],
        "ok": len(rounds) - len(failed),
        "failed": len(failed),
        "mean_round_seconds": round(sum(r.seconds for r in rounds) / max(1, len(rounds)), 1),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    from faerec.atomic import write_json_atomic

    write_json_atomic(args.output, payload)
    print(f"wrote {args.output}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
