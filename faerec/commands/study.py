"""``faerec-study validate | run | resume | status``: the study commands.

Argument handling only; the work lives in :mod:`faerec.study`. ``validate`` and ``status`` never
import Ray, Optuna or torch, so they answer at once.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from faerec.study.spec import SpecError, StudySpec, parse_spec, spec_from_dict
from faerec.study.store import StudyStore, count_trials, read_csv, read_json

if TYPE_CHECKING:
    from faerec.data.types import InteractionData

DEFAULT_STUDIES_DIR = "studies"
DEFAULT_REPORTS_DIR = "reports"


def register(subparsers: Any) -> None:
    validate = subparsers.add_parser(
        "validate", help="check a study file; every problem as FILE:LINE (writes nothing)"
    )
    validate.add_argument("spec", help="study YAML, e.g. search_spaces/beauty.yaml")
    validate.set_defaults(handler=handle_validate)

    run = subparsers.add_parser("run", help="run a study: search, final seeds, report (resumable)")
    run.add_argument("spec", help="study YAML, e.g. search_spaces/beauty.yaml")
    _add_run_options(run)
    run.set_defaults(handler=handle_run)

    resume = subparsers.add_parser("resume", help="continue a stopped study by name")
    resume.add_argument("name", help="the study's name (its folder under --studies-dir)")
    _add_run_options(resume)
    resume.set_defaults(handler=handle_resume)

    status = subparsers.add_parser(
        "status", help="trials by state and the best configuration so far"
    )
    status.add_argument("name", help="the study's name (its folder under --studies-dir)")
    status.add_argument(
        "--studies-dir", default=DEFAULT_STUDIES_DIR, metavar="DIR", help="default: studies"
    )
    status.set_defaults(handler=handle_status)


def _add_run_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--studies-dir", default=DEFAULT_STUDIES_DIR, metavar="DIR", help="default: studies"
    )
    parser.add_argument(
        "--reports-dir", default=DEFAULT_REPORTS_DIR, metavar="DIR", help="default: reports"
    )
    parser.add_argument(
        "--address",
        default=None,
        metavar="RAY_ADDRESS",
        help="join an existing Ray cluster (default: $RAY_ADDRESS, else a local Ray)",
    )
    parser.add_argument(
        "--max-concurrent",
        type=_positive_int,
        default=None,
        metavar="N",
        help="trials at a time (default: resources.max_concurrent, else CPUs / cpus_per_trial)",
    )


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _print_problems(error: SpecError) -> int:
    for problem in error.problems:
        print(problem, file=sys.stderr)
    count = len(error.problems)
    print(f"faerec-study: {count} problem{'s' if count != 1 else ''} in the spec", file=sys.stderr)
    return error.exit_code


def _command_line(args: argparse.Namespace) -> str:
    """The command as given (from the parsed arguments, so it is right when called in-process)."""
    parts = ["faerec-study", args.command, getattr(args, "spec", None) or args.name]
    options = (
        ("--studies-dir", args.studies_dir, DEFAULT_STUDIES_DIR),
        ("--reports-dir", args.reports_dir, DEFAULT_REPORTS_DIR),
        ("--address", args.address, None),
        ("--max-concurrent", args.max_concurrent, None),
    )
    for flag, value, default in options:
        if value is not None and str(value) != str(default):
            parts += [flag, str(value)]
    return " ".join(shlex.quote(p) for p in parts)


# --- validate ----------------------------------------------------------------------------------


def handle_validate(args: argparse.Namespace) -> int:
    try:
        spec = parse_spec(args.spec)
    except SpecError as error:
        return _print_problems(error)
    loaded = check_data(spec)
    print(summary(spec))
    for dataset, label in zip(spec.datasets, spec.dataset_labels, strict=True):
        data = loaded[dataset]
        print(
            f"  data {label}: {data.num_users} users, {data.num_items} items, "
            f"{data.num_interactions} interactions (checked)"
        )
    for notice in preset_notices(spec):
        print(notice, file=sys.stderr)
    return 0


def preset_notices(spec: StudySpec) -> list[str]:
    """One line per dataset whose FAERec cells fall back to the generic preset settings."""
    from faerec.config import preset_notice

    notices = (preset_notice(spec.cell_config(cell), spec.preset) for cell in spec.cells())
    return list(dict.fromkeys(notice for notice in notices if notice))


def summary(spec: StudySpec) -> str:
    """What a study will do: cells, trials, parameters, final runs."""
    cells = spec.cells()
    searched = [c for c in cells if c.space is not None]
    trials = sum(spec.trials_for(c) for c in cells)
    metrics = ", ".join(f"{o.metric} ({o.direction})" for o in spec.search.objectives)
    lines = [
        f"{spec.source}: ok",
        f"study {spec.name}: {len(cells)} cells ({len(searched)} searched), {trials} trials, "
        f"{len(cells) * spec.final_seeds} final runs ({spec.final_seeds} seeds per cell)",
        f"  search: {metrics}; sampler {spec.search.sampler}, seed {spec.search.seed}; "
        f"scheduler {spec.scheduler.type}",
    ]
    width = max(len(c.cell_id) for c in cells)
    for cell in cells:
        if cell.space is None:
            lines.append(f"  {cell.cell_id.ljust(width)}  preset (no search)")
            continue
        keys = cell.space.keys()
        lines.append(
            f"  {cell.cell_id.ljust(width)}  {spec.trials_for(cell)} trials over {len(keys)} "
            f"parameters: {', '.join(keys)}"
        )
    for method, space in spec.search.spaces.items():
        lines.append(f"  space of {method}:")
        lines.extend(f"    {line}" for line in space.describe())
    return "\n".join(lines)


# --- run / resume ------------------------------------------------------------------------------


def _run(spec: StudySpec, args: argparse.Namespace) -> int:
    from faerec.study.runner import RunOptions, run_study

    options = RunOptions(
        studies_dir=Path(args.studies_dir),
        reports_dir=Path(args.reports_dir),
        address=args.address,
        max_concurrent=args.max_concurrent,
        command=_command_line(args),
    )
    for notice in preset_notices(spec):
        print(notice, file=sys.stderr)
    return run_study(spec, options)


def check_data(spec: StudySpec) -> dict[str, InteractionData]:
    """Load and check every dataset (and embedding file) the spec's cells use, before anything
    is written: bad data raise one FILE:LINE error (exit 2) instead of failing every trial."""
    from faerec.data.check import check_datasets

    return check_datasets(spec.cell_config(cell) for cell in spec.cells())


def handle_run(args: argparse.Namespace) -> int:
    try:
        spec = parse_spec(args.spec)
    except SpecError as error:
        return _print_problems(error)
    check_data(spec)
    return _run(spec, args)


def handle_resume(args: argparse.Namespace) -> int:
    store = StudyStore.at(args.studies_dir, args.name)
    payload = store.load_study_json()
    try:
        spec = spec_from_dict(payload["spec"], str(store.study_json))
    except SpecError as error:
        return _print_problems(error)
    if store.spec_yaml.is_file():
        spec = _with_text(spec, store.spec_yaml.read_text(encoding="utf-8"))
    check_data(spec)
    return _run(spec, args)


def _with_text(spec: StudySpec, text: str) -> StudySpec:
    import dataclasses

    return dataclasses.replace(spec, text=text)


# --- status ------------------------------------------------------------------------------------


def handle_status(args: argparse.Namespace) -> int:
    store = StudyStore.at(args.studies_dir, args.name)
    payload = store.load_study_json()
    print(f"study {payload['name']}: {store.root}")
    if payload.get("description"):
        print(f"  {payload['description']}")
    print(f"  updated {payload.get('updated', '?')}")
    final_seeds = int(payload["spec"].get("final", {}).get("seeds", 0))
    for cell_id in payload["cells"]:
        cell = store.cell(cell_id)
        info = read_json(cell.cell_json) if cell.cell_json.exists() else {}
        trials = read_csv(cell.trials_csv)
        counts = count_trials(trials)
        seeds = len(cell.done_seeds())
        print(f"{cell_id}")
        if info.get("has_space"):
            print(
                f"  trials: {counts.done}/{info.get('n_trials_target', '?')} finished "
                f"(complete {counts.complete}, pruned {counts.pruned}, failed {counts.failed}, "
                f"running {counts.running})"
            )
        else:
            print("  no search: runs its preset configuration")
        if cell.best_json.exists():
            best = read_json(cell.best_json)
            if best.get("trial") is not None:
                metric = best.get("metric", "value")
                print(f"  best: {metric} = {best['value']:.4f} (trial {best['trial']})")
                for key, value in sorted(best.get("params", {}).items()):
                    print(f"    {key} = {value}")
        elif info.get("has_space"):
            print("  best: no completed trial yet")
        errors = sorted({t["error"] for t in trials if t["state"] == "FAIL" and t.get("error")})
        for message in errors[:3]:
            print(f"  error: {message}")
        print(f"  final: {seeds}/{final_seeds} seeds")
    if store.results_csv.exists():
        print(f"results: {store.results_csv}")
    return 0
