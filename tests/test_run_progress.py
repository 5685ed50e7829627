"""One progress display per training run: a single bar on a terminal, timestamped lines
elsewhere, epochs shown counted from 1."""

from __future__ import annotations

import io
import json
import os
import re
import signal
from pathlib import Path

import pytest

from faerec.run_progress import RunProgress, format_seconds, say
from faerec.study.progress import ProgressView, plan_study, show_trial_epoch
from faerec.study.signals import InterruptGuard, StopNow
from faerec.study.spec import parse_spec_text
from faerec.study.store import StudyStore, TrialCounts
from faerec.study.trainable import HISTORY_KEY, SECONDS_KEY

STAMP = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"


def _run_epochs(display: RunProgress, epochs: range, batches: int) -> None:
    for epoch in epochs:
        display.start_epoch(epoch)
        for _ in range(batches):
            display.update(1)
        valid = {"ndcg@20": 0.01 * (epoch + 1)} if epoch >= 1 else None
        display.end_epoch(0.5, valid, None if valid is None else 0.01 * (epoch + 1), epoch)
    display.close()


def test_a_terminal_gets_one_bar_for_the_whole_run() -> None:
    stream = io.StringIO()
    display = RunProgress(max_epochs=3, batches_per_epoch=4, stream=stream, tty=True)
    _run_epochs(display, range(3), 4)
    text = stream.getvalue()
    assert text.count("\n") == 1  # one bar, redrawn in place, left on screen at the end
    last = text.split("\r")[-1]
    assert "epoch 3/3" in last and "12/12" in last  # the run's batches, not one epoch's
    assert "best 0.0300 @ epoch 3" in last  # best epoch index 2 is shown as epoch 3


def test_a_pipe_gets_one_timestamped_line_per_epoch() -> None:
    stream = io.StringIO()
    display = RunProgress(max_epochs=3, batches_per_epoch=2, stream=stream, tty=False)
    _run_epochs(display, range(3), 2)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 3 and "\r" not in stream.getvalue()
    assert re.match(rf"^{STAMP} epoch 1/3  loss 0\.5000  \S+ elapsed  ETA \S+ at most$", lines[0])
    assert re.match(
        rf"^{STAMP} epoch 2/3  loss 0\.5000  valid ndcg@20 0\.0200  best 0\.0200 "
        r"@ epoch 2 ",
        lines[1],
    )
    assert "ETA" not in lines[2]  # the last epoch has nothing left


def test_a_resumed_run_counts_from_the_epoch_it_resumes_at() -> None:
    stream = io.StringIO()
    display = RunProgress(max_epochs=5, batches_per_epoch=2, first_epoch=3, stream=stream, tty=True)
    _run_epochs(display, range(3, 5), 2)
    last = stream.getvalue().split("\r")[-1]
    assert "epoch 5/5" in last and "4/4" in last


def test_durations_read_as_seconds_minutes_or_hours() -> None:
    assert [format_seconds(s) for s in (42, 185, 7800)] == ["42s", "3m05s", "2h10m"]


# --- the study's view: one line per running trial ------------------------------------------------


def test_study_view_logs_each_trial_epoch_with_a_timestamp() -> None:
    stream = io.StringIO()
    view = ProgressView(stream=stream, tty=False)
    view.trial_epoch("beauty__sasrec__faerec", 3, 0, 50, "ndcg@20", None, epoch_seconds=30.0)
    view.trial_epoch("beauty__sasrec__faerec", 3, 1, 50, "ndcg@20", 0.0312, epoch_seconds=30.0)
    lines = stream.getvalue().splitlines()
    assert re.match(rf"^{STAMP} beauty__sasrec__faerec trial 3  epoch  1/50  \S+  ETA ", lines[0])
    assert "epoch  2/50  valid ndcg@20 0.0312" in lines[1] and "at most" in lines[1]


def test_first_epoch_line_counts_the_trial_from_its_start_and_its_epoch_time() -> None:
    stream = io.StringIO()
    view = ProgressView(stream=stream, tty=False)
    view.trial_epoch("c1", 0, 0, 50, "ndcg@20", 0.03, epoch_seconds=30.0, trial_seconds=34.0)
    # 34 s since the trial started (set-up + first epoch); 49 epochs left at 30 s each
    assert (
        stream.getvalue()
        .rstrip()
        .endswith("trial 0  epoch  1/50  valid ndcg@20 0.0300  34s  ETA 24m30s at most")
    )


def test_study_view_draws_running_trials_under_their_cell_until_they_end() -> None:
    stream = io.StringIO()
    view = ProgressView(stream=stream, interval=0.0, tty=True)
    try:
        view.update("c1", stage="search", target=4, running=1)
        view.trial_epoch("c1", 0, 4, 10, "ndcg@20", 0.02)
        block = stream.getvalue().split("\x1b[J")[-1].splitlines()
        assert (
            block[0].startswith("c1") and "trial 0  epoch  5/10  valid ndcg@20 0.0200" in block[1]
        )
        view.trial_done("c1", 0)
        view.update("c1", running=0)
        block = stream.getvalue().split("\x1b[J")[-1].splitlines()
        assert len(block) == 1 and "trial 0" not in block[0]
    finally:
        view.close()


