"""How much the study engine adds around training: start-up and overhead per trial.

Runs the real CLI (``faerec-study run``, a fresh process with a local Ray) on a 16-trial study of
tiny trials (ml-100k, SASRec with 16 hidden units, 1 epoch, no scheduler, no final stage), reads
the times back from the study's Optuna journal, then trains the same configurations directly
(``run_trial`` in a loop, in a fresh process, as the trainable calls it):

* **start-up**: from launching the command to the first trial being proposed (imports, spec
  checks, store, ``ray.init``, Optuna study, Tune set-up);
* **overhead per trial** (the figure the target is about): ``(search wall time - sum of the
  trials' own run_trial seconds / concurrency - direct imports) / trials``. The search wall time
  runs from the first trial's start to the last one's end; run directly, the same trainings
  cost their run_trial seconds plus one process's imports (torch, faerec: ``direct imports``,
  timed in the direct process). What is left is what Ray Tune, Optuna, the worker's start and
  the bookkeeping add;
* **overhead against the direct wall time**: ``(search wall time - direct wall time /
  concurrency) / trials``, the same idea with the direct process's whole time (its imports and
  its own trainings). It subtracts trainings timed a minute apart, so on a loaded machine it
  moves by more than the overhead itself (``direct_own_seconds_sum`` against
  ``trial_own_seconds_sum`` shows by how much); the first figure subtracts the very trainings
  of the study;
* **overhead over the trials' own seconds**: the first figure without the direct imports, as
  earlier runs recorded it (it charges the worker's imports to the engine).

With a concurrency above 1 training time is divided by it, i.e. perfect scaling is assumed. The
journal's own timestamps also split the overhead (one trial at a time): each trial's time
outside its run_trial and the gaps between trials (:func:`breakdown`).
Targets: start-up < 10 s, overhead < 0.5 s per trial. Usage::

    python benchmarks/bench_study.py [--trials 16] [--concurrency 1 2]

It prints a table and writes benchmarks/results/bench_study.json (or ``--output``) with the
command, the machine and its load.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
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
  train.max_epochs: 1
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


def direct_main(spec_path: str, params_path: str) -> None:
    """In a fresh process: train every configuration of ``params_path`` as the trainable does
    (one CPU thread, a checkpoint folder, no test evaluation) and print its times: the whole
    (from before the first import of torch to the end of the last training), the imports, and
    the sum of run_trial's own seconds."""
    started = time.perf_counter()
    from faerec.config import resolve_config
    from faerec.study.spec import parse_spec
    from faerec.study.trainable import placement_overrides
    from faerec.training import run_trial

    imports = time.perf_counter() - started
    spec = parse_spec(spec_path)
    (cell,) = spec.cells()
    own = 0.0
    for params in json.loads(Path(params_path).read_text()):
        overrides = {**placement_overrides({"CPU": 1.0}), **spec.overrides(params)}
        config = resolve_config(cell.dataset, cell.backbone, cell.method, spec.preset, overrides)
        with tempfile.TemporaryDirectory(prefix="bench-direct-") as workdir:
            run = run_trial(config, on_epoch=lambda report: None, checkpoint_dir=workdir,
                            evaluate_test=False)  # fmt: skip
        own += run.seconds
    times = {"wall_s": time.perf_counter() - started, "imports_s": imports, "own_seconds_sum": own}
    print(json.dumps(times))


