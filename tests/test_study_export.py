"""`faerec-study export`: a study's results without its resume state, and what it refuses."""

from __future__ import annotations

from pathlib import Path

import pytest
from report_fixtures import make_study_store

from faerec.cli import main


@pytest.fixture
def studies(tmp_path: Path) -> Path:
    make_study_store(tmp_path / "studies", "demo", methods=("backbone", "faerec"))
    return tmp_path / "studies"


def export(studies: Path, destination: Path, *extra: str) -> int:
    return main(["export", "demo", str(destination), "--studies-dir", str(studies), *extra])


def files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_checkpoints_lock_and_temporaries_stay_behind(studies: Path, tmp_path: Path) -> None:
    demo = studies / "demo"
    finished = files(demo)
    (demo / "driver.lock").write_text("")
    checkpoint = demo / "cells" / "ml-100k__sasrec__faerec" / "final" / "seed_2026.ckpt"
    checkpoint.mkdir()
    (checkpoint / "checkpoint.pt").write_bytes(b"weights")
    (demo / "cells" / "ml-100k__sasrec__faerec" / "tune").mkdir()
    (demo / ".results.csv.x1y2.tmp").write_text("half")
    assert export(studies, tmp_path / "out") == 0
    assert files(tmp_path / "out" / "demo") == finished


def test_the_report_reads_an_export_as_it_reads_the_study(studies: Path, tmp_path: Path) -> None:
    assert export(studies, tmp_path / "out") == 0
    for where, folder in (("a", studies), ("b", tmp_path / "out")):
        args = ["report", "demo", "--studies-dir", str(folder), "--format", "csv"]
        assert main([*args, "--output", str(tmp_path / where)]) == 0
    assert files(tmp_path / "a") == files(tmp_path / "b")


def test_an_earlier_export_is_replaced_only_when_asked(
    studies: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert export(studies, tmp_path / "out") == 0
    later = studies / "demo" / "cells" / "ml-100k__sasrec__faerec" / "final" / "seed_2030.json"
    later.write_bytes(next(later.parent.glob("seed_*.json")).read_bytes())
    capsys.readouterr()
    assert export(studies, tmp_path / "out") == 2
    assert "already exists; pass --replace" in capsys.readouterr().err
    assert files(tmp_path / "out" / "demo") != files(studies / "demo")
    assert export(studies, tmp_path / "out", "--replace") == 0
    assert files(tmp_path / "out" / "demo") == files(studies / "demo")
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["demo"]


def test_a_folder_that_is_not_an_export_is_never_replaced(
    studies: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "out" / "demo").mkdir(parents=True)
    (tmp_path / "out" / "demo" / "notes.txt").write_text("mine")
    assert export(studies, tmp_path / "out", "--replace") == 2
    assert "holds no study" in capsys.readouterr().err
    assert (tmp_path / "out" / "demo" / "notes.txt").read_text() == "mine"


def test_an_export_into_its_own_study_is_refused(
    studies: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert export(studies, studies / "demo" / "cells", "--replace") == 2
    assert "must go outside the study" in capsys.readouterr().err
    assert export(studies, studies, "--replace") == 2


def test_a_missing_study_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert export(tmp_path, tmp_path / "out") == 2
    assert "no study named 'demo'" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
