"""Strict parsing shared by the dataset loaders, the raw-dump preprocessing and matrix files.

Python's own parsers are lenient in ways that silently change data or crash on it: ``int()``
accepts ``1_0`` (read as 10), ``+5``, and non-ASCII digits such as ``١٢``; ``float()`` accepts
``nan`` and ``inf``; ``json.loads`` accepts ``NaN`` and repeated keys and raises RecursionError
or a bare ValueError on deep nesting or 5000-digit numbers; ``str.splitlines`` cuts lines at
characters that are not line breaks in a file (so errors would name the wrong line). These
helpers accept only what the formats in docs/data-format.md describe and turn everything else
into one :class:`DataError` naming the file and the 1-based physical line.
"""

from __future__ import annotations

import json
import math
import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from faerec.errors import DataError

#: A decimal number written plainly in ASCII: no ``_``, no ``nan``/``inf``, no other digits.
_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")

_BOM = "\ufeff"
_GZIP_MAGIC = b"\x1f\x8b"
#: Longest repr of a bad value in a message (a 1 MB token must not become a 1 MB line).
_SHOW_LIMIT = 60


def show(value: Any) -> str:
    """``repr(value)``, cut to a readable length (messages stay one short line)."""
    text = repr(value)
    return text if len(text) <= _SHOW_LIMIT else text[: _SHOW_LIMIT - 5] + "...'"


def parse_number(text: str) -> float | None:
    """The finite number ``text`` spells in plain ASCII decimal, else None."""
    if not _NUMBER.fullmatch(text):
        return None
    value = float(text)
    return value if math.isfinite(value) else None


def number_value(value: Any) -> float | None:
    """A finite number from a JSON/Python value: int or float (not bool), or a plain string."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        try:
            number = float(value)
        except OverflowError:  # an int too large for a float
            return None
        return number if math.isfinite(number) else None
    if isinstance(value, str):
        return parse_number(value.strip())
    return None


# --------------------------------------------------------------------------- text and lines


def decode_line(raw: bytes, path: Path, line_number: int) -> str:
    """One physical line as text (without its ``\\n`` or the ``\\r`` of a CRLF ending)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        hint = ""
        if line_number == 1 and raw.startswith(_GZIP_MAGIC):
            hint = " (this looks gzip-compressed; name it *.gz)"
        elif raw.startswith((b"\xff\xfe", b"\xfe\xff")):
            hint = " (this looks UTF-16; save it as UTF-8)"
        raise DataError(
            f"not valid UTF-8 text (byte {raw[error.start]:#04x} at column {error.start + 1})"
            + hint,
            path=path,
            line=line_number,
        ) from None
    if line_number == 1 and text.startswith(_BOM):
        raise DataError(
            "the file starts with a byte-order mark (BOM); save it as UTF-8 without BOM",
            path=path,
            line=1,
        )
    if text.endswith("\n"):
        text = text[:-1]
    if text.endswith("\r"):
        text = text[:-1]
    return text


