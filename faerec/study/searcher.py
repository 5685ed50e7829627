"""Ray Tune's OptunaSearch, made to keep an honest Optuna study (docs/ray-tune-notes.md §Searcher).

Stock ``OptunaSearch`` records a trial that the scheduler stopped early as COMPLETE with its
early value, which misleads TPE; crashes on a trial id it does not know (after a restore); and
has no place for a trial's error, epochs or run time. :class:`StudyOptunaSearch` fixes those:

* COMPLETE only when the trainable says it finished (its last report carries ``trial_finished``);
  a trial stopped by the scheduler becomes PRUNED with its last value kept as an intermediate
  value; a trial that reports ``trial_error`` (or whose worker died) becomes FAIL with the message
  in the user attribute ``error``;
* results for unknown trial ids are ignored;
* on restore from a Tune snapshot, Optuna trials left RUNNING by a killed driver that Tune will not
  resume are failed (``stale``) and their parameters enqueued once, and the sampler is reseeded
  with ``seed + len(trials)`` so that it does not propose again what it already proposed.

The driver follows the search through a *monitor* registered under the cell id (see
:func:`register_monitor`); the searcher holds only the id, so its pickled snapshots stay small and
a restored searcher finds the live monitor of the new driver.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any, Protocol

import optuna
from optuna.trial import TrialState
from ray.tune.schedulers import MedianStoppingRule, TrialScheduler
from ray.tune.search.optuna import OptunaSearch

from faerec.study.space import SearchSpace, build_sampler
from faerec.study.store import count_trials
from faerec.study.store import open_storage as open_storage  # re-export: older imports
from faerec.study.trainable import (
    EPOCHS_KEY,
    ERROR_KEY,
    FINISHED_KEY,
    SECONDS_KEY,
    TRIAL_NUMBER_KEY,
)


class SearchMonitor(Protocol):
    """What the driver wants to hear about a cell's trials."""

    def trial_started(self, number: int, params: dict[str, Any]) -> None: ...

    def trial_result(self, number: int, result: dict[str, Any]) -> None: ...

    def trial_finished(self, number: int) -> None: ...


_MONITORS: dict[str, SearchMonitor] = {}


def register_monitor(cell_id: str, monitor: SearchMonitor | None) -> None:
    """Attach (or with None, detach) the driver's monitor of a cell."""
    if monitor is None:
        _MONITORS.pop(cell_id, None)
    else:
        _MONITORS[cell_id] = monitor