def run_direct(spec: Path, params: list[dict[str, Any]]) -> dict[str, float]:
    """The times of the trainings of ``params`` run directly (see :func:`direct_main`)."""
    params_path = spec.with_name("params.json")
    params_path.write_text(json.dumps(params))
    command = [sys.executable, __file__, "--direct", str(spec), str(params_path)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"the direct runs failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    times = json.loads(done.stdout.strip().splitlines()[-1])
    return {key: float(value) for key, value in times.items()}


def breakdown(trials: list[Any]) -> dict[str, float]:
    """Where the search's time outside training goes, from the Optuna journal (one trial at a
    time): inside each trial's span but outside its run_trial (the worker's start and imports
    for the first, Tune's reports and checkpoint copies for every one), and between one trial's
    end and the next one's start (Tune's and Optuna's bookkeeping, the searcher's suggestion)."""
    ordered = sorted(trials, key=lambda t: t.datetime_start)
    outside = [
        (t.datetime_complete - t.datetime_start).total_seconds() - float(t.user_attrs["seconds"])
        for t in ordered
    ]
    gaps = [
        (after.datetime_start - before.datetime_complete).total_seconds()
        for before, after in zip(ordered, ordered[1:], strict=False)
    ]
    later = statistics.median(outside[1:] or [0])
    gap = statistics.median(gaps or [0])
    return {
        "first_trial_outside_run_trial_s": round(outside[0], 3),
        "later_trials_outside_run_trial_median_s": round(later, 3),
        "gap_between_trials_median_s": round(gap, 3),
        # what each trial after a worker's first costs on top of its training (concurrency 1)
        "steady_overhead_per_trial_s": round(later + gap, 3),
    }


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
        direct = run_direct(spec, [dict(t.params) for t in finished])
        training = own_seconds / concurrency
        return {
            "trials": trials,
            "concurrency": concurrency,
            "process_wall_s": round(process_wall, 2),
            "startup_s": round(startup, 2),
            "search_wall_s": round(search_wall, 2),
            "overhead_per_trial_s": round(
                (search_wall - training - direct["imports_s"]) / trials, 3
            ),
            "direct_wall_s": round(direct["wall_s"], 2),
            "direct_imports_s": round(direct["imports_s"], 2),
            "direct_own_seconds_sum": round(direct["own_seconds_sum"], 2),
            "overhead_vs_direct_wall_per_trial_s": round(
                (search_wall - direct["wall_s"] / concurrency) / trials, 3
            ),
            **breakdown(finished),
            "trial_own_seconds_sum": round(own_seconds, 2),
            "trial_own_seconds_mean": round(own_seconds / trials, 3),
            "overhead_over_own_seconds_per_trial_s": round(
                (search_wall - own_seconds / concurrency) / trials, 3
            ),
            "whole_run_overhead_per_trial_s": round(
                (process_wall - own_seconds / concurrency) / trials, 3
            ),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 2])
    parser.add_argument(
        "--output", type=Path, default=RESULTS, help=f"JSON written (default {RESULTS})"
    )
    parser.add_argument("--direct", nargs=2, metavar=("SPEC", "PARAMS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.direct:
        direct_main(*args.direct)
        return
    load_before = os.getloadavg()[0]
    runs = [run_once(args.trials, c) for c in args.concurrency]
    payload = {
        "benchmark": "bench_study",
        "command": "python benchmarks/bench_study.py " + " ".join(sys.argv[1:]),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "load_average_1min_before": round(load_before, 2),
            "load_average_1min_after": round(os.getloadavg()[0], 2),
        },
        "targets": {"startup_s": 10.0, "overhead_per_trial_s": 0.5},
        "runs": runs,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(payload, indent=2) + "\n")
    header = ["concurrency", "trials", "startup_s", "search_wall_s", "trial_own_seconds_sum",
              "direct_imports_s", "overhead_per_trial_s", "direct_wall_s",
              "direct_own_seconds_sum", "overhead_vs_direct_wall_per_trial_s",
              "process_wall_s"]  # fmt: skip
    print(" | ".join(header))
    print(" | ".join("---" for _ in header))
    for run in runs:
        print(" | ".join(str(run[key]) for key in header))
    parts = ["first_trial_outside_run_trial_s", "later_trials_outside_run_trial_median_s",
             "gap_between_trials_median_s", "steady_overhead_per_trial_s"]  # fmt: skip
    for run in runs:
        print(f"concurrency {run['concurrency']}: " + ", ".join(f"{k} {run[k]}" for k in parts))
    print(
        f"load average before/after: {load_before:.2f} / {os.getloadavg()[0]:.2f}; "
        f"wrote {args.output}"
    )


if __name__ == "__main__":
    main()
