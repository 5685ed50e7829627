"""The report as one format-free document that Markdown, HTML and LaTeX only lay out.

:func:`build_document` turns the numbers of a :class:`~faerec.report.tables.ReportModel` into
plain dataclasses: tables (caption, column groups, header, rows of cells with value, spread,
significance marks and notes), banners, figure references, facts and notes. Every number is
formatted, every metric and cut-off chosen, every table and figure numbered here, so the three
renderers cannot disagree; they escape text and arrange it, nothing else. Text is plain (no
markup); each renderer escapes it for its format.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from faerec.report.stats import USER_TEST_GROUPS, TestOutcome, format_p
from faerec.report.tables import (
    HEADLINE_LABELS,
    MAIN_GROUPS,
    TESTED_KINDS,
    CellCost,
    CellGain,
    Column,
    Headline,
    ReportModel,
    ResultTable,
    SearchSummary,
    TableCell,
    backbone_label,
    convergence_note,
    dataset_label,
    final_seed_rows,
    flat_config,
    fmt_change,
    fmt_count,
    fmt_duration,
    fmt_param,
    fmt_value,
    group_label,
    stat_columns,
    study_wall_seconds,
    trial_counts_text,
)
from faerec.results import RunResult
from faerec.study.sessions import active_seconds
from faerec.text import plural

#: significance marks and the not-converged note, as every format prints them
MARK_SEEDS = "*"
MARK_USERS = "\u2021"
MARK_NOT_CONVERGED = "\u2020"
#: a t-test over fewer seeds than this gets a note beside it
FEW_SEEDS = 3
DASH = "\u2013"


# --- the blocks ------------------------------------------------------------------------------


@dataclass
class Cell:
    """One table cell: a value with its spread, significance marks and note marks."""

    value: str = ""
    spread: str = ""
    marks: str = ""
    notes: str = ""
    strong: bool = False
    code: bool = False
    #: a longer explanation (HTML shows it on hover)
    hint: str = ""


@dataclass
class Span:
    """A column group above the header: ``label`` over ``span`` columns."""

    label: str
    span: int
    sub: str = ""


@dataclass
class Row:
    cells: list[Cell]
    #: "" | "baseline" (the row others are compared with) | "summary" (e.g. improvement)
    kind: str = ""
    #: a rule above this row (a new dataset in the headline table)
    rule_above: bool = False


@dataclass
class Table:
    #: what the table shows: headline, main, tuning, buckets, users, p-values, params, seeds,
    #: config, cost, studies, protocol, datasets
    kind: str
    #: unique in the document (LaTeX labels)
    key: str
    caption: str
    header: list[str]
    rows: list[Row]
    #: column-group rows above ``header``, top first; each row's spans cover every column
    spans: list[list[Span]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    #: leading label columns (left-aligned)
    stub: int = 1
    #: "Table N"; 0 = unnumbered
    number: int = 0
    #: shown folded (HTML/Markdown ``details``)
    collapsed: bool = False
    #: also in report.tex
    paper: bool = True


@dataclass
class Banner:
    title: str
    items: list[str]


@dataclass
class Text:
    text: str
    muted: bool = False
    strong: bool = False


@dataclass
class Facts:
    """``label: value`` pairs on one line."""

    items: list[tuple[str, str]]
    code: bool = False


@dataclass
class Code:
    """Verbatim text (a command or a spec); ``collapsed`` folds it under ``label``."""

    label: str
    text: str
    collapsed: bool = False
    language: str = ""


@dataclass
class Bullets:
    items: list[str]


@dataclass
class FigureRef:
    """A figure drawn by faerec.report.figures, found by ``key`` in the renderer's figures."""

    key: str
    number: int
    caption: str
    alt: str


@dataclass
class Part:
    """A headed part; ``level`` 2 parts are listed in the HTML contents."""

    title: str
    anchor: str
    level: int
    blocks: list[Block]


Block = Table | Banner | Text | Facts | Code | Bullets | FigureRef | Part


