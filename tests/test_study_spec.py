"""Study spec validation: good specs resolve; every problem is reported as FILE:LINE: key: ...;
nothing is ever written."""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path

import pytest

from faerec.cli import main
from faerec.study.spec import (
    SpecError,
    StudySpec,
    changed_keys,
    parse_spec,
    spec_from_dict,
    spec_hash,
)

REPO = Path(__file__).resolve().parent.parent

ISSUE_SPEC = """\
name: beauty-sasrec
description: FAERec against plain SASRec on Amazon Beauty
datasets: [beauty]
backbones: [sasrec]
methods: [backbone, faerec]
preset: official
fixed:
  train.max_epochs: 300
search:
  metric: valid.ndcg@20
  direction: maximize
  trials: 40
  sampler: tpe
  seed: 0
  space:
    faerec:
      faerec.gate: {choice: [dimension, scalar, bilinear]}
      faerec.tau: {loguniform: [0.02, 0.5]}
      faerec.align_weight: {loguniform: [0.01, 1.0]}
      faerec.curriculum:
        choice:
          cosine: {faerec.w_min: {uniform: [0.1, 0.95]}, faerec.period: {int: [10, 40]}}
          linear: {faerec.ramp_epochs: {int: [5, 60]}}
          constant: {}
scheduler: {type: asha, grace_epochs: 62, reduction_factor: 3}
resources: {cpus_per_trial: 1, gpus_per_trial: 0.25, max_concurrent: 2}
final: {seeds: 5}
report: {formats: [md, html]}
"""

MINIMAL = """\
name: tiny
datasets: [ml-100k]
backbones: [sasrec]
methods: [backbone]
"""


