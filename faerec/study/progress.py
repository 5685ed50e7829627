"""A live, plain-text view of a running study: its ETA, one line per cell, one per running trial
or final run.

On a terminal the block of lines is redrawn in place at most every ``interval`` seconds (a small
ticker thread keeps the times moving between events). Anywhere else (a log file, a pipe, CI)
every line starts with a UTC timestamp (:func:`faerec.run_progress.log_line`), a cell's line is
printed again only when something in it changed, never on a timer, a running trial prints one
line per epoch, and the study's line is printed (when it says something new) with every cell
line and after an epoch line when it has not been printed for ``log_interval`` seconds (or has
not shown an ETA yet).

A trial's line shows its cell, number, epoch (counted from 1) out of ``train.max_epochs``, its
latest validation score, its peak GPU memory in its last epoch (on a GPU: how tightly trials
can be packed on one device), its time since it started (its first epoch, its set-up and, for a
trial resumed from a checkpoint, the earlier epochs included), and the time left to
``max_epochs`` at the mean of its epochs so far. A final run's line is the same with ``seed <s>``
(``reference seed <s>`` for the preset retrained as the cell's reference) in place of the trial.

The ETAs are upper bounds, hence "at most": the scheduler (ASHA, the median rule) and early
stopping may end trials and final runs before ``max_epochs``. They come from the epoch times
seen so far (per cell; a cell without any yet borrows the mean of the others) and the work
left: for a search, the running trials' remaining epochs plus ``max_epochs`` for every trial
not started yet; for the final stage, the running runs' remaining epochs plus ``max_epochs``
per run not started, at the mean epoch time of the cell's final runs once one has reported an
epoch (once a final run has finished, its measured time per run instead). The work is spread
over the trials that run at once (the search's concurrency). The study's ETA adds every cell's
search and final stage.
"""

from __future__ import annotations

import contextlib
import json
import math
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TextIO

from faerec.run_progress import format_seconds, log_line
from faerec.study.store import TrialCounts
from faerec.study.trainable import GPU_MEMORY_KEY, HISTORY_KEY, SECONDS_KEY

if TYPE_CHECKING:
    from faerec.study.spec import Cell, StudySpec
    from faerec.study.store import StudyStore

#: how often, at most, a log repeats the study's line between cell changes
LOG_INTERVAL_S = 300.0
#: the epoch time of a cell's ETAs is the mean of its latest RECENT_EPOCHS trial epochs seen
#: by this driver, once it has MIN_RECENT_EPOCHS of them (the load may have changed since the
#: epochs on disk)
RECENT_EPOCHS = 20
MIN_RECENT_EPOCHS = 3


@dataclass
class CellProgress:
    """What the view shows for one cell, and the work it has left (for the ETAs)."""

    cell_id: str
    stage: str = "waiting"  # waiting | search | preset | final | done | failed
    target: int = 0
    running: int = 0
    #: the search's trials by state, as the store counts them
    trials: TrialCounts = field(default_factory=TrialCounts)
    best: str = ""
    final_done: int = 0
    final_total: int = 0
    note: str = field(default="")
    #: train.max_epochs of the cell's runs (0: unknown, no ETA)
    max_epochs: int = 0
    #: trials (or final runs) at a time
    concurrency: int = 1
    #: the epochs the view saw: their count and total seconds
    epochs_seen: int = 0
    epoch_seconds: float = 0.0
    #: trial set-ups the view saw (a trial's time before its first epoch): count, total seconds
    setups_seen: int = 0
    setup_seconds: float = 0.0
    #: the epochs of final runs among them (the final configuration's own epoch time)
    final_epochs_seen: int = 0
    final_epoch_seconds: float = 0.0
    #: runs that ended and their epochs, for the likely ETA: search trials (pruned ones
    #: included), the longest of them, and final runs
    #: seconds of the latest epochs this driver saw (the machine's load now, not last week's)
    recent_epochs: deque[float] = field(default_factory=lambda: deque(maxlen=RECENT_EPOCHS))
    trials_ended: int = 0
    trial_epochs: int = 0
    longest_trial: int = 0
    finals_ended: int = 0
    final_epochs: int = 0

    def ended(self, epochs: int, final: bool) -> None:
        """A run of the cell ended after ``epochs`` epochs."""
        if final:
            self.finals_ended += 1
            self.final_epochs += epochs
        else:
            self.trials_ended += 1
            self.trial_epochs += epochs
            self.longest_trial = max(self.longest_trial, epochs)

    def text(self, width: int, eta: float | None) -> str:
        """The cell's line; ``eta`` is the seconds its current stage has left, if known."""
        parts = [self.cell_id.ljust(width), self.stage.ljust(6)]
        if self.stage == "search":
            trials = self.trials
            parts.append(f"{trials.done}/{self.target} trials")
            parts.append(
                f"running {self.running}  complete {trials.complete}  pruned {trials.pruned}  "
                f"failed {trials.failed}"
            )
        elif self.stage == "final":
            parts.append(f"{self.final_done}/{self.final_total} seeds  running {self.running}")
        if self.best:
            parts.append(f"best {self.best}")
        if eta is not None and self.stage in ("search", "final"):
            parts.append(f"ETA {format_seconds(eta)} at most")
        if self.note:
            parts.append(self.note)
        return "  ".join(parts)

    def key(self) -> str:
        """The line without its ETA: what counts as a change on a non-terminal."""
        return self.text(0, None)