@dataclass
class Document:
    title: str
    lead: list[str]
    generated: str
    banners: list[Banner]
    #: the first screen: the headline table
    headline: Part | None
    parts: list[Part]
    footer: str

    def tables(self) -> list[Table]:
        """Every table in document order."""
        found: list[Table] = []

        def walk(blocks: Sequence[Block]) -> None:
            for block in blocks:
                if isinstance(block, Table):
                    found.append(block)
                elif isinstance(block, Part):
                    walk(block.blocks)

        walk(([self.headline] if self.headline else []) + list(self.parts))
        return found


class _FigureInfo(Protocol):
    """What the document needs of a drawn figure (faerec.report.figures.FigureFile)."""

    @property
    def caption(self) -> str: ...

    @property
    def alt(self) -> str: ...


class _Numbers:
    """Numbers tables and figures in document order."""

    def __init__(self, figures: Mapping[str, _FigureInfo]) -> None:
        self.table = 0
        self.figure = 0
        self.figures = figures

    def next_table(self) -> int:
        self.table += 1
        return self.table

    def figure_ref(self, key: str) -> FigureRef | None:
        info = self.figures.get(key)
        if info is None:
            return None
        self.figure += 1
        return FigureRef(key, self.figure, info.caption, info.alt)


# --- cells and captions ----------------------------------------------------------------------


def cell_marks(cell: TableCell) -> str:
    """Significance marks: * (t-test over seeds), \u2021 (Wilcoxon over users)."""
    marks = ""
    if cell.t_test is not None and cell.t_test.significant:
        marks += MARK_SEEDS
    if cell.wilcoxon is not None and cell.wilcoxon.significant:
        marks += MARK_USERS
    return marks


def value_cell(cell: TableCell | None, not_converged: bool) -> Cell:
    if cell is None:
        return Cell(DASH)
    return Cell(
        value=fmt_value(cell.mean),
        spread="" if cell.std is None else fmt_value(cell.std),
        marks=cell_marks(cell),
        notes=MARK_NOT_CONVERGED if not_converged else "",
        strong=cell.best,
    )


def seeds_text(counts: Sequence[int]) -> str:
    counts = sorted(set(counts))
    if counts == [1]:
        return "one seed (no standard deviation)"
    return "mean \u00b1 sample standard deviation over " + "/".join(map(str, counts)) + " seeds"


def marks_text(baseline: str, groups: Sequence[str]) -> str:
    tested = [group_label(g) for g in groups if g in USER_TEST_GROUPS]
    users = ", ".join(tested).lower() if tested else "overall"
    return (
        f"{MARK_SEEDS} p < 0.05, paired t-test over seeds vs {baseline}; {MARK_USERS} p < 0.05, "
        "Wilcoxon signed-rank test over per-user test scores within the column's users "
        f"({users}; users paired within each seed). Not corrected for multiple comparisons."
    )


def weak_test_notes(tables: Sequence[ResultTable]) -> list[str]:
    """Notes beside the tests: t-tests on few seeds, per-user tests that could not run."""
    notes: list[str] = []
    few = sorted(
        {
            cell.t_test.n
            for table in tables
            for row in table.rows
            for cell in row.cells.values()
            if cell.t_test is not None and cell.t_test.n < FEW_SEEDS
        }
    )
    if few:
        notes.append(
            f"{MARK_SEEDS} the t-tests rest on {'/'.join(map(str, few))} shared seeds (fewer than "
            f"{FEW_SEEDS}): weak evidence either way."
        )
    missing: dict[str, list[str]] = {}
    for table in tables:
        for row in table.rows:
            for column, cell in row.cells.items():
                outcome = cell.wilcoxon
                if outcome is not None and outcome.p_value is None and outcome.reason:
                    groups = missing.setdefault(outcome.reason, [])
                    if group_label(column.group) not in groups:
                        groups.append(group_label(column.group))
    for reason, groups in missing.items():
        notes.append(f"{MARK_USERS} {', '.join(groups)}: {reason}.")
    return notes


def not_converged_note(rows_flagged: bool) -> list[str]:
    if not rows_flagged:
        return []
    return [
        f"{MARK_NOT_CONVERGED} not converged: at least one final seed stopped by max_epochs, had "
        "its best epoch at its last validated epoch, or was stopped early within one curriculum "
        "period of its best epoch (listed at the top)."
    ]


