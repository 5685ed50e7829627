"""One progress display per training run: a single bar on a terminal, timestamped lines
elsewhere, epochs shown counted from 1."""

from __future__ import annotations

import io
import re

from faerec.run_progress import RunProgress, format_seconds
from faerec.study.progress import ProgressView

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
    view.trial_epoch("beauty__sasrec__faerec", 3, 0, 50, "ndcg@20", None)
    view.trial_epoch("beauty__sasrec__faerec", 3, 1, 50, "ndcg@20", 0.0312)
    lines = stream.getvalue().splitlines()
    assert re.match(rf"^{STAMP} beauty__sasrec__faerec trial 3  epoch  1/50  \S+  ETA ", lines[0])
    assert "epoch  2/50  valid ndcg@20 0.0312" in lines[1] and "at most" in lines[1]


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
