"""From loaded studies to the report's tables: one format-free model that every renderer uses.

Markdown, HTML and LaTeX all render the same :class:`ReportModel`, so a number, a bold best
value or a significance mark can never differ between the formats. Nothing here formats
markup; :func:`fmt_value` and friends format plain numbers only.
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from faerec.config import METHODS, curriculum_period, flatten
from faerec.errors import ConfigError
from faerec.report.load import CellRecord, StudyRecord, open_optuna_study, tidy_frame
from faerec.report.stats import (
    USER_TEST_GROUPS,
    TestOutcome,
    paired_t_test,
    paired_user_wilcoxon,
)
from faerec.results import RunResult
from faerec.study.lock import StudyLock
from faerec.study.reference import DEFAULTS_SUFFIX, reference_method
from faerec.study.sessions import last_seen
from faerec.study.store import TrialCounts, count_trials
from faerec.text import plural

BACKBONE_LABELS = {
    "sasrec": "SASRec",
    "fmlprec": "FMLP-Rec",
    "lrurec": "LRURec",
    "gru4rec": "GRU4Rec",
}
DATASET_LABELS = {"beauty": "Beauty", "yelp": "Yelp", "ml-100k": "ML-100K"}
#: Row labels; ``{b}`` is the backbone's label.
METHOD_LABELS = {
    "backbone": "{b}",
    "faerec": "{b} + FAERec",
    "faerec-defaults": "{b} + FAERec, paper defaults",
    "faerec-no-gate": "FAERec w/o gate",
    "faerec-no-item": "FAERec w/o item alignment",
    "faerec-no-feature": "FAERec w/o feature alignment",
    "faerec-no-align": "FAERec w/o alignment",
    "faerec-no-curriculum": "FAERec w/o curriculum",
    "faerec-no-split": "FAERec w/o popularity split",
    "faerec-id-scoring": "FAERec, ID-only scoring",
}
GROUP_LABELS = {
    "overall": "Overall",
    "head_items": "Head items",
    "tail_items": "Tail items",
    "head_users": "Head users",
    "tail_users": "Tail users",
}
MAIN_GROUPS = ("overall", "head_items", "tail_items")
USER_GROUPS = ("head_users", "tail_users")
METRIC_LABELS = {"hr": "HR", "ndcg": "NDCG"}
DEFAULT_KS = (10, 20)
#: the metrics of every result table, in column order (``--metrics`` chooses others)
DEFAULT_METRICS = ("ndcg", "hr")
#: the cut-off of the headline table, the bucket table and chart (``--ks`` chooses others)
HEADLINE_K = 10
#: rows of the headline table: the backbone, FAERec with its preset, FAERec tuned
HEADLINE_KINDS = ("backbone", "defaults", "tuned")
HEADLINE_LABELS = {
    "backbone": "Backbone",
    "defaults": "FAERec, paper defaults",
    "tuned": "FAERec, tuned",
}
#: result tables whose rows are tested against their baseline row (p-values shown)
TESTED_KINDS = ("main", "tuning", "validation")


def dataset_label(name: str) -> str:
    return DATASET_LABELS.get(name, name)


def backbone_label(name: str) -> str:
    return BACKBONE_LABELS.get(name, name)


def method_label(method: str, backbone: str) -> str:
    """A row label; ``<method>-defaults`` (a cell's preset, retrained) ends in "paper defaults"."""
    if method not in METHOD_LABELS and method.endswith(DEFAULTS_SUFFIX):
        base = method.removesuffix(DEFAULTS_SUFFIX)
        return f"{method_label(base, backbone)}, paper defaults"
    return METHOD_LABELS.get(method, method).format(b=backbone_label(backbone))


def group_label(group: str) -> str:
    if group.startswith("bucket_"):
        return group.removeprefix("bucket_").replace("-", "\u2013")
    return GROUP_LABELS.get(group, group.replace("_", " "))


def method_order(method: str) -> tuple[int, int, str]:
    """Backbone first, FAERec next, then ablations in METHODS order, then unknown names; a
    method's paper-defaults row comes just before the method's own (tuned) row."""
    names = list(METHODS)
    base = method.removesuffix(DEFAULTS_SUFFIX)
    tuned = 0 if base != method and base in names else 1
    if base in names:
        return (names.index(base), tuned, method)
    return (len(names), 1, method)


def bucket_order(group: str) -> float:
    """Buckets sorted by their lowest count ('bucket_10-19' -> 10)."""
    match = re.match(r"bucket_(\d+)", group)
    return float(match.group(1)) if match else math.inf


# --- number formatting (plain text; renderers add markup) ----------------------------------


def fmt_value(value: float | None, digits: int = 4) -> str:
    return "\u2013" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def fmt_change(change: float | None) -> str:
    """A relative change as a signed percentage ('+12.3%')."""
    if change is None or math.isnan(change) or math.isinf(change):
        return "\u2013"
    return f"{change * 100:+.1f}%"


def fmt_duration(seconds: float | None) -> str:
    """'42.0 s', '3 min 12 s', '2 h 05 min'."""
    if seconds is None or math.isnan(seconds):
        return "\u2013"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def fmt_count(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, float) and not value.is_integer():
        return f"{value:,.2f}"
    return f"{int(value):,}"


# --- the result tables ---------------------------------------------------------------------


@dataclass(frozen=True)
class Column:
    """One metric column: a user group, a metric and a cut-off."""

    group: str
    metric: str
    k: int

    @property
    def metric_label(self) -> str:
        return f"{METRIC_LABELS.get(self.metric, self.metric)}@{self.k}"

    @property
    def key(self) -> str:
        return f"{self.group}/{self.metric}@{self.k}"


@dataclass
class TableCell:
    mean: float
    #: sample standard deviation over seeds (None with one seed)
    std: float | None
    n_seeds: int
    #: (mean - baseline mean) / baseline mean; None for the baseline itself
    rel_change: float | None = None
    t_test: TestOutcome | None = None
    wilcoxon: TestOutcome | None = None
    best: bool = False


@dataclass
class TableRow:
    method: str
    label: str
    study: str
    cell_id: str
    seeds: list[int]
    cells: dict[Column, TableCell]
    is_baseline: bool = False
    #: final seeds that stopped at max_epochs or whose best epoch is the last validated one
    not_converged: list[int] = field(default_factory=list)


@dataclass
class ResultTable:
    """Methods (rows) by metric columns for one dataset and backbone."""

    kind: str  # "main" | "buckets" | "users"
    title: str
    columns: list[Column]
    rows: list[TableRow]
    #: label of each column group with its n_users in the test split, in column order
    group_sizes: dict[str, int]
    #: FAERec's relative change vs the backbone per column (empty without both rows)
    improvement: dict[Column, float | None] = field(default_factory=dict)
    improvement_label: str = ""

    @property
    def groups(self) -> list[str]:
        """Column groups in order, each once."""
        return list(dict.fromkeys(c.group for c in self.columns))

    def columns_of(self, group: str) -> list[Column]:
        return [c for c in self.columns if c.group == group]

    @property
    def has_tests(self) -> bool:
        return any(
            cell.t_test is not None or cell.wilcoxon is not None
            for row in self.rows
            for cell in row.cells.values()
        )


@dataclass
class SearchSummary:
    """What the search of one cell did and found."""

    cell: CellRecord
    label: str
    counts: dict[str, int]
    n_trials_target: int | None
    objective_names: list[str]
    directions: list[str]
    #: (trial number, value(s), state) of every trial, for the history plot
    history: pd.DataFrame
    best_params: dict[str, Any]
    best_value: Any
    best_trial: int | None
    importances: dict[str, float] | None
    importance_note: str
    #: Pareto-optimal trials of a two-metric search: (number, values)
    pareto: list[tuple[int, list[float]]]
    #: values of every complete trial of a two-metric search
    all_values: list[tuple[int, list[float]]]
    failures: list[tuple[int, str]]
    #: sum of the trials' seconds (trials.csv)
    search_seconds: float | None
    #: the trials by state, as the study counts them (faerec.study.store.count_trials)
    tally: TrialCounts = field(default_factory=TrialCounts)
    #: first trial start to last trial end (Optuna's timestamps)
    search_wall_seconds: float | None = None
    #: the preset's value of each best parameter (retrained preset, else the preset trial)
    preset_params: dict[str, Any] = field(default_factory=dict)
    #: importances rest on fewer than FEW_TRIALS_FOR_IMPORTANCE completed trials
    few_trials: bool = False


@dataclass
class Section:
    """Everything about one (dataset, backbone) pair."""

    dataset: str
    backbone: str
    main: ResultTable
    buckets: ResultTable | None
    users: ResultTable | None
    cells: list[CellRecord]
    #: tuned against paper defaults (rows: each searched method and its ``-defaults`` row)
    tuning: ResultTable | None = None
    #: every method on validation at its selected epoch, tested against the paper defaults
    validation: ResultTable | None = None

    @property
    def title(self) -> str:
        return f"{dataset_label(self.dataset)} \u00b7 {backbone_label(self.backbone)}"

    @property
    def anchor(self) -> str:
        return slug(f"{self.dataset}-{self.backbone}")


def slug(text: str) -> str:
    """A file- and anchor-safe name (figure files, HTML ids)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-").lower() or "x"


def summarise(tidy: pd.DataFrame) -> pd.DataFrame:
    """Mean, sample std and seed count per (study, dataset, backbone, method, split, group, k)."""
    keys = ["study", "dataset", "backbone", "method", "split", "group", "metric", "k"]
    grouped = tidy.groupby(keys, sort=False)
    out = grouped["value"].agg(mean="mean", std="std", n_seeds="count").reset_index()
    out["n_users"] = grouped["n_users"].max().to_numpy()
    return out


#: (study, dataset, backbone, method, group, metric, k) -> {seed: value on one split}
SeedIndex = dict[tuple[str, str, str, str, str, str, int], dict[int, float]]


def seed_index(tidy: pd.DataFrame, split: str = "test") -> SeedIndex:
    """Values by seed on ``split`` for fast lookups (the tables ask for every cell many times)."""
    index: SeedIndex = {}
    test = tidy[tidy["split"] == split]
    columns = ["study", "dataset", "backbone", "method", "group", "metric", "k", "seed", "value"]
    for study, dataset, backbone, method, group, metric, k, seed, value in test[columns].itertuples(
        index=False
    ):
        key = (study, dataset, backbone, method, group, metric, int(k))
        index.setdefault(key, {})[int(seed)] = float(value)
    return index


def _row_cells(
    index: SeedIndex, study: str, dataset: str, backbone: str, method: str, columns: list[Column]
) -> dict[Column, TableCell]:
    cells: dict[Column, TableCell] = {}
    for column in columns:
        by_seed = index.get(
            (study, dataset, backbone, method, column.group, column.metric, column.k)
        )
        if not by_seed:
            continue
        values = np.array(list(by_seed.values()), dtype=np.float64)
        std = float(values.std(ddof=1)) if values.size > 1 else None
        cells[column] = TableCell(mean=float(values.mean()), std=std, n_seeds=int(values.size))
    return cells


def _mark_best(rows: list[TableRow], columns: list[Column]) -> None:
    """Bold the highest mean of each column (every tie is bold)."""
    for column in columns:
        means = [row.cells[column].mean for row in rows if column in row.cells]
        if len(means) < 2:
            continue
        top = max(means)
        for row in rows:
            cell = row.cells.get(column)
            if cell is not None and math.isclose(cell.mean, top, rel_tol=0.0, abs_tol=1e-12):
                cell.best = True


def column_key(column: Column) -> tuple[str, str, int]:
    return (column.group, column.metric, column.k)


def build_table(
    kind: str,
    title: str,
    tidy: pd.DataFrame,
    index: SeedIndex,
    cells: list[CellRecord],
    dataset: str,
    backbone: str,
    columns: list[Column],
    *,
    with_tests: bool,
    baseline: str = "backbone",
    split: str = "test",
) -> ResultTable:
    """Rows = the cells' methods; each compared with the ``baseline`` method's row (the backbone
    unless said otherwise; same study preferred). ``index`` holds the values of ``split``;
    per-user tests exist for the test split only (runs keep their test ranks alone)."""
    several_studies = len({c.study for c in cells}) > 1
    ordered = sorted(cells, key=lambda c: (method_order(c.method), c.study))
    rows: list[TableRow] = []
    for cell in ordered:
        label = method_label(cell.method, backbone)
        if several_studies:
            label = f"{label} ({cell.study})"
        row_cells = _row_cells(index, cell.study, dataset, backbone, cell.method, columns)
        rows.append(
            TableRow(
                method=cell.method,
                label=label,
                study=cell.study,
                cell_id=cell.cell_id,
                seeds=sorted(cell.finals),
                cells=row_cells,
                is_baseline=cell.method == baseline,
                not_converged=[s for s, r in sorted(cell.finals.items()) if convergence_note(r)],
            )
        )
    by_cell = {c.cell_id + "@" + c.study: c for c in cells}
    baselines = [r for r in rows if r.is_baseline]
    for row in rows:
        if row.is_baseline or not baselines:
            continue
        base = next((b for b in baselines if b.study == row.study), baselines[0])
        for column, cell_value in row.cells.items():
            base_cell = base.cells.get(column)
            if base_cell is None:
                continue
            cell_value.rel_change = (
                (cell_value.mean - base_cell.mean) / base_cell.mean if base_cell.mean else None
            )
            if not with_tests:
                continue
            where = (dataset, backbone)
            ours = index.get((row.study, *where, row.method, *column_key(column)), {})
            theirs = index.get((base.study, *where, base.method, *column_key(column)), {})
            shared = sorted(set(ours) & set(theirs))
            cell_value.t_test = paired_t_test(
                [ours[s] for s in shared], [theirs[s] for s in shared]
            )
            if column.group in USER_TEST_GROUPS and split == "test":
                cell_value.wilcoxon = paired_user_wilcoxon(
                    by_cell[row.cell_id + "@" + row.study].finals,
                    by_cell[base.cell_id + "@" + base.study].finals,
                    column.metric,
                    column.k,
                    column.group,
                )
    _mark_best(rows, columns)
    improvement: dict[Column, float | None] = {}
    improvement_label = ""
    faerec_rows = [r for r in rows if r.method == "faerec"]
    if baselines and faerec_rows:
        improvement = {c: v.rel_change for c, v in faerec_rows[0].cells.items()}
        improvement_label = "Improv. of FAERec" if baseline == "backbone" else "Improv. of tuning"
    group_sizes: dict[str, int] = {}
    test = tidy[
        (tidy["split"] == split) & (tidy["dataset"] == dataset) & (tidy["backbone"] == backbone)
    ]
    for group in dict.fromkeys(c.group for c in columns):
        sizes = test[test["group"] == group]["n_users"]
        if not sizes.empty:
            group_sizes[group] = int(sizes.max())
    return ResultTable(
        kind=kind,
        title=title,
        columns=columns,
        rows=rows,
        group_sizes=group_sizes,
        improvement=improvement,
        improvement_label=improvement_label,
    )


def _tuning_table(
    tidy: pd.DataFrame,
    index: SeedIndex,
    cells: list[CellRecord],
    dataset: str,
    backbone: str,
    columns: list[Column],
    name: str,
) -> ResultTable | None:
    """The tuned configuration tested against the paper defaults (the preset retrained over the
    same seeds); None when no searched cell has its reference runs."""
    methods = {c.method for c in cells}
    pairs = [m for m in methods if reference_method(m) in methods]
    if not pairs:
        return None
    method = sorted(pairs, key=method_order)[0]
    chosen = [c for c in cells if c.method in (method, reference_method(method))]
    return build_table(
        "tuning",
        f"Tuned against paper defaults on {name}",
        tidy,
        index,
        chosen,
        dataset,
        backbone,
        columns,
        with_tests=True,
        baseline=reference_method(method),
    )


def _validation_table(
    tidy: pd.DataFrame,
    cells: list[CellRecord],
    dataset: str,
    backbone: str,
    metrics: Sequence[str],
    name: str,
) -> ResultTable | None:
    """Each method's validation score at its selected epoch, at the model-selection cut-off,
    against the paper defaults: what the search maximised, so the tuned row is chosen on it
    (the test tables are the unbiased comparison). None without a selection metric."""
    methods = {c.method for c in cells}
    searched = sorted((m for m in methods if reference_method(m) in methods), key=method_order)
    finals = [r for c in cells for r in c.finals.values()]
    if not searched or not finals:
        return None
    select = finals[0].select_metric  # e.g. "ndcg@20"; one selection rule per cell
    _, _, k_text = select.partition("@")
    if not k_text.isdigit():
        return None
    columns = [Column("overall", metric, int(k_text)) for metric in metrics]
    return build_table(
        "validation",
        f"Validation at each run's selected epoch on {name}",
        tidy,
        seed_index(tidy, "valid"),
        cells,
        dataset,
        backbone,
        columns,
        with_tests=True,
        baseline=reference_method(searched[0]),
        split="valid",
    )


def available_ks(tidy: pd.DataFrame, wanted: Sequence[int], *, required: bool = False) -> list[int]:
    """The wanted cut-offs that were measured; all measured ones if none of them was.

    ``required`` (cut-offs the user asked for): a cut-off that was not measured is an error,
    never silently replaced by others.
    """
    measured = sorted({int(k) for k in tidy["k"].unique()})
    missing = [k for k in wanted if k not in measured]
    if required and missing:
        raise ConfigError(
            f"--ks: K = {', '.join(map(str, missing))} not measured; these studies measured "
            f"K = {', '.join(map(str, measured))} (their eval.ks)"
        )
    chosen = [k for k in wanted if k in measured]
    return chosen or measured


def available_metrics(tidy: pd.DataFrame, wanted: Sequence[str] | None) -> list[str]:
    """The metrics of the tables: those asked for (each must have been measured; ConfigError
    otherwise), or DEFAULT_METRICS where measured."""
    measured = sorted({str(m) for m in tidy["metric"].unique()})
    if wanted is None:
        return [m for m in DEFAULT_METRICS if m in measured] or measured
    missing = [m for m in wanted if m not in measured]
    if missing:
        raise ConfigError(
            f"--metrics: {', '.join(missing)} not measured; these studies measured "
            f"{', '.join(measured)}"
        )
    return list(dict.fromkeys(wanted))


def build_sections(
    studies: list[StudyRecord],
    tidy: pd.DataFrame,
    ks: Sequence[int] = DEFAULT_KS,
    metrics: Sequence[str] = DEFAULT_METRICS,
    headline_k: int = HEADLINE_K,
) -> list[Section]:
    """One section per (dataset, backbone), in order of first appearance."""
    cells = [cell for study in studies for cell in study.cells]
    pairs = list(dict.fromkeys((c.dataset, c.backbone) for c in cells))
    main_ks = available_ks(tidy, ks)
    index = seed_index(tidy)
    sections: list[Section] = []
    for dataset, backbone in pairs:
        pair_cells = [c for c in cells if (c.dataset, c.backbone) == (dataset, backbone)]
        pair_tidy = tidy[(tidy["dataset"] == dataset) & (tidy["backbone"] == backbone)]
        groups = set(pair_tidy[pair_tidy["split"] == "test"]["group"].unique())
        main_columns = [
            Column(group, metric, k)
            for group in MAIN_GROUPS
            if group in groups
            for k in main_ks
            for metric in metrics
        ]
        name = f"{dataset_label(dataset)}, {backbone_label(backbone)}"
        main = build_table(
            "main",
            f"Test results on {name}",
            tidy,
            index,
            pair_cells,
            dataset,
            backbone,
            main_columns,
            with_tests=True,
        )
        bucket_groups = sorted((g for g in groups if g.startswith("bucket_")), key=bucket_order)
        buckets = None
        if bucket_groups:
            bucket_columns = [Column(g, m, headline_k) for g in bucket_groups for m in metrics]
            buckets = build_table(
                "buckets",
                f"Test results by target-item popularity on {name}",
                tidy,
                index,
                pair_cells,
                dataset,
                backbone,
                bucket_columns,
                with_tests=False,
            )
        user_groups = [g for g in USER_GROUPS if g in groups]
        users = None
        if user_groups:
            user_columns = [Column(g, m, headline_k) for g in user_groups for m in metrics]
            users = build_table(
                "users",
                f"Test results by user activity on {name}",
                tidy,
                index,
                pair_cells,
                dataset,
                backbone,
                user_columns,
                with_tests=False,
            )
        tuning = _tuning_table(tidy, index, pair_cells, dataset, backbone, main_columns, name)
        validation = None
        if tuning is not None:
            validation = _validation_table(tidy, pair_cells, dataset, backbone, metrics, name)
        sections.append(
            Section(dataset, backbone, main, buckets, users, pair_cells, tuning, validation)
        )
    return sections


def summary_frame(tidy: pd.DataFrame, sections: list[Section]) -> pd.DataFrame:
    """Every (study, dataset, backbone, method, split, group, metric, k): mean, std, n, change, p.

    This is the ``summary.csv`` next to the tidy ``results.csv``: all cut-offs, valid and test;
    relative change and p-values against the backbone on the test split; how many of the
    row's final seeds did not converge (:func:`convergence_note`).
    """
    out = summarise(tidy)
    out["rel_change_vs_backbone"] = np.nan
    out["p_ttest_seeds"] = np.nan
    out["p_wilcoxon_users"] = np.nan
    base_rows = out[out["method"] == "backbone"]
    keys = ["dataset", "backbone", "split", "group", "metric", "k"]
    base_mean = {
        (row.study, *(getattr(row, k) for k in keys)): row.mean for row in base_rows.itertuples()
    }
    any_base = {tuple(getattr(row, k) for k in keys): row.mean for row in base_rows.itertuples()}
    changes: list[float] = []
    for row in out.itertuples():
        key = tuple(getattr(row, k) for k in keys)
        base = base_mean.get((row.study, *key), any_base.get(key))
        changes.append((row.mean - base) / base if row.method != "backbone" and base else math.nan)
    out["rel_change_vs_backbone"] = changes
    tests: dict[tuple[Any, ...], TableCell] = {}
    for section in sections:
        for row in section.main.rows:
            for column, cell in row.cells.items():
                tests[
                    (
                        row.study,
                        section.dataset,
                        section.backbone,
                        row.method,
                        column.group,
                        column.metric,
                        column.k,
                    )
                ] = cell
    p_t: list[float] = []
    p_w: list[float] = []
    for row in out.itertuples():
        found = (
            tests.get(
                (row.study, row.dataset, row.backbone, row.method, row.group, row.metric, row.k)
            )
            if row.split == "test"
            else None
        )
        t = found.t_test.p_value if found is not None and found.t_test is not None else None
        w = found.wilcoxon.p_value if found is not None and found.wilcoxon is not None else None
        p_t.append(math.nan if t is None else t)
        p_w.append(math.nan if w is None else w)
    out["p_ttest_seeds"] = p_t
    out["p_wilcoxon_users"] = p_w
    flagged = {
        (cell.study, cell.dataset, cell.backbone, cell.method): sum(
            1 for result in cell.finals.values() if convergence_note(result)
        )
        for section in sections
        for cell in section.cells
    }
    out["not_converged_seeds"] = [
        flagged.get((row.study, row.dataset, row.backbone, row.method), 0)
        for row in out.itertuples()
    ]
    return out


# --- the headline table across cells and studies -------------------------------------------


def headline_kind(cell: CellRecord, cells: Sequence[CellRecord]) -> str | None:
    """The headline row of a cell: "backbone", "defaults" (FAERec's preset: a cell without a
    search, or a searched cell's retrained preset), "tuned" (FAERec searched), else None."""
    if cell.method == "backbone":
        return "backbone"
    if cell.method == reference_method("faerec"):
        return "defaults"
    if cell.method != "faerec":
        return None
    has_reference = any(
        c.study == cell.study and c.info.get("reference_of") == cell.cell_id for c in cells
    )
    return "tuned" if cell.has_search or has_reference else "defaults"


@dataclass
class Headline:
    """One table of every dataset and backbone: rows dataset x HEADLINE_KINDS, column groups
    per backbone. Each (dataset, backbone) block is a ResultTable of its own, so its tests
    and best marks are those of that block."""

    datasets: list[str]
    backbones: list[str]
    columns: list[Column]
    blocks: dict[tuple[str, str], ResultTable]
    #: (dataset, backbone, kind) -> the block's row
    rows: dict[tuple[str, str, str], TableRow]
    #: cells left out because another cell of the same dataset, backbone and kind came first
    left_out: list[str] = field(default_factory=list)
    #: some backbone row is a searched backbone (its best configuration)
    tuned_backbone: bool = False

    def kinds(self, dataset: str) -> list[str]:
        """The kinds with a row for ``dataset`` in any backbone, in HEADLINE_KINDS order."""
        return [
            k for k in HEADLINE_KINDS if any((dataset, b, k) in self.rows for b in self.backbones)
        ]


def build_headline(
    studies: list[StudyRecord],
    tidy: pd.DataFrame,
    index: SeedIndex,
    ks: Sequence[int],
    metrics: Sequence[str],
) -> Headline | None:
    """The paper table; None when no cell is a backbone or FAERec row."""
    cells = [cell for study in studies for cell in study.cells]
    datasets = list(dict.fromkeys(c.dataset for c in cells))
    backbones = list(dict.fromkeys(c.backbone for c in cells))
    test_groups = set(tidy[tidy["split"] == "test"]["group"].unique())
    columns = [
        Column(group, metric, k)
        for group in MAIN_GROUPS
        if group in test_groups
        for k in ks
        for metric in metrics
    ]
    blocks: dict[tuple[str, str], ResultTable] = {}
    rows: dict[tuple[str, str, str], TableRow] = {}
    left_out: list[str] = []
    for dataset in datasets:
        for backbone in backbones:
            pair = [c for c in cells if (c.dataset, c.backbone) == (dataset, backbone)]
            chosen: dict[str, CellRecord] = {}
            for cell in pair:
                kind = headline_kind(cell, pair)
                if kind is None:
                    continue
                if kind in chosen:
                    left_out.append(f"{cell.study}/{cell.cell_id}")
                    continue
                chosen[kind] = cell
            if not chosen:
                continue
            table = build_table(
                "headline",
                f"{dataset_label(dataset)}, {backbone_label(backbone)}",
                tidy,
                index,
                list(chosen.values()),
                dataset,
                backbone,
                columns,
                with_tests=True,
            )
            blocks[(dataset, backbone)] = table
            for kind, cell in chosen.items():
                rows[(dataset, backbone, kind)] = next(
                    r for r in table.rows if (r.study, r.cell_id) == (cell.study, cell.cell_id)
                )
    if not blocks:
        return None
    return Headline(
        datasets=[d for d in datasets if any(key[0] == d for key in blocks)],
        backbones=[b for b in backbones if any(key[1] == b for key in blocks)],
        columns=columns,
        blocks=blocks,
        rows=rows,
        left_out=left_out,
        tuned_backbone=any(c.has_search for c in cells if headline_kind(c, cells) == "backbone"),
    )


@dataclass
class CellGain:
    """FAERec against the plain backbone in one (dataset, backbone) block of the headline: the
    change of the headline metric in each user group, with its tests, and what the runs took."""

    dataset: str
    backbone: str
    #: "defaults" | "tuned" (HEADLINE_KINDS)
    kind: str
    #: the FAERec row's cell at the headline's first metric and cut-off, by user group
    cells: dict[str, TableCell]
    metric_label: str
    #: the final runs of the backbone row and of the FAERec row, by seed
    backbone_runs: list[RunResult]
    faerec_runs: list[RunResult]


def cell_gains(studies: list[StudyRecord], headline: Headline | None) -> list[CellGain]:
    """One entry per FAERec row of the headline whose block has a backbone row too."""
    if headline is None:
        return []
    records = {(c.study, c.cell_id): c for study in studies for c in study.cells}
    firsts: dict[str, Column] = {}
    for column in headline.columns:
        firsts.setdefault(column.group, column)
    gains = []
    for dataset, backbone in headline.blocks:
        base = headline.rows.get((dataset, backbone, "backbone"))
        for kind in HEADLINE_KINDS[1:]:
            row = headline.rows.get((dataset, backbone, kind))
            if base is None or row is None:
                continue
            gains.append(
                CellGain(
                    dataset=dataset,
                    backbone=backbone,
                    kind=kind,
                    cells={g: row.cells[c] for g, c in firsts.items() if c in row.cells},
                    metric_label=next(iter(firsts.values())).metric_label,
                    backbone_runs=_runs(records[(base.study, base.cell_id)]),
                    faerec_runs=_runs(records[(row.study, row.cell_id)]),
                )
            )
    return gains


def _runs(cell: CellRecord) -> list[RunResult]:
    return [result for _, result in sorted(cell.finals.items())]


# --- convergence and cost --------------------------------------------------------------------


def convergence_note(result: RunResult) -> str:
    """Why a final run may not have converged ("" when it stopped early on a past best epoch):
    it stopped at max_epochs, its best epoch is its last validated epoch, or early stopping
    ended it within one period of a cosine curriculum after its best epoch, before the
    curriculum's weights came back round (docs/results.md: such a run can climb again)."""
    validated = [h.epoch for h in result.history if h.valid is not None]
    last = max(validated) if validated else result.epochs_trained - 1
    reasons = []
    if result.stop_reason == "max_epochs":
        reasons.append(f"stopped by max_epochs after {plural(result.epochs_trained, 'epoch')}")
    if result.best_epoch >= last:
        reasons.append(f"its best epoch ({result.best_epoch + 1}) is its last validated epoch")
    period = curriculum_period(flatten(result.config))
    if result.stop_reason == "early_stopping" and period and last - result.best_epoch < period:
        reasons.append(
            f"early stopping ended it {plural(last - result.best_epoch, 'epoch')} after its best, "
            f"within one curriculum period ({period} epochs)"
        )
    return "; ".join(reasons)


@dataclass
class NotConverged:
    """A final run that may not have converged, for the banner."""

    study: str
    cell_id: str
    label: str
    seed: int
    reason: str


def not_converged_runs(studies: list[StudyRecord]) -> list[NotConverged]:
    out = []
    for study in studies:
        for cell in study.cells:
            label = (
                f"{dataset_label(cell.dataset)} \u00b7 {method_label(cell.method, cell.backbone)}"
            )
            for seed, result in sorted(cell.finals.items()):
                reason = convergence_note(result)
                if reason:
                    out.append(NotConverged(study.name, cell.cell_id, label, seed, reason))
    return out


@dataclass
class CellCost:
    """What one cell cost: its search (if any) and its final runs."""

    study: str
    cell_id: str
    label: str
    devices: list[str]
    #: None without a search
    counts: TrialCounts | None
    #: sum of the trials' seconds (trials.csv)
    trial_seconds: float | None
    #: first trial start to last trial end (Optuna's timestamps); pauses between runs included
    search_wall_seconds: float | None
    final_seconds: float
    n_final: int
    #: CPU seconds of the trials' and final runs' processes over the epochs that recorded them
    cpu_seconds: float = 0.0
    #: epochs that recorded their CPU time, of all epochs trained (trials and final runs)
    cpu_epochs: int = 0
    epochs: int = 0

    @property
    def total_seconds(self) -> float:
        return (self.search_wall_seconds or 0.0) + self.final_seconds


def cell_costs(
    model_searches: dict[str, SearchSummary], studies: list[StudyRecord]
) -> list[CellCost]:
    out = []
    for study in studies:
        for cell in study.cells:
            summary = model_searches[f"{cell.study}/{cell.cell_id}"]
            devices = sorted(
                {
                    str(r.environment.get("device"))
                    for r in cell.finals.values()
                    if r.environment.get("device")
                }
            )
            out.append(
                CellCost(
                    study=study.name,
                    cell_id=cell.cell_id,
                    label=summary.label,
                    devices=devices,
                    counts=summary.tally if cell.has_search else None,
                    trial_seconds=summary.search_seconds,
                    search_wall_seconds=summary.search_wall_seconds,
                    final_seconds=float(sum(r.seconds for r in cell.finals.values())),
                    n_final=len(cell.finals),
                    **_cpu_time(cell),
                )
            )
    return out


def _cpu_time(cell: CellRecord) -> dict[str, Any]:
    """CPU seconds of a cell's trial epochs (epochs.csv) and final-run epochs (their
    histories), with how many epochs recorded them (older studies did not)."""
    recorded = [e.cpu_seconds for r in cell.finals.values() for e in r.history]
    if not cell.epochs.empty:
        column = cell.epochs.get("cpu_seconds")
        values = pd.to_numeric(column, errors="coerce") if column is not None else None
        recorded += [None] * len(cell.epochs) if values is None else values.tolist()
    known = [float(v) for v in recorded if v is not None and not math.isnan(float(v))]
    return {"cpu_seconds": sum(known), "cpu_epochs": len(known), "epochs": len(recorded)}


def study_wall_seconds(study: StudyRecord) -> float | None:
    """study.json ``created`` to ``updated``, or to the drivers' last sign of life when later
    (a snapshot of a running study); pauses between a stop and its resume included."""
    try:
        created = datetime.fromisoformat(str(study.meta["created"]))
        updated = datetime.fromisoformat(str(study.meta["updated"]))
    except (KeyError, ValueError):
        return None
    end = max(updated, last_seen(study.sessions) or updated)
    return max(0.0, (end - created).total_seconds())


# --- header: studies, protocol, datasets, environment ---------------------------------------

PROTOCOL_KEYS: tuple[tuple[str, str], ...] = (
    ("eval.mode", "Ranking"),
    ("eval.masking", "Scoring of history / padding"),
    ("data.head_ratio", "Head items"),
    ("data.popularity_source", "Popularity counted on"),
    ("faerec.scoring", "FAERec item table at evaluation"),
    ("embedding.model", "LLM embedding model"),
    ("data.max_seq_length", "Max. sequence length"),
    ("train.select_metric", "Model selection (validation)"),
    ("train.max_epochs", "Max. epochs"),
    ("train.patience", "Early-stopping patience"),
    ("eval.ks", "Cut-offs K"),
)


def _describe_protocol_value(key: str, value: Any, config: dict[str, Any]) -> str:
    if key == "eval.mode":
        if value == "sampled":
            return f"sampled: the answer vs {config['eval']['num_negatives']} random negatives"
        return "full ranking over all items"
    if key == "eval.masking":
        return {
            "official": "official (history scored 0, padding rankable)",
            "clean": "clean (history and padding excluded)",
        }.get(str(value), str(value))
    if key == "data.head_ratio":
        return f"top {float(value) * 100:g}% of items by interaction count"
    if key == "data.popularity_source":
        return {
            "full": "full sequences, valid and test included (official)",
            "train": "training interactions only",
        }.get(str(value), str(value))
    if key == "faerec.scoring":
        return {
            "official": "official: LN(E_id + Mapper(E_llm))",
            "id": "E_id only",
            "gated": "gated ID and LLM views",
        }.get(str(value), str(value))
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return str(value)


def _config_value(config: dict[str, Any], key: str) -> Any:
    section, _, name = key.partition(".")
    return config.get(section, {}).get(name)


@dataclass
class ProtocolItem:
    label: str
    value: str
    #: set when cells differ: "value (cells)" for each distinct value
    mixed: list[str] = field(default_factory=list)


def protocol_items(studies: list[StudyRecord]) -> list[ProtocolItem]:
    """The evaluation protocol as label/value pairs; differing cells are listed, not hidden."""
    cells = [cell for study in studies for cell in study.cells]
    items = [ProtocolItem("Split", "leave-one-out (last item test, second-to-last validation)")]
    for key, label in PROTOCOL_KEYS:
        seen: dict[str, list[str]] = {}
        for cell in cells:
            result = next(iter(cell.finals.values()))
            config = result.config
            faerec_only = key.startswith(("faerec.", "embedding."))
            if faerec_only and not config.get("faerec", {}).get("enabled"):
                continue
            value = _config_value(config, key)
            if value is None:
                continue
            text = _describe_protocol_value(key, value, config)
            seen.setdefault(text, []).append(cell.cell_id)
        if not seen:
            continue
        if len(seen) == 1:
            items.append(ProtocolItem(label, next(iter(seen))))
        else:
            mixed = [f"{text} ({', '.join(ids)})" for text, ids in seen.items()]
            items.append(ProtocolItem(label, "differs between cells", mixed))
    seeds = sorted({seed for cell in cells for seed in cell.finals})
    items.append(ProtocolItem("Final seeds", ", ".join(str(s) for s in seeds)))
    return items


DATA_STAT_LABELS = (
    ("users", "Users"),
    ("items", "Items"),
    ("interactions", "Interactions"),
    ("avg_length", "Avg. length"),
    ("n_eval_users", "Test users"),
    ("n_head_items", "Head items"),
    ("n_tail_items", "Tail items"),
)
#: data_stats keys that are shown elsewhere, are not statistics or repeat another column
_DATA_STAT_SKIP = {
    "dataset",
    "fingerprint",
    "items_per_bucket",
    "head_ratio",
    "popularity_source",
    "n_train",
    "n_valid",
    "n_test",
    "n_head_users",
    "max_len",
}


@dataclass
class DatasetStats:
    dataset: str
    values: dict[str, Any]
    items_per_bucket: dict[str, int]
    fingerprint: str
    #: cells whose data statistics differ from the first cell of the dataset
    differing_cells: list[str]


def dataset_stats(studies: list[StudyRecord]) -> list[DatasetStats]:
    out: dict[str, DatasetStats] = {}
    for study in studies:
        for cell in study.cells:
            stats = next(iter(cell.finals.values())).data_stats or {}
            if cell.dataset not in out:
                out[cell.dataset] = DatasetStats(
                    dataset=cell.dataset,
                    values={k: v for k, v in stats.items() if k not in _DATA_STAT_SKIP},
                    items_per_bucket=_by_bucket_bound(stats.get("items_per_bucket") or {}),
                    fingerprint=str(stats.get("fingerprint") or ""),
                    differing_cells=[],
                )
            else:
                first = out[cell.dataset]
                shown = {k: v for k, v in stats.items() if k not in _DATA_STAT_SKIP}
                if shown != first.values:
                    first.differing_cells.append(cell.cell_id)
    return list(out.values())


def stat_columns(stats: list[DatasetStats]) -> list[tuple[str, str]]:
    """(key, label) of the statistics columns: known ones in order, then any others."""
    present = {
        k
        for s in stats
        for k, v in s.values.items()
        if isinstance(v, (int, float)) and not isinstance(v, bool)
    }
    known = [(k, label) for k, label in DATA_STAT_LABELS if k in present]
    known_keys = {k for k, _ in known}
    extra = sorted(k for k in present if k not in known_keys)
    return known + [(k, k.replace("_", " ")) for k in extra]


def environment_items(studies: list[StudyRecord]) -> list[tuple[str, str]]:
    """Package versions (study.json) and the run environment of the final seeds."""
    items: dict[str, set[str]] = {}
    for study in studies:
        for name, version in (study.meta.get("versions") or {}).items():
            items.setdefault(str(name), set()).add(str(version))
        for cell in study.cells:
            for result in cell.finals.values():
                for name, value in (result.environment or {}).items():
                    if isinstance(value, (str, int, float, bool)):
                        items.setdefault(str(name), set()).add(str(value))
    return [(name, ", ".join(sorted(values))) for name, values in items.items()]


# --- per-cell search summary ----------------------------------------------------------------


def _trial_history_from_csv(cell: CellRecord) -> pd.DataFrame:
    trials = cell.trials
    frame = pd.DataFrame(
        {
            "number": trials["number"].astype(int),
            "state": trials["state"].astype(str),
            "value": pd.to_numeric(trials["value"], errors="coerce"),
        }
    )
    return frame.sort_values("number").reset_index(drop=True)


def search_summary(cell: CellRecord, reference: CellRecord | None = None) -> SearchSummary:
    """Trials, best configuration and parameter importances of one cell.

    Optuna's journal is the source when it exists (it also holds two-metric searches);
    trials.csv adds failure messages and timings, and stands in when there is no journal.
    ``reference`` is the cell's retrained preset (its ``-defaults`` cell), the first source of
    the preset values shown beside the best ones.
    """
    label = f"{dataset_label(cell.dataset)} \u00b7 {method_label(cell.method, cell.backbone)}"
    objective_names = cell.objective_names
    directions = cell.directions
    importances: dict[str, float] | None = None
    importance_note = ""
    pareto: list[tuple[int, list[float]]] = []
    all_values: list[tuple[int, list[float]]] = []
    search_wall: float | None = None
    preset: dict[str, Any] = {}
    few_trials = False
    study = open_optuna_study(cell) if cell.has_search else None
    if study is not None:
        directions = [d.name.lower() for d in study.directions]
        if study.metric_names:
            objective_names = list(study.metric_names)
        rows = []
        for trial in study.trials:
            values = trial.values or []
            steps = trial.intermediate_values
            rows.append(
                {
                    "number": trial.number,
                    "state": trial.state.name,
                    "value": values[0] if values else math.nan,
                    "values": list(values),
                    "last_value": steps[max(steps)] if steps else math.nan,
                }
            )
        history = pd.DataFrame(rows, columns=["number", "state", "value", "values", "last_value"])
        complete = [t for t in study.trials if t.state.name == "COMPLETE" and t.values]
        if len(study.directions) > 1:
            all_values = [(t.number, list(t.values)) for t in complete]
            pareto = sorted((t.number, list(t.values)) for t in study.best_trials)
        importances, importance_note = _importances(study, len(complete))
        few_trials = len(complete) < FEW_TRIALS_FOR_IMPORTANCE
        starts = [t.datetime_start for t in study.trials if t.datetime_start is not None]
        ends = [t.datetime_complete for t in study.trials if t.datetime_complete is not None]
        if starts and ends:
            search_wall = max(0.0, (max(ends) - min(starts)).total_seconds())
        preset = _preset_trial_params(study)
    elif not cell.trials.empty:
        history = _trial_history_from_csv(cell)
        importance_note = "parameter importances need the Optuna journal, which is missing"
    else:
        history = pd.DataFrame(columns=["number", "state", "value", "values"])
    while len(objective_names) < len(directions):
        objective_names.append(f"objective {len(objective_names)}")
    tally = count_trials(study.trials if study is not None else cell.trials.to_dict("records"))
    counts = {"COMPLETE": tally.complete, "PRUNED": tally.pruned, "FAIL": tally.failed}
    # a trial is running only while a driver holds the study's lock; otherwise it was cut short
    live = tally.running and StudyLock.holder(cell.store.study_root) is not None
    interrupted = tally.interrupted + (0 if live else tally.running)
    if interrupted:
        counts["INTERRUPTED"] = interrupted
    if live:
        counts["RUNNING"] = tally.running
    failures: list[tuple[int, str]] = []
    search_seconds = None
    if not cell.trials.empty:
        if "error" in cell.trials.columns:
            # an interrupted attempt is counted, not listed: a retry stands in for it
            retried = set()
            if "retry_of" in cell.trials.columns:
                retry_of = pd.to_numeric(cell.trials["retry_of"], errors="coerce").dropna()
                retried = {int(n) for n in retry_of}
            for row in cell.trials.itertuples():
                error = getattr(row, "error", None)
                if isinstance(error, str) and error.strip() and int(row.number) not in retried:
                    failures.append((int(row.number), error.strip().splitlines()[0]))
        if "seconds" in cell.trials.columns:
            search_seconds = float(pd.to_numeric(cell.trials["seconds"], errors="coerce").sum())
    best = cell.best or {}
    if reference is not None and reference.finals:
        reference_config = flatten(next(iter(reference.finals.values())).config)
        preset = {k: reference_config[k] for k in best.get("params") or {} if k in reference_config}
    target = cell.info.get("n_trials_target")
    return SearchSummary(
        cell=cell,
        label=label,
        counts=counts,
        n_trials_target=int(target) if isinstance(target, (int, float)) else None,
        objective_names=objective_names,
        directions=directions,
        history=history,
        best_params=dict(best.get("params") or {}),
        best_value=best.get("value"),
        best_trial=best.get("trial"),
        importances=importances,
        importance_note=importance_note,
        pareto=pareto,
        all_values=all_values,
        failures=failures,
        search_seconds=search_seconds,
        tally=tally,
        search_wall_seconds=search_wall,
        preset_params=preset,
        few_trials=few_trials,
    )


def _preset_trial_params(study: Any) -> dict[str, Any]:
    """The preset's values from the search's first trial, enqueued as the preset
    (faerec.study.reference); where the space could not hold a value, the preset's own."""
    from faerec.study.reference import ADJUSTED_ATTR, REFERENCE_ATTR

    trial = next((t for t in study.trials if t.user_attrs.get(REFERENCE_ATTR)), None)
    if trial is None:
        return {}
    params = dict(trial.params)
    for key, change in (trial.user_attrs.get(ADJUSTED_ATTR) or {}).items():
        if isinstance(change, dict) and "preset" in change:
            params[key] = change["preset"]
    return params


MIN_TRIALS_FOR_IMPORTANCE = 3
#: below this many completed trials importances are shown with a warning beside them
FEW_TRIALS_FOR_IMPORTANCE = 10


def _importances(study: Any, n_complete: int) -> tuple[dict[str, float] | None, str]:
    """Optuna's own importance evaluator (its default, PED-ANOVA), with its warnings as notes."""
    import optuna

    if n_complete < MIN_TRIALS_FOR_IMPORTANCE:
        return None, (
            f"too few completed trials for parameter importances ({n_complete}; "
            f"at least {MIN_TRIALS_FOR_IMPORTANCE} needed)"
        )
    params = sorted({p for t in study.trials if t.state.name == "COMPLETE" for p in t.params})
    if not params:
        return None, "the search has no parameters"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            importances = optuna.importance.get_param_importances(study)
        except (RuntimeError, ValueError, ZeroDivisionError) as error:
            return None, f"parameter importances unavailable: {error}"
    notes = sorted(
        {str(w.message).split(". ")[0] for w in caught if "importance" in str(w.message).lower()}
    )
    note = f"PED-ANOVA (Optuna's default evaluator) over {plural(n_complete, 'completed trial')}"
    if n_complete < FEW_TRIALS_FOR_IMPORTANCE:
        note += f" (fewer than {FEW_TRIALS_FOR_IMPORTANCE}: a rough guide only)"
    if notes:
        note += "; Optuna notes: " + "; ".join(notes)
    return {str(k): float(v) for k, v in importances.items()}, note


def trial_counts_text(summary: SearchSummary) -> str:
    """``16 trials of 16 planned: 4 complete, 12 pruned, 0 fail``; attempts a driver stop cut
    short are not trials of their own (a resume re-runs each from its checkpoint), so they
    follow apart."""
    counted = {k: n for k, n in summary.counts.items() if k != "INTERRUPTED"}
    parts = [f"{n} {state.lower()}" for state, n in counted.items()]
    target = f" of {summary.n_trials_target} planned" if summary.n_trials_target else ""
    text = f"{plural(sum(counted.values()), 'trial')}{target}: " + ", ".join(parts)
    interrupted = summary.counts.get("INTERRUPTED", 0)
    if interrupted:
        text += (
            f"; plus {plural(interrupted, 'attempt')} cut short by a driver stop "
            "(a resume re-runs each from its last checkpoint)"
        )
    return text


def final_seed_rows(cell: CellRecord, column: Column) -> list[dict[str, Any]]:
    """Per final seed: epochs trained, best epoch (counted from 1), stop reason, convergence
    note, time, and the test value of ``column``."""
    rows = []
    for seed, result in sorted(cell.finals.items()):
        group = next((g for g in result.test or [] if g.group == column.group), None)
        rows.append(
            {
                "seed": seed,
                "epochs": result.epochs_trained,
                "best_epoch": result.best_epoch + 1,
                "stop": result.stop_reason,
                "seconds": result.seconds,
                "select": f"{result.select_metric} = {fmt_value(result.best_value)}",
                "not_converged": convergence_note(result),
                "test": None if group is None else group.values.get(f"{column.metric}@{column.k}"),
            }
        )
    return rows


def curriculum_history(result: RunResult) -> pd.DataFrame:
    """Per-epoch curriculum weights and validation metrics of one run's history; ``epoch``
    counts from 1, as every figure shows it (docs/store-layout.md)."""
    rows = []
    for report in result.history:
        row: dict[str, Any] = {"epoch": report.epoch + 1, "loss": report.loss}
        row.update(
            {f"w_{k}" if not k.startswith("w_") else k: v for k, v in report.weights.items()}
        )
        for name, value in (report.valid or {}).items():
            row[f"valid_{name}"] = value
        rows.append(row)
    return pd.DataFrame(rows)


def flat_config(config: dict[str, Any]) -> dict[str, Any]:
    """``{"section.key": value}`` of a stored run configuration."""
    return flatten(config)


def fmt_param(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list):
        return ", ".join(fmt_param(v) for v in value)
    return str(value)


@dataclass
class ReportModel:
    """Everything the renderers show."""

    studies: list[StudyRecord]
    tidy: pd.DataFrame
    summary: pd.DataFrame
    sections: list[Section]
    protocol: list[ProtocolItem]
    datasets: list[DatasetStats]
    environment: list[tuple[str, str]]
    searches: dict[str, SearchSummary]
    command: str | None
    generated: str
    ks: list[int]
    warnings: list[str] = field(default_factory=list)
    metrics: list[str] = field(default_factory=lambda: list(DEFAULT_METRICS))
    #: the cut-off of the headline table (and of single-value summaries such as final seeds)
    headline_k: int = HEADLINE_K
    headline: Headline | None = None
    #: FAERec against the backbone per headline block (shown when there are several blocks)
    gains: list[CellGain] = field(default_factory=list)
    not_converged: list[NotConverged] = field(default_factory=list)
    costs: list[CellCost] = field(default_factory=list)

    @property
    def title(self) -> str:
        names = ", ".join(s.name for s in self.studies)
        return f"Study report: {names}"


def build_model(
    studies: list[StudyRecord],
    ks: Iterable[int] | None = None,
    command: str | None = None,
    generated: str = "",
    metrics: Sequence[str] | None = None,
) -> ReportModel:
    """``ks`` / ``metrics``: the cut-offs and metrics asked for, each of which must have been
    measured; None = the defaults that were measured (headline K = HEADLINE_K, main tables
    DEFAULT_KS; DEFAULT_METRICS)."""
    tidy = tidy_frame(studies)
    main_ks = available_ks(tidy, list(ks or DEFAULT_KS), required=ks is not None)
    headline_ks = main_ks if ks is not None else available_ks(tidy, [HEADLINE_K])
    chosen_metrics = available_metrics(tidy, metrics)
    sections = build_sections(studies, tidy, main_ks, chosen_metrics, headline_ks[0])
    headline = build_headline(studies, tidy, seed_index(tidy), headline_ks, chosen_metrics)
    warnings_out: list[str] = []
    for study in studies:
        if study.incomplete:
            warnings_out.append(
                f"study '{study.name}': cells without final results are left out: "
                + ", ".join(study.incomplete)
            )
    datasets = dataset_stats(studies)
    for stats in datasets:
        if stats.differing_cells:
            warnings_out.append(
                f"dataset '{stats.dataset}': data statistics differ in cells "
                + ", ".join(stats.differing_cells)
                + " (different preprocessing or popularity source?); the table shows the first"
            )
    protocol = protocol_items(studies)
    for item in protocol:
        if item.mixed:
            warnings_out.append(
                f"{item.label} differs between cells, so their numbers are not directly comparable"
            )
    if headline is not None and headline.left_out:
        warnings_out.append(
            "the headline table shows the first study's cell of each dataset, backbone and "
            "method; left out: " + ", ".join(headline.left_out)
        )
    searches = {
        f"{cell.study}/{cell.cell_id}": search_summary(cell, _reference_of(cell, study.cells))
        for study in studies
        for cell in study.cells
    }
    return ReportModel(
        studies=studies,
        tidy=tidy,
        summary=summary_frame(tidy, sections),
        sections=sections,
        protocol=protocol,
        datasets=datasets,
        environment=environment_items(studies),
        searches=searches,
        command=command,
        generated=generated,
        ks=main_ks,
        warnings=warnings_out,
        metrics=chosen_metrics,
        headline_k=headline_ks[0],
        headline=headline,
        gains=cell_gains(studies, headline),
        not_converged=not_converged_runs(studies),
        costs=cell_costs(searches, studies),
    )


def _reference_of(cell: CellRecord, cells: list[CellRecord]) -> CellRecord | None:
    return next((c for c in cells if c.info.get("reference_of") == cell.cell_id), None)


def _by_bucket_bound(counts: dict[str, int]) -> dict[str, int]:
    """Bucket labels ('1-4', '10-19', '50+') in numeric order, whatever order the JSON kept."""

    def lower_bound(label: str) -> float:
        head = label.split("-")[0].rstrip("+")
        return float(head) if head.isdigit() else float("inf")

    return {label: counts[label] for label in sorted(counts, key=lower_bound)}