def table_caption(table: ResultTable) -> str:
    seeds = seeds_text([len(r.seeds) for r in table.rows])
    base = f"{table.title}: {seeds}."
    if any(cell.best for row in table.rows for cell in row.cells.values()):
        base += " Bold: best per column."
    baseline = next((r.label for r in table.rows if r.is_baseline), "the backbone")
    if table.kind == "validation" and table.has_tests:
        base += (
            f" {MARK_SEEDS} p < 0.05, paired t-test over seeds vs {baseline}. The search chose"
            " the tuned configuration on this score, so its gain here is optimistic: the test"
            " tables are the fair comparison. p-values below."
        )
    elif table.kind in TESTED_KINDS and table.has_tests:
        base += " " + marks_text(baseline, table.groups) + " p-values below."
    if table.kind == "buckets":
        base += " Buckets group test users by the interaction count of their target item."
    if table.kind == "users":
        base += " Head users are the 20% with the longest sequences."
    sizes = ", ".join(f"{group_label(g)}: {n:,}" for g, n in table.group_sizes.items())
    if sizes:
        users = "Validation" if table.kind == "validation" else "Test"
        base += f" {users} users per group: {sizes}."
    return base


# --- result tables ---------------------------------------------------------------------------


def _group_spans(table: ResultTable, stub: int) -> list[Span]:
    spans = [Span("", stub)]
    for group in table.groups:
        size = table.group_sizes.get(group)
        spans.append(
            Span(
                group_label(group),
                len(table.columns_of(group)),
                plural(size, "user") if size else "",
            )
        )
    return spans


def result_table(table: ResultTable, section_key: str, numbers: _Numbers) -> list[Table]:
    """A result table and, for tested kinds, its p-value table (folded)."""
    rows = []
    for row in table.rows:
        cells = [Cell(row.label, hint=f"{row.study}/{row.cell_id}")]
        cells += [value_cell(row.cells.get(c), bool(row.not_converged)) for c in table.columns]
        rows.append(Row(cells, "baseline" if row.is_baseline else ""))
    if table.improvement:
        cells = [Cell(table.improvement_label)]
        cells += [Cell(fmt_change(table.improvement.get(c))) for c in table.columns]
        rows.append(Row(cells, "summary"))
    number = numbers.next_table()
    notes = not_converged_note(any(r.not_converged for r in table.rows))
    if table.kind in TESTED_KINDS:
        notes += weak_test_notes([table])
    out = [
        Table(
            kind=table.kind,
            key=f"{table.kind}-{section_key}",
            caption=table_caption(table),
            header=["Method"] + [c.metric_label for c in table.columns],
            rows=rows,
            spans=[_group_spans(table, 1)],
            notes=notes,
            number=number,
        )
    ]
    if table.kind in TESTED_KINDS and table.has_tests:
        p_values = p_value_table(table, number, section_key)
        if p_values is not None:
            out.append(p_values)
    return out


def _p_cell(outcome: TestOutcome | None) -> Cell:
    if outcome is None:
        return Cell("")
    if outcome.p_value is None:
        return Cell("n/a", hint=outcome.reason)
    return Cell(format_p(outcome.p_value), strong=outcome.significant, hint=f"n = {outcome.n}")


def p_value_table(table: ResultTable, number: int, section_key: str) -> Table | None:
    """Every compared row's p-values per column, each test with a note where it is weak."""
    rows: list[Row] = []
    for row in table.rows:
        if row.is_baseline:
            continue
        t_tests = [row.cells[c].t_test if c in row.cells else None for c in table.columns]
        users = [row.cells[c].wilcoxon if c in row.cells else None for c in table.columns]
        if any(o is not None for o in t_tests):
            n = min((o.n for o in t_tests if o is not None), default=0)
            note = f"{plural(n, 'seed')}: fewer than {FEW_SEEDS}, weak" if n < FEW_SEEDS else ""
            rows.append(
                Row(
                    [Cell(row.label), Cell("t-test (seeds)")]
                    + [_p_cell(o) for o in t_tests]
                    + [Cell(note)]
                )
            )
        if any(o is not None for o in users):
            reasons = dict.fromkeys(
                o.reason for o in users if o is not None and o.p_value is None and o.reason
            )
            rows.append(
                Row(
                    [Cell(row.label), Cell("Wilcoxon (users)")]
                    + [_p_cell(o) for o in users]
                    + [Cell("; ".join(reasons))]
                )
            )
    if not rows:
        return None
    baseline = next((r.label for r in table.rows if r.is_baseline), "the backbone")
    spans = (
        [Span("", 2)]
        + [Span(group_label(g), len(table.columns_of(g))) for g in table.groups]
        + [Span("", 1)]
    )
    return Table(
        kind="p-values",
        key=f"p-{table.kind}-{section_key}",
        caption=f"p-values of Table {number} (vs {baseline}); bold: p < 0.05; n/a: the test "
        "could not run (reason in the note).",
        header=["Method", "Test"] + [c.metric_label for c in table.columns] + ["Note"],
        rows=rows,
        spans=[spans],
        stub=2,
        collapsed=True,
    )


