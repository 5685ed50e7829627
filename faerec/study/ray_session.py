"""The driver's Ray: started on first use (a finished study never starts it), quiet, and stopped
again only if this process started it (a joined cluster is left running)."""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from typing import Any

from faerec.study.progress import ProgressView
from faerec.study.signals import InterruptGuard, StopNow

#: Ray and Tune settings for a quiet, local, resumable run
#: (docs/ray-tune-notes.md §Quiet local settings)
QUIET_RAY_ENVIRONMENT = {
    "RAY_AUTH_MODE": "disabled",
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_AIR_NEW_OUTPUT": "0",
    "RAY_CHDIR_TO_TRIAL_DIR": "0",
    "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "0",
    "RAY_TRAIN_ENABLE_V2_MIGRATION_WARNINGS": "0",
}
#: settings the driver depends on, always set: the driver handles SIGINT itself, epochs before
#: the first validation report no objective (the schedulers ignore them), and no Ray call after
#: the driver stopped Ray starts a new one behind its back (a cell's Tune thread still winding
#: down after a second Ctrl-C; read when Ray is first imported)
REQUIRED_TUNE_ENVIRONMENT = {
    "TUNE_DISABLE_SIGINT_HANDLER": "1",
    "TUNE_DISABLE_STRICT_METRIC_CHECKING": "1",
    "RAY_ENABLE_AUTO_CONNECT": "0",
}


class RaySession:
    """Starts Ray on first use and stops what it started."""

    def __init__(self, address: str | None, guard: InterruptGuard, progress: ProgressView) -> None:
        self.address = address or os.environ.get("RAY_ADDRESS") or None
        self.guard = guard
        self.progress = progress
        self._started = False
        self._ready = False

    def ensure(self) -> None:
        if self._ready:
            return
        for key, value in QUIET_RAY_ENVIRONMENT.items():
            if key != "RAY_AUTH_MODE" or not self.address:  # a cluster's auth is its own
                os.environ.setdefault(key, value)
        os.environ.update(REQUIRED_TUNE_ENVIRONMENT)
        import optuna
        import ray

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        if not ray.is_initialized():
            self._started = True  # from here on, shutdown() has something to stop
            try:
                self._init(ray)
            except SystemExit:
                # ray.init turns SIGTERM into SystemExit while it runs (its own handler)
                self.guard.reinstall()
                self.guard.interrupted = True
                raise StopNow from None
        logging.getLogger("ray").setLevel(logging.ERROR)
        self.guard.reinstall()
        self._ready = True

    def _init(self, ray: Any) -> None:
        if self.address:
            self.progress.message(f"ray: joining the cluster at {self.address}")
            ray.init(address=self.address, log_to_driver=False, logging_level=logging.ERROR)
        else:
            self.progress.message(f"ray: starting a local Ray ({os.cpu_count()} CPUs)")
            ray.init(
                num_cpus=os.cpu_count(),
                include_dashboard=False,
                log_to_driver=False,
                logging_level=logging.ERROR,
                _temp_dir=short_temp_dir(),
            )

    def resources(self) -> dict[str, float]:
        import ray

        return {k: float(v) for k, v in ray.cluster_resources().items()}

    def shutdown(self) -> None:
        if self._started:
            import ray

            ray.shutdown()
            self._started = False
            self.guard.reinstall()  # shutting down hands SIGTERM back to Python's default
        self._ready = False


def short_temp_dir() -> str:
    """Ray puts Unix sockets under its temp dir; their paths must stay under ~107 characters.
    ``$TMPDIR/ray`` when that is short (so a harness can give each driver its own), else
    ``/tmp/ray``."""
    candidate = Path(tempfile.gettempdir()) / "ray"
    return str(candidate) if len(str(candidate)) < 40 else "/tmp/ray"
