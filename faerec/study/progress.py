"""A live, plain-text view of a running study: one line per cell, one per running trial.

On a terminal the block of lines is redrawn in place at most every ``interval`` seconds (a small
ticker thread keeps the ETA moving between events). Anywhere else (a log file, CI) a cell's line
is printed again only when something in it changed, never on a timer, so logs stay short; a
running trial prints one line per epoch there, with a UTC timestamp.

A trial's line shows its cell, number, epoch (counted from 1) out of ``train.max_epochs``, its
latest validation score, its peak GPU memory in its last epoch (on a GPU: how tightly trials
can be packed on one device), its time so far, and the time left to ``max_epochs`` estimated
from the mean of its epochs so far (an upper bound: early stopping or the scheduler may stop
it sooner).
"""

from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TextIO

from faerec.run_progress import format_seconds, timestamp
from faerec.study.trainable import GPU_MEMORY_KEY

if TYPE_CHECKING:
    from faerec.study.spec import Cell, StudySpec


@dataclass
class CellProgress:
    """What the view shows for one cell."""

    cell_id: str
    stage: str = "waiting"  # waiting | search | preset | final | done | failed
    target: int = 0
    running: int = 0
    complete: int = 0
    pruned: int = 0
    failed: int = 0
    best: str = ""
    #: when the current stage is expected to end (a time.monotonic() value), if known
    eta_at: float | None = None
    final_done: int = 0
    final_total: int = 0
    note: str = field(default="")

    def text(self, width: int, now: float) -> str:
        """The cell's line; ``now`` only matters for the ETA."""
        parts = [self.cell_id.ljust(width), self.stage.ljust(6)]
        if self.stage == "search":
            done = self.complete + self.pruned + self.failed
            parts.append(f"{done}/{self.target} trials")
            parts.append(
                f"running {self.running}  complete {self.complete}  pruned {self.pruned}  "
                f"failed {self.failed}"
            )
        elif self.stage == "final":
            parts.append(f"{self.final_done}/{self.final_total} seeds  running {self.running}")
        if self.best:
            parts.append(f"best {self.best}")
        if self.eta_at is not None and self.stage in ("search", "final"):
            parts.append(f"ETA {format_seconds(max(0.0, self.eta_at - now))}")
        if self.note:
            parts.append(self.note)
        return "  ".join(parts)

    def key(self) -> str:
        """The line without its ETA: what counts as a change on a non-terminal."""
        eta, self.eta_at = self.eta_at, None
        try:
            return self.text(0, 0.0)
        finally:
            self.eta_at = eta


@dataclass
class TrialProgress:
    """One running trial of a cell."""

    cell_id: str
    number: int
    max_epochs: int
    metric: str
    started: float  # time.monotonic() at its first report
    epochs_done: int = 0  # epochs reported by this driver (a resumed trial starts later)
    epoch: int = 0  # 0-based index of the last finished epoch
    value: float | None = None
    #: peak GPU memory torch allocated in the trial's last epoch, MiB (None on the CPU)
    gpu_mem_mb: float | None = None

    def text(self, now: float) -> str:
        elapsed = now - self.started
        width = len(str(self.max_epochs))
        parts = [
            f"  {self.cell_id} trial {self.number}",
            f"epoch {self.epoch + 1:>{width}}/{self.max_epochs}",
        ]
        if self.value is not None:
            parts.append(f"valid {self.metric} {self.value:.4f}")
        if self.gpu_mem_mb is not None:
            parts.append(f"gpu {self.gpu_mem_mb:.0f} MiB")
        parts.append(format_seconds(elapsed))
        left = self.max_epochs - self.epoch - 1
        if self.epochs_done and left > 0:
            parts.append(f"ETA {format_seconds(elapsed / self.epochs_done * left)} at most")
        return "  ".join(parts)


class ProgressView:
    """Per-cell progress lines on ``stream`` (a terminal gets an in-place redrawn block)."""

    def __init__(
        self, stream: TextIO | None = None, interval: float = 2.0, tty: bool | None = None
    ) -> None:
        self.stream = stream if stream is not None else sys.stdout
        self.interval = interval
        self.tty = self.stream.isatty() if tty is None else tty
        self.cells: dict[str, CellProgress] = {}
        self.trials: dict[tuple[str, int], TrialProgress] = {}
        self._lock = threading.RLock()
        self._printed_keys: dict[str, str] = {}
        self._drawn_lines = 0
        self._last_draw = 0.0
        self._dirty = False
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None
        if self.tty:
            self._ticker = threading.Thread(target=self._tick, name="faerec-progress", daemon=True)
            self._ticker.start()

    def add_cell(self, cell_id: str) -> None:
        with self._lock:
            self.cells.setdefault(cell_id, CellProgress(cell_id))

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
                    self._write(cell.text(self._width(), time.monotonic()) + "\n")

    def trial_epoch(
        self,
        cell_id: str,
        number: int,
        epoch: int,
        max_epochs: int,
        metric: str,
        value: float | None,
        gpu_mem_mb: float | None = None,
    ) -> None:
        """A trial finished ``epoch`` (0-based); ``value`` is its validation score, if any,
        ``gpu_mem_mb`` its peak GPU memory in that epoch, if it runs on a GPU."""
        with self._lock:
            now = time.monotonic()
            trial = self.trials.get((cell_id, number))
            if trial is None:
                trial = TrialProgress(cell_id, number, max_epochs, metric, started=now)
                self.trials[(cell_id, number)] = trial
            trial.epoch = epoch
            trial.epochs_done += 1
            if value is not None:
                trial.value = value
            trial.gpu_mem_mb = gpu_mem_mb
            if self.tty:
                self._dirty = True
                if now - self._last_draw >= self.interval:
                    self._draw()
            else:
                self._write(f"{timestamp()} {trial.text(now).strip()}\n")

    def trial_done(self, cell_id: str, number: int) -> None:
        """The trial ended (complete, pruned or failed): its line goes."""
        with self._lock:
            if self.trials.pop((cell_id, number), None) is not None and self.tty:
                self._dirty = True

    def message(self, text: str) -> None:
        """A line of its own (above the live block on a terminal)."""
        with self._lock:
            if self.tty:
                self._erase()
                self._write(text + "\n")
                self._draw()
            else:
                self._write(text + "\n")

    def close(self) -> None:
        """Stop the ticker and leave the final state on screen."""
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join(timeout=1.0)
        with self._lock:
            if self.tty and self._dirty:
                self._draw()

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
        lines = []
        for cell in self.cells.values():
            lines.append(cell.text(self._width(), now))
            lines += [t.text(now) for t in self.trials.values() if t.cell_id == cell.cell_id]
        self._erase()
        self._write("".join(line + "\n" for line in lines))
        self._drawn_lines = len(lines)
        self._last_draw = now
        self._dirty = False

    def _write(self, text: str) -> None:
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):  # a closed pipe must not stop the study
            pass


def show_trial_epoch(
    progress: ProgressView, spec: StudySpec, cell: Cell, number: int, result: dict[str, Any]
) -> None:
    """Hand one epoch report of a trial (the trainable's result dict) to the view."""
    metric = spec.search.objectives[0].name
    value = result.get(f"valid/{metric}")
    gpu_mem_mb = result.get(GPU_MEMORY_KEY)
    progress.trial_epoch(
        cell.cell_id,
        number,
        int(result["epoch"]),
        spec.cell_config(cell).train.max_epochs,
        metric,
        float(value) if isinstance(value, (int, float)) else None,
        float(gpu_mem_mb) if isinstance(gpu_mem_mb, (int, float)) else None,
    )
