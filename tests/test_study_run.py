"""End to end through real Ray Tune and Optuna on ml-100k: the CLI, the store, re-runs."""

from __future__ import annotations

import contextlib
import io
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
import pytest

from faerec.cli import main
from faerec.study.reference import REFERENCE_ATTR
from faerec.study.searcher import open_storage
from faerec.study.store import read_csv, read_json

pytestmark = pytest.mark.ray

SPEC = """\
name: e2e
datasets: [ml-100k]
backbones: [sasrec]
methods: [backbone, faerec]
fixed:
  train.max_epochs: 2
  train.eval_start_epoch: 0
  model.hidden_size: 16
  model.num_layers: 1
  data.max_seq_length: 20
  faerec.pca_init: false         # the preset cell's FAERec: skip the SVD, keep the test short
search:
  trials: 3
  seed: 1
  space:
    backbone:
      train.lr: {loguniform: [0.0005, 0.01]}
      model.hidden_dropout:
        choice:
          0.2: {}
          0.5: {model.attention_dropout: {uniform: [0.1, 0.5]}}
scheduler: {type: asha, grace_epochs: 1, reduction_factor: 2}
resources: {cpus_per_trial: 1, max_concurrent: 2}
final: {seeds: 1, extend_max_epochs: 3}   # every final run hits its cap of 2, then trains on
report: {formats: [md]}
"""
SEARCHED = "ml-100k__sasrec__backbone"
PRESET = "ml-100k__sasrec__faerec"


class Study:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.spec = root / "spec.yaml"
        self.studies = root / "studies"
        self.reports = root / "reports"
        self.dir = self.studies / "e2e"
        self.exit_code = -1
        #: the progress lines of the first run (stdout: a pipe here, so timestamped lines)
        self.progress = ""

    def run(self, *extra: str) -> int:
        args = ["run", str(self.spec), "--studies-dir", str(self.studies)]
        return main([*args, "--reports-dir", str(self.reports), *extra])

    def cell(self, cell_id: str) -> Path:
        return self.dir / "cells" / cell_id

    def optuna_trials(self, cell_id: str) -> list[Any]:
        storage = open_storage("", str(self.cell(cell_id) / "optuna.journal"))
        return optuna.load_study(study_name=cell_id, storage=storage).trials


@pytest.fixture(scope="module")
def study(ray_instance: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Study]:
    study = Study(tmp_path_factory.mktemp("e2e"))
    study.spec.write_text(SPEC)
    with contextlib.redirect_stdout(io.StringIO()) as progress:
        study.exit_code = study.run()
    study.progress = progress.getvalue()
    yield study


def test_the_study_succeeds(study: Study) -> None:
    assert study.exit_code == 0


def test_study_json_and_spec_copy(study: Study) -> None:
    payload = read_json(study.dir / "study.json")
    assert payload["name"] == "e2e" and payload["cells"] == [SEARCHED, PRESET]
    assert payload["spec"]["search"]["trials"] == 3 and len(payload["spec_hash"]) == 16
    assert set(payload["versions"]) == {"faerec", "torch", "optuna", "ray", "python"}
    assert payload["command"] == (
        f"faerec-study run {study.spec} --studies-dir {study.studies} --reports-dir {study.reports}"
    )
    assert (study.dir / "spec.yaml").read_text() == SPEC


