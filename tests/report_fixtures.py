"""A realistic study store for the report tests, written through faerec.study.store (the one
owner of the layout in docs/store-layout.md), as the study engine writes it.

The final seeds are simulated, but consistently: every group metric is computed from the
per-user test ranks the file also stores, FAERec is better on tail items than the backbone,
and the configs are real resolved RunConfigs. The Optuna journal is made by Optuna itself
(a cheap objective), so trial states, importances and Pareto fronts are real Optuna output.
"""

from __future__ import annotations

import json
import math
import re
import warnings
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import optuna

from faerec.atomic import write_json_atomic
from faerec.config import resolve_config
from faerec.results import EpochReport, GroupMetrics, RunResult
from faerec.study.store import CellStore, StudyStore, optuna_study_name

KS = (5, 10, 20)
BUCKETS = ((1, 4, "1-4"), (5, 9, "5-9"), (10, 19, "10-19"), (20, 49, "20-49"), (50, 10**9, "50+"))
#: probability of a top-20 hit for (head target, tail target), per method
HIT_RATES = {
    "backbone": (0.30, 0.05),
    "faerec": (0.34, 0.22),
    "faerec-no-gate": (0.32, 0.17),
    "faerec-no-curriculum": (0.33, 0.19),
}


def _group_metrics(ranks: np.ndarray, masks: dict[str, np.ndarray]) -> list[GroupMetrics]:
    out = []
    for name, mask in masks.items():
        selected = ranks[mask]
        if selected.size == 0:
            continue
        values: dict[str, float] = {}
        for k in KS:
            hit = (selected > 0) & (selected <= k)
            gain = np.where(hit, 1.0 / np.log2(np.maximum(selected, 1) + 1.0), 0.0)
            values[f"hr@{k}"] = float(hit.mean())
            values[f"ndcg@{k}"] = float(gain.mean())
        out.append(GroupMetrics(group=name, n_users=int(selected.size), values=values))
    return out


class SimulatedData:
    """A MovieLens-100K-sized population: target popularity, head/tail items, user activity."""

    def __init__(self, n_users: int = 943, n_items: int = 1682, seed: int = 7) -> None:
        rng = np.random.default_rng(seed)
        self.n_users, self.n_items = n_users, n_items
        counts = np.maximum(1, (rng.pareto(1.1, n_items) * 6).astype(int))
        self.item_counts = counts
        threshold = np.sort(counts)[::-1][int(0.2 * n_items) - 1]
        self.is_head_item = counts >= threshold
        popularity = counts / counts.sum()
        self.targets = rng.choice(n_items, size=n_users, p=popularity)
        lengths = rng.integers(20, 400, size=n_users)
        head_user = lengths >= np.quantile(lengths, 0.8)
        target_counts = counts[self.targets]
        head_target = self.is_head_item[self.targets]
        self.head_target = head_target
        self.masks: dict[str, np.ndarray] = {
            "overall": np.ones(n_users, dtype=bool),
            "head_items": head_target,
            "tail_items": ~head_target,
        }
        for low, high, label in BUCKETS:
            self.masks[f"bucket_{label}"] = (target_counts >= low) & (target_counts <= high)
        self.masks["head_users"] = head_user
        self.masks["tail_users"] = ~head_user
        self.items_per_bucket = {
            label: int(((counts >= low) & (counts <= high)).sum()) for low, high, label in BUCKETS
        }

    def ranks(self, method: str, seed: int) -> np.ndarray:
        rng = np.random.default_rng(zlib.crc32(f"{method}:{seed}".encode()))
        head_rate, tail_rate = HIT_RATES.get(method, HIT_RATES["faerec"])
        rate = np.where(self.head_target, head_rate, tail_rate) * rng.uniform(0.93, 1.07)
        hit = rng.random(self.n_users) < rate
        ranks = np.where(hit, rng.integers(1, 21, size=self.n_users), 0)
        return ranks.astype(np.int64)

    def data_stats(self, name: str) -> dict[str, Any]:
        n_head = int(self.is_head_item.sum())
        return {
            "dataset": name,
            "fingerprint": "3f2a9c01",
            "users": self.n_users,
            "items": self.n_items,
            "interactions": 100000,
            "avg_length": round(100000 / self.n_users, 4),
            "n_head_items": n_head,
            "n_tail_items": self.n_items - n_head,
            "n_head_users": int(self.masks["head_users"].sum()),
            "n_train": self.n_users,
            "n_valid": self.n_users,
            "n_test": self.n_users,
            "n_eval_users": self.n_users,
            "max_len": 50,
            "head_ratio": 0.2,
            "popularity_source": "full",
            "items_per_bucket": self.items_per_bucket,
        }


