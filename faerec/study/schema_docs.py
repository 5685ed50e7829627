"""The key tables of docs/study-spec.md, rendered from the declaration in faerec.study.schema.

The docs keep their prose by hand; each table sits between ``<!-- keys: NAME -->`` and
``<!-- /keys -->`` and is rewritten by ``python -m faerec.study.schema_docs`` (a test fails when
the file and the declaration disagree).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any, get_args, get_origin

from pydantic.fields import FieldInfo

from faerec.study.schema import (
    FinalSettings,
    OneOf,
    ReportSettings,
    ResourceSettings,
    SchedulerSettings,
    SearchSection,
    Section,
    StudyFile,
    expected,
    extra,
    parts,
    section_of,
)


def type_text(field: FieldInfo) -> str:
    """The type column of the docs: ``integer ≥ 1``, ```tpe` | `random```, ``list of ...``."""
    written = extra(field, "type")
    if written:
        return str(written)
    return _type_words(field.annotation, list(field.metadata))


def _type_words(hint: Any, metadata: list[Any]) -> str:
    base, marks = parts(hint, metadata)
    words = next((m for m in marks if isinstance(m, OneOf)), None)
    if words is not None:
        return " | ".join(f"`{w}`" for w in words.words)
    if get_origin(base) is list:
        inner, inner_marks = parts(get_args(base)[0])
        inner_words = next((m for m in inner_marks if isinstance(m, OneOf)), None)
        if inner_words is not None:
            return "list of " + ", ".join(f"`{w}`" for w in inner_words.words)
        return "list of texts"
    if base is bool:
        return "`true` | `false`"
    if isinstance(base, type) and issubclass(base, Section):
        return "mapping"
    phrase = expected(base, marks)
    for plain, written in (
        ("an integer", "integer"),
        ("a number", "number"),
        ("a text", "text"),
        (">=", "≥"),
    ):
        phrase = phrase.replace(plain, written)
    return phrase


def default_text(field: FieldInfo) -> str:
    """The default column of the docs."""
    shown = extra(field, "shown")
    if shown:
        return str(shown)
    if field.is_required():
        return "required"
    if section_of(field) is not None:
        return "see below"
    return f"`{_yaml(field.get_default(call_default_factory=True))}`"


def _yaml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, str):
        return value if value else '""'
    if isinstance(value, list):
        return "[" + ", ".join(_yaml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_yaml(v)}" for k, v in value.items()) + "}"
    return str(value)


def meaning(field: FieldInfo) -> str:
    text = field.description or ""
    only = extra(field, "only")
    if only:
        text += f" {' and '.join(only)} only."
    return text


def keys_table(model: type[Section]) -> list[str]:
    """The markdown table of one section's keys."""
    lines = ["| key | type | default | meaning |", "|---|---|---|---|"]
    for name, field in model.model_fields.items():
        cells = [f"`{name}`", type_text(field), default_text(field), meaning(field)]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return lines


#: the tables of docs/study-spec.md, by the name in their markers
DOC_TABLES: dict[str, type[Section]] = {
    "top": StudyFile,
    "search": SearchSection,
    "scheduler": SchedulerSettings,
    "resources": ResourceSettings,
    "final": FinalSettings,
    "report": ReportSettings,
}
_BLOCK = re.compile(r"(<!-- keys: (\w+) -->\n)(.*?)(<!-- /keys -->)", re.DOTALL)
DOCS = Path(__file__).resolve().parents[2] / "docs" / "study-spec.md"


def render_docs(text: str) -> str:
    """``text`` with every ``<!-- keys: NAME -->`` block rendered from the declaration."""

    def block(match: re.Match[str]) -> str:
        table = "\n".join(keys_table(DOC_TABLES[match.group(2)]))
        return f"{match.group(1)}{table}\n{match.group(4)}"

    return _BLOCK.sub(block, text)


def main(argv: list[str]) -> int:
    """Rewrite the key tables of docs/study-spec.md (or the file given) in place."""
    from faerec.atomic import write_text_atomic

    path = Path(argv[0]) if argv else DOCS
    text = path.read_text(encoding="utf-8")
    rendered = render_docs(text)
    if rendered != text:
        write_text_atomic(path, rendered)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
