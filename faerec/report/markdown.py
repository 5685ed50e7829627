"""The report document as GitHub-flavoured Markdown, with figures referenced as figures/*.png.

A thin layout of :class:`faerec.report.document.Document`: no number is computed and no
metric chosen here. Every string goes through :func:`md` (HTML-escaped, Markdown punctuation
and table pipes escaped), so a study description cannot inject markup into a rendered README.
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping, Sequence
from typing import Any

from faerec.report.document import (
    Banner,
    Block,
    Bullets,
    Cell,
    Code,
    Document,
    Facts,
    FigureRef,
    Part,
    Table,
    Text,
)
from faerec.report.figures import FigureFile

#: characters that start inline markup anywhere in a line (``<`` and ``&`` go through html.escape)
_MD_INLINE = re.compile(r"([\\`*_\[\]|~])")
#: what would make a line a heading, list item, quote or numbered item
_MD_LINE_START = re.compile(r"^(#|[-+](?=\s)|&gt;)")
_MD_NUMBERED = re.compile(r"^(\d+)([.)])(?=\s)")


def md(value: Any) -> str:
    """Escape a value for Markdown text or a table cell (one line, no markup, no HTML)."""
    text = html.escape(" ".join(str(value).split()), quote=False)
    text = _MD_INLINE.sub(r"\\\1", text)
    text = _MD_NUMBERED.sub(r"\1\\\2", text)
    return _MD_LINE_START.sub(r"\\\1", text)


def _code(value: Any) -> str:
    """Inline code; backticks inside are replaced so the span cannot be closed early."""
    text = " ".join(str(value).split()).replace("`", "\u02cb")
    return f"`{text}`"


def _cell(cell: Cell, summary: bool = False) -> str:
    if cell.code:
        return _code(cell.value)
    text = md(cell.value)
    if text and cell.strong:
        text = f"**{text}**"
    elif text and summary:
        text = f"*{text}*"
    marks = cell.marks + cell.notes
    if marks:
        text += f"<sup>{md(marks)}</sup>"
    if cell.spread:
        text += f" \u00b1 {md(cell.spread)}"
    return text


def _header(table: Table) -> list[str]:
    """One header row: column-group labels are prefixed to the columns they span."""
    names = [md(h) for h in table.header]
    for spans in reversed(table.spans):
        column = 0
        for span in spans:
            if span.label:
                for index in range(column, column + span.span):
                    names[index] = f"{md(span.label)} {names[index]}"
            column += span.span
    return names


def _table(table: Table) -> list[str]:
    rule = [":---" if i < table.stub else "---:" for i in range(len(table.header))]
    lines = ["| " + " | ".join(_header(table)) + " |", "| " + " | ".join(rule) + " |"]
    for row in table.rows:
        summary = row.kind == "summary"
        cells = [_cell(c, summary and i == 0) for i, c in enumerate(row.cells)]
        lines.append("| " + " | ".join(cells) + " |")
    caption = md(table.caption)
    if table.collapsed:
        body = ["", *lines, "", *[line for n in table.notes for line in (md(n), "")]]
        return [f"<details><summary>{caption}</summary>", *body, "", "</details>", ""]
    label = f"*Table {table.number}.* " if table.number else ""
    out = [*lines, ""] + ([f"{label}{caption}"] if label or caption else [])
    out += [f"<br>{md(n)}" for n in table.notes]
    return [*out, ""]


def _figure(ref: FigureRef, figures: Mapping[str, FigureFile]) -> list[str]:
    return [
        f"![{md(ref.alt)}](figures/{figures[ref.key].png.name})",
        "",
        f"*Figure {ref.number}.* {md(ref.caption)}",
        "",
    ]


def _code_block(block: Code) -> list[str]:
    """Verbatim text in a fence longer than any backtick run inside (it cannot close early)."""
    if not block.collapsed:
        return [f"{md(block.label)}: {_code(block.text)}", ""]
    longest = max((len(run) for run in re.findall(r"`+", block.text)), default=0)
    fence = "`" * max(3, longest + 1)
    return [
        f"<details><summary>{md(block.label)}</summary>",
        "",
        f"{fence}{block.language}",
        *block.text.rstrip("\n").splitlines(),
        fence,
        "",
        "</details>",
        "",
    ]


def _banner(banner: Banner) -> list[str]:
    return [f"> **{md(banner.title)}:**", ">", *[f"> - {md(i)}" for i in banner.items], ""]


def _blocks(blocks: Sequence[Block], figures: Mapping[str, FigureFile]) -> list[str]:
    lines: list[str] = []
    for block in blocks:
        if isinstance(block, Part):
            lines += [f"{'#' * block.level} {md(block.title)}", ""]
            lines += _blocks(block.blocks, figures)
        elif isinstance(block, Table):
            lines += _table(block)
        elif isinstance(block, FigureRef):
            lines += _figure(block, figures)
        elif isinstance(block, Facts):
            value = _code if block.code else md
            lines += ["; ".join(f"**{md(k)}:** {value(v)}" for k, v in block.items), ""]
        elif isinstance(block, Bullets):
            lines += [f"- {md(item)}" for item in block.items] + [""]
        elif isinstance(block, Text):
            text = md(block.text)
            lines += [f"**{text}**" if block.strong else f"*{text}*" if block.muted else text, ""]
        elif isinstance(block, Code):
            lines += _code_block(block)
        elif isinstance(block, Banner):
            lines += _banner(block)
    return lines


def render_markdown(document: Document, figures: Mapping[str, FigureFile]) -> str:
    lines = [f"# {md(document.title)}", ""]
    for text in document.lead:
        lines += [md(text), ""]
    if document.generated:
        lines += [md(document.generated), ""]
    for banner in document.banners:
        lines += _banner(banner)
    if document.headline is not None:
        lines += _blocks([document.headline], figures)
    lines += _blocks(document.parts, figures)
    lines += ["---", "", md(document.footer), ""]
    return "\n".join(lines)