def _cosine_weights(epoch: int, w_min: float, w_max: float, period: int) -> tuple[float, float]:
    w_item = w_min + (w_max - w_min) * (1 + math.cos(math.pi * (epoch % period) / period)) / 2
    return w_item, 1.0 - w_item


def simulated_run(
    data: SimulatedData,
    dataset: str,
    backbone: str,
    method: str,
    seed: int,
    overrides: dict[str, Any] | None = None,
    converged: bool = False,
) -> RunResult:
    """A plausible RunResult whose metrics all come from the stored per-user ranks.

    It runs to max_epochs (12) unless ``converged``: then early stopping ends it 3 epochs
    after its best one.
    """
    config = resolve_config(
        dataset,
        backbone,
        method,
        preset="official",
        overrides={
            "train.seed": seed,
            "model.hidden_size": 16,
            "train.max_epochs": 12,
            "train.eval_start_epoch": 0,
            **(overrides or {}),
        },
    ).to_dict()
    ranks = data.ranks(method, seed)
    valid_ranks = data.ranks(method, seed + 1000)
    rng = np.random.default_rng(seed)
    history = []
    best_epoch = 7 + seed % 3
    epochs = best_epoch + 4 if converged else 12
    for epoch in range(epochs):
        progress = min(1.0, (epoch + 1) / (best_epoch + 1))
        valid = {f"ndcg@{k}": 0.05 * k / 10 * progress + rng.normal(0, 0.002) for k in KS}
        valid.update({f"hr@{k}": 0.09 * k / 10 * progress + rng.normal(0, 0.003) for k in KS})
        weights: dict[str, float] = {}
        if config["faerec"]["enabled"]:
            f = config["faerec"]
            w_item, w_feat = _cosine_weights(epoch, f["w_min"], f["w_max"], 5)
            weights = {"w_item": w_item, "w_feat": w_feat}
        history.append(
            EpochReport(
                epoch=epoch,
                loss=1.2 * math.exp(-epoch / 6) + 0.3,
                loss_parts={"rec": 0.3},
                valid=valid,
                best_value=valid["ndcg@20"],
                best_epoch=min(epoch, best_epoch),
                seconds=0.8,
                weights=weights,
                cpu_seconds=1.5,  # 2 threads; the trials' epochs.csv rows record none
            )
        )
    return RunResult(
        config=config,
        best_epoch=best_epoch,
        best_value=float(history[best_epoch].valid["ndcg@20"]),  # type: ignore[index]
        select_metric="ndcg@20",
        epochs_trained=epochs,
        stop_reason="early_stopping" if converged else "max_epochs",
        valid=_group_metrics(valid_ranks, data.masks),
        test=_group_metrics(ranks, data.masks),
        history=history,
        seconds=9.6,
        test_ranks=ranks.tolist(),
        test_user_index=list(range(data.n_users)),
        test_user_group=np.where(data.head_target, "head", "tail").tolist(),
        data_stats=data.data_stats(dataset),
        environment={
            "device": "cpu",
            "torch": "2.13.0",
            "numpy": "2.4.6",
            "embedding_model": "minilm",
            "embedding_cache_key": "minilm-ml100k-5be1",
        },
    )


def tiny_run_result(seed: int = 2024) -> RunResult:
    """The smallest RunResult the store accepts as a final seed (tested, one group)."""
    group = GroupMetrics(group="overall", n_users=2, values={"ndcg@10": 0.5})
    return RunResult(
        config={"train": {"seed": seed}},
        best_epoch=0,
        best_value=0.5,
        select_metric="ndcg@10",
        epochs_trained=1,
        stop_reason="max_epochs",
        valid=[group],
        test=[group],
        history=[],
        seconds=1.0,
        test_ranks=[1, 0],
        test_user_index=[0, 1],
    )


