"""Ray Tune's OptunaSearch, made to keep an honest Optuna study (docs/ray-tune-notes.md §Searcher).

Stock ``OptunaSearch`` records a trial that the scheduler stopped early as COMPLETE with its
early value, which misleads TPE; raises when told about a trial Optuna has already finished; and
has no place for a trial's error, epochs or run time. :class:`StudyOptunaSearch` fixes those:

* COMPLETE only when the trainable says it finished (its last report carries ``trial_finished``);
  a trial stopped by the scheduler becomes PRUNED with its last value kept as an intermediate
  value; a trial that reports ``trial_error`` (or whose worker died) becomes FAIL with the message
  in the user attribute ``error``;
* Optuna is the record of finished trials: a result or an end for a trial that Optuna already
  holds as finished (or for a trial id it does not know) is ignored, never an error;
* every trial records its Tune folder (user attribute ``tune_trial``), and a retry of an
  interrupted trial gets the folders of its earlier attempts, to resume from their checkpoint
  (:mod:`faerec.study.retry`);
* the sampler is seeded with ``seed + number of trials so far``, so that a study continued by a
  new Tune experiment is not proposed again what it already ran.

The driver follows the search through a *monitor* registered under the cell id (see
:func:`register_monitor`); the searcher holds only the id, so its pickled snapshots stay small.
"""

from __future__ import annotations

import math
import time
import warnings
from typing import Any, Protocol

import optuna
from optuna.trial import TrialState
from ray.tune.schedulers import MedianStoppingRule, TrialScheduler
from ray.tune.search import Searcher
from ray.tune.search.optuna import OptunaSearch

from faerec.study.retry import (
    DRIVER_ATTR,
    RETRY_ATTR,
    TUNE_TRIAL_ATTR,
    attempt_dirs,
    retry_interrupted_trials,
    trial_dir_name,
)
from faerec.study.shared import TrialSlots, claim, running_elsewhere
from faerec.study.space import SearchSpace, build_sampler
from faerec.study.store import count_trials
from faerec.study.store import open_storage as open_storage  # re-export: older imports
from faerec.study.trainable import (
    EPOCHS_KEY,
    ERROR_KEY,
    FINISHED_KEY,
    RESUME_KEY,
    SECONDS_KEY,
    TRIAL_NUMBER_KEY,
)


class SearchMonitor(Protocol):
    """What the driver wants to hear about a cell's trials."""

    def trial_started(self, number: int, params: dict[str, Any]) -> None: ...

    def trial_result(self, number: int, result: dict[str, Any]) -> None: ...

    def trial_finished(self, number: int) -> None: ...


_MONITORS: dict[str, SearchMonitor] = {}
_SLOTS: dict[str, TrialSlots] = {}
#: how often a searcher that waits for another driver's trials checks whether that driver is gone
ELSEWHERE_CHECK_S = 10.0


def register_monitor(cell_id: str, monitor: SearchMonitor | None) -> None:
    """Attach (or with None, detach) the driver's monitor of a cell."""
    if monitor is None:
        _MONITORS.pop(cell_id, None)
    else:
        _MONITORS[cell_id] = monitor


def register_slots(cell_id: str, slots: TrialSlots | None) -> None:
    """Attach (or with None, detach) the study's trial slots a cell's searcher draws from."""
    if slots is None:
        _SLOTS.pop(cell_id, None)
    else:
        _SLOTS[cell_id] = slots


