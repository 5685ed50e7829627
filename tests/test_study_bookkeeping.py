"""The driver's bookkeeping, signals and retries, without starting Ray: experiment index, trial
rows, best record, progress counts, epochs.csv, retries of interrupted trials, checkpoint choice,
the interrupt guard, and the searcher's answer to news about a finished trial."""

from __future__ import annotations

import io
import json
import os
import signal
import threading
import time
from dataclasses import asdict
from pathlib import Path

import optuna
import pytest
import torch
from optuna.trial import TrialState

from faerec.atomic import write_json_atomic
from faerec.results import EpochReport
from faerec.study.bookkeeping import (
    CellMonitor,
    ExperimentIndex,
    best_record,
    search_progress,
    trial_row,
)
from faerec.study.progress import ProgressView
from faerec.study.retry import (
    INTERRUPTED_ERROR,
    RETRY_ATTR,
    STALE_ATTR,
    TUNE_TRIAL_ATTR,
    attempt_dirs,
    retry_interrupted_trials,
)
from faerec.study.signals import InterruptGuard, StopNow
from faerec.study.spec import StudySpec, parse_spec_text
from faerec.study.store import StudyStore, TrialCounts, count_trials, read_csv, read_json
from faerec.study.trainable import HISTORY_KEY, restore_checkpoint
from faerec.training import CHECKPOINT_FILE, CHECKPOINT_FORMAT

optuna.logging.set_verbosity(optuna.logging.WARNING)

SPEC = """\
name: books
datasets: [ml-100k]
backbones: [sasrec]
methods: [backbone]
fixed: {train.max_epochs: 3, train.eval_start_epoch: 0}
search:
  trials: 4
  space:
    backbone:
      train.lr: {loguniform: [0.0005, 0.01]}
final: {seeds: 0}
"""


@pytest.fixture
def spec(tmp_path: Path) -> StudySpec:
    return parse_spec_text(SPEC, "spec.yaml", tmp_path)


def finished_study(values: list[float | None], pruned_at: int | None = None) -> optuna.Study:
    """COMPLETE trials with ``values`` (None: PRUNED after reporting 0.5 at ``pruned_at``)."""
    study = optuna.create_study(direction="maximize")
    for value in values:
        trial = study.ask({"train.lr": optuna.distributions.FloatDistribution(1e-4, 1e-2)})
        if value is None:
            trial.report(0.5, pruned_at or 1)
            study.tell(trial, state=TrialState.PRUNED)
        else:
            study.tell(trial, value)
    return study


# --- experiment index --------------------------------------------------------------------------


def test_experiment_names_skip_taken_folders(tmp_path: Path) -> None:
    (tmp_path / "search-001").mkdir()  # a folder whose index entry was lost
    index = ExperimentIndex(tmp_path)
    assert index.new(4)["name"] == "search-002"
    assert index.new(2)["name"] == "search-003"


def test_experiments_left_running_are_marked_interrupted(tmp_path: Path) -> None:
    index = ExperimentIndex(tmp_path)
    first = index.new(4)
    index.mark(index.new(1), "finished")
    assert ExperimentIndex(tmp_path).close_interrupted() == [first["name"]]
    statuses = [e["status"] for e in read_json(tmp_path / "experiments.json")["experiments"]]
    assert statuses == ["interrupted", "finished"]


# --- trial rows, best record, progress ---------------------------------------------------------


def test_a_pruned_trials_row_keeps_its_last_reported_value() -> None:
    study = finished_study([None], pruned_at=2)
    row = trial_row(study.trials[0])
    assert (row["state"], row["value"]) == ("PRUNED", 0.5)


def test_best_record_is_the_best_complete_trial(spec: StudySpec) -> None:
    study = finished_study([0.1, 0.3, None, 0.2])
    best = best_record(spec, spec.cells()[0], study.trials)
    assert best is not None and (best["trial"], best["value"]) == (1, 0.3)
    assert best["config"]["train"]["lr"] == pytest.approx(study.trials[1].params["train.lr"])


def test_progress_counts_an_interrupted_trial_neither_done_nor_failed(spec: StudySpec) -> None:
    study = finished_study([0.1])
    study.ask()  # left RUNNING by a stopped driver
    retry_interrupted_trials(study)
    fields = search_progress(spec, study.trials, target=4, concurrency=2)
    trials = fields["trials"]
    assert isinstance(trials, TrialCounts)
    assert (trials.complete, trials.failed, fields["running"]) == (1, 0, 0)


# --- retries of interrupted trials ---------------------------------------------------------------


