"""The Ray Tune side of a cell's search round: the Tuner, its scheduler, its stop switch.

Every search round is a *new* Tune experiment (``tune/search-NNN``) that continues the cell's
Optuna study with the trials still missing; an experiment is never restored (Optuna holds what
finished, :mod:`faerec.study.retry` takes care of what did not). Tune's own checkpoints stay
useful twice: Tune restarts a trial whose worker died from its last one
(``resources.max_failures``), and a retried trial resumes from its interrupted attempt's.
"""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ray import tune

from faerec.study.retry import trial_dir_name
from faerec.study.spec import Cell, StudySpec
from faerec.study.trainable import CELL_KEY, EPOCHS_KEY, objective_keys


class InterruptStopper(tune.Stopper):
    """Ends the Tune experiment once the driver was asked to stop (its first SIGINT/SIGTERM).

    Tune asks every step, so there is no window in which a signal goes unnoticed; the trials in
    flight end at their next report (the epoch under way completes and is checkpointed).
    """

    def __init__(self, interrupted: Callable[[], bool]) -> None:
        self._interrupted: Callable[[], bool] | None = interrupted

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        return False

    def stop_all(self) -> bool:
        return self._interrupted is not None and self._interrupted()

    def __getstate__(self) -> dict[str, Any]:
        """Tune pickles its run configuration; the live switch stays with this driver."""
        return {"_interrupted": None}


def trial_name(trial: Any) -> str:
    """Short Tune trial names and folders (the default embeds every parameter)."""
    return trial_dir_name(trial.trial_id)


def cell_payload(spec: StudySpec, cell: Cell) -> dict[str, Any]:
    """What every trial of the cell gets besides its parameters (plain, absolute values)."""
    payload = {
        "dataset": cell.dataset,
        "backbone": cell.backbone,
        "method": cell.method,
        "preset": spec.preset,
        "overrides": spec.overrides(),
        "objectives": [dataclasses.asdict(o) for o in spec.search.objectives],
    }
    return {CELL_KEY: payload}


def make_scheduler(spec: StudySpec, eval_start_epoch: int, max_epochs: int) -> Any:
    """ASHA, the median rule, or none; measured in epochs trained (the trainable's
    ``epochs_trained``, which stays right for a trial that resumed from a checkpoint, unlike
    Tune's ``training_iteration``).

    No trial is judged before it has validated: the grace period is at least the epoch at which
    validation starts. ``max_t`` is one past the last epoch: a trial that trains all its epochs
    ends by itself, with its closing report (the final objective), not by the scheduler.
    """
    settings = spec.scheduler
    if settings.type == "none":
        return None
    grace = min(max(settings.grace_epochs, eval_start_epoch + 1), max_epochs)
    if settings.type == "asha":
        from ray.tune.schedulers import ASHAScheduler

        return ASHAScheduler(
            time_attr=EPOCHS_KEY,
            max_t=max_epochs + 1,
            grace_period=grace,
            reduction_factor=settings.reduction_factor,
        )
    from faerec.study.searcher import ContinuingMedianStoppingRule

    return ContinuingMedianStoppingRule(
        time_attr=EPOCHS_KEY,
        grace_period=grace,
        min_samples_required=settings.min_samples,
        hard_stop=True,
    )


#: the name the trial trainable is registered under (see :func:`register_trial_trainable`)
TRAINABLE_NAME = "faerec_trial"


def register_trial_trainable(resources: dict[str, float]) -> str:
    """Register the trial trainable with its resources once, in the driver's main thread.

    Tune registers a trainable given as a function at every ``fit()``, and its registry is not
    safe for two cells' ``fit()`` registering at the same moment (``dictionary changed size
    during iteration``); a Tuner given the registered name registers nothing.
    """
    from faerec.study.trainable import train_trial

    tune.register_trainable(TRAINABLE_NAME, tune.with_resources(train_trial, resources))
    return TRAINABLE_NAME


def build_tuner(
    spec: StudySpec,
    cell: Cell,
    *,
    storage: Any,
    study_name: str,
    tune_dir: Path,
    experiment: dict[str, Any],
    concurrency: int,
    trainable: str,
    interrupted: Callable[[], bool],
    target: int | None = None,
    driver: str = "",
) -> tune.Tuner:
    """A new Tune experiment that adds ``experiment["num_samples"]`` trials to the cell's
    Optuna study (``storage``/``study_name``); with ``target``, it adds none beyond the
    study's target, whoever runs the other trials (faerec.study.shared). ``trainable`` is the
    name :func:`register_trial_trainable` returned."""
    from faerec.study.searcher import StudyOptunaSearch

    objectives = spec.search.objectives
    keys = objective_keys(len(objectives))
    assert cell.space is not None
    searcher = StudyOptunaSearch(
        space=cell.space,
        metric=keys[0] if len(keys) == 1 else keys,
        mode=objectives[0].mode if len(keys) == 1 else [o.mode for o in objectives],
        storage=storage,
        study_name=study_name,
        cell_id=cell.cell_id,
        sampler_kind=spec.search.sampler,
        base_seed=spec.search.seed,
        tune_dir=str(tune_dir),
        experiment=experiment["name"],
        target=target,
        driver=driver,
    )
    base = spec.cell_config(cell)
    return tune.Tuner(
        trainable,
        param_space=cell_payload(spec, cell),
        tune_config=tune.TuneConfig(
            search_alg=searcher,
            scheduler=make_scheduler(spec, base.train.eval_start_epoch, base.train.max_epochs),
            metric=keys[0],
            mode=objectives[0].mode,
            num_samples=experiment["num_samples"],
            max_concurrent_trials=concurrency,
            reuse_actors=True,
            trial_name_creator=trial_name,
            trial_dirname_creator=trial_name,
        ),
        run_config=tune.RunConfig(
            name=experiment["name"],
            storage_path=str(tune_dir),
            verbose=0,
            stop=InterruptStopper(interrupted),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
            failure_config=tune.FailureConfig(max_failures=spec.resources.max_failures),
        ),
    )


def remove_checkpoints(tune_dir: Path) -> None:
    """Once a cell's search is complete no trial resumes any more: its trials' checkpoints
    (tens of MB per trial on real data) are dead weight."""
    for checkpoint in tune_dir.glob("*/*/checkpoint_*"):
        shutil.rmtree(checkpoint, ignore_errors=True)
