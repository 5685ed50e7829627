"""Study reports: tables, significance tests and figures from the stored study files only.

``build_report`` reads one or more study folders (docs/store-layout.md), never trains and never
starts Ray, and writes into ``output_dir``:

* ``report.md``  GitHub-renderable, figures as ``figures/*.png``;
* ``report.html`` one self-contained page (inline CSS, figures as data URIs, no scripts);
* ``results.csv`` the tidy per-seed table and ``summary.csv`` means, changes and p-values;
* ``report.tex`` booktabs tables (on request);
* ``figures/`` every figure as PNG and SVG.

The pipeline: :mod:`~faerec.report.load` reads the store, :mod:`~faerec.report.tables` computes
every number (:class:`~faerec.report.tables.ReportModel`), :mod:`~faerec.report.document` lays
them out as one format-free document, and Markdown, HTML and LaTeX only render that document.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from faerec.atomic import write_text_atomic
from faerec.errors import ConfigError, FaerecError

if TYPE_CHECKING:
    from faerec.report.figures import FigureFile

FORMATS = ("md", "html", "csv", "tex")
DEFAULT_FORMATS = ("md", "html", "csv")

__all__ = ["DEFAULT_FORMATS", "FORMATS", "build_report", "parse_formats"]


def parse_formats(text: str | Sequence[str]) -> list[str]:
    """``"md,html"`` or ``["md", "html"]`` -> validated list (ConfigError names a bad one)."""
    items = text.split(",") if isinstance(text, str) else list(text)
    formats = [f.strip().lower() for f in items if f.strip()]
    if not formats:
        raise ConfigError(f"--format: expected one or more of {', '.join(FORMATS)}, got nothing")
    for name in formats:
        if name not in FORMATS:
            raise ConfigError(f"--format: expected one of {', '.join(FORMATS)}, got {name!r}")
    return list(dict.fromkeys(formats))


def _written(path: Path, text: str) -> Path:
    write_text_atomic(path, text)
    return path


def build_report(
    study_dirs: list[Path],
    output_dir: Path,
    formats: Sequence[str] = DEFAULT_FORMATS,
    command: str | None = None,
    *,
    ks: Sequence[int] | None = None,
    metrics: Sequence[str] | None = None,
    allow_incomplete: bool = False,
) -> list[Path]:
    """Render a report of one or several studies into ``output_dir``; return the files written.

    Several studies (e.g. one per dataset) become one report with a summary across datasets.
    ``ks`` are the cut-offs of the tables and ``metrics`` their metrics (the CSVs hold all of
    them); each must have been measured (None: K = 10 in the headline table, 10 and 20 in the
    others; NDCG and HR; those of them that were measured). A missing or
    incomplete study folder raises a DataError naming the file, unless ``allow_incomplete``,
    which leaves cells without final results out and says so in the report.
    """
    from faerec.report.load import load_study
    from faerec.report.tables import build_model

    chosen = parse_formats(formats)
    if not study_dirs:
        raise ConfigError("no study given: name at least one study folder")
    studies = [load_study(Path(p), allow_incomplete=allow_incomplete) for p in study_dirs]
    names = [s.name for s in studies]
    if len(set(names)) != len(names):
        raise ConfigError(f"the same study is given twice: {', '.join(names)}")
    generated = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    model = build_model(studies, ks=ks, command=command, generated=generated, metrics=metrics)
    output_dir = Path(output_dir)
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise FaerecError(f"{output_dir}: cannot create the report folder: {error}") from None
    written: list[Path] = []
    if "csv" in chosen:
        for name, frame in (("results.csv", model.tidy), ("summary.csv", model.summary)):
            written.append(_written(output_dir / name, frame.to_csv(index=False)))
    figures: dict[str, FigureFile] = {}
    if "md" in chosen or "html" in chosen:
        from faerec.report.figures import render_figures

        figures_dir = output_dir / "figures"
        figures = render_figures(model, figures_dir)
        _remove_stale_figures(figures_dir, {p for f in figures.values() for p in (f.png, f.svg)})
        written += [p for f in figures.values() for p in (f.png, f.svg)]
    if {"md", "html", "tex"} & set(chosen):
        from faerec.report.document import build_document

        document = build_document(model, figures)
        if "tex" in chosen:
            from faerec.report.latex import render_latex

            written.append(_written(output_dir / "report.tex", render_latex(document)))
        if "md" in chosen:
            from faerec.report.markdown import render_markdown

            written.append(_written(output_dir / "report.md", render_markdown(document, figures)))
        if "html" in chosen:
            from faerec.report.html import render_html

            written.append(_written(output_dir / "report.html", render_html(document, figures)))
    return written


def _remove_stale_figures(figures_dir: Path, keep: set[Path]) -> None:
    """Drop figures of an earlier report run that this run no longer draws (e.g. a removed cell)."""
    if not figures_dir.is_dir():
        return
    for path in figures_dir.iterdir():
        if path.suffix in (".png", ".svg") and path.is_file() and path not in keep:
            path.unlink()