def write(tmp_path: Path, text: str, name: str = "spec.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def problems(path: Path) -> list[str]:
    with pytest.raises(SpecError) as caught:
        parse_spec(path)
    return [str(p) for p in caught.value.problems]


def only_problem(path: Path) -> str:
    found = problems(path)
    assert len(found) == 1, found
    return found[0]


# --- good specs --------------------------------------------------------------------------------


def test_issue_spec_resolves_cells_and_space(tmp_path: Path) -> None:
    spec = parse_spec(write(tmp_path, ISSUE_SPEC))
    assert [c.cell_id for c in spec.cells()] == [
        "beauty__sasrec__backbone",
        "beauty__sasrec__faerec",
    ]
    faerec_cell = spec.cells()[1]
    assert faerec_cell.space is not None and spec.cells()[0].space is None
    assert faerec_cell.space.keys() == [
        "faerec.gate",
        "faerec.tau",
        "faerec.align_weight",
        "faerec.curriculum",
        "faerec.w_min",
        "faerec.period",
        "faerec.ramp_epochs",
    ]
    assert spec.trials_for(faerec_cell) == 40 and spec.trials_for(spec.cells()[0]) == 0
    assert spec.scheduler.grace_epochs == 62 and spec.resources.gpus_per_trial == 0.25


def test_minimal_spec_gets_documented_defaults(tmp_path: Path) -> None:
    spec = parse_spec(write(tmp_path, MINIMAL))
    assert spec.preset == "official"
    assert [o.metric for o in spec.search.objectives] == ["valid.ndcg@20"]
    assert spec.search.trials == 20 and spec.search.sampler == "tpe" and spec.search.seed == 0
    assert spec.scheduler.type == "asha" and spec.final_seeds == 5
    assert spec.report_formats == ("md", "html", "csv") and spec.storage == ""
    assert spec.resources.max_concurrent is None and spec.resources.cpus_per_trial == 1.0


@pytest.mark.parametrize(
    "name", ["quick.yaml", "beauty.yaml", "yelp.yaml", "beauty-sasrec-cpu.yaml"]
)
def test_bundled_study_files_are_valid(name: str) -> None:
    spec = parse_spec(REPO / "search_spaces" / name)
    assert any(c.space is not None for c in spec.cells())
    assert {c.method for c in spec.cells()} >= {"backbone", "faerec"}


def test_resolved_spec_round_trips_through_study_json(tmp_path: Path) -> None:
    spec = parse_spec(write(tmp_path, ISSUE_SPEC))
    stored = json.loads(json.dumps(spec.to_dict()))
    again = spec_from_dict(stored, "study.json")
    assert again.to_dict() == spec.to_dict()
    assert spec_hash(stored) == spec_hash(spec.to_dict())


def test_resumed_space_keeps_the_order_of_parameters_and_choices(tmp_path: Path) -> None:
    # Optuna refuses a categorical whose choices come back in another order, so the space that
    # `resume` rebuilds from study.json must equal the parsed one, order included
    from faerec.study.bookkeeping import prepare_store
    from faerec.study.store import StudyStore

    spec = parse_spec(REPO / "search_spaces" / "beauty-sasrec-cpu.yaml")
    store = StudyStore.at(str(tmp_path), spec.name)
    prepare_store(spec, store, "faerec-study run")
    again = spec_from_dict(store.load_study_json()["spec"], str(store.study_json))

    def order(s: StudySpec) -> list[tuple[str, tuple[object, ...]]]:
        return [(p.key, tuple(p.choices or ())) for p in s.search.spaces["faerec"].walk()]

    assert order(again) == order(spec)


def test_numbers_written_without_a_dot_are_accepted(tmp_path: Path) -> None:
    # YAML 1.1 reads 1e-3 as text; a space bound written that way is still a number
    text = (
        MINIMAL + "search:\n  space:\n    backbone:\n      train.lr: {loguniform: [1e-4, 1e-2]}\n"
    )
    spec = parse_spec(write(tmp_path, text))
    (param,) = spec.search.spaces["backbone"].params
    assert (param.low, param.high) == (1e-4, 1e-2)


def test_dataset_path_inside_the_spec_folder_is_resolved(tmp_path: Path) -> None:
    (tmp_path / "data" / "food").mkdir(parents=True)
    spec = parse_spec(write(tmp_path, MINIMAL.replace("[ml-100k]", "[data/food]")))
    (cell,) = spec.cells()
    assert cell.dataset == str((tmp_path / "data" / "food").resolve())
    assert cell.cell_id == "food__sasrec__backbone"


def test_pareto_search_defaults_to_no_scheduler(tmp_path: Path) -> None:
    text = MINIMAL + (
        "search:\n  metric: [valid.head_items.ndcg@20, valid.tail_items.ndcg@20]\n"
        "  direction: maximize\n"
    )
    spec = parse_spec(write(tmp_path, text))
    assert [o.group for o in spec.search.objectives] == ["head_items", "tail_items"]
    assert spec.scheduler.type == "none"


# --- bad specs: one problem each, with its line ------------------------------------------------


BAD_CASES = [
    # (yaml appended to / substituted into MINIMAL, expected "LINE: key: message" fragment)
    ("colour: red\n", "5: colour: unknown key; expected one of: name, description"),
    ("search:\n  trials: 0\n", "6: search.trials: expected an integer >= 1, got 0"),
    (
        "search:\n  trials: many\n",
        "6: search.trials: expected an integer >= 1, got the text 'many'",
    ),
    ("search:\n  sampler: bayes\n", "6: search.sampler: expected one of tpe, random, cmaes, grid"),
    ("scheduler: {type: hyperband}\n", "5: scheduler.type: expected one of asha, median, none"),
    (
        "scheduler: {type: median, reduction_factor: 2}\n",
        "5: scheduler.reduction_factor: unknown key",
    ),
    ("search:\n  metric: test.ndcg@20\n", "6: search.metric: expected valid.<ndcg|hr>@K"),
    (
        "search:\n  metric: valid.ndcg@30\n",
        "6: search.metric: K=30 is not among eval.ks [5, 10, 20]",
    ),
    ("search:\n  direction: maximise\n", "6: search.direction: expected one of maximize, minimize"),
    ("fixed:\n  train.max_epoch: 5\n", "6: fixed.train.max_epoch: unknown configuration key"),
    ("fixed:\n  train.lr: fast\n", "6: fixed.train.lr: expected float, got 'fast'"),
    ("fixed:\n  model.backbone: gru4rec\n", "6: fixed.model.backbone: set by each cell"),
    (
        "fixed:\n  model.num_heads: 3\n",
        "6: fixed.model.num_heads: expected a divisor of model.hidden_size",
    ),
    (
        "resources: {cpus_per_trial: 0}\n",
        "5: resources.cpus_per_trial: expected a number > 0, got 0",
    ),
    (
        "resources: {gpus_per_trial: -1}\n",
        "5: resources.gpus_per_trial: expected a number >= 0, got -1",
    ),
    ("final: {seeds: -1}\n", "5: final.seeds: expected an integer >= 0, got -1"),
    ("final: {reference: maybe}\n", "5: final.reference: expected true or false, got the text"),
    ("report: {formats: [md, pdf]}\n", "5: report.formats[1]: expected one of md, html, csv, tex"),
    ("storage: 12\n", "5: storage: expected a database URL such as sqlite:///optuna.db"),
]


@pytest.mark.parametrize(("extra", "expected"), BAD_CASES)
def test_bad_top_level_values_name_file_line_and_key(
    tmp_path: Path, extra: str, expected: str
) -> None:
    path = write(tmp_path, MINIMAL + extra)
    assert only_problem(path).startswith(f"{path}:{expected}")


SPACE_CASES = [
    ("train.lr: {loguniform: [0, 0.1]}", "expected a positive low bound for loguniform, got 0"),
    ("train.lr: {uniform: [0.1, 0.01]}", "expected low < high, got [0.1, 0.01]"),
    ("train.lr: {uniform: [0.1, 0.1]}", "expected low < high, got [0.1, 0.1]"),
    ("train.lr: {uniform: [0.1]}", "expected uniform: [low, high] with numbers"),
    ("train.lr: {unifrom: [0.1, 0.2]}", "expected one distribution (choice, uniform"),
    ("train.lr: {uniform: [0.1, 0.2], foo: 1}", "foo: unknown key"),
    ("train.lr: 0.01", "expected one distribution"),
    ("train.lrr: {uniform: [0.1, 0.2]}", "unknown configuration key 'train.lrr'"),
    ("train.max_epochs: {int: [5, 10]}", "a budget or run setting: set it in fixed"),
    ("model.num_layers: {uniform: [1, 3]}", "is an integer key; use {int: [low, high]}"),
    ("model.num_layers: {int: [1.5, 3]}", "expected integers in int"),
    (
        "faerec.gate: {choice: [dimension, scalarr]}",
        "expected one of dimension, scalar, bilinear, none",
    ),
    ("faerec.gate: {uniform: [0, 1]}", "faerec.gate takes str values; use {choice: [...]}"),
    ("faerec.gate: {choice: []}", "expected choice: a non-empty list of options"),
    ("faerec.gate: {choice: [scalar, scalar]}", "option 'scalar' is listed twice"),
    ("faerec.w_min: {uniform: [0.5, 1.5]}", "expected a value in [0, 1], got 1.5"),
    ("eval.ks: {choice: [5, 10]}", "eval.ks holds a list; it cannot be searched"),
    ("train.lr: {discrete: [0.1, 0.5, 0.3]}", "expected (high - low) to be a multiple of step 0.3"),
]


@pytest.mark.parametrize(("param", "expected"), SPACE_CASES)
def test_bad_space_parameters_point_at_their_line(
    tmp_path: Path, param: str, expected: str
) -> None:
    text = MINIMAL + f"search:\n  space:\n    backbone:\n      {param}\n"
    path = write(tmp_path, text)
    message = only_problem(path)
    assert message.startswith(f"{path}:8: search.space.backbone."), message
    assert expected in message


def test_conditional_branch_problems_keep_their_own_lines(tmp_path: Path) -> None:
    text = MINIMAL.replace("[backbone]", "[faerec]") + textwrap.dedent(
        """\
        search:
          space:
            faerec:
              faerec.curriculum:
                choice:
                  cosine: {faerec.w_minn: {uniform: [0.1, 0.9]}}
                  linear: {faerec.ramp_epochs: {int: [5, 5]}}
                  spiral: {}
        """
    )
    path = write(tmp_path, text)
    prefix = "search.space.faerec.faerec.curriculum"
    assert problems(path) == [
        f"{path}:10: {prefix}.cosine.faerec.w_minn: unknown configuration key 'faerec.w_minn' "
        "(did you mean 'faerec.w_min'?)",
        f"{path}:11: {prefix}.linear.faerec.ramp_epochs: expected low < high, got [5, 5]",
        f"{path}:12: {prefix}.spiral: expected one of cosine, linear, constant, got 'spiral'",
    ]


def test_a_key_searched_twice_must_agree(tmp_path: Path) -> None:
    text = MINIMAL.replace("[backbone]", "[faerec]") + textwrap.dedent(
        """\
        search:
          space:
            faerec:
              faerec.curriculum:
                choice:
                  cosine: {faerec.w_min: {uniform: [0.1, 0.9]}}
                  linear: {faerec.w_min: {choice: [0.1, 0.9]}}
        """
    )
    message = only_problem(write(tmp_path, text))
    assert (
        ":11: search.space.faerec.faerec.curriculum.linear.faerec.w_min: also searched at line 10"
        in message
    )


def test_space_for_a_method_not_listed(tmp_path: Path) -> None:
    text = MINIMAL + "search:\n  space:\n    faerec: {faerec.tau: {uniform: [0.01, 0.1]}}\n"
    path = write(tmp_path, text)
    assert (
        only_problem(path)
        == f"{path}:7: search.space.faerec: expected a method listed in methods (backbone)"
    )


def test_grid_needs_a_finite_space(tmp_path: Path) -> None:
    text = (
        MINIMAL
        + "search:\n  sampler: grid\n  space:\n    backbone: {train.lr: {uniform: [0.1, 0.2]}}\n"
    )
    path = write(tmp_path, text)
    assert only_problem(path).startswith(
        f"{path}:6: search.sampler: grid needs choice, int or discrete"
    )


@pytest.mark.parametrize("name", ["../evil", "..", "a/b", "white space"])
def test_a_name_that_could_escape_its_folder_is_refused(tmp_path: Path, name: str) -> None:
    path = write(tmp_path, MINIMAL.replace("name: tiny", f"name: '{name}'"))
    assert only_problem(path).startswith(
        f"{path}:1: name: expected a folder name of letters, digits"
    )


def test_unknown_names_in_lists(tmp_path: Path) -> None:
    text = (
        "name: x\ndatasets: [beuty]\nbackbones: [sasrec, bert4rec]\nmethods: [backbone, faerecc]\n"
    )
    path = write(tmp_path, text)
    found = problems(path)
    assert found[0].startswith(f"{path}:2: datasets[0]: expected a bundled dataset")
    assert found[0].endswith("(did you mean 'beauty'?)")
    assert found[1] == (
        f"{path}:3: backbones[1]: expected one of sasrec, fmlprec, lrurec, gru4rec, got 'bert4rec' "
        "(did you mean 'gru4rec'?)"
    )
    assert found[2].startswith(f"{path}:4: methods[1]: expected one of backbone, faerec,")
    assert len(found) == 3


def test_dataset_path_escaping_the_spec_folder(tmp_path: Path) -> None:
    (tmp_path / "outside").mkdir()
    spec_dir = tmp_path / "specs"
    spec_dir.mkdir()
    for target in ("../outside", str(tmp_path / "outside")):
        path = write(spec_dir, MINIMAL.replace("[ml-100k]", f"['{target}']"))
        assert only_problem(path).startswith(
            f"{path}:2: datasets[0]: expected a path inside the spec's folder"
        )


def test_missing_required_keys(tmp_path: Path) -> None:
    path = write(tmp_path, "description: nothing else\n")
    assert problems(path) == [
        f"{path}:1: name: missing; this key is required",
        f"{path}:1: datasets: missing; this key is required",
        f"{path}:1: backbones: missing; this key is required",
        f"{path}:1: methods: missing; this key is required",
    ]


def test_yaml_syntax_error_has_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, "name: x\ndatasets: [ml-100k\nbackbones: [sasrec]\n")
    assert only_problem(path).startswith(f"{path}:3: yaml: not valid YAML: expected ',' or ']'")