@dataclass
class TrialProgress:
    """One running trial (or final run) of a cell."""

    cell_id: str
    #: what the line calls it: ``trial 3``, ``seed 2024``, ``reference seed 2024``
    label: str
    max_epochs: int
    metric: str
    #: time.monotonic() when the trial started (its first epoch and set-up before ``now``)
    started: float
    #: time.monotonic() of its latest report
    reported: float = 0.0
    epochs_done: int = 0  # epochs reported by this driver (a resumed trial starts later)
    epoch: int = 0  # 0-based index of the last finished epoch
    value: float | None = None
    #: total seconds of the epochs this driver saw (their mean is the trial's epoch time)
    epoch_seconds: float = 0.0
    #: peak GPU memory torch allocated in the trial's last epoch, MiB (None on the CPU)
    gpu_mem_mb: float | None = None
    #: a final-stage run, not a search trial
    final: bool = False

    @property
    def epochs_left(self) -> int:
        return max(0, self.max_epochs - self.epoch - 1)

    def text(self, now: float) -> str:
        width = len(str(self.max_epochs))
        parts = [
            f"  {self.cell_id} {self.label}",
            f"epoch {self.epoch + 1:>{width}}/{self.max_epochs}",
        ]
        if self.value is not None:
            parts.append(f"valid {self.metric} {self.value:.4f}")
        if self.gpu_mem_mb is not None:
            parts.append(f"gpu {self.gpu_mem_mb:.0f} MiB")
        parts.append(format_seconds(now - self.started))
        if self.epochs_done and self.epochs_left and self.epoch_seconds > 0:
            mean = self.epoch_seconds / self.epochs_done
            parts.append(f"ETA {format_seconds(mean * self.epochs_left)} at most")
        return "  ".join(parts)


