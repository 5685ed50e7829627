"""`faerec-study train`: one run of one configuration, with a progress bar and a results table.

The configuration is the preset of (dataset, backbone, method) plus ``--set`` overrides, the
same resolution a study uses, so a single cell of a study can be reproduced by hand.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, TextIO

from faerec.atomic import write_json_atomic
from faerec.budget import selection_problem
from faerec.config import (
    BACKBONES,
    BUNDLED_DATASETS,
    METHODS,
    PRESET_HELP,
    PRESETS,
    RunConfig,
    config_notices,
    parse_set_arguments,
    resolve_config,
)
from faerec.data.check import check_datasets
from faerec.errors import ConfigError
from faerec.results import GroupMetrics, RunResult
from faerec.run_progress import say
from faerec.text import did_you_mean, plural

#: tidy-row fields that repeat the run's identity, kept once at the top of the --json file
_IDENTITY_FIELDS = ("study", "dataset", "backbone", "method", "seed")


def add_cell_arguments(parser: Any, *, dataset_required: bool, set_example: str) -> None:
    """The arguments naming one cell and its overrides, shared by ``train`` and ``config``."""
    parser.add_argument(
        "--dataset",
        required=dataset_required,
        help=f"bundled dataset ({', '.join(BUNDLED_DATASETS)}) or a dataset folder",
    )
    parser.add_argument("--backbone", choices=BACKBONES, default="sasrec", help="(default sasrec)")
    parser.add_argument(
        "--method", choices=list(METHODS), default="backbone", help="(default backbone)"
    )
    parser.add_argument("--preset", choices=PRESETS, default="official", help=PRESET_HELP)
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help=f"override one configuration key (repeatable), e.g. --set {set_example}",
    )


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train and test one configuration",
        description=(
            "Train one (dataset, backbone, method) configuration: the preset's settings plus "
            "--set overrides. Selects the best epoch on validation, then reports test HR/NDCG "
            "per user group."
        ),
    )
    add_cell_arguments(parser, dataset_required=True, set_example="train.max_epochs=20")
    parser.add_argument(
        "--json", type=Path, metavar="FILE", help="write the configuration and all metrics here"
    )
    parser.add_argument(
        "--output",
        type=Path,
        metavar="DIR",
        help="checkpoint folder: resumes from DIR/checkpoint.pt if present, "
        "leaves best_model.pt and result.json there",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(handler=run_train)


def run_train(args: argparse.Namespace) -> int:
    from faerec.training import run_trial

    _check_dataset(args.dataset)
    overrides = parse_set_arguments(args.overrides)
    config = resolve_config(args.dataset, args.backbone, args.method, args.preset, overrides)
    check_datasets([config])  # bad data: one FILE:LINE line, before torch loads or files appear
    for notice in config_notices(config, args.preset):
        say(notice)
    problem = selection_problem(config)
    if problem is not None:
        say(f"faerec-study train: warning: {problem}")
    say(device_line(config))
    result = run_trial(config, checkpoint_dir=args.output, progress=not args.quiet)
    print_results(result, sys.stdout)
    if args.output is not None:
        write_json_atomic(args.output / "result.json", result.to_dict())
    if args.json is not None:
        write_json_atomic(args.json, json_payload(result))
    return 0


def device_line(config: RunConfig) -> str:
    """Where the run computes: device, its name and torch's CPU threads."""
    import platform

    import torch

    from faerec.training import resolve_device

    device = resolve_device(config.train.device)
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        name = platform.processor() or platform.machine()
    threads = config.train.num_threads or torch.get_num_threads()
    return f"device {device} ({name}), {plural(threads, 'CPU thread')}"


def _check_dataset(dataset: str) -> None:
    if dataset in BUNDLED_DATASETS or Path(dataset).exists():
        return
    raise ConfigError(
        f"--dataset: unknown dataset {dataset!r}{did_you_mean(dataset, BUNDLED_DATASETS)} "
        f"(bundled: {', '.join(BUNDLED_DATASETS)}; or a path to a dataset folder)"
    )


def json_payload(result: RunResult) -> dict[str, Any]:
    """The --json document: the run's identity, its configuration and one row per metric."""
    config = result.config
    rows = [
        {k: v for k, v in row.items() if k not in _IDENTITY_FIELDS}
        for row in result.tidy_rows(study="")
    ]
    return {
        "dataset": config["data"]["dataset"],
        "backbone": config["model"]["backbone"],
        "method": config["method"],
        "seed": config["train"]["seed"],
        "config": config,
        "best_epoch": result.best_epoch + 1,  # counted from 1, as in the result files
        "epochs_trained": result.epochs_trained,
        "stop_reason": result.stop_reason,
        "seconds": round(result.seconds, 3),
        "results": rows,
    }


def format_table(groups: list[GroupMetrics], ks: list[int]) -> str:
    """Rows = groups (with their user counts), columns = HR@K and NDCG@K."""
    columns = [f"{name}@{k}" for k in sorted(ks) for name in ("hr", "ndcg")]
    headers = ["group", "users", *[c.upper() for c in columns]]
    body = [
        [g.group, str(g.n_users), *[f"{g.values.get(c, float('nan')):.4f}" for c in columns]]
        for g in groups
    ]
    widths = [max(len(row[i]) for row in [headers, *body]) for i in range(len(headers))]
    lines = []
    for row in [headers, *body]:
        cells = [row[0].ljust(widths[0])] + [
            cell.rjust(w) for cell, w in zip(row[1:], widths[1:], strict=True)
        ]
        lines.append("  ".join(cells))
    return "\n".join(lines)


def print_results(result: RunResult, stream: TextIO) -> None:
    ks = list(result.config["eval"]["ks"])
    print(
        f"best epoch {result.best_epoch + 1} (valid {result.select_metric} = "
        f"{result.best_value:.4f}); "
        f"{plural(result.epochs_trained, 'epoch')}, stopped by {result.stop_reason}, "
        f"{result.seconds:.1f} s",
        file=stream,
    )
    if result.test is not None:
        print(f"\ntest ({result.data_stats.get('eval_mode', 'full')} ranking)", file=stream)
        print(format_table(result.test, ks), file=stream)