def test_duplicate_keys_are_reported(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL + "methods: [faerec]\n")
    assert (
        only_problem(path)
        == f"{path}:5: methods: duplicate key (each key may appear once per mapping)"
    )


def test_yaml_tags_are_not_executed(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL + "description: !!python/object/apply:os.system ['true']\n")
    assert "not valid YAML" in only_problem(path)


def test_every_problem_is_listed_at_once(tmp_path: Path) -> None:
    text = MINIMAL + "search:\n  trials: 0\n  seed: -1\nfinal: {seeds: x}\ncolour: red\n"
    assert len(problems(write(tmp_path, text))) == 4


# --- the command -------------------------------------------------------------------------------


def _snapshot(folder: Path) -> set[str]:
    return {str(p) for p in folder.rglob("*")}


def test_validate_prints_a_summary_and_exits_0(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, ISSUE_SPEC)
    monkeypatch.chdir(tmp_path)
    before = _snapshot(tmp_path)
    assert main(["validate", str(path)]) == 0
    out = capsys.readouterr().out
    assert (
        "study beauty-sasrec: 2 cells (1 searched), 40 trials, 15 final runs (5 seeds per cell, "
        "5 of them the searched cells' presets)" in out
    )
    lines = {line.split()[0]: line for line in out.splitlines() if line.startswith("  beauty__")}
    assert "40 trials over 7 parameters: faerec.gate," in lines["beauty__sasrec__faerec"]
    assert lines["beauty__sasrec__backbone"].endswith("preset (no search)")
    assert _snapshot(tmp_path) == before


