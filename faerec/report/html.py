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
from collections.abc import Iterable
from typing import Any

from faerec.report.figures import FigureFile
from faerec.report.stats import format_p
from faerec.report.tables import (
    TESTED_KINDS,
    Column,
    ReportModel,
    ResultTable,
    SearchSummary,
    Section,
    backbone_label,
    cell_marks,
    dataset_label,
    final_seed_rows,
    flat_config,
    fmt_change,
    fmt_count,
    fmt_param,
    fmt_value,
    group_label,
    p_value_rows,
    stat_columns,
    table_caption,
    trial_counts_text,
)
from faerec.text import plural


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


class _Counter:
    """Numbers tables and figures in document order."""

    def __init__(self) -> None:
        self.table = 0
        self.figure = 0

    def next_table(self) -> int:
        self.table += 1
        return self.table

    def next_figure(self) -> int:
        self.figure += 1
        return self.figure


def _data_uri(figure: FigureFile) -> str:
    payload = base64.b64encode(figure.svg.read_bytes()).decode("ascii")
    return f"data:image/svg+xml;base64,{payload}"


def _figure(figure: FigureFile | None, counter: _Counter) -> Markup | None:
    if figure is None:
        return None
    number = counter.next_figure()
    width = round(figure.width_in * FIGURE_PX_PER_INCH)
    return el(
        "figure",
        el("img", src=_data_uri(figure), alt=figure.alt, width=str(width)),
        el("figcaption", el("span", f"Figure {number}. ", class_="caption-label"), figure.caption),
        id=f"figure-{number}",
    )


def _value_cell(cell: Any, column_index: int, first_of_group: bool) -> Markup:
    if cell is None:
        return el("td", "\u2013", class_="sep" if first_of_group else None)
    marks = cell_marks(cell)
    classes = " ".join(
        c for c in ("best" if cell.best else "", "sep" if first_of_group else "") if c
    )
    return el(
        "td",
        el("span", fmt_value(cell.mean), class_="v"),
        el("sup", marks, class_="sig") if marks else None,
        el("span", f"\u00b1{fmt_value(cell.std)}", class_="sd") if cell.std is not None else None,
        class_=classes or None,
    )


def _result_table(table: ResultTable, counter: _Counter) -> Markup:
    number = counter.next_table()
    groups = table.groups
    head_top = [el("th", "Method", rowspan="2", class_="method")]
    for group in groups:
        size = table.group_sizes.get(group)
        head_top.append(
            el(
                "th",
                group_label(group),
                el("span", plural(size, "user"), class_="n") if size else None,
                colspan=str(len(table.columns_of(group))),
                class_="group sep",
            )
        )
    head_bottom = []
    for group in groups:
        for index, column in enumerate(table.columns_of(group)):
            head_bottom.append(el("th", column.metric_label, class_="sep" if index == 0 else None))
    body = []
    for row in table.rows:
        cells = [el("td", row.label, class_="method", title=f"{row.study}/{row.cell_id}")]
        for group in groups:
            for index, column in enumerate(table.columns_of(group)):
                cells.append(_value_cell(row.cells.get(column), index, index == 0))
        body.append(el("tr", cells, class_="baseline" if row.is_baseline else None))
    if table.improvement:
        cells = [el("td", table.improvement_label, class_="method")]
        for group in groups:
            for index, column in enumerate(table.columns_of(group)):
                cells.append(
                    el(
                        "td",
                        fmt_change(table.improvement.get(column)),
                        class_="sep" if index == 0 else None,
                    )
                )
        body.append(el("tr", cells, class_="improv"))
    caption = el(
        "caption", el("span", f"Table {number}. ", class_="caption-label"), table_caption(table)
    )
    parts = [
        el(
            "div",
            el(
                "table",
                caption,
                el("thead", el("tr", head_top), el("tr", head_bottom)),
                el("tbody", body),
                class_="results",
                id=f"table-{number}",
                data_kind=table.kind,
            ),
            class_="table-wrap",
        )
    ]
    if table.kind in TESTED_KINDS and table.has_tests:
        parts.append(_p_value_table(table, number))
    return Markup("".join(parts))


