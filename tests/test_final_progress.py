"""Final-stage runs show their epochs like trials (faerec/study/final.py, faerec/study/progress.py).

The Ray task's epoch hook writes ``progress.json`` in the run's checkpoint folder; the driver
polls it. Both sides run here without Ray; tests/test_study_run.py sees the lines of a real run.
"""

from __future__ import annotations

import io
import re
import time
from pathlib import Path

import pytest

from faerec.results import EpochReport
from faerec.study.final import PROGRESS_FILE, FinalJob, FinalStage, ProgressWriter, RunWatch
from faerec.study.progress import ProgressView
from faerec.study.spec import spec_from_dict
from faerec.study.store import CellStore, TrialCounts

STAMP = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"
CELL = "beauty__fmlprec__backbone"


def report(epoch: int, value: float | None = None, seconds: float = 30.0) -> EpochReport:
    valid = None if value is None else {"ndcg@20": value, "hr@10": 0.5}
    return EpochReport(epoch, 0.7, {}, valid, value, None if value is None else epoch, seconds)


def job_at(tmp_path: Path, reference: bool = False) -> FinalJob:
    config = {"train": {"max_epochs": 10, "seed": 2024}}
    name = "reference_seed_2024" if reference else "seed_2024"
    final = tmp_path / "final"
    return FinalJob(
        CELL, 2024, config, final / f"{name}.json", final / f"{name}.ckpt", reference=reference
    )


# --- the lines -----------------------------------------------------------------------------------


def test_a_final_run_logs_its_cell_seed_epoch_score_elapsed_and_eta() -> None:
    stream = io.StringIO()
    view = ProgressView(stream=stream, tty=False)
    view.final_epoch(CELL, 2024, False, 1, 50, "ndcg@20", 0.0312, None, 30.0, 64.0)
    # 48 epochs left at 30 s each
    assert re.match(
        rf"^{STAMP} {CELL} seed 2024  epoch  2/50  valid ndcg@20 0\.0312  1m04s  "
        r"ETA 24m00s at most$",
        stream.getvalue().splitlines()[0],
    )


def test_the_presets_retraining_is_labelled_reference() -> None:
    stream = io.StringIO()
    view = ProgressView(stream=stream, tty=False)
    view.final_epoch(CELL, 2025, True, 0, 50, "ndcg@20", None, None, 30.0, 34.0)
    assert f" {CELL} reference seed 2025  epoch  1/50  34s  ETA " in stream.getvalue()


def test_a_terminal_draws_a_final_run_under_its_cell_until_it_ends() -> None:
    stream = io.StringIO()
    view = ProgressView(stream=stream, interval=0.0, tty=True)
    try:
        view.update(CELL, stage="final", final_total=2, running=1)
        view.final_epoch(CELL, 2024, False, 4, 10, "ndcg@20", 0.02, None, 30.0, 150.0)
        block = stream.getvalue().split("\x1b[J")[-1].splitlines()
        assert block[0].startswith(CELL) and block[1] == (
            f"  {CELL} seed 2024  epoch  5/10  valid ndcg@20 0.0200  2m30s  ETA 2m30s at most"
        )
        view.final_run_done(CELL, 2024, False)
        view.update(CELL, running=0)
        assert len(stream.getvalue().split("\x1b[J")[-1].splitlines()) == 1
    finally:
        view.close()


def test_final_stage_eta_counts_running_runs_epochs_left_at_their_own_epoch_time() -> None:
    view = ProgressView(stream=io.StringIO(), tty=False)
    view.add_cell("c1", target=4, max_epochs=10, final_total=2, trials=TrialCounts(complete=4))
    view.trial_epoch("c1", 0, 9, 10, "ndcg@20", 0.03, epoch_seconds=30.0)  # the search's epochs
    view.update("c1", stage="final", running=2)
    view.final_epoch("c1", 2024, False, 4, 10, "ndcg@20", 0.02, None, 60.0)
    # seed 2024: 5 epochs left; the other run not started: 10 epochs; 60 s each, not 30 or 45
    assert view.stage_eta(view.cells["c1"], time.monotonic()) == pytest.approx(900.0)
    assert view.study_eta(time.monotonic()) == pytest.approx(900.0)


