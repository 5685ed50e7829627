"""A study stopped mid-run (SIGTERM, SIGKILL) resumes to exactly its trial target, running no
configuration twice, and the trials it interrupted continue from their checkpoints. The stopped
run is the real CLI in a subprocess that joins the session's Ray with --address (so the signal
hits only the driver, and no second Ray has to start); the resume runs in this process.
tests/test_kill_resume.py kills drivers that own their Ray (benchmarks/kill_resume.py)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest

from faerec.cli import main
from faerec.study.retry import RETRY_ATTR, STALE_ATTR
from faerec.study.store import count_trials, open_storage, read_csv

pytestmark = pytest.mark.ray

SPEC = """\
name: resume
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
  trials: 3
  seed: 3
  space:
    backbone:
      train.lr: {loguniform: [0.0005, 0.01]}
      model.hidden_dropout: {uniform: [0.1, 0.5]}
scheduler: {type: none}
resources: {cpus_per_trial: 1, max_concurrent: 2}
final: {seeds: 0}
"""
CELL = "ml-100k__sasrec__backbone"
TARGET = 3
EPOCHS = 3


class Run:
    """The CLI running the study in its own process group."""

    def __init__(self, root: Path, address: str) -> None:
        self.root = root
        self.studies = root / "studies"
        self.cell = self.studies / "resume" / "cells" / CELL
        spec = root / "spec.yaml"
        spec.write_text(SPEC)
        env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
        self.log = (root / "run.log").open("w")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "faerec.cli",
                "run",
                str(spec),
                "--studies-dir",
                str(self.studies),
                "--address",
                address,
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )

    def wait_for(self, csv_name: str, timeout: float = 180.0) -> None:
        """Until a trial has started (trials.csv) or reported an epoch (epochs.csv)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process.poll() is None, (self.root / "run.log").read_text()
            if read_csv(self.cell / csv_name):
                return
            time.sleep(0.2)
        raise AssertionError(f"nothing in {csv_name} in time")

    def cleanup(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)
        self.log.close()

    def trials(self) -> list[optuna.trial.FrozenTrial]:
        storage = open_storage("", str(self.cell / "optuna.journal"))
        return optuna.load_study(study_name=CELL, storage=storage).trials


@pytest.fixture
def run(ray_instance: None, tmp_path: Path) -> Iterator[Run]:
    import ray

    started = Run(tmp_path, ray.get_runtime_context().gcs_address)
    try:
        yield started
    finally:
        started.cleanup()


def resume(run: Run) -> int:
    return main(
        ["resume", "resume", "--studies-dir", str(run.studies), "--reports-dir", str(run.root)]
    )


def assert_complete_without_repeats(run: Run) -> None:
    trials = run.trials()
    assert not [t.number for t in trials if t.state.name in ("RUNNING", "WAITING")]
    assert count_trials(trials).done == TARGET
    ran = [t for t in trials if not t.user_attrs.get(STALE_ATTR)]
    assert len(ran) == TARGET and all(t.state.name == "COMPLETE" for t in ran)
    configurations = {json.dumps(t.params, sort_keys=True) for t in ran}
    assert len(configurations) == TARGET
    rows = read_csv(run.cell / "trials.csv")
    assert sorted(int(r["number"]) for r in rows) == [t.number for t in trials]
    epochs = read_csv(run.cell / "epochs.csv")
    finished = {
        (int(r["trial"]), int(r["epoch"]))
        for r in epochs
        if int(r["trial"]) in {t.number for t in ran}
    }
    # retries inherit their checkpoint's epochs; epochs.csv counts from 1
    assert finished == {(t.number, e) for t in ran for e in range(1, EPOCHS + 1)}


def reported_epochs(trial_dir: Path) -> list[int]:
    lines = (trial_dir / "result.json").read_text().splitlines()
    results = [json.loads(line) for line in lines if line.strip()]
    return [r["epoch"] for r in results if "epoch" in r]


def test_sigterm_stops_cleanly_and_resume_continues_from_checkpoints(run: Run) -> None:
    run.wait_for("epochs.csv")
    run.process.send_signal(signal.SIGTERM)
    assert run.process.wait(timeout=120) == 3
    log = (run.root / "run.log").read_text()
    assert "SIGTERM: stopping after the current epoch of " in log  # said at once
    assert (
        f"interrupted; resume with: faerec-study resume resume --studies-dir {run.studies}" in log
    )
    stopped = run.trials()
    assert count_trials(stopped).done < TARGET
    assert not [t for t in stopped if t.state.name == "RUNNING"]  # interrupted, not left running
    assert resume(run) == 0
    assert_complete_without_repeats(run)
    # a retry continues from the checkpoint of the attempt it replaces: its first epoch follows
    # the last one that attempt reported (or the one in flight at the signal, if it got saved)
    trials = {t.number: t for t in run.trials()}
    retries = [t for t in trials.values() if RETRY_ATTR in t.user_attrs]
    assert retries
    for retry in retries:
        previous = trials[retry.user_attrs[RETRY_ATTR]]
        before = reported_epochs(run.cell / "tune" / previous.user_attrs["tune_trial"])
        after = reported_epochs(run.cell / "tune" / retry.user_attrs["tune_trial"])
        expected = before[-1] + 1 if before else 0
        first = after[0] if after else EPOCHS  # none: the checkpoint had every epoch
        assert first in (expected, expected + 1), (before, after)


def test_sigkill_loses_no_trial_and_leaves_none_running(run: Run) -> None:
    run.wait_for("trials.csv")
    run.process.kill()  # the driver, like `kill -9`
    assert run.process.wait(timeout=60) == -signal.SIGKILL
    assert resume(run) == 0
    assert_complete_without_repeats(run)
    for trial in run.trials():  # a trial the killed driver ran was failed and retried once
        if trial.state.name == "FAIL":
            assert trial.user_attrs[STALE_ATTR] is True
            assert [t.user_attrs.get(RETRY_ATTR) for t in run.trials()].count(trial.number) == 1