class ProgressView:
    """The study's progress lines on ``stream`` (a terminal gets an in-place redrawn block)."""

    def __init__(
        self,
        stream: TextIO | None = None,
        interval: float = 2.0,
        tty: bool | None = None,
        log_interval: float = LOG_INTERVAL_S,
    ) -> None:
        self.stream = stream if stream is not None else sys.stdout
        self.interval = interval
        self.log_interval = log_interval
        self.tty = self.stream.isatty() if tty is None else tty
        self.name = ""
        self.cells: dict[str, CellProgress] = {}
        #: running trials and final runs by (cell, label)
        self.trials: dict[tuple[str, str], TrialProgress] = {}
        self._lock = threading.RLock()
        self._printed_keys: dict[str, str] = {}
        self._study_logged_at: float | None = None
        self._study_logged_eta = False
        self._study_logged_text = ""
        self._drawn_lines = 0
        self._last_draw = 0.0
        self._dirty = False
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None
        if self.tty:
            self._ticker = threading.Thread(target=self._tick, name="faerec-progress", daemon=True)
            self._ticker.start()

    def add_cell(self, cell_id: str, **fields: object) -> None:
        """A cell of the study (with, optionally, what it has to do: ``target``,
        ``max_epochs``, ``final_total``, counts already done)."""
        with self._lock:
            cell = self.cells.setdefault(cell_id, CellProgress(cell_id))
            for name, value in fields.items():
                setattr(cell, name, value)

    def update(self, cell_id: str, **fields: object) -> None:
        """Change some fields of a cell's line and show it if that is due."""
        with self._lock:
            cell = self.cells.setdefault(cell_id, CellProgress(cell_id))
            for name, value in fields.items():
                setattr(cell, name, value)
            if self.tty:
                self._dirty = True
                if time.monotonic() - self._last_draw >= self.interval:
                    self._draw()
            else:
                key = cell.key()
                if self._printed_keys.get(cell_id) != key:
                    self._printed_keys[cell_id] = key
                    now = time.monotonic()
                    self._log(cell.text(self._width(), self.stage_eta(cell, now)))
                    self._log_study(now)

    def trial_epoch(
        self,
        cell_id: str,
        number: int,
        epoch: int,
        max_epochs: int,
        metric: str,
        value: float | None,
        gpu_mem_mb: float | None = None,
        epoch_seconds: float | None = None,
        trial_seconds: float | None = None,
    ) -> None:
        """A trial finished ``epoch`` (0-based); ``value`` is its validation score, if any,
        ``gpu_mem_mb`` its peak GPU memory in that epoch, if it runs on a GPU,
        ``epoch_seconds`` how long that epoch took and ``trial_seconds`` how long ago the
        trial started (None: unknown, the trial is taken to start with this epoch)."""
        self._run_epoch(
            cell_id,
            f"trial {number}",
            False,
            epoch,
            max_epochs,
            metric,
            value,
            gpu_mem_mb,
            epoch_seconds,
            trial_seconds,
        )

    def trial_done(self, cell_id: str, number: int) -> None:
        """The trial ended (complete, pruned or failed): its line goes."""
        self._run_done(cell_id, f"trial {number}")

    def final_epoch(
        self,
        cell_id: str,
        seed: int,
        reference: bool,
        epoch: int,
        max_epochs: int,
        metric: str,
        value: float | None,
        gpu_mem_mb: float | None = None,
        epoch_seconds: float | None = None,
        run_seconds: float | None = None,
    ) -> None:
        """A final run (``reference``: the preset's retraining) finished ``epoch`` (0-based);
        the arguments are those of :meth:`trial_epoch`, ``run_seconds`` its ``trial_seconds``."""
        self._run_epoch(
            cell_id,
            final_label(seed, reference),
            True,
            epoch,
            max_epochs,
            metric,
            value,
            gpu_mem_mb,
            epoch_seconds,
            run_seconds,
        )

    def final_run_done(self, cell_id: str, seed: int, reference: bool) -> None:
        """The final run ended (its result written, or failed): its line goes."""
        self._run_done(cell_id, final_label(seed, reference))

    def _run_epoch(
        self,
        cell_id: str,
        label: str,
        final: bool,
        epoch: int,
        max_epochs: int,
        metric: str,
        value: float | None,
        gpu_mem_mb: float | None,
        epoch_seconds: float | None,
        trial_seconds: float | None,
    ) -> None:
        with self._lock:
            now = time.monotonic()
            trial = self.trials.get((cell_id, label))
            spent = epoch_seconds
            if spent is None:  # not reported: the time since the trial's last report, if any
                spent = 0.0 if trial is None else now - trial.reported
            started = now - (trial_seconds if trial_seconds is not None else spent)
            if trial is None:
                trial = TrialProgress(
                    cell_id, label, max_epochs, metric, started=started, final=final
                )
                self.trials[(cell_id, label)] = trial
                cell = self.cells.setdefault(cell_id, CellProgress(cell_id))
                if epoch == 0 and trial_seconds is not None and epoch_seconds is not None:
                    cell.setups_seen += 1  # a fresh trial: its time before this epoch
                    cell.setup_seconds += max(0.0, trial_seconds - epoch_seconds)
            trial.started = min(trial.started, started)
            trial.reported = now
            trial.epoch = epoch
            trial.max_epochs = max(trial.max_epochs, max_epochs)  # a final run's raised cap
            trial.epochs_done += 1
            trial.epoch_seconds += spent
            cell = self.cells.setdefault(cell_id, CellProgress(cell_id))
            if epoch_seconds is not None:
                cell.epochs_seen += 1
                cell.epoch_seconds += epoch_seconds
                if not final:
                    cell.recent_epochs.append(epoch_seconds)
                if final:
                    cell.final_epochs_seen += 1
                    cell.final_epoch_seconds += epoch_seconds
            if not cell.max_epochs:
                cell.max_epochs = max_epochs
            if value is not None:
                trial.value = value
            trial.gpu_mem_mb = gpu_mem_mb
            if self.tty:
                self._dirty = True
                if now - self._last_draw >= self.interval:
                    self._draw()
            else:
                self._log(trial.text(now).strip())
                if (
                    self._study_logged_at is None
                    or now - self._study_logged_at >= self.log_interval
                    or not self._study_logged_eta
                ):
                    self._log_study(now)

    def _run_done(self, cell_id: str, label: str) -> None:
        with self._lock:
            trial = self.trials.pop((cell_id, label), None)
            if trial is None:
                return
            self.cells.setdefault(cell_id, CellProgress(cell_id)).ended(
                trial.epoch + 1, trial.final
            )
            if self.tty:
                self._dirty = True

    def message(self, text: str) -> None:
        """A line of its own (above the live block on a terminal)."""
        with self._lock:
            if self.tty:
                self._erase()
                self._write(text + "\n")
                self._draw()
            else:
                self._log(text)

    def close(self) -> None:
        """Stop the ticker and leave the final state on screen."""
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join(timeout=1.0)
        with self._lock:
            if self.tty and self._dirty:
                self._draw()

    # -- estimates -----------------------------------------------------------------------

    def epoch_time(self, cell: CellProgress) -> float | None:
        """Mean seconds per epoch of ``cell``: of its latest epochs in this driver once there
        are a few, else of all it has (on disk too); of every cell when it has none yet."""
        if len(cell.recent_epochs) >= MIN_RECENT_EPOCHS:
            return sum(cell.recent_epochs) / len(cell.recent_epochs)
        if cell.epochs_seen:
            return cell.epoch_seconds / cell.epochs_seen
        seen = sum(c.epochs_seen for c in self.cells.values())
        if not seen:
            return None
        return sum(c.epoch_seconds for c in self.cells.values()) / seen

    def _setup_time(self, cell: CellProgress) -> float:
        if cell.setups_seen:
            return cell.setup_seconds / cell.setups_seen
        seen = sum(c.setups_seen for c in self.cells.values())
        return sum(c.setup_seconds for c in self.cells.values()) / seen if seen else 0.0

    def typical_epochs(self, cell: CellProgress, final: bool) -> float | None:
        """How many epochs a run of ``cell`` likely trains, from the runs that ended: the
        mean of its trials (pruned ones included) or of its final runs; for final runs before
        any of the cell's ended, its longest trial (a trial that was not pruned), then the mean
        of the other cells' final runs, then the longest trial of any cell. None: nothing to go
        by yet."""
        if final:
            if cell.finals_ended:
                return cell.final_epochs / cell.finals_ended
            if cell.longest_trial:
                return float(cell.longest_trial)
            ended = sum(c.finals_ended for c in self.cells.values())
            epochs = sum(c.final_epochs for c in self.cells.values())
            if not ended:  # a cell without a search, before any final run ended
                longest = max(c.longest_trial for c in self.cells.values())
                return float(longest) if longest else None
        else:
            if cell.trials_ended:
                return cell.trial_epochs / cell.trials_ended
            ended = sum(c.trials_ended for c in self.cells.values())
            epochs = sum(c.trial_epochs for c in self.cells.values())
        return epochs / ended if ended else None

    def _epochs_left(
        self, cell: CellProgress, running: list[TrialProgress], not_started: int, likely: bool
    ) -> float | None:
        """Epochs the running and not yet started runs have left: at most (every run to
        ``max_epochs``), or likely (:meth:`typical_epochs`, a running run at least one more)."""
        if not likely:
            return sum(t.epochs_left for t in running) + not_started * cell.max_epochs
        final = bool(running[0].final) if running else cell.stage == "final"
        typical = self.typical_epochs(cell, final)
        if typical is None:
            return None
        typical = min(typical, float(cell.max_epochs))
        left = sum(
            min(float(t.epochs_left), max(1.0, typical - t.epoch - 1))
            for t in running
            if t.epochs_left
        )
        return left + not_started * typical

    def search_left(self, cell: CellProgress, likely: bool = False) -> float | None:
        """Seconds of work (one trial at a time) the cell's search has left: at most, or
        ``likely`` (from the trials that ended)."""
        if cell.stage not in ("waiting", "search") or not cell.target:
            return 0.0
        per_epoch = self.epoch_time(cell)
        if per_epoch is None or not cell.max_epochs:
            return None
        mine = [t for t in self.trials.values() if t.cell_id == cell.cell_id and not t.final]
        not_started = max(0, cell.target - cell.trials.done - len(mine))
        epochs = self._epochs_left(cell, mine, not_started, likely)
        if epochs is None:
            return None
        return epochs * per_epoch + not_started * self._setup_time(cell)

    def final_left(self, cell: CellProgress, likely: bool = False) -> float | None:
        """Seconds of work (one run at a time) the cell's final stage has left: at most, or
        ``likely`` (from the runs that ended)."""
        runs = max(0, cell.final_total - cell.final_done)
        if not runs or cell.stage in ("failed", "done"):
            return 0.0
        per_epoch = self.epoch_time(cell)
        if cell.final_epochs_seen:  # the final configuration's own epochs, not the search's
            per_epoch = cell.final_epoch_seconds / cell.final_epochs_seen
        if per_epoch is None or not cell.max_epochs:
            return None
        running = [t for t in self.trials.values() if t.cell_id == cell.cell_id and t.final]
        not_started = max(0, runs - len(running))
        if likely and not running:
            typical = self.typical_epochs(cell, final=True)
            if typical is None:
                return None
            epochs: float | None = not_started * min(typical, float(cell.max_epochs))
        else:
            epochs = self._epochs_left(cell, running, not_started, likely)
        if epochs is None:
            return None
        return epochs * per_epoch + not_started * self._setup_time(cell)

    def _slots(self) -> int:
        return max([1] + [c.concurrency for c in self.cells.values()])

    def stage_eta(self, cell: CellProgress, now: float) -> float | None:
        """Seconds the cell's current stage has left, at most (None: not known yet)."""
        left = self.search_left(cell) if cell.stage == "search" else None
        if cell.stage == "final":
            left = self.final_left(cell)
        return None if left is None else left / max(1, cell.concurrency)

    def study_eta(self, now: float, likely: bool = False) -> float | None:
        """Seconds the whole study has left: at most, or ``likely`` (runs as long as those
        that ended); None when not known yet."""
        total = 0.0
        for cell in self.cells.values():
            search, final = self.search_left(cell, likely), self.final_left(cell, likely)
            if search is None or final is None:
                return None
            total += search + final
        return total / self._slots()

    def _work_left(self) -> bool:
        """Whether some cell still has trials or final runs to train."""
        return any(
            c.stage in ("waiting", "search", "final")
            or (c.stage == "preset" and c.final_done < c.final_total)
            for c in self.cells.values()
        )

    def study_text(self, now: float) -> str:
        """The study's line: its name and ETA."""
        eta = self.study_eta(now)
        when = "ETA unknown until the first epoch"
        if not self._work_left():
            when = "nothing left to train"
        elif eta is not None:
            when = f"ETA {format_seconds(eta)} at most"
            likely = self.study_eta(now, likely=True)
            if likely is not None and likely < eta:
                when = f"ETA ~{format_seconds(likely)} (at most {format_seconds(eta)})"
        return f"study {self.name}  {when}" if self.name else f"study  {when}"

    # -- terminal drawing ----------------------------------------------------------------

    def _width(self) -> int:
        return max((len(c) for c in self.cells), default=0)

    def _tick(self) -> None:
        while not self._stop.wait(self.interval):
            with self._lock:
                if self.cells and any(c.stage in ("search", "final") for c in self.cells.values()):
                    self._draw()

    def _erase(self) -> None:
        if self._drawn_lines:
            self._write(f"\x1b[{self._drawn_lines}F\x1b[J")
            self._drawn_lines = 0

    def _draw(self) -> None:
        now = time.monotonic()
        lines = [self.study_text(now)] if self.name else []
        for cell in self.cells.values():
            lines.append(cell.text(self._width(), self.stage_eta(cell, now)))
            lines += [t.text(now) for t in self.trials.values() if t.cell_id == cell.cell_id]
        self._erase()
        self._write("".join(line + "\n" for line in lines))
        self._drawn_lines = len(lines)
        self._last_draw = now
        self._dirty = False

    def _log_study(self, now: float) -> None:
        if not self.name or not self._work_left():
            return  # no plan (plan_study), or nothing left to do
        text = self.study_text(now)
        if text == self._study_logged_text:
            return
        self._study_logged_at = now
        self._study_logged_eta = self.study_eta(now) is not None
        self._study_logged_text = text
        self._log(text)

    def _log(self, text: str) -> None:
        self._write(log_line(text, tty=False) + "\n")

    def _write(self, text: str) -> None:
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):  # a closed pipe must not stop the study
            pass


