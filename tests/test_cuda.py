"""CPU and CUDA compute the same thing: every backbone, plain and with FAERec, on ml-100k.

Skipped where torch sees no CUDA device. ``FAEREC_TEST_DEVICE=cpu`` runs the same comparisons
with the CPU standing in for the accelerator: a rehearsal of this file's own code on a machine
without a GPU (``benchmarks/gpu_check.sh --dry-run``), not evidence about CUDA.

Tolerances (float32, TF32 off: these tests use PyTorch's default "highest" matmul precision
and switch cuDNN's TF32 off):

* encoder states and losses: ``rtol 1e-4, atol 1e-5``;
* gradients: ``rtol 1e-3, atol 1e-6``;
* weights after one Adam step (lr 1e-3, so each weight moves by about 1e-3): ``atol 1e-4``;
* full ranking of the same weights: at least 99% of the users get the same rank (a rank can
  differ only where two item scores tie to float error), and each group's metrics differ by
  no more than the share of its users whose rank differs;
* two short training runs (dropout off, as the two devices draw different random numbers):
  losses ``rtol 1e-3``, overall test metrics ``0.02``.
"""

from __future__ import annotations

import copy
import functools
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from faerec.config import BACKBONES, EmbeddingConfig, RunConfig, resolve_config
from faerec.data import leave_one_out, load_dataset, popularity_groups, user_group_masks
from faerec.embeddings import prepare_item_embeddings
from faerec.evaluation import evaluate
from faerec.models import build_model
from faerec.models.base import SequentialRecommender, TrainBatch
from faerec.training import (
    BEST_MODEL_FILE,
    NegativeSampler,
    batch_to_device,
    compile_backbone,
    evaluation_history,
    run_trial,
)

DEVICE = torch.device(os.environ.get("FAEREC_TEST_DEVICE", "cuda"))
REHEARSAL = DEVICE.type == "cpu"
METHODS = ("backbone", "faerec")
CASES = [(backbone, method) for backbone in BACKBONES for method in METHODS]

pytestmark = pytest.mark.skipif(
    DEVICE.type == "cuda" and not torch.cuda.is_available(), reason="no CUDA device"
)
cuda_only = pytest.mark.skipif(REHEARSAL, reason="about CUDA itself (FAEREC_TEST_DEVICE=cpu)")

STATES: dict[str, Any] = {"rtol": 1e-4, "atol": 1e-5}
GRADIENTS: dict[str, Any] = {"rtol": 1e-3, "atol": 1e-6}
ADAM_STEP: dict[str, Any] = {"rtol": 0.0, "atol": 1e-4}
SMALL: dict[str, Any] = {
    "model.hidden_size": 32,
    "data.max_seq_length": 20,
    "model.hidden_dropout": 0.0,
    "model.attention_dropout": 0.0,
    "faerec.mapper_dropout": 0.0,
    "faerec.gate_dropout": 0.0,
    "train.precision": "fp32-strict",
    "train.num_threads": 1,
}


@pytest.fixture(autouse=True)
def _no_cudnn_tf32() -> Iterator[None]:
    """cuDNN (GRU4Rec) may use TF32 by default; compare IEEE float32 on both sides."""
    saved = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32 = saved


@pytest.fixture(scope="module")
def ml100k() -> dict[str, Any]:
    data = load_dataset("ml-100k")
    split = leave_one_out(data, SMALL["data.max_seq_length"])
    groups = popularity_groups(data, 0.2, "full")
    llm = prepare_item_embeddings(data, EmbeddingConfig(model=bundled_matrix()))
    return {"data": data, "split": split, "groups": groups, "llm": llm.matrix}


@functools.cache
def bundled_matrix() -> str:
    """ml-100k's bundled MiniLM matrix: the same matrix as 'minilm', without its package."""
    return str(load_dataset("ml-100k").bundled_embedding)


def small_config(backbone: str, method: str, **overrides: Any) -> RunConfig:
    keys = {**SMALL, "embedding.model": bundled_matrix(), **overrides}
    return resolve_config("ml-100k", backbone, method, "none", keys)


