"""Packing trials on one GPU: trials per hour with 1, 4, 8 concurrent `faerec-study train` runs.

A study packs trials on a GPU with fractional ``resources.gpus_per_trial`` (0.125 = 8 at once);
this measures what packing buys without Ray: N independent ``faerec-study train`` processes of
the same cell (different seeds) start together, each with ``cores / N`` torch threads, and the
wall time until the last one ends gives ``trials per hour = N * 3600 / wall``. Each run's own
``seconds`` and its peak GPU memory per epoch (``gpu_mem_mb`` of result.json) are recorded.

Run from the repository root (``faerec`` importable: installed, or ``PYTHONPATH=.``)::

    python benchmarks/pack_trials.py --device cuda --concurrency 1 4 8 --epochs 3

Target on one H200 (printed, never asserted): 8 packed trials >= 4x the trials per hour of one.
The budget is fixed (``--epochs`` epochs, validation from the first), so every process does the
same work. Start-up (imports, data, CUDA context) is part of each trial, as it is of a real one.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from faerec.atomic import write_json_atomic

RESULTS = Path(__file__).resolve().parent / "results" / "pack_trials.json"
TARGET_SPEEDUP = {8: 4.0}
#: trial output kept when a run fails (its last lines say why)
ERROR_TAIL_CHARS = 2000


def train_command(args: argparse.Namespace, seed: int, threads: int, folder: Path) -> list[str]:
    """One ``faerec-study train`` run of the measured cell."""
    settings = {
        "train.device": args.device,
        "train.max_epochs": args.epochs,
        "train.eval_start_epoch": 0,
        "train.num_threads": threads,
        "train.seed": seed,
        "train.precision": args.precision,
        "embedding.model": args.embedding_model,
    }
    command = [
        sys.executable, "-m", "faerec.cli", "train", "--dataset", args.dataset,
        "--backbone", args.backbone, "--method", args.method, "--quiet", "--output", str(folder),
    ]  # fmt: skip
    for key, value in {**settings, **dict(args.set)}.items():
        command += ["--set", f"{key}={value}"]
    return command


def key_value(text: str) -> tuple[str, str]:
    """``--set`` argument: ``section.key=value``."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected section.key=value, got {text!r}")
    return key.strip(), value.strip()


