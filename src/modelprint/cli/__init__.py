"""The ``modelprint`` command line: a thin layer over the Python API, one module per command group.

Exit codes: 0 success (``verify``: match), 1 ``verify``: no-match, 2 bad input (one line on
stderr), 3 ``verify``: inconclusive, 70 internal error (a bug: the traceback is printed).
"""

from __future__ import annotations

import importlib

from .common import VERDICT_EXIT_CODES, app
from .main import INTERNAL_ERROR, main

# Importing a command module registers its commands, in the order help lists them.
for _module in ("overview", "models", "fingerprint", "calibration", "verification", "research", "zoo"):
    importlib.import_module(f"{__name__}.{_module}")

__all__ = ["INTERNAL_ERROR", "VERDICT_EXIT_CODES", "app", "main"]
