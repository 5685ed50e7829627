"""Progress of one training run: one bar for the whole run on a terminal, one line per epoch
elsewhere.

On a terminal, a single tqdm bar counts the run's batches (every remaining epoch), shows the
epoch inside it (``epoch 3/50``), the elapsed time and the time left to ``train.max_epochs``
(an upper bound: early stopping may end the run sooner), and after each epoch its loss and
validation score. Written to a file or a pipe, the bar would be a stream of carriage returns,
so each epoch instead prints one line that starts with a UTC timestamp.

Epochs are shown counted from 1 ("epoch 1" is the first); stored files count from 0 (see
docs/store-layout.md).
"""

from __future__ import annotations

import contextlib
import sys
import time
from datetime import datetime, timezone
from typing import Any, TextIO


def format_seconds(seconds: float) -> str:
    """``42s``, ``3m05s`` or ``2h10m``: durations in progress lines."""
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def timestamp() -> str:
    """UTC time to the second, as log lines carry it."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def log_line(text: str, tty: bool) -> str:
    """``text`` as shown: on a terminal as it is, in a file or a pipe after a UTC timestamp, so
    that a log says when each thing happened. Every log line of ``train`` and ``run`` comes
    through here."""
    return text if tty else f"{timestamp()} {text}"


def say(text: str, stream: TextIO | None = None) -> None:
    """One log line on ``stream`` (default stderr), timestamped unless it is a terminal."""
    stream = stream if stream is not None else sys.stderr
    with contextlib.suppress(OSError, ValueError):  # a closed pipe must not stop the work
        print(log_line(text, _isatty(stream)), file=stream, flush=True)


class RunProgress:
    """One run's progress display; ``update``/``set_postfix_str`` follow tqdm's names, so the
    trainer's batch loop drives it like a bar."""

    def __init__(
        self,
        max_epochs: int,
        batches_per_epoch: int,
        first_epoch: int = 0,
        metric: str = "ndcg@20",
        stream: TextIO | None = None,
        tty: bool | None = None,
    ) -> None:
        self.max_epochs = max_epochs
        self.batches_per_epoch = batches_per_epoch
        self.first_epoch = first_epoch
        self.metric = metric
        self.stream = stream if stream is not None else sys.stderr
        self.tty = _isatty(self.stream) if tty is None else tty
        self.width = len(str(max_epochs))
        self.started = time.perf_counter()
        self.epoch = first_epoch
        self.bar: Any = None
        if self.tty:
            from tqdm import tqdm

            self.bar = tqdm(
                total=(max_epochs - first_epoch) * batches_per_epoch,
                unit="batch",
                dynamic_ncols=True,
                smoothing=0.0,  # the mean rate since the start: validation pauses included
                file=self.stream,
                desc=self._desc(first_epoch),
            )

    def _desc(self, epoch: int) -> str:
        return f"epoch {epoch + 1:>{self.width}}/{self.max_epochs}"

    # -- the batch loop (tqdm's interface) ----------------------------------------------------

    def update(self, batches: int = 1) -> None:
        if self.bar is not None:
            self.bar.update(batches)

    def set_postfix_str(self, text: str, refresh: bool = True) -> None:
        if self.bar is not None:
            self.bar.set_postfix_str(text, refresh=refresh)

    # -- epochs -------------------------------------------------------------------------------

    def start_epoch(self, epoch: int) -> None:
        """``epoch`` is 0-based, as the trainer counts."""
        self.epoch = epoch
        if self.bar is not None:
            self.bar.set_description_str(self._desc(epoch), refresh=False)

    def end_epoch(
        self,
        loss: float,
        valid: dict[str, float] | None,
        best_value: float | None,
        best_epoch: int | None,
    ) -> None:
        """Show the finished epoch: loss, validation score and the best epoch so far."""
        text = f"loss {loss:.4f}"
        if valid is not None and self.metric in valid:
            text += f"  valid {self.metric} {valid[self.metric]:.4f}"
        if best_value is not None and best_epoch is not None:
            text += f"  best {best_value:.4f} @ epoch {best_epoch + 1}"
        if self.bar is not None:
            self.bar.set_postfix_str(text.replace("  ", ", "), refresh=True)
            return
        done = self.epoch + 1 - self.first_epoch
        elapsed = time.perf_counter() - self.started
        left = self.max_epochs - self.epoch - 1
        eta = f"  ETA {format_seconds(elapsed / done * left)} at most" if left else ""
        line = f"{self._desc(self.epoch)}  {text}  {format_seconds(elapsed)} elapsed{eta}"
        self._write(log_line(line, tty=False) + "\n")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def _write(self, text: str) -> None:
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):  # a closed pipe must not stop the run
            pass


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


__all__ = ["RunProgress", "format_seconds", "log_line", "say", "timestamp"]
