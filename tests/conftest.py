"""Shared fixtures. Kept small: one Ray instance for every in-process study test."""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Iterator

import pytest


@pytest.fixture(scope="session")
def ray_instance() -> Iterator[None]:
    """A local Ray (2 CPUs) started once per test session; study runs in this process reuse it.

    Workers import faerec by module name, so the package must be installed (pip install -e .).
    """
    from faerec.study.runner import QUIET_RAY_ENVIRONMENT

    for key, value in QUIET_RAY_ENVIRONMENT.items():
        os.environ.setdefault(key, value)
    import ray

    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        logging_level=logging.ERROR,
        _temp_dir=os.path.join(tempfile.gettempdir(), "ray"),
    )
    try:
        yield
    finally:
        ray.shutdown()