def headline_table(model: ReportModel, headline: Headline, numbers: _Numbers) -> Table:
    """Rows dataset x (backbone, FAERec defaults, FAERec tuned); column groups per backbone."""
    rows: list[Row] = []
    for dataset in headline.datasets:
        for index, kind in enumerate(headline.kinds(dataset)):
            cells = [
                Cell(dataset_label(dataset) if index == 0 else ""),
                Cell(HEADLINE_LABELS[kind]),
            ]
            for backbone in headline.backbones:
                row = headline.rows.get((dataset, backbone, kind))
                for column in headline.columns:
                    if row is None:
                        cells.append(Cell(DASH))
                    else:
                        cells.append(value_cell(row.cells.get(column), bool(row.not_converged)))
            rows.append(Row(cells, "baseline" if kind == "backbone" else "", rule_above=index == 0))
    groups = list(dict.fromkeys(c.group for c in headline.columns))
    per_group = {g: sum(1 for c in headline.columns if c.group == g) for g in groups}
    width = len(headline.columns)
    top = [Span("", 2)] + [Span(backbone_label(b), width) for b in headline.backbones]
    middle = [Span("", 2)] + [
        Span(group_label(g), per_group[g]) for _ in headline.backbones for g in groups
    ]
    header = ["Dataset", "Method"] + [
        c.metric_label for _ in headline.backbones for c in headline.columns
    ]
    blocks = list(headline.blocks.values())
    seeds = seeds_text([len(r.seeds) for t in blocks for r in t.rows])
    tuned = " (its best configuration where it was searched)" if headline.tuned_backbone else ""
    caption = (
        f"Test results of each backbone alone{tuned}, with FAERec at its paper defaults and "
        f"with FAERec tuned (where a search ran): {seeds}. Columns: all test users and those "
        "whose target item is a head or a tail item. Bold: best per column within a dataset. "
        + marks_text("the backbone", groups)
    )
    notes = not_converged_note(any(r.not_converged for r in headline.rows.values()))
    notes += weak_test_notes(blocks)
    return Table(
        kind="headline",
        key="headline",
        caption=caption,
        header=header,
        rows=rows,
        spans=[top, middle],
        notes=notes,
        stub=2,
        number=numbers.next_table(),
    )


def _runs_text(runs: Sequence[RunResult]) -> Cell:
    """Each run's epochs trained, by seed; a run that may not have converged is marked."""
    flagged = any(convergence_note(r) for r in runs)
    epochs = " / ".join(str(r.epochs_trained) for r in runs)
    return Cell(epochs, notes=MARK_NOT_CONVERGED if flagged else "")


def _mean_time(runs: Sequence[RunResult]) -> Cell:
    return Cell(fmt_duration(sum(r.seconds for r in runs) / len(runs)) if runs else DASH)


