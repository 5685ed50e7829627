"""sessions.json: each driver's session, so a study resumed over days knows how long it ran."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from faerec.study.sessions import DriverSession, active_seconds, read_sessions


def test_a_starting_driver_appends_a_running_session(tmp_path: Path) -> None:
    path = tmp_path / "sessions.json"
    session = DriverSession(path, "faerec-study run s.yaml").start()
    try:
        (entry,) = read_sessions(path)
        assert entry["started"] == entry["last_seen"] and entry["ended"] is None
        assert entry["outcome"] is None and entry["command"] == "faerec-study run s.yaml"
    finally:
        session.close("interrupted")


def test_a_stopping_driver_writes_its_end_and_outcome(tmp_path: Path) -> None:
    path = tmp_path / "sessions.json"
    DriverSession(path, "run").start().close("interrupted")
    (entry,) = read_sessions(path)
    assert entry["outcome"] == "interrupted" and entry["ended"] >= entry["started"]


def test_a_resumed_study_keeps_the_earlier_sessions(tmp_path: Path) -> None:
    path = tmp_path / "sessions.json"
    DriverSession(path, "run").start().close("interrupted")
    DriverSession(path, "resume").start().close("finished")
    assert [s["command"] for s in read_sessions(path)] == ["run", "resume"]


def test_a_running_driver_renews_last_seen(tmp_path: Path) -> None:
    path = tmp_path / "sessions.json"
    session = DriverSession(path, "run", heartbeat_s=0.05).start()
    try:
        deadline = time.monotonic() + 5.0
        entry = read_sessions(path)[0]
        while entry["last_seen"] == entry["started"] and time.monotonic() < deadline:
            time.sleep(0.1)  # times are written to the second
            entry = read_sessions(path)[0]
        assert entry["last_seen"] > entry["started"] and entry["ended"] is None
    finally:
        session.close("finished")


def test_a_damaged_file_is_set_aside_and_a_new_list_starts(tmp_path: Path) -> None:
    path = tmp_path / "sessions.json"
    path.write_text('[{"started": "2026-')
    DriverSession(path, "run").start().close("finished")
    assert len(read_sessions(path)) == 1
    (aside,) = tmp_path.glob("sessions.json.damaged-*")
    assert aside.read_text() == '[{"started": "2026-'


def test_running_time_sums_sessions_and_a_killed_one_counts_to_its_last_sign_of_life() -> None:
    sessions: list[dict[str, Any]] = [
        {
            "started": "2026-12-01T10:00:00+00:00",
            "last_seen": "2026-12-01T11:00:00+00:00",
            "ended": "2026-12-01T11:00:00+00:00",
        },
        {
            "started": "2026-12-02T10:00:00+00:00",
            "last_seen": "2026-12-02T10:30:00+00:00",
            "ended": None,
        },  # SIGKILL: no end written
    ]
    assert active_seconds(sessions) == 5400.0  # 1 h + 30 min, the day between excluded


def test_no_readable_session_gives_no_running_time() -> None:
    sessions: list[dict[str, Any]] = [{"started": "yesterday"}]
    assert active_seconds(sessions) is None


def test_a_file_without_a_list_of_sessions_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "sessions.json"
    path.write_text(json.dumps({"started": 1}))
    with pytest.raises(ValueError, match="expected a JSON list of sessions"):
        read_sessions(path)
