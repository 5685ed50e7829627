"""Trials a stopped driver left unfinished: failed as interrupted, retried from their checkpoint.

Optuna is the record of which trials finished; a Tune experiment is never restored. When a
driver stops (Ctrl-C, SIGTERM, SIGKILL, a crash), every Optuna trial it left RUNNING will never
be finished by anyone, so before a cell's search continues :func:`retry_interrupted_trials`
marks each one FAIL (user attributes ``stale`` and ``error``) and enqueues its parameters again
with ``retry_of`` = its number. A FAIL that some trial retries is *interrupted*, not done
(:func:`faerec.study.store.count_trials`), so the retry takes its place in the trial target and
no finished configuration is ever run twice.

The retry does not start over: every attempt records its Tune trial folder in the user attribute
``tune_trial`` (relative to the cell's ``tune/``), and the retry's trainable gets the folders of
all earlier attempts (:func:`attempt_dirs`, newest first) and resumes from the newest checkpoint
there that can be read; with none (the attempt died before its first checkpoint, or its
checkpoint is missing or cut short) it starts from scratch.

Only one driver may do this on a study at a time (it would fail another driver's live trials);
``run`` and ``resume`` hold the study's lock (:mod:`faerec.study.lock`). This module needs no
Ray.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

#: user attributes of a trial attempt
RETRY_ATTR = "retry_of"
TUNE_TRIAL_ATTR = "tune_trial"
#: the driver that runs the attempt: ``<host>:<study folder>`` (faerec.study.shared)
DRIVER_ATTR = "driver"
STALE_ATTR = "stale"
ERROR_ATTR = "error"
INTERRUPTED_ERROR = "interrupted: the driver stopped while this trial ran"
#: attributes that describe one attempt, not the configuration: a retry does not inherit them
_ATTEMPT_ATTRS = frozenset(
    {
        RETRY_ATTR,
        TUNE_TRIAL_ATTR,
        DRIVER_ATTR,
        STALE_ATTR,
        ERROR_ATTR,
        "epochs",
        "seconds",
        "gpu_mem_mb",
    }
)


def trial_dir_name(trial_id: str) -> str:
    """A Tune trial's folder (and name) inside its experiment: short, unlike Tune's default,
    which embeds every parameter."""
    return f"trial_{trial_id}"


def retry_interrupted_trials(study: Any, keep: Callable[[Any], bool] | None = None) -> list[int]:
    """Fail the RUNNING trials of ``study`` (an ``optuna.Study``) as interrupted and enqueue
    each one's parameters again; returns their numbers. ``keep`` spares the trials it is true
    for (another live driver's, in a shared database: faerec.study.shared).

    Call it only when no trial of this driver is live: before a search round, or after one
    ended (gently or not).
    """
    from optuna.trial import TrialState

    storage = study._storage
    interrupted: list[int] = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if keep is not None and keep(trial):
            continue
        storage.set_trial_user_attr(trial._trial_id, STALE_ATTR, True)
        storage.set_trial_user_attr(trial._trial_id, ERROR_ATTR, INTERRUPTED_ERROR)
        study.tell(trial.number, state=TrialState.FAIL)
        inherited = {k: v for k, v in trial.user_attrs.items() if k not in _ATTEMPT_ATTRS}
        study.enqueue_trial(trial.params, user_attrs={**inherited, RETRY_ATTR: trial.number})
        interrupted.append(trial.number)
    return interrupted


def attempt_dirs(trials: list[Any], trial: Any, tune_dir: str | Path) -> list[str]:
    """The Tune folders of the earlier attempts of ``trial`` (a retry), newest first.

    ``trials`` are the study's FrozenTrials (indexed by number); folders are absolute paths
    under ``tune_dir``. Empty for a trial that retries nothing.
    """
    by_number = {t.number: t for t in trials}
    folders: list[str] = []
    seen: set[int] = set()
    previous = trial.user_attrs.get(RETRY_ATTR)
    while isinstance(previous, int) and previous in by_number and previous not in seen:
        seen.add(previous)
        attempt = by_number[previous]
        where = attempt.user_attrs.get(TUNE_TRIAL_ATTR)
        if isinstance(where, str) and where:
            folders.append(str(Path(tune_dir) / where))
        previous = attempt.user_attrs.get(RETRY_ATTR)
    return folders