def gains_table(gains: Sequence[CellGain], numbers: _Numbers) -> Table | None:
    """FAERec against the backbone, one row per dataset, backbone and FAERec row: the table
    across cells, so shown only when the report holds more than one (dataset, backbone)."""
    if len({(g.dataset, g.backbone) for g in gains}) < 2:
        return None
    groups = [g for g in MAIN_GROUPS if any(g in gain.cells for gain in gains)]
    rows = []
    for gain in gains:
        cells = [
            Cell(dataset_label(gain.dataset)),
            Cell(backbone_label(gain.backbone)),
            Cell(HEADLINE_LABELS[gain.kind]),
        ]
        for group in groups:
            cell = gain.cells.get(group)
            if cell is None:
                cells += [Cell(DASH)] * 3
                continue
            cells += [Cell(fmt_change(cell.rel_change)), _p_cell(cell.t_test)]
            cells.append(_p_cell(cell.wilcoxon))
        cells += [_runs_text(gain.backbone_runs), _runs_text(gain.faerec_runs)]
        cells += [_mean_time(gain.backbone_runs), _mean_time(gain.faerec_runs)]
        rows.append(Row(cells))
    metric = gains[0].metric_label
    spans = (
        [Span("", 3)]
        + [Span(f"{group_label(g)}, {metric}", 3) for g in groups]
        + [Span("Epochs, by seed", 2), Span("Time per run", 2)]
    )
    flagged = any(c.notes for row in rows for c in row.cells)
    return Table(
        kind="gains",
        key="gains",
        caption=f"FAERec against the backbone in each dataset and backbone, test {metric}: "
        "change of the mean over seeds, paired t-test over seeds (t) and Wilcoxon signed-rank "
        "test over per-user scores within the group's users (W); bold: p < 0.05, not corrected "
        "for multiple comparisons. Epochs: each final run's epochs trained, by seed (counted "
        "from 1, the last ones without improvement included); time: mean wall time of a final "
        "run (on a shared machine it includes others' use of the cores).",
        header=["Dataset", "Backbone", "FAERec"]
        + ["Change", "p (t)", "p (W)"] * len(groups)
        + ["Backbone", "FAERec", "Backbone", "FAERec"],
        rows=rows,
        spans=[spans],
        notes=not_converged_note(flagged),
        stub=3,
        number=numbers.next_table(),
    )


# --- search details --------------------------------------------------------------------------


def hyperparameter_table(summary: SearchSummary, numbers: _Numbers) -> Table | None:
    """Best parameters beside the preset's."""
    if not summary.best_params:
        return None
    rows = [
        Row(
            [
                Cell(key, code=True),
                Cell(
                    fmt_param(summary.preset_params[key]) if key in summary.preset_params else DASH
                ),
                Cell(fmt_param(value)),
            ]
        )
        for key, value in summary.best_params.items()
    ]
    found = f"trial {summary.best_trial}" if summary.best_trial is not None else "the search"
    objective = summary.objective_names[0] if summary.objective_names else "objective"
    value = (
        f", validation {objective} {fmt_param(summary.best_value)}"
        if summary.best_value is not None
        else ""
    )
    notes = []
    if any(key not in summary.preset_params for key in summary.best_params):
        notes.append(
            f"{DASH}: preset value not stored (neither a retrained preset nor a preset trial)."
        )
    return Table(
        kind="params",
        key=f"params-{summary.cell.study}-{summary.cell.cell_id}",
        caption=f"Best configuration of {summary.label} ({found}{value}) beside the preset.",
        header=["Parameter", "Preset", "Best"],
        rows=rows,
        notes=notes,
        number=numbers.next_table(),
    )


