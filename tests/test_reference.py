"""The preset as a reference: first trial of every search, final-stage row, report rows."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import optuna
import pytest
from report_fixtures import make_study_store, real_run

from faerec.report import build_report
from faerec.report.load import load_study
from faerec.study.reference import (
    ADJUSTED_ATTR,
    REFERENCE_ATTR,
    enqueue_reference,
    plan_reference,
    reference_params,
)
from faerec.study.space import SearchSpace
from faerec.study.spec import Cell, StudySpec, parse_spec
from faerec.study.store import CellStore, StudyStore

optuna.logging.set_verbosity(optuna.logging.WARNING)

SPEC = """\
name: ref
datasets: [beauty]
backbones: [sasrec]
methods: [backbone, faerec]
fixed:
  train.max_epochs: 20
  train.eval_start_epoch: 0
search:
  trials: 4
  space:
    faerec:
      faerec.gate: {choice: [dimension, scalar, bilinear]}
      faerec.tau: {loguniform: [0.02, 0.5]}
      model.hidden_dropout: {choice: [0.3, 0.5]}
      faerec.curriculum:
        choice:
          cosine: {faerec.w_min: {uniform: [0.5, 0.95]}, faerec.period: {int: [3, 10]}}
          linear: {faerec.ramp_epochs: {int: [2, 6]}}
scheduler: {type: asha, grace_epochs: 1}
final: {seeds: 2}
"""


def _spec(tmp_path: Path, text: str = SPEC) -> StudySpec:
    path = tmp_path / "spec.yaml"
    path.write_text(textwrap.dedent(text))
    return parse_spec(path)


def _faerec_cell(spec: StudySpec) -> Cell:
    return next(c for c in spec.cells() if c.method == "faerec")


def _space(cell: Cell) -> SearchSpace:
    assert cell.space is not None, "the test spec searches the FAERec cell"
    return cell.space


# --- the first trial ---------------------------------------------------------------------------


def test_reference_params_take_the_preset_values_on_its_branch(tmp_path: Path) -> None:
    spec = _spec(tmp_path)
    cell = _faerec_cell(spec)
    params, _ = reference_params(_space(cell), spec.cell_config(cell).flat())
    # official Beauty x SASRec FAERec: dimension gate, tau 0.05, cosine with w_min 0.9
    assert params["faerec.gate"] == "dimension" and params["faerec.tau"] == 0.05
    assert params["faerec.curriculum"] == "cosine" and params["faerec.w_min"] == 0.9
    assert "faerec.ramp_epochs" not in params  # the linear branch is not the preset's


def test_values_outside_the_space_move_to_the_nearest_and_are_recorded(tmp_path: Path) -> None:
    spec = _spec(tmp_path)
    cell = _faerec_cell(spec)
    params, adjusted = reference_params(_space(cell), spec.cell_config(cell).flat())
    assert params["faerec.period"] == 10  # preset 30, space [3, 10]
    assert params["model.hidden_dropout"] == 0.3  # preset 0.4 is not an option: the first one
    assert adjusted == {
        "model.hidden_dropout": {"preset": 0.4, "used": 0.3},
        "faerec.period": {"preset": 30, "used": 10},
    }


def test_the_first_trial_of_a_search_is_the_preset(tmp_path: Path) -> None:
    spec = _spec(tmp_path)
    cell = _faerec_cell(spec)
    study = optuna.create_study(direction="maximize")
    trial = enqueue_reference(study, spec, cell)
    assert trial is not None
    first = study.ask()
    drawn = _space(cell).suggest(first)
    assert drawn == trial.params
    assert first.number == 0 and study.trials[0].user_attrs[REFERENCE_ATTR] == "preset"
    assert study.trials[0].user_attrs[ADJUSTED_ATTR]["faerec.period"] == {
        "preset": 30,
        "used": 10,
    }


def test_a_study_with_trials_gets_no_second_reference(tmp_path: Path) -> None:
    spec = _spec(tmp_path)
    cell = _faerec_cell(spec)
    study = optuna.create_study(direction="maximize")
    assert enqueue_reference(study, spec, cell) is not None
    assert enqueue_reference(study, spec, cell) is None  # still waiting
    study.tell(study.ask(), 0.1)
    assert enqueue_reference(study, spec, cell) is None  # resumed
    assert sum(REFERENCE_ATTR in t.user_attrs for t in study.trials) == 1


def test_the_grid_sampler_gets_no_reference(tmp_path: Path) -> None:
    text = SPEC.replace("trials: 4\n", "trials: 4\n  sampler: grid\n")
    text = text.split("      faerec.tau")[0] + "scheduler: {type: none}\n"
    spec = _spec(tmp_path, text)
    assert enqueue_reference(optuna.create_study(), spec, _faerec_cell(spec)) is None


# --- the final-stage row -----------------------------------------------------------------------


def test_reference_runs_use_the_preset_and_the_tuned_seeds(tmp_path: Path) -> None:
    spec = _spec(tmp_path)
    cell = _faerec_cell(spec)
    cell_store = StudyStore.at(tmp_path / "studies", "ref").cell(cell.cell_id)
    plan = plan_reference(spec, cell, cell_store, [2024, 2025])
    assert (plan.total, plan.done) == (2, 0)
    seeds = [seed for seed, _, _, _ in plan.missing]
    assert seeds == [2024, 2025]
    _, config, output, checkpoint = plan.missing[1]
    assert config["train"]["seed"] == 2025 and config["faerec"]["period"] == 30  # not clipped
    assert config["train"]["max_epochs"] == 20  # the spec's fixed keys apply
    assert output.name == "reference_seed_2025.json" and checkpoint.parent == output.parent


def test_reference_runs_on_disk_are_not_planned_again(tmp_path: Path) -> None:
    spec = _spec(tmp_path)
    cell = _faerec_cell(spec)
    cell_store = StudyStore.at(tmp_path / "studies", "ref").cell(cell.cell_id)
    cell_store.final_dir.mkdir(parents=True)
    result = json.dumps(real_run("faerec", 2024).to_dict())
    cell_store.reference_json(2024).write_text(result)
    cell_store.seed_json(2025).write_text(result)  # a tuned seed: not a reference
    plan = plan_reference(spec, cell, cell_store, [2024, 2025])
    assert (plan.total, plan.done) == (2, 1)
    assert [seed for seed, _, _, _ in plan.missing] == [2025]


def test_final_reference_false_turns_the_row_off(tmp_path: Path) -> None:
    spec = _spec(tmp_path, SPEC.replace("final: {seeds: 2}", "final: {seeds: 2, reference: false}"))
    cell = _faerec_cell(spec)
    cell_store = StudyStore.at(tmp_path / "studies", "ref").cell(cell.cell_id)
    assert plan_reference(spec, cell, cell_store, [2024]).total == 0
    assert spec.to_dict()["final"]["reference"] is False


def test_a_cell_without_search_has_no_reference_row(tmp_path: Path) -> None:
    spec = _spec(tmp_path)
    backbone = next(c for c in spec.cells() if c.method == "backbone")
    cell_store = StudyStore.at(tmp_path / "studies", "ref").cell(backbone.cell_id)
    assert plan_reference(spec, backbone, cell_store, [2024]).total == 0


# --- the report --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def reference_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Real ml-100k runs: backbone and FAERec, with the no-gate runs standing in as defaults."""
    studies = tmp_path_factory.mktemp("studies")
    store = make_study_store(
        studies, "refdemo", methods=("backbone", "faerec"), searched=(), real=True
    )
    cell_store = CellStore(store / "cells" / "ml-100k__sasrec__faerec")
    for seed in (2024, 2025):
        payload = real_run("faerec-no-gate", seed).to_dict()
        cell_store.reference_json(seed).write_text(json.dumps(payload))
    out = tmp_path_factory.mktemp("reports") / "refdemo"
    build_report([store], out, formats=("md", "html", "tex"), command="faerec-study report refdemo")
    return out


