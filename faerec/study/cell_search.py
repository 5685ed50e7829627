"""The searches of a study's cells, run at the same time: one Tune experiment per cell, each
driven from its own thread, all drawing on the study's trial slots (:mod:`faerec.study.shared`).

Why threads and one experiment per cell, not one experiment over every cell: a cell's scheduler
(ASHA, the median rule) must compare a trial only with trials of its own cell, and each cell
keeps its own ``tune/`` folder, experiments index and resumable checkpoints. Tune supports a
``fit()`` outside the main thread (it then installs no signal handlers); the driver's main
thread keeps the signals and waits for the cells:

* a first Ctrl-C/SIGTERM sets the guard's flag, which every experiment's stopper sees, so each
  cell stops after the epochs in flight, as one cell did before;
* a second one raises :class:`~faerec.study.signals.StopNow` in the main thread, which raises it
  in each cell's thread that is still inside ``fit()`` (:func:`_raise_in`), so the cells leave
  Tune at once, exactly where a single-threaded driver would;
* an error in one cell (a round that added no trial, a bug) stops the other cells gently and is
  raised again in the main thread.

Each cell's Optuna study, journal, files and monitor are its own; only the progress view (which
has a lock) and the slots are shared.
"""

from __future__ import annotations

import ctypes
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from faerec.errors import FaerecError
from faerec.study.bookkeeping import CellMonitor, ExperimentIndex
from faerec.study.signals import StopNow
from faerec.study.spec import Cell
from faerec.study.store import CellStore, count_trials

#: how long the main thread waits for the cells' threads to leave Tune after a second signal
STOP_NOW_WAIT_S = 30.0
#: how often the main thread wakes up while the cells search (signals are handled meanwhile)
JOIN_POLL_S = 0.5


@dataclass
class CellSearch:
    """One cell's search rounds, run in a thread until its study holds ``target`` done trials."""

    cell: Cell
    cell_store: CellStore
    study: Any
    study_name: str
    storage: Any
    target: int
    monitor: CellMonitor
    #: builds the Tune experiment of a round: (cell, study name, storage, experiment entry)
    new_tuner: Callable[[Cell, str, Any, dict[str, Any]], Any]
    #: whether the search must stop (a signal, or another cell's error)
    stopping: Callable[[], bool]
    #: spares trials of other live drivers when failing RUNNING trials (faerec.study.shared)
    keep: Callable[[Any], bool] | None = None
    error: BaseException | None = None
    in_fit: bool = False
    thread: threading.Thread | None = field(default=None, repr=False)
    #: set when the thread's body has ended (waited on instead of ``Thread.join``, see below)
    ended: threading.Event = field(default_factory=threading.Event, repr=False)

    def done(self) -> int:
        return count_trials(self.study.get_trials(deepcopy=False)).done

    def complete(self) -> bool:
        return self.done() >= self.target

    def run(self) -> None:
        """The thread's body: rounds until the target; any exception is kept for the driver."""
        from faerec.study.retry import retry_interrupted_trials
        from faerec.study.tune_setup import remove_checkpoints

        index = ExperimentIndex(self.cell_store.tune_dir)
        index.close_interrupted()
        try:
            while not self.stopping():
                retry_interrupted_trials(self.study, self.keep)  # what a stopped driver left
                done = self.done()
                if done >= self.target:
                    break
                experiment = index.new(self.target - done)
                tuner = self.new_tuner(self.cell, self.study_name, self.storage, experiment)
                self.monitor.refresh(write_files=False)
                self.in_fit = True
                try:
                    tuner.fit()
                finally:
                    self.in_fit = False
                if self.stopping():
                    index.mark(experiment, "interrupted")
                    break
                index.mark(experiment, "finished")
                if self.done() == done:
                    raise FaerecError(
                        f"{self.cell.cell_id}: a search round finished without adding a trial; "
                        f"see {self.cell_store.tune_dir / experiment['name']}"
                    )
            if self.complete():
                remove_checkpoints(self.cell_store.tune_dir)
        except BaseException as error:  # noqa: BLE001 - handed to the main thread
            self.error = error
        finally:
            if self.stopping() or self.error is not None:
                # gently or not, no trial of this cell runs in this driver any more
                retry_interrupted_trials(self.study, self.keep)
                index.close_interrupted()
            self.monitor.refresh(write_files=True)


def run_concurrently(
    searches: list[CellSearch],
    abort: Callable[[], None],
    tick: Callable[[], None] = lambda: None,
) -> None:
    """Run every search in its own thread and wait for all; ``abort`` tells the others to stop
    when one fails. ``tick`` runs in the main thread about every :data:`JOIN_POLL_S` seconds
    meanwhile (the final runs of cells whose search has ended); if it raises, the searches stop
    gently and its error is raised once they have. Raises the first error of a cell (after
    every thread has ended), and :class:`StopNow` when the driver gets it while waiting."""
    for search in searches:
        search.thread = threading.Thread(
            target=_runner(search, abort), name=f"search {search.cell.cell_id}", daemon=True
        )
        search.thread.start()
    failure: Exception | None = None
    # Waiting on an Event, not Thread.join: a signal's exception raised inside Python 3.11's
    # join() releases the thread's state lock, and the thread then looks ended while it runs.
    try:
        for search in searches:
            while not search.ended.wait(JOIN_POLL_S):
                if failure is None:
                    try:
                        tick()
                    except Exception as error:  # noqa: BLE001 - raised once the cells stopped
                        failure = error
                        abort()
    except KeyboardInterrupt:  # StopNow, or Ray's KeyboardInterrupt in its place (a tick's wait)
        for search in searches:
            if search.thread is not None and not search.ended.is_set() and search.in_fit:
                _raise_in(search.thread, StopNow)
        deadline = time.monotonic() + STOP_NOW_WAIT_S
        for search in searches:
            search.ended.wait(max(0.0, deadline - time.monotonic()))
        raise
    if failure is not None:
        raise failure
    errors = [s.error for s in searches if s.error is not None]
    real = [e for e in errors if not isinstance(e, StopNow)]
    if real:
        raise real[0]
    if errors:
        raise errors[0]


def _runner(search: CellSearch, abort: Callable[[], None]) -> Callable[[], None]:
    def body() -> None:
        try:
            search.run()
            if search.error is not None and not isinstance(search.error, StopNow):
                abort()
        finally:
            search.ended.set()

    return body


def _raise_in(thread: threading.Thread, exception: type[BaseException]) -> None:
    """Raise ``exception`` in ``thread`` at its next Python instruction (CPython's
    ``PyThreadState_SetAsyncExc``): the way a signal's exception reaches Tune's loop when
    ``fit()`` runs outside the main thread."""
    if thread.ident is None:
        return
    ctypes.pythonapi.PyThreadState_SetAsyncExc(
        ctypes.c_ulong(thread.ident), ctypes.py_object(exception)
    )
