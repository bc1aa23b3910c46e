"""``numeric``: a measurement. Missing values are imputed with the training median (plus a was-missing
column when training saw any), then standardised with the training mean and standard deviation."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from palaestra.data.features.base import FitOptions, InputFeature, histogram, numeric_view
from palaestra.errors import DataError

FLOAT32_MAX = float(np.finfo(np.float32).max)


class NumericFeature(InputFeature):
    type = "numeric"

    def __init__(self, name: str, fill: float = 0.0, mean: float = 0.0, std: float = 1.0, indicator: bool = False,
                 bins: list[float] | None = None, freqs: list[float] | None = None):
        super().__init__(name)
        self.fill, self.mean, self.std, self.indicator = fill, mean, std, indicator
        self.bins, self.freqs = bins or [], freqs or []

    @classmethod
    def values(cls, name: str, series: pd.Series) -> pd.Series:
        """The column as floats (NaN where missing); text that is not a number is an error naming the row."""
        values, bad = numeric_view(series)
        if bad.any():
            first = bad.idxmax()
            raise DataError(f"column '{name}' must be numeric; row {first} holds {series[first]!r}")
        return values

    @classmethod
    def fit(cls, name: str, series: pd.Series, options: FitOptions) -> NumericFeature:
        values = cls.values(name, series)
        v = values.to_numpy(np.float64)
        finite = v[np.isfinite(v)]
        if len(finite) == 0:
            raise DataError(f"column '{name}' has no values in the training split")
        if np.isinf(v).any() or np.abs(finite).max() > FLOAT32_MAX:
            raise DataError(f"column '{name}' holds a value too large to represent (beyond float32): "
                            f"rescale it or mark it missing")
        with np.errstate(over="ignore", invalid="ignore"):
            std = float(finite.std(ddof=0))
        if not np.isfinite(std):
            raise DataError(f"column '{name}' spans a range too large to standardise; rescale it")
        bins, freqs = histogram(finite)
        return cls(name, fill=float(np.median(finite)), mean=float(finite.mean()), std=std if std > 1e-12 else 1.0,
                   indicator=bool(np.isnan(v).any()), bins=bins, freqs=freqs)

    def transform(self, series: pd.Series) -> np.ndarray:
        v = self.values(self.name, series).to_numpy(np.float64)
        if np.isinf(v).any():
            raise DataError(f"column '{self.name}' holds an infinite value")
        was_missing = np.isnan(v)
        z = (np.where(was_missing, self.fill, v) - self.mean) / self.std
        if np.abs(z).max(initial=0.0) > FLOAT32_MAX:
            raise DataError(f"column '{self.name}' holds a value too large to represent (beyond float32 after scaling)")
        parts = [z[:, None]] + ([was_missing.astype(np.float64)[:, None]] if self.indicator else [])
        return np.concatenate(parts, axis=1)

    def columns(self) -> list[str]:
        return [self.name] + ([f"{self.name}__missing"] if self.indicator else [])

    def state(self) -> dict[str, Any]:
        return {"fill": self.fill, "mean": self.mean, "std": self.std, "indicator": self.indicator,
                "bins": self.bins, "freqs": self.freqs}