def final_label(seed: int, reference: bool) -> str:
    """What a final run's line calls it: ``seed 2024``, or ``reference seed 2024`` for the
    cell's preset retrained as its reference."""
    return f"reference seed {seed}" if reference else f"seed {seed}"


def plan_study(progress: ProgressView, spec: StudySpec, store: StudyStore) -> None:
    """Tell the view every cell of the study and the work it has (its search's trial target,
    ``max_epochs``, its final runs, the trials already done on disk), so the study's ETA is
    known from the first epochs on; a resumed study's epochs on disk (``epochs.csv``) give it
    at once."""
    from faerec.study.store import count_trials, read_csv

    progress.name = spec.name
    for cell in spec.cells():
        searched = cell.space is not None
        finals = spec.final_seeds * (2 if searched and spec.final_reference else 1)
        cell_store = store.cell(cell.cell_id)
        trial_rows = read_csv(cell_store.trials_csv) if searched else []
        counts = count_trials(trial_rows) if searched else None
        seconds = [_float(row.get("seconds")) for row in read_csv(cell_store.epochs_csv)]
        timed = [s for s in seconds if s is not None]
        progress.add_cell(
            cell.cell_id,
            target=spec.trials_for(cell) if searched else 0,
            max_epochs=spec.cell_config(cell).train.max_epochs,
            final_total=finals,
            trials=counts or TrialCounts(),
            epochs_seen=len(timed),
            epoch_seconds=sum(timed),
        )
        planned = progress.cells[cell.cell_id]
        for row in trial_rows:
            epochs = _float(row.get("epochs"))
            if row.get("state") in ("COMPLETE", "PRUNED") and epochs:
                planned.ended(int(epochs), final=False)
        for path in sorted(cell_store.final_dir.glob("*seed_*.json")):
            with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
                planned.ended(int(json.loads(path.read_text())["epochs_trained"]), final=True)