def test_validate_lists_every_problem_exits_2_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, MINIMAL + "search:\n  trials: 0\ncolour: red\n")
    monkeypatch.chdir(tmp_path)
    before = _snapshot(tmp_path)
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith(f"{path}:7: colour: unknown key")
    assert err[1] == f"{path}:6: search.trials: expected an integer >= 1, got 0"
    assert err[-1] == "faerec-study: 2 problems in the spec"
    assert _snapshot(tmp_path) == before


def test_run_refuses_a_bad_spec_before_writing_anything(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, MINIMAL + "colour: red\n")
    studies = tmp_path / "studies"
    assert main(["run", str(path), "--studies-dir", str(studies)]) == 2
    assert not studies.exists()
    assert "colour: unknown key" in capsys.readouterr().err


def test_unreadable_spec_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    assert only_problem(missing).startswith(f"{missing}: spec: cannot read the file")
    assert not os.path.exists(missing)


# --- compatibility of a changed spec -----------------------------------------------------------


def test_changed_keys_names_result_defining_changes_only(tmp_path: Path) -> None:
    old = parse_spec(write(tmp_path, ISSUE_SPEC)).to_dict()
    allowed = ISSUE_SPEC.replace("trials: 40", "trials: 60").replace("seeds: 5", "seeds: 10")
    allowed = allowed.replace("max_concurrent: 2", "max_concurrent: 4").replace(
        "seed: 0", "seed: 3"
    )
    assert changed_keys(old, parse_spec(write(tmp_path, allowed, "b.yaml")).to_dict()) == []
    changed = ISSUE_SPEC.replace("train.max_epochs: 300", "train.max_epochs: 400")
    changed = changed.replace("[0.02, 0.5]", "[0.02, 0.4]").replace(
        "grace_epochs: 62", "grace_epochs: 70"
    )
    assert changed_keys(old, parse_spec(write(tmp_path, changed, "c.yaml")).to_dict()) == [
        "fixed.train.max_epochs",
        "search.space.faerec.faerec.tau.loguniform",
        "scheduler.grace_epochs",
    ]


