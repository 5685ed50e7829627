"""The study driver: per cell an Optuna study searched by Ray Tune, then final seeds, the report.

One process coordinates everything (the "driver"); it holds the study's lock. For each cell that
has a search space it opens the cell's Optuna study (``cells/<id>/optuna.journal``, or the spec's
RDB ``storage``) and runs search rounds until the study holds ``search.trials`` finished trials;
the cells search at the same time, one thread each, sharing the study's concurrency
(:mod:`faerec.study.cell_search`). Each round is a new Ray Tune experiment under
``cells/<id>/tune/`` asking for just the missing trials (:mod:`faerec.study.tune_setup`); Optuna
is the record of what finished, and a Tune experiment is never restored. Before each round,
and when a round was stopped, the trials a driver left RUNNING are failed as interrupted and
retried from their checkpoint (:mod:`faerec.study.retry`); so a study resumes the same way
after Ctrl-C, SIGTERM, SIGKILL or a crash, and never runs a finished configuration twice.

Ctrl-C and SIGTERM stop gently, a second one at once (:mod:`faerec.study.signals`); either way
the driver ends with :class:`StudyInterrupted` (exit code 3) and prints how to resume. The
bookkeeping files are kept by :mod:`faerec.study.bookkeeping` (no Ray needed), Ray itself by
:mod:`faerec.study.ray_session`. The driver reaches training only through
:mod:`faerec.study.trainable` and :mod:`faerec.study.final`, which call ``run_trial``.

Exit codes of :func:`run_study`: 0 done, 1 some cells or seeds failed, 2 bad input, 3 interrupted.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO, cast

from faerec.run_progress import say
from faerec.study.bookkeeping import (
    CellMonitor,
    prepare_store,
    touch_study_json,
    write_results_csv,
)
from faerec.study.progress import ProgressView, plan_study
from faerec.study.ray_session import QUIET_RAY_ENVIRONMENT as QUIET_RAY_ENVIRONMENT  # re-export
from faerec.study.ray_session import RaySession
from faerec.study.sessions import DriverSession
from faerec.study.signals import InterruptGuard, StudyInterrupted
from faerec.study.spec import Cell, StudySpec
from faerec.study.store import (
    StudyStore,
    count_trials,
    open_storage,
    optuna_study_name,
    write_json_atomic,
)
from faerec.text import plural

if TYPE_CHECKING:
    from faerec.study.cell_search import CellSearch
    from faerec.study.final import FinalStage

__all__ = ["QUIET_RAY_ENVIRONMENT", "RunOptions", "StudyInterrupted", "StudyRunner", "run_study"]


@dataclass
class RunOptions:
    studies_dir: Path
    reports_dir: Path
    address: str | None = None
    max_concurrent: int | None = None
    command: str = ""
    progress_stream: TextIO | None = None


@dataclass
class CellOutcome:
    cell_id: str
    errors: list[str] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return bool(self.errors)


class StudyRunner:
    """Runs one study to completion (or to an interruption) and returns the exit code."""

    def __init__(self, spec: StudySpec, options: RunOptions) -> None:
        self.spec = spec
        self.options = options
        self.store = StudyStore.at(options.studies_dir, spec.name)
        self.progress = ProgressView(options.progress_stream)
        self.guard = InterruptGuard()
        self.ray = RaySession(options.address, self.guard, self.progress)
        #: a cell's search failed: the others stop (faerec.study.cell_search)
        self.aborted = False
        #: the trial trainable's registered name (faerec.study.tune_setup)
        self.trainable = ""
        #: this driver's entry in sessions.json, once the store is ready
        self.session: DriverSession | None = None

    # -- top level -----------------------------------------------------------------------

    def run(self) -> int:
        outcome = "error"
        try:
            with self.guard:
                code = self.run_stages()
                outcome = "finished" if code == 0 else "failed"
                return code
        except (StudyInterrupted, KeyboardInterrupt):
            # StopNow, or the plain KeyboardInterrupt that Ray raises in its place when the
            # signal arrives while the driver waits inside ray.wait/ray.get (the final stage)
            outcome = "interrupted"
            self.progress.close()
            hint = f"faerec-study resume {self.spec.name}"
            default_dir = Path("studies").resolve()
            if self.store.root.parent != default_dir:
                hint += f" --studies-dir {self.store.root.parent}"
            say(f"interrupted; resume with: {hint}")
            return StudyInterrupted.exit_code
        finally:
            self.progress.close()
            self.ray.shutdown()
            if self.session is not None:
                self.session.close(outcome)

    def run_stages(self) -> int:
        """Store, search, final stage, results and report; under the interrupt guard, which
        stops at once everywhere but in a search round (there it waits for the epochs)."""
        self.guard.immediate = True
        prepare_store(self.spec, self.store, self.options.command)
        self.session = DriverSession(self.store.sessions_json, self.options.command).start()
        plan_study(self.progress, self.spec, self.store)
        searched: list[Cell] = []
        for cell in self.spec.cells():
            self.guard.check()
            if cell.space is None:
                self.write_preset_best(cell)
                self.progress.update(cell.cell_id, stage="preset", best="preset configuration")
                continue
            searched.append(cell)
        from faerec.study.final import FinalStage

        stage = FinalStage(self.spec, self.store, self.progress, self.guard)
        try:
            outcomes = self.search_cells(searched, stage)
            self.guard.check()
            failed = {o.cell_id for o in outcomes if o.failed}
            final_errors = self.final_stage(stage, failed)
        finally:
            if stage.pending:
                stage.cancel()
        self.guard.check()
        self.progress.close()
        self.ray.shutdown()  # the rest needs no Ray
        has_results = write_results_csv(self.spec, self.store) > 0
        touch_study_json(self.store)
        problems = [error for o in outcomes for error in o.errors] + final_errors
        if has_results:
            self.build_report(incomplete=bool(problems))
        else:
            self.progress.message("report: skipped, no final results yet")
        if problems:
            say("faerec-study: some cells failed:")
            for line in problems:
                say(f"  {line}")
            return 1
        return 0

    # -- search --------------------------------------------------------------------------

    def search_cells(self, cells: list[Cell], stage: FinalStage) -> list[CellOutcome]:
        """Every cell's search at the same time, sharing the study's concurrency
        (:mod:`faerec.study.cell_search`), until each holds its target of done trials.

        Meanwhile the final runs of the cells that need no search, or whose search has ended,
        take the slots the searches leave free (``stage``)."""
        from faerec.study.cell_search import run_concurrently
        from faerec.study.shared import TrialSlots

        searches = [self.open_search(cell) for cell in cells]
        pending = [s for s in searches if not s.complete()]
        for search in searches:
            if search not in pending:  # no round to run: closes what a stopped driver left
                search.run()
                if search.error is not None:
                    raise search.error
        outcomes = {
            s.cell.cell_id: self.cell_outcome(s.cell, s.study.get_trials(deepcopy=False))
            for s in searches
            if s not in pending
        }
        if pending:
            self.ray.ensure()  # first: it sets Ray's environment before Ray is imported
            from faerec.study.searcher import register_monitor, register_slots
            from faerec.study.tune_setup import register_trial_trainable

            self.trainable = register_trial_trainable(self.trial_resources())
            slots = TrialSlots(self.concurrency())
            stage.attach(slots, self.trial_resources())
            for search in pending:
                search.monitor.concurrency = slots.total
                register_monitor(search.cell.cell_id, search.monitor)
                register_slots(search.cell.cell_id, slots)
            monitors = [s.monitor for s in pending]
            self.guard.pending = lambda: _epochs_in_flight(sum(len(m.running) for m in monitors))
            self.guard.immediate = False  # a search round stops after the epochs in flight
            searching = {s.cell.cell_id for s in pending}

            def wanted_by_searches() -> int:
                """Slots the searches will still take: the trials they have yet to start.
                Final runs leave them free, so a search is never slowed by final runs; they
                fill only the slots its last trials leave idle."""
                wanted = 0
                for search in pending:
                    if not search.ended.is_set():
                        counts = count_trials(search.study.get_trials(deepcopy=False))
                        held = slots.held(search.cell.cell_id)
                        wanted += max(0, search.target - counts.done - held)
                return min(wanted, slots.total)

            stage.spare = wanted_by_searches

            def tick() -> None:
                """The final runs of cells done searching, while the others search."""
                if self.guard.interrupted or self.aborted:
                    if stage.pending:
                        stage.cancel()  # each resumes from its last epoch's checkpoint
                    return
                for search in pending:
                    cell_id = search.cell.cell_id
                    if cell_id in outcomes or not search.ended.is_set():
                        continue
                    if search.error is not None or not search.complete():
                        continue  # the driver raises or stops once every search has ended
                    trials = search.study.get_trials(deepcopy=False)
                    outcomes[cell_id] = self.cell_outcome(search.cell, trials)
                ready = [
                    cell
                    for cell in self.spec.cells()
                    if cell.cell_id not in searching
                    or (cell.cell_id in outcomes and not outcomes[cell.cell_id].failed)
                ]
                stage.add(stage.plan([c for c in ready if c.cell_id not in stage.totals]))
                stage.step(0.0)

            try:
                run_concurrently(pending, self.abort, tick)
            finally:
                self.guard.pending = lambda: None
                self.guard.immediate = True
                for search in pending:
                    register_monitor(search.cell.cell_id, None)
                    register_slots(search.cell.cell_id, None)
        self.guard.check()
        for search in pending:
            if search.cell.cell_id not in outcomes:
                trials = search.study.get_trials(deepcopy=False)
                outcomes[search.cell.cell_id] = self.cell_outcome(search.cell, trials)
        return [outcomes[s.cell.cell_id] for s in searches]

    def open_search(self, cell: Cell) -> CellSearch:
        """The cell's Optuna study (created on first use, the preset enqueued as its first
        trial) and what its search thread needs."""
        import optuna

        from faerec.study.cell_search import CellSearch
        from faerec.study.reference import enqueue_reference, note_reference
        from faerec.study.shared import claim, driver_mark, running_elsewhere

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        cell_store = self.store.cell(cell.cell_id)
        storage = open_storage(self.spec.storage, str(cell_store.journal))
        study_name = self.study_name(cell)
        with claim(storage, study_name):  # two drivers of a shared database enqueue it once
            study = optuna.create_study(
                study_name=study_name,
                storage=storage,
                load_if_exists=True,
                directions=[cast(Any, o.direction) for o in self.spec.search.objectives],
            )
            note_reference(self.progress, cell, enqueue_reference(study, self.spec, cell))
        target = self.spec.trials_for(cell)
        mine = driver_mark(self.store.root)
        return CellSearch(
            cell=cell,
            cell_store=cell_store,
            study=study,
            study_name=study_name,
            storage=storage,
            target=target,
            monitor=CellMonitor(self.spec, cell, cell_store, study, self.progress, target, 1),
            new_tuner=self.new_tuner,
            stopping=lambda: self.guard.interrupted or self.aborted,
            keep=lambda trial: running_elsewhere(trial, mine),
        )

    def abort(self) -> None:
        """A cell failed: the other cells stop after their epochs in flight."""
        self.aborted = True

    def new_tuner(
        self, cell: Cell, study_name: str, storage: Any, experiment: dict[str, Any]
    ) -> Any:
        """A search round's Tune experiment; it may run every slot of the study (the slots,
        not Tune, share them between cells)."""
        from faerec.study.shared import driver_mark
        from faerec.study.tune_setup import build_tuner

        return build_tuner(
            self.spec,
            cell,
            storage=storage,
            study_name=study_name,
            tune_dir=self.store.cell(cell.cell_id).tune_dir,
            experiment=experiment,
            concurrency=self.concurrency(),
            trainable=self.trainable,
            interrupted=lambda: self.guard.interrupted or self.aborted,
            target=self.spec.trials_for(cell),
            driver=driver_mark(self.store.root),
        )

    def study_name(self, cell: Cell) -> str:
        """cell_id in the cell's own journal; with a shared database, prefixed by the study."""
        return optuna_study_name(self.spec.name, cell.cell_id, self.spec.storage)

    def concurrency(self) -> int:
        if self.options.max_concurrent:
            return self.options.max_concurrent
        if self.spec.resources.max_concurrent:
            return self.spec.resources.max_concurrent
        cpus = self.ray.resources().get("CPU", 1.0)
        return max(1, int(cpus // self.spec.resources.cpus_per_trial))

    def trial_resources(self) -> dict[str, float]:
        """CPUs as asked; GPUs only where the cluster has some (a GPU request on a CPU-only
        machine would leave the trial pending forever, docs/ray-tune-notes.md §Resources)."""
        has_gpu = self.ray.resources().get("GPU", 0.0) > 0
        return {
            "cpu": self.spec.resources.cpus_per_trial,
            "gpu": self.spec.resources.gpus_per_trial if has_gpu else 0.0,
        }

    def cell_outcome(self, cell: Cell, trials: list[Any]) -> CellOutcome:
        """A cell fails when it has trials and every one of them failed."""
        outcome = CellOutcome(cell.cell_id)
        finished = [t for t in trials if t.state.name in ("COMPLETE", "PRUNED", "FAIL")]
        if finished and all(t.state.name == "FAIL" for t in finished):
            messages = Counter(t.user_attrs.get("error", "unknown error") for t in finished)
            summary = "; ".join(f"{m} ({plural(n, 'trial')})" for m, n in messages.most_common())
            outcome.errors.append(
                f"{cell.cell_id}: all {plural(len(finished), 'trial')} failed: {summary}"
            )
            self.progress.update(cell.cell_id, stage="failed", running=0)
        return outcome

    def write_preset_best(self, cell: Cell) -> None:
        """A cell without a space has no trials: its 'best' configuration is its preset."""
        record = {
            "params": {},
            "value": None,
            "trial": None,
            "metric": self.spec.search.objectives[0].metric,
            "config": self.spec.cell_config(cell).to_dict(),
        }
        write_json_atomic(self.store.cell(cell.cell_id).best_json, record)

    # -- final stage and report -----------------------------------------------------------

    def final_stage(self, stage: FinalStage, failed_cells: set[str]) -> list[str]:
        """The final runs not yet done while cells searched (all of them when none did)."""
        cells = [c for c in self.spec.cells() if c.cell_id not in failed_cells]
        stage.add(stage.plan([c for c in cells if c.cell_id not in stage.totals]))
        if not stage.busy():
            return stage.errors
        self.ray.ensure()
        return stage.run([], self.concurrency(), self.trial_resources())

    def build_report(self, incomplete: bool) -> None:
        """The report of the study; with failed cells, a report of the cells that have results."""
        try:
            from faerec.report import build_report
        except ImportError:
            where = self.store.results_csv
            self.progress.message(f"report: faerec.report.build_report is missing; see {where}")
            return
        out_dir = Path(self.options.reports_dir).resolve() / self.spec.name
        build_report(
            [self.store.root],
            out_dir,
            list(self.spec.report_formats),
            command=self.options.command or None,
            allow_incomplete=incomplete,
        )
        self.progress.message(f"report: {out_dir}")


def _epochs_in_flight(running: int) -> str | None:
    """What a gentle stop waits for while trials run (for the first signal's message)."""
    return f"the current epoch of {plural(running, 'trial')}" if running else None


def run_study(spec: StudySpec, options: RunOptions) -> int:
    """Run (or resume) a study; the exit code of ``faerec-study run``."""
    return StudyRunner(spec, options).run()
