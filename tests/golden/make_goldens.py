"""Recompute the golden files of this folder from their inputs, independently of faerec.

The goldens were computed by the authors' code (see README.md here). This script re-derives
every output from the formulas of docs/method.md in plain Python/NumPy, without importing
faerec, so it is a second, independent reading of the method: if it agrees with a golden file,
the file, the formula in docs/method.md and (through the tests) this project's code all agree.

    python tests/golden/make_goldens.py            # check every golden file; exit 1 on a mismatch
    python tests/golden/make_goldens.py --write DIR  # regenerate the data-derived goldens in DIR

``--write`` regenerates what needs no random input: ``curriculum.json`` (from the four settings
below), ``beauty_head_tail.json`` and ``beauty_split_first300.npz`` (from the bundled Beauty),
and ``metrics.json`` (its ranked lists are random inputs, copied from the existing file; the
metrics are recomputed). The two loss goldens hold random embeddings; only their outputs can be
recomputed, which ``--check`` does.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

GOLDEN = Path(__file__).resolve().parent
BEAUTY = GOLDEN.parents[1] / "data" / "beauty" / "Beauty.txt"
#: (w_min, w_max, period, warmup) of curriculum.json, epochs 0..100
CURRICULUM_SETTINGS = [(0.9, 1.0, 30, 0), (0.7, 1.0, 20, 0), (0.3, 1.0, 25, 0), (0.5, 1.0, 10, 5)]
MAX_LEN = 50
HEAD_RATIO = 0.2
SPLIT_USERS = 300
RTOL = 1e-5


# --- formulas (docs/method.md) -----------------------------------------------------------------


def cosine_weights(w_min: float, w_max: float, period: int, warmup: int) -> list[float]:
    """§Curriculum: w_item per epoch 0..100."""
    out = []
    for epoch in range(101):
        if epoch < warmup:
            out.append(1.0)
            continue
        phase = (1.0 + math.cos(2.0 * math.pi * (epoch - warmup) / period)) / 2.0
        out.append((w_max - w_min) * phase + w_min)
    return out


def ranking_metrics(answers: list[list[int]], top: list[list[int]]) -> dict[str, float]:
    """§Ranking and metrics: HR@K and NDCG@K of ranked lists, one answer per user (IDCG = 1)."""
    out: dict[str, float] = {}
    for k in (5, 10, 20):
        hits = [len(set(a) & set(t[:k])) / len(a) for a, t in zip(answers, top, strict=True)]
        gains = [
            sum((t[j] in set(a)) / math.log2(j + 2) for j in range(k))
            for a, t in zip(answers, top, strict=True)
        ]
        out[f"hr@{k}"] = sum(hits) / len(hits)
        out[f"ndcg@{k}"] = sum(gains) / len(gains)
    return out


def infonce(id_emb: np.ndarray, llm_emb: np.ndarray, items: np.ndarray, tau: float) -> float:
    """§Item-level alignment: one-directional InfoNCE, same-item pairs masked off the diagonal."""
    z = id_emb / np.linalg.norm(id_emb, axis=1, keepdims=True)
    y = llm_emb / np.linalg.norm(llm_emb, axis=1, keepdims=True)
    logits = z @ y.T / tau
    same = (items[:, None] == items[None, :]) & ~np.eye(len(items), dtype=bool)
    logits[same] = -np.inf
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_softmax = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return float(-np.mean(np.diag(log_softmax)))


def barlow_twins(a: np.ndarray, b: np.ndarray, gamma: float) -> float:
    """§Feature-level alignment, one group: standardised views, cross-correlation to identity."""
    a_hat = (a - a.mean(axis=0)) / (a.std(axis=0, ddof=1) + 1e-5)
    b_hat = (b - b.mean(axis=0)) / (b.std(axis=0, ddof=1) + 1e-5)
    c = a_hat.T @ b_hat / a.shape[0]
    off = c - np.diag(np.diag(c))
    return float(((1.0 - np.diag(c)) ** 2).sum() + gamma * (off**2).sum())


def split_barlow_twins(
    a: np.ndarray, b: np.ndarray, popularity: np.ndarray, gamma: float
) -> tuple[float, float]:
    """(loss, median): Barlow-Twins on the rows at or above the lower median, plus below it."""
    median = float(np.sort(popularity)[(len(popularity) - 1) // 2])
    loss = 0.0
    for rows in (popularity >= median, popularity < median):
        if rows.sum() > 1:
            loss += barlow_twins(a[rows], b[rows], gamma)
    return loss, median


def read_sequences(path: Path) -> list[list[int]]:
    return [[int(x) for x in line.split()[1:]] for line in path.read_text().splitlines() if line]


def head_tail(sequences: list[list[int]]) -> dict[str, object]:
    """§Head and tail: full-sequence counts, ties by first appearance; training popularity."""
    counts: dict[int, int] = {}
    for sequence in sequences:
        for item in sequence:
            counts[item] = counts.get(item, 0) + 1  # dict order = first appearance
    ranked = sorted(counts, key=lambda item: -counts[item])
    n_head = int(HEAD_RATIO * len(ranked))
    by_length = sorted(range(len(sequences)), key=lambda user: -len(sequences[user]))
    train: dict[int, int] = {}
    for sequence in sequences:
        for item in sequence[:-2]:
            train[item] = train.get(item, 0) + 1
    return {
        "dataset": "beauty",
        "head_ratio": HEAD_RATIO,
        "head_items": sorted(ranked[:n_head]),  # the set, listed in id order
        "n_tail_items": len(ranked) - n_head,
        "head_users_zero_based": sorted(by_length[: int(HEAD_RATIO * len(sequences))]),
        "train_popularity": {str(item): train[item] for item in sorted(train)},
    }


def split_rows(sequences: list[list[int]]) -> dict[str, np.ndarray]:
    """§Split: the authors' train/valid/test rows, left-padded and cut to the last MAX_LEN."""
    parts: dict[str, list[list[int]]] = {}
    for items in sequences:
        n = len(items)
        rows = {
            "train": (items[:-3], items[1:-2], [0]),
            "valid": (items[:-2], items[1:-1], [items[-2]]),
            "test": (items[:-1], items[1:], [items[-1]]),
        }
        if n == 1:
            rows = {part: ([], [], [0]) for part in rows}
        elif n == 2:
            rows = {"train": ([items[0]], [items[1]], [0]), "valid": ([], [], [0])}
            rows["test"] = ([], [], [0])
        elif n == 3:
            rows = {
                "train": ([], [], [0]),
                "valid": ([items[0]], [0], [items[1]]),
                "test": (items[:2], [0, 0], [items[2]]),
            }
        for part, (inputs, targets, answer) in rows.items():
            for name, values in (("input_ids", inputs), ("target_pos", targets)):
                padded = ([0] * MAX_LEN + list(values))[-MAX_LEN:]
                parts.setdefault(f"{part}_{name}", []).append(padded)
            parts.setdefault(f"{part}_answer", []).append(answer)
    return {key: np.asarray(value, dtype=np.int64) for key, value in parts.items()}


