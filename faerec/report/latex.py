"""booktabs LaTeX tables of the main results (and the popularity buckets), ready to \\input.

Needs ``\\usepackage{booktabs}`` and ``\\usepackage{graphicx}`` (for ``\\resizebox``) in the
paper's preamble. Text from specs or data is escaped by :func:`tex`.
"""

from __future__ import annotations

from typing import Any

from faerec.report.stats import format_p
from faerec.report.tables import (
    MARK_SEEDS,
    MARK_USERS,
    TESTED_KINDS,
    ReportModel,
    ResultTable,
    Section,
    cell_marks,
    fmt_change,
    fmt_value,
    group_label,
    p_value_rows,
    slug,
    table_caption,
)

_TEX_ESCAPES = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "<": r"\textless{}",
    ">": r"\textgreater{}",
    "\u2013": "--",
    "\u00b7": r"\textperiodcentered{}",
    "\u00b1": r"$\pm$",
    "\u2020": r"$\dagger$",
}


def tex(value: Any) -> str:
    """Escape a value for LaTeX text mode (one line)."""
    return "".join(_TEX_ESCAPES.get(ch, ch) for ch in " ".join(str(value).split()))


def _marks(marks: str) -> str:
    if not marks:
        return ""
    symbols = marks.replace(MARK_SEEDS, "*").replace(MARK_USERS, r"\dagger")
    return f"$^{{{symbols}}}$"


def _value(cell: Any) -> str:
    if cell is None:
        return "--"
    value = fmt_value(cell.mean)
    text = rf"\textbf{{{value}}}" if cell.best else value
    text += _marks(cell_marks(cell))
    if cell.std is not None:
        text += rf"\,{{\scriptsize$\pm${fmt_value(cell.std)}}}"
    return text


def _table(table: ResultTable, section: Section) -> list[str]:
    groups = table.groups
    n_columns = len(table.columns)
    spec = "l" + "".join(" " + "c" * len(table.columns_of(g)) for g in groups)
    lines = [
        r"\begin{table}[t]",
        r"\centering",
        rf"\caption{{{tex(table_caption(table))}}}",
        rf"\label{{tab:{slug(table.kind + '-' + section.dataset + '-' + section.backbone)}}}",
        r"\resizebox{\textwidth}{!}{%",
        rf"\begin{{tabular}}{{{spec}}}",
        r"\toprule",
    ]
    top = [""]
    rules = []
    start = 2
    for group in groups:
        span = len(table.columns_of(group))
        top.append(rf"\multicolumn{{{span}}}{{c}}{{{tex(group_label(group))}}}")
        rules.append(rf"\cmidrule(lr){{{start}-{start + span - 1}}}")
        start += span
    lines.append(" & ".join(top) + r" \\")
    lines.append(" ".join(rules))
    lines.append(" & ".join(["Method"] + [tex(c.metric_label) for c in table.columns]) + r" \\")
    lines.append(r"\midrule")
    for row in table.rows:
        cells = [tex(row.label)] + [_value(row.cells.get(c)) for c in table.columns]
        lines.append(" & ".join(cells) + r" \\")
    if table.improvement:
        lines.append(r"\midrule")
        cells = [r"\textit{" + tex(table.improvement_label) + "}"]
        cells += [tex(fmt_change(table.improvement.get(c))) for c in table.columns]
        lines.append(" & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}}", r"\end{table}"]
    if table.kind in TESTED_KINDS and table.has_tests:
        lines.append(f"% p-values of this table ({n_columns} columns, in column order):")
        for label, test, outcomes in p_value_rows(table):
            values = [
                "" if o is None else ("n/a" if o.p_value is None else format_p(o.p_value))
                for o in (outcomes.get(c) for c in table.columns)
            ]
            lines.append(f"%   {' '.join(label.split())} [{test}]: " + ", ".join(values))
    lines.append("")
    return lines


def render_latex(model: ReportModel) -> str:
    lines = [
        "% faerec-study report: " + " ".join(model.title.split()),
        r"% Needs \usepackage{booktabs} and \usepackage{graphicx} in the preamble.",
        "",
    ]
    for section in model.sections:
        lines += _table(section.main, section)
        if section.tuning is not None:
            lines += _table(section.tuning, section)
        if section.buckets is not None:
            lines += _table(section.buckets, section)
    return "\n".join(lines)
