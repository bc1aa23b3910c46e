"""Palaestra: carry a deep-learning model through its whole life from one config or one command.

>>> import palaestra
>>> run = palaestra.train({"data": {"source": "iris"}, "train": {"epochs": 20, "progress": False}})  # doctest: +SKIP
>>> run.predict(frame)                                                                              # doctest: +SKIP
"""

from palaestra.config import Config, load_config
from palaestra.errors import ArtifactError, ConfigError, DataError, PalaestraError, UserError
from palaestra.runs import Run

__version__ = "0.1.0"


def train(config=None, **kwargs):
    """Train from a config (path, dict or ``Config``) and return the ``Run``. See ``palaestra.pipeline.train``."""
    from palaestra.pipeline import train as _train

    return _train(config, **kwargs)


def __getattr__(name):
    # The scikit-learn estimators import scikit-learn's base classes: load them on first use.
    if name in ("PalaestraClassifier", "PalaestraRegressor"):
        from palaestra import estimators

        return getattr(estimators, name)
    raise AttributeError(name)


__all__ = ["ArtifactError", "Config", "ConfigError", "DataError", "PalaestraClassifier", "PalaestraError",
           "PalaestraRegressor", "Run", "UserError", "load_config", "train"]