# --- check and write ---------------------------------------------------------------------------


def _close(expected: float, actual: float) -> bool:
    return math.isclose(expected, actual, rel_tol=RTOL, abs_tol=1e-9)


def check_all() -> list[tuple[str, bool, str]]:
    """(file, agrees, detail) for every golden file."""
    results: list[tuple[str, bool, str]] = []

    def record(name: str, compute: Callable[[], tuple[bool, str]]) -> None:
        ok, detail = compute()
        results.append((name, ok, detail))

    def curriculum() -> tuple[bool, str]:
        stored = json.loads((GOLDEN / "curriculum.json").read_text())
        worst = 0.0
        for entry in stored:
            mine = cosine_weights(entry["w_min"], entry["w_max"], entry["period"], entry["warmup"])
            worst = max(
                worst, *(abs(x - y) for x, y in zip(mine, entry["item_weight"], strict=True))
            )
            worst = max(
                worst, *(abs(1 - x - y) for x, y in zip(mine, entry["feature_weight"], strict=True))
            )
        return worst < 1e-9, f"max |diff| {worst:.1e} over {len(stored)} settings"

    def metrics() -> tuple[bool, str]:
        stored = json.loads((GOLDEN / "metrics.json").read_text())
        mine = ranking_metrics(stored["answers"], stored["top20"])
        worst = max(abs(mine[k] - v) for k, v in stored["metrics"].items())
        return worst < 1e-12, f"max |diff| {worst:.1e} over {len(stored['metrics'])} metrics"

    def infonce_file() -> tuple[bool, str]:
        data = np.load(GOLDEN / "infonce.npz")
        a, b = data["id_emb"].astype(np.float64), data["llm_emb"].astype(np.float64)
        mine = [infonce(a, b, data["item_ids"], float(tau)) for tau in data["taus"]]
        ok = all(_close(float(e), m) for e, m in zip(data["losses"], mine, strict=True))
        return ok, f"losses {np.round(data['losses'], 6).tolist()} vs {np.round(mine, 6).tolist()}"

    def barlow_file() -> tuple[bool, str]:
        data = np.load(GOLDEN / "barlow_twins.npz")
        a, b = data["id_emb"].astype(np.float64), data["llm_emb"].astype(np.float64)
        gamma = float(data["gamma"])
        unsplit = barlow_twins(a, b, gamma)
        split, median = split_barlow_twins(a, b, data["popularity"].astype(np.float64), gamma)
        ok = (
            _close(float(data["loss_unsplit"]), unsplit)
            and _close(float(data["loss_split"]), split)
            and float(data["median"]) == median
        )
        return ok, f"unsplit {unsplit:.6f}, split {split:.6f}, median {median:g}"

    def head_tail_file() -> tuple[bool, str]:
        stored = json.loads((GOLDEN / "beauty_head_tail.json").read_text())
        mine = head_tail(read_sequences(BEAUTY))
        differs = [key for key in stored if stored[key] != mine.get(key)]
        return not differs, "all keys equal" if not differs else f"differs: {differs}"

    def split_file() -> tuple[bool, str]:
        stored = np.load(GOLDEN / "beauty_split_first300.npz")
        mine = split_rows(read_sequences(BEAUTY)[:SPLIT_USERS])
        differs = [key for key in stored.files if not np.array_equal(stored[key], mine[key])]
        return not differs, "all arrays equal" if not differs else f"differs: {differs}"

    record("curriculum.json", curriculum)
    record("metrics.json", metrics)
    record("infonce.npz", infonce_file)
    record("barlow_twins.npz", barlow_file)
    record("beauty_head_tail.json", head_tail_file)
    record("beauty_split_first300.npz", split_file)
    return results


