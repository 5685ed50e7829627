"""How much the study engine adds around training: start-up and overhead per trial.

Runs the real CLI (``faerec-study run``, a fresh process with a local Ray) on a 16-trial study of
tiny trials (ml-100k, SASRec with 16 hidden units, 2 epochs, no scheduler, no final stage) and
reads the times back from the study's Optuna journal:

* **start-up**: from launching the command to the first trial being proposed (imports, spec
  checks, store, ``ray.init``, Optuna study, Tune set-up);
* **overhead per trial**: ``(search wall time - sum of the trials' own run_trial seconds /
  concurrency) / trials``: everything Ray Tune, Optuna, the workers' start-up (imports, first
  torch call) and the bookkeeping cost on top of training.

Targets: start-up < 10 s, overhead < 1 s per trial. Usage::

    python benchmarks/bench_study.py [--trials 16] [--concurrency 1 2]

It prints a table and writes benchmarks/results/bench_study.json.
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
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "bench_study.json"
CELL = "ml-100k__sasrec__backbone"

SPEC = """\
name: bench
datasets: [ml-100k]
backbones: [sasrec]
methods: [backbone]
fixed:
  train.max_epochs: 2
  train.eval_start_epoch: 0
  model.hidden_size: 16
  model.num_layers: 1
  data.max_seq_length: 20
search:
  trials: {trials}
  sampler: random
  space:
    backbone:
      train.lr: {{loguniform: [0.0005, 0.01]}}
      model.hidden_dropout: {{uniform: [0.1, 0.5]}}
scheduler: {{type: none}}
resources: {{cpus_per_trial: 1, max_concurrent: {concurrency}}}
final: {{seeds: 0}}
"""


def run_once(trials: int, concurrency: int) -> dict[str, Any]:
    import optuna

    from faerec.study.searcher import open_storage

    with tempfile.TemporaryDirectory(prefix="bench-study-") as folder:
        root = Path(folder)
        spec = root / "spec.yaml"
        spec.write_text(SPEC.format(trials=trials, concurrency=concurrency))
        command = [sys.executable, "-m", "faerec.cli", "run", str(spec), "--studies-dir", str(root)]
        env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
        launched = datetime.now(timezone.utc)
        started = time.perf_counter()
        done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
        process_wall = time.perf_counter() - started
        if done.returncode != 0:
            raise SystemExit(f"the study failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
        journal = root / "bench" / "cells" / CELL / "optuna.journal"
        study = optuna.load_study(study_name=CELL, storage=open_storage("", str(journal)))
        finished = [t for t in study.trials if t.state.name == "COMPLETE"]
        assert len(finished) == trials, [t.state.name for t in study.trials]
        first_start = min(t.datetime_start for t in finished if t.datetime_start is not None)
        last_end = max(t.datetime_complete for t in finished if t.datetime_complete is not None)
        own_seconds = sum(float(t.user_attrs["seconds"]) for t in finished)
        search_wall = (last_end - first_start).total_seconds()
        # Optuna stores naive local datetimes; compare with the launch time the same way
        startup = (first_start - launched.astimezone().replace(tzinfo=None)).total_seconds()
        return {
            "trials": trials,
            "concurrency": concurrency,
            "process_wall_s": round(process_wall, 2),
            "startup_s": round(startup, 2),
            "search_wall_s": round(search_wall, 2),
            "trial_own_seconds_sum": round(own_seconds, 2),
            "trial_own_seconds_mean": round(own_seconds / trials, 3),
            "overhead_per_trial_s": round((search_wall - own_seconds / concurrency) / trials, 3),
            "whole_run_overhead_per_trial_s": round(
                (process_wall - own_seconds / concurrency) / trials, 3
            ),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    runs = [run_once(args.trials, c) for c in args.concurrency]
    payload = {
        "benchmark": "bench_study",
        "command": "python benchmarks/bench_study.py " + " ".join(sys.argv[1:]),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_average_1min_before": round(load_before, 2),
            "load_average_1min_after": round(os.getloadavg()[0], 2),
        },
        "targets": {"startup_s": 10.0, "overhead_per_trial_s": 1.0},
        "runs": runs,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(payload, indent=2) + "\n")
    header = ["concurrency", "trials", "startup_s", "search_wall_s", "trial_own_seconds_sum",
              "overhead_per_trial_s", "process_wall_s"]  # fmt: skip
    print(" | ".join(header))
    print(" | ".join("---" for _ in header))
    for run in runs:
        print(" | ".join(str(run[key]) for key in header))
    print(
        f"load average before/after: {load_before:.2f} / {os.getloadavg()[0]:.2f}; wrote {RESULTS}"
    )


if __name__ == "__main__":
    main()
