"""``numeric``: a measurement. Missing values are imputed with the training median (plus a was-missing
column when training saw any), then encoded as ``data.numeric_encoding`` says:

- ``quantile`` (the default): mapped through the training quantiles to normal scores (one column; scikit-learn's
  ``QuantileTransformer(output_distribution="normal")``, the preprocessing of Gorishniy et al.'s benchmarks):
  a long tail or a spike of zeros no longer squeezes the rest of the values together;
- ``standard``: standardised with the training mean and standard deviation (one column);
- ``piecewise``: the piecewise-linear encoding of Gorishniy et al. 2022 (one column per bin between training
  quantiles, ``data.numeric_bins`` of them at most): bin t reads 0 below it, 1 above it and the position
  inside it, so a network can cut at a threshold as a tree does.

Both quantile-based encodings are sums of ramps ``clip((x - k_t) / (k_{t+1} - k_t), 0, 1)`` between knots
``k`` (the open ends of the first and last ramp unclipped in ``piecewise``), which the ONNX graph builds too.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from scipy.special import ndtri

from palaestra.data.features.base import FitOptions, InputFeature, histogram, numeric_view
from palaestra.errors import DataError

FLOAT32_MAX = float(np.finfo(np.float32).max)
ENCODINGS = ("standard", "quantile", "piecewise")
QUANTILE_BOUND = 1e-7  # normal scores of the extreme quantiles clipped here (+-5.2), as scikit-learn's


def ramps(x: np.ndarray, knots: np.ndarray, open_ends: bool) -> np.ndarray:
    """``(N,)`` -> ``(N, len(knots) - 1)``: each value's position in every interval between knots, clipped to
    [0, 1]; with ``open_ends`` the first interval is not clipped below nor the last above."""
    r = (x[:, None] - knots[:-1]) / np.diff(knots)
    lo = np.zeros(r.shape[1])
    hi = np.ones(r.shape[1])
    if open_ends:
        lo[0], hi[-1] = -np.inf, np.inf
    return np.clip(r, lo, hi)


def quantiles(values: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The knots (the distinct values among ``n`` evenly spaced quantiles of ``values``, finite and non-empty, 0
    and 1 included) and the normal score of each: the inverse normal CDF of its quantile level. A value repeated
    over several levels gets their middle, as scikit-learn's interpolation from both sides does, the smallest
    value too (where scikit-learn gives the bottom score, -5.2, to a spike of zeros)."""
    levels = np.linspace(0.0, 1.0, n)
    at = np.quantile(values, levels)
    knots = np.unique(at)
    first = np.searchsorted(at, knots, side="left")
    last = np.searchsorted(at, knots, side="right") - 1
    middle = np.clip((levels[first] + levels[last]) / 2, QUANTILE_BOUND, 1 - QUANTILE_BOUND)
    return knots, ndtri(middle)


class NumericFeature(InputFeature):
    type = "numeric"

    def __init__(self, name: str, fill: float = 0.0, mean: float = 0.0, std: float = 1.0, indicator: bool = False,
                 bins: list[float] | None = None, freqs: list[float] | None = None, encoding: str = "standard",
                 knots: list[float] | None = None, scores: list[float] | None = None):
        super().__init__(name)
        self.fill, self.mean, self.std, self.indicator = fill, mean, std, indicator
        self.bins, self.freqs = bins or [], freqs or []  # the training distribution, for drift monitoring
        # knots: the quantile encodings' training quantiles; scores: quantile's normal score at each knot
        self.encoding, self.knots, self.scores = encoding, knots or [], scores or []
        self._knots, self._scores = np.asarray(self.knots, np.float64), np.asarray(self.scores, np.float64)
        if encoding not in ENCODINGS:
            raise DataError(f"preprocess.json gives column '{name}' an unknown numeric encoding {encoding!r}")

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
        encoding, knots, scores = cls.encoding_for(finite, options)
        return cls(name, fill=float(np.median(finite)), mean=float(finite.mean()), std=std if std > 1e-12 else 1.0,
                   indicator=bool(np.isnan(v).any()), bins=bins, freqs=freqs, encoding=encoding, knots=knots,
                   scores=scores)

    @classmethod
    def encoding_for(cls, finite: np.ndarray, options: FitOptions) -> tuple[str, list[float], list[float]]:
        """The configured encoding and its fitted knots; ``standard`` for a column of a single value."""
        if options.numeric_encoding == "standard":
            return "standard", [], []
        quantile = options.numeric_encoding == "quantile"
        # quantile: as many quantiles as Gorishniy et al. use; piecewise: a knot at each end of each bin
        knots, scores = quantiles(finite, max(min(len(finite) // 30, 1000), 10) if quantile
                                  else options.numeric_bins + 1)
        if len(knots) > 1:
            return options.numeric_encoding, knots.tolist(), scores.tolist() if quantile else []
        return "standard", [], []

    def transform(self, series: pd.Series) -> np.ndarray:
        v = self.values(self.name, series).to_numpy(np.float64)
        if np.isinf(v).any():
            raise DataError(f"column '{self.name}' holds an infinite value")
        was_missing = np.isnan(v)
        filled = np.where(was_missing, self.fill, v)
        if self.encoding == "standard":
            encoded = ((filled - self.mean) / self.std)[:, None]
        elif self.encoding == "piecewise":
            encoded = ramps(filled, self._knots, open_ends=True)
        else:  # quantile: the normal scores interpolated between knots (the ONNX graph sums ramps, the same line)
            encoded = np.interp(filled, self._knots, self._scores)[:, None]
        if np.abs(encoded).max(initial=0.0) > FLOAT32_MAX:
            raise DataError(f"column '{self.name}' holds a value too large to represent (beyond float32 after scaling)")
        parts = [encoded] + ([was_missing.astype(np.float64)[:, None]] if self.indicator else [])
        return np.concatenate(parts, axis=1)

    def columns(self) -> list[str]:
        values = ([f"{self.name}__bin{t}" for t in range(len(self.knots) - 1)] if self.encoding == "piecewise"
                  else [self.name])
        return values + ([f"{self.name}__missing"] if self.indicator else [])

    def describe(self) -> str:  # the default encoding (quantile) goes without saying
        if self.encoding == "piecewise":
            return f"{self.type} (piecewise, {len(self.knots) - 1} bins)"
        return f"{self.type} (z-score)" if self.encoding == "standard" else self.type

    def state(self) -> dict[str, Any]:
        return {"fill": self.fill, "mean": self.mean, "std": self.std, "indicator": self.indicator,
                "bins": self.bins, "freqs": self.freqs, "encoding": self.encoding, "knots": self.knots,
                "scores": self.scores}
