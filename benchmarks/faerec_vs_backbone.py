"""FAERec against the plain backbone on bundled Beauty over seeds (evidence for docs/results.md).

Each (method, seed) run is one `faerec-study train` configuration (official preset of its cell
plus the epoch budget below), run in its own process with one torch thread, ``--jobs`` at a time.
Every run's JSON lands in ``--out``; a finished run is not repeated, so the script can be
re-run after an interruption. At the end it prints a table of test HR@10 / NDCG@10 per group,
mean ± sample std over seeds, and writes ``summary.json``.

    python benchmarks/faerec_vs_backbone.py --seeds 2024 2025 --jobs 2
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

#: epoch budget per method: the plain backbone is about twice as cheap per epoch, so it gets
#: twice the epochs; both stop early on valid NDCG@20 (patience counted in validations).
BUDGETS: dict[str, list[str]] = {
    "backbone": [
        "train.max_epochs=60",
        "train.eval_start_epoch=10",
        "train.eval_every=2",
        "train.patience=5",
    ],
    "faerec": [
        "train.max_epochs=30",
        "train.eval_start_epoch=5",
        "train.eval_every=2",
        "train.patience=5",
    ],
}
GROUPS = ("overall", "head_items", "tail_items")


def budget(method: str) -> list[str]:
    """Ablations (faerec-*) share FAERec's budget."""
    return BUDGETS["backbone" if method == "backbone" else "faerec"]


METRICS = ("hr@10", "ndcg@10")


def run_one(method: str, seed: int, dataset: str, backbone: str, out: Path) -> Path:
    target = out / f"{dataset}_{backbone}_{method}_seed{seed}.json"
    if target.exists():
        return target
    command = [
        sys.executable, "-m", "faerec.cli", "train",
        "--dataset", dataset, "--backbone", backbone, "--method", method, "--quiet",
        "--json", str(target),
        "--set", f"train.seed={seed}", "--set", "train.num_threads=1",
        *[arg for setting in budget(method) for arg in ("--set", setting)],
    ]  # fmt: skip
    log = target.with_suffix(".log")
    with log.open("w") as handle:
        subprocess.run(command, check=True, stdout=handle, stderr=subprocess.STDOUT)
    return target


def summarise(paths: list[Path]) -> dict[str, dict[str, dict[str, list[float]]]]:
    values: dict[str, dict[str, dict[str, list[float]]]] = {}
    for path in paths:
        payload = json.loads(path.read_text())
        per_method = values.setdefault(payload["method"], {})
        for row in payload["results"]:
            if row["split"] != "test" or row["group"] not in GROUPS:
                continue
            name = f"{row['metric']}@{row['k']}"
            if name in METRICS:
                per_method.setdefault(row["group"], {}).setdefault(name, []).append(row["value"])
    return values


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="beauty")
    parser.add_argument("--backbone", default="sasrec")
    parser.add_argument("--methods", nargs="+", default=["backbone", "faerec"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[2024])
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/faerec_vs_backbone"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    tasks = [(m, s) for s in args.seeds for m in args.methods]
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        futures = [
            pool.submit(run_one, m, s, args.dataset, args.backbone, args.out) for m, s in tasks
        ]
        paths = [f.result() for f in futures]
    values = summarise(paths)
    print(f"{args.dataset} / {args.backbone}, test, seeds {args.seeds}: mean ± std")
    header = ["method"] + [f"{g} {m}" for g in GROUPS for m in METRICS]
    print(" | ".join(header))
    for method, groups in values.items():
        cells = []
        for group in GROUPS:
            for metric in METRICS:
                xs = groups[group][metric]
                spread = statistics.stdev(xs) if len(xs) > 1 else 0.0
                cells.append(f"{statistics.fmean(xs):.4f} ± {spread:.4f}")
        print(" | ".join([method, *cells]))
    (args.out / "summary.json").write_text(json.dumps(values, indent=2, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
