"""The cell's preset as a reference: the first trial of every search and a final-stage row.

A tuned result means little without the untuned one next to it. So, for every searched cell:

* **the first trial is the preset.** Before the first suggestion, the cell's preset
  configuration (the preset of its dataset, backbone and method, plus the spec's ``fixed``
  keys) is enqueued into the cell's Optuna study, marked with the user attribute
  ``reference``. Every searched key takes the preset's value. A value the space cannot hold is
  replaced by the nearest one it can (a range clips to its bounds and snaps to its step; a
  ``choice`` without the preset's option takes its first option), and the user attribute
  ``reference_adjusted`` records ``{key: {"preset": ..., "used": ...}}``. Only a study without
  any trial gets it, so a resumed study never enqueues it twice. The grid sampler gets no
  reference trial: it walks its own grid.
* **the final stage retrains the preset** over the same seeds as the tuned configuration
  (``final.reference``, on by default), in ``final/reference_seed_<s>.json`` beside the tuned
  ``final/seed_<s>.json`` (paths: :class:`faerec.study.store.CellStore`). The report shows
  these runs as the method ``<method>-defaults`` ("SASRec + FAERec, paper defaults"), between
  the backbone and the tuned row, and tests the tuned configuration against them (and both
  against the backbone).

Nothing here imports Optuna, Ray or torch at module level: the report imports it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from faerec.study.space import Param, SearchSpace
    from faerec.study.spec import Cell, StudySpec
    from faerec.study.store import CellStore

#: Optuna user attribute of the enqueued preset trial
REFERENCE_ATTR = "reference"
ADJUSTED_ATTR = "reference_adjusted"
#: the report's method name of a cell's reference runs is ``<method>`` + this
DEFAULTS_SUFFIX = "-defaults"


def reference_method(method: str) -> str:
    """The method label of a cell's reference runs, e.g. ``faerec-defaults``."""
    return method + DEFAULTS_SUFFIX


# --- the first trial ---------------------------------------------------------------------------


def nearest_value(param: Param, value: Any) -> Any:
    """``value`` if ``param`` can draw it, else the nearest value it can draw."""
    if param.kind == "choice":
        return value if value in param.choices else param.choices[0]
    assert param.low is not None and param.high is not None
    number = float(value)
    low, high = float(param.low), float(param.high)
    clipped = min(max(number, low), high)
    if param.step is not None:
        steps = round((clipped - low) / float(param.step))
        clipped = min(low + steps * float(param.step), high)
    if param.kind == "int":
        return int(round(clipped))
    return round(clipped, 12) if param.step is not None else clipped


def reference_params(
    space: SearchSpace, preset: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """(the parameters of the preset trial, {key: {"preset", "used"}} where they differ).

    ``preset`` is the cell's flat configuration (``RunConfig.flat()``). Only the branch of
    each conditional choice that the preset's value selects is visited.
    """
    params: dict[str, Any] = {}
    adjusted: dict[str, dict[str, Any]] = {}

    def visit(param: Param) -> None:
        wanted = preset[param.key]
        used = nearest_value(param, wanted)
        params[param.key] = used
        if used != wanted and not _same_number(used, wanted):
            adjusted[param.key] = {"preset": wanted, "used": used}
        for option, branch in param.branches:
            if option == used:
                for inner in branch:
                    visit(inner)

    for param in space.params:
        visit(param)
    return params, adjusted


def _same_number(a: Any, b: Any) -> bool:
    numbers = (int, float)
    if isinstance(a, numbers) and isinstance(b, numbers):
        return not isinstance(a, bool) and math.isclose(float(a), float(b), rel_tol=1e-12)
    return False


@dataclass(frozen=True)
class ReferenceTrial:
    """The enqueued preset trial: its parameters and the values moved into the space."""

    params: dict[str, Any]
    adjusted: dict[str, dict[str, Any]]


def enqueue_reference(study: Any, spec: StudySpec, cell: Cell) -> ReferenceTrial | None:
    """Enqueue the cell's preset as the search's first trial (an ``optuna.Study``).

    None, and nothing enqueued, when the study already has a trial (a resumed study, or one
    started before references existed), when the cell has no space, or with the grid sampler.
    """
    if cell.space is None or spec.search.sampler == "grid":
        return None
    if study.get_trials(deepcopy=False):
        return None
    params, adjusted = reference_params(cell.space, spec.cell_config(cell).flat())
    attrs: dict[str, Any] = {REFERENCE_ATTR: "preset"}
    if adjusted:
        attrs[ADJUSTED_ATTR] = adjusted
    study.enqueue_trial(params, user_attrs=attrs)
    return ReferenceTrial(params, adjusted)


def note_reference(progress: Any, cell: Cell, trial: ReferenceTrial | None) -> None:
    """One line on the progress view (a ``ProgressView``) when the preset trial was enqueued."""
    if trial is None:
        return
    text = f"{cell.cell_id}: the first trial is the preset configuration (reference)"
    if trial.adjusted:
        moved = ", ".join(f"{k} {v['preset']} -> {v['used']}" for k, v in trial.adjusted.items())
        text += f"; moved into the space: {moved}"
    progress.message(text)


# --- the final-stage row -----------------------------------------------------------------------


@dataclass(frozen=True)
class ReferencePlan:
    """The reference runs of one cell: how many in all, how many on disk, what is missing."""

    total: int
    done: int
    #: (seed, configuration dict, result JSON, checkpoint folder) of each missing run
    missing: list[tuple[int, dict[str, Any], Path, Path]]


def plan_reference(
    spec: StudySpec, cell: Cell, cell_store: CellStore, seeds: list[int]
) -> ReferencePlan:
    """The reference runs a searched cell still needs, over the tuned configuration's seeds."""
    if cell.space is None or not spec.final_reference or not seeds:
        return ReferencePlan(0, 0, [])
    config = spec.cell_config(cell).to_dict()
    done = set(cell_store.read_reference_seeds())
    missing = [
        (
            seed,
            {**config, "train": {**config["train"], "seed": seed}},
            cell_store.reference_json(seed),
            cell_store.reference_checkpoint_dir(seed),
        )
        for seed in seeds
        if seed not in done
    ]
    return ReferencePlan(len(seeds), len(done & set(seeds)), missing)


def reference_result_rows(
    spec: StudySpec, cell: Cell, cell_store: CellStore
) -> list[dict[str, Any]]:
    """results.csv rows of a cell's reference runs (method ``<method>-defaults``)."""
    rows: list[dict[str, Any]] = []
    for seed, result in cell_store.read_reference_seeds().items():
        for row in result.tidy_rows(spec.name, seed):
            rows.append(
                {**row, "dataset": cell.dataset_label, "method": reference_method(cell.method)}
            )
    return rows


__all__ = [
    "ADJUSTED_ATTR",
    "DEFAULTS_SUFFIX",
    "REFERENCE_ATTR",
    "ReferencePlan",
    "ReferenceTrial",
    "note_reference",
    "enqueue_reference",
    "nearest_value",
    "plan_reference",
    "reference_method",
    "reference_params",
    "reference_result_rows",
]
