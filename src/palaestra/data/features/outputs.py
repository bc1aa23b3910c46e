"""Output features (targets): ``category`` (classification) and ``number`` (regression).

A category target is encoded as the index of its label in the sorted training labels and decoded by a
softmax over its columns of the model output. A number target is standardised with the training mean and
standard deviation, and decoded back into its own units.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from palaestra.data.features.base import OutputFeature, label_codes, numeric_view, sorted_labels
from palaestra.data.scaling import finite_stats, standardized_target
from palaestra.errors import DataError


def infer_task(y: pd.Series | np.ndarray) -> str:
    """``classification`` for labels, booleans and a few distinct whole numbers; ``regression`` otherwise."""
    s = pd.Series(np.asarray(y)) if not isinstance(y, pd.Series) else y
    s = s.dropna()
    if s.dtype == bool or not pd.api.types.is_numeric_dtype(s):
        return "classification"
    values = s.to_numpy(dtype=float)
    integral = np.all(np.isfinite(values)) and np.all(values == np.round(values))
    if integral and s.nunique() <= 20:
        return "classification"
    return "regression"


def softmax(x: np.ndarray) -> np.ndarray:
    z = x - x.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


class CategoryOutput(OutputFeature):
    type = "category"
    task = "classification"

    def __init__(self, name: str, classes: list[Any], temperature: float = 1.0, threshold: float | None = None,
                 positive: int | None = None):
        # Calibration fitted after training (palaestra.evaluation.calibration): the logits are divided by
        # `temperature` before the softmax; a binary target calls a row `classes[positive]` when that class's
        # probability is at least `threshold` (None: the most probable class).
        super().__init__(name)
        self.classes = classes
        self.temperature = float(temperature)
        self.threshold, self.positive = threshold, positive
        if not (math.isfinite(self.temperature) and self.temperature > 0):
            raise DataError(f"target '{name}': temperature must be a positive number, got {temperature!r}")
        if threshold is not None and (len(classes) != 2 or positive not in (0, 1) or not 0 <= threshold <= 1):
            raise DataError(f"target '{name}': a decision threshold needs two classes, a positive class (0 or 1) and "
                            f"a value in [0, 1]")

    @classmethod
    def fit(cls, name: str, values: Any) -> CategoryOutput:
        s = pd.Series(np.asarray(values, dtype=object) if not isinstance(values, pd.Series) else values)
        classes = sorted_labels(s.dropna())
        if len(classes) < 2:
            shown = repr(classes[0]) if classes else "none"
            raise DataError(f"target '{name}' has only one class ({shown}) in the training split: nothing to learn")
        return cls(name, classes)

    @property
    def width(self) -> int:
        return len(self.classes)

    def encode(self, values: Any) -> np.ndarray:
        codes = label_codes(values, self.classes)
        if (codes < 0).any():
            unknown = sorted({str(v) for v, c in zip(np.asarray(values, dtype=object), codes, strict=True) if c < 0})[:5]
            raise DataError(f"target '{self.name}' has labels not seen in training: {', '.join(unknown)}")
        return codes

    def labels(self, codes: np.ndarray) -> np.ndarray:
        return np.asarray(self.classes, dtype=object)[codes]

    def decode(self, outputs: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        probs = softmax(outputs.astype(np.float64) / self.temperature)
        if not np.isfinite(probs).all():
            raise DataError(f"the model's outputs for '{self.name}' are not finite (NaN or infinite): the inputs may "
                            f"hold values far outside the training range")
        if self.threshold is None:
            return self.labels(probs.argmax(1)), probs
        positive = probs[:, self.positive] >= self.threshold
        return self.labels(np.where(positive, self.positive, 1 - self.positive)), probs

    def state(self) -> dict[str, Any]:
        state: dict[str, Any] = {"classes": self.classes}
        if self.temperature != 1.0:
            state["temperature"] = self.temperature
        if self.threshold is not None:
            state.update(threshold=self.threshold, positive=self.positive)
        return state


class NumberOutput(OutputFeature):
    type = "number"
    task = "regression"

    def __init__(self, name: str, mean: float = 0.0, std: float = 1.0):
        super().__init__(name)
        self.mean, self.std = mean, std

    @classmethod
    def fit(cls, name: str, values: Any) -> NumberOutput:
        mean, std = finite_stats(f"target '{name}'", cls.numbers(name, values))
        return cls(name, mean, std if std > 0 else 1.0)

    @staticmethod
    def numbers(name: str, values: Any) -> np.ndarray:
        s = values if isinstance(values, pd.Series) else pd.Series(np.asarray(values))
        parsed, bad = numeric_view(s)
        if bad.any() or parsed.isna().any():
            raise DataError(f"target '{name}' must be numeric with no missing (NaN) values for regression")
        v = parsed.to_numpy(np.float64)
        if not np.isfinite(v).all():
            raise DataError(f"target '{name}' holds an infinite value: regression needs finite targets")
        return v

    @property
    def width(self) -> int:
        return 1

    def encode(self, values: Any) -> np.ndarray:
        return standardized_target(f"target '{self.name}'", self.numbers(self.name, values), self.mean, self.std)

    def decode(self, outputs: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        values = outputs[:, 0].astype(np.float64) * self.std + self.mean
        if not np.isfinite(values).all():
            raise DataError(f"the model's predictions for '{self.name}' are not finite (NaN or infinite): the inputs "
                            f"may hold values far outside the training range")
        return values, None

    def state(self) -> dict[str, Any]:
        return {"mean": self.mean, "std": self.std}
