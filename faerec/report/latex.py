"""The report document's tables as booktabs LaTeX, ready to ``\\input``.

A thin layout of :class:`faerec.report.document.Document` (its tables marked ``paper`` and its
banners): no number is computed and no metric chosen here. Needs ``\\usepackage{booktabs}``
and ``\\usepackage{graphicx}`` (for ``\\resizebox``) in the paper's preamble. Every string is
escaped by :func:`tex`.
"""

from __future__ import annotations

from typing import Any

from faerec.report.document import Banner, Cell, Document, Table
from faerec.report.tables import slug

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
    "\u2021": r"$\ddagger$",
}
_MARKS = {"*": "*", "\u2020": r"\dagger", "\u2021": r"\ddagger"}


def tex(value: Any) -> str:
    """Escape a value for LaTeX text mode (one line)."""
    return "".join(_TEX_ESCAPES.get(ch, ch) for ch in " ".join(str(value).split()))


def _marks(marks: str) -> str:
    if not marks:
        return ""
    return "$^{" + "".join(_MARKS.get(m, "") for m in marks) + "}$"


def _cell(cell: Cell, italic: bool = False) -> str:
    text = r"\texttt{" + tex(cell.value) + "}" if cell.code else tex(cell.value)
    if text and cell.strong:
        text = rf"\textbf{{{text}}}"
    elif text and italic:
        text = rf"\textit{{{text}}}"
    text += _marks(cell.marks + cell.notes)
    if cell.spread:
        text += rf"\,{{\scriptsize$\pm${tex(cell.spread)}}}"
    return text


def _table(table: Table) -> list[str]:
    widths = [s.span for s in table.spans[0]] if table.spans else [table.stub]
    if not table.spans:
        widths.append(len(table.header) - table.stub)
    spec = " ".join("l" * w if i == 0 else "c" * w for i, w in enumerate(widths))
    label = f"tab:{slug(table.key)}"
    lines = [
        r"\begin{table}[t]",
        r"\centering",
        rf"\caption{{{tex(table.caption)}}}",
        rf"\label{{{label}}}",
        r"\resizebox{\textwidth}{!}{%",
        rf"\begin{{tabular}}{{{spec}}}",
        r"\toprule",
    ]
    for spans in table.spans:
        cells, rules, start = [], [], 1
        for span in spans:
            if span.label:
                cells.append(rf"\multicolumn{{{span.span}}}{{c}}{{{tex(span.label)}}}")
                rules.append(rf"\cmidrule(lr){{{start}-{start + span.span - 1}}}")
            else:
                cells += [""] * span.span
            start += span.span
        lines.append(" & ".join(cells) + r" \\")
        lines.append(" ".join(rules))
    lines.append(" & ".join(tex(h) for h in table.header) + r" \\")
    lines.append(r"\midrule")
    for index, row in enumerate(table.rows):
        if index and (row.rule_above or row.kind == "summary"):
            lines.append(r"\midrule")
        italic = row.kind == "summary"
        lines.append(
            " & ".join(_cell(c, italic and i == 0) for i, c in enumerate(row.cells)) + r" \\"
        )
    lines += [r"\bottomrule", r"\end{tabular}}"]
    if table.notes:
        lines.append(
            r"\par\smallskip{\footnotesize " + r" \\ ".join(tex(n) for n in table.notes) + "}"
        )
    lines += [r"\end{table}", ""]
    return lines


def _banner(banner: Banner) -> list[str]:
    items = "".join(rf"\item {tex(i)}" for i in banner.items)
    return [
        r"\noindent\fbox{\parbox{\dimexpr\linewidth-2\fboxsep-2\fboxrule}{%",
        rf"\textbf{{{tex(banner.title)}}}\begin{{itemize}}{items}\end{{itemize}}}}}}",
        "",
    ]


def render_latex(document: Document) -> str:
    lines = [
        "% faerec-study report: " + " ".join(document.title.split()),
        r"% Needs \usepackage{booktabs} and \usepackage{graphicx} in the preamble.",
        "",
    ]
    for banner in document.banners:
        lines += _banner(banner)
    for table in document.tables():
        if table.paper:
            lines += _table(table)
    return "\n".join(lines)
