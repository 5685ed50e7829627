"""One driver per study: an OS-level lock on ``<study>/driver.lock``.

A study is hours of unattended work; two drivers on one folder would fail each other's running
trials and interleave the same Optuna journal. ``run`` and ``resume`` therefore hold
:class:`StudyLock` for as long as they touch the folder. The lock is ``flock`` on the lock file:
the kernel drops it when the holder exits in any way (SIGKILL and power loss included), so a
crashed driver never blocks the next one. The file's content (pid, host, start time, command)
only names the holder for messages; whether anyone holds the lock is the kernel's answer.

The lock file is emptied, never deleted, on release: deleting it would let a waiting driver lock
the old inode while a third one creates and locks a new file.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from types import TracebackType
from typing import Any

from faerec.errors import FaerecError
from faerec.run_progress import say

#: the lock file's name inside the study folder (docs/store-layout.md)
LOCK_FILE = "driver.lock"
#: a new holder writes its details right after locking; a reader that finds the lock taken but
#: no (live) holder named waits this long for them before reporting what it has
_STARTING_GRACE_S = 2.0

#: folders this process holds, so that a second StudyLock in the same process is refused too
_HELD: set[Path] = set()


class StudyLocked(FaerecError):
    """Another driver runs this study (exit code 2)."""

    exit_code = 2


@dataclass(frozen=True)
class LockInfo:
    """Who holds (or last held) a study's lock."""

    pid: int
    host: str
    since: str
    command: str

    def describe(self) -> str:
        """``pid 123 on host-a since 2026-12-03T10:00:00+00:00 (faerec-study run x.yaml)``"""
        if self.pid == 0:
            return "a driver that has not written its details yet"
        command = f" ({self.command})" if self.command else ""
        return f"pid {self.pid} on {self.host} since {self.since}{command}"

    def process_alive(self) -> bool | None:
        """Whether the pid runs on this host; None when the holder is on another host."""
        if self.host != socket.gethostname():
            return None
        return _pid_alive(self.pid)


class StudyLock:
    """``with StudyLock(folder, command): ...``: be the only driver of the study in ``folder``.

    Entering creates the folder if needed, locks ``folder/driver.lock`` and writes this process's
    details into it; a lock left by a driver that is gone is taken over with a one-line message
    on stderr. :class:`StudyLocked` names the live holder otherwise.
    """

    def __init__(self, folder: str | Path, command: str = "") -> None:
        self.folder = Path(folder).resolve()
        self.path = self.folder / LOCK_FILE
        self.command = command or " ".join(sys.argv)
        self.info: LockInfo | None = None
        self._fd: int | None = None

    def __enter__(self) -> StudyLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.release()

    def acquire(self) -> None:
        if self.folder in _HELD:
            raise StudyLocked(f"{self.folder}: this process already drives the study")
        self.folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            self._lock_or_raise(fd)
            previous = _read_info(fd)
            self.info = LockInfo(
                pid=os.getpid(),
                host=socket.gethostname(),
                since=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                command=self.command,
            )
            _write_info(fd, self.info)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        _HELD.add(self.folder)
        if previous is not None:
            say(
                f"faerec-study: taking over the lock of a driver that is gone "
                f"({previous.describe()})"
            )

    def _lock_or_raise(self, fd: int) -> None:
        """Lock ``fd``, retrying briefly while the file names no live holder: the lock may be
        a driver that has not written its details yet, or a ``status`` probing it."""
        deadline = time.monotonic() + _STARTING_GRACE_S
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                holder = _read_info(fd)
                alive = None if holder is None else holder.process_alive()
                if (holder is not None and alive is not False) or time.monotonic() >= deadline:
                    break
                time.sleep(0.05)
        if holder is None:
            who = "a driver that has not named itself"
        elif alive is False:
            who = (
                f"{holder.describe()}, which has ended, but a process it started still holds "
                f"{self.path}"
            )
        else:
            who = holder.describe()
        raise StudyLocked(
            f"{self.folder}: another driver runs this study: {who}; wait for it to end or stop it"
        )

    def release(self) -> None:
        """Empty the file and unlock it (also on exceptions: the caller's ``with`` ends here)."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        _HELD.discard(self.folder)
        try:
            os.ftruncate(fd, 0)
        except OSError:
            pass  # the lock still goes with the close below; the details just stay behind
        finally:
            os.close(fd)

    @staticmethod
    def holder(folder: str | Path) -> LockInfo | None:
        """The live driver of the study in ``folder``, or None when nobody holds its lock."""
        folder = Path(folder).resolve()
        if folder in _HELD:
            return _read_path(folder / LOCK_FILE)
        try:
            fd = os.open(folder / LOCK_FILE, os.O_RDONLY)
        except OSError:
            return None  # no lock file: no driver has ever run here (or it is unreadable)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return _wait_for_details(fd) or LockInfo(pid=0, host="?", since="?", command="")
            fcntl.flock(fd, fcntl.LOCK_UN)
            return None
        finally:
            os.close(fd)

    @staticmethod
    def held_by_another_process(folder: str | Path) -> bool:
        """Whether a driver other than this process holds the study's lock."""
        folder = Path(folder).resolve()
        return folder not in _HELD and StudyLock.holder(folder) is not None

    @staticmethod
    def last_holder(folder: str | Path) -> LockInfo | None:
        """The details left in the lock file (a driver that stopped without releasing it)."""
        return _read_path(Path(folder) / LOCK_FILE)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _read_info(fd: int) -> LockInfo | None:
    try:
        size = os.fstat(fd).st_size
        data = os.pread(fd, max(size, 1), 0)
        payload: Any = json.loads(data.decode("utf-8"))
        return LockInfo(
            pid=int(payload["pid"]),
            host=str(payload["host"]),
            since=str(payload["since"]),
            command=str(payload.get("command", "")),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None  # empty (released) or unreadable: nobody to name


def _read_path(path: Path) -> LockInfo | None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        return _read_info(fd)
    finally:
        os.close(fd)


def _write_info(fd: int, info: LockInfo) -> None:
    data = (json.dumps(asdict(info), sort_keys=True) + "\n").encode("utf-8")
    os.ftruncate(fd, 0)
    os.pwrite(fd, data, 0)
    os.fsync(fd)


def _wait_for_details(fd: int) -> LockInfo | None:
    """The holder's details; a driver that has just locked writes them within milliseconds."""
    deadline = time.monotonic() + _STARTING_GRACE_S
    while True:
        info = _read_info(fd)
        if info is not None and info.process_alive() is not False:
            return info
        if time.monotonic() >= deadline:
            return info
        time.sleep(0.05)
