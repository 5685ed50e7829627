"""``faerec-study validate | run | resume | status``: the study commands.

Argument handling only; the work lives in :mod:`faerec.study`. ``validate`` and ``status`` never
import Ray, Optuna or torch, so they answer at once.
"""

from __future__ import annotations

import argparse
import contextlib
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from faerec.errors import FaerecError
from faerec.run_progress import format_seconds, say
from faerec.study.lock import LockInfo, StudyLock, StudyLocked
from faerec.study.sessions import active_seconds, read_sessions
from faerec.study.spec import SpecError, StudySpec, parse_spec, spec_from_dict
from faerec.study.store import (
    StudyStore,
    check_folder_writable,
    count_trials,
    export_study,
    list_studies,
    read_csv,
    read_json,
)
from faerec.text import plural

if TYPE_CHECKING:
    from faerec.data.types import InteractionData

DEFAULT_STUDIES_DIR = "studies"
#: searched keys whose every choice names data to check before a run (a .npy, a template)
SEARCHED_DATA_KEYS = ("embedding.model", "embedding.template")
DEFAULT_REPORTS_DIR = "reports"


def register(subparsers: Any) -> None:
    validate = subparsers.add_parser(
        "validate", help="check a study file; every problem as FILE:LINE (writes nothing)"
    )
    validate.add_argument(
        "specs", nargs="+", metavar="SPEC", help="study YAML file(s); each is checked and reported"
    )
    validate.set_defaults(handler=handle_validate)

    run = subparsers.add_parser("run", help="run a study: search, final seeds, report (resumable)")
    run.add_argument("spec", help="study YAML, e.g. search_spaces/beauty.yaml")
    _add_run_options(run)
    run.set_defaults(handler=handle_run)

    resume = subparsers.add_parser(
        "resume", help="continue a stopped study, in its folder and nowhere else"
    )
    resume.add_argument(
        "name",
        help="the study's name (its folder under --studies-dir), or the path of its folder "
        "(anything with a '/')",
    )
    _add_run_options(resume)
    resume.set_defaults(handler=handle_resume)

    status = subparsers.add_parser(
        "status",
        help="trials by state and the best configuration so far; without a name, every study",
    )
    status.add_argument(
        "name",
        nargs="?",
        help="the study's name or folder path (default: list the studies in --studies-dir)",
    )
    status.add_argument(
        "--studies-dir", default=DEFAULT_STUDIES_DIR, metavar="DIR", help="default: studies"
    )
    status.set_defaults(handler=handle_status)

    export = subparsers.add_parser(
        "export",
        help="copy a study's results without its checkpoints and resume state, to archive or "
        "share (the report reads the copy; resume on it runs only what is missing)",
    )
    export.add_argument("name", help="the study's name or folder path")
    export.add_argument("destination", help="folder to write <name>/ into")
    export.add_argument(
        "--studies-dir", default=DEFAULT_STUDIES_DIR, metavar="DIR", help="default: studies"
    )
    export.add_argument(
        "--replace", action="store_true", help="overwrite an earlier export of the same study"
    )
    export.set_defaults(handler=handle_export)


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


def _print_problems(error: SpecError, source: str = "the spec") -> int:
    for problem in error.problems:
        print(problem, file=sys.stderr)
    print(f"faerec-study: {plural(len(error.problems), 'problem')} in {source}", file=sys.stderr)
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
    """Check every file given, even after a bad one; exit with the worst file's code."""
    codes = []
    for path in args.specs:
        if len(args.specs) == 1:
            codes.append(validate_one(path))
            continue
        try:
            codes.append(validate_one(path, source=path))
        except FaerecError as error:  # e.g. its data: report it and go on with the next file
            print(f"faerec-study: error: {path}: {error}", file=sys.stderr)
            codes.append(error.exit_code)
    return max(codes)


def validate_one(path: str, source: str = "the spec") -> int:
    try:
        spec = parse_spec(path)
    except SpecError as error:
        return _print_problems(error, source)
    loaded = check_data(spec)
    print(summary(spec))
    for dataset, label in zip(spec.datasets, spec.dataset_labels, strict=True):
        data = loaded[dataset]
        print(
            f"  data {label}: {plural(data.num_users, 'user')}, "
            f"{plural(data.num_items, 'item')}, "
            f"{plural(data.num_interactions, 'interaction')} (checked)"
        )
    for notice in cell_notices(spec):
        print(notice, file=sys.stderr)
    return 0