# --- budget: every run can select an epoch -----------------------------------------------------

FAEREC_BEAUTY = """\
name: budget
datasets: [beauty]
backbones: [sasrec]
methods: [faerec]
fixed:
  train.max_epochs: 50
search:
  space:
    faerec:
      faerec.tau: {loguniform: [0.02, 0.5]}
"""


def test_a_budget_that_ends_before_the_first_validation_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, FAEREC_BEAUTY)  # the official start is the 62nd epoch
    assert only_problem(path).startswith(
        f"{path}:6: fixed.train.max_epochs: train.max_epochs 50 ends before the first "
        "validation (train.eval_start_epoch 61 is 0-based: epoch 62)"
    )


def test_a_grace_period_before_the_first_validation_is_refused(tmp_path: Path) -> None:
    text = FAEREC_BEAUTY.replace("50", "100") + "scheduler: {type: asha, grace_epochs: 5}\n"
    path = write(tmp_path, text)
    assert only_problem(path).startswith(
        f"{path}:11: scheduler.grace_epochs: 5 ends before the first validated epoch 62"
    )


def test_a_grace_period_past_the_budget_is_refused(tmp_path: Path) -> None:
    text = FAEREC_BEAUTY.replace("50", "100") + "scheduler: {type: asha, grace_epochs: 101}\n"
    assert "101 is longer than train.max_epochs 100" in only_problem(write(tmp_path, text))


def test_an_unwritten_grace_period_follows_the_first_validation(tmp_path: Path) -> None:
    spec = parse_spec(write(tmp_path, FAEREC_BEAUTY.replace("50", "100")))
    again = spec_from_dict(json.loads(json.dumps(spec.to_dict())), "study.json")
    assert again.scheduler.grace_epochs == 1  # stored, and still accepted on resume


def test_validate_exits_2_on_a_budget_without_validation(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = FAEREC_BEAUTY + "scheduler: {type: asha, grace_epochs: 5}\n"
    assert main(["validate", str(write(tmp_path, text))]) == 2
    err = capsys.readouterr().err
    assert "fixed.train.max_epochs" in err and ": ok" not in err
