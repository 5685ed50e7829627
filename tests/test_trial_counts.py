"""The one definition of "trials done" (faerec.study.store.count_trials)."""

from __future__ import annotations

from faerec.study.store import count_trials


def test_complete_pruned_and_failed_trials_count_as_done() -> None:
    counts = count_trials(["COMPLETE", "PRUNED", "FAIL", "RUNNING", "WAITING"])
    assert (counts.done, counts.running, counts.waiting) == (3, 1, 1)


def test_a_retried_failure_is_interrupted_not_done() -> None:
    rows = [
        {"number": "0", "state": "FAIL", "retry_of": ""},
        {"number": "1", "state": "COMPLETE", "retry_of": "0"},
    ]
    counts = count_trials(rows)
    assert (counts.done, counts.failed, counts.interrupted) == (1, 0, 1)


def test_optuna_trials_use_their_retry_of_attribute() -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study()
    first = study.ask()
    study.tell(first, state=optuna.trial.TrialState.FAIL)
    study.enqueue_trial({}, user_attrs={"retry_of": first.number})
    retry = study.ask()
    study.tell(retry, 1.0)
    counts = count_trials(study.trials)
    assert (counts.done, counts.complete, counts.interrupted) == (1, 1, 1)
