#!/usr/bin/env bash
# Download, on a machine with a package index, the few small pure-Python wheels that
# benchmarks/gpu_check.sh installs on a GPU machine without network (into .whl/, gitignored).
# The GPU machine is expected to have torch, numpy, pandas, PyYAML, tqdm and scipy already; the
# training path needs neither Ray nor Optuna (gpu_check.sh checks that), so neither comes here.
# Pure wheels only (any Python >= 3.10); exceptiongroup and tomli serve pytest on Python 3.10.
set -euo pipefail
cd "$(dirname "$0")/.."
pure=(--no-deps --only-binary=:all: --implementation py --abi none --platform any
      --python-version 3.10 --dest .whl)
python -m pip download --quiet "${pure[@]}" \
    pytest pluggy iniconfig packaging pygments exceptiongroup tomli platformdirs
ls -l .whl
du -sh .whl