def test_reference_runs_load_as_a_defaults_cell(tmp_path: Path) -> None:
    store = make_study_store(tmp_path, "x", methods=("backbone", "faerec"), searched=(), real=True)
    cell_store = CellStore(store / "cells" / "ml-100k__sasrec__faerec")
    cell_store.reference_json(2024).write_text(json.dumps(real_run("faerec", 2024).to_dict()))
    methods = [c.method for c in load_study(store).cells]
    assert methods == ["backbone", "faerec", "faerec-defaults"]


def test_main_table_shows_backbone_defaults_then_tuned(reference_report: Path) -> None:
    text = (reference_report / "report.md").read_text()
    table = text.split("## Results:")[1].split("*Table")[0]
    rows = [line.split("|")[1].strip() for line in table.splitlines() if line.startswith("| ")]
    assert rows[2:] == [
        "SASRec",
        "SASRec + FAERec, paper defaults",
        "SASRec + FAERec",
        "*Improv. of FAERec*",
    ]


def test_tuned_is_tested_against_the_defaults(reference_report: Path) -> None:
    text = (reference_report / "report.md").read_text()
    assert "### Tuned against paper defaults" in text
    tuning = text.split("### Tuned against paper defaults")[1]
    assert "vs SASRec + FAERec, paper defaults" in tuning.split("</details>")[0]
    assert "Improv. of tuning" in tuning
    html = (reference_report / "report.html").read_text()
    assert "Tuned against paper defaults" in html and "paper defaults" in html
    tex = (reference_report / "report.tex").read_text()
    assert r"\label{tab:tuning-ml-100k-sasrec}" in tex and "Improv. of tuning" in tex


def test_a_preset_trial_interrupted_twice_is_retried_as_the_preset(tmp_path: Path) -> None:
    """A driver stopped while the preset trial ran, then while its retry ran: the third attempt,
    asked by a new search round's searcher, still carries the label and the preset's values."""
    from faerec.study.retry import RETRY_ATTR, retry_interrupted_trials
    from faerec.study.searcher import StudyOptunaSearch

    spec = _spec(tmp_path)
    cell = _faerec_cell(spec)
    storage = optuna.storages.InMemoryStorage()
    study = optuna.create_study(study_name="cell", storage=storage, direction="maximize")
    reference = enqueue_reference(study, spec, cell)
    assert reference is not None
    numbers = []
    for round_number in (1, 2, 3):
        searcher = StudyOptunaSearch(
            space=_space(cell),
            metric="objective",
            mode="max",
            storage=storage,
            study_name="cell",
            cell_id=cell.cell_id,
            sampler_kind="tpe",
            base_seed=0,
            tune_dir=str(tmp_path / "tune"),
            experiment=f"search-{round_number:03d}",
        )
        config = searcher.suggest(f"t{round_number}")
        assert config is not None
        numbers.append(config["faerec_trial"])
        retry_interrupted_trials(study)  # the driver stops while the trial runs
    third = study.trials[numbers[-1]]
    assert numbers == [0, 1, 2] and third.user_attrs[RETRY_ATTR] == 1
    assert third.user_attrs[REFERENCE_ATTR] == "preset"
    assert third.user_attrs[ADJUSTED_ATTR] == study.trials[0].user_attrs[ADJUSTED_ATTR]
    assert third.params == reference.params