def _write_search(
    cell: CellStore,
    study_name: str,
    method: str,
    n_trials: int,
    objectives: tuple[str, ...],
    storage_url: str = "",
) -> dict[str, Any]:
    """A real Optuna study in the cell's journal (or the database) plus trials.csv / epochs.csv
    / best.json rows."""
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    storage = cell.open_storage(storage_url)
    directions = [optuna.study.StudyDirection.MAXIMIZE] * len(objectives)
    study = optuna.create_study(
        study_name=optuna_study_name(study_name, cell.cell_id, storage_url),
        storage=storage,
        directions=directions,
        sampler=optuna.samplers.TPESampler(seed=3),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=1),
    )
    if len(objectives) > 1:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(list(objectives))
    epoch_rows: list[dict[str, Any]] = []

    def objective(trial: optuna.Trial) -> float | tuple[float, float]:
        lr = trial.suggest_float("train.lr", 1e-4, 1e-2, log=True)
        align = trial.suggest_float("faerec.align_weight", 0.05, 0.5)
        w_min = trial.suggest_float("faerec.w_min", 0.3, 0.9)
        gate = "none"
        if method == "faerec":
            gate = trial.suggest_categorical("faerec.gate", ["dimension", "scalar", "bilinear"])
        quality = 0.06 - 8 * (math.log10(lr) + 2.6) ** 2 * 1e-3 + 0.01 * align
        quality += 0.004 * (gate == "dimension")
        value = 0.0
        for epoch in range(4):
            value = quality * (epoch + 1) / 4
            w_item, w_feat = _cosine_weights(epoch, w_min, 1.0, 5)
            epoch_rows.append(
                {
                    "trial": trial.number,
                    "epoch": epoch,
                    "loss": 1.0 / (epoch + 1),
                    "ndcg@20": value,
                    "hr@20": 2 * value,
                    "seconds": 0.5,
                    "w_item": w_item,
                    "w_feat": w_feat,
                }
            )
            if len(objectives) == 1:
                trial.report(value, epoch)
                if trial.should_prune():
                    raise optuna.TrialPruned()
        if trial.number == 2:
            raise RuntimeError("NaN loss at epoch 3 (lr too high)")
        if len(objectives) > 1:
            return value, 0.08 - value + 0.3 * (1 - w_min) * 0.05
        return value

    study.optimize(objective, n_trials=n_trials, catch=(RuntimeError,))
    rows = []
    for trial in study.trials:
        value = trial.values[0] if trial.values else ""
        error = "NaN loss at epoch 3 (lr too high)" if trial.state.name == "FAIL" else ""
        rows.append(
            {
                "number": trial.number,
                "state": trial.state.name,
                "value": value,
                "epochs": 4,
                "seconds": 2.0,
                "error": error,
                "params": json.dumps(trial.params),
            }
        )
    cell.write_trials(rows)
    cell.write_epochs(epoch_rows)
    best = study.best_trials[0] if len(objectives) > 1 else study.best_trial
    return {"params": best.params, "value": best.values[0], "trial": best.number}


