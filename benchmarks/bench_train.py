"""Training and evaluation cost per cell (dataset x backbone x method): epoch, ranking, memory.

Measures, for each backbone of ``--backbones`` (default SASRec), plain and with FAERec, on each
dataset of ``--datasets`` (default Beauty), at the official size (d = 128, L = 50, batch 256):

* start-up: load + leave-one-out split + popularity groups;
* seconds per training epoch (mean of ``--epochs`` plain, ``--faerec-epochs`` FAERec epochs,
  after one warm-up batch), FAERec with the official settings of the cell;
* seconds for a full-ranking evaluation of every test user;
* for FAERec, loading its item embeddings and building the model (PCA init);
* writing one resumable checkpoint (plain models);
* peak resident memory. Each cell runs in its own child process, so each peak is that
  model's alone, as in a real run.

Run from the repository root::

    python benchmarks/bench_train.py --threads 2
    python benchmarks/bench_train.py --backbones sasrec fmlprec lrurec gru4rec \
        --datasets beauty yelp --epochs 1 --faerec-epochs 1 --output FILE
    python benchmarks/bench_train.py --device cuda --precision bf16   # on a GPU

It prints a table and writes ``benchmarks/results/bench_train.json`` with the machine it ran on:
``cells`` holds one entry per cell; ``results`` keeps the flat keys of the first dataset's
SASRec cells (``sasrec_*`` plain, ``faerec_*`` FAERec), which benchmarks/gpu_check.sh reads.
Targets (2-core CPU, SASRec cells): start-up < 10 s, plain epoch < 15 s, full evaluation
< 10 s, FAERec epoch < 30 s, FAERec full evaluation on Beauty <= 2 s, peak RSS < 2 GB.
Targets on one GPU (an H200): FAERec epoch <= 1 s, full evaluation <= 0.2 s; peak GPU memory
is recorded. Targets are printed, never asserted.
Each evaluation is timed twice: the first call pays lazy kernel loading on a GPU, the second is
the figure compared with the target. Timings on a shared machine are noisy: the load average
before and after is recorded next to them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from faerec.atomic import write_json_atomic
from faerec.checkpoint import TrainingState, save_checkpoint
from faerec.config import BACKBONES, PRECISIONS, RunConfig, resolve_config
from faerec.data import leave_one_out, load_dataset, popularity_groups, user_group_masks
from faerec.evaluation import evaluate
from faerec.models import build_model
from faerec.models.base import SequentialRecommender, TrainBatch
from faerec.training import (  # _release_free_memory: called after each epoch as run_trial does
    NegativeSampler,
    _release_free_memory,
    autocast_context,
    batch_to_device,
    evaluation_history,
    matmul_precision,
    train_one_epoch,
)

RESULTS = Path(__file__).resolve().parent / "results" / "bench_train.json"
TARGETS_SECONDS: dict[str, float] = {
    "startup_s": 10.0,
    "sasrec_epoch_s": 15.0,
    "sasrec_full_eval_s": 10.0,
    "faerec_epoch_s": 30.0,
    "faerec_full_eval_s": 2.0,
}
TARGET_PEAK_RSS_MB = 2048.0
#: targets on one GPU (an H200)
TARGETS_SECONDS_GPU: dict[str, float] = {
    "faerec_epoch_s": 1.0,
    "sasrec_full_eval_s": 0.2,
    "faerec_full_eval_s": 0.2,
}
OFFICIAL_SIZE: dict[str, Any] = {
    "model.hidden_size": 128,
    "data.max_seq_length": 50,
    "train.batch_size": 256,
}


def synchronize(device: torch.device) -> None:
    """Wait for the GPU before reading the clock (CUDA work is asynchronous)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def peak_rss_mb() -> float:
    # ru_maxrss is in KiB on Linux, bytes on macOS
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024.0 if sys.platform != "darwin" else peak / 2**20


