"""Forecasting: a CSV with a time column (or row order) and a numeric target, ``task: forecast``.

Rows are put in time order and split chronologically (train, then val, then test) *before* windows are cut.
Each example is ``data.window`` consecutive rows of inputs and the target ``data.horizon`` steps after the
window's last row; a window's target always lies inside its own split (its inputs may reach back into an
earlier split, which is the past, never the future). Scaling is fitted on the training rows only. The
persistence baseline (the last observed value, ``naive_mae``) is measured on the same points.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import torch

from palaestra.config import DataConfig
from palaestra.data.scaling import finite_stats, standardized_target
from palaestra.data.spec import Decoded, FeatureSpec, PreparedData, Split
from palaestra.data.targets import resolve_targets
from palaestra.errors import DataError

TIME_NAMES = ("date", "time", "timestamp", "datetime", "ds", "t", "step", "year", "quarter", "month", "week", "day", "hour",
              "period")


def _time_order(df: pd.DataFrame, column: str) -> np.ndarray:
    col = df[column]
    key = col if pd.api.types.is_numeric_dtype(col) else pd.to_datetime(col, errors="coerce")
    if key.isna().any():
        raise DataError(f"time column '{column}' has {int(key.isna().sum())} values that are not times or numbers")
    return np.argsort(key.to_numpy(), kind="stable")


def detect_time_column(df: pd.DataFrame, target: str) -> str | None:
    """A column named like a time (date, year, ...) or holding datetimes; None: the rows are in time order."""
    for name in df.columns:
        if name == target:
            continue
        if pd.api.types.is_datetime64_any_dtype(df[name]) or str(name).strip().lower() in TIME_NAMES:
            return str(name)
    return None


class ForecastPreprocessor:
    """Raw rows -> windows ``(x (N, window, F) float32, lengths (N,))``; feature 0 is the target's history."""

    kind = "forecast"
    task = "forecast"
    classes = None

    def __init__(self, target: str, features: list[str], mean: list[float], std: list[float], window: int, horizon: int,
                 time_column: str | None = None, season: int | None = None, scale: float = 1.0):
        self.target, self.features, self.mean, self.std = target, features, mean, std
        self.window, self.horizon, self.time_column = window, horizon, time_column
        # season: steps per season (for the seasonal-naive baseline); scale: the in-sample MAE of the one-step
        # persistence forecast on the training rows, in target units (the denominator of MASE)
        self.season, self.scale = season, scale

    @property
    def target_mean(self) -> float:
        return self.mean[0]

    @property
    def target_std(self) -> float:
        return self.std[0]

    def scaled(self, df: pd.DataFrame) -> np.ndarray:
        """Rows in time order, features scaled: ``(rows, F)``."""
        missing = [c for c in self.features if c not in df.columns]
        if missing:
            raise DataError(f"missing column{'s' if len(missing) > 1 else ''}: {', '.join(missing)}")
        if self.time_column and self.time_column in df.columns:
            df = df.iloc[_time_order(df, self.time_column)]
        values = df[self.features].apply(pd.to_numeric, errors="coerce")
        # Gaps are filled from the past first (forward fill), so a fill never uses a later value.
        values = values.ffill().bfill()
        if values.isna().any().any():
            raise DataError(f"column '{values.columns[values.isna().any()][0]}' has no numeric values")
        return ((values.to_numpy(np.float64) - np.asarray(self.mean)) / np.asarray(self.std)).astype(np.float32)

    def windows(self, z: np.ndarray, ends: np.ndarray) -> np.ndarray:
        """``(len(ends), window, F)``: the ``window`` rows up to and including each end row."""
        view = np.lib.stride_tricks.sliding_window_view(z, self.window, axis=0)  # (rows - window + 1, F, window)
        return np.ascontiguousarray(view[ends - self.window + 1].transpose(0, 2, 1))

    def inputs(self, df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """One window per position: a forecast for ``horizon`` steps after each complete window (the last one
        forecasts beyond the data)."""
        if not isinstance(df, pd.DataFrame):
            raise DataError("a forecasting model takes the series as rows (a CSV or a DataFrame)")
        z = self.scaled(df)
        if len(z) < self.window:
            raise DataError(f"the series has {len(z)} rows; the model needs at least data.window={self.window}")
        x = self.windows(z, np.arange(self.window - 1, len(z)))
        return x, np.full(len(x), self.window, np.int64)

    def encode_target(self, y: Any) -> np.ndarray:
        return standardized_target(f"target '{self.target}'", np.asarray(y, np.float64), self.target_mean, self.target_std)

    def decode_target(self, values: np.ndarray) -> np.ndarray:
        return values * self.target_std + self.target_mean

    def seasonal_lag(self) -> int | None:
        """Steps back from a window's last row to the same point of the season as the target, if in the window."""
        if not self.season:
            return None
        back = self.season * -(-self.horizon // self.season) - self.horizon  # t + h - m * ceil(h / m), from t
        return back if back < self.window else None

    def baseline_metrics(self, split: Any) -> dict[str, float]:
        """Baselines on the same points, original units: ``naive_mae`` (persistence: the last observed value),
        ``seasonal_naive_mae`` (the value one season before the target), and ``mase`` scores (MAE divided by
        the training series' one-step persistence MAE) for each."""
        if len(split) == 0:
            return {}
        x, y = split.inputs[0][:, :, 0].double(), split.target.double()
        out = {"naive_mae": float((x[:, -1] - y).abs().mean()) * self.target_std}
        lag = self.seasonal_lag()
        if lag is not None:
            out["seasonal_naive_mae"] = float((x[:, -1 - lag] - y).abs().mean()) * self.target_std
            out["season"] = self.season
        for name in ("naive", "seasonal_naive"):
            if f"{name}_mae" in out:
                out[f"{name}_mase"] = out[f"{name}_mae"] / self.scale
        return out

    def model_scores(self, metrics: dict[str, Any]) -> dict[str, float]:
        """The model's ``mase`` from its ``mae``."""
        return {"mase": metrics["mae"] / self.scale} if "mae" in metrics else {}

    def labelled(self, df: Any) -> tuple[tuple[np.ndarray, np.ndarray], np.ndarray]:
        """Every window of a labelled series with the value ``horizon`` steps after it (for ``evaluate``)."""
        if not isinstance(df, pd.DataFrame):
            raise DataError("evaluate a forecasting model on a series given as rows (a CSV)")
        z = self.scaled(df)
        targets = np.arange(self.window + self.horizon - 1, len(z))
        if len(targets) == 0:
            raise DataError(f"the series has {len(z)} rows: too few for window {self.window} plus horizon {self.horizon}")
        x = self.windows(z, targets - self.horizon)
        return (x, np.full(len(x), self.window, np.int64)), z[targets, 0].copy()

    def decode(self, outputs: np.ndarray) -> list[Decoded]:
        return [Decoded(self.target, self.decode_target(np.asarray(outputs)[:, 0].astype(np.float64)))]

    def spec(self, embedding_dim: int | None = None) -> FeatureSpec:
        return FeatureSpec(kind="sequence", task="forecast", input_names=["x", "lengths"], n_outputs=1,
                           input_shape=[self.window, len(self.features)], feature_names=list(self.features),
                           extra={"window": self.window, "horizon": self.horizon, "target": self.target,
                                  "season": self.season})

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "target": self.target, "features": self.features, "mean": self.mean, "std": self.std,
                "window": self.window, "horizon": self.horizon, "time_column": self.time_column,
                "season": self.season, "scale": self.scale}


    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ForecastPreprocessor:
        return cls(**{k: v for k, v in d.items() if k != "kind"})


def infer_season(series: np.ndarray, max_lag: int) -> int | None:
    """The lag (2..max_lag) of the highest autocorrelation peak of the detrended series, if it is a clear one
    (autocorrelation above 0.3 and above its neighbours); None for a series without a season."""
    y = np.asarray(series, np.float64)
    if len(y) < 8:
        return None
    t = np.arange(len(y))
    y = y - np.polyval(np.polyfit(t, y, 1), t)  # a trend would make every lag look alike
    y = y - y.mean()
    denom = float((y * y).sum())
    if denom <= 0:
        return None
    top = min(max_lag, len(y) // 2)
    acf = np.array([float((y[k:] * y[:-k]).sum()) / denom for k in range(1, top + 1)])
    best, best_value = None, 0.3
    for k in range(2, top):
        if acf[k - 1] > best_value and acf[k - 1] >= acf[k - 2] and acf[k - 1] >= acf[k]:
            best, best_value = k, acf[k - 1]
    return best


def prepare(cfg: DataConfig, raw: Any, seed: int, notices: list[str]) -> PreparedData:
    """Order in time, split chronologically, fit scaling on train, then cut windows inside each split."""
    if not isinstance(raw, pd.DataFrame):
        raise DataError("forecasting needs a table: a CSV or Parquet file with a time column and a numeric target")
    targets = resolve_targets(cfg, raw)
    if len(targets) != 1:
        raise DataError("forecasting predicts one target column; name one with --target")
    target = targets[0]
    time_col = cfg.time_column
    if time_col is not None and time_col not in raw.columns:
        raise DataError(f"data.time_column '{time_col}' not found; columns: {', '.join(map(str, raw.columns[:20]))}")
    time_col = time_col or detect_time_column(raw, target)
    if time_col is None:
        notices.append("no time column found (set data.time_column): the rows are taken to be in time order")
    else:
        raw = raw.iloc[_time_order(raw, time_col)].reset_index(drop=True)
    y = pd.to_numeric(raw[target], errors="coerce")
    if y.notna().sum() < len(raw) * 0.5:
        raise DataError(f"forecast target '{target}' must be numeric")
    features = [target]
    for name in raw.columns:
        if name in (target, time_col) or name in cfg.drop:
            continue
        if pd.api.types.is_numeric_dtype(raw[name]):
            features.append(str(name))
        else:
            notices.append(f"column '{name}' left out: forecasting uses numeric columns only")
    if y.isna().any():
        notices.append(f"{int(y.isna().sum())} missing '{target}' values filled with the previous value")
    w, h = cfg.window, cfg.horizon
    n = len(raw)
    n_tr = int(round(n * cfg.split.train))
    n_va = int(round(n * cfg.split.val))
    if n_tr < w + h + 1:
        raise DataError(f"the training part has {n_tr} rows: too few for data.window={w} plus data.horizon={h}")
    train_values = raw[features].iloc[:n_tr].apply(pd.to_numeric, errors="coerce")
    mean, std = finite_stats(f"the series ({', '.join(map(str, features))[:200]})", train_values)
    mean, std = mean.fillna(0.0).to_numpy(np.float64), std.fillna(1.0).to_numpy(np.float64)
    std = np.where(std > 1e-12, std, 1.0)
    pre = ForecastPreprocessor(str(target), features, [float(m) for m in mean], [float(s) for s in std], w, h, None)
    z = pre.scaled(raw)  # already in time order
    history = z[:n_tr, 0].astype(np.float64) * pre.target_std  # the training series, in target units (centred)
    pre.scale = float(np.abs(np.diff(history)).mean()) or 1.0
    pre.season = cfg.season or infer_season(history, max_lag=w + 1)  # a season the window can hold
    if pre.season:
        notices.append(f"season of {pre.season} steps" + (" (data.season)" if cfg.season else
                       " inferred from the training autocorrelation (set data.season to change it)"))
    splits = []
    for start, stop in ((0, n_tr), (n_tr, n_tr + n_va), (n_tr + n_va, n)):
        targets = np.arange(max(start, w + h - 1), stop)  # target rows inside this split
        ends = targets - h  # the window's last row
        x = pre.windows(z, ends) if len(targets) else np.zeros((0, w, len(features)), np.float32)
        splits.append(Split((torch.from_numpy(x), torch.full((len(x),), w, dtype=torch.int64)),
                            torch.from_numpy(z[targets, 0].copy()), index=targets))
    pre.time_column = time_col
    return PreparedData(pre.spec(), pre, *splits, raw=raw, notices=notices)