def show_trial_epoch(
    progress: ProgressView, spec: StudySpec, cell: Cell, number: int, result: dict[str, Any]
) -> None:
    """Hand one epoch report of a trial (the trainable's result dict) to the view."""
    metric = spec.search.objectives[0].name
    value = result.get(f"valid/{metric}")
    gpu_mem_mb = result.get(GPU_MEMORY_KEY)
    seconds = _number(result.get("seconds"))
    since_start = _number(result.get(SECONDS_KEY))
    if since_start is not None and HISTORY_KEY in result:  # resumed: its earlier epochs too
        earlier = json.loads(result[HISTORY_KEY])
        since_start += sum(_number(e.get("seconds")) or 0.0 for e in earlier)
    progress.trial_epoch(
        cell.cell_id,
        number,
        int(result["epoch"]),
        spec.cell_config(cell).train.max_epochs,
        metric,
        _number(value),
        _number(gpu_mem_mb),
        epoch_seconds=seconds,
        trial_seconds=since_start,
    )


def show_final_epoch(
    progress: ProgressView,
    cell_id: str,
    seed: int,
    reference: bool,
    max_epochs: int,
    metric: str,
    entry: dict[str, Any],
) -> None:
    """Hand one epoch a final run recorded (an entry of its ``progress.json``,
    :class:`faerec.study.final.ProgressWriter`) to the view."""
    progress.final_epoch(
        cell_id,
        seed,
        reference,
        int(entry["epoch"]),
        max_epochs,
        metric,
        _number(entry.get("value")),
        _number(entry.get("gpu_mem_mb")),
        epoch_seconds=_number(entry.get("seconds")),
        run_seconds=_number(entry.get("elapsed")),
    )


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _float(text: str | None) -> float | None:
    """A CSV cell as a finite number (None: empty or not a number)."""
    try:
        value = float(text or "")
    except ValueError:
        return None
    return value if math.isfinite(value) else None
