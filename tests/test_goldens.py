"""The golden files agree with an independent reading of docs/method.md.

``tests/golden/make_goldens.py`` recomputes every golden output from its inputs with plain
NumPy, without faerec; the other tests compare this project's code with the same files.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

GOLDEN = Path(__file__).resolve().parent / "golden"


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_goldens", GOLDEN / "make_goldens.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def checks() -> dict[str, tuple[bool, str]]:
    return {file: (ok, detail) for file, ok, detail in _generator().check_all()}


@pytest.mark.parametrize(
    "name",
    [
        "curriculum.json",
        "metrics.json",
        "infonce.npz",
        "barlow_twins.npz",
        "beauty_head_tail.json",
        "beauty_split_first300.npz",
    ],
)
def test_golden_file_matches_the_documented_formula(
    name: str, checks: dict[str, tuple[bool, str]]
) -> None:
    ok, detail = checks[name]
    assert ok, detail


def test_regenerated_data_goldens_equal_the_committed_ones(tmp_path: Path) -> None:
    _generator().write_all(tmp_path)
    for name in ("curriculum.json", "metrics.json", "beauty_head_tail.json"):
        assert json.loads((tmp_path / name).read_text()) == json.loads((GOLDEN / name).read_text())
    made = np.load(tmp_path / "beauty_split_first300.npz")
    committed = np.load(GOLDEN / "beauty_split_first300.npz")
    assert sorted(made.files) == sorted(committed.files)
    assert all(np.array_equal(made[key], committed[key]) for key in committed.files)