def cell_notices(spec: StudySpec) -> list[str]:
    """The notes of the cells' configurations (faerec.config.config_notices), each once, with
    the cells it concerns: a dataset without preset_as, a patience shorter than a curriculum
    period. A searched cell is judged at its fixed and preset settings."""
    from faerec.config import config_notices

    cells: dict[str, list[str]] = {}
    for cell in spec.cells():
        for notice in config_notices(spec.cell_config(cell), spec.preset):
            cells.setdefault(notice, []).append(cell.cell_id)
    return [f"{notice} ({', '.join(ids)})" for notice, ids in cells.items()]


def summary(spec: StudySpec) -> str:
    """What a study will do: cells, trials, parameters, final runs."""
    cells = spec.cells()
    searched = [c for c in cells if c.space is not None]
    trials = sum(spec.trials_for(c) for c in cells)
    metrics = ", ".join(f"{o.metric} ({o.direction})" for o in spec.search.objectives)
    references = len(searched) * spec.final_seeds if spec.final_reference else 0
    final_runs = len(cells) * spec.final_seeds + references
    lines = [
        f"{spec.source}: ok",
        f"study {spec.name}: {plural(len(cells), 'cell')} ({len(searched)} searched), "
        f"{plural(trials, 'trial')}, {plural(final_runs, 'final run')} "
        f"({plural(spec.final_seeds, 'seed')} per cell"
        + (f", {references} of them the searched cells' presets)" if references else ")"),
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
            f"  {cell.cell_id.ljust(width)}  {plural(spec.trials_for(cell), 'trial')} over "
            f"{plural(len(keys), 'parameter')}: {', '.join(keys)}"
        )
    for method, space in spec.search.spaces.items():
        lines.append(f"  space of {method}:")
        lines.extend(f"    {line}" for line in space.describe())
    return "\n".join(lines)


# --- run / resume ------------------------------------------------------------------------------


def _run(spec: StudySpec, args: argparse.Namespace, store: StudyStore) -> int:
    """Run the study in ``store`` as its only driver (``run_study`` writes to
    ``<studies_dir>/<spec.name>``, which is ``store.root``)."""
    from faerec.study.runner import RunOptions, run_study

    assert store.root == StudyStore.at(store.root.parent, spec.name).root
    options = RunOptions(
        studies_dir=store.root.parent,
        reports_dir=Path(args.reports_dir),
        address=args.address,
        max_concurrent=args.max_concurrent,
        command=_command_line(args),
    )
    for notice in cell_notices(spec):
        say(notice)  # the run's log starts here: timestamped lines
    with StudyLock(store.root, options.command):
        return run_study(spec, options)


def _before_work(store: StudyStore, args: argparse.Namespace) -> None:
    """Exit 2 at once when the study or reports folder cannot be written or another driver
    runs the study (``_run`` takes the lock for real once the data are checked)."""
    stored = store.load_study_json().get("name") if store.exists() else store.name
    if stored != store.name:
        raise FaerecError(
            f"{store.study_json}: this folder holds the study {stored!r}, not {store.name!r}; "
            f"rename it back to {stored!r} or choose another name (nothing was written)",
            exit_code=2,
        )
    store.check_writable()
    check_folder_writable(args.reports_dir, "the study writes its report there")
    holder = StudyLock.holder(store.root)
    if holder is not None:
        raise StudyLocked(
            f"{store.root}: another driver runs this study: {holder.describe()}; wait for it "
            "to end or stop it"
        )


def check_data(spec: StudySpec) -> dict[str, InteractionData]:
    """Load and check every dataset (and embedding file) the spec's cells use, before anything
    is written: bad data raise one FILE:LINE error (exit 2) instead of failing every trial."""
    from faerec.data.check import check_datasets

    configs = []
    for cell in spec.cells():
        configs.append(spec.cell_config(cell))
        for param in cell.space.walk() if cell.space is not None else ():
            if param.key in SEARCHED_DATA_KEYS and param.kind == "choice":  # each file, template
                configs.extend(spec.cell_config(cell, {param.key: c}) for c in param.choices)
    return check_datasets(configs)


def handle_run(args: argparse.Namespace) -> int:
    try:
        spec = parse_spec(args.spec)
    except SpecError as error:
        return _print_problems(error)
    store = StudyStore.at(args.studies_dir, spec.name)
    _before_work(store, args)
    check_data(spec)
    return _run(spec, args, store)


