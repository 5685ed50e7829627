"""Report figures with matplotlib (Agg): each saved as PNG (for Markdown) and SVG (for print).

Figures carry no titles: the caption lives in the document, as in a paper. Colours are the
Okabe-Ito palette (readable with colour-vision deficiencies), one fixed colour per method in
every figure, the plain backbone in grey. Files are reproducible byte for byte (no dates in
the metadata, fixed SVG ids) and written atomically.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402
from matplotlib.transforms import blended_transform_factory  # noqa: E402

from faerec.atomic import atomic_path  # noqa: E402
from faerec.config import METHODS  # noqa: E402
from faerec.report.tables import (  # noqa: E402
    ReportModel,
    ResultTable,
    SearchSummary,
    Section,
    curriculum_history,
    group_label,
    slug,
)
from faerec.text import plural  # noqa: E402

OKABE_ITO = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000")
BACKBONE_COLOUR = "#8C8C8C"
PNG_DPI = 160

STYLE: dict[str, Any] = {
    "font.family": "DejaVu Sans",
    "font.size": 8.5,
    "axes.labelsize": 8.5,
    "axes.titlesize": 9,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "legend.fontsize": 7.5,
    "legend.frameon": False,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "axes.grid.axis": "y",
    "grid.color": "#E3E3E3",
    "grid.linewidth": 0.6,
    "axes.axisbelow": True,
    "axes.edgecolor": "#444444",
    "axes.linewidth": 0.7,
    "lines.linewidth": 1.4,
    "svg.fonttype": "path",
    "svg.hashsalt": "faerec-report",
    "figure.dpi": 100,
}


def method_colour(method: str) -> str:
    """The same colour for a method in every figure (backbone grey, FAERec blue)."""
    if method == "backbone":
        return BACKBONE_COLOUR
    names = [m for m in METHODS if m != "backbone"]
    index = names.index(method) if method in names else len(names) + sum(map(ord, method))
    return OKABE_ITO[index % len(OKABE_ITO)]


@dataclass(frozen=True)
class FigureFile:
    """One saved figure: PNG and SVG paths, and its caption for the documents."""

    key: str
    png: Path
    svg: Path
    caption: str
    alt: str
    #: drawn width in inches, so documents can show every figure at the same type size
    width_in: float = 6.4


@contextmanager
def _style() -> Iterator[None]:
    with plt.rc_context(cast(Any, STYLE)):
        yield


def _save(fig: Figure, figures_dir: Path, stem: str) -> tuple[Path, Path]:
    figures_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for fmt, metadata in (("png", {"Software": None}), ("svg", {"Date": None, "Creator": None})):
        path = figures_dir / f"{stem}.{fmt}"
        with atomic_path(path) as temp:
            fig.savefig(temp, format=fmt, dpi=PNG_DPI, metadata=metadata, facecolor="white")
        paths.append(path)
        # the first save ran the constrained layout; keep its positions instead of redoing it
        fig.set_layout_engine("none")
    plt.close(fig)
    return paths[0], paths[1]


def bucket_figure(table: ResultTable) -> Figure | None:
    """Grouped bars: the table's first metric per popularity bucket (x) and method (bars),
    ± std over seeds."""
    metric = table.columns[0].metric if table.columns else ""
    columns = [c for c in table.columns if c.metric == metric]
    rows = [r for r in table.rows if any(c in r.cells for c in columns)]
    if not columns or not rows:
        return None
    fig, ax = plt.subplots(figsize=(6.4, 2.9), layout="constrained")
    width = 0.8 / len(rows)
    x = np.arange(len(columns))
    for index, row in enumerate(rows):
        means = [row.cells[c].mean if c in row.cells else np.nan for c in columns]
        stds = [(row.cells[c].std or 0.0) if c in row.cells else 0.0 for c in columns]
        ax.bar(
            x + (index - (len(rows) - 1) / 2) * width,
            means,
            width * 0.92,
            yerr=stds,
            capsize=1.8,
            error_kw={"elinewidth": 0.7, "ecolor": "#333333"},
            color=method_colour(row.method),
            label=row.label,
            linewidth=0,
        )
    labels = []
    for column in columns:
        size = table.group_sizes.get(column.group)
        labels.append(group_label(column.group) + (f"\n({plural(size, 'user')})" if size else ""))
    ax.set_xticks(x, labels)
    ax.set_xlabel("Interactions of the test target item (popularity bucket)")
    ax.set_ylabel(columns[0].metric_label)
    ax.set_ylim(bottom=0)
    ax.legend(loc="lower left", bbox_to_anchor=(0, 1.0), ncol=min(4, len(rows)))
    return fig


def history_figure(summary: SearchSummary) -> Figure | None:
    """Objective value per trial number with the best-so-far line; pruned and failed marked."""
    history = summary.history
    if history.empty:
        return None
    maximize = (summary.directions or ["maximize"])[0] == "maximize"
    fig, ax = plt.subplots(figsize=(5.2, 2.8), layout="constrained")
    complete = history[(history["state"] == "COMPLETE") & history["value"].notna()]
    if not complete.empty:
        ax.scatter(
            complete["number"],
            complete["value"],
            s=16,
            color=OKABE_ITO[0],
            label="completed trial",
            zorder=3,
        )
        running = complete["value"].cummax() if maximize else complete["value"].cummin()
        ax.step(
            complete["number"],
            running,
            where="post",
            color=OKABE_ITO[5],
            label="best so far",
            zorder=2,
        )
    pruned = history[history["state"] == "PRUNED"]
    if "last_value" in history.columns:
        shown = pruned[pruned["last_value"].notna()]
        if not shown.empty:
            ax.scatter(
                shown["number"],
                shown["last_value"],
                s=16,
                marker="x",
                linewidths=1.0,
                color=BACKBONE_COLOUR,
                label="pruned (last reported value)",
                zorder=3,
            )
    failed = history[history["state"] == "FAIL"]
    if not failed.empty:
        marks = blended_transform_factory(ax.transData, ax.transAxes)
        ax.scatter(
            failed["number"],
            [0.02] * len(failed),
            transform=marks,
            marker="v",
            s=18,
            color="#B2182B",
            label="failed",
            zorder=3,
            clip_on=False,
        )
    ax.set_xlabel("Trial number")
    name = summary.objective_names[0] if summary.objective_names else "objective"
    ax.set_ylabel(f"Validation {name}")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(loc="lower left", bbox_to_anchor=(0, 1.0), ncol=2)
    return fig


def importance_figure(summary: SearchSummary) -> Figure | None:
    """Horizontal bars of parameter importances, the most important on top."""
    if not summary.importances:
        return None
    items = sorted(summary.importances.items(), key=lambda kv: kv[1])
    fig, ax = plt.subplots(figsize=(5.2, 0.32 * len(items) + 0.8), layout="constrained")
    names = [k for k, _ in items]
    values = [v for _, v in items]
    ax.barh(names, values, color=OKABE_ITO[0], height=0.6)
    for y, value in enumerate(values):
        ax.text(value, y, f" {value:.2f}", va="center", fontsize=7.5, color="#333333")
    ax.set_xlabel("Importance (normalised)")
    ax.set_xlim(0, max(values) * 1.18 if max(values) > 0 else 1)
    ax.grid(axis="x", color="#E3E3E3")
    ax.grid(axis="y", visible=False)
    return fig


def training_figure(summary: SearchSummary) -> Figure | None:
    """Curriculum weights of the final seeds over epochs (FAERec) and their validation curve."""
    cell = summary.cell
    if not cell.finals:
        return None
    first = next(iter(cell.finals.values()))
    weights = curriculum_history(first)
    has_weights = {"w_item", "w_feat"} <= set(weights.columns)
    panels = 2 if has_weights else 1
    fig, axes = plt.subplots(
        1, panels, figsize=(6.4 if panels == 2 else 4.0, 2.6), layout="constrained", squeeze=False
    )
    axis_iter = iter(axes[0])
    if has_weights:
        ax = next(axis_iter)
        ax.plot(weights["epoch"], weights["w_item"], color=OKABE_ITO[0], label="w_item (InfoNCE)")
        ax.plot(
            weights["epoch"], weights["w_feat"], color=OKABE_ITO[1], label="w_feat (Barlow Twins)"
        )
        ax.axvline(first.best_epoch + 1, color="#555555", linestyle=":", linewidth=1.0)
        ax.set_xlabel("Epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel("Curriculum weight")
        ax.set_ylim(-0.03, 1.03)
        ax.legend(loc="lower left", bbox_to_anchor=(0, 1.0), ncol=2)
    ax = next(axis_iter)
    metric = first.select_metric
    for index, (seed, result) in enumerate(cell.finals.items()):
        curve = curriculum_history(result)
        column = f"valid_{metric}"
        if column not in curve.columns:
            continue
        curve = curve[curve[column].notna()]
        colour = OKABE_ITO[(index + 2) % len(OKABE_ITO)]
        ax.plot(curve["epoch"], curve[column], color=colour, label=f"seed {seed}")
        best = curve[curve["epoch"] == result.best_epoch + 1]  # the frame counts from 1
        if not best.empty:
            ax.scatter(
                best["epoch"],
                best[column],
                color=colour,
                s=22,
                zorder=3,
                edgecolors="white",
                linewidths=0.6,
            )
    ax.set_xlabel("Epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(f"Validation {metric}")
    ax.legend(loc="lower left", bbox_to_anchor=(0, 1.0), ncol=4)
    return fig


def pareto_figure(summary: SearchSummary) -> Figure | None:
    """Two-metric search: every completed trial and the Pareto front (study.best_trials)."""
    if len(summary.directions) != 2 or not summary.all_values:
        return None
    fig, ax = plt.subplots(figsize=(4.6, 3.4), layout="constrained")
    xs = [v[0] for _, v in summary.all_values]
    ys = [v[1] for _, v in summary.all_values]
    ax.scatter(xs, ys, s=16, color=BACKBONE_COLOUR, label="completed trial", zorder=2)
    front = sorted(summary.pareto, key=lambda item: item[1][0])
    if front:
        fx = [v[0] for _, v in front]
        fy = [v[1] for _, v in front]
        ax.plot(fx, fy, color=OKABE_ITO[0], linewidth=1.0, zorder=3)
        ax.scatter(fx, fy, s=26, color=OKABE_ITO[0], label="Pareto front", zorder=4)
        for number, values in front:
            ax.annotate(
                f"#{number}",
                (values[0], values[1]),
                textcoords="offset points",
                xytext=(4, 3),
                fontsize=7,
                color="#333333",
            )
    ax.set_xlabel(f"{summary.objective_names[0]} ({summary.directions[0]})")
    ax.set_ylabel(f"{summary.objective_names[1]} ({summary.directions[1]})")
    ax.grid(axis="x", color="#E3E3E3")
    ax.legend(loc="lower left", bbox_to_anchor=(0, 1.0), ncol=2)
    return fig


def render_figures(model: ReportModel, figures_dir: Path) -> dict[str, FigureFile]:
    """Draw and save every figure; keys are ``<kind>:<section anchor or cell key>``."""
    out: dict[str, FigureFile] = {}
    with _style():
        for section in model.sections:
            _add_section_figures(out, section, figures_dir)
        for key, summary in model.searches.items():
            _add_cell_figures(out, key, summary, figures_dir)
    return out


def _add(
    out: dict[str, FigureFile],
    key: str,
    fig: Figure | None,
    figures_dir: Path,
    stem: str,
    caption: str,
    alt: str,
) -> None:
    if fig is None:
        return
    width_in = float(fig.get_figwidth())
    png, svg = _save(fig, figures_dir, stem)
    out[key] = FigureFile(key=key, png=png, svg=svg, caption=caption, alt=alt, width_in=width_in)


def _add_section_figures(out: dict[str, FigureFile], section: Section, figures_dir: Path) -> None:
    if section.buckets is None:
        return
    column = next(iter(section.buckets.columns), None)
    if column is None:
        return
    _add(
        out,
        f"buckets:{section.anchor}",
        bucket_figure(section.buckets),
        figures_dir,
        f"buckets_{section.anchor}",
        f"Test {column.metric_label} by popularity bucket of the target item on "
        f"{section.title.replace(' · ', ', ')}; bars are means over seeds, whiskers one "
        "standard deviation.",
        f"Bar chart of {column.metric_label} per popularity bucket and method",
    )


def _add_cell_figures(
    out: dict[str, FigureFile], key: str, summary: SearchSummary, figures_dir: Path
) -> None:
    stem = slug(key.replace("/", "_"))
    label = summary.label
    _add(
        out,
        f"history:{key}",
        history_figure(summary),
        figures_dir,
        f"history_{stem}",
        f"Optimisation history of {label}: validation objective of each trial and the best "
        "value so far.",
        f"Optimisation history of {label}",
    )
    _add(
        out,
        f"importance:{key}",
        importance_figure(summary),
        figures_dir,
        f"importance_{stem}",
        f"Hyper-parameter importances of {label} ({summary.importance_note}).",
        f"Parameter importances of {label}",
    )
    _add(
        out,
        f"pareto:{key}",
        pareto_figure(summary),
        figures_dir,
        f"pareto_{stem}",
        f"Two-metric search of {label}: completed trials and the Pareto front.",
        f"Pareto front of {label}",
    )
    first = next(iter(summary.cell.finals.values()), None)
    curriculum = first is not None and any(r.weights for r in first.history)
    caption = (
        f"Final training of {label}: curriculum weights of the best configuration over epochs "
        "(left; dotted line: selected epoch) and the validation metric of each seed (right; "
        "dots: selected epochs)."
        if curriculum
        else f"Final training of {label}: validation metric of each seed over epochs "
        "(dots: selected epochs)."
    )
    _add(
        out,
        f"training:{key}",
        training_figure(summary),
        figures_dir,
        f"training_{stem}",
        caption,
        f"Training curves of {label}",
    )