def test_trials_are_recorded_in_optuna_and_trials_csv(study: Study) -> None:
    trials = study.optuna_trials(SEARCHED)
    assert len(trials) == 3
    assert {t.state.name for t in trials} <= {"COMPLETE", "PRUNED"}
    assert any(t.state.name == "COMPLETE" for t in trials)
    assert trials[0].user_attrs["reference"] == "preset"  # the first trial is the preset's
    assert [REFERENCE_ATTR in t.user_attrs for t in trials] == [True, False, False]
    for trial in trials:  # conditional parameters exist exactly on their branch
        has_attention = "model.attention_dropout" in trial.params
        assert has_attention == (trial.params["model.hidden_dropout"] == 0.5)
        assert trial.intermediate_values  # every trial reported its epochs
    rows = read_csv(study.cell(SEARCHED) / "trials.csv")
    assert [int(r["number"]) for r in rows] == [0, 1, 2]
    for row, trial in zip(rows, trials, strict=True):
        assert row["state"] == trial.state.name
        assert json.loads(row["params"]) == trial.params
        assert int(row["epochs"]) in (1, 2) and float(row["seconds"]) > 0
        assert float(row["value"]) == pytest.approx(
            trial.value
            if trial.state.name == "COMPLETE"
            else trial.intermediate_values[max(trial.intermediate_values)]
        )


def test_pruned_trials_stopped_early(study: Study) -> None:
    for row in read_csv(study.cell(SEARCHED) / "trials.csv"):
        assert (row["state"] == "PRUNED") == (int(row["epochs"]) < 2)


def test_epochs_csv_has_every_epoch_of_every_trial(study: Study) -> None:
    rows = read_csv(study.cell(SEARCHED) / "epochs.csv")
    trials = read_csv(study.cell(SEARCHED) / "trials.csv")
    assert len(rows) == sum(int(t["epochs"]) for t in trials)
    assert {"trial", "epoch", "loss", "ndcg@20", "hr@10", "seconds", "cpu_seconds"} <= set(rows[0])
    assert all(float(row["cpu_seconds"]) > 0 for row in rows)


def test_best_json_holds_the_best_complete_trial(study: Study) -> None:
    best = read_json(study.cell(SEARCHED) / "best.json")
    complete = [t for t in study.optuna_trials(SEARCHED) if t.state.name == "COMPLETE"]
    top = max(complete, key=lambda t: t.value)
    assert best["trial"] == top.number and best["value"] == pytest.approx(top.value)
    assert best["params"] == top.params
    assert best["config"]["train"]["lr"] == pytest.approx(top.params["train.lr"])
    assert best["config"]["train"]["select_metric"] == "ndcg@20"


def test_a_cell_without_space_runs_its_preset(study: Study) -> None:
    assert not (study.cell(PRESET) / "optuna.journal").exists()
    best = read_json(study.cell(PRESET) / "best.json")
    assert best["trial"] is None and best["config"]["method"] == "faerec"
    assert best["config"]["model"]["hidden_dropout"] == 0.4  # the official FAERec preset
    assert best["config"]["train"]["max_epochs"] == 2  # ... under the study's fixed keys


def test_final_stage_and_results_csv(study: Study) -> None:
    for cell_id in (SEARCHED, PRESET):
        result = read_json(study.cell(cell_id) / "final" / "seed_2024.json")
        assert result["test"] is not None and result["config"]["train"]["seed"] == 2024
        assert len(result["test_ranks"]) == len(result["test_user_index"]) > 0
        assert not (study.cell(cell_id) / "final" / "seed_2024.ckpt").exists()
    reference = read_json(study.cell(SEARCHED) / "final" / "reference_seed_2024.json")
    assert reference["config"]["train"]["seed"] == 2024  # the preset, on the same seed
    rows = read_csv(study.dir / "results.csv")
    assert {(r["method"], r["split"]) for r in rows} == {
        (m, s) for m in ("backbone", "backbone-defaults", "faerec") for s in ("valid", "test")
    }
    assert {"overall", "head_items", "tail_items"} <= {r["group"] for r in rows}
    assert all(r["study"] == "e2e" and r["seed"] == "2024" for r in rows)


def test_final_runs_show_each_epoch_like_a_trial(study: Study) -> None:
    for run in (f"{SEARCHED} seed 2024", f"{SEARCHED} reference seed 2024", f"{PRESET} seed 2024"):
        lines = [line for line in study.progress.splitlines() if f" {run}  epoch " in line]
        assert [line.split("  ")[1] for line in lines] == [
            "epoch 1/2",
            "epoch 2/2",
            "epoch 3/3",  # final.extend_max_epochs: on from the cap-2 checkpoint
        ], run
        assert "valid ndcg@20 " in lines[-1]