def _search_part(model: ReportModel, summary: SearchSummary, key: str, numbers: _Numbers) -> Part:
    cell = summary.cell
    blocks: list[Block] = []
    facts = [("Cell", f"{cell.study}/{cell.cell_id}")]
    if cell.has_search:
        facts.append(("Search", trial_counts_text(summary)))
        facts.append(
            (
                "Objective",
                ", ".join(
                    f"{n} ({d})"
                    for n, d in zip(summary.objective_names, summary.directions, strict=False)
                ),
            )
        )
        if summary.search_seconds is not None:
            facts.append(("Trial time", fmt_duration(summary.search_seconds)))
    else:
        facts.append(("Search", "none (preset configuration)"))
    blocks.append(Facts(facts))
    params = hyperparameter_table(summary, numbers)
    if params is not None:
        blocks.append(params)
    if summary.failures:
        blocks.append(Bullets([f"failed trial {n}: {message}" for n, message in summary.failures]))
    for kind in ("history", "importance", "pareto"):
        ref = numbers.figure_ref(f"{kind}:{key}")
        if ref is not None:
            blocks.append(ref)
    if (
        cell.has_search
        and summary.importance_note
        and (summary.importances is None or summary.few_trials)
    ):
        blocks.append(Text(f"Parameter importances: {summary.importance_note}.", muted=True))
    ref = numbers.figure_ref(f"training:{key}")
    if ref is not None:
        blocks.append(ref)
    column = Column("overall", model.metrics[0], model.headline_k)
    seed_rows = []
    for r in final_seed_rows(cell, column):
        flag = MARK_NOT_CONVERGED if r["not_converged"] else ""
        seed_rows.append(
            Row(
                [
                    Cell(str(r["seed"])),
                    Cell(str(r["epochs"])),
                    Cell(str(r["best_epoch"])),
                    Cell(r["stop"]),
                    Cell("no" if flag else "yes", notes=flag, hint=r["not_converged"]),
                    Cell(f"{r['seconds']:,.1f}"),
                    Cell(r["select"]),
                    Cell(fmt_value(r["test"])),
                ]
            )
        )
    notes = sorted(
        {
            f"seed {r['seed']}: {r['not_converged']}"
            for r in final_seed_rows(cell, column)
            if r["not_converged"]
        }
    )
    blocks.append(
        Table(
            kind="seeds",
            key=f"seeds-{cell.study}-{cell.cell_id}",
            caption=f"Final seeds of {summary.label} (epochs counted from 1).",
            header=[
                "Seed",
                "Epochs",
                "Best epoch",
                "Stopped by",
                "Converged",
                "Seconds",
                "Validation (selected)",
                f"Test {column.metric_label}",
            ],
            rows=seed_rows,
            notes=[f"{MARK_NOT_CONVERGED} {n}" for n in notes],
            paper=False,
        )
    )
    config = (cell.best or {}).get("config") or next(iter(cell.finals.values())).config
    blocks.append(
        Table(
            kind="config",
            key=f"config-{cell.study}-{cell.cell_id}",
            caption="Full resolved configuration",
            header=["Key", "Value"],
            rows=[
                Row([Cell(k, code=True), Cell(fmt_param(v))])
                for k, v in sorted(flat_config(config).items())
            ],
            stub=2,
            collapsed=True,
            paper=False,
        )
    )
    return Part(summary.label, f"cell-{cell.study}-{cell.cell_id}", 3, blocks)


# --- cost ------------------------------------------------------------------------------------


def _cpu_hours(seconds: float, recorded: int, epochs: int) -> str:
    """CPU-hours of ``recorded`` epochs out of ``epochs``: the share when not all recorded it."""
    if not recorded:
        return DASH
    text = f"{seconds / 3600:.2f}"
    return text if recorded == epochs else f"{text} ({recorded} of {epochs} epochs)"


def cost_table(costs: Sequence[CellCost], numbers: _Numbers) -> Table:
    rows = []
    for cost in costs:
        counts = cost.counts
        rows.append(
            Row(
                [
                    Cell(cost.label, hint=f"{cost.study}/{cost.cell_id}"),
                    Cell(", ".join(cost.devices) or DASH),
                    Cell(DASH if counts is None else str(counts.complete)),
                    Cell(DASH if counts is None else str(counts.pruned)),
                    Cell(DASH if counts is None else str(counts.failed)),
                    Cell(_hours(cost.trial_seconds)),
                    Cell(fmt_duration(cost.search_wall_seconds)),
                    Cell(str(cost.n_final)),
                    Cell(fmt_duration(cost.final_seconds)),
                    Cell(fmt_duration(cost.total_seconds)),
                    Cell(_cpu_hours(cost.cpu_seconds, cost.cpu_epochs, cost.epochs)),
                ]
            )
        )
    trial_seconds = [c.trial_seconds for c in costs if c.trial_seconds is not None]
    rows.append(
        Row(
            [
                Cell("All cells"),
                Cell(""),
                Cell(str(sum(c.counts.complete for c in costs if c.counts))),
                Cell(str(sum(c.counts.pruned for c in costs if c.counts))),
                Cell(str(sum(c.counts.failed for c in costs if c.counts))),
                Cell(_hours(sum(trial_seconds)) if trial_seconds else DASH),
                Cell(""),
                Cell(str(sum(c.n_final for c in costs))),
                Cell(fmt_duration(sum(c.final_seconds for c in costs))),
                Cell(fmt_duration(sum(c.total_seconds for c in costs))),
                Cell(
                    _cpu_hours(
                        sum(c.cpu_seconds for c in costs),
                        sum(c.cpu_epochs for c in costs),
                        sum(c.epochs for c in costs),
                    )
                ),
            ],
            "summary",
        )
    )
    return Table(
        kind="cost",
        key="cost",
        caption=(
            "Cost per cell. Trials: complete, pruned and failed trials of its search. "
            "Trial-hours: the trials' run times summed. Search wall: first trial start to last "
            "trial end (Optuna's timestamps, pauses of a stopped study included). Final: the "
            "final runs and their run times summed. Total: search wall + final time. "
            "CPU-hours: the CPU time of the trials' and final runs' processes, summed over their "
            "epochs (on a shared machine the run times also count the time others held the "
            "cores); where only some epochs recorded it (runs of older versions), the share "
            "that did is given. Device: where the final runs ran."
        ),
        header=[
            "Cell",
            "Device",
            "Complete",
            "Pruned",
            "Failed",
            "Trial-hours",
            "Wall",
            "Runs",
            "Time",
            "Total",
            "CPU-hours",
        ],
        rows=rows,
        spans=[[Span("", 2), Span("Trials", 3), Span("Search", 2), Span("Final", 2), Span("", 2)]],
        stub=2,
        number=numbers.next_table(),
    )