def _p_value_table(table: ResultTable, number: int) -> Markup:
    rows = p_value_rows(table)
    if not rows:
        return Markup("")
    groups = table.groups
    head_top = [
        el("th", "Method", rowspan="2", class_="method"),
        el("th", "Test", rowspan="2", class_="method"),
    ]
    head_top += [
        el("th", group_label(g), colspan=str(len(table.columns_of(g))), class_="group sep")
        for g in groups
    ]
    head_bottom = [
        el("th", c.metric_label, class_="sep" if i == 0 else None)
        for g in groups
        for i, c in enumerate(table.columns_of(g))
    ]
    body = []
    previous = None
    for label, test, outcomes in rows:
        cells = [
            el("td", label if label != previous else "", class_="method"),
            el("td", test, class_="method"),
        ]
        previous = label
        for group in groups:
            for index, column in enumerate(table.columns_of(group)):
                cells.append(_p_cell(outcomes.get(column), index == 0))
        body.append(el("tr", cells))
    return el(
        "details",
        el("summary", f"p-values of Table {number} (vs {_baseline_label(table)}; blue: p < 0.05)"),
        el(
            "div",
            el(
                "table",
                el("thead", el("tr", head_top), el("tr", head_bottom)),
                el("tbody", body),
                class_="pvals",
            ),
            class_="table-wrap",
        ),
        open=True,
    )


def _baseline_label(table: ResultTable) -> str:
    return next((r.label for r in table.rows if r.is_baseline), "the backbone")


def _p_cell(outcome: Any, first_of_group: bool) -> Markup:
    sep = "sep" if first_of_group else None
    if outcome is None:
        return el("td", "", class_=sep)
    if outcome.p_value is None:
        return el("td", "n/a", title=outcome.reason, class_=sep)
    classes = " ".join(c for c in ("sigp" if outcome.significant else "", sep or "") if c)
    return el("td", format_p(outcome.p_value), class_=classes or None, title=f"n = {outcome.n}")


def _plain_table(
    headers: list[str],
    rows: list[list[Any]],
    numeric: set[int] | None = None,
    caption: Markup | None = None,
) -> Markup:
    numeric = numeric or set()
    head = el(
        "tr", [el("th", h, class_="num" if i in numeric else None) for i, h in enumerate(headers)]
    )
    body = [
        el("tr", [el("td", v, class_="num" if i in numeric else None) for i, v in enumerate(row)])
        for row in rows
    ]
    return el(
        "div",
        el("table", caption, el("thead", head), el("tbody", body), class_="plain"),
        class_="table-wrap",
    )


def _header(model: ReportModel) -> Markup:
    descriptions = [el("p", s.description, class_="lead") for s in model.studies if s.description]
    meta = f"Generated {model.generated}" if model.generated else ""
    return el("header", el("h1", model.title), descriptions, el("p", meta, class_="meta"))


def _toc(model: ReportModel) -> Markup:
    items = [el("li", el("a", "Protocol and data", href="#protocol"))]
    if len(model.sections) > 1:
        items.append(el("li", el("a", "Summary across datasets", href="#summary")))
    for section in model.sections:
        items.append(el("li", el("a", f"Results: {section.title}", href=f"#{section.anchor}")))
        items.append(
            el("li", el("a", f"Search details: {section.title}", href=f"#{section.anchor}-search"))
        )
    return el("nav", el("strong", "Contents"), el("ol", items), class_="toc")


def _warnings(model: ReportModel) -> Markup | None:
    if not model.warnings:
        return None
    return el(
        "div",
        el("strong", "Check before comparing numbers:"),
        el("ul", [el("li", w) for w in model.warnings]),
        class_="warn",
    )


def _protocol(model: ReportModel, counter: _Counter) -> Markup:
    parts: list[Any] = [el("h2", "Protocol and data", id="protocol")]
    study_rows = []
    for study in model.studies:
        meta = study.meta
        study_rows.append(
            [
                study.name,
                str(meta.get("spec_hash", "")),
                str(meta.get("created", "")),
                str(meta.get("updated", "")),
                str(len(study.cells)),
            ]
        )
    parts.append(el("h3", "Studies"))
    parts.append(
        _plain_table(["Study", "Spec hash", "Created", "Updated", "Cells"], study_rows, numeric={4})
    )
    for study in model.studies:
        command = study.meta.get("command")
        if command:
            parts.append(el("p", el("span", f"Study command ({study.name}):", class_="note")))
            parts.append(el("pre", str(command), class_="cmd"))
    if model.command:
        parts.append(el("p", el("span", "Report command:", class_="note")))
        parts.append(el("pre", model.command, class_="cmd"))
    for study in model.studies:
        if study.spec_text:
            parts.append(
                el(
                    "details",
                    el("summary", f"Study spec of {study.name} (spec.yaml)"),
                    el("pre", study.spec_text, class_="cmd spec"),
                )
            )
    parts.append(el("h3", "Evaluation protocol"))
    items = []
    for item in model.protocol:
        items.append(el("dt", item.label))
        value: Any = item.value
        if item.mixed:
            value = [el("strong", item.value), el("ul", [el("li", m) for m in item.mixed])]
        items.append(el("dd", value))
    parts.append(el("dl", items, class_="protocol"))
    if model.datasets:
        columns = stat_columns(model.datasets)
        bucket_labels = list(dict.fromkeys(b for s in model.datasets for b in s.items_per_bucket))
        headers = ["Dataset"] + [label for _, label in columns]
        headers += [f"Items {b}" for b in bucket_labels]
        rows = []
        for stats in model.datasets:
            row = [dataset_label(stats.dataset)]
            row += [fmt_count(stats.values.get(k, "")) for k, _ in columns]
            row += [fmt_count(stats.items_per_bucket.get(b, "")) for b in bucket_labels]
            rows.append(row)
        number = counter.next_table()
        caption = el(
            "caption",
            el("span", f"Table {number}. ", class_="caption-label"),
            "Dataset statistics (from the final runs' data_stats). Item buckets count "
            "items by their number of interactions.",
        )
        parts.append(el("h3", "Datasets"))
        parts.append(
            _plain_table(headers, rows, numeric=set(range(1, len(headers))), caption=caption)
        )
    if model.environment:
        parts.append(el("h3", "Software and environment"))
        parts.append(
            el("div", [el("span", el("b", f"{k}: "), v) for k, v in model.environment], class_="kv")
        )
    return el("section", parts)


