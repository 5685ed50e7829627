"""Packing trials on one GPU: fractional GPUs place 8 trials at once, each on the device it got.

The Ray part runs in a child process with its own local Ray that declares one *logical* GPU
(``ray.init(num_gpus=1)``; no CUDA needed): the session's shared Ray (tests/conftest.py) has
none, and a process can hold only one Ray. The child takes the trial resources and the
concurrency from the real :class:`~faerec.study.runner.StudyRunner` for a spec with
``gpus_per_trial: 0.125``, and runs 8 Tune trials of a probe trainable that records where Ray
put it and then waits until all 8 have started (a barrier: it completes only if the 8 run at
the same time).
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

from faerec.results import EpochReport
from faerec.study.progress import ProgressView
from faerec.study.trainable import GPU_MEMORY_KEY, ObjectiveTracker, placement_overrides

TRIALS = 8
SPEC = f"""\
name: packing
datasets: [ml-100k]
backbones: [sasrec]
methods: [backbone]
resources: {{cpus_per_trial: 1, gpus_per_trial: {1 / TRIALS}}}
"""
BARRIER_TIMEOUT_S = 120.0


def probe_trial(config: dict[str, Any]) -> None:
    """Record the placement, then wait for all trials to have started (runs in a Ray worker)."""
    import ray
    from ray import tune

    folder = Path(config["folder"])
    (folder / f"{config['index']}.started").touch()
    assigned = ray.get_runtime_context().get_assigned_resources()
    placement = {
        "index": config["index"],
        "assigned": assigned,
        "gpu_ids": [str(i) for i in ray.get_gpu_ids()],
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "overrides": placement_overrides(assigned),
    }
    deadline = time.monotonic() + BARRIER_TIMEOUT_S
    while len(list(folder.glob("*.started"))) < TRIALS and time.monotonic() < deadline:
        time.sleep(0.1)
    placement["together"] = len(list(folder.glob("*.started"))) == TRIALS
    tune.report({"placement": json.dumps(placement)})


def child_main(out: Path) -> None:
    """Start Ray with 8 CPUs and one logical GPU, run the 8 probes, write what they saw."""
    import logging

    import ray
    from ray import tune

    from faerec.study.runner import QUIET_RAY_ENVIRONMENT, RunOptions, StudyRunner
    from faerec.study.spec import parse_spec_text

    os.environ.update(QUIET_RAY_ENVIRONMENT)
    work = Path(tempfile.mkdtemp(prefix="faerec-packing-"))
    ray.init(
        num_cpus=TRIALS,
        num_gpus=1,
        include_dashboard=False,
        log_to_driver=False,
        logging_level=logging.ERROR,
        _temp_dir=os.path.join(tempfile.gettempdir(), "ray-packing"),
    )
    try:
        spec = parse_spec_text(SPEC, "packing.yaml", work)
        runner = StudyRunner(spec, RunOptions(studies_dir=work, reports_dir=work))
        runner.ray.ensure()  # joins the Ray started above
        resources, concurrency = runner.trial_resources(), runner.concurrency()
        (work / "barrier").mkdir()
        tuner = tune.Tuner(
            tune.with_resources(probe_trial, resources),
            param_space={
                "index": tune.grid_search(list(range(TRIALS))),
                "folder": str(work / "barrier"),
            },
            tune_config=tune.TuneConfig(max_concurrent_trials=concurrency),
            run_config=tune.RunConfig(storage_path=str(work / "tune"), verbose=0),
        )
        results = tuner.fit()
        metrics = [results[i].metrics or {} for i in range(len(results))]
        placements = [json.loads(m["placement"]) for m in metrics]
        payload = {"resources": resources, "concurrency": concurrency, "trials": placements}
        out.write_text(json.dumps(payload))
    finally:
        ray.shutdown()


@pytest.fixture(scope="module")
def packed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("packing") / "placements.json"
    subprocess.run(
        [sys.executable, __file__, str(out)], check=True, timeout=600, cwd=Path(__file__).parent
    )
    result: dict[str, Any] = json.loads(out.read_text())
    return result


@pytest.mark.ray
def test_runner_asks_for_an_eighth_of_the_gpu_and_runs_eight_at_once(
    packed: dict[str, Any],
) -> None:
    assert packed["resources"] == {"cpu": 1, "gpu": 1 / TRIALS}
    assert packed["concurrency"] == TRIALS


@pytest.mark.ray
def test_eight_trials_are_placed_on_the_gpu_at_the_same_time(packed: dict[str, Any]) -> None:
    trials = packed["trials"]
    assert sorted(t["index"] for t in trials) == list(range(TRIALS))
    assert all(t["together"] for t in trials)
    for trial in trials:
        assert trial["assigned"]["GPU"] == pytest.approx(1 / TRIALS)


@pytest.mark.ray
def test_each_trial_sees_the_device_it_was_given(packed: dict[str, Any]) -> None:
    for trial in packed["trials"]:
        assert trial["gpu_ids"] == ["0"]
        assert trial["cuda_visible_devices"] == "0"


@pytest.mark.ray
def test_packed_trials_train_on_cuda_with_one_thread_each(packed: dict[str, Any]) -> None:
    for trial in packed["trials"]:
        assert trial["overrides"] == {"train.num_threads": 1, "train.device": "auto"}


# --- what the study shows about GPU memory (no Ray) ---------------------------------------------


def epoch_report(gpu_mem_mb: float | None) -> EpochReport:
    return EpochReport(
        epoch=0,
        loss=1.0,
        loss_parts={},
        valid={"ndcg@20": 0.03},
        best_value=0.03,
        best_epoch=0,
        seconds=1.0,
        gpu_mem_mb=gpu_mem_mb,
    )


def test_epoch_result_carries_gpu_memory_only_on_a_gpu() -> None:
    tracker = ObjectiveTracker([{"group": "overall", "name": "ndcg@20"}], "ndcg@20")
    assert tracker.epoch_result(epoch_report(412.6))[GPU_MEMORY_KEY] == 412.6
    assert GPU_MEMORY_KEY not in tracker.epoch_result(epoch_report(None))


def test_trial_line_shows_its_gpu_memory() -> None:
    stream = io.StringIO()
    view = ProgressView(stream, tty=False)
    view.trial_epoch("ml-100k__sasrec__backbone", 3, 0, 10, "ndcg@20", 0.03, gpu_mem_mb=412.6)
    view.trial_epoch("ml-100k__sasrec__backbone", 4, 0, 10, "ndcg@20", 0.03)
    lines = stream.getvalue().splitlines()
    assert "gpu 413 MiB" in lines[0]
    assert "gpu" not in lines[1]


def test_a_single_trial_takes_a_whole_cpu_and_the_cpu_device_without_a_gpu() -> None:
    assert placement_overrides({"CPU": 0.5}) == {"train.num_threads": 1, "train.device": "cpu"}
    assert placement_overrides({"CPU": 4.0, "GPU": 1.0})["train.num_threads"] == 4


if __name__ == "__main__":
    child_main(Path(sys.argv[1]))
