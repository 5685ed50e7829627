"""`faerec-study report`: render a study (or several) from its stored files.

    faerec-study report NAME [--studies-dir DIR] [--reports-dir DIR] [--format md,html,csv,tex]
                        [--ks 10,20] [--metrics ndcg,hr] [--partial]
    faerec-study report NAME1 NAME2 ... --output DIR

NAME is a study name under --studies-dir, or a path to a study folder. One study goes to
``<reports-dir>/<name>/``; several studies become one combined report in --output.
"""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path
from typing import Any

from faerec.errors import ConfigError
from faerec.text import plural

DEFAULT_STUDIES_DIR = "studies"
DEFAULT_REPORTS_DIR = "reports"


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "report",
        help="render tables, significance tests and figures of finished studies",
        description=(
            "Render a report from the stored study files only (no training, no Ray): "
            "report.md, a self-contained report.html, results.csv/summary.csv, figures/ "
            "(PNG and SVG) and, on request, booktabs LaTeX tables (report.tex)."
        ),
    )
    parser.add_argument(
        "names",
        nargs="+",
        metavar="NAME",
        help="study name(s) under --studies-dir, or path(s) to study folders",
    )
    parser.add_argument(
        "--studies-dir",
        default=DEFAULT_STUDIES_DIR,
        metavar="DIR",
        help=f"where studies live (default: {DEFAULT_STUDIES_DIR})",
    )
    parser.add_argument(
        "--reports-dir",
        default=DEFAULT_REPORTS_DIR,
        metavar="DIR",
        help=f"reports go to DIR/<name>/ (default: {DEFAULT_REPORTS_DIR})",
    )
    parser.add_argument(
        "--output",
        "-o",
        metavar="DIR",
        default=None,
        help="output folder; required when combining several studies",
    )
    parser.add_argument(
        "--format",
        default="md,html,csv",
        metavar="LIST",
        help="comma-separated: md, html, csv, tex (default: md,html,csv)",
    )
    parser.add_argument(
        "--ks",
        default=None,
        metavar="LIST",
        help="cut-offs K of the tables, each measured by the studies (eval.ks) "
        "(default: 10 in the headline table, 10,20 in the others, where measured; the CSVs "
        "hold all)",
    )
    parser.add_argument(
        "--metrics",
        default=None,
        metavar="LIST",
        help="metrics of the tables, in column order, each measured by the studies "
        "(default: ndcg,hr)",
    )
    parser.add_argument(
        "--partial",
        action="store_true",
        help="report the finished cells of an unfinished study instead of failing",
    )
    parser.set_defaults(handler=run)


def _parse_ks(text: str) -> list[int]:
    try:
        ks = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ConfigError(
            f"--ks: expected comma-separated positive integers, got {text!r}"
        ) from None
    if not ks or any(k <= 0 for k in ks):
        raise ConfigError(f"--ks: expected comma-separated positive integers, got {text!r}")
    return ks


def _parse_metrics(text: str) -> list[str]:
    metrics = [part.strip().lower() for part in text.split(",") if part.strip()]
    if not metrics:
        raise ConfigError(f"--metrics: expected comma-separated metric names, got {text!r}")
    return metrics


def study_path(name: str, studies_dir: Path) -> Path:
    """A name under ``studies_dir`` first; otherwise an existing folder given as a path."""
    under = studies_dir / name
    if under.is_dir() or not Path(name).is_dir():
        return under
    return Path(name)


def command_line(args: argparse.Namespace) -> str:
    """The canonical command that reproduces this report (shown in its header)."""
    parts = ["faerec-study", "report", *args.names]
    if args.studies_dir != DEFAULT_STUDIES_DIR:
        parts += ["--studies-dir", args.studies_dir]
    if args.output:
        parts += ["--output", args.output]
    elif args.reports_dir != DEFAULT_REPORTS_DIR:
        parts += ["--reports-dir", args.reports_dir]
    parts += ["--format", args.format]
    if args.ks is not None:
        parts += ["--ks", args.ks]
    if args.metrics is not None:
        parts += ["--metrics", args.metrics]
    if args.partial:
        parts.append("--partial")
    return shlex.join(parts)


def run(args: argparse.Namespace) -> int:
    from faerec.report import build_report, parse_formats

    formats = parse_formats(args.format)
    ks = None if args.ks is None else _parse_ks(args.ks)
    metrics = None if args.metrics is None else _parse_metrics(args.metrics)
    studies_dir = Path(args.studies_dir)
    paths = [study_path(name, studies_dir) for name in args.names]
    if args.output:
        output = Path(args.output)
    elif len(paths) == 1:
        output = Path(args.reports_dir) / paths[0].resolve().name
    else:
        raise ConfigError("several studies are combined into one report: give --output DIR")
    written = build_report(
        paths,
        output,
        formats=formats,
        command=command_line(args),
        ks=ks,
        metrics=metrics,
        allow_incomplete=args.partial,
    )
    main_files = [p for p in written if p.parent == output]
    n_figures = len(written) - len(main_files)
    print(f"report written to {output}/")
    for path in main_files:
        print(f"  {path.name}")
    if n_figures:
        print(f"  figures/ ({plural(n_figures, 'file')})")
    return 0