def _hours(seconds: float | None) -> str:
    return DASH if seconds is None else f"{seconds / 3600:,.2f}"


# --- protocol --------------------------------------------------------------------------------


def _protocol(model: ReportModel, numbers: _Numbers) -> Part:
    studies: list[Block] = [
        Table(
            kind="studies",
            key="studies",
            caption="",
            header=["Study", "Spec hash", "Created", "Updated", "Cells"],
            rows=[
                Row(
                    [
                        Cell(s.name),
                        Cell(str(s.meta.get("spec_hash", "")), code=True),
                        Cell(str(s.meta.get("created", ""))),
                        Cell(str(s.meta.get("updated", ""))),
                        Cell(str(len(s.cells))),
                    ]
                )
                for s in model.studies
            ],
            stub=4,
            paper=False,
        )
    ]
    for study in model.studies:
        if study.meta.get("command"):
            studies.append(Code(f"Study command ({study.name})", str(study.meta["command"])))
    if model.command:
        studies.append(Code("Report command", model.command))
    for study in model.studies:
        if study.spec_text:
            studies.append(
                Code(f"Study spec of {study.name} (spec.yaml)", study.spec_text, True, "yaml")
            )
    blocks: list[Block] = [Part("Studies", "studies", 3, studies)]
    protocol = Table(
        kind="protocol",
        key="protocol",
        caption="Evaluation protocol of the final runs; where cells differ, each value with its "
        "cells.",
        header=["Setting", "Value"],
        rows=[
            Row([Cell(item.label), Cell("; ".join(item.mixed) if item.mixed else item.value)])
            for item in model.protocol
        ],
        stub=2,
        paper=False,
    )
    blocks.append(Part("Evaluation protocol", "evaluation-protocol", 3, [protocol]))
    if model.datasets:
        columns = stat_columns(model.datasets)
        buckets = list(dict.fromkeys(b for s in model.datasets for b in s.items_per_bucket))
        rows = []
        for stats in model.datasets:
            cells = [Cell(dataset_label(stats.dataset))]
            cells += [Cell(fmt_count(stats.values.get(k, ""))) for k, _ in columns]
            cells += [Cell(fmt_count(stats.items_per_bucket.get(b, ""))) for b in buckets]
            rows.append(Row(cells))
        blocks.append(
            Part(
                "Datasets",
                "datasets",
                3,
                [
                    Table(
                        kind="datasets",
                        key="datasets",
                        caption="Dataset statistics (from the final runs' data_stats). Item "
                        "buckets count items by their number of interactions.",
                        header=["Dataset"]
                        + [label for _, label in columns]
                        + [f"Items {b}" for b in buckets],
                        rows=rows,
                        number=numbers.next_table(),
                        paper=False,
                    )
                ],
            )
        )
    if model.environment:
        blocks.append(
            Part("Software and environment", "environment", 3, [Facts(model.environment)])
        )
    return Part("Protocol and data", "protocol", 2, blocks)


