"""Palaestra: carry a deep-learning model through its whole life from one config or one command.

>>> import palaestra
>>> run = palaestra.train({"data": {"source": "iris"}, "train": {"epochs": 20, "progress": False}})  # doctest: +SKIP
>>> run.predict(frame)                                                                              # doctest: +SKIP
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from palaestra.errors import ArtifactError, ConfigError, DataError, PalaestraError, UserError

if TYPE_CHECKING:
    from palaestra.config import Config, load_config
    from palaestra.estimators import PalaestraClassifier, PalaestraRegressor
    from palaestra.runs import Run

__version__ = "0.1.0"

# Loaded on first use, so `palaestra --help` and `import palaestra.config` do not pay for torch.
_LAZY = {"Config": "palaestra.config", "load_config": "palaestra.config", "Run": "palaestra.runs",
         "PalaestraClassifier": "palaestra.estimators", "PalaestraRegressor": "palaestra.estimators"}


def train(config: Any = None, **kwargs: Any) -> Run:
    """Train from a config (path, dict or ``Config``) and return the ``Run``. See ``palaestra.pipeline.train``."""
    from palaestra.pipeline import train as _train

    return _train(config, **kwargs)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'palaestra' has no attribute {name!r}")


__all__ = ["ArtifactError", "Config", "ConfigError", "DataError", "PalaestraClassifier", "PalaestraError",
           "PalaestraRegressor", "Run", "UserError", "load_config", "train"]
