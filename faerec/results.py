"""Plain-data results of one run: what training hands to the study layer and the report.

Nothing here holds a tensor, so the study store and the report can read and write these
without torch. The tidy row layout is the project's one results table:
``study, dataset, backbone, method, seed, split, group, metric, k, value, n_users``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

TIDY_COLUMNS = (
    "study",
    "dataset",
    "backbone",
    "method",
    "seed",
    "split",
    "group",
    "metric",
    "k",
    "value",
    "n_users",
)


@dataclass
class GroupMetrics:
    """Metrics of one user group: ``values`` maps ``"ndcg@10"`` -> value."""

    group: str
    n_users: int
    values: dict[str, float]


@dataclass
class EpochReport:
    """What the per-epoch hook sees after each training epoch.

    ``valid`` is None on epochs without validation. ``checkpoint_dir`` is set when the trainer
    has just written a resumable checkpoint there.
    """

    #: 0-based in memory (the training loop's index); 1-based in result files (RunResult)
    epoch: int
    loss: float
    loss_parts: dict[str, float]
    valid: dict[str, float] | None
    best_value: float | None
    best_epoch: int | None
    seconds: float
    checkpoint_dir: str | None = None
    #: curriculum weights used this epoch (FAERec only)
    weights: dict[str, float] = field(default_factory=dict)
    #: peak GPU memory torch allocated during the epoch and its validation, in MiB (CUDA only)
    gpu_mem_mb: float | None = None
    #: CPU seconds of this process (all its threads) over the epoch and its validation: the
    #: cost on a shared machine, where ``seconds`` also counts the time others held the cores
    cpu_seconds: float | None = None


#: in a result file: where its epoch numbers start (absent: 0, files of earlier versions)
EPOCHS_COUNTED_FROM = "epochs_counted_from"


def _shift(epoch: int | None, by: int) -> int | None:
    return None if epoch is None else int(epoch) + by


@dataclass
class RunResult:
    """The outcome of :func:`faerec.training.run_trial`."""

    config: dict[str, Any]
    best_epoch: int
    best_value: float
    select_metric: str
    epochs_trained: int
    stop_reason: str  # "early_stopping" | "max_epochs" | "hook"
    valid: list[GroupMetrics]
    test: list[GroupMetrics] | None
    history: list[EpochReport]
    seconds: float
    #: per-user test ranks (1-based, 0 = not in the top max-K) for paired per-user tests
    test_ranks: list[int] | None = None
    test_user_index: list[int] | None = None
    #: per entry of test_ranks: "head" or "tail" by the group of the user's test target item
    #: ("" for a row whose answer is no item), so per-user tests can be run within each group;
    #: None in seed files written before it was stored
    test_user_group: list[str] | None = None
    #: dataset and protocol facts for report headers: users, items, interactions,
    #: n_head_items, n_tail_items, n_eval_users, head_ratio, popularity_source, eval mode/masking
    data_stats: dict[str, Any] = field(default_factory=dict)
    #: device, torch/numpy versions, embedding model and its cache key
    environment: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The result file's payload: epochs counted from 1, as every log line, bar, table and
        figure counts them (``best_epoch`` and each history entry's ``epoch`` and
        ``best_epoch``), marked by ``epochs_counted_from``."""
        payload = asdict(self)
        payload["best_epoch"] = _shift(payload["best_epoch"], 1)
        for entry in payload["history"]:
            entry["epoch"] = _shift(entry["epoch"], 1)
            entry["best_epoch"] = _shift(entry["best_epoch"], 1)
        payload[EPOCHS_COUNTED_FROM] = 1
        return payload

    @classmethod
    def from_dict(cls, payload: dict[str, Any]) -> RunResult:
        """Reads files of every version: those written before ``epochs_counted_from`` count
        epochs from 0."""
        data = dict(payload)
        back = -int(data.pop(EPOCHS_COUNTED_FROM, 0))
        data["best_epoch"] = _shift(data["best_epoch"], back)
        data["valid"] = [GroupMetrics(**g) for g in data["valid"]]
        data["test"] = (
            None if data.get("test") is None else [GroupMetrics(**g) for g in data["test"]]
        )
        history = []
        for entry in data["history"]:
            entry = dict(entry)
            entry["epoch"] = _shift(entry["epoch"], back)
            entry["best_epoch"] = _shift(entry.get("best_epoch"), back)
            history.append(EpochReport(**entry))
        data["history"] = history
        return cls(**data)

    def tidy_rows(self, study: str, seed: int | None = None) -> list[dict[str, Any]]:
        """One row per (split, group, metric, k)."""
        cfg = self.config
        base = {
            "study": study,
            "dataset": cfg["data"]["dataset"],
            "backbone": cfg["model"]["backbone"],
            "method": cfg["method"],
            "seed": cfg["train"]["seed"] if seed is None else seed,
        }
        rows: list[dict[str, Any]] = []
        for split, groups in (("valid", self.valid), ("test", self.test or [])):
            for g in groups:
                for name, value in sorted(g.values.items()):
                    metric, _, k = name.partition("@")
                    rows.append(
                        {
                            **base,
                            "split": split,
                            "group": g.group,
                            "metric": metric,
                            "k": int(k),
                            "value": float(value),
                            "n_users": g.n_users,
                        }
                    )
        return rows