def test_a_final_run_stopped_at_its_cap_trains_on_to_the_extended_cap(study: Study) -> None:
    for cell_id in (SEARCHED, PRESET):
        result = read_json(study.cell(cell_id) / "final" / "seed_2024.json")
        assert result["epochs_trained"] == 3 and result["config"]["train"]["max_epochs"] == 3
        assert [h["epoch"] for h in result["history"]] == [1, 2, 3]  # one unbroken history


def test_a_cell_without_search_starts_its_seeds_before_the_searched_cell_ends(
    study: Study,
) -> None:
    lines = study.progress.splitlines()

    def first_start(cell_id: str) -> int:
        return next(
            i
            for i, line in enumerate(lines)
            if f"{cell_id}  " in line and "final" in line and "running 1" in line
        )

    # queued while the search ran: first in line, though the searched cell comes first in order
    assert first_start(PRESET) < first_start(SEARCHED)


def test_the_driver_session_is_recorded_with_its_outcome(study: Study) -> None:
    first = read_json(study.dir / "sessions.json")[0]
    assert first["outcome"] == "finished" and first["ended"] >= first["started"]
    assert first["command"].startswith("faerec-study run ")


def test_finished_tune_experiment_keeps_no_checkpoints(study: Study) -> None:
    tune_dir = study.cell(SEARCHED) / "tune"
    assert read_json(tune_dir / "experiments.json")["experiments"][0]["status"] == "finished"
    assert not list(tune_dir.glob("*/*/checkpoint_*"))


def test_status_reads_the_store(study: Study, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["status", "e2e", "--studies-dir", str(study.studies)]) == 0
    out = capsys.readouterr().out
    assert f"{SEARCHED}\n  trials: 3/3 finished" in out
    assert "best: valid.ndcg@20 = " in out and "final: 1/1 seeds" in out
    assert re.search(r"\n  ran \S+ over 1 driver session since \S+ \(pauses excluded\)\n", out)
    assert f"{PRESET}\n  no search: runs its preset configuration" in out


def test_running_a_finished_study_again_reruns_nothing(study: Study) -> None:
    before = {p: p.stat().st_mtime_ns for p in study.dir.rglob("*.json") if "final" in p.parts}
    trials_before = (study.cell(SEARCHED) / "trials.csv").read_text()
    assert study.run() == 0
    assert (study.cell(SEARCHED) / "trials.csv").read_text() == trials_before
    assert {p: p.stat().st_mtime_ns for p in before} == before
    assert len(read_json(study.cell(SEARCHED) / "tune" / "experiments.json")["experiments"]) == 1


def test_a_spec_that_changes_results_is_refused(
    study: Study, capsys: pytest.CaptureFixture[str]
) -> None:
    changed = study.root / "changed.yaml"
    changed.write_text(SPEC.replace("train.max_epochs: 2", "train.max_epochs: 3"))
    args = ["run", str(changed), "--studies-dir", str(study.studies)]
    assert main(args) == 2
    assert "fixed.train.max_epochs" in capsys.readouterr().err


def test_raising_trials_extends_the_study(study: Study) -> None:
    study.spec.write_text(SPEC.replace("trials: 3", "trials: 4"))
    assert study.run() == 0
    trials = study.optuna_trials(SEARCHED)
    assert len(trials) == 4 and trials[3].state.name in ("COMPLETE", "PRUNED")
    assert len({json.dumps(t.params, sort_keys=True) for t in trials}) == 4
    experiments = read_json(study.cell(SEARCHED) / "tune" / "experiments.json")["experiments"]
    assert [e["num_samples"] for e in experiments] == [3, 1]