def test_before_ray_starts_the_final_stage_counts_the_runs_the_spec_allows_at_once() -> None:
    """A resumed study plans its final runs before Ray is up: its first ETA already divides
    the work over ``resources.max_concurrent`` runs, not one at a time."""
    spec = spec_from_dict(
        {
            "name": "s",
            "datasets": ["ml-100k"],
            "backbones": ["sasrec"],
            "methods": ["backbone"],
            "resources": {"max_concurrent": 2},
        },
        "s.yaml",
    )
    view = ProgressView(stream=io.StringIO(), tty=False)
    view.add_cell(CELL, target=0, max_epochs=10, final_total=2)
    stage = FinalStage(spec, store=None, progress=view, guard=None)  # type: ignore[arg-type]
    stage.totals[CELL], stage.done[CELL] = 2, 0
    stage.show(CELL, running=0)
    assert view.cells[CELL].concurrency == 2


# --- progress.json: the task writes, the driver shows ------------------------------------------


def test_each_recorded_epoch_is_shown_once_even_when_several_came_between_polls(
    tmp_path: Path,
) -> None:
    stream = io.StringIO()
    view = ProgressView(stream=stream, tty=False)
    job = job_at(tmp_path)
    watch = RunWatch(job, "ndcg@20")
    writer = ProgressWriter(job.progress_json, watch.attempt, "ndcg@20")
    writer(report(0))
    writer(report(1, 0.0312))
    watch.poll(view)
    watch.poll(view)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2 and f"{CELL} seed 2024  epoch  1/10  0s  ETA " in lines[0]
    assert f"{CELL} seed 2024  epoch  2/10  valid ndcg@20 0.0312  0s  ETA " in lines[1]


def test_a_resumed_run_shows_only_its_new_epochs_and_counts_the_earlier_ones_in_its_time(
    tmp_path: Path,
) -> None:
    stream = io.StringIO()
    view = ProgressView(stream=stream, tty=False)
    job = job_at(tmp_path, reference=True)
    earlier = ProgressWriter(job.progress_json, "a killed driver's", "ndcg@20")
    earlier.started -= 120.0  # its two epochs ended two minutes after it started
    earlier(report(0))
    earlier(report(1, 0.02))
    watch = RunWatch(job, "ndcg@20")
    ProgressWriter(job.progress_json, watch.attempt, "ndcg@20")(report(2, 0.03))
    watch.poll(view)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1 and f"{CELL} reference seed 2024  epoch  3/10" in lines[0]
    assert "  2m00s  ETA " in lines[0]


def test_an_unreadable_progress_file_shows_nothing_and_is_replaced(tmp_path: Path) -> None:
    stream = io.StringIO()
    view = ProgressView(stream=stream, tty=False)
    job = job_at(tmp_path)
    job.checkpoint_dir.mkdir(parents=True)
    job.progress_json.write_bytes(b'{"epochs": [{"epo')  # cut short (not by our atomic write)
    watch = RunWatch(job, "ndcg@20")
    watch.poll(view)
    assert stream.getvalue() == ""
    ProgressWriter(job.progress_json, watch.attempt, "ndcg@20")(report(0))
    watch.poll(view)
    assert "seed 2024  epoch  1/10" in stream.getvalue()


def test_a_killed_runs_progress_file_is_neither_a_result_nor_set_aside(tmp_path: Path) -> None:
    cell = CellStore(tmp_path / "cell")
    for folder in (cell.seed_checkpoint_dir(2024), cell.reference_checkpoint_dir(2024)):
        ProgressWriter(folder / PROGRESS_FILE, "killed", "ndcg@20")(report(0))
    assert cell.read_seeds() == {} and cell.read_reference_seeds() == {}
    assert cell.set_aside_seeds() == []