def test_a_first_epoch_without_its_time_shows_no_eta_rather_than_zero() -> None:
    stream = io.StringIO()
    view = ProgressView(stream=stream, tty=False)
    view.trial_epoch("c1", 0, 0, 50, "ndcg@20", 0.03)
    assert "ETA" not in stream.getvalue()


def test_a_resumed_trial_counts_its_earlier_epochs_in_its_time(tmp_path: Path) -> None:
    spec = parse_spec_text(SPEC, "spec.yaml", tmp_path)
    stream = io.StringIO()
    view = ProgressView(stream=stream, tty=False)
    earlier = json.dumps([{"epoch": 0, "seconds": 60.0}, {"epoch": 1, "seconds": 60.0}])
    result = {"epoch": 2, "seconds": 30.0, SECONDS_KEY: 35.0, HISTORY_KEY: earlier}
    show_trial_epoch(view, spec, spec.cells()[0], 7, result)
    assert "trial 7  epoch  3/10  2m35s  ETA" in stream.getvalue()  # 60 + 60 + 35 s


# --- the study's ETA and timestamps --------------------------------------------------------------

SPEC = """\
name: eta
datasets: [ml-100k]
backbones: [sasrec]
methods: [backbone]
fixed: {train.max_epochs: 10, train.eval_start_epoch: 0}
search:
  trials: 4
  space:
    backbone:
      train.lr: {loguniform: [0.0005, 0.01]}
final: {seeds: 2, reference: false}
"""


def planned_view(stream: io.StringIO, tty: bool = False, concurrency: int = 1) -> ProgressView:
    """A view of one cell: 4 trials of at most 10 epochs, then 2 final runs."""
    view = ProgressView(stream=stream, interval=0.0, tty=tty)
    view.name = "eta"
    view.add_cell("c1", target=4, max_epochs=10, final_total=2, concurrency=concurrency)
    view.update("c1", stage="search", running=1)
    return view


def study_lines(stream: io.StringIO) -> list[str]:
    return [line for line in stream.getvalue().splitlines() if " study eta  " in line]


def test_study_eta_is_known_from_the_first_epoch() -> None:
    stream = io.StringIO()
    view = planned_view(stream)
    view.trial_epoch("c1", 0, 0, 10, "ndcg@20", 0.03, epoch_seconds=30.0, trial_seconds=30.0)
    # 9 epochs left of the running trial, 3 trials not started x 10, 2 final runs x 10: 59 x 30 s
    assert study_lines(stream)[-1].endswith("study eta  ETA 29m30s at most")


def test_study_eta_spreads_the_work_over_the_trials_that_run_at_once() -> None:
    stream = io.StringIO()
    view = planned_view(stream, concurrency=2)
    view.trial_epoch("c1", 0, 0, 10, "ndcg@20", 0.03, epoch_seconds=30.0, trial_seconds=30.0)
    assert study_lines(stream)[-1].endswith("ETA 14m45s at most")


def test_study_eta_counts_each_trials_set_up_before_its_first_epoch() -> None:
    stream = io.StringIO()
    view = planned_view(stream)
    view.trial_epoch("c1", 0, 0, 10, "ndcg@20", 0.03, epoch_seconds=30.0, trial_seconds=40.0)
    # as above, plus 10 s of set-up for each of the 3 trials and 2 final runs still to start
    assert study_lines(stream)[-1].endswith("ETA 30m20s at most")


def test_a_log_repeats_the_study_eta_only_after_its_interval() -> None:
    stream = io.StringIO()
    view = planned_view(stream)
    for epoch in range(3):
        view.trial_epoch("c1", 0, epoch, 10, "ndcg@20", None, epoch_seconds=30.0)
    assert len(study_lines(stream)) == 2  # with the cell's line (unknown ETA), the first epoch's


def test_a_log_does_not_repeat_an_unchanged_study_line() -> None:
    stream = io.StringIO()
    view = planned_view(stream)  # its cell line came with the study's line
    view.update("c1", running=0)
    assert len(study_lines(stream)) == 1 and "running 0" in stream.getvalue()


def test_final_stage_eta_counts_the_seeds_left_before_any_run_ended() -> None:
    stream = io.StringIO()
    view = planned_view(stream)
    view.trial_epoch("c1", 0, 0, 10, "ndcg@20", 0.03, epoch_seconds=30.0)
    view.trial_done("c1", 0)
    view.update("c1", stage="final", final_done=1, final_total=2, running=1)
    assert "1/2 seeds  running 1  ETA 5m00s at most" in stream.getvalue()  # 1 run x 10 x 30 s


def test_study_eta_says_only_at_most_before_any_run_ended() -> None:
    view = planned_view(io.StringIO())
    view.trial_epoch("c1", 0, 0, 10, "ndcg@20", 0.03, epoch_seconds=30.0, trial_seconds=30.0)
    assert view.study_text(0.0) == "study eta  ETA 29m30s at most"


