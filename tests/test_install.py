"""The package works outside its clone: what the wheel holds, and where data and caches go.

The full install check (a wheel in a fresh virtual environment outside the clone, then
``--version``, ``validate`` and a one-epoch ``train``) is a CI step in ``.ci/run``; these tests
cover the parts that need no second environment.
"""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import faerec
from faerec.config import EmbeddingConfig
from faerec.data import location
from faerec.data.location import DATA_DIR_ENV, bundled_data_dir, find_clone, is_clone
from faerec.embeddings import CACHE_DIR_ENV, cache_folder, default_cache_dir
from faerec.errors import DataError

REPO = Path(__file__).resolve().parents[1]
#: Top-level entries of the clone that a build must never see as its own (build leftovers).
_NOT_SOURCES = {".git", ".venv", "build", "dist", "faerec_study.egg-info"}


@pytest.fixture(scope="module")
def wheel_names(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """File names inside a wheel built from this clone.

    Built in a scratch folder that links to every top-level entry of the clone (data/
    included, so a packaging rule that picked it up would show), without the clone's own
    build/ folder, whose stale copies of deleted modules setuptools would otherwise ship.
    """
    source = tmp_path_factory.mktemp("source")
    for entry in REPO.iterdir():
        if entry.name not in _NOT_SOURCES:
            (source / entry.name).symlink_to(entry, target_is_directory=entry.is_dir())
    out = tmp_path_factory.mktemp("wheel")
    completed = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(source), "--no-deps",
         "--no-build-isolation", "--no-index", "-q", "-w", str(out)],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr
    (wheel,) = out.glob("*.whl")
    with zipfile.ZipFile(wheel) as archive:
        return archive.namelist()


def test_wheel_holds_only_the_package_and_its_metadata(wheel_names: list[str]) -> None:
    dist_info = f"faerec_study-{faerec.__version__}.dist-info"
    assert {name.split("/")[0] for name in wheel_names} == {"faerec", dist_info}


def test_wheel_carries_no_bundled_data(wheel_names: list[str]) -> None:
    data_suffixes = (".npy", ".txt", ".inter", ".item", ".jsonl", ".csv", ".gz")
    package_files = [name for name in wheel_names if ".dist-info/" not in name]
    assert [name for name in package_files if name.endswith(data_suffixes)] == []


def _make_clone(root: Path) -> Path:
    (root / "data").mkdir(parents=True)
    (root / "pyproject.toml").write_text('[project]\nname = "faerec-study"\n', encoding="utf-8")
    return root


def test_a_folder_with_the_projects_pyproject_and_data_is_a_clone(tmp_path: Path) -> None:
    assert is_clone(_make_clone(tmp_path / "clone"))


def test_another_projects_folder_is_not_a_clone(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "other"\n', encoding="utf-8")
    assert not is_clone(tmp_path)


def test_an_installed_package_finds_the_clone_around_the_working_directory(
    tmp_path: Path,
) -> None:
    clone = _make_clone(tmp_path / "clone")
    (clone / "search_spaces").mkdir()
    site_packages = tmp_path / "venv" / "lib" / "site-packages"
    site_packages.mkdir(parents=True)
    assert find_clone(start=clone / "search_spaces", package_root=site_packages) == clone


def test_an_installed_package_outside_any_clone_finds_none(tmp_path: Path) -> None:
    assert find_clone(start=tmp_path, package_root=tmp_path) is None


def test_no_data_anywhere_is_one_line_naming_both_ways_to_give_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    monkeypatch.setattr(location, "PACKAGE_ROOT", tmp_path)  # as if installed from a wheel
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataError, match=f"--data-dir DIR or set {DATA_DIR_ENV}") as caught:
        bundled_data_dir()
    assert "\n" not in str(caught.value)


def test_environment_variable_beats_the_clone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path))
    assert bundled_data_dir() == tmp_path


def test_environment_variable_may_name_the_clone_instead_of_its_data_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clone = _make_clone(tmp_path / "clone")
    monkeypatch.setenv(DATA_DIR_ENV, str(clone))
    assert bundled_data_dir() == clone / "data"


def test_environment_variable_naming_no_folder_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path / "missing"))
    with pytest.raises(DataError, match="not a folder"):
        bundled_data_dir()


def test_embedding_cache_defaults_to_a_per_user_folder_outside_the_package(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(CACHE_DIR_ENV, raising=False)
    package_dir = Path(faerec.__file__).resolve().parent
    assert not default_cache_dir().is_relative_to(package_dir.parent)


def test_embedding_cache_environment_variable_is_used_when_the_key_is_empty(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(CACHE_DIR_ENV, str(tmp_path))
    assert cache_folder(EmbeddingConfig()) == tmp_path


def test_embedding_cache_key_beats_the_environment_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(CACHE_DIR_ENV, str(tmp_path / "env"))
    config = EmbeddingConfig(cache_dir=str(tmp_path / "key"))
    assert cache_folder(config) == tmp_path / "key"