def write_all(out: Path) -> None:
    """Regenerate the goldens that need no random input into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    curriculum = []
    for w_min, w_max, period, warmup in CURRICULUM_SETTINGS:
        weights = cosine_weights(w_min, w_max, period, warmup)
        curriculum.append(
            {
                "w_min": w_min,
                "w_max": w_max,
                "period": period,
                "warmup": warmup,
                "item_weight": weights,
                "feature_weight": [1.0 - w for w in weights],
            }
        )
    (out / "curriculum.json").write_text(json.dumps(curriculum))
    stored = json.loads((GOLDEN / "metrics.json").read_text())
    stored["metrics"] = ranking_metrics(stored["answers"], stored["top20"])
    (out / "metrics.json").write_text(json.dumps(stored))
    sequences = read_sequences(BEAUTY)
    (out / "beauty_head_tail.json").write_text(json.dumps(head_tail(sequences)))
    arrays = split_rows(sequences[:SPLIT_USERS])
    # numpy's stubs type **kwds of savez like its allow_pickle flag
    np.savez(out / "beauty_split_first300.npz", **arrays)  # type: ignore[arg-type]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--write", type=Path, metavar="DIR", help="regenerate into DIR")
    args = parser.parse_args(argv)
    if args.write is not None:
        write_all(args.write)
        print(f"wrote the data-derived goldens to {args.write}")
        return 0
    results = check_all()
    for name, ok, detail in results:
        print(f"{'ok  ' if ok else 'FAIL'} {name}: {detail}")
    return 0 if all(ok for _, ok, _ in results) else 1


if __name__ == "__main__":
    sys.exit(main())