# --- the document ----------------------------------------------------------------------------


def not_converged_banner(model: ReportModel) -> Banner | None:
    if not model.not_converged:
        return None
    return Banner(
        f"Not converged ({MARK_NOT_CONVERGED} in the tables): "
        f"{plural(len(model.not_converged), 'final run')} may have stopped too soon (each "
        "with its reason); more epochs may change these numbers",
        [
            f"{n.label} ({n.study}/{n.cell_id}), seed {n.seed}: {n.reason}"
            for n in model.not_converged
        ],
    )


def build_document(model: ReportModel, figures: Mapping[str, _FigureInfo]) -> Document:
    """The whole report as blocks; ``figures`` are the drawn figures by key (those missing are
    left out, so figure numbers count only drawn ones)."""
    numbers = _Numbers(figures)
    banners = [b for b in (not_converged_banner(model),) if b is not None]
    if model.warnings:
        banners.append(Banner("Check before comparing numbers", list(model.warnings)))
    headline = None
    if model.headline is not None:
        top: list[Block] = [headline_table(model, model.headline, numbers)]
        gains = gains_table(model.gains, numbers)
        headline = Part("Headline results", "headline", 2, top + ([gains] if gains else []))
    parts = [_protocol(model, numbers)]
    for section in model.sections:
        blocks: list[Block] = list(result_table(section.main, section.anchor, numbers))
        if section.tuning is not None:
            tuning: list[Block] = list(result_table(section.tuning, section.anchor, numbers))
            if section.validation is not None:
                tuning += result_table(section.validation, section.anchor, numbers)
            blocks.append(
                Part("Tuned against paper defaults", f"{section.anchor}-tuning", 3, tuning)
            )
        if section.buckets is not None:
            inner: list[Block] = list(result_table(section.buckets, section.anchor, numbers))
            ref = numbers.figure_ref(f"buckets:{section.anchor}")
            if ref is not None:
                inner.append(ref)
            blocks.append(
                Part("By popularity of the target item", f"{section.anchor}-buckets", 3, inner)
            )
        if section.users is not None:
            blocks.append(
                Part(
                    "By user activity",
                    f"{section.anchor}-users",
                    3,
                    list(result_table(section.users, section.anchor, numbers)),
                )
            )
        parts.append(Part(f"Results: {section.title}", section.anchor, 2, blocks))
        searches: list[Block] = []
        for cell in section.cells:
            key = f"{cell.study}/{cell.cell_id}"
            searches.append(_search_part(model, model.searches[key], key, numbers))
        parts.append(
            Part(f"Search details: {section.title}", f"{section.anchor}-search", 2, searches)
        )
    cost_blocks: list[Block] = [cost_table(model.costs, numbers)]
    facts: list[tuple[str, str]] = []
    for study in model.studies:
        active = active_seconds(study.sessions)
        if active is not None:
            runs = plural(len(study.sessions), "driver session")
            facts.append((f"Study running time ({study.name})", f"{fmt_duration(active)} ({runs})"))
        facts.append((f"Study wall time ({study.name})", fmt_duration(study_wall_seconds(study))))
    cost_blocks.append(Facts(facts))
    cost_blocks.append(
        Text(
            "Running time: the drivers' sessions summed (sessions.json; a killed driver counts "
            "to its last sign of life, at most a minute short), pauses between a stop and its "
            "resume excluded; absent for studies run before sessions were recorded. Wall time: "
            "study.json created to updated, pauses included.",
            muted=True,
        )
    )
    parts.append(Part("Cost", "cost", 2, cost_blocks))
    return Document(
        title=model.title,
        lead=[s.description for s in model.studies if s.description],
        generated=f"Generated {model.generated}." if model.generated else "",
        banners=banners,
        headline=headline,
        parts=parts,
        footer=(
            "Made by faerec-study from the stored study files only. Tables: means over final "
            "seeds on the test split; every seed, split, group and cut-off is in results.csv; "
            "means, changes and p-values in summary.csv."
        ),
    )


__all__ = [
    "Banner",
    "Block",
    "Bullets",
    "Cell",
    "Code",
    "Document",
    "Facts",
    "FigureRef",
    "Part",
    "Row",
    "Span",
    "Table",
    "Text",
    "build_document",
]