def read_lines(path: Path) -> list[str]:
    """The physical lines of a UTF-8 text file, split at ``\\n`` only (CRLF is fine).

    Missing, unreadable or undecodable files become a DataError naming the file (and line).
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DataError("file not found", path=path) from None
    except IsADirectoryError:
        raise DataError("expected a file, got a folder", path=path) from None
    except OSError as error:
        raise DataError(f"cannot read ({error.strerror or error})", path=path) from None
    if not data:
        return []
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:  # decode line by line to name the bad byte's line
        for number, chunk in enumerate(data.split(b"\n"), start=1):
            decode_line(chunk, path, number)  # raises on the line holding the bad byte
        line = data.count(b"\n", 0, error.start) + 1  # (a bad byte is always inside one line)
        raise DataError("not valid UTF-8 text", path=path, line=line) from None
    if text.startswith(_BOM):
        decode_line(data.split(b"\n", 1)[0], path, 1)  # refuses it with the one message
    lines = text.replace("\r\n", "\n").split("\n")
    if lines[-1].endswith("\r"):
        lines[-1] = lines[-1][:-1]  # a CRLF file whose last line lost its LF
    if lines[-1] == "":
        lines.pop()  # the final line break ends the last line; it does not start a new one
    return lines


# --------------------------------------------------------------------------- JSON


class JSONProblem(ValueError):
    """Why a JSON text was refused, on which line of it (1-based) when known, and whether it
    is not JSON at all (``syntax``) rather than JSON with a refused value."""

    def __init__(
        self, message: str, line: int | None = None, *, syntax: bool = False, key: str = ""
    ) -> None:
        super().__init__(message)
        self.line = line
        self.syntax = syntax
        #: the repeated key, so a multi-line document can point at its second occurrence
        self.repeated_key = key


def _refuse_constant(name: str) -> Any:
    raise JSONProblem(f"{name} is not a JSON number (write null or a finite number)")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise JSONProblem(f"number {show(text)} is too large (overflows to infinity)")
    return value


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    record = dict(pairs)
    if len(record) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise JSONProblem(f"key {show(key)} appears twice in one object", key=key)
            seen.add(key)
    return record


# one decoder for every call: json.loads with options would build a new one each time
_DECODER = json.JSONDecoder(
    parse_constant=_refuse_constant, parse_float=_finite_float, object_pairs_hook=_unique_keys
)


def loads_json(text: str) -> Any:
    """``json.loads`` that refuses NaN/Infinity, numbers that overflow, repeated keys and
    nesting too deep to parse; raises :class:`JSONProblem` (with the line when known)."""
    try:
        value = _DECODER.decode(text)
        if "\\u" in text:
            check_encodable(value)
        return value
    except JSONProblem:
        raise
    except json.JSONDecodeError as error:
        raise JSONProblem(f"invalid JSON ({error.msg})", error.lineno, syntax=True) from None
    except RecursionError:
        raise JSONProblem("invalid JSON (nested too deeply)") from None
    except ValueError as error:  # e.g. an integer of more than 4300 digits
        raise JSONProblem(f"invalid JSON ({str(error).split(';')[0]})") from None


def check_encodable(value: Any) -> None:
    """Refuse lone surrogates (a ``\\ud800`` escape without its pair): such text cannot be
    written as UTF-8, so it would crash the first write or hash instead of failing here."""
    try:
        json.dumps(value, ensure_ascii=False, default=str).encode("utf-8")
    except UnicodeEncodeError:
        raise JSONProblem(
            "a \\ud800-\\udfff escape without its surrogate pair (not valid Unicode text)"
        ) from None


def json_key_line(text: str, key: str, occurrence: int = 1) -> int:
    """The line of a JSON document where ``"key":`` appears for the ``occurrence``-th time
    (1 when it cannot be found)."""
    for spelling in (json.dumps(key), json.dumps(key, ensure_ascii=False)):
        found = list(re.finditer(re.escape(spelling) + r"\s*:", text))
        if len(found) >= occurrence:
            return text.count("\n", 0, found[occurrence - 1].start()) + 1
    return 1


# --------------------------------------------------------------------------- .npy matrices


def read_item_matrix(path: Path, num_items: int, *, named_by: str = "") -> np.ndarray:
    """A float32 ``[num_items + 1, d]`` matrix (row = item id, row 0 zeroed) from a .npy file.

    Read with ``allow_pickle=False``; the header is checked before the data are read, so a
    wrong shape or dtype is refused without loading a large file. Any problem is one DataError
    naming the file (and, with ``named_by``, where it was named).
    """
    suffix = f" (named by {named_by})" if named_by else ""

    def refuse(message: str) -> DataError:
        return DataError(message + suffix, path=path)

    expected = f"[{num_items + 1}, d] (row i = item id i, row 0 = padding) for {num_items} items"
    if path.is_dir():
        raise refuse("expected a .npy file, got a folder")
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise refuse("file not found (expected a .npy matrix)") from None
    except OSError as error:
        raise refuse(f"cannot read ({error.strerror or error})") from None
    if size == 0:
        raise refuse("empty file (0 bytes); expected a .npy matrix")
    try:
        with warnings.catch_warnings():  # a corrupt header must not print warnings either
            warnings.simplefilter("ignore")
            loaded = np.load(path, mmap_mode="r", allow_pickle=False)
    except Exception as error:  # numpy's header parser has no closed list of errors on bad bytes
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise refuse(f"not a readable .npy matrix ({reason}); save it with numpy.save") from None
    if not isinstance(loaded, np.ndarray):  # a .npz archive
        loaded.close()
        raise refuse("a .npz archive; expected one matrix saved with numpy.save")
    if loaded.dtype.kind != "f":
        raise refuse(
            f"expected a float matrix (float16, float32 or float64), got dtype {loaded.dtype}"
        )
    shape = list(loaded.shape)
    if loaded.ndim != 2 or shape[0] != num_items + 1 or shape[1] == 0:
        raise refuse(
            f"expected a matrix of shape {expected}, got {shape}; save one row per item id with "
            "a zero row 0 on top"
        )
    with np.errstate(over="ignore"):  # values beyond float32 become inf, refused below
        matrix = np.array(loaded, dtype=np.float32)
    del loaded  # release the memory map
    matrix[0] = 0.0
    finite = np.isfinite(matrix).all(axis=1)
    if not finite.all():
        row = int(np.flatnonzero(~finite)[0])
        raise refuse(
            f"row {row} (item {row}) holds NaN or infinite values (or values beyond float32); "
            "expected finite numbers"
        )
    return matrix
