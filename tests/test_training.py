"""The trainer on ml-100k with tiny models: negatives, selection, hook, checkpoints, resume."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from faerec.config import RunConfig, resolve_config
from faerec.data import leave_one_out, load_dataset
from faerec.errors import ConfigError, TrainingError
from faerec.results import EpochReport, RunResult
from faerec.training import (
    BEST_MODEL_FILE,
    CHECKPOINT_FILE,
    NegativeSampler,
    evaluation_history,
    run_trial,
)

TINY = {
    "model.hidden_size": 16,
    "data.max_seq_length": 20,
    "train.max_epochs": 2,
    "train.eval_start_epoch": 0,
    "train.num_threads": 1,
    "train.device": "cpu",
}


def tiny_config(overrides: dict[str, Any] | None = None, method: str = "backbone") -> RunConfig:
    return resolve_config("ml-100k", "sasrec", method, "none", {**TINY, **(overrides or {})})


@pytest.fixture(scope="module")
def two_epochs(tmp_path_factory: pytest.TempPathFactory) -> tuple[RunResult, Path]:
    folder = tmp_path_factory.mktemp("two_epochs")
    return run_trial(tiny_config(), checkpoint_dir=folder), folder


# --- negatives ---------------------------------------------------------------------------------


def test_negatives_avoid_the_users_items_and_padding() -> None:
    num_items = 30
    user_items = [np.arange(1, 16), np.array([2, 3]), np.arange(1, num_items + 1)]
    target_pos = np.array([[0, 0, 5, 6, 7, 8]] * 3)
    negatives = NegativeSampler(user_items, num_items).sample(
        np.array([0, 1, 2]), target_pos, np.random.default_rng(0)
    )
    assert (negatives[:, :2] == 0).all()
    real = negatives[:, 2:]
    assert real.min() >= 1 and real.max() <= num_items + 1
    for row, items in enumerate(user_items):
        assert not set(real[row].tolist()) & set(items.tolist())
    # the user who owns every item can only get the extra row num_items + 1 (official range)
    assert (real[2] == num_items + 1).all()


def test_negatives_are_uniform_over_allowed_items() -> None:
    sampler = NegativeSampler([np.array([1, 2])], num_items=4)
    draws = sampler.sample(
        np.zeros(1, dtype=np.int64), np.ones((1, 30_000)), np.random.default_rng(1)
    )
    counts = np.bincount(draws.ravel(), minlength=6)
    assert counts[:3].sum() == 0
    assert np.allclose(counts[3:] / draws.size, 1 / 3, atol=0.02)  # items 3, 4 and row 5


def test_evaluation_history_is_the_full_sequence_before_the_answer() -> None:
    data = load_dataset("ml-100k")
    split = leave_one_out(data, 20)
    user = int(split.valid.user_index[0])
    sequence = data.sequences[user]
    assert len(sequence) > 22  # the model input is cut to 20; the history is not
    assert np.array_equal(evaluation_history(data, split.valid, 2)[0], sequence[:-2])
    assert np.array_equal(evaluation_history(data, split.test, 1)[0], sequence[:-1])


# --- one run -----------------------------------------------------------------------------------


def test_run_reports_history_selection_and_test(two_epochs: tuple[RunResult, Path]) -> None:
    result, _ = two_epochs
    assert result.epochs_trained == 2 and result.stop_reason == "max_epochs"
    assert [h.epoch for h in result.history] == [0, 1]
    assert all(h.valid is not None for h in result.history)
    best = result.history[result.best_epoch]
    assert best.valid is not None and result.best_value == best.valid["ndcg@20"]
    overall_valid = next(g for g in result.valid if g.group == "overall")
    assert overall_valid.values["ndcg@20"] == result.best_value
    assert result.test is not None
    assert {g.group for g in result.test} >= {"overall", "head_items", "tail_items"}
    assert result.test_ranks is not None and result.test_user_index is not None
    assert len(result.test_ranks) == len(result.test_user_index) == result.test[0].n_users
    assert result.data_stats["eval_mode"] == "full" and result.data_stats["users"] == 943
    assert result.environment["device"] == "cpu"


def test_test_metrics_match_the_reported_ranks(two_epochs: tuple[RunResult, Path]) -> None:
    result, _ = two_epochs
    assert result.test is not None and result.test_ranks is not None
    ranks = np.array(result.test_ranks)
    overall = next(g for g in result.test if g.group == "overall")
    assert overall.values["hr@20"] == pytest.approx(float(((ranks > 0) & (ranks <= 20)).mean()))


def test_checkpoint_and_best_model_load_with_weights_only(
    two_epochs: tuple[RunResult, Path],
) -> None:
    result, folder = two_epochs
    checkpoint = torch.load(folder / CHECKPOINT_FILE, weights_only=True)
    assert checkpoint["next_epoch"] == 2 and checkpoint["finished"] == "max_epochs"
    assert checkpoint["config"] == result.config
    best = torch.load(folder / BEST_MODEL_FILE, weights_only=True)
    assert best["best_epoch"] == result.best_epoch
    assert set(best["model"]) == set(checkpoint["model"])


def test_hook_sees_every_epoch_and_can_stop_the_run() -> None:
    seen: list[EpochReport] = []

    def stop_after_first(report: EpochReport) -> bool:
        seen.append(report)
        return True

    result = run_trial(tiny_config(), on_epoch=stop_after_first, evaluate_test=False)
    assert result.stop_reason == "hook" and result.epochs_trained == 1
    assert [r.epoch for r in seen] == [0] and seen[0].valid is not None
    assert result.test is None and result.test_ranks is None


def test_stop_before_any_validation_still_selects_a_model() -> None:
    result = run_trial(
        tiny_config({"train.eval_start_epoch": 5}),
        on_epoch=lambda report: True,
        evaluate_test=False,
    )
    assert result.history[0].valid is None
    assert result.best_epoch == 0 and result.valid


def test_last_epoch_is_validated_when_validation_would_start_later() -> None:
    result = run_trial(tiny_config({"train.eval_start_epoch": 50}), evaluate_test=False)
    assert [h.valid is not None for h in result.history] == [False, True]
    assert result.best_epoch == 1


def test_validation_schedule_follows_start_and_every() -> None:
    result = run_trial(
        tiny_config({"train.max_epochs": 4, "train.eval_start_epoch": 1, "train.eval_every": 2}),
        evaluate_test=False,
    )
    assert [h.valid is not None for h in result.history] == [False, True, False, True]


def test_early_stopping_counts_validations_without_improvement() -> None:
    # a vanishing learning rate leaves the ranking unchanged: the second validation cannot
    # strictly improve on the first, so patience 1 stops the run there
    config = tiny_config({"train.lr": 1e-12, "train.max_epochs": 5, "train.patience": 1})
    result = run_trial(config, evaluate_test=False)
    assert result.stop_reason == "early_stopping"
    assert result.epochs_trained == 2 and result.best_epoch == 0


def test_nan_loss_raises_a_training_error() -> None:
    with pytest.raises(TrainingError, match=r"^NaN loss at epoch 0, batch \d+"):
        run_trial(tiny_config({"train.lr": 1e30}), evaluate_test=False)


# --- resume ------------------------------------------------------------------------------------


def test_resumed_run_equals_uninterrupted_run(
    two_epochs: tuple[RunResult, Path], tmp_path: Path
) -> None:
    uninterrupted, _ = two_epochs
    first = run_trial(tiny_config(), on_epoch=lambda report: True, checkpoint_dir=tmp_path)
    assert first.stop_reason == "hook"
    resumed = run_trial(tiny_config(), checkpoint_dir=tmp_path)
    assert [h.loss for h in resumed.history] == [h.loss for h in uninterrupted.history]
    assert [h.valid for h in resumed.history] == [h.valid for h in uninterrupted.history]
    assert resumed.test_ranks == uninterrupted.test_ranks
    assert resumed.stop_reason == "max_epochs" and resumed.epochs_trained == 2


def test_finished_run_is_not_trained_again(two_epochs: tuple[RunResult, Path]) -> None:
    result, folder = two_epochs
    calls: list[int] = []
    again = run_trial(
        tiny_config(), on_epoch=lambda r: calls.append(r.epoch), checkpoint_dir=folder
    )
    assert calls == []
    assert again.test_ranks == result.test_ranks and again.best_epoch == result.best_epoch


def test_resume_refuses_a_different_configuration(two_epochs: tuple[RunResult, Path]) -> None:
    _, folder = two_epochs
    with pytest.raises(ConfigError, match=r"train\.lr: 0\.001 in the checkpoint, 0\.01 now"):
        run_trial(tiny_config({"train.lr": 0.01}), checkpoint_dir=folder)


# --- trimming ----------------------------------------------------------------------------------


def test_trimming_changes_neither_loss_nor_metrics() -> None:
    # dropout off: with dropout the two runs would draw different random masks
    no_dropout = {
        "model.hidden_dropout": 0.0,
        "model.attention_dropout": 0.0,
        "train.max_epochs": 1,
    }
    trimmed = run_trial(
        tiny_config({**no_dropout, "train.trim_padding": True}), evaluate_test=False
    )
    full = run_trial(tiny_config({**no_dropout, "train.trim_padding": False}), evaluate_test=False)
    assert trimmed.history[0].loss == full.history[0].loss
    assert trimmed.history[0].valid == full.history[0].valid


# --- FAERec ------------------------------------------------------------------------------------


def test_faerec_run_reports_curriculum_weights_and_loss_parts() -> None:
    result = run_trial(tiny_config({"train.max_epochs": 1}, method="faerec"), evaluate_test=False)
    report = result.history[0]
    assert report.weights == {"w_item": 1.0, "w_feat": 0.0}  # cosine curriculum at epoch 0
    assert {"rec", "item_align", "feature_align"} <= set(report.loss_parts)
    assert not any(name.startswith("w_") for name in report.loss_parts)
    assert result.environment["embedding_model"] == "minilm"
