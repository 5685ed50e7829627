"""Ctrl-C and SIGTERM in the driver: a first signal stops gently, a second one at once.

In a search round a first SIGINT or SIGTERM only sets a flag: the Tune experiment sees it
through :class:`faerec.study.tune_setup.InterruptStopper` and stops once the epochs in flight
end (their checkpoints are kept). Anywhere else (store set-up, final stage, whose runs keep their
own checkpoints, results and report, all written atomically) the driver stops at once. One line
on stderr says so at once, because with slow trials the wait for epochs can be minutes. A second
signal raises :class:`StopNow` wherever the driver is: nothing in flight is waited for, and
those epochs are simply trained again on resume (docs/study-spec.md, "Running, resuming,
changing a study"). Either way the study ends with exit code 3 (:class:`StudyInterrupted`).

Ray's ``ray.init()`` installs SIGTERM handlers of its own (one exits, one aborts) and
``ray.shutdown()`` leaves the default, so the driver takes the signals back after both
(:meth:`InterruptGuard.reinstall`); a SIGTERM during ``ray.init()`` itself stops at once.

The handler acts only in the main thread, the one that must leave. Once in a clean-clone test
run a second SIGTERM's :class:`StopNow` was raised in a thread Ray Tune had just started (its
``Thread._bootstrap``), where it was printed and lost while the driver kept waiting; a handler
that finds itself elsewhere hands the signal to the main thread instead
(``_thread.interrupt_main``), which runs it again there.
"""

from __future__ import annotations

import _thread
import contextlib
import os
import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

from faerec.errors import FaerecError
from faerec.run_progress import log_line


class StudyInterrupted(FaerecError):
    """Ctrl-C or SIGTERM: the state is saved; running the study again resumes it."""

    exit_code = 3


class StopNow(KeyboardInterrupt):
    """A second Ctrl-C or SIGTERM: leave now (a KeyboardInterrupt, so no ``except Exception``
    on the way, Ray Tune's included, swallows it)."""


def _say(text: str) -> None:
    """One line on stderr (timestamped unless it is a terminal), written with a single system
    call: safe inside a signal handler, where the interrupted code may be half-way through a
    print of its own."""
    with contextlib.suppress(OSError):
        os.write(2, (log_line(text, os.isatty(2)) + "\n").encode())


class InterruptGuard:
    """Remembers the first SIGINT/SIGTERM and tells the user what it waits for; raises
    :class:`StopNow` on the second.

    ``pending`` says what a gentle stop waits for (e.g. "the current epoch of 2 trials"); the
    driver sets it to follow its stage. It runs inside the signal handler, so it must only read
    plain attributes (no locks, no I/O).
    """

    def __init__(self) -> None:
        self.interrupted = False
        self.pending: Callable[[], str | None] = lambda: None
        #: stop at once on the first signal (nothing in flight is worth waiting for)
        self.immediate = False
        self._previous: dict[int, Any] = {}
        self._active = False

    def __enter__(self) -> InterruptGuard:
        if threading.current_thread() is not threading.main_thread():
            return self
        self._active = True
        for signum in (signal.SIGINT, signal.SIGTERM):
            self._previous[signum] = signal.getsignal(signum)
            signal.signal(signum, self._on_signal)
        return self

    def reinstall(self) -> None:
        """Take SIGINT and SIGTERM back: ray.init() installs its own SIGTERM handlers (one that
        aborts the process) and ray.shutdown() leaves Python's default."""
        if self._active:
            signal.signal(signal.SIGINT, self._on_signal)
            signal.signal(signal.SIGTERM, self._on_signal)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if threading.get_ident() != threading.main_thread().ident:
            # an exception raised here would end only this thread: run again in the main one
            _thread.interrupt_main(signal.Signals(signum))
            return
        name = signal.Signals(signum).name
        if self.interrupted:
            _say(f"faerec-study: {name} again: stopping now")
            raise StopNow
        self.interrupted = True
        if self.immediate:
            _say(f"faerec-study: {name}: stopping now")
            raise StopNow
        _say(f"faerec-study: {name}: {self.first_message()}")

    def first_message(self) -> str:
        """What the first signal does, in one line."""
        waiting = self.pending()
        if not waiting:
            return "stopping"
        return (
            f"stopping after {waiting}; press Ctrl-C again (or send SIGTERM again) to stop now "
            "(the unfinished epochs are trained again on resume)"
        )

    def check(self) -> None:
        if self.interrupted:
            raise StudyInterrupted("interrupted")

    def __exit__(self, *exc: object) -> None:
        if not self._active:
            return
        for signum, handler in self._previous.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
        self._active = False
