"""The runtime: applies an execution graph to a model and data (freezing, LRs, the loop, checkpoints, outputs).

`from ftengine.runtime import run_spec, evaluate_run, predict_run, FineTuneModel, RunResult`. Imports are lazy so
that `import ftengine.runtime.cache` (or the CLI's help) does not pull in torch and transformers.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "run_spec": "ftengine.runtime.run",
    "RunResult": "ftengine.runtime.run",
    "evaluate_run": "ftengine.runtime.finished_run",
    "predict_run": "ftengine.runtime.finished_run",
    "FineTuneModel": "ftengine.runtime.model",
}

__all__ = ["FineTuneModel", "RunResult", "evaluate_run", "predict_run", "run_spec"]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'ftengine.runtime' has no attribute '{name}'")
