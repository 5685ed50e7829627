"""Kill the driver at fixed moments, resume, check: the fast part of benchmarks/kill_resume.py.

Each test starts the real CLI in its own session with its own Ray (so a group kill takes the
driver and its Ray, nothing else), signals it at a moment defined by the study's own files,
resumes until the study is done and runs the harness's :func:`check_study` (exact trial target,
none running, no parameters run twice, finished trials unchanged, final seeds, report).
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

from faerec.study.store import FINISHED_STATES, read_csv

pytestmark = pytest.mark.ray


def _harness() -> ModuleType:
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "kill_resume.py"
    spec = importlib.util.spec_from_file_location("kill_resume", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["kill_resume"] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


harness = _harness()


def _rows(study: object) -> list[dict[str, str]]:
    return read_csv(study.cell / "trials.csv")  # type: ignore[attr-defined]


def finished_and_next_started(study: object) -> bool:
    """A trial has finished and the one after the first two has started."""
    rows = _rows(study)
    finished = [r for r in rows if r["state"] in FINISHED_STATES]
    return bool(finished) and any(int(r["number"]) >= 2 for r in rows)


def two_finished(study: object) -> bool:
    return len([r for r in _rows(study) if r["state"] in FINISHED_STATES]) >= 2


def a_checkpoint_in_flight(study: object) -> bool:
    """The first checkpoint is on disk (its trial is still running: it has more epochs)."""
    tune = study.cell / "tune"  # type: ignore[attr-defined]
    return any(tune.glob("*/trial_*/checkpoint_*/checkpoint.pt"))


def a_final_run_in_flight(study: object) -> bool:
    """A final-stage run has written its first checkpoint (it has more epochs to train)."""
    final = study.cell / "final"  # type: ignore[attr-defined]
    return any(final.glob("*.ckpt/checkpoint.pt"))


def _round(tmp_path: Path, kind: str, moment: object, **options: object) -> object:
    study = harness.Study(tmp_path)
    result = harness.run_round(study, 1, kind, moment, **options)
    assert result.moment_s >= 0, "the study ended before the moment came"
    assert result.problems == []
    return study


def test_sigint_just_after_a_trial_finished_and_the_next_started(tmp_path: Path) -> None:
    _round(tmp_path, "SIGINT", finished_and_next_started)
    log = (tmp_path / "round1-run.log").read_text()
    assert "SIGINT: stopping after the current epoch of" in log


def test_sigkill_of_the_group_after_two_finished_trials(tmp_path: Path) -> None:
    _round(tmp_path, "SIGKILL-group", two_finished)


def test_missing_checkpoint_of_the_trial_in_flight_restarts_it(tmp_path: Path) -> None:
    study = _round(
        tmp_path, "SIGKILL-group", a_checkpoint_in_flight, damage=harness.delete_checkpoints
    )
    cell = study.cell  # type: ignore[attr-defined]
    rows = read_csv(cell / "trials.csv")
    retries = [r for r in rows if r["retry_of"]]
    assert retries and all(r["state"] in ("COMPLETE", "PRUNED") for r in retries)
    for trial_dir in (cell / "tune").glob("search-002/trial_*"):
        results = [json.loads(line) for line in (trial_dir / "result.json").open()]
        epochs = [r["epoch"] for r in results if "epoch" in r]
        assert epochs[0] == 0  # from scratch: its checkpoint was gone


def test_a_second_sigterm_stops_at_once_and_the_study_still_completes(tmp_path: Path) -> None:
    _round(tmp_path, "SIGTERM-twice", a_checkpoint_in_flight)
    log = (tmp_path / "round1-run.log").read_text()
    assert "SIGTERM again: stopping now" in log


def test_sigint_in_the_final_stage_says_how_to_resume_and_records_the_session(
    tmp_path: Path,
) -> None:
    # the driver then waits inside ray.wait, where Ray turns the signal's exception into a
    # plain KeyboardInterrupt
    study = _round(tmp_path, "SIGINT", a_final_run_in_flight)
    log = (tmp_path / "round1-run.log").read_text()
    assert f"interrupted; resume with: faerec-study resume {harness.NAME}" in log
    sessions = json.loads((study.studies / harness.NAME / "sessions.json").read_text())  # type: ignore[attr-defined]
    assert sessions[0]["outcome"] == "interrupted"
