"""Training and evaluation cost on bundled Beauty: start-up, epoch, full ranking, memory.

Measures, with SASRec at the official size (d = 128, L = 50, batch 256):

* start-up: load + leave-one-out split + popularity groups;
* seconds per plain SASRec training epoch (mean of ``--epochs``, after one warm-up batch);
* seconds for a full-ranking evaluation of every test user;
* the same epoch and evaluation for FAERec-SASRec with the official settings
  (``--skip-faerec`` leaves it out), plus loading its item embeddings;
* writing one resumable checkpoint;
* peak resident memory. Each model runs in its own child process, so each peak is that
  model's alone, as in a real run.

Run from the repository root::

    python benchmarks/bench_train.py --threads 2

It prints a table and writes ``benchmarks/results/bench_train.json`` with the machine it ran on.
Targets (2-core CPU): start-up < 10 s, plain epoch < 15 s, full evaluation < 10 s,
FAERec epoch < 30 s, peak RSS < 2 GB. Timings on a shared machine are noisy: the load average
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

from faerec.config import RunConfig, resolve_config
from faerec.data import leave_one_out, load_dataset, popularity_groups, user_group_masks
from faerec.evaluation import evaluate
from faerec.models import build_model
from faerec.models.base import SequentialRecommender, TrainBatch
from faerec.training import (  # the checkpoint helpers are private: timed as run_trial uses them
    NegativeSampler,
    _release_free_memory,
    _save_checkpoint,
    _TrainingState,
    evaluation_history,
    train_one_epoch,
)

RESULTS = Path(__file__).resolve().parent / "results" / "bench_train.json"
TARGETS_SECONDS: dict[str, float] = {
    "startup_s": 10.0,
    "sasrec_epoch_s": 15.0,
    "sasrec_full_eval_s": 10.0,
    "faerec_epoch_s": 30.0,
}
TARGET_PEAK_RSS_MB = 2048.0
OFFICIAL_SIZE: dict[str, Any] = {
    "model.hidden_size": 128,
    "data.max_seq_length": 50,
    "train.batch_size": 256,
    "train.device": "cpu",
}


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
) -> list[float]:
    """Seconds of each of ``epochs`` training epochs, after one warm-up batch."""
    optimizer = torch.optim.Adam(model.parameters(), lr=config.train.lr)
    sampler = NegativeSampler(split.user_items, num_items)
    rng = np.random.default_rng(config.train.seed)
    # warm-up: allocator and kernel caches, so the first timed epoch is not an outlier
    rows = np.arange(min(config.train.batch_size, len(split.train)))
    target_pos = split.train.target_pos[rows]
    negatives = sampler.sample(split.train.user_index[rows], target_pos, rng)
    warm = TrainBatch(
        torch.from_numpy(split.train.input_ids[rows]),
        torch.from_numpy(target_pos),
        torch.from_numpy(negatives),
    )
    model.train()
    model.calculate_loss(warm, 0).total.backward()
    optimizer.zero_grad(set_to_none=True)
    seconds = []
    for epoch in range(epochs):
        started = time.perf_counter()
        train_one_epoch(
            model, optimizer, split.train, sampler, rng, epoch, config, torch.device("cpu"), None
        )
        seconds.append(time.perf_counter() - started)
        _release_free_memory()  # as run_trial does after every epoch
        print(f"  epoch {epoch}: {seconds[-1]:.1f} s", flush=True)
    return seconds


def time_full_eval(
    config: RunConfig, model: SequentialRecommender, data: Any, split: Any, groups: Any
) -> float:
    history = evaluation_history(data, split.test, 1)
    masks = user_group_masks(split.test, groups)
    started = time.perf_counter()
    evaluate(model, split.test, history, masks, config.eval, "cpu", config.train.seed)
    return time.perf_counter() - started


def time_checkpoint(config: RunConfig, model: SequentialRecommender) -> tuple[float, float]:
    """Seconds to write one resumable checkpoint, and its size in MB."""
    optimizer = torch.optim.Adam(model.parameters(), lr=config.train.lr)
    state = _TrainingState(best_state={k: v.clone() for k, v in model.state_dict().items()})
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "checkpoint.pt"
        started = time.perf_counter()
        _save_checkpoint(path, config, model, optimizer, state, np.random.default_rng(0), 0)
        seconds = time.perf_counter() - started
        size_mb = path.stat().st_size / 2**20
    return seconds, size_mb


def run_stage(stage: str, dataset: str, epochs: int) -> dict[str, Any]:
    """One model's measurements, in this process: ``plain`` (SASRec) or ``faerec``."""
    results: dict[str, Any] = {}
    prefix = "sasrec" if stage == "plain" else "faerec"
    print(f"[{stage}] start-up ({dataset}: load + split + popularity) ...", flush=True)
    started = time.perf_counter()
    data = load_dataset(dataset)
    split = leave_one_out(data, int(OFFICIAL_SIZE["data.max_seq_length"]))
    groups = popularity_groups(data, 0.2, "full")
    results[f"{prefix}_startup_s"] = time.perf_counter() - started
    results["dataset_facts"] = {
        "users": data.num_users,
        "items": data.num_items,
        "train_rows": len(split.train),
        "test_users": len(split.test),
    }
    method = "backbone" if stage == "plain" else "faerec"
    config = resolve_config(dataset, "sasrec", method, "official", OFFICIAL_SIZE)
    llm_table = None
    if stage == "faerec":
        from faerec.embeddings import load_item_embeddings

        print(f"[{stage}] item embeddings ...", flush=True)
        started = time.perf_counter()
        llm_table = load_item_embeddings(data, config.embedding)
        results["faerec_embeddings_s"] = time.perf_counter() - started
    torch.manual_seed(config.train.seed)
    started = time.perf_counter()
    model = build_model(config, data.num_items, llm_table, groups.train_popularity)
    results[f"{prefix}_build_s"] = time.perf_counter() - started
    print(f"[{stage}] training epochs ...", flush=True)
    seconds = time_epochs(config, model, split, data.num_items, epochs)
    results[f"{prefix}_epoch_s"] = float(np.mean(seconds))
    results[f"{prefix}_epochs_s"] = seconds
    results[f"{prefix}_rss_after_epochs_mb"] = peak_rss_mb()
    print(f"[{stage}] full evaluation of every test user ...", flush=True)
    results[f"{prefix}_full_eval_s"] = time_full_eval(config, model, data, split, groups)
    if stage == "plain":
        results["checkpoint_write_s"], results["checkpoint_mb"] = time_checkpoint(config, model)
    results[f"{prefix}_peak_rss_mb"] = peak_rss_mb()
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="beauty")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    parser.add_argument("--epochs", type=int, default=3, help="timed plain epochs (default 3)")
    parser.add_argument("--faerec-epochs", type=int, default=2, help="timed FAERec epochs (2)")
    parser.add_argument("--skip-faerec", action="store_true")
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument("--stage", choices=("plain", "faerec"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    if args.stage is not None:
        # child process: one model, so that its peak memory is its own
        epochs = args.epochs if args.stage == "plain" else args.faerec_epochs
        write_json_atomic(args.output, run_stage(args.stage, args.dataset, epochs))
        return 0

    load_before = os.getloadavg()
    results: dict[str, Any] = {}
    stages = ["plain"] if args.skip_faerec else ["plain", "faerec"]
    with tempfile.TemporaryDirectory() as folder:
        for stage in stages:
            stage_file = Path(folder) / f"{stage}.json"
            command = [
                sys.executable, __file__, "--stage", stage, "--dataset", args.dataset,
                "--threads", str(args.threads), "--epochs", str(args.epochs),
                "--faerec-epochs", str(args.faerec_epochs), "--output", str(stage_file),
            ]  # fmt: skip
            subprocess.run(command, check=True)
            results.update(json.loads(stage_file.read_text()))
    dataset_facts = results.pop("dataset_facts")
    results["startup_s"] = results["sasrec_startup_s"]
    results["peak_rss_mb"] = max(v for k, v in results.items() if k.endswith("_peak_rss_mb"))
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
    payload = {
        "dataset": args.dataset,
        **dataset_facts,
        "settings": {**OFFICIAL_SIZE, "threads": args.threads},
        "results": results,
        "targets": {**TARGETS_SECONDS, "peak_rss_mb": TARGET_PEAK_RSS_MB},
        "machine": machine,
    }
    print_table(results)
    print(
        f"machine: {machine['cpu_model']}, {machine['cores']} cores, torch {machine['torch']}, "
        f"{machine['torch_threads']} threads, load {machine['load_average_before']} -> "
        f"{machine['load_average_after']}"
    )
    write_json_atomic(args.output, payload)
    print(f"wrote {args.output}")
    return 0


def print_table(results: dict[str, Any]) -> None:
    rows = [
        ("start-up (load + split + popularity)", "startup_s", TARGETS_SECONDS["startup_s"], "s"),
        ("plain SASRec epoch (mean)", "sasrec_epoch_s", TARGETS_SECONDS["sasrec_epoch_s"], "s"),
        (
            "plain SASRec full evaluation",
            "sasrec_full_eval_s",
            TARGETS_SECONDS["sasrec_full_eval_s"],
            "s",
        ),
        ("plain SASRec peak RSS", "sasrec_peak_rss_mb", TARGET_PEAK_RSS_MB, "MB"),
        ("checkpoint write", "checkpoint_write_s", None, "s"),
        ("FAERec item embeddings", "faerec_embeddings_s", None, "s"),
        ("FAERec model build (PCA init)", "faerec_build_s", None, "s"),
        ("FAERec-SASRec epoch (mean)", "faerec_epoch_s", TARGETS_SECONDS["faerec_epoch_s"], "s"),
        ("FAERec-SASRec full evaluation", "faerec_full_eval_s", None, "s"),
        ("FAERec-SASRec peak RSS", "faerec_peak_rss_mb", TARGET_PEAK_RSS_MB, "MB"),
    ]
    print(f"\n{'measure':<40} {'value':>10} {'target':>10}  ok")
    for label, key, target, unit in rows:
        if key not in results:
            continue
        value = results[key]
        target_text = "" if target is None else f"< {target:g} {unit}"
        ok = "" if target is None else ("yes" if value < target else "NO")
        print(f"{label:<40} {value:>8.2f} {unit:<2}{target_text:>10}  {ok}")


def write_json_atomic(path: Path, payload: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(payload, indent=2) + "\n")
    os.replace(tmp, path)


if __name__ == "__main__":
    sys.exit(main())