def time_epochs(
    config: RunConfig,
    model: SequentialRecommender,
    split: Any,
    num_items: int,
    epochs: int,
    device: torch.device,
) -> tuple[list[float], list[float]]:
    """Wall and CPU seconds of each of ``epochs`` training epochs, after one warm-up batch.

    CPU seconds (of this process, all its threads) stay near their quiet value on a shared
    machine, where wall seconds grow with the load.
    """
    optimizer = torch.optim.Adam(model.parameters(), lr=config.train.lr)
    sampler = NegativeSampler(split.user_items, num_items)
    rng = np.random.default_rng(config.train.seed)
    # warm-up: allocator and kernel caches, so the first timed epoch is not an outlier
    rows = np.arange(min(config.train.batch_size, len(split.train)))
    target_pos = split.train.target_pos[rows]
    negatives = sampler.sample(split.train.user_index[rows], target_pos, rng)
    warm: TrainBatch = batch_to_device(split.train.input_ids[rows], target_pos, negatives, device)
    model.train()
    with autocast_context(config, device):
        loss = model.calculate_loss(warm, 0).total
    loss.backward()
    optimizer.zero_grad(set_to_none=True)
    seconds: list[float] = []
    cpu_seconds: list[float] = []
    for epoch in range(epochs):
        synchronize(device)
        started, cpu_started = time.perf_counter(), time.process_time()
        train_one_epoch(model, optimizer, split.train, sampler, rng, epoch, config, device, None)
        synchronize(device)
        seconds.append(time.perf_counter() - started)
        cpu_seconds.append(time.process_time() - cpu_started)
        _release_free_memory()  # as run_trial does after every epoch
        print(f"  epoch {epoch + 1}: {seconds[-1]:.1f} s", flush=True)  # shown from 1
    return seconds, cpu_seconds


def time_full_eval(
    config: RunConfig,
    model: SequentialRecommender,
    data: Any,
    split: Any,
    groups: Any,
    device: torch.device,
) -> tuple[float, float, float]:
    """Seconds of two full evaluations of every test user: (first, second, second's CPU)."""
    history = evaluation_history(data, split.test, 1)
    masks = user_group_masks(split.test, groups)
    seconds = []
    cpu_started = time.process_time()
    for _ in range(2):
        synchronize(device)
        started, cpu_started = time.perf_counter(), time.process_time()
        evaluate(model, split.test, history, masks, config.eval, device, config.train.seed)
        synchronize(device)
        seconds.append(time.perf_counter() - started)
    return seconds[0], seconds[1], time.process_time() - cpu_started


def time_checkpoint(config: RunConfig, model: SequentialRecommender) -> tuple[float, float]:
    """Seconds to write one resumable checkpoint, and its size in MB."""
    optimizer = torch.optim.Adam(model.parameters(), lr=config.train.lr)
    state = TrainingState(best_state={k: v.clone() for k, v in model.state_dict().items()})
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "checkpoint.pt"
        started = time.perf_counter()
        save_checkpoint(path, config, model, optimizer, state, np.random.default_rng(0), 0)
        seconds = time.perf_counter() - started
        size_mb = path.stat().st_size / 2**20
    return seconds, size_mb


def run_cell(
    dataset: str, backbone: str, method: str, epochs: int, settings: dict[str, Any]
) -> dict[str, Any]:
    """One cell's measurements, in this process; ``method`` is ``plain`` or ``faerec``.

    ``settings``: configuration keys on top of :data:`OFFICIAL_SIZE` (device, precision, the
    embedding matrix).
    """
    device = torch.device(settings["train.device"])
    config = resolve_config(
        dataset,
        backbone,
        "backbone" if method == "plain" else "faerec",
        "official",
        {**OFFICIAL_SIZE, **settings},
    )
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    with matmul_precision(config, device):
        return _measure_cell(f"{dataset} {backbone} {method}", method, epochs, config, device)


