"""faerec-study: declarative hyper-parameter studies for FAERec.

The public surface is small on purpose: configuration (`RunConfig`, `resolve_config`),
single runs (`run_trial`) and the error type every user-facing failure raises (`FaerecError`).
"""

from faerec.config import RunConfig, resolve_config
from faerec.errors import FaerecError

__all__ = ["FaerecError", "RunConfig", "resolve_config"]
__version__ = "0.1.0"
