"""Is every searched choice affordable? Training cost of each fusion gate and each curriculum.

FAERec-SASRec on bundled Beauty at the official size (d = 128, L = 50, batch 256, official
preset otherwise), one torch thread by default as a study trial gets. Each variant trains the
same fixed batches (same rows, same negatives) from the same seed: one warm-up batch, then
``--repeats`` timed passes over ``--batches`` batches (forward, backward, Adam step). Variants
take turns (round robin), so a change in the machine's load hits all of them alike. The table
shows the median seconds per batch, that figure times the batches of one epoch (an epoch
estimate without validation), and the ratio to the official dimension gate.

Variants: every gate of ``faerec.gate`` (dimension, scalar, bilinear = this project's rank-r
form, none), the former full bilinear gate (``nn.Bilinear(d, d, d)``, d^3 weights; no longer
shipped, timed here on 3 batches per pass as the reference the low-rank form replaced), and
every curriculum shape with the dimension gate (timed at an epoch where both alignment weights
are non-zero).

Run from the repository root::

    python benchmarks/bench_gates.py                # ~5 min on a quiet 2-core CPU

It prints a table and writes ``benchmarks/results/bench_gates.json`` with the command, the
machine, and the load average before and after (timings on a shared machine are noisy).
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from faerec.atomic import write_json_atomic
from faerec.config import resolve_config
from faerec.data import leave_one_out, load_dataset, popularity_groups
from faerec.embeddings import load_item_embeddings
from faerec.models import build_model
from faerec.models.base import TrainBatch
from faerec.training import NegativeSampler

RESULTS = Path(__file__).resolve().parent / "results" / "bench_gates.json"
OFFICIAL_SIZE: dict[str, Any] = {
    "model.hidden_size": 128,
    "data.max_seq_length": 50,
    "train.batch_size": 256,
    "train.device": "cpu",
}
#: the epoch at which curricula are timed: past any warm-up, both alignment losses weighted
CURRICULUM_EPOCH = 10
#: a searched gate must cost at most this many times the dimension gate's batch
AFFORDABLE_RATIO = 2.0


class FullBilinearGate(nn.Module):
    """The former ``bilinear`` gate: ``sigmoid(nn.Bilinear(d, d, d))``, d^3 weights."""

    def __init__(self, hidden_size: int) -> None:
        super().__init__()
        self.form = nn.Bilinear(hidden_size, hidden_size, hidden_size)

    def forward(self, x_id: Tensor, x_llm: Tensor) -> Tensor:
        return torch.sigmoid(self.form(x_id, x_llm))


#: (label, overrides on top of the official FAERec-SASRec preset, gate replacement or None)
VARIANTS: list[tuple[str, dict[str, Any], Callable[[int], nn.Module] | None]] = [
    ("gate dimension (official)", {"faerec.gate": "dimension"}, None),
    ("gate scalar", {"faerec.gate": "scalar"}, None),
    ("gate bilinear (rank d/4)", {"faerec.gate": "bilinear"}, None),
    ("gate none (even mix)", {"faerec.gate": "none"}, None),
    ("gate full bilinear (former)", {"faerec.gate": "dimension"}, FullBilinearGate),
    ("curriculum cosine (official)", {"faerec.curriculum": "cosine"}, None),
    ("curriculum linear", {"faerec.curriculum": "linear", "faerec.w_min": 0.5}, None),
    ("curriculum constant", {"faerec.curriculum": "constant"}, None),
]


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def fixed_batches(split: Any, num_items: int, count: int, batch_size: int) -> list[TrainBatch]:
    """``count`` training batches of a seeded shuffle, negatives drawn once."""
    rng = np.random.default_rng(0)
    sampler = NegativeSampler(split.user_items, num_items)
    order = rng.permutation(len(split.train))
    batches = []
    for index in range(count + 1):  # one more: the warm-up batch
        rows = order[index * batch_size : (index + 1) * batch_size]
        target_pos = split.train.target_pos[rows]
        negatives = sampler.sample(split.train.user_index[rows], target_pos, rng)
        batches.append(
            TrainBatch(
                torch.from_numpy(split.train.input_ids[rows]),
                torch.from_numpy(target_pos),
                torch.from_numpy(negatives),
            )
        )
    return batches


class Variant:
    """One model under test with its optimiser, stepping through fixed batches."""

    def __init__(self, model: nn.Module, batches: list[TrainBatch], epoch: int) -> None:
        self.model = model
        self.batches = batches
        self.epoch = epoch
        self.optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        self.passes: list[float] = []
        model.train()
        self.step(batches[0])  # warm-up: allocator and kernel caches

    def step(self, batch: TrainBatch) -> None:
        terms = self.model.calculate_loss(batch, self.epoch)  # type: ignore[operator]
        self.optimizer.zero_grad(set_to_none=True)
        terms.total.backward()
        self.optimizer.step()

    def timed_pass(self) -> None:
        """Seconds per batch over the timed batches (all but the warm-up one)."""
        started = time.perf_counter()
        for batch in self.batches[1:]:
            self.step(batch)
        self.passes.append((time.perf_counter() - started) / (len(self.batches) - 1))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="beauty")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--batches", type=int, default=12, help="timed batches per pass (12)")
    parser.add_argument("--repeats", type=int, default=3, help="timed passes per variant (3)")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    data = load_dataset(args.dataset)
    split = leave_one_out(data, int(OFFICIAL_SIZE["data.max_seq_length"]))
    groups = popularity_groups(data, 0.2, "full")
    base = resolve_config(args.dataset, "sasrec", "faerec", "official", OFFICIAL_SIZE)
    llm_table = load_item_embeddings(data, base.embedding)
    batch_size = base.train.batch_size
    per_epoch = -(-len(split.train) // batch_size)
    batches = fixed_batches(split, data.num_items, args.batches, batch_size)

    variants: list[tuple[str, dict[str, Any], int, Variant]] = []
    for label, overrides, replacement in VARIANTS:
        config = resolve_config(
            args.dataset, "sasrec", "faerec", "official", {**OFFICIAL_SIZE, **overrides}
        )
        torch.manual_seed(config.train.seed)
        model = build_model(config, data.num_items, llm_table, groups.train_popularity)
        if replacement is not None:
            model.gate = replacement(config.model.hidden_size)  # type: ignore[assignment]
        gate = getattr(model, "gate", None)
        gate_params = 0 if gate is None else sum(p.numel() for p in gate.parameters())
        # the former full bilinear gate is ~40x slower: a few batches show it
        timed = batches if replacement is None else batches[: 1 + min(3, args.batches)]
        variants.append((label, overrides, gate_params, Variant(model, timed, CURRICULUM_EPOCH)))
    # round robin: a change in the machine's load hits every variant alike
    for repeat in range(args.repeats):
        for label, _, _, variant in variants:
            variant.timed_pass()
            print(f"  pass {repeat + 1}: {label}: {variant.passes[-1]:.3f} s/batch", flush=True)
    rows: list[dict[str, Any]] = []
    for label, overrides, gate_params, variant in variants:
        median = statistics.median(variant.passes)
        rows.append(
            {
                "variant": label,
                "overrides": overrides,
                "gate_parameters": gate_params,
                "batch_s": median,
                "batch_s_passes": variant.passes,
                "timed_batches": len(variant.batches) - 1,
                "epoch_estimate_s": median * per_epoch,
            }
        )
    reference = rows[0]["batch_s"]
    for row in rows:
        row["ratio_to_dimension"] = row["batch_s"] / reference
        row["affordable"] = row["ratio_to_dimension"] <= AFFORDABLE_RATIO

    machine = {
        "cpu_model": cpu_model(),
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": args.threads,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
    }
    payload = {
        "command": " ".join(shlex.quote(a) for a in [sys.executable, *sys.argv]),
        "dataset": args.dataset,
        "settings": {
            **OFFICIAL_SIZE,
            "threads": args.threads,
            "timed_batches": args.batches,
            "repeats": args.repeats,
            "batches_per_epoch": per_epoch,
            "curriculum_epoch": CURRICULUM_EPOCH,
        },
        "rows": rows,
        "affordable_ratio": AFFORDABLE_RATIO,
        "machine": machine,
    }
    print_table(rows, per_epoch)
    print(
        f"machine: {machine['cpu_model']}, {machine['cores']} cores, torch {machine['torch']}, "
        f"{args.threads} thread(s), load {machine['load_average_before']} -> "
        f"{machine['load_average_after']}"
    )
    write_json_atomic(args.output, payload)
    print(f"wrote {args.output}")
    return 0


def print_table(rows: list[dict[str, Any]], per_epoch: int) -> None:
    print(
        f"\n{'variant':<30} {'gate params':>11} {'s/batch':>8} "
        f"{'epoch est.':>10} {'x dimension':>11}  within {AFFORDABLE_RATIO:g}x"
    )
    for row in rows:
        print(
            f"{row['variant']:<30} {row['gate_parameters']:>11,} {row['batch_s']:>8.3f} "
            f"{row['epoch_estimate_s']:>9.1f}s {row['ratio_to_dimension']:>10.2f}x  "
            f"{'yes' if row['affordable'] else 'NO'}"
        )
    print(f"(epoch estimate = median s/batch x {per_epoch} batches, without validation)")


if __name__ == "__main__":
    sys.exit(main())