def _measure_cell(
    label: str, method: str, epochs: int, config: RunConfig, device: torch.device
) -> dict[str, Any]:
    results: dict[str, Any] = {}
    dataset = config.data.dataset
    print(f"[{label}] start-up ({dataset}: load + split + popularity) ...", flush=True)
    started = time.perf_counter()
    data = load_dataset(dataset)
    split = leave_one_out(data, int(OFFICIAL_SIZE["data.max_seq_length"]))
    groups = popularity_groups(data, 0.2, "full")
    results["startup_s"] = time.perf_counter() - started
    results["dataset_facts"] = {
        "users": data.num_users,
        "items": data.num_items,
        "train_rows": len(split.train),
        "test_users": len(split.test),
    }
    llm_table = None
    if method == "faerec":
        from faerec.embeddings import load_item_embeddings

        print(f"[{label}] item embeddings ...", flush=True)
        started = time.perf_counter()
        llm_table = load_item_embeddings(data, config.embedding)
        results["embeddings_s"] = time.perf_counter() - started
    torch.manual_seed(config.train.seed)
    started = time.perf_counter()
    model = build_model(config, data.num_items, llm_table, groups.train_popularity).to(device)
    synchronize(device)
    results["build_s"] = time.perf_counter() - started
    print(f"[{label}] training epochs ...", flush=True)
    seconds, cpu_seconds = time_epochs(config, model, split, data.num_items, epochs, device)
    results["epoch_s"] = float(np.mean(seconds))
    results["epochs_s"] = seconds
    results["epoch_cpu_s"] = float(np.mean(cpu_seconds))
    results["rss_after_epochs_mb"] = peak_rss_mb()
    print(f"[{label}] full evaluation of every test user ...", flush=True)
    first, second, second_cpu = time_full_eval(config, model, data, split, groups, device)
    results["full_eval_first_s"] = first
    results["full_eval_s"] = second
    results["full_eval_cpu_s"] = second_cpu
    if method == "plain":
        results["checkpoint_write_s"], results["checkpoint_mb"] = time_checkpoint(config, model)
    results["peak_rss_mb"] = peak_rss_mb()
    if device.type == "cuda":
        results["peak_gpu_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    return results


def legacy_results(cells: list[dict[str, Any]], dataset: str) -> dict[str, Any]:
    """The flat keys of earlier runs (``sasrec_epoch_s``, ``faerec_full_eval_s``, ...) from the
    SASRec cells of ``dataset``: what benchmarks/gpu_check.sh and the recorded runs use."""
    flat: dict[str, Any] = {}
    for cell in cells:
        if cell["dataset"] != dataset or cell["backbone"] != "sasrec":
            continue
        prefix = "sasrec" if cell["method"] == "plain" else "faerec"
        for key, value in cell.items():
            if key in ("dataset", "backbone", "method", "dataset_facts"):
                continue
            if key.startswith("checkpoint_") or key == "embeddings_s":
                flat[key if key.startswith("checkpoint_") else f"faerec_{key}"] = value
            else:
                flat[f"{prefix}_{key}"] = value
    if "sasrec_startup_s" in flat:
        flat["startup_s"] = flat["sasrec_startup_s"]
    peaks = [v for k, v in flat.items() if k.endswith("_peak_rss_mb")]
    if peaks:
        flat["peak_rss_mb"] = max(peaks)
    return flat


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--datasets",
        "--dataset",
        nargs="+",
        default=["beauty"],
        help="datasets to measure (default beauty)",
    )
    parser.add_argument(
        "--backbones",
        nargs="+",
        choices=BACKBONES,
        default=["sasrec"],
        help="backbones to measure (default sasrec)",
    )
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    parser.add_argument("--epochs", type=int, default=3, help="timed plain epochs (default 3)")
    parser.add_argument("--faerec-epochs", type=int, default=2, help="timed FAERec epochs (2)")
    parser.add_argument("--skip-faerec", action="store_true", help="plain backbones only")
    parser.add_argument("--skip-plain", action="store_true", help="FAERec cells only")
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda or cuda:N")
    parser.add_argument(
        "--precision", choices=PRECISIONS, default="fp32", help="train.precision (default fp32)"
    )
    parser.add_argument(
        "--embedding-model",
        default="minilm",
        help="embedding.model of the FAERec cells (default minilm; a .npy matrix such as the "
        "dataset's bundled one needs no MiniLM package)",
    )
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument("--cell", nargs=3, help=argparse.SUPPRESS)  # child: dataset backbone method
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    settings = {
        "train.device": args.device,
        "train.precision": args.precision,
        "embedding.model": args.embedding_model,
    }
    if args.cell is not None:
        # child process: one model, so that its peak memory is its own
        dataset, backbone, method = args.cell
        epochs = args.epochs if method == "plain" else args.faerec_epochs
        write_json_atomic(args.output, run_cell(dataset, backbone, method, epochs, settings))
        return 0

    methods = [
        m for m, skip in (("plain", args.skip_plain), ("faerec", args.skip_faerec)) if not skip
    ]
    if not methods:
        parser.error("--skip-plain and --skip-faerec together leave nothing to measure")
    load_before = os.getloadavg()
    cells: list[dict[str, Any]] = []
    facts: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as folder:
        for dataset in args.datasets:
            for backbone in args.backbones:
                for method in methods:
                    cell_file = Path(folder) / f"{dataset}-{backbone}-{method}.json"
                    command = [
                        sys.executable, __file__, "--cell", dataset, backbone, method,
                        "--threads", str(args.threads), "--epochs", str(args.epochs),
                        "--faerec-epochs", str(args.faerec_epochs), "--output", str(cell_file),
                        "--device", args.device, "--precision", args.precision,
                        "--embedding-model", args.embedding_model,
                    ]  # fmt: skip
                    subprocess.run(command, check=True)
                    measured = json.loads(cell_file.read_text())
                    facts[dataset] = measured.pop("dataset_facts")
                    cells.append(
                        {"dataset": dataset, "backbone": backbone, "method": method, **measured}
                    )
    results = legacy_results(cells, args.datasets[0])
    machine = {
        "cpu_model": cpu_model(),
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": args.threads,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
    }
    on_gpu = torch.device(args.device).type == "cuda"
    if on_gpu:
        machine["gpu"] = torch.cuda.get_device_name(torch.device(args.device))
        machine["cuda"] = torch.version.cuda
    targets: dict[str, float] = (
        dict(TARGETS_SECONDS_GPU)
        if on_gpu
        else {
            **TARGETS_SECONDS,
            "sasrec_peak_rss_mb": TARGET_PEAK_RSS_MB,
            "faerec_peak_rss_mb": TARGET_PEAK_RSS_MB,
        }
    )
    payload = {
        "dataset": args.datasets[0],
        **facts[args.datasets[0]],
        "datasets": facts,
        "settings": {**OFFICIAL_SIZE, **settings, "threads": args.threads},
        "cells": cells,
        "results": results,
        "targets": targets,
        "machine": machine,
    }
    print_cells(cells)
    print_table(results, targets)
    print(
        f"machine: {machine['cpu_model']}, {machine['cores']} cores, torch {machine['torch']}, "
        f"{machine['torch_threads']} threads, load {machine['load_average_before']} -> "
        f"{machine['load_average_after']}"
    )
    write_json_atomic(args.output, payload)
    print(f"wrote {args.output}")
    return 0