def _summary(model: ReportModel, counter: _Counter) -> Markup | None:
    """Across datasets: FAERec vs the backbone, NDCG at the headline cut-off."""
    if len(model.sections) < 2:
        return None
    groups = list(dict.fromkeys(g for s in model.sections for g in s.main.groups))
    body = []
    metric_label = ""
    for section in model.sections:
        table = section.main
        base = next((r for r in table.rows if r.is_baseline), None)
        ours = next((r for r in table.rows if r.method == "faerec"), None)
        if base is None or ours is None:
            continue
        cells = [
            el("td", dataset_label(section.dataset), class_="method"),
            el("td", backbone_label(section.backbone), class_="method"),
        ]
        for group in groups:
            column = _headline_column(table, group)
            b = base.cells.get(column) if column else None
            o = ours.cells.get(column) if column else None
            if column is not None:
                metric_label = column.metric_label
            cells.append(el("td", fmt_value(b.mean) if b else "\u2013", class_="sep"))
            marks = cell_marks(o) if o else ""
            cells.append(
                el(
                    "td",
                    el("span", fmt_value(o.mean) if o else "\u2013", class_="v"),
                    el("sup", marks, class_="sig") if marks else None,
                )
            )
            cells.append(el("td", fmt_change(o.rel_change) if o else "\u2013"))
        body.append(el("tr", cells))
    if not body:
        return None
    head_top = [
        el("th", "Dataset", rowspan="2", class_="method"),
        el("th", "Backbone", rowspan="2", class_="method"),
    ]
    head_top += [
        el("th", f"{group_label(g)} {metric_label}", colspan="3", class_="group sep")
        for g in groups
    ]
    head_bottom = []
    for _ in groups:
        head_bottom += [
            el("th", "Backbone", class_="sep"),
            el("th", "+ FAERec"),
            el("th", "Improv."),
        ]
    number = counter.next_table()
    caption = el(
        "caption",
        el("span", f"Table {number}. ", class_="caption-label"),
        f"FAERec against its backbone on every dataset: test {metric_label}, mean over seeds; "
        "marks as in the per-dataset tables.",
    )
    table_html = el(
        "table",
        caption,
        el("thead", el("tr", head_top), el("tr", head_bottom)),
        el("tbody", body),
        class_="results",
        data_kind="summary",
    )
    return el(
        "section",
        el("h2", "Summary across datasets", id="summary"),
        el("div", table_html, class_="table-wrap"),
    )


def _headline_column(table: ResultTable, group: str) -> Column | None:
    columns = [c for c in table.columns_of(group) if c.metric == "ndcg"]
    return next((c for c in columns if c.k == 10), columns[0] if columns else None)