class StudyOptunaSearch(OptunaSearch):
    """OptunaSearch with PRUNED/FAIL bookkeeping, stale-trial repair and sampler reseeding."""

    def __init__(
        self,
        space: SearchSpace,
        metric: str | list[str],
        mode: str | list[str],
        storage: optuna.storages.BaseStorage,
        study_name: str,
        cell_id: str,
        sampler_kind: str,
        base_seed: int,
    ) -> None:
        study = optuna.load_study(study_name=study_name, storage=storage)
        sampler = build_sampler(sampler_kind, base_seed + len(study.trials), space)
        super().__init__(
            space=space,
            metric=metric,
            mode=mode,
            sampler=sampler,
            study_name=study_name,
            storage=storage,
        )
        self._cell_id = cell_id
        self._search_space = space
        self._sampler_kind = sampler_kind
        self._base_seed = base_seed

    @property
    def _study(self) -> optuna.Study:
        assert self._ot_study is not None, "the searcher's study is set up in __init__"
        return self._ot_study

    # -- Tune's calls --------------------------------------------------------------------------

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        config = super().suggest(trial_id)
        if not isinstance(config, dict):
            return config
        number = self._ot_trials[trial_id].number
        monitor = _MONITORS.get(self._cell_id)
        if monitor is not None:
            monitor.trial_started(number, dict(config))
        return {**config, TRIAL_NUMBER_KEY: number}

    def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        ot_trial = self._ot_trials.get(trial_id)
        if ot_trial is None or trial_id in self._completed_trials:
            return
        self._notify_result(ot_trial.number, result)
        if isinstance(self.metric, list) or FINISHED_KEY in result:
            return  # no intermediate values with several objectives; the closing report is no epoch
        value = _finite(result.get(self.metric))
        step = result.get("training_iteration")
        if value is not None and step is not None:
            with warnings.catch_warnings():  # a resumed trial re-reports steps Optuna already has
                warnings.simplefilter("ignore")
                ot_trial.report(value, int(step))

    def on_trial_complete(
        self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False
    ) -> None:
        ot_trial = self._ot_trials.get(trial_id)
        if ot_trial is None:
            return
        if trial_id in self._completed_trials:
            self._keep_resumed_result(ot_trial, result, error)
            return
        result = result or {}
        state, values, message = self._outcome(result, error)
        if state == TrialState.PRUNED and values and not isinstance(self.metric, list):
            step = int(result.get("training_iteration") or 0)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ot_trial.report(values[0], step)
        for key, attr in ((EPOCHS_KEY, "epochs"), (SECONDS_KEY, "seconds")):
            if result.get(key) is not None:
                ot_trial.set_user_attr(attr, result[key])
        if message:
            ot_trial.set_user_attr("error", message)
        # the result a scheduler stopped the trial on reaches the searcher only here
        self._notify_result(ot_trial.number, result)
        try:
            self._study.tell(
                ot_trial, values if state == TrialState.COMPLETE else None, state=state
            )
        except RuntimeError:
            # GridSampler calls study.stop() once the grid is covered, which only works inside
            # optimize(); Optuna has stored the trial by then, and our target stops the search.
            if self._study._storage.get_trial(ot_trial._trial_id).state != state:
                raise
        self._completed_trials.add(trial_id)
        monitor = _MONITORS.get(self._cell_id)
        if monitor is not None:
            monitor.trial_finished(ot_trial.number)

    def restore(self, checkpoint_path: str) -> None:
        super().restore(checkpoint_path)
        live = {t.number for tid, t in self._ot_trials.items() if tid not in self._completed_trials}
        fail_stale_trials(self._study, keep=live)
        self._sampler = build_sampler(
            self._sampler_kind, self._base_seed + len(self._study.trials), self._search_space
        )
        self._study.sampler = self._sampler

    # -- helpers -------------------------------------------------------------------------------

    def _metrics(self) -> list[str]:
        return list(self.metric) if isinstance(self.metric, list) else [self.metric]

    def _outcome(
        self, result: dict[str, Any], error: bool
    ) -> tuple[TrialState, list[float] | None, str | None]:
        """(state, objective values, error message) of a trial that Tune says has ended."""
        if error:
            return (
                TrialState.FAIL,
                None,
                "the trial's worker failed (a Ray error; see the Tune trial folder)",
            )
        if result.get(ERROR_KEY):
            return TrialState.FAIL, None, str(result[ERROR_KEY])
        values = [_finite(result.get(name)) for name in self._metrics()]
        finite = [v for v in values if v is not None]
        if FINISHED_KEY in result:
            if len(finite) != len(values):
                return (
                    TrialState.FAIL,
                    None,
                    "the trial finished without a finite value of the metric",
                )
            return TrialState.COMPLETE, finite, None
        if not finite:
            return TrialState.FAIL, None, "stopped before its first validation"
        return TrialState.PRUNED, finite, None

    def _keep_resumed_result(
        self, ot_trial: optuna.Trial, result: dict[str, Any] | None, error: bool
    ) -> None:
        """A trial Tune resumed after it was told FAIL: keep its result as a new Optuna trial."""
        if error or not result:
            return
        state, values, _ = self._outcome(result, error)
        if state != TrialState.COMPLETE or values is None:
            return
        frozen = self._study._storage.get_trial(ot_trial._trial_id)
        self._study.add_trial(
            optuna.trial.create_trial(
                params=frozen.params,
                distributions=frozen.distributions,
                values=values,
                user_attrs={
                    "retry_of": frozen.number,
                    "epochs": result.get(EPOCHS_KEY),
                    "seconds": result.get(SECONDS_KEY),
                },
            )
        )

    def _notify_result(self, number: int, result: dict[str, Any]) -> None:
        monitor = _MONITORS.get(self._cell_id)
        if monitor is not None:
            monitor.trial_result(number, result)


def _finite(value: Any) -> float | None:
    """``value`` as a float when it is a finite number, else None."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


class ContinuingMedianStoppingRule(MedianStoppingRule):
    """The median stopping rule without its pause: with too few finished trials to compare
    against, a trial simply continues (pausing a function trainable is a checkpoint round trip
    for nothing)."""

    def _on_insufficient_samples(self, tune_controller: Any, trial: Any, time: float) -> str:
        return str(TrialScheduler.CONTINUE)


# --- study-level helpers (also used by the driver) ---------------------------------------------


def fail_stale_trials(
    study: optuna.Study, keep: set[int] | frozenset[int] = frozenset()
) -> list[int]:
    """Fail RUNNING trials that nothing will finish, and enqueue their parameters once.

    Only safe with a single coordinator (the notes' P17): a second driver on the same study would
    fail the first one's live trials. A retry that is itself left stale is not enqueued again.
    """
    failed: list[int] = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if trial.number in keep:
            continue
        storage = study._storage
        storage.set_trial_user_attr(trial._trial_id, "stale", True)
        storage.set_trial_user_attr(
            trial._trial_id, "error", "interrupted: the driver stopped while this trial ran"
        )
        study.tell(trial.number, state=TrialState.FAIL)
        if "retry_of" not in trial.user_attrs:
            study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number})
        failed.append(trial.number)
    return failed


def count_done(trials: Sequence[optuna.trial.FrozenTrial]) -> int:
    """Trials that count towards the target (:func:`faerec.study.store.count_trials`)."""
    return count_trials(trials).done
