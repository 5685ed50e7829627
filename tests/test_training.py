"""The trainer on ml-100k with tiny models: negatives, selection, hook, checkpoints, resume."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from faerec.config import BACKBONES, RunConfig, resolve_config
from faerec.data import leave_one_out, load_dataset, popularity_groups
from faerec.errors import ConfigError, TrainingError
from faerec.models import build_model
from faerec.results import EpochReport, RunResult
from faerec.training import (
    BEST_MODEL_FILE,
    CHECKPOINT_FILE,
    NAN_CHECK_EVERY,
    NegativeSampler,
    _config_differences,
    _LossAccumulator,
    batch_to_device,
    compile_backbone,
    evaluation_history,
    run_trial,
    train_one_epoch,
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


def test_test_user_group_splits_the_ranks_into_the_item_groups(
    two_epochs: tuple[RunResult, Path],
) -> None:
    result, _ = two_epochs
    assert result.test is not None and result.test_ranks is not None
    assert result.test_user_group is not None
    ranks, group = np.array(result.test_ranks), np.array(result.test_user_group)
    for name in ("head", "tail"):
        metrics = next(g for g in result.test if g.group == f"{name}_items")
        mine = ranks[group == name]
        assert mine.size == metrics.n_users
        assert metrics.values["hr@20"] == pytest.approx(float(((mine > 0) & (mine <= 20)).mean()))


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


def test_a_run_capped_then_resumed_under_a_higher_cap_equals_one_run_with_that_cap(
    tmp_path: Path,
) -> None:
    """The final stage's cap extension: stopping at cap 2 and continuing to cap 4 from the
    checkpoint gives the same epochs, selection and test ranks as training with cap 4."""
    patient = {"train.patience": 50}
    capped = run_trial(tiny_config(patient), checkpoint_dir=tmp_path)
    assert capped.stop_reason == "max_epochs" and capped.epochs_trained == 2
    extended = run_trial(tiny_config({**patient, "train.max_epochs": 4}), checkpoint_dir=tmp_path)
    straight = run_trial(tiny_config({**patient, "train.max_epochs": 4}))
    assert extended.epochs_trained == straight.epochs_trained == 4
    assert [h.loss for h in extended.history] == [h.loss for h in straight.history]
    assert [h.valid for h in extended.history] == [h.valid for h in straight.history]
    assert extended.best_epoch == straight.best_epoch
    assert extended.test_ranks == straight.test_ranks
    assert extended.config["train"]["max_epochs"] == 4


def test_resume_refuses_a_lower_cap(two_epochs: tuple[RunResult, Path]) -> None:
    _, folder = two_epochs
    with pytest.raises(ConfigError, match=r"train\.max_epochs: 2 in the checkpoint, 1 now"):
        run_trial(tiny_config({"train.max_epochs": 1}), checkpoint_dir=folder)


def test_a_run_that_never_validated_refuses_a_higher_cap(tmp_path: Path) -> None:
    """Its last epoch under the old cap would have been forced to validate: not the same run."""
    late = {"train.eval_start_epoch": 1}
    run_trial(tiny_config(late), on_epoch=lambda report: True, checkpoint_dir=tmp_path)
    with pytest.raises(ConfigError, match=r"train\.max_epochs: 2 in the checkpoint, 4 now"):
        run_trial(tiny_config({**late, "train.max_epochs": 4}), checkpoint_dir=tmp_path)


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


# --- speed features: device-side loss sums, bf16, compile ---------------------------------------


def _tiny_model(config: RunConfig) -> tuple[Any, Any, Any]:
    """(model, split, data) for ``config`` on ml-100k, initialised from the run's seed."""
    data = load_dataset("ml-100k")
    split = leave_one_out(data, config.data.max_seq_length)
    groups = popularity_groups(data, 0.2, "full")
    torch.manual_seed(config.train.seed)
    model = build_model(config, data.num_items, None, groups.train_popularity)
    return model, split, data


def test_epoch_loss_equals_per_batch_reads() -> None:
    # the loop before device-side sums read float(loss) after every batch: same draws, same sum
    config = tiny_config({"train.batch_size": 64})  # 15 batches
    model, split, data = _tiny_model(config)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.train.lr)
    sampler = NegativeSampler(split.user_items, data.num_items)
    loss, parts, _ = train_one_epoch(
        model, optimizer, split.train, sampler, np.random.default_rng(7), 0, config,
        torch.device("cpu"),
    )  # fmt: skip

    model, _, _ = _tiny_model(config)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.train.lr)
    rng = np.random.default_rng(7)
    model.train()
    order = rng.permutation(len(split.train))
    reads: list[float] = []
    for start in range(0, len(order), 64):
        rows = order[start : start + 64]
        target_pos = split.train.target_pos[rows]
        negatives = sampler.sample(split.train.user_index[rows], target_pos, rng)
        batch = batch_to_device(
            split.train.input_ids[rows], target_pos, negatives, torch.device("cpu")
        )
        terms = model.calculate_loss(batch, 0)
        optimizer.zero_grad(set_to_none=True)
        terms.total.backward()
        optimizer.step()
        reads.append(float(terms.total.detach()))
    assert len(reads) == 15
    assert loss == pytest.approx(sum(reads) / len(reads), abs=1e-6)
    assert parts["rec"] == pytest.approx(loss, abs=1e-6)  # the plain model has one part


def test_nan_is_reported_at_its_batch_after_a_delayed_read() -> None:
    losses = _LossAccumulator(epoch=3, config=tiny_config())
    bad = NAN_CHECK_EVERY + 5
    for index in range(bad + 3):
        value = torch.tensor(float("nan") if index == bad else 1.0)
        losses.add(value, {"rec": value})
        if (index + 1) % NAN_CHECK_EVERY == 0:
            losses.read()  # the first block is clean
    with pytest.raises(TrainingError, match=rf"^NaN loss at epoch 3, batch {bad}: .*rec=nan"):
        losses.read()


