"""The YAML space compiled to an Optuna define-by-run function, exercised with plain Optuna."""

from __future__ import annotations

import pickle
import textwrap
from pathlib import Path

import optuna
import pytest

from faerec.study.space import SearchSpace, build_sampler
from faerec.study.spec import parse_spec

optuna.logging.set_verbosity(optuna.logging.WARNING)

SPEC = """\
name: space
datasets: [ml-100k]
backbones: [sasrec]
methods: [faerec]
search:
  space:
    faerec:
      faerec.gate: {choice: [dimension, scalar, bilinear]}
      faerec.tau: {loguniform: [0.02, 0.5]}
      model.num_layers: {int: [1, 3]}
      train.lr: {discrete: [0.001, 0.005, 0.001]}
      faerec.curriculum:
        choice:
          cosine: {faerec.w_min: {uniform: [0.1, 0.95]}, faerec.period: {int: [10, 40, ], step: 5}}
          linear: {faerec.ramp_epochs: {int: [5, 60]}}
          constant: {}
"""

BRANCH_KEYS = {
    "cosine": {"faerec.w_min", "faerec.period"},
    "linear": {"faerec.ramp_epochs"},
    "constant": set(),
}
COMMON_KEYS = {"faerec.gate", "faerec.tau", "model.num_layers", "train.lr", "faerec.curriculum"}


def compiled(tmp_path: Path, text: str = SPEC) -> SearchSpace:
    path = tmp_path / "spec.yaml"
    path.write_text(textwrap.dedent(text))
    return parse_spec(path).search.spaces["faerec"]


def optimize(space: SearchSpace, trials: int, seed: int = 0) -> optuna.Study:
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    study.optimize(lambda trial: float(len(space.suggest(trial))), n_trials=trials)
    return study


def test_branch_parameters_appear_only_with_their_branch(tmp_path: Path) -> None:
    study = optimize(compiled(tmp_path), trials=40)
    seen_branches = set()
    for trial in study.trials:
        branch = trial.params["faerec.curriculum"]
        seen_branches.add(branch)
        assert set(trial.params) == COMMON_KEYS | BRANCH_KEYS[branch]
    assert seen_branches == set(BRANCH_KEYS)


def test_values_respect_their_distributions(tmp_path: Path) -> None:
    study = optimize(compiled(tmp_path), trials=40, seed=1)
    for trial in study.trials:
        p = trial.params
        assert p["faerec.gate"] in ("dimension", "scalar", "bilinear")
        assert 0.02 <= p["faerec.tau"] <= 0.5
        assert p["model.num_layers"] in (1, 2, 3)
        assert round(p["train.lr"] * 1000) in (1, 2, 3, 4, 5)
        assert abs(p["train.lr"] * 1000 - round(p["train.lr"] * 1000)) < 1e-9
        if "faerec.period" in p:
            assert p["faerec.period"] in (10, 15, 20, 25, 30, 35, 40)
        if "faerec.ramp_epochs" in p:
            assert 5 <= p["faerec.ramp_epochs"] <= 60 and isinstance(p["faerec.ramp_epochs"], int)
    log_tau = study.trials[0].distributions["faerec.tau"]
    assert isinstance(log_tau, optuna.distributions.FloatDistribution) and log_tau.log


def test_same_seed_same_proposals(tmp_path: Path) -> None:
    space = compiled(tmp_path)
    first = [t.params for t in optimize(space, trials=8, seed=7).trials]
    second = [t.params for t in optimize(space, trials=8, seed=7).trials]
    assert first == second


def test_the_space_survives_pickling_as_ray_snapshots_it(tmp_path: Path) -> None:
    space = compiled(tmp_path)
    again = pickle.loads(pickle.dumps(space))
    assert again == space
    first = [t.params for t in optimize(space, trials=5, seed=3).trials]
    assert [t.params for t in optimize(again, trials=5, seed=3).trials] == first


def test_to_spec_round_trips(tmp_path: Path) -> None:
    space = compiled(tmp_path)
    body = {"faerec": space.to_spec()}
    spec = parse_spec(tmp_path / "spec.yaml")
    stored = spec.to_dict()
    assert stored["search"]["space"] == body
    assert body["faerec"]["faerec.curriculum"]["choice"]["constant"] == {}
    assert body["faerec"]["train.lr"] == {"discrete": [0.001, 0.005, 0.001]}


def test_tpe_sampler_handles_the_conditional_space(tmp_path: Path) -> None:
    space = compiled(tmp_path)
    study = optuna.create_study(direction="maximize", sampler=build_sampler("tpe", 0, space))
    study.optimize(lambda trial: space.suggest(trial)["faerec.tau"], n_trials=15)
    assert len({tuple(sorted(t.params.items())) for t in study.trials}) == 15


def test_grid_sampler_walks_the_whole_grid(tmp_path: Path) -> None:
    text = """\
    name: grid
    datasets: [ml-100k]
    backbones: [sasrec]
    methods: [faerec]
    search:
      sampler: grid
      trials: 100
      space:
        faerec:
          faerec.gate: {choice: [dimension, scalar]}
          model.num_layers: {int: [1, 3]}
    """
    space = compiled(tmp_path, text)
    spec = parse_spec(tmp_path / "spec.yaml")
    assert space.grid_size() == 6 and spec.trials_for(spec.cells()[0]) == 6
    study = optuna.create_study(sampler=build_sampler("grid", 0, space))
    study.optimize(lambda trial: float(len(space.suggest(trial))), n_trials=6)
    combos = {(t.params["faerec.gate"], t.params["model.num_layers"]) for t in study.trials}
    assert len(combos) == 6


@pytest.mark.parametrize("kind", ["tpe", "random", "cmaes"])
def test_reseeding_with_the_trial_count_avoids_repeats(tmp_path: Path, kind: str) -> None:
    """What resume does: a new sampler for an existing study gets seed + len(trials)."""
    space = compiled(tmp_path)
    study = optuna.create_study(sampler=build_sampler(kind, 0, space))
    objective = lambda trial: float(len(space.suggest(trial)))  # noqa: E731
    study.optimize(objective, n_trials=4)
    study.sampler = build_sampler(kind, 0 + len(study.trials), space)
    study.optimize(objective, n_trials=4)
    params = [tuple(sorted(t.params.items())) for t in study.trials]
    assert len(set(params)) == 8
