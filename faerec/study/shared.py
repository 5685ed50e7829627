"""What the searches of a study share: the driver's trial slots, and a shared database's trials.

A driver searches all its cells at once (one Tune experiment per cell, each in its own thread),
so the study's concurrency (``resources.max_concurrent``) is one pool of :class:`TrialSlots`
that every cell's searcher draws from: a slot is taken when a trial is created and given back
when Tune reports its end (docs/scaling.md §Cells run concurrently).

With ``storage:`` naming a server database, several drivers may add trials to one Optuna study.
Three rules keep each trial counted once and the target exact:

* a driver creates a trial only while the study holds fewer than its target of done, running
  and waiting trials, and checks and creates under a database lock (:func:`claim`), so two
  drivers cannot both take the last place;
* every trial records the driver that runs it (user attribute ``driver``: host and studies
  folder, :func:`driver_mark`); a driver retries as interrupted only RUNNING trials of its own
  or of a driver that is gone (:func:`running_elsewhere`), never another live driver's;
* a driver whose remaining trials run elsewhere waits for them instead of adding more.

No Ray here; SQLAlchemy and Optuna only inside functions.
"""

from __future__ import annotations

import hashlib
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from faerec.study.lock import StudyLock
from faerec.study.retry import DRIVER_ATTR


class TrialSlots:
    """The study's concurrency, shared by the cells searched at the same time (thread-safe)."""

    def __init__(self, total: int) -> None:
        self.total = max(1, total)
        self._held: dict[str, set[str]] = {}
        self._lock = threading.Lock()

    def take(self, cell_id: str, trial_id: str, spare: int = 0) -> bool:
        """A slot for ``trial_id`` of ``cell_id``; False when all are in use, or when taking one
        would leave fewer than ``spare`` free (kept for others that come first)."""
        with self._lock:
            held = self._held.setdefault(cell_id, set())
            if trial_id in held:
                return True
            if self.in_use() + spare >= self.total:
                return False
            held.add(trial_id)
            return True

    def give_back(self, cell_id: str, trial_id: str) -> None:
        with self._lock:
            self._held.get(cell_id, set()).discard(trial_id)

    def release_cell(self, cell_id: str) -> None:
        """Every slot of a cell whose Tune experiment ended (trials Tune never ran included)."""
        with self._lock:
            self._held.pop(cell_id, None)

    def in_use(self) -> int:
        return sum(len(held) for held in self._held.values())

    def held(self, cell_id: str) -> int:
        """The slots ``cell_id`` holds now (its trials running)."""
        with self._lock:
            return len(self._held.get(cell_id, ()))


def driver_mark(study_root: str | Path) -> str:
    """``<host>:<study folder>``: the driver of a study folder (the folder's lock makes it one)."""
    return f"{socket.gethostname()}:{Path(study_root).resolve()}"


def running_elsewhere(trial: Any, mine: str) -> bool:
    """Whether a RUNNING ``trial`` (a FrozenTrial) belongs to another driver that still runs.

    A trial without a mark (a journal study, older trials) or with ours is this driver's. A
    trial of a study folder on this host belongs to a live driver while that folder's lock is
    held; a trial of another host is taken to be live (its driver resumes it).
    """
    mark = trial.user_attrs.get(DRIVER_ATTR)
    if not isinstance(mark, str) or not mark or mark == mine:
        return False
    host, _, folder = mark.partition(":")
    if host != socket.gethostname():
        return True
    return StudyLock.holder(folder) is not None


def _lock_key(name: str) -> int:
    """A signed 64-bit key for PostgreSQL's advisory locks."""
    digest = hashlib.sha256(f"faerec-study:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


@contextmanager
def claim(storage: Any, study_name: str) -> Iterator[None]:
    """Hold the study's lock in a shared database while a trial is counted and created.

    PostgreSQL (advisory lock) and MySQL (``GET_LOCK``) serialise every driver of the study; a
    journal or SQLite study has one driver (docs/scaling.md), which needs no lock.
    """
    storage = getattr(storage, "_backend", storage)  # Optuna wraps an RDBStorage in a cache
    with _database_lock(getattr(storage, "engine", None), study_name):
        yield


def open_database(url: str) -> Any:
    """Optuna's storage in the database at ``url``, its tables created under the database
    lock: two drivers starting together would both create them, and one would fail."""
    import optuna
    import sqlalchemy

    try:
        engine = sqlalchemy.create_engine(url)
    except ImportError:  # no client library: Optuna's own message says which
        return optuna.storages.RDBStorage(url)
    try:
        with _database_lock(engine, "optuna tables"):
            return optuna.storages.RDBStorage(url)
    finally:
        engine.dispose()


@contextmanager
def _database_lock(engine: Any, name: str) -> Iterator[None]:
    """A lock named ``name`` held through ``engine``'s database (none for other databases)."""
    dialect = getattr(getattr(engine, "dialect", None), "name", "")
    if engine is None or dialect not in ("postgresql", "mysql"):
        yield
        return
    from sqlalchemy import text

    with engine.connect() as connection:
        if dialect == "postgresql":
            lock, unlock = "SELECT pg_advisory_lock(:key)", "SELECT pg_advisory_unlock(:key)"
            key: dict[str, Any] = {"key": _lock_key(name)}
        else:
            lock, unlock = "SELECT GET_LOCK(:key, -1)", "SELECT RELEASE_LOCK(:key)"
            key = {"key": f"faerec-{hashlib.sha256(name.encode()).hexdigest()[:48]}"}
        connection.execute(text(lock), key)
        try:
            yield
        finally:
            connection.execute(text(unlock), key)