def test_bf16_autocast_runs_on_cpu_with_close_metrics(
    two_epochs: tuple[RunResult, Path],
) -> None:
    fp32, _ = two_epochs
    bf16 = run_trial(tiny_config({"train.precision": "bf16"}))
    assert bf16.config["train"]["precision"] == "bf16"
    for ours, reference in zip(bf16.history, fp32.history, strict=True):
        assert ours.loss == pytest.approx(reference.loss, rel=1e-3)
        assert ours.valid is not None and reference.valid is not None
        assert ours.valid["ndcg@20"] == pytest.approx(reference.valid["ndcg@20"], abs=5e-3)


@pytest.mark.parametrize("backbone", BACKBONES)
def test_bf16_autocast_trains_faerec_on_cpu(backbone: str) -> None:
    # float32 islands inside autocast: FAERec's fused InfoNCE (its backward must accept them)
    # and LRURec's complex recurrence (there is no complex bfloat16)
    runs = [
        run_trial(
            resolve_config(
                "ml-100k", backbone, "faerec", "none", {**TINY, "train.max_epochs": 1, **p}
            ),
            evaluate_test=False,
        )
        for p in ({}, {"train.precision": "bf16"})
    ]
    fp32, bf16 = (run.history[0] for run in runs)
    assert bf16.loss == pytest.approx(fp32.loss, rel=1e-2)
    assert bf16.loss_parts.keys() == fp32.loss_parts.keys()


def test_resume_accepts_a_switched_compile_but_not_a_switched_precision() -> None:
    # compile changes how fast the same function runs; precision changes the numbers
    saved = tiny_config().to_dict()
    compiled = tiny_config({"train.compile": True}).to_dict()
    assert _config_differences(saved, compiled) == []
    bf16 = tiny_config({"train.precision": "bf16"}).to_dict()
    assert _config_differences(saved, bf16) == [
        "train.precision: 'fp32' in the checkpoint, 'bf16' now"
    ]


def test_unknown_precision_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"^train\.precision: expected one of fp32, "):
        tiny_config({"train.precision": "fp16"})


def test_cpu_epochs_report_no_gpu_memory(two_epochs: tuple[RunResult, Path]) -> None:
    result, _ = two_epochs
    assert [h.gpu_mem_mb for h in result.history] == [None, None]


def test_every_epoch_reports_the_cpu_time_it_used(two_epochs: tuple[RunResult, Path]) -> None:
    result, _ = two_epochs
    assert all(e.cpu_seconds is not None and e.cpu_seconds > 0 for e in result.history)


def test_result_files_count_epochs_from_1(two_epochs: tuple[RunResult, Path]) -> None:
    result, _ = two_epochs
    payload = result.to_dict()
    assert payload["epochs_counted_from"] == 1 and payload["best_epoch"] == result.best_epoch + 1
    assert [h["epoch"] for h in payload["history"]] == [1, 2]
    assert RunResult.from_dict(payload) == result


def test_a_result_file_of_an_earlier_version_counts_from_0(
    two_epochs: tuple[RunResult, Path],
) -> None:
    result, _ = two_epochs
    assert RunResult.from_dict(dataclasses.asdict(result)) == result  # no epochs_counted_from


def test_compiled_encoder_gives_the_same_losses_and_weights_names() -> None:
    # Inductor on this 2-core CPU needs ~150 s for one tiny epoch (C++ compilation), so the CPU
    # test traces with dynamo's eager backend: it checks the wiring (dynamic lengths, in-place
    # compile, unchanged state dict); tests/test_cuda.py compiles with Inductor on a GPU.
    config = tiny_config({"model.hidden_dropout": 0.0, "model.attention_dropout": 0.0})
    plain, split, data = _tiny_model(config)
    compiled, _, _ = _tiny_model(config)
    compile_backbone(compiled, backend="eager")
    assert list(compiled.state_dict()) == list(plain.state_dict())
    sampler = NegativeSampler(split.user_items, data.num_items)
    rng = np.random.default_rng(0)
    for rows in (np.arange(0, 40), np.arange(500, 530)):  # different longest sequences
        target_pos = split.train.target_pos[rows]
        negatives = sampler.sample(split.train.user_index[rows], target_pos, rng)
        batch = batch_to_device(
            split.train.input_ids[rows], target_pos, negatives, torch.device("cpu")
        )
        with torch.no_grad():
            expected = float(plain.calculate_loss(batch, 0).total)
            ours = float(compiled.calculate_loss(batch, 0).total)
        assert ours == pytest.approx(expected, rel=1e-5)


# --- no Ray on a bare GPU machine ---------------------------------------------------------------

NO_RAY_TRAIN = """
import sys


class NoRayOrOptuna:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("ray", "optuna"):
            raise ImportError(name + " is blocked")
        return None


sys.meta_path.insert(0, NoRayOrOptuna())
from faerec.cli import main

code = main(["train", "--dataset", "ml-100k", "--quiet", "--set", "train.max_epochs=1",
             "--set", "model.hidden_size=8", "--set", "data.max_seq_length=10",
             "--set", "train.device=cpu", "--set", "train.num_threads=1"])
assert not {"ray", "optuna"} & set(sys.modules), sorted({"ray", "optuna"} & set(sys.modules))
sys.exit(code)
"""


def test_train_command_runs_without_ray_or_optuna() -> None:
    # a GPU machine for benchmarks may have neither (benchmarks/gpu_check.sh)
    done = subprocess.run(
        [sys.executable, "-c", NO_RAY_TRAIN], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "stopped by max_epochs" in done.stdout