def _search(
    summary: SearchSummary, figures: dict[str, FigureFile], key: str, counter: _Counter
) -> Markup:
    cell = summary.cell
    parts: list[Any] = [el("h4", summary.label, id=f"cell-{cell.cell_id}")]
    facts = [el("span", el("b", "Cell: "), el("code", cell.cell_id))]
    if cell.has_search:
        facts.append(el("span", el("b", "Search: "), trial_counts_text(summary)))
        objective = ", ".join(
            f"{n} ({d})" for n, d in zip(summary.objective_names, summary.directions, strict=False)
        )
        facts.append(el("span", el("b", "Objective: "), objective))
        if summary.search_seconds is not None:
            facts.append(el("span", el("b", "Search time: "), f"{summary.search_seconds:,.0f} s"))
    else:
        facts.append(el("span", el("b", "Search: "), "none (preset configuration)"))
    parts.append(el("div", facts, class_="kv"))
    if summary.best_params:
        value = summary.best_value
        best_text = (
            f"Best configuration (trial {summary.best_trial}, validation {fmt_param(value)})"
            if value is not None
            else "Best configuration"
        )
        rows = [[name, fmt_param(v)] for name, v in summary.best_params.items()]
        parts.append(el("p", el("strong", best_text)))
        parts.append(_plain_table(["Parameter", "Value"], rows))
    if summary.failures:
        parts.append(
            el(
                "details",
                el("summary", f"{len(summary.failures)} failed trial(s)"),
                el("ul", [el("li", f"trial {n}: {msg}") for n, msg in summary.failures]),
            )
        )
    figs = [
        _figure(figures.get(f"history:{key}"), counter),
        _figure(figures.get(f"importance:{key}"), counter),
        _figure(figures.get(f"pareto:{key}"), counter),
    ]
    if any(figs):
        parts.append(el("div", figs, class_="fig-row"))
    if cell.has_search and summary.importances is None and summary.importance_note:
        parts.append(el("p", f"Parameter importances: {summary.importance_note}.", class_="note"))
    parts.append(_figure(figures.get(f"training:{key}"), counter))
    seed_rows = [
        [
            str(r["seed"]),
            str(r["epochs"]),
            str(r["best_epoch"]),
            r["stop"],
            f"{r['seconds']:,.1f}",
            r["select"],
            fmt_value(r["test_ndcg10"]),
        ]
        for r in final_seed_rows(cell)
    ]
    parts.append(el("p", el("strong", "Final seeds")))
    parts.append(
        _plain_table(
            [
                "Seed",
                "Epochs",
                "Best epoch",
                "Stopped by",
                "Seconds",
                "Validation (selected)",
                "Test NDCG@10",
            ],
            seed_rows,
            numeric={0, 1, 2, 4, 6},
        )
    )
    config = (cell.best or {}).get("config") or next(iter(cell.finals.values())).config
    config_rows = [[k, fmt_param(v)] for k, v in sorted(flat_config(config).items())]
    parts.append(
        el(
            "details",
            el("summary", "Full resolved configuration"),
            _plain_table(["Key", "Value"], config_rows),
        )
    )
    return el("article", parts, class_="cell")


def _section(
    model: ReportModel, section: Section, figures: dict[str, FigureFile], counter: _Counter
) -> Markup:
    parts: list[Any] = [el("h2", f"Results: {section.title}", id=section.anchor)]
    parts.append(_result_table(section.main, counter))
    if section.tuning is not None:
        parts.append(el("h3", "Tuned against paper defaults"))
        parts.append(_result_table(section.tuning, counter))
    if section.buckets is not None:
        parts.append(el("h3", "By popularity of the target item"))
        parts.append(_result_table(section.buckets, counter))
        parts.append(_figure(figures.get(f"buckets:{section.anchor}"), counter))
    if section.users is not None:
        parts.append(el("h3", "By user activity"))
        parts.append(_result_table(section.users, counter))
    parts.append(el("h2", f"Search details: {section.title}", id=f"{section.anchor}-search"))
    for cell in section.cells:
        key = f"{cell.study}/{cell.cell_id}"
        parts.append(_search(model.searches[key], figures, key, counter))
    return el("section", parts)


def render_html(model: ReportModel, figures: dict[str, FigureFile]) -> str:
    """The whole page as one string."""
    counter = _Counter()
    body = [
        _header(model),
        _toc(model),
        _warnings(model),
        _protocol(model, counter),
        _summary(model, counter),
        [_section(model, s, figures, counter) for s in model.sections],
        el(
            "footer",
            "Made by faerec-study from the stored study files only. ",
            "Tables: mean over final seeds on the test split; see results.csv and summary.csv "
            "for every seed, split, group and cut-off.",
        ),
    ]
    head = Markup(
        '<meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta name="generator" content="faerec-study">'
        # defence in depth: no script, frame or remote load can run even if data slipped in
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        "img-src data:; style-src 'unsafe-inline'\">"
        + el("title", model.title)
        + f"<style>{CSS}</style>"
    )
    return (
        "<!DOCTYPE html>\n"
        + el("html", el("head", head), el("body", el("main", body)), lang="en")
        + "\n"
    )