def model_pair(
    setup: dict[str, Any], backbone: str, method: str
) -> tuple[SequentialRecommender, SequentialRecommender]:
    """The same initial model twice: on the CPU and on the device under test."""
    config = small_config(backbone, method)
    torch.manual_seed(0)
    llm = setup["llm"] if config.faerec.enabled else None
    cpu = build_model(config, setup["data"].num_items, llm, setup["groups"].train_popularity)
    return cpu, copy.deepcopy(cpu).to(DEVICE)


def numpy_batch(setup: dict[str, Any], rows: int = 64) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    split = setup["split"]
    chosen = np.arange(rows)
    target_pos = split.train.target_pos[chosen]
    sampler = NegativeSampler(split.user_items, setup["data"].num_items)
    negatives = sampler.sample(split.train.user_index[chosen], target_pos, np.random.default_rng(0))
    return split.train.input_ids[chosen], target_pos, negatives


def on(device: torch.device, arrays: tuple[np.ndarray, np.ndarray, np.ndarray]) -> TrainBatch:
    return batch_to_device(*arrays, device=device)


def to_cpu(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.detach().to("cpu")


# --- one batch: states, loss, gradients, one Adam step ------------------------------------------


@pytest.mark.parametrize(("backbone", "method"), CASES)
def test_forward_states_agree(ml100k: dict[str, Any], backbone: str, method: str) -> None:
    cpu, gpu = model_pair(ml100k, backbone, method)
    arrays = numpy_batch(ml100k)
    with torch.no_grad():
        expected, _ = cpu.eval().sequence_states(on(torch.device("cpu"), arrays).input_ids)
        states, _ = gpu.eval().sequence_states(on(DEVICE, arrays).input_ids)
    torch.testing.assert_close(to_cpu(states), expected, **STATES)


@pytest.mark.parametrize(("backbone", "method"), CASES)
def test_loss_gradients_and_one_adam_step_agree(
    ml100k: dict[str, Any], backbone: str, method: str
) -> None:
    cpu, gpu = model_pair(ml100k, backbone, method)
    arrays = numpy_batch(ml100k)
    stepped = []
    for model, device in ((cpu, torch.device("cpu")), (gpu, DEVICE)):
        model.train()
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        terms = model.calculate_loss(on(device, arrays), epoch=1)
        optimizer.zero_grad(set_to_none=True)
        terms.total.backward()
        gradients = {n: to_cpu(p.grad) for n, p in model.named_parameters() if p.grad is not None}
        optimizer.step()
        stepped.append((to_cpu(terms.total), gradients, model.state_dict()))
    (cpu_loss, cpu_grads, cpu_weights), (loss, grads, weights) = stepped
    torch.testing.assert_close(loss, cpu_loss, **STATES)
    assert grads.keys() == cpu_grads.keys()
    for name, gradient in grads.items():
        torch.testing.assert_close(gradient, cpu_grads[name], **GRADIENTS, msg=name)
    for name, weight in weights.items():
        torch.testing.assert_close(to_cpu(weight), cpu_weights[name], **ADAM_STEP, msg=name)


# --- evaluation and whole runs ------------------------------------------------------------------


@pytest.mark.parametrize("method", METHODS)
def test_full_ranking_of_the_same_weights_agrees(
    ml100k: dict[str, Any], method: str, tmp_path: Path
) -> None:
    config = small_config("sasrec", method, **{"train.max_epochs": 2, "train.device": "cpu"})
    run_trial(config, checkpoint_dir=tmp_path, evaluate_test=False)
    weights = torch.load(tmp_path / BEST_MODEL_FILE, weights_only=True)["model"]
    data, split, groups = ml100k["data"], ml100k["split"], ml100k["groups"]
    history = evaluation_history(data, split.test, 1)
    masks = user_group_masks(split.test, groups)
    outputs = []
    for device in (torch.device("cpu"), DEVICE):
        llm = ml100k["llm"] if config.faerec.enabled else None
        model = build_model(config, data.num_items, llm, groups.train_popularity)
        model.load_state_dict(weights)
        outputs.append(evaluate(model.to(device), split.test, history, masks, config.eval, device))
    expected, ours = outputs
    differ = expected.ranks != ours.ranks
    assert differ.mean() <= 0.01
    for mine, reference in zip(ours.groups, expected.groups, strict=True):
        assert mine.group == reference.group and mine.n_users == reference.n_users
        # a user's HR or NDCG lies in [0, 1]: k changed ranks move a mean by at most k / n
        mask = masks.get(mine.group, np.ones(len(differ), dtype=bool))
        bound = (differ & mask).sum() / mine.n_users + 1e-12
        for name, value in reference.values.items():
            assert abs(mine.values[name] - value) <= bound, (mine.group, name)


@pytest.mark.parametrize("backbone", BACKBONES)
def test_short_runs_agree(backbone: str) -> None:
    budget = {"train.max_epochs": 2, "train.eval_start_epoch": 0}
    results = [
        run_trial(small_config(backbone, "faerec", **budget, **{"train.device": str(device)}))
        for device in (torch.device("cpu"), DEVICE)
    ]
    expected, ours = results
    for epoch, reference_epoch in zip(ours.history, expected.history, strict=True):
        assert epoch.loss == pytest.approx(reference_epoch.loss, rel=1e-3)
    assert ours.test is not None and expected.test is not None
    overall = next(g for g in ours.test if g.group == "overall")
    reference = next(g for g in expected.test if g.group == "overall")
    for name, value in reference.values.items():
        assert overall.values[name] == pytest.approx(value, abs=0.02), name


# --- the speed features on the device -----------------------------------------------------------


@pytest.mark.parametrize("backbone", BACKBONES)
def test_bf16_autocast_runs_close_to_fp32(backbone: str) -> None:
    budget = {"train.max_epochs": 2, "train.device": str(DEVICE)}
    fp32 = run_trial(small_config(backbone, "faerec", **budget), evaluate_test=False)
    bf16 = run_trial(
        small_config(backbone, "faerec", **budget, **{"train.precision": "bf16"}),
        evaluate_test=False,
    )
    for mine, reference in zip(bf16.history, fp32.history, strict=True):
        assert mine.loss == pytest.approx(reference.loss, rel=2e-2)
    assert bf16.best_value == pytest.approx(fp32.best_value, abs=0.02)


def test_compiled_encoder_gives_the_same_loss(ml100k: dict[str, Any]) -> None:
    # Inductor, the default backend: what train.compile runs (slow to compile on a CPU)
    if REHEARSAL:
        pytest.skip("Inductor on a small CPU takes minutes (tests/test_training.py checks eager)")
    _, gpu = model_pair(ml100k, "sasrec", "faerec")
    reference = copy.deepcopy(gpu)
    compile_backbone(gpu)
    batch = on(DEVICE, numpy_batch(ml100k))
    with torch.no_grad():
        expected = reference.eval().calculate_loss(batch, 1).total
        loss = gpu.eval().calculate_loss(batch, 1).total
    torch.testing.assert_close(loss, expected, **STATES)


@cuda_only
def test_batches_arrive_intact_through_pinned_memory(ml100k: dict[str, Any]) -> None:
    arrays = numpy_batch(ml100k)
    batch = on(DEVICE, arrays)
    torch.cuda.synchronize(DEVICE)
    for tensor, array in zip(
        (batch.input_ids, batch.target_pos, batch.target_neg), arrays, strict=True
    ):
        assert tensor.device.type == "cuda" and tensor.dtype == torch.int64
        assert np.array_equal(tensor.cpu().numpy(), array)


@cuda_only
def test_epochs_report_peak_gpu_memory_and_restore_matmul_precision() -> None:
    before = torch.get_float32_matmul_precision()
    config = small_config("sasrec", "backbone", **{"train.max_epochs": 1, "train.device": "cuda"})
    result = run_trial(config, evaluate_test=False)
    peak = result.history[0].gpu_mem_mb
    assert peak is not None and peak > 0
    assert torch.get_float32_matmul_precision() == before