FAILING_SPEC = """\
name: broken
datasets: [ml-100k]
backbones: [sasrec]
methods: [backbone]
fixed:
  train.max_epochs: 1
  train.eval_start_epoch: 0
  model.hidden_size: 16
  model.num_layers: 1
search:
  trials: 3
  space:
    # valid data and a valid spec, but every trial's loss is NaN in its first batches
    backbone: {train.lr: {loguniform: [1.0e29, 1.0e30]}}
resources: {max_concurrent: 2}
final: {seeds: 1}
"""


def test_failing_trials_are_recorded_and_the_run_exits_1(
    ray_instance: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(FAILING_SPEC)
    studies = tmp_path / "studies"
    assert (
        main(["run", str(spec), "--studies-dir", str(studies), "--reports-dir", str(tmp_path)]) == 1
    )
    cell = studies / "broken" / "cells" / "ml-100k__sasrec__backbone"
    rows = read_csv(cell / "trials.csv")
    assert [r["state"] for r in rows] == ["FAIL", "FAIL", "FAIL"]  # the search went on
    assert all(r["error"].startswith("NaN loss at epoch ") for r in rows)
    err = capsys.readouterr().err
    assert "ml-100k__sasrec__backbone: all 3 trials failed: " in err and "NaN loss" in err
    assert not (cell / "final").exists()


PARETO_SPEC = """\
name: pareto
datasets: [ml-100k]
backbones: [sasrec]
methods: [backbone]
fixed:
  train.max_epochs: 1
  train.eval_start_epoch: 0
  model.hidden_size: 16
  model.num_layers: 1
  data.max_seq_length: 20
search:
  metric: [valid.head_items.ndcg@20, valid.tail_items.hr@20]
  sampler: grid
  trials: 10
  space:
    backbone:
      train.lr: {choice: [0.001, 0.01]}
resources: {max_concurrent: 2}
final: {seeds: 0}
storage: sqlite:///{db}
"""


def test_pareto_search_over_a_grid_in_a_database(ray_instance: None, tmp_path: Path) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(PARETO_SPEC.replace("{db}", str(tmp_path / "optuna.db")))
    assert (
        main(["run", str(spec), "--studies-dir", str(tmp_path), "--reports-dir", str(tmp_path)])
        == 0
    )
    cell = tmp_path / "pareto" / "cells" / SEARCHED
    rows = read_csv(cell / "trials.csv")
    assert sorted(json.loads(r["params"])["train.lr"] for r in rows) == [0.001, 0.01]  # grid size
    assert all(r["state"] == "COMPLETE" and r["value"] and r["value_1"] for r in rows)
    best = read_json(cell / "best.json")
    assert best["metrics"] == ["valid.head_items.ndcg@20", "valid.tail_items.hr@20"]
    assert best["trial"] in [p["trial"] for p in best["pareto"]]
    assert best["value"] == max(float(r["value"]) for r in rows)
    # the Optuna study lives in the database, under <study>.<cell>, not in a journal file
    assert not (cell / "optuna.journal").exists()
    stored = optuna.load_study(
        study_name=f"pareto.{SEARCHED}", storage=f"sqlite:///{tmp_path / 'optuna.db'}"
    )
    assert len(stored.trials) == 2 and len(stored.best_trials) >= 1


def test_resuming_an_export_runs_only_its_missing_final_seed(study: Study, tmp_path: Path) -> None:
    assert main(["export", "e2e", str(tmp_path), "--studies-dir", str(study.studies)]) == 0
    copy = tmp_path / "e2e"
    assert not (copy / "cells" / SEARCHED / "tune").exists()
    seed = copy / "cells" / PRESET / "final" / "seed_2024.json"
    finished = read_json(seed)
    seed.unlink()
    trials = (copy / "cells" / SEARCHED / "trials.csv").read_text()
    assert main(["resume", str(copy), "--reports-dir", str(tmp_path / "reports")]) == 0
    assert read_json(seed)["test"] == finished["test"]  # the same run again, from scratch
    assert (copy / "cells" / SEARCHED / "trials.csv").read_text() == trials  # no search again