def test_study_eta_is_likely_as_long_as_the_runs_that_ended() -> None:
    view = planned_view(io.StringIO())
    for epoch in (0, 1):  # trial 0 is pruned after 2 epochs of 30 s
        view.trial_epoch(
            "c1",
            0,
            epoch,
            10,
            "ndcg@20",
            0.03,
            epoch_seconds=30.0,
            trial_seconds=30.0 * (epoch + 1),
        )
    view.trial_done("c1", 0)
    view.update("c1", trials=TrialCounts(pruned=1), running=0)
    # likely: 3 trials x 2 epochs, then 2 final runs as long as the longest trial, 2 epochs;
    # at most: every run to its 10 epochs
    assert view.study_text(0.0) == "study eta  ETA ~5m00s (at most 25m00s)"


def test_epoch_time_follows_this_drivers_latest_epochs_not_the_slower_ones_on_disk() -> None:
    view = planned_view(io.StringIO())
    view.add_cell("c1", epochs_seen=10, epoch_seconds=1000.0)  # 100 s each, a busier day
    for epoch in range(3):
        view.trial_epoch("c1", 0, epoch, 10, "ndcg@20", 0.03, epoch_seconds=30.0)
    assert view.epoch_time(view.cells["c1"]) == 30.0


def test_every_line_of_a_log_starts_with_a_timestamp() -> None:
    stream = io.StringIO()
    view = planned_view(stream)
    view.message("ray: starting a local Ray (2 CPUs)")
    view.trial_epoch("c1", 0, 0, 10, "ndcg@20", 0.03, epoch_seconds=30.0)
    view.update("c1", trials=TrialCounts(complete=1), running=0)
    lines = stream.getvalue().splitlines()
    assert len(lines) >= 5 and all(re.match(rf"^{STAMP} \S", line) for line in lines)


def test_a_study_with_every_cell_done_says_so_instead_of_an_eta() -> None:
    view = planned_view(io.StringIO())
    view.update("c1", stage="done")
    assert view.study_text(0.0) == "study eta  nothing left to train"


def test_a_terminal_shows_the_study_eta_above_the_cells_without_timestamps() -> None:
    stream = io.StringIO()
    view = planned_view(stream, tty=True)
    try:
        view.trial_epoch("c1", 0, 0, 10, "ndcg@20", 0.03, epoch_seconds=30.0)
        block = stream.getvalue().split("\x1b[J")[-1].splitlines()
        assert block[0] == "study eta  ETA 29m30s at most" and block[1].startswith("c1")
        assert not re.search(STAMP, stream.getvalue())
    finally:
        view.close()


def test_plan_study_counts_the_trials_already_done_on_disk(tmp_path: Path) -> None:
    spec = parse_spec_text(SPEC, "spec.yaml", tmp_path)
    store = StudyStore.at(tmp_path / "studies", spec.name)
    cell = spec.cells()[0]
    rows = [{"number": n, "state": "COMPLETE", "value": 0.1, "params": "{}"} for n in range(3)]
    store.cell(cell.cell_id).write_trials(rows)
    view = ProgressView(stream=io.StringIO(), tty=False)
    plan_study(view, spec, store)
    planned = view.cells[cell.cell_id]
    assert (planned.target, planned.trials.complete, planned.max_epochs, planned.final_total) == (
        4,
        3,
        10,
        2,
    )


def test_a_log_line_is_timestamped_but_a_terminal_line_is_not() -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    pipe, terminal = io.StringIO(), Terminal()
    say("faerec-study: some cells failed:", pipe)
    say("faerec-study: some cells failed:", terminal)
    assert re.match(rf"^{STAMP} faerec-study: some cells failed:\n$", pipe.getvalue())
    assert terminal.getvalue() == "faerec-study: some cells failed:\n"


def test_a_signal_line_in_a_log_is_timestamped(capfd: pytest.CaptureFixture[str]) -> None:
    with InterruptGuard() as guard, pytest.raises(StopNow):
        guard.immediate = True
        os.kill(os.getpid(), signal.SIGTERM)
    assert re.match(rf"^{STAMP} faerec-study: SIGTERM: stopping now\n$", capfd.readouterr().err)


def test_a_resumed_study_knows_its_eta_from_the_epochs_on_disk(tmp_path: Path) -> None:
    spec = parse_spec_text(SPEC, "spec.yaml", tmp_path)
    store = StudyStore.at(tmp_path / "studies", spec.name)
    cell = spec.cells()[0]
    store.cell(cell.cell_id).write_epochs(
        [{"trial": 0, "epoch": e, "seconds": 30.0} for e in (0, 1)]
    )
    view = ProgressView(stream=io.StringIO(), tty=False)
    plan_study(view, spec, store)
    # 4 trials x 10 epochs and 2 final runs x 10 epochs at 30 s, before any epoch of this driver
    assert view.study_text(0.0) == "study eta  ETA 30m00s at most"