def test_a_running_trial_is_failed_as_interrupted_and_enqueued_again() -> None:
    study = optuna.create_study()
    study.enqueue_trial({"x": 0.25}, user_attrs={"reference": "preset"})
    running = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
    running.set_user_attr(TUNE_TRIAL_ATTR, "search-001/trial_a")
    assert retry_interrupted_trials(study) == [running.number]
    stale = study.trials[running.number]
    assert stale.state == TrialState.FAIL and stale.user_attrs[STALE_ATTR] is True
    assert stale.user_attrs["error"] == INTERRUPTED_ERROR
    retry = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
    assert retry.params == {"x": 0.25}
    # the configuration's attributes go with it, the attempt's own do not
    assert retry.user_attrs == {"reference": "preset", RETRY_ATTR: running.number}
    assert count_trials(study.trials).done == 0


def test_attempt_folders_follow_the_retry_chain_newest_first(tmp_path: Path) -> None:
    study = optuna.create_study()
    dist: dict[str, optuna.distributions.BaseDistribution] = {
        "x": optuna.distributions.FloatDistribution(0, 1)
    }
    first = study.ask(dist)
    first.set_user_attr(TUNE_TRIAL_ATTR, "search-001/trial_a")
    retry_interrupted_trials(study)
    second = study.ask(dist)
    second.set_user_attr(TUNE_TRIAL_ATTR, "search-002/trial_b")
    retry_interrupted_trials(study)
    third = study.ask(dist)
    frozen = study.trials[third.number]
    assert attempt_dirs(study.trials, frozen, tmp_path) == [
        str(tmp_path / "search-002/trial_b"),
        str(tmp_path / "search-001/trial_a"),
    ]
    assert count_trials(study.trials).interrupted == 2


# --- the cell monitor --------------------------------------------------------------------------


def test_a_resumed_trial_gets_the_epochs_of_its_checkpoint_in_epochs_csv(
    spec: StudySpec, tmp_path: Path
) -> None:
    cell = spec.cells()[0]
    cell_store = StudyStore.at(tmp_path, "books").cell(cell.cell_id)
    cell_store.root.mkdir(parents=True)
    study = optuna.create_study(direction="maximize")
    trial = study.ask({"train.lr": optuna.distributions.FloatDistribution(1e-4, 1e-2)})
    monitor = CellMonitor(spec, cell, cell_store, study, ProgressView(io.StringIO()), 4, 2)
    monitor.trial_started(trial.number, trial.params)
    assert monitor.running == {trial.number}
    earlier = [{"epoch": 0, "loss": 1.5, "valid/ndcg@20": 0.01}]
    monitor.trial_result(trial.number, {"epoch": 1, "loss": 1.2, HISTORY_KEY: json.dumps(earlier)})
    study.tell(trial, 0.02)
    monitor.trial_finished(trial.number)
    assert monitor.running == set()
    rows = read_csv(cell_store.epochs_csv)
    assert [(r["epoch"], r["loss"]) for r in rows] == [("1", "1.5"), ("2", "1.2")]  # from 1
    assert rows[0]["ndcg@20"] == "0.01"
    assert [r["state"] for r in read_csv(cell_store.trials_csv)] == ["COMPLETE"]


def test_a_study_created_before_epochs_counted_from_1_keeps_counting_from_0(
    spec: StudySpec, tmp_path: Path
) -> None:
    cell = spec.cells()[0]
    store = StudyStore.at(tmp_path, "books")
    cell_store = store.cell(cell.cell_id)
    cell_store.root.mkdir(parents=True)
    write_json_atomic(store.study_json, {"name": "books", "spec": {}})  # an older study.json
    study = optuna.create_study(direction="maximize")
    trial = study.ask({"train.lr": optuna.distributions.FloatDistribution(1e-4, 1e-2)})
    monitor = CellMonitor(spec, cell, cell_store, study, ProgressView(io.StringIO()), 4, 2)
    monitor.trial_result(trial.number, {"epoch": 0, "loss": 1.5})
    monitor.write_epochs()
    assert [r["epoch"] for r in read_csv(cell_store.epochs_csv)] == ["0"]


# --- checkpoints of a resumed trial ------------------------------------------------------------


def _checkpoint(folder: Path, epochs: int) -> None:
    folder.mkdir(parents=True)
    history = [asdict(EpochReport(e, 1.0, {}, None, None, None, 0.1)) for e in range(epochs)]
    torch.save({"format": CHECKPOINT_FORMAT, "history": history}, folder / CHECKPOINT_FILE)


