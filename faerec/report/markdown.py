"""The report as GitHub-flavoured Markdown, with figures referenced as figures/*.png.

Text from specs or data goes through :func:`md` (HTML-escaped, Markdown punctuation and
table pipes escaped), so a study description cannot inject markup into a rendered README.
"""

from __future__ import annotations

import html
import re
from typing import Any

from faerec.report.figures import FigureFile
from faerec.report.stats import format_p
from faerec.report.tables import (
    MARK_SEEDS,
    TESTED_KINDS,
    ReportModel,
    ResultTable,
    SearchSummary,
    Section,
    backbone_label,
    cell_marks,
    dataset_label,
    final_seed_rows,
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


def _table(headers: list[str], rows: list[list[str]], align: list[str] | None = None) -> list[str]:
    align = align or ["l"] + ["r"] * (len(headers) - 1)
    rule = ["---:" if a == "r" else ":---" for a in align]
    lines = ["| " + " | ".join(headers) + " |", "| " + " | ".join(rule) + " |"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


class _Counter:
    def __init__(self) -> None:
        self.table = 0
        self.figure = 0


def _figure(figure: FigureFile | None, counter: _Counter) -> list[str]:
    if figure is None:
        return []
    counter.figure += 1
    return [
        f"![{md(figure.alt)}](figures/{figure.png.name})",
        "",
        f"*Figure {counter.figure}.* {md(figure.caption)}",
        "",
    ]


def _value(cell: Any) -> str:
    if cell is None:
        return "\u2013"
    value = fmt_value(cell.mean)
    text = f"**{value}**" if cell.best else value
    marks = cell_marks(cell)
    if marks:
        text += "<sup>" + marks.replace(MARK_SEEDS, "\\" + MARK_SEEDS) + "</sup>"
    if cell.std is not None:
        text += f" \u00b1 {fmt_value(cell.std)}"
    return text


def _result_table(table: ResultTable, counter: _Counter) -> list[str]:
    counter.table += 1
    headers = ["Method"]
    for column in table.columns:
        headers.append(f"{md(group_label(column.group))} {column.metric_label}")
    rows = []
    for row in table.rows:
        rows.append([md(row.label)] + [_value(row.cells.get(c)) for c in table.columns])
    if table.improvement:
        rows.append(
            [f"*{md(table.improvement_label)}*"]
            + [fmt_change(table.improvement.get(c)) for c in table.columns]
        )
    sizes = ", ".join(f"{md(group_label(g))}: {n:,}" for g, n in table.group_sizes.items())
    lines = _table(headers, rows)
    lines += ["", f"*Table {counter.table}.* {md(table_caption(table))}"]
    if sizes:
        lines[-1] += f" Test users per group: {sizes}."
    lines.append("")
    if table.kind in TESTED_KINDS and table.has_tests:
        lines += _p_values(table, counter.table)
    return lines


def _p_values(table: ResultTable, number: int) -> list[str]:
    rows = p_value_rows(table)
    if not rows:
        return []
    baseline = next((r.label for r in table.rows if r.is_baseline), "the backbone")
    headers = ["Method", "Test"] + [
        f"{md(group_label(c.group))} {c.metric_label}" for c in table.columns
    ]
    body = []
    for label, test, outcomes in rows:
        cells = []
        for column in table.columns:
            outcome = outcomes.get(column)
            if outcome is None:
                cells.append("")
            elif outcome.p_value is None:
                cells.append("n/a")
            else:
                text = format_p(outcome.p_value)
                cells.append(f"**{md(text)}**" if outcome.significant else md(text))
        body.append([md(label), md(test)] + cells)
    lines = [f"<details><summary>p-values of Table {number} (vs {md(baseline)})</summary>", ""]
    lines += _table(headers, body, ["l", "l"] + ["r"] * len(table.columns))
    lines += [
        "",
        "Bold: p < 0.05. n/a: fewer than two shared seeds or identical differences.",
        "",
        "</details>",
        "",
    ]
    return lines


def _spec_block(name: str, text: str) -> list[str]:
    """The spec verbatim in a collapsed fenced block (code is shown as text, never rendered).

    The fence is longer than any backtick run inside, so the spec cannot close it early.
    """
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    body = text.rstrip("\n")
    return [
        f"<details><summary>Study spec of {md(name)} (spec.yaml)</summary>",
        "",
        f"{fence}yaml",
        *body.splitlines(),
        fence,
        "",
        "</details>",
        "",
    ]


def _protocol(model: ReportModel, counter: _Counter) -> list[str]:
    lines = ["## Protocol and data", ""]
    rows = [
        [
            md(s.name),
            _code(s.meta.get("spec_hash", "")),
            md(s.meta.get("created", "")),
            md(s.meta.get("updated", "")),
            str(len(s.cells)),
        ]
        for s in model.studies
    ]
    lines += _table(
        ["Study", "Spec hash", "Created", "Updated", "Cells"], rows, ["l", "l", "l", "l", "r"]
    )
    lines.append("")
    for study in model.studies:
        if study.meta.get("command"):
            lines += [f"Study command ({md(study.name)}): {_code(study.meta['command'])}", ""]
    if model.command:
        lines += [f"Report command: {_code(model.command)}", ""]
    for study in model.studies:
        if study.spec_text:
            lines += _spec_block(study.name, study.spec_text)
    lines += ["### Evaluation protocol", ""]
    for item in model.protocol:
        lines.append(f"- **{md(item.label)}:** {md(item.value)}")
        lines += [f"  - {md(m)}" for m in item.mixed]
    lines.append("")
    if model.datasets:
        columns = stat_columns(model.datasets)
        buckets = list(dict.fromkeys(b for s in model.datasets for b in s.items_per_bucket))
        headers = ["Dataset"] + [md(label) for _, label in columns]
        headers += [f"Items {md(b)}" for b in buckets]
        body = []
        for stats in model.datasets:
            row = [md(dataset_label(stats.dataset))]
            row += [md(fmt_count(stats.values.get(k, ""))) for k, _ in columns]
            row += [md(fmt_count(stats.items_per_bucket.get(b, ""))) for b in buckets]
            body.append(row)
        counter.table += 1
        lines += ["### Datasets", ""] + _table(headers, body)
        lines += [
            "",
            f"*Table {counter.table}.* Dataset statistics (from the final runs' "
            "data\\_stats). Item buckets count items by their number of interactions.",
            "",
        ]
    if model.environment:
        lines += ["### Software and environment", ""]
        lines += ["- " + "; ".join(f"{md(k)}: {md(v)}" for k, v in model.environment), ""]
    return lines


def _summary(model: ReportModel, counter: _Counter) -> list[str]:
    if len(model.sections) < 2:
        return []
    rows = []
    for section in model.sections:
        table = section.main
        base = next((r for r in table.rows if r.is_baseline), None)
        ours = next((r for r in table.rows if r.method == "faerec"), None)
        if base is None or ours is None:
            continue
        row = [md(dataset_label(section.dataset)), md(backbone_label(section.backbone))]
        for group in table.groups:
            column = next(
                (c for c in table.columns_of(group) if c.metric == "ndcg" and c.k == 10), None
            ) or next((c for c in table.columns_of(group) if c.metric == "ndcg"), None)
            b = base.cells.get(column) if column else None
            o = ours.cells.get(column) if column else None
            row += [
                fmt_value(b.mean) if b else "\u2013",
                _value(o).split(" \u00b1")[0],
                fmt_change(o.rel_change) if o else "\u2013",
            ]
        rows.append(row)
    if not rows:
        return []
    first = model.sections[0].main
    headers = ["Dataset", "Backbone"]
    for group in first.groups:
        headers += [f"{md(group_label(group))} backbone", "+ FAERec", "Improv."]
    counter.table += 1
    return (
        ["## Summary across datasets", ""]
        + _table(headers, rows)
        + [
            "",
            f"*Table {counter.table}.* FAERec against its backbone on every dataset, test "
            "NDCG@10 (mean over seeds; marks as in the per-dataset tables).",
            "",
        ]
    )


def _search(
    summary: SearchSummary, figures: dict[str, FigureFile], key: str, counter: _Counter
) -> list[str]:
    cell = summary.cell
    lines = [f"#### {md(summary.label)}", ""]
    facts = [f"Cell {_code(cell.cell_id)}"]
    if cell.has_search:
        facts.append(md(trial_counts_text(summary)))
        facts.append(
            "objective "
            + md(
                ", ".join(
                    f"{n} ({d})"
                    for n, d in zip(summary.objective_names, summary.directions, strict=False)
                )
            )
        )
    else:
        facts.append("no search (preset configuration)")
    lines += ["; ".join(facts) + ".", ""]
    if summary.best_params:
        value = summary.best_value
        head = (
            f"Best configuration (trial {summary.best_trial}, validation {md(fmt_param(value))})"
            if value is not None
            else "Best configuration"
        )
        lines += [f"**{head}**", ""]
        lines += _table(
            ["Parameter", "Value"],
            [[_code(k), md(fmt_param(v))] for k, v in summary.best_params.items()],
            ["l", "l"],
        )
        lines.append("")
    for number, message in summary.failures:
        lines.append(f"- failed trial {number}: {md(message)}")
    if summary.failures:
        lines.append("")
    for kind in ("history", "importance", "pareto"):
        lines += _figure(figures.get(f"{kind}:{key}"), counter)
    if cell.has_search and summary.importances is None and summary.importance_note:
        lines += [f"Parameter importances: {md(summary.importance_note)}.", ""]
    lines += _figure(figures.get(f"training:{key}"), counter)
    rows = [
        [
            str(r["seed"]),
            str(r["epochs"]),
            str(r["best_epoch"]),
            md(r["stop"]),
            f"{r['seconds']:,.1f}",
            md(r["select"]),
            fmt_value(r["test_ndcg10"]),
        ]
        for r in final_seed_rows(cell)
    ]
    lines += _table(
        [
            "Seed",
            "Epochs",
            "Best epoch",
            "Stopped by",
            "Seconds",
            "Validation (selected)",
            "Test NDCG@10",
        ],
        rows,
        ["r", "r", "r", "l", "r", "l", "r"],
    )
    lines.append("")
    return lines


def _section(
    model: ReportModel, section: Section, figures: dict[str, FigureFile], counter: _Counter
) -> list[str]:
    lines = [f"## Results: {md(section.title)}", ""]
    lines += _result_table(section.main, counter)
    if section.tuning is not None:
        lines += ["### Tuned against paper defaults", ""]
        lines += _result_table(section.tuning, counter)
    if section.buckets is not None:
        lines += ["### By popularity of the target item", ""]
        lines += _result_table(section.buckets, counter)
        lines += _figure(figures.get(f"buckets:{section.anchor}"), counter)
    if section.users is not None:
        lines += ["### By user activity", ""]
        lines += _result_table(section.users, counter)
    lines += [f"## Search details: {md(section.title)}", ""]
    for cell in section.cells:
        key = f"{cell.study}/{cell.cell_id}"
        lines += _search(model.searches[key], figures, key, counter)
    return lines


def render_markdown(model: ReportModel, figures: dict[str, FigureFile]) -> str:
    counter = _Counter()
    lines = [f"# {md(model.title)}", ""]
    for study in model.studies:
        if study.description:
            lines += [md(study.description), ""]
    if model.generated:
        lines += [f"Generated {md(model.generated)}.", ""]
    if model.warnings:
        lines += ["> **Check before comparing numbers:**", ">"]
        lines += [f"> - {md(w)}" for w in model.warnings]
        lines.append("")
    lines += _protocol(model, counter)
    lines += _summary(model, counter)
    for section in model.sections:
        lines += _section(model, section, figures, counter)
    lines += [
        "---",
        "",
        "Made by faerec-study from the stored study files only. Every seed, "
        "split, group and cut-off is in results.csv; means, changes and p-values in "
        "summary.csv.",
        "",
    ]
    return "\n".join(lines)