def print_cells(cells: list[dict[str, Any]]) -> None:
    """One line per cell: epoch and full evaluation (wall and CPU seconds), peak RSS."""
    print(
        f"\n{'dataset':<8} {'backbone':<8} {'method':<6} {'epoch s':>8} {'(cpu)':>8} "
        f"{'eval s':>7} {'(cpu)':>7} {'RSS MB':>7}"
    )
    for cell in cells:
        print(
            f"{cell['dataset']:<8} {cell['backbone']:<8} {cell['method']:<6} "
            f"{cell['epoch_s']:>8.2f} {cell['epoch_cpu_s']:>8.2f} {cell['full_eval_s']:>7.2f} "
            f"{cell['full_eval_cpu_s']:>7.2f} {cell['peak_rss_mb']:>7.0f}"
        )


def print_table(results: dict[str, Any], targets: dict[str, float]) -> None:
    """The first dataset's SASRec measures with their targets (those of the device used)."""
    rows = [
        ("start-up (load + split + popularity)", "startup_s", "s"),
        ("plain SASRec epoch (mean)", "sasrec_epoch_s", "s"),
        ("plain SASRec full evaluation, 1st call", "sasrec_full_eval_first_s", "s"),
        ("plain SASRec full evaluation", "sasrec_full_eval_s", "s"),
        ("plain SASRec peak RSS", "sasrec_peak_rss_mb", "MB"),
        ("plain SASRec peak GPU memory", "sasrec_peak_gpu_mb", "MB"),
        ("checkpoint write", "checkpoint_write_s", "s"),
        ("FAERec item embeddings", "faerec_embeddings_s", "s"),
        ("FAERec model build (PCA init)", "faerec_build_s", "s"),
        ("FAERec-SASRec epoch (mean)", "faerec_epoch_s", "s"),
        ("FAERec-SASRec full evaluation, 1st call", "faerec_full_eval_first_s", "s"),
        ("FAERec-SASRec full evaluation", "faerec_full_eval_s", "s"),
        ("FAERec-SASRec peak RSS", "faerec_peak_rss_mb", "MB"),
        ("FAERec-SASRec peak GPU memory", "faerec_peak_gpu_mb", "MB"),
    ]
    print(f"\n{'measure':<42} {'value':>10} {'target':>10}  ok")
    for label, key, unit in rows:
        if key not in results:
            continue
        value, target = results[key], targets.get(key)
        target_text = "" if target is None else f"<= {target:g} {unit}"
        ok = "" if target is None else ("yes" if value <= target else "NO")
        print(f"{label:<42} {value:>8.2f} {unit:<2}{target_text:>10}  {ok}")


if __name__ == "__main__":
    sys.exit(main())