def study_folder(name: str, studies_dir: str) -> StudyStore:
    """A study named on the command line: a path when it has a '/', else a name under
    ``studies_dir``."""
    if "/" in name or name in (".", ".."):
        return StudyStore(Path(name).resolve())
    return StudyStore.at(studies_dir, name)


def handle_resume(args: argparse.Namespace) -> int:
    store = study_folder(args.name, args.studies_dir)
    payload = store.load_study_json()
    try:
        spec = spec_from_dict(payload["spec"], str(store.study_json))
    except SpecError as error:
        return _print_problems(error)
    stored = str(payload.get("name", spec.name))
    if spec.name != store.name or stored != store.name:
        raise FaerecError(
            f"{store.study_json}: this folder holds the study {stored!r}, but resuming it would "
            f"write to {store.root.parent / spec.name}; rename the folder to {spec.name!r} "
            "(nothing was written)",
            exit_code=2,
        )
    spec_text = store.read_spec_text()
    if spec_text:
        spec = _with_text(spec, spec_text)
    _before_work(store, args)
    check_data(spec)
    return _run(spec, args, store)


def _with_text(spec: StudySpec, text: str) -> StudySpec:
    import dataclasses

    return dataclasses.replace(spec, text=text)


# --- status ------------------------------------------------------------------------------------


@dataclass
class CellProgress:
    """What status shows of one cell."""

    cell_id: str
    info: dict[str, Any]
    trials: list[dict[str, str]]
    seeds: int
    seeds_set_aside: int
    #: the preset retrained on final seeds (final/reference_seed_<s>.json; searched cells only)
    references: int

    @property
    def searched(self) -> bool:
        return bool(self.info.get("has_space"))

    @property
    def target(self) -> int:
        value = self.info.get("n_trials_target")
        return int(value) if isinstance(value, (int, float)) else 0


def _cell_progress(store: StudyStore, cell_id: str) -> CellProgress:
    cell = store.cell(cell_id)
    cell.repair_journal()  # a cut last record is set aside now rather than at the next resume
    return CellProgress(
        cell_id=cell_id,
        info=read_json(cell.cell_json) if cell.cell_json.exists() else {},
        trials=read_csv(cell.trials_csv),
        seeds=len(cell.done_seeds()),
        seeds_set_aside=len(cell.set_aside_seeds()),
        references=len(cell.read_reference_seeds()),
    )


@dataclass(frozen=True)
class FinalPlan:
    """What the final stage owes each cell: ``seeds`` runs of the chosen configuration and, for a
    searched cell with ``final.reference`` on, as many runs of its preset."""

    seeds: int
    reference: bool

    @classmethod
    def of(cls, payload: dict[str, Any]) -> FinalPlan:
        final = payload["spec"].get("final", {})
        return cls(int(final.get("seeds", 0)), bool(final.get("reference", True)))

    def references(self, cell: CellProgress) -> int:
        """How many reference runs ``cell`` needs."""
        return self.seeds if self.reference and cell.searched else 0

    def complete(self, cell: CellProgress) -> bool:
        return cell.seeds >= self.seeds and cell.references >= self.references(cell)


def _study_state(
    store: StudyStore, holder: LockInfo | None, cells: list[CellProgress], final: FinalPlan
) -> str:
    """running (a driver holds the lock), finished (every trial, seed and reference run,
    results.csv), or interrupted (work is missing and no driver is at it)."""
    if holder is not None:
        return "running"
    complete = all(
        (not c.searched or count_trials(c.trials).done >= c.target) and final.complete(c)
        for c in cells
    )
    return "finished" if complete and store.results_csv.exists() else "interrupted"


