"""The layering of docs/architecture.md, checked on what an import really loads.

Each check imports one module in a fresh interpreter, so no other test's imports can hide a
forbidden dependency. The study and report layers must answer without torch (``validate``,
``status`` and ``report`` start in a second); FAERec must not depend on any backbone module,
since it wraps whichever encoder it is given.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


def loaded_modules(module: str) -> list[str]:
    """Names of every module loaded by ``import module`` in a fresh interpreter."""
    code = f"import json, sys; import {module}; print(json.dumps(sorted(sys.modules)))"
    completed = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert completed.returncode == 0, completed.stderr
    return list(json.loads(completed.stdout.strip().splitlines()[-1]))


def top_level(names: list[str]) -> set[str]:
    return {name.split(".")[0] for name in names}


@pytest.mark.parametrize("module", ["faerec.study", "faerec.report", "faerec.data"])
def test_layer_does_not_load_torch(module: str) -> None:
    assert "torch" not in top_level(loaded_modules(module))


def test_faerec_model_does_not_load_any_backbone() -> None:
    backbones = [m for m in loaded_modules("faerec.models.faerec") if "backbones" in m]
    assert backbones == []
