"""The report as ONE self-contained HTML page: inline CSS, figures as data URIs, no scripts.

Every string that comes from a spec, a store file or data passes through :func:`esc`; markup
is only ever built by :func:`el`, which escapes text children and attribute values itself.
Already-built markup is a :class:`Markup` instance, so escaping cannot be forgotten or done
twice. The page loads nothing from the network and runs no JavaScript, so it opens offline,
in a mail attachment or a CI artifact viewer alike.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Iterable, Mapping, Sequence
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


class Markup(str):
    """A string of HTML that is already safe (built by :func:`el` or :func:`esc`)."""


Child = str | None | Iterable[Any]


def esc(value: Any) -> Markup:
    """Escape any value for HTML text or a quoted attribute."""
    return value if isinstance(value, Markup) else Markup(html.escape(str(value), quote=True))


def _children(children: Iterable[Any]) -> str:
    parts: list[str] = []
    for child in children:
        if child is None:
            continue
        if isinstance(child, str):
            parts.append(esc(child))
        elif isinstance(child, Iterable):
            parts.append(_children(child))
        else:
            parts.append(esc(child))
    return "".join(parts)


VOID = {"meta", "img", "br", "hr", "col"}


def el(tag: str, *children: Child, **attrs: Any) -> Markup:
    """``<tag attrs>children</tag>``: text children and attribute values are escaped.

    ``class_`` gives ``class``; ``data_x`` gives ``data-x``; True gives a bare attribute,
    None/False leave the attribute out. Tag and attribute names are code, never data.
    """
    rendered = []
    for name, value in attrs.items():
        if value is None or value is False:
            continue
        name = name.rstrip("_").replace("_", "-")
        rendered.append(f" {name}" if value is True else f' {name}="{esc(value)}"')
    opening = f"<{tag}{''.join(rendered)}>"
    if tag in VOID:
        return Markup(opening)
    return Markup(f"{opening}{_children(children)}</{tag}>")


CSS = """
:root { --ink:#1d1d1f; --muted:#5f6368; --rule:#1d1d1f; --faint:#e6e6e6; --accent:#0b5cad;
  --best:#000; --bg:#fff; --panel:#f7f7f8; }
* { box-sizing:border-box; }
html { -webkit-text-size-adjust:100%; }
body { margin:0; background:var(--bg); color:var(--ink);
  font:15px/1.55 "Helvetica Neue", Helvetica, Arial, "Liberation Sans", "DejaVu Sans", sans-serif; }
main { max-width:1160px; margin:0 auto; padding:32px 28px 64px; }
h1 { font-size:26px; line-height:1.25; margin:0 0 6px; font-weight:650; letter-spacing:-.01em; }
h2 { font-size:20px; margin:44px 0 12px; padding-bottom:6px; border-bottom:1px solid var(--faint);
  font-weight:650; }
h3 { font-size:16.5px; margin:30px 0 10px; font-weight:650; }
h4 { font-size:15px; margin:26px 0 8px; font-weight:650; }
p { margin:8px 0; }
a { color:var(--accent); text-decoration:none; }
a:hover { text-decoration:underline; }
code, .mono { font-family:"DejaVu Sans Mono", Menlo, Consolas, monospace; font-size:12.5px; }
.lead { font-size:16px; color:#333; margin:4px 0 6px; }
.meta { color:var(--muted); font-size:13px; }
nav.toc { background:var(--panel); border-radius:6px; padding:10px 16px; margin:18px 0 8px;
  font-size:13.5px; }
nav.toc ol { margin:4px 0; padding-left:20px; columns:2; column-gap:32px; }
.warn { border-left:3px solid #c77700; background:#fff8ec; padding:8px 12px; margin:12px 0;
  font-size:13.5px; }
.warn ul { margin:4px 0; padding-left:18px; }
.note { color:var(--muted); font-size:13px; }
.table-wrap { overflow-x:auto; margin:14px 0 4px; }
table { border-collapse:collapse; font-variant-numeric:tabular-nums; font-size:13px; }
table.results { border-top:1.6px solid var(--rule); border-bottom:1.6px solid var(--rule);
  margin:0 auto; }
table.results th, table.results td { padding:4px 7px; text-align:right; white-space:nowrap; }
table.results th { font-weight:600; }
table.results thead tr:last-child th { border-bottom:1px solid var(--rule); }
table.results thead th.group { border-bottom:1px solid #9a9a9a; text-align:center; }
table.results th.method, table.results td.method { text-align:left; padding-left:2px; }
table.results td.method { font-weight:500; }
table.results td .sd { display:block; font-size:11px; color:var(--muted); line-height:1.1; }
table.results td.best .v { font-weight:700; color:var(--best); }
table.results sup.sig { color:var(--accent); font-size:10px; margin-left:1px; }
table.results tr.baseline td { background:#fafafa; }
table.results tr.rule td { border-top:1px solid #9a9a9a; }
table.results tbody tr.rule:first-child td { border-top:none; }
caption .tnote { display:block; color:var(--muted); margin-top:3px; }
table.plain td.best .v { font-weight:700; }
table.plain sup.sig { color:var(--accent); font-size:10px; }
table.plain .sd { color:var(--muted); font-size:11px; margin-left:3px; }
table.plain th.group { text-align:center; }
table.results tr.improv td { border-top:1px solid #9a9a9a; font-style:italic; color:#333;
  font-size:12.5px; }
table.results td.sep, table.results th.sep { border-left:1px solid var(--faint); }
table.results .n { display:block; font-weight:400; color:var(--muted); font-size:11px; }
table.plain { border-top:1.2px solid var(--rule); border-bottom:1.2px solid var(--rule); }
table.plain th, table.plain td { padding:3px 10px; text-align:left; vertical-align:top; }
table.plain td:first-child { white-space:nowrap; }
table.plain thead th { border-bottom:1px solid var(--rule); font-weight:600; }
table.plain td.num, table.plain th.num { text-align:right; }
table.pvals { font-size:11.5px; color:#333; margin:6px auto 0; }
table.pvals th, table.pvals td { padding:2px 7px; text-align:right; white-space:nowrap; }
table.pvals th { font-weight:600; }
table.pvals thead tr:last-child th { border-bottom:1px solid #9a9a9a; }
table.pvals th.group { text-align:center; }
table.pvals .sep { border-left:1px solid var(--faint); }
table.pvals td.method, table.pvals th.method { text-align:left; }
table.pvals td.sigp { color:var(--accent); font-weight:600; }
caption { caption-side:bottom; text-align:left; font-size:12.5px; color:#333; padding:8px 2px 0;
  line-height:1.45; }
.caption-label { font-weight:650; }
dl.protocol { display:grid; grid-template-columns:max-content 1fr; gap:3px 18px; margin:10px 0;
  font-size:14px; }
dl.protocol dt { color:var(--muted); }
dl.protocol dd { margin:0; }
figure { margin:18px auto; text-align:center; }
figure img { max-width:100%; height:auto; }
figcaption { font-size:12.5px; color:#333; text-align:left; max-width:660px; margin:6px auto 0;
  line-height:1.45; }
.fig-row { display:flex; flex-wrap:wrap; gap:8px 28px; justify-content:center;
  align-items:flex-start; }
.fig-row figure { margin:10px 0; width:520px; max-width:100%; }
.fig-row figure img { width:100%; }
article.cell { margin-top:22px; }
article.cell + article.cell { border-top:1px solid var(--faint); }
.kv { display:flex; flex-wrap:wrap; gap:4px 22px; font-size:13.5px; color:#333; margin:6px 0 10px; }
.kv b { font-weight:600; color:var(--ink); }
details { margin:8px 0; font-size:13px; }
details summary { cursor:pointer; color:var(--accent); }
details table.plain { margin-top:6px; }
pre.cmd { background:var(--panel); padding:8px 12px; border-radius:5px; overflow-x:auto;
  white-space:pre-wrap; word-break:break-all; font-size:12.5px; margin:4px 0; }
footer { margin-top:48px; padding-top:10px; border-top:1px solid var(--faint); color:var(--muted);
  font-size:12.5px; }
@media print { main { max-width:none; padding:0; } nav.toc { display:none; }
  h2 { break-after:avoid; } figure, table { break-inside:avoid; } }
"""


#: figures are shown at this scale so that their 8.5 pt text reads like 11-12 px body text
FIGURE_PX_PER_INCH = 100


def _data_uri(figure: FigureFile) -> str:
    payload = base64.b64encode(figure.svg.read_bytes()).decode("ascii")
    return f"data:image/svg+xml;base64,{payload}"


def _figure(ref: FigureRef, figures: Mapping[str, FigureFile]) -> Markup:
    figure = figures[ref.key]
    width = round(figure.width_in * FIGURE_PX_PER_INCH)
    return el(
        "figure",
        el("img", src=_data_uri(figure), alt=ref.alt, width=str(width)),
        el("figcaption", el("span", f"Figure {ref.number}. ", class_="caption-label"), ref.caption),
        id=f"figure-{ref.number}",
    )


def _cell(cell: Cell, tag: str, classes: list[str]) -> Markup:
    if cell.strong:
        classes = [*classes, "best"]
    value = el("code", cell.value) if cell.code else el("span", cell.value, class_="v")
    marks = cell.marks + cell.notes
    return el(
        tag,
        value,
        el("sup", marks, class_="sig") if marks else None,
        el("span", f"\u00b1{cell.spread}", class_="sd") if cell.spread else None,
        class_=" ".join(classes) or None,
        title=cell.hint or None,
    )


def _group_starts(table: Table) -> set[int]:
    """Columns that open a column group (a thin rule on their left)."""
    starts: set[int] = set()
    if table.spans:
        column = 0
        for span in table.spans[-1]:
            if span.label and column >= table.stub:
                starts.add(column)
            column += span.span
    return starts


def _table(table: Table) -> Markup:
    starts = _group_starts(table)
    stub = table.stub

    def classes(index: int) -> list[str]:
        out = ["method"] if index < stub else []
        return out + (["sep"] if index in starts else [])

    head = []
    for spans in table.spans:
        cells = []
        column = 0
        for span in spans:
            sub = el("span", span.sub, class_="n") if span.sub else None
            group = ["group"] + (["sep"] if column in starts else []) if span.label else []
            cells.append(
                el("th", span.label, sub, colspan=str(span.span), class_=" ".join(group) or None)
            )
            column += span.span
        head.append(el("tr", cells))
    head.append(
        el(
            "tr",
            [el("th", h, class_=" ".join(classes(i)) or None) for i, h in enumerate(table.header)],
        )
    )
    body = []
    for row in table.rows:
        cells = [_cell(c, "td", classes(i)) for i, c in enumerate(row.cells)]
        kind = {"baseline": "baseline", "summary": "improv"}.get(row.kind, "")
        rule = "rule" if row.rule_above else ""
        body.append(el("tr", cells, class_=" ".join(c for c in (kind, rule) if c) or None))
    label = el("span", f"Table {table.number}. ", class_="caption-label") if table.number else None
    notes = [el("span", note, class_="tnote") for note in table.notes]
    shown = not table.collapsed and (label or table.caption or notes)
    caption = el("caption", label, table.caption, notes) if shown else None
    kind = "results" if table.paper else "plain"
    markup = el(
        "div",
        el(
            "table",
            caption,
            el("thead", head),
            el("tbody", body),
            class_=kind,
            id=f"table-{table.number}" if table.number else None,
            data_kind=table.kind,
        ),
        class_="table-wrap",
    )
    if table.collapsed:
        return el(
            "details",
            el("summary", table.caption),
            markup,
            [el("p", note, class_="note") for note in table.notes],
        )
    return markup


#: a banner with more items folds them, so that the headline table stays on the first screen
BANNER_OPEN_ITEMS = 4


def _banner(banner: Banner) -> Markup:
    items = el("ul", [el("li", item) for item in banner.items])
    if len(banner.items) > BANNER_OPEN_ITEMS:
        items = el("details", el("summary", f"show all {len(banner.items)}"), items)
    return el("div", el("strong", f"{banner.title}:"), items, class_="warn")


def _blocks(blocks: Sequence[Block], figures: Mapping[str, FigureFile]) -> list[Markup]:
    out: list[Markup] = []
    row: list[Markup] = []
    for block in blocks:
        if isinstance(block, FigureRef):
            row.append(_figure(block, figures))
            continue
        if row:
            out.append(el("div", row, class_="fig-row") if len(row) > 1 else row[0])
            row = []
        if isinstance(block, Part):
            heading = el(f"h{block.level}", block.title, id=block.anchor)
            out.append(el("section", heading, _blocks(block.blocks, figures)))
        elif isinstance(block, Table):
            out.append(_table(block))
        elif isinstance(block, Facts):
            items = [
                el("span", el("b", f"{k}: "), el("code", v) if block.code else v)
                for k, v in block.items
            ]
            out.append(el("div", items, class_="kv"))
        elif isinstance(block, Bullets):
            out.append(el("ul", [el("li", item) for item in block.items]))
        elif isinstance(block, Text):
            inner = el("strong", block.text) if block.strong else block.text
            out.append(el("p", inner, class_="note" if block.muted else None))
        elif isinstance(block, Code):
            pre = el("pre", block.text, class_="cmd")
            if block.collapsed:
                out.append(el("details", el("summary", block.label), pre))
            else:
                out += [el("p", el("span", f"{block.label}:", class_="note")), pre]
        elif isinstance(block, Banner):
            out.append(_banner(block))
    if row:
        out.append(el("div", row, class_="fig-row") if len(row) > 1 else row[0])
    return out


def _toc(document: Document) -> Markup:
    parts = ([document.headline] if document.headline else []) + document.parts
    items = [el("li", el("a", p.title, href=f"#{p.anchor}")) for p in parts]
    return el("nav", el("strong", "Contents"), el("ol", items), class_="toc")


def render_html(document: Document, figures: Mapping[str, FigureFile]) -> str:
    """The whole page as one string; the first screen shows the banners and the headline."""
    header = el(
        "header",
        el("h1", document.title),
        [el("p", text, class_="lead") for text in document.lead],
        el("p", document.generated, class_="meta"),
    )
    body = [
        header,
        [_banner(b) for b in document.banners],
        _blocks([document.headline], figures) if document.headline else None,
        _toc(document),
        _blocks(document.parts, figures),
        el("footer", document.footer),
    ]
    head = Markup(
        '<meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta name="generator" content="faerec-study">'
        # defence in depth: no script, frame or remote load can run even if data slipped in
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        "img-src data:; style-src 'unsafe-inline'\">"
        + el("title", document.title)
        + f"<style>{CSS}</style>"
    )
    return (
        "<!DOCTYPE html>\n"
        + el("html", el("head", head), el("body", el("main", body)), lang="en")
        + "\n"
    )