def handle_status(args: argparse.Namespace) -> int:
    if args.name is None:
        return _list_studies(args.studies_dir)
    store = study_folder(args.name, args.studies_dir)
    payload = store.load_study_json()
    final = FinalPlan.of(payload)
    holder = StudyLock.holder(store.root)
    cells = [_cell_progress(store, str(cell_id)) for cell_id in payload["cells"]]
    state = _study_state(store, holder, cells, final)
    print(f"study {payload['name']}: {store.root}")
    if payload.get("description"):
        print(f"  {payload['description']}")
    print(f"  updated {payload.get('updated', '?')}")
    with contextlib.suppress(OSError, ValueError):  # a fact about cost; never fails status
        sessions = read_sessions(store.sessions_json)
        ran = active_seconds(sessions)
        if ran is not None:
            runs = plural(len(sessions), "driver session")
            since = sessions[0].get("started", "?")
            print(f"  ran {format_seconds(ran)} over {runs} since {since} (pauses excluded)")
    if holder is not None:
        print(f"  state: running, driver {holder.describe()}")
    elif state == "interrupted":
        print(f"  state: interrupted (no driver runs it); continue with: {_resume_hint(store)}")
    else:
        print("  state: finished")
    for cell in cells:
        counts = count_trials(cell.trials)
        print(cell.cell_id)
        if cell.searched:
            # a RUNNING row with no driver at work is a trial the last driver left behind
            running = f"running {counts.running}" if holder is not None else ""
            interrupted = counts.interrupted + (counts.running if holder is None else 0)
            parts = [
                f"complete {counts.complete}",
                f"pruned {counts.pruned}",
                f"failed {counts.failed}",
                running,
                f"interrupted {interrupted}" if interrupted else "",
            ]
            print(
                f"  trials: {counts.done}/{cell.info.get('n_trials_target', '?')} finished "
                f"({', '.join(p for p in parts if p)})"
            )
        else:
            print("  no search: runs its preset configuration")
        best_json = store.cell(cell.cell_id).best_json
        if best_json.exists():
            best = read_json(best_json)
            if best.get("trial") is not None:
                metric = best.get("metric", "value")
                print(f"  best: {metric} = {best['value']:.4f} (trial {best['trial']})")
                for key, value in sorted(best.get("params", {}).items()):
                    print(f"    {key} = {value}")
        elif cell.searched:
            print("  best: no completed trial yet")
        errors = sorted(
            {t["error"] for t in cell.trials if t["state"] == "FAIL" and t.get("error")}
        )
        for message in errors[:3]:
            print(f"  error: {message}")
        aside = f", {cell.seeds_set_aside} set aside" if cell.seeds_set_aside else ""
        references = final.references(cell)
        reference = f", reference {cell.references}/{references}" if references else ""
        print(f"  final: {cell.seeds}/{final.seeds} seeds{aside}{reference}")
    if store.results_csv.exists():
        print(f"results: {store.results_csv}")
    return 0


def handle_export(args: argparse.Namespace) -> int:
    store = study_folder(args.name, args.studies_dir)
    holder = StudyLock.holder(store.root)
    done = export_study(store, args.destination, replace=args.replace)
    print(
        f"exported {store.name} to {done.root}: {plural(done.files, 'file')}, "
        f"{done.bytes / 2**20:.1f} MiB; left out {plural(len(done.left_out), 'path')} of resume "
        "state (the driver's lock, Tune folders, checkpoints)"
    )
    if holder is not None:
        print(f"a driver (pid {holder.pid} on {holder.host}) is running: this is a snapshot")
    folder = shlex.quote(str(done.root.parent))
    print(f"report: faerec-study report {store.name} --studies-dir {folder}")
    return 0


def _resume_hint(store: StudyStore) -> str:
    default = StudyStore.at(DEFAULT_STUDIES_DIR, store.name).root
    where = store.name if store.root == default else str(store.root)
    return f"faerec-study resume {shlex.quote(where)}"


def _list_studies(studies_dir: str) -> int:
    """One line per study in ``studies_dir``: cells, trials done/target, seeds, reference runs,
    state."""
    stores = list_studies(studies_dir)
    if not stores:
        print(f"no studies in {Path(studies_dir).resolve()}")
        return 0
    rows = [("study", "cells", "trials", "seeds", "reference", "state")]
    for store in stores:
        payload = store.load_study_json()
        final = FinalPlan.of(payload)
        cells = [_cell_progress(store, str(cell_id)) for cell_id in payload["cells"]]
        holder = StudyLock.holder(store.root)
        done = sum(min(count_trials(c.trials).done, c.target) for c in cells if c.searched)
        target = sum(c.target for c in cells if c.searched)
        seeds = sum(min(c.seeds, final.seeds) for c in cells)
        references = sum(min(c.references, final.references(c)) for c in cells)
        state = _study_state(store, holder, cells, final)
        rows.append(
            (
                store.name,
                str(len(cells)),
                f"{done}/{target}",
                f"{seeds}/{final.seeds * len(cells)}",
                f"{references}/{sum(final.references(c) for c in cells)}",
                state if holder is None else f"running (pid {holder.pid} on {holder.host})",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print(
            "  ".join(value.ljust(width) for value, width in zip(row, widths, strict=True)).rstrip()
        )
    return 0