def make_study_store(
    studies_dir: Path,
    name: str = "demo",
    *,
    dataset: str = "ml-100k",
    backbone: str = "sasrec",
    methods: tuple[str, ...] = ("backbone", "faerec", "faerec-no-gate"),
    seeds: tuple[int, ...] = (2024, 2025),
    description: str = "FAERec vs SASRec on MovieLens-100K (report test fixture)",
    n_trials: int = 8,
    searched: tuple[str, ...] = ("faerec", "faerec-no-gate"),
    two_metric: tuple[str, ...] = (),
    extra_best_params: dict[str, dict[str, Any]] | None = None,
    real: bool = False,
    method_overrides: dict[str, dict[str, Any]] | None = None,
    storage_url: str = "",
    converged: tuple[str, ...] = (),
) -> Path:
    """Write ``studies_dir/<name>/`` as the study engine would after a finished run.

    With ``real`` the final seeds are the recorded real runs (ml-100k, SASRec, the methods and
    seeds of REAL_METHODS / REAL_SEEDS); otherwise they are simulated. With ``storage_url`` the
    searches are kept in that Optuna database (the spec's ``storage``) instead of journals.
    The simulated final runs of ``converged`` methods stop early; the others at max_epochs.
    The recorded real runs predate ``RunResult.test_user_group`` (old seed files).
    """
    if real:
        assert (dataset, backbone) == ("ml-100k", "sasrec"), "real runs exist for ml-100k/sasrec"
        assert set(methods) <= set(REAL_METHODS) and set(seeds) <= set(REAL_SEEDS)
    store = StudyStore(studies_dir / name)
    data = SimulatedData()
    cell_ids = []
    for method in methods:
        cell_id = f"{re.sub(r'[^A-Za-z0-9_.-]+', '-', dataset)}__{backbone}__{method}"
        cell_ids.append(cell_id)
        cell = store.cell(cell_id)
        cell.final_dir.mkdir(parents=True, exist_ok=True)
        objectives = ("ndcg@20", "tail_items/ndcg@20") if method in two_metric else ("ndcg@20",)
        has_space = method in searched
        write_json_atomic(
            cell.cell_json,
            {
                "cell_id": cell_id,
                "dataset": dataset,
                "backbone": backbone,
                "method": method,
                "has_space": has_space,
                "n_trials_target": n_trials if has_space else 0,
                "metric": list(objectives) if len(objectives) > 1 else objectives[0],
                "direction": ["maximize"] * len(objectives) if len(objectives) > 1 else "maximize",
            },
        )
        overrides: dict[str, Any] = {}
        if has_space:
            best = _write_search(cell, name, method, n_trials, objectives, storage_url)
            overrides = dict(best["params"])
        else:
            best = {"params": {}, "value": None, "trial": None}
        extra = (extra_best_params or {}).get(method)
        if extra:
            best["params"] = {**best["params"], **extra}
        overrides.update((method_overrides or {}).get(method, {}))
        first = None
        for seed in seeds:
            result = (
                real_run(method, seed)
                if real
                else simulated_run(
                    data, dataset, backbone, method, seed, overrides, method in converged
                )
            )
            first = first or result
            write_json_atomic(cell.seed_json(seed), result.to_dict())
        assert first is not None
        best["config"] = first.config
        write_json_atomic(cell.best_json, best)
    write_json_atomic(
        store.study_json,
        {
            "name": name,
            "description": description,
            "spec_hash": "sha256:9b1f0c3e7a52d4e8",
            "spec": {
                "name": name,
                "datasets": [dataset],
                "backbones": [backbone],
                "methods": list(methods),
                "final": {"seeds": len(seeds)},
                "storage": storage_url,
            },
            "created": "2026-11-28T10:00:00+00:00",
            "updated": "2026-11-28T11:30:00+00:00",
            "command": f"faerec-study run search_spaces/{name}.yaml",
            "versions": {
                "faerec": "0.1.0",
                "torch": "2.13.0",
                "optuna": optuna.__version__,
                "ray": "2.60.0",
                "python": "3.11.7",
            },
            "cells": cell_ids,
        },
    )
    store.spec_yaml.write_text(f"name: {name}\n", encoding="utf-8")
    return store.root


# --- real runs --------------------------------------------------------------------------------

#: final seeds recorded from real ``faerec.training.run_trial`` runs (see ``record_real_runs``)
REAL_RUNS_DIR = Path(__file__).parent / "fixtures" / "report_runs"
REAL_METHODS = ("backbone", "faerec", "faerec-no-gate")
REAL_SEEDS = (2024, 2025)


def real_run_path(method: str, seed: int) -> Path:
    return REAL_RUNS_DIR / f"ml-100k__sasrec__{method}__seed_{seed}.json"


def record_real_runs() -> None:
    """Train the tiny real runs the report tests use (ml-100k, hidden 16, 3 epochs, 2 seeds).

    Run ``python tests/report_fixtures.py`` after a change to RunResult or to training that the
    report should see; it takes about a minute on two cores.
    """
    import torch

    from faerec.training import run_trial

    torch.set_num_threads(1)
    REAL_RUNS_DIR.mkdir(parents=True, exist_ok=True)
    for method in REAL_METHODS:
        for seed in REAL_SEEDS:
            config = resolve_config(
                "ml-100k",
                "sasrec",
                method,
                overrides={
                    "model.hidden_size": 16,
                    "train.max_epochs": 3,
                    "train.eval_start_epoch": 0,
                    "train.seed": seed,
                    "train.num_threads": 1,
                    "train.device": "cpu",
                },
            )
            result = run_trial(config)
            write_json_atomic(real_run_path(method, seed), result.to_dict())


def real_run(method: str, seed: int) -> RunResult:
    """A recorded real run (FileNotFoundError until ``record_real_runs`` has been run)."""
    return RunResult.from_dict(json.loads(real_run_path(method, seed).read_text()))


if __name__ == "__main__":
    record_real_runs()