def test_a_cut_checkpoint_falls_back_to_the_previous_attempts(tmp_path: Path) -> None:
    newest, older = tmp_path / "search-002/trial_b", tmp_path / "search-001/trial_a"
    _checkpoint(older / "checkpoint_000001", epochs=2)
    (newest / "checkpoint_000000").mkdir(parents=True)
    (newest / "checkpoint_000000" / CHECKPOINT_FILE).write_bytes(b"PK\x03\x04 cut short")
    workdir = tmp_path / "work"
    workdir.mkdir()
    history = restore_checkpoint(workdir, None, [str(newest), str(older)])
    assert [report.epoch for report in history] == [0, 1]
    assert (workdir / CHECKPOINT_FILE).is_file()


def test_without_a_usable_checkpoint_the_trial_starts_from_scratch(tmp_path: Path) -> None:
    gone = tmp_path / "search-001/trial_a"  # its folder was deleted
    empty = tmp_path / "search-002/trial_b"
    (empty / "checkpoint_000000").mkdir(parents=True)  # copied without its file
    workdir = tmp_path / "work"
    workdir.mkdir()
    assert restore_checkpoint(workdir, None, [str(empty), str(gone)]) == []
    assert list(workdir.iterdir()) == []


# --- signals -----------------------------------------------------------------------------------


def test_a_first_sigterm_says_what_it_waits_for_and_a_second_stops_now(
    capfd: pytest.CaptureFixture[str],
) -> None:
    with InterruptGuard() as guard:
        guard.pending = lambda: "the current epoch of 2 trials"
        os.kill(os.getpid(), signal.SIGTERM)
        assert guard.interrupted
        assert "SIGTERM: stopping after the current epoch of 2 trials; press Ctrl-C again" in (
            capfd.readouterr().err
        )
        with pytest.raises(StopNow):
            os.kill(os.getpid(), signal.SIGINT)
    assert signal.getsignal(signal.SIGTERM) is not guard._on_signal  # handlers given back


def test_a_signal_handled_in_another_thread_stops_the_main_thread(
    capfd: pytest.CaptureFixture[str],
) -> None:
    """The handler once ran in a thread Ray had just started; StopNow must still reach the main
    thread, the one that has to leave, not end the other thread alone."""
    with InterruptGuard() as guard:
        guard.interrupted = True  # the first signal came; this is the second
        other = threading.Thread(target=guard._on_signal, args=(signal.SIGTERM, None))
        with pytest.raises(StopNow):
            other.start()
            other.join()
            for _ in range(100):  # the main thread runs the handler at its next bytecode
                time.sleep(0.01)
    assert capfd.readouterr().err.count("SIGTERM again: stopping now") == 1


# --- the searcher ------------------------------------------------------------------------------


def test_news_about_a_trial_optuna_already_finished_is_ignored(spec: StudySpec) -> None:
    """The resume bug: a trial finished in Optuna was reported again and the searcher raised
    UpdateFinishedTrialError. Optuna is the record; the news changes nothing."""
    from faerec.study.searcher import StudyOptunaSearch

    storage = optuna.storages.InMemoryStorage()
    optuna.create_study(study_name="cell", storage=storage, direction="maximize")
    cell = spec.cells()[0]
    assert cell.space is not None
    searcher = StudyOptunaSearch(
        space=cell.space,
        metric="objective",
        mode="max",
        storage=storage,
        study_name="cell",
        cell_id=cell.cell_id,
        sampler_kind="tpe",
        base_seed=0,
        tune_dir="/tmp/tune",
        experiment="search-001",
    )
    config = searcher.suggest("a1")
    assert config is not None
    number = config["faerec_trial"]
    study = optuna.load_study(study_name="cell", storage=storage)
    study.tell(number, 0.25)  # finished elsewhere (an earlier driver)
    searcher.on_trial_result("a1", {"objective": 0.5, "epochs_trained": 1, "epoch": 0})
    searcher.on_trial_complete("a1", {"objective": 0.9, "trial_finished": True})
    searcher.on_trial_complete("a1", error=True)
    trial = study.trials[number]
    assert (trial.state, trial.value) == (TrialState.COMPLETE, 0.25)
    assert trial.user_attrs[TUNE_TRIAL_ATTR] == "search-001/trial_a1"


def test_outside_a_search_round_the_first_signal_stops_at_once(
    capfd: pytest.CaptureFixture[str],
) -> None:
    with InterruptGuard() as guard:
        guard.immediate = True
        with pytest.raises(StopNow):
            os.kill(os.getpid(), signal.SIGTERM)
    assert guard.interrupted and "SIGTERM: stopping now" in capfd.readouterr().err
