"""Where the bundled datasets are: the one place that decides, so every command agrees.

The data is research-only and never ships in the wheel (README.md, "Data and terms"), so an
installed package must be told where a clone's ``data/`` folder is. In order:

1. ``--data-dir DIR`` on the command line (the CLI exports it as ``FAEREC_DATA_DIR``, so Ray
   workers started by the same command see it too);
2. the environment variable ``FAEREC_DATA_DIR`` (the data/ folder, or the clone holding it);
3. the ``data/`` folder of a faerec-study clone: the one the package itself is imported from
   (an editable install), else the current directory or the nearest parent that is a clone.

A clone is recognised by its ``pyproject.toml`` naming the project and a ``data/`` folder
beside it, never by a fixed number of parent folders, which would point into site-packages
for an installed wheel.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from faerec.errors import DataError

DATA_DIR_ENV = "FAEREC_DATA_DIR"
PROJECT_NAME = "faerec-study"
#: The folder holding the imported ``faerec`` package: a clone for an editable install,
#: site-packages for a wheel.
PACKAGE_ROOT = Path(__file__).resolve().parents[2]

_NAME_LINE = re.compile(r'^name\s*=\s*["\']' + re.escape(PROJECT_NAME) + r'["\']\s*$', re.M)


def is_clone(folder: Path) -> bool:
    """Whether ``folder`` is the root of a faerec-study clone that carries its data/."""
    pyproject = folder / "pyproject.toml"
    if not (pyproject.is_file() and (folder / "data").is_dir()):
        return False
    try:
        text = pyproject.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return False
    return _NAME_LINE.search(text) is not None


def find_clone(start: Path | None = None, package_root: Path | None = None) -> Path | None:
    """The clone the package runs from, else the clone around ``start`` (default: cwd)."""
    package_root = PACKAGE_ROOT if package_root is None else package_root
    if is_clone(package_root):
        return package_root
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if is_clone(folder):
            return folder
    return None


def bundled_data_dir() -> Path:
    """The folder holding beauty/, yelp/ and ml-100k/; raises a one-line DataError if unknown."""
    override = os.environ.get(DATA_DIR_ENV)
    if override:
        folder = Path(override).expanduser()
        if not folder.is_dir():
            raise DataError(f"{DATA_DIR_ENV}={override}: not a folder")
        return folder / "data" if is_clone(folder) else folder
    clone = find_clone()
    if clone is None:
        raise DataError(
            f"no data folder: pass --data-dir DIR or set {DATA_DIR_ENV} to the data/ folder of "
            f"a {PROJECT_NAME} clone (the one holding beauty/, yelp/ and ml-100k/)"
        )
    return clone / "data"