def run_packed(args: argparse.Namespace, concurrency: int, root: Path) -> dict[str, Any]:
    """Start ``concurrency`` runs at once and wait for all of them."""
    threads = max(1, (os.cpu_count() or 1) // concurrency)
    folders = [root / f"n{concurrency}_trial{i}" for i in range(concurrency)]
    logs = [folder.with_suffix(".log") for folder in folders]
    started = time.perf_counter()
    processes = []
    for i, (folder, log) in enumerate(zip(folders, logs, strict=True)):
        with log.open("w") as stream:
            command = train_command(args, args.seed + i, threads, folder)
            processes.append(subprocess.Popen(command, stdout=stream, stderr=subprocess.STDOUT))
    codes = [process.wait() for process in processes]
    wall = time.perf_counter() - started
    trials = []
    for folder, log, code in zip(folders, logs, codes, strict=True):
        entry: dict[str, Any] = {"exit_code": code}
        result_file = folder / "result.json"
        if code == 0 and result_file.is_file():
            result = json.loads(result_file.read_text())
            memory = [h.get("gpu_mem_mb") for h in result["history"]]
            entry.update(
                seconds=result["seconds"],
                epochs=result["epochs_trained"],
                peak_gpu_mb=max((m for m in memory if m is not None), default=None),
                best_value=result["best_value"],
            )
        else:
            entry["output_tail"] = log.read_text(errors="replace")[-ERROR_TAIL_CHARS:]
        trials.append(entry)
    done = sum(1 for t in trials if t["exit_code"] == 0)
    return {
        "concurrency": concurrency,
        "threads_per_trial": threads,
        "wall_s": wall,
        "trials_ok": done,
        "trials_per_hour": done * 3600.0 / wall,
        "trials": trials,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="beauty")
    parser.add_argument("--backbone", default="sasrec")
    parser.add_argument("--method", default="faerec", help="(default faerec)")
    parser.add_argument("--device", default="cuda", help="cuda (default), cuda:N or cpu")
    parser.add_argument("--precision", default="fp32", help="train.precision (default fp32)")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per trial (default 3)")
    parser.add_argument("--seed", type=int, default=2024, help="seed of the first trial")
    parser.add_argument(
        "--concurrency", type=int, nargs="+", default=[1, 4, 8], help="(default 1 4 8)"
    )
    parser.add_argument(
        "--embedding-model",
        default="minilm",
        help="embedding.model (a .npy matrix such as the bundled one needs no MiniLM package)",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        type=key_value,
        metavar="KEY=VALUE",
        help="extra train --set",
    )
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    load_before = os.getloadavg()
    rounds = []
    with tempfile.TemporaryDirectory(prefix="faerec-pack-") as folder:
        for concurrency in args.concurrency:
            print(f"{concurrency} concurrent trial(s) ...", flush=True)
            rounds.append(run_packed(args, concurrency, Path(folder)))
            last = rounds[-1]
            print(
                f"  wall {last['wall_s']:.1f} s, {last['trials_ok']}/{concurrency} ok, "
                f"{last['trials_per_hour']:.0f} trials/hour",
                flush=True,
            )
    single = next((r for r in rounds if r["concurrency"] == 1), None)
    for entry in rounds:
        base = single["trials_per_hour"] if single else 0.0
        entry["speedup_vs_one"] = entry["trials_per_hour"] / base if base else None
    payload = {
        "cell": {"dataset": args.dataset, "backbone": args.backbone, "method": args.method},
        "settings": {
            "device": args.device,
            "precision": args.precision,
            "epochs": args.epochs,
            "embedding_model": args.embedding_model,
            "extra": [f"{k}={v}" for k, v in args.set],
        },
        "rounds": rounds,
        "targets": {f"speedup_at_{n}": v for n, v in TARGET_SPEEDUP.items()},
        "machine": machine_facts(args.device, load_before),
    }
    print_table(rounds)
    write_json_atomic(args.output, payload)
    print(f"wrote {args.output}")
    return 0 if all(r["trials_ok"] == r["concurrency"] for r in rounds) else 1


def machine_facts(device: str, load_before: tuple[float, float, float]) -> dict[str, Any]:
    import torch

    facts: dict[str, Any] = {
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
    }
    if device.startswith("cuda") and torch.cuda.is_available():
        facts["gpu"] = torch.cuda.get_device_name(0)
    return facts


def print_table(rounds: list[dict[str, Any]]) -> None:
    print(f"\n{'trials at once':>14} {'wall s':>8} {'trials/hour':>12} {'speedup':>8} "
          f"{'mean trial s':>13} {'peak GPU MB':>12}  target")  # fmt: skip
    for entry in rounds:
        ok = [t for t in entry["trials"] if t["exit_code"] == 0]
        mean = sum(t["seconds"] for t in ok) / len(ok) if ok else float("nan")
        peaks = [t["peak_gpu_mb"] for t in ok if t.get("peak_gpu_mb") is not None]
        peak = f"{max(peaks):.0f}" if peaks else "-"
        speedup = entry["speedup_vs_one"]
        target = TARGET_SPEEDUP.get(entry["concurrency"])
        verdict = ""
        if target is not None and speedup is not None:
            verdict = f">= {target:g}x {'yes' if speedup >= target else 'NO'}"
        speed_text = "-" if speedup is None else f"{speedup:.2f}x"
        print(
            f"{entry['concurrency']:>14} {entry['wall_s']:>8.1f} "
            f"{entry['trials_per_hour']:>12.0f} {speed_text:>8} {mean:>13.1f} {peak:>12}  {verdict}"
        )


if __name__ == "__main__":
    sys.exit(main())
