"""``datetime``: a date or timestamp. Parsed, then encoded as the elapsed time (standardised fractional
years) and the calendar parts as points on a circle (month, day of week, day of month, day of year, and
hour when the training values carry a time of day), so December sits next to January. Missing or
unparseable values take the training median and a was-missing column. Never dropped as an identifier."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd

from palaestra.data.features.base import FitOptions, InputFeature, histogram, is_missing
from palaestra.errors import DataError

DAYS_PER_YEAR = 365.2425
# (part, period): each becomes sin and cos of 2*pi*value/period
CYCLES = (("month", 12), ("day_of_week", 7), ("day", 31), ("day_of_year", 366))
TIME_CYCLES = (("hour", 24),)


def parse_times(series: pd.Series) -> pd.Series:
    """Timestamps (UTC-naive) with NaT where a value is missing or not a time."""
    if pd.api.types.is_datetime64_any_dtype(series):
        out = series
    else:
        text = series.where(~is_missing(series))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "could not infer format": the fallback below parses per value
            # utc=True: values with different offsets (or none) land on one clock instead of an object column.
            try:
                out = pd.to_datetime(text, errors="coerce", format="ISO8601", utc=True)
            except (ValueError, TypeError):
                out = pd.to_datetime(text, errors="coerce", format="mixed", utc=True)
            if out.isna().sum() > (~is_missing(series)).sum() * 0.05 + text.isna().sum():
                out = pd.to_datetime(text, errors="coerce", format="mixed", utc=True)
    if getattr(out.dt, "tz", None) is not None:
        out = out.dt.tz_convert("UTC").dt.tz_localize(None)
    return out


def looks_like_times(series: pd.Series) -> bool:
    """A datetime column, or text whose present values (nearly) all parse as dates with a date-like shape."""
    if pd.api.types.is_datetime64_any_dtype(series):
        return True
    if pd.api.types.is_numeric_dtype(series) or pd.api.types.is_bool_dtype(series):
        return False
    present = series[~is_missing(series)].astype(str).str.strip()
    if present.empty:
        return False
    sample = present.iloc[: 200]
    # Dates have digits and a separator; this keeps words like "May" or "Sun" categorical.
    shaped = sample.str.contains(r"\d", regex=True) & sample.str.contains(r"[-/:.T ]", regex=True)
    if shaped.mean() < 0.95 or sample.str.len().max() > 40:
        return False
    parsed = parse_times(sample)
    return bool(parsed.notna().mean() >= 0.95)


def _years(t: pd.Series) -> np.ndarray:
    """Fractional years since 1970 (NaN where missing)."""
    ns = t.to_numpy(dtype="datetime64[ns]").astype("int64").astype(np.float64)
    ns[t.isna().to_numpy()] = np.nan
    return ns / (1e9 * 86400 * DAYS_PER_YEAR)


class DatetimeFeature(InputFeature):
    type = "datetime"

    def __init__(self, name: str, mean: float, std: float, fill: float, indicator: bool, time_of_day: bool,
                 bins: list[float] | None = None, freqs: list[float] | None = None):
        super().__init__(name)
        self.mean, self.std, self.fill, self.indicator, self.time_of_day = mean, std, fill, indicator, time_of_day
        self.bins, self.freqs = bins or [], freqs or []

    @classmethod
    def fit(cls, name: str, series: pd.Series, options: FitOptions) -> DatetimeFeature:
        t = parse_times(series)
        years = _years(t)
        present = years[np.isfinite(years)]
        if len(present) == 0:
            raise DataError(f"column '{name}' has no parseable dates in the training split")
        parsed = t.dropna()
        time_of_day = bool(((parsed.dt.hour != 0) | (parsed.dt.minute != 0)).any())
        std = float(present.std())
        bins, freqs = histogram(present)
        return cls(name, mean=float(present.mean()), std=std if std > 1e-9 else 1.0, fill=float(np.median(present)),
                   indicator=bool(np.isnan(years).any()), time_of_day=time_of_day, bins=bins, freqs=freqs)

    def transform(self, series: pd.Series) -> np.ndarray:
        t = parse_times(series)
        years = _years(t)
        missing = np.isnan(years)
        fill_time = pd.Timestamp(int(self.fill * 1e9 * 86400 * DAYS_PER_YEAR), tz=t.dt.tz)
        t = t.fillna(fill_time.as_unit(t.dt.unit))
        cols = [(np.where(missing, self.fill, years) - self.mean) / self.std]
        for part, period in CYCLES + (TIME_CYCLES if self.time_of_day else ()):
            value = getattr(t.dt, part).to_numpy(np.float64)
            angle = 2 * np.pi * value / period
            cols += [np.sin(angle), np.cos(angle)]
        if self.indicator:
            cols.append(missing.astype(np.float64))
        return np.stack(cols, axis=1)

    def columns(self) -> list[str]:
        parts = [p for p, _ in CYCLES + (TIME_CYCLES if self.time_of_day else ())]
        names = [f"{self.name}.years"] + [f"{self.name}.{p}_{f}" for p in parts for f in ("sin", "cos")]
        return names + ([f"{self.name}__missing"] if self.indicator else [])

    def describe(self) -> str:
        return "datetime (elapsed years and calendar cycles" + (", hour" if self.time_of_day else "") + ")"

    def state(self) -> dict[str, Any]:
        return {"mean": self.mean, "std": self.std, "fill": self.fill, "indicator": self.indicator,
                "time_of_day": self.time_of_day, "bins": self.bins, "freqs": self.freqs}