class StudyOptunaSearch(OptunaSearch):
    """OptunaSearch with PRUNED/FAIL bookkeeping, idempotent ends and resumable retries."""

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
        tune_dir: str,
        experiment: str,
        target: int | None = None,
        driver: str = "",
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
        self._tune_dir = tune_dir
        self._experiment = experiment
        self._target = target
        self._driver = driver
        self._name = study_name
        self._next_elsewhere_check = 0.0

    @property
    def _study(self) -> optuna.Study:
        assert self._ot_study is not None, "the searcher's study is set up in __init__"
        return self._ot_study

    # -- Tune's calls --------------------------------------------------------------------------

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        """A new trial while the study (every driver's trials) is short of its target and a
        slot of the driver is free; None to be asked again later, FINISHED once it is done
        (Tune's documented value, though its annotation says a dict or None)."""
        slots = _SLOTS.get(self._cell_id)
        if slots is not None and not slots.take(self._cell_id, trial_id):
            return None
        config: Any = None
        with claim(self._study._storage, self._name):
            room = self._room()
            if room == "finished":
                config = Searcher.FINISHED
            elif room == "start":
                config = super().suggest(trial_id)
            if isinstance(config, dict):
                where = f"{self._experiment}/{trial_dir_name(trial_id)}"
                ot_trial = self._ot_trials[trial_id]
                storage = self._study._storage
                storage.set_trial_user_attr(ot_trial._trial_id, TUNE_TRIAL_ATTR, where)
                if self._driver:
                    storage.set_trial_user_attr(ot_trial._trial_id, DRIVER_ATTR, self._driver)
        if not isinstance(config, dict):
            if slots is not None:
                slots.give_back(self._cell_id, trial_id)
            return config
        return self._started(trial_id, config)

    def _room(self) -> str:
        """``start`` when a trial may start; ``finished`` when the study holds its target of done
        trials; ``wait`` while the rest of the target runs (in another driver)."""
        if self._target is None:
            return "start"
        counts = count_trials(self._study.get_trials(deepcopy=False))
        if counts.done >= self._target:
            return "finished"
        if counts.waiting or counts.done + counts.running < self._target:
            return "start"
        now = time.monotonic()
        if self._driver and now >= self._next_elsewhere_check:
            # the trials that fill the target run elsewhere: retry those of a driver that is gone
            self._next_elsewhere_check = now + ELSEWHERE_CHECK_S
            if retry_interrupted_trials(self._study, keep=self._not_gone):
                return "start"
        return "wait"

    def _not_gone(self, trial: Any) -> bool:
        """A RUNNING trial of this driver (live in this round) or of another live driver."""
        mine = self._driver
        return trial.user_attrs.get(DRIVER_ATTR, mine) == mine or running_elsewhere(trial, mine)

    def _started(self, trial_id: str, config: dict[str, Any]) -> dict[str, Any]:
        ot_trial = self._ot_trials[trial_id]
        storage = self._study._storage
        frozen = storage.get_trial(ot_trial._trial_id)
        retry_of = frozen.user_attrs.get(RETRY_ATTR)
        suggested: dict[str, Any] = {**config, TRIAL_NUMBER_KEY: frozen.number}
        if retry_of is not None:
            trials = self._study.get_trials(deepcopy=False)
            suggested[RESUME_KEY] = attempt_dirs(trials, frozen, self._tune_dir)
        monitor = _MONITORS.get(self._cell_id)
        if monitor is not None:
            monitor.trial_started(frozen.number, dict(config))
        return suggested

    def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        if self._finished(trial_id):
            return
        ot_trial = self._ot_trials[trial_id]
        self._notify_result(ot_trial.number, result)
        if isinstance(self.metric, list) or FINISHED_KEY in result:
            return  # no intermediate values with several objectives; the closing report is no epoch
        value = _finite(result.get(self.metric))
        step = result.get(EPOCHS_KEY)
        if value is not None and step is not None:
            self._report(ot_trial, value, int(step))

    def on_trial_complete(
        self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False
    ) -> None:
        slots = _SLOTS.get(self._cell_id)
        if slots is not None:
            slots.give_back(self._cell_id, trial_id)
        if self._finished(trial_id):
            return
        ot_trial = self._ot_trials[trial_id]
        result = result or {}
        state, values, message = self._outcome(result, error)
        if state == TrialState.PRUNED and values and not isinstance(self.metric, list):
            self._report(ot_trial, values[0], int(result.get(EPOCHS_KEY) or 0))
        storage = self._study._storage
        for key, attr in ((EPOCHS_KEY, "epochs"), (SECONDS_KEY, "seconds")):
            if result.get(key) is not None:
                storage.set_trial_user_attr(ot_trial._trial_id, attr, result[key])
        if message:
            storage.set_trial_user_attr(ot_trial._trial_id, "error", message)
        # the result a scheduler stopped the trial on reaches the searcher only here
        self._notify_result(ot_trial.number, result)
        try:
            self._study.tell(
                ot_trial, values if state == TrialState.COMPLETE else None, state=state
            )
        except RuntimeError:
            # GridSampler calls study.stop() once the grid is covered, which only works inside
            # optimize(); Optuna has stored the trial by then, and our target stops the search.
            if storage.get_trial(ot_trial._trial_id).state != state:
                raise
        self._completed_trials.add(trial_id)
        monitor = _MONITORS.get(self._cell_id)
        if monitor is not None:
            monitor.trial_finished(ot_trial.number)

    # -- helpers -------------------------------------------------------------------------------

    def _finished(self, trial_id: str) -> bool:
        """Whether Tune's news about ``trial_id`` must be ignored: a trial this searcher does not
        know, or one that Optuna already holds as finished (told once, never again)."""
        if trial_id in self._completed_trials:
            return True
        ot_trial = self._ot_trials.get(trial_id)
        if ot_trial is None:
            return True
        if self._study._storage.get_trial(ot_trial._trial_id).state.is_finished():
            self._completed_trials.add(trial_id)
            return True
        return False

    def _report(self, ot_trial: optuna.Trial, value: float, step: int) -> None:
        """An intermediate value at ``step`` epochs (a resumed trial re-reports steps Optuna
        already has: Optuna keeps the first and warns, which says nothing new here)."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ot_trial.report(value, step)

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
