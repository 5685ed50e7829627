"""The driver sessions of a study: when each driver ran, so a study stopped and resumed over
days still knows how long it actually ran.

``study.json``'s ``created`` to ``updated`` spans every pause between a stop and its resume;
a study resumed across sessions would look days long. So each driver appends a session to
``sessions.json`` (layout: :data:`faerec.study.store.LAYOUT`) when it starts, renews its
``last_seen`` every :data:`HEARTBEAT_S` seconds from a daemon thread, and writes ``ended`` and
``outcome`` when it stops. A driver killed with SIGKILL (or a power cut) never writes
``ended``: its session then counts up to its last ``last_seen``, at most a heartbeat short.

One writer: only the driver holding the study's lock (:class:`faerec.study.lock.StudyLock`)
writes the file, each time whole and atomically. A file that cannot be read is set aside as
``sessions.json.damaged-<UTC time>`` and a new list starts (the study's results never depend on
it). No Ray, torch or Optuna here.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from faerec.atomic import write_json_atomic

#: seconds between two renewals of a running driver's ``last_seen``
HEARTBEAT_S = 60.0
#: a session's ``outcome`` once its driver stopped on its own
OUTCOMES = ("finished", "failed", "interrupted", "error")


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def read_sessions(path: Path) -> list[dict[str, Any]]:
    """The sessions recorded in ``path``; none when it is missing. Raises ValueError when it
    exists but holds no list of sessions."""
    if not path.exists():
        return []
    payload = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(payload, list) or not all(isinstance(s, dict) for s in payload):
        raise ValueError(f"{path}: expected a JSON list of sessions")
    return payload


def session_seconds(session: dict[str, Any]) -> float | None:
    """How long a session's driver ran: ``started`` to ``ended``, or to ``last_seen`` for a
    driver that was killed (None: unreadable times)."""
    try:
        started = datetime.fromisoformat(str(session["started"]))
        end = session.get("ended") or session["last_seen"]
        return max(0.0, (datetime.fromisoformat(str(end)) - started).total_seconds())
    except (KeyError, ValueError, TypeError):
        return None


def last_seen(sessions: list[dict[str, Any]]) -> datetime | None:
    """The latest end or sign of life of any session (None: no readable time). A running
    driver writes study.json's ``updated`` only when it stops, so a snapshot of a running
    study ends here, not at ``updated``."""
    times = []
    for session in sessions:
        with contextlib.suppress(ValueError, TypeError):
            end = session.get("ended") or session.get("last_seen")
            if end:
                times.append(datetime.fromisoformat(str(end)))
    return max(times, default=None)


def active_seconds(sessions: list[dict[str, Any]]) -> float | None:
    """Seconds the study's drivers ran, pauses excluded (None: no readable session)."""
    spans = [s for s in (session_seconds(x) for x in sessions) if s is not None]
    return sum(spans) if spans else None


class DriverSession:
    """This driver's entry in ``sessions.json``: :meth:`start`, then :meth:`close`."""

    def __init__(self, path: Path, command: str, heartbeat_s: float = HEARTBEAT_S) -> None:
        self.path = path
        self.heartbeat_s = heartbeat_s
        self.entry: dict[str, Any] = {
            "started": "",
            "last_seen": "",
            "ended": None,
            "outcome": None,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "command": command,
        }
        self._sessions: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> DriverSession:
        """Append this session and renew it every ``heartbeat_s`` seconds until closed."""
        try:
            self._sessions = read_sessions(self.path)
        except (OSError, ValueError):  # damaged: keep it for a person, start a new list
            with contextlib.suppress(OSError):
                stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
                self.path.replace(self.path.with_name(f"{self.path.name}.damaged-{stamp}"))
            self._sessions = []
        self.entry["started"] = self.entry["last_seen"] = _now()
        self._sessions.append(self.entry)
        self._write()
        self._thread = threading.Thread(target=self._beat, name="faerec-session", daemon=True)
        self._thread.start()
        return self

    def close(self, outcome: str) -> None:
        """The driver stops: ``outcome`` is one of :data:`OUTCOMES`."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
        with self._lock:
            self.entry["last_seen"] = self.entry["ended"] = _now()
            self.entry["outcome"] = outcome
        self._write()

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            with self._lock:
                self.entry["last_seen"] = _now()
            self._write()

    def _write(self) -> None:
        with self._lock, contextlib.suppress(OSError, ValueError):  # a full disk: runs go on
            write_json_atomic(self.path, self._sessions, sort_keys=False)
