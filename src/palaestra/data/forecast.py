"""Forecasting: a table with a time column (or row order) and a numeric target, ``task: forecast``.

Rows are put in time order (within each series, for a table of several named by ``data.series_id``) and each
series is split chronologically (train, then val, then test) *before* windows are cut. An example is the
``data.window`` rows up to a forecast *origin* and the target's next ``data.horizon`` values after it; those
values always lie inside the example's own split (its inputs may reach back into an earlier split, which is the
past, never the future). With ``data.backtest: K`` the test span is the last ``K * horizon`` steps of each
series, forecast from K origins ``horizon`` steps apart (a rolling-origin backtest). Scaling is fitted per
series on its training rows only.

The baselines are measured on the same points, in the target's units: persistence (the last observed value,
``naive_mae``), seasonal naive (the value one season before, ``seasonal_naive_mae``) and exponential smoothing
(statsmodels' state-space ETS fitted on the rows before the split, its state then updated through each
origin, ``ets_mae``). ``mase``: each MAE divided by the series' in-sample one-step persistence MAE, averaged
over series.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd
import torch

from palaestra.config import DataConfig
from palaestra.data.forecast_baselines import calendar_season, ets_forecasts, infer_season, series_runs
from palaestra.data.scaling import finite_stats
from palaestra.data.spec import Decoded, FeatureSpec, PreparedData, Split
from palaestra.data.targets import resolve_targets
from palaestra.errors import DataError

TIME_NAMES = ("date", "time", "timestamp", "datetime", "ds", "t", "step", "year", "quarter", "month", "week", "day", "hour",
              "period")
ONE = ""  # the key of the only series of a table without data.series_id


def _parse_times(col: pd.Series) -> pd.Series:
    """Dates and times as pandas reads them, and the quarters and ISO weeks tsibble prints ("1981 Q1",
    "1991 W06") as the first day of each."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "could not infer format": each value is then parsed on its own
        key = pd.to_datetime(col, errors="coerce")
    if not key.isna().any():
        return key
    text = col.astype(str).str.strip()
    quarter = text.str.extract(r"^(\d{4})\s*-?\s*Q([1-4])$")
    if quarter.notna().all().all():
        months = (quarter[1].astype(int) - 1) * 3 + 1
        return pd.to_datetime(quarter[0] + "-" + months.astype(str) + "-01", format="%Y-%m-%d")
    week = text.str.extract(r"^(\d{4})\s*-?\s*W(\d{1,2})$")
    if week.notna().all().all():
        return pd.to_datetime(week[0] + "-W" + week[1].str.zfill(2) + "-1", format="%G-W%V-%u", errors="coerce")
    return key


def time_key(df: pd.DataFrame, column: str) -> pd.Series:
    col = df[column]
    key = col if pd.api.types.is_numeric_dtype(col) else _parse_times(col)
    if key.isna().any():
        raise DataError(f"time column '{column}' has {int(key.isna().sum())} values that are not times or numbers")
    return key


def _time_order(df: pd.DataFrame, column: str | None, series: str | None = None) -> np.ndarray:
    """Row positions in (series, time) order; stable, so rows without a time column keep their order."""
    time = None
    if column is not None:
        key = time_key(df, column)
        time = key.to_numpy(np.int64) if pd.api.types.is_datetime64_any_dtype(key) else key.to_numpy(np.float64)
    if series is None:
        return np.arange(len(df)) if time is None else np.argsort(time, kind="stable")
    names = df[series].astype(str).to_numpy()
    return np.argsort(names, kind="stable") if time is None else np.lexsort((time, names))


def detect_time_column(df: pd.DataFrame, target: str) -> str | None:
    """A column named like a time (date, year, ...) or holding datetimes; None: the rows are in time order."""
    for name in df.columns:
        if name == target:
            continue
        if pd.api.types.is_datetime64_any_dtype(df[name]) or str(name).strip().lower() in TIME_NAMES:
            return str(name)
    return None


def _step(times: pd.Series) -> Any:
    """The series' time step: a pandas offset for datetimes (inferred frequency, else the median gap), else the
    median difference."""
    if pd.api.types.is_datetime64_any_dtype(times):
        if len(times) >= 3:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # pandas 3 announces an offset instead of a string: both work here
                freq = pd.infer_freq(pd.DatetimeIndex(times))
            if freq:
                return pd.tseries.frequencies.to_offset(freq)
        return pd.Series(times).diff().median() if len(times) > 1 else pd.Timedelta(days=1)
    diffs = np.diff(np.asarray(times, np.float64))
    return float(np.median(diffs)) if len(diffs) else 1.0


class ForecastPreprocessor:
    """Raw rows -> windows ``(x (N, T, F) float32, lengths (N,))``; feature 0 is the target's history.

    ``T`` is ``window``, plus ``horizon`` when there are known covariates: those steps hold the covariates' known
    values, and every other feature repeats its value at the origin (the model reads no later value of it).
    """

    kind = "forecast"
    task = "forecast"
    classes = None

    def __init__(self, target: str, features: list[str], window: int, horizon: int, time_column: str | None = None,
                 season: int | None = None, series_id: str | None = None,
                 stats: dict[str, dict[str, Any]] | None = None, known: list[str] | None = None,
                 mean: list[float] | None = None, std: list[float] | None = None, scale: float = 1.0):
        self.target, self.features = target, features
        self.window, self.horizon, self.time_column, self.series_id = window, horizon, time_column, series_id
        self.season = season  # steps per season (the seasonal-naive baseline and ETS)
        self.known = list(known or [])
        # per series: the training rows' mean and spread of every feature, and ``scale``: the in-sample MAE of the
        # one-step persistence forecast in target units (the denominator of MASE). A run saved before series
        # existed has one ``mean``/``std``/``scale``.
        self.stats = stats if stats is not None else {ONE: {"mean": mean, "std": std, "scale": scale}}

    # -- what a run reads ---------------------------------------------------------------------------------------

    @property
    def several(self) -> bool:
        return self.series_id is not None

    @property
    def target_mean(self) -> float:
        """The target's training mean for one series; 0 for several (each has its own: metrics come from
        ``split_metrics``)."""
        return 0.0 if self.several else float(self.stats[ONE]["mean"][0])

    @property
    def target_std(self) -> float:
        return 1.0 if self.several else float(self.stats[ONE]["std"][0])

    @property
    def feature_columns(self) -> list[str]:
        """The columns a request's rows carry: the time, the series, the target and the covariates."""
        return [c for c in (self.time_column, self.series_id) if c] + list(self.features)

    @property
    def steps(self) -> int:
        return self.window + (self.horizon if self.known else 0)

    # -- rows -> arrays ----------------------------------------------------------------------------------------

    def ordered(self, df: Any) -> pd.DataFrame:
        """The rows in (series, time) order, after checking the columns the model reads."""
        if not isinstance(df, pd.DataFrame):
            raise DataError("a forecasting model takes the series as rows (a CSV or a DataFrame)")
        need = self.features + ([self.series_id] if self.series_id else [])
        missing = [c for c in need if c not in df.columns]
        if missing:
            raise DataError(f"missing column{'s' if len(missing) > 1 else ''}: {', '.join(map(str, missing))}")
        time = self.time_column if self.time_column in df.columns else None
        return df.iloc[_time_order(df, time, self.series_id)].reset_index(drop=True)

    def keys(self, frame: pd.DataFrame) -> np.ndarray:
        return frame[self.series_id].astype(str).to_numpy() if self.series_id else np.full(len(frame), ONE, object)

    def values(self, frame: pd.DataFrame) -> np.ndarray:
        """The features in their units, gaps filled from the series' past (forward fill; a leading gap from its
        first value): ``(rows, F)`` float64."""
        values = frame[self.features].apply(pd.to_numeric, errors="coerce")
        if self.series_id:
            keys = self.keys(frame)
            values = values.groupby(keys, sort=False).transform(lambda s: s.ffill().bfill())
        else:
            values = values.ffill().bfill()
        if values.isna().any().any():
            raise DataError(f"column '{values.columns[values.isna().any()][0]}' has no numeric values")
        return values.to_numpy(np.float64)

    def series_stats(self, key: str, values: np.ndarray | None) -> dict[str, Any]:
        """A known series' training statistics; a series the model never saw is scaled by its own rows."""
        if key in self.stats:
            return self.stats[key]
        mean, std = values.mean(axis=0), values.std(axis=0)
        return {"mean": mean.tolist(), "std": np.where(std > 1e-12, std, 1.0).tolist(),
                "scale": float(np.abs(np.diff(values[:, 0])).mean()) if len(values) > 1 else 1.0}

    def scaled(self, frame: pd.DataFrame, values: np.ndarray | None = None) -> np.ndarray:
        """An ordered frame's features scaled per series: ``(rows, F)`` float32."""
        values = self.values(frame) if values is None else values
        z = np.empty_like(values)
        for key, a, b in series_runs(self.keys(frame)):
            s = self.series_stats(key, values[a:b])
            z[a:b] = (values[a:b] - np.asarray(s["mean"])) / np.asarray(s["std"])
        return z.astype(np.float32)

    def windows(self, z: np.ndarray, origins: np.ndarray) -> np.ndarray:
        """``(len(origins), steps, F)``: the ``window`` rows up to each origin and, with known covariates, the
        horizon's rows (known covariates as they are, the rest held at the origin's value)."""
        view = np.lib.stride_tricks.sliding_window_view(z, self.window, axis=0)  # (rows - window + 1, F, window)
        past = view[origins - self.window + 1].transpose(0, 2, 1)
        if not self.known:
            return np.ascontiguousarray(past)
        future = np.repeat(z[origins][:, None, :], self.horizon, axis=1)
        cols = [self.features.index(c) for c in self.known]
        ahead = np.minimum(origins[:, None] + np.arange(1, self.horizon + 1)[None, :], len(z) - 1)
        future[:, :, cols] = z[ahead][:, :, cols]
        return np.ascontiguousarray(np.concatenate([past, future], axis=1))

    def _observed_end(self, frame: pd.DataFrame, a: int, b: int) -> int:
        """One past the series' last row with a target value (later rows only carry known covariates)."""
        seen = np.flatnonzero(pd.to_numeric(frame[self.target].iloc[a:b], errors="coerce").notna().to_numpy())
        return a + int(seen[-1]) + 1 if len(seen) else a

    def origins(self, frame: pd.DataFrame, labelled: bool = False) -> np.ndarray:
        """Every origin a forecast can be made from: each row of a series with a complete window behind it and a
        target value, whose horizon's known covariates (if any) are in the table; the last one per series
        forecasts beyond the data. ``labelled``: only origins whose whole horizon is observed."""
        out = []
        for _, a, b in series_runs(self.keys(frame)):
            stop = self._observed_end(frame, a, b)
            if labelled:
                last = stop - 1 - self.horizon
            else:
                last = min(stop - 1, b - 1 - self.horizon) if self.known else stop - 1
            out.append(np.arange(a + self.window - 1, last + 1))
        return np.concatenate(out) if out else np.zeros(0, np.int64)

    def inputs(self, df: Any) -> tuple[np.ndarray, np.ndarray]:
        """One window per origin (``origins``)."""
        frame = self.ordered(df)
        ends = self.origins(frame)
        if len(ends) == 0:
            raise DataError(f"no series has {self.window} rows (data.window)"
                            + (f" plus {self.horizon} rows of known covariates" if self.known else ""))
        x = self.windows(self.scaled(frame), ends)
        return x, np.full(len(x), self.steps, np.int64)

    def labelled_windows(self, frame: pd.DataFrame, z: np.ndarray | None = None) -> tuple[tuple, np.ndarray, np.ndarray]:
        """Every window of an ordered, labelled frame whose whole horizon is observed: inputs, the scaled target
        ``(N, H)`` (``(N,)`` for one step) and the row of each window's first target."""
        z = self.scaled(frame) if z is None else z
        ends = self.origins(frame, labelled=True)
        if len(ends) == 0:
            raise DataError(f"too few rows: every series needs data.window={self.window} plus data.horizon="
                            f"{self.horizon} rows")
        x = self.windows(z, ends)
        return (x, np.full(len(x), self.steps, np.int64)), self.targets(z, ends), ends + 1

    def targets(self, z: np.ndarray, origins: np.ndarray) -> np.ndarray:
        y = z[origins[:, None] + np.arange(1, self.horizon + 1)[None, :], 0]
        return np.ascontiguousarray(y[:, 0] if self.horizon == 1 else y)

    def labelled(self, df: Any) -> tuple[tuple[np.ndarray, np.ndarray], np.ndarray]:
        """Every window of a labelled series with its next ``horizon`` values (for ``evaluate``)."""
        inputs, target, _ = self.labelled_windows(self.ordered(df))
        return inputs, target

    # -- outputs -> answers ------------------------------------------------------------------------------------

    def window_scale(self, frame: pd.DataFrame, origins: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The target's mean and spread of each origin's series: ``(N,), (N,)``."""
        keys = self.keys(frame)
        unseen = any(k not in self.stats for k in np.unique(keys))  # only those are scaled by their own rows
        values = self.values(frame) if unseen else None
        mean, std = np.zeros(len(frame)), np.ones(len(frame))
        for key, a, b in series_runs(keys):
            s = self.series_stats(key, values[a:b] if values is not None else None)
            mean[a:b], std[a:b] = s["mean"][0], s["std"][0]
        return mean[origins], std[origins]

    def unscale(self, outputs: np.ndarray, frame: pd.DataFrame | None = None,
                origins: np.ndarray | None = None) -> np.ndarray:
        """Scaled outputs ``(N, H)`` -> the target's units (per series: needs the frame and the origins)."""
        out = np.asarray(outputs, np.float64).reshape(len(outputs), -1)[:, : self.horizon]
        if not self.several:
            return out * self.target_std + self.target_mean
        if frame is None or origins is None:
            raise DataError("a model of several series decodes forecasts with the rows they came from")
        mean, std = self.window_scale(frame, origins)
        return out * std[:, None] + mean[:, None]

    decodes_with_rows = True  # the server hands ``decode`` the request's rows (several series need them)

    def decode(self, outputs: np.ndarray, raw: Any = None) -> list[Decoded]:
        """One ``Decoded`` for one step ahead; ``<target>+k`` for each step k of a longer horizon."""
        if self.several and raw is not None:
            frame = self.ordered(raw)
            values = self.unscale(outputs, frame, self.origins(frame))
        else:
            values = self.unscale(outputs)
        if self.horizon == 1:
            return [Decoded(self.target, values[:, 0])]
        return [Decoded(f"{self.target}+{k + 1}", values[:, k]) for k in range(self.horizon)]

    def forecast_frame(self, raw: Any, outputs: np.ndarray) -> pd.DataFrame:
        """``predict``'s table, one row per origin and step: the series, the time forecast (the time column's
        next values beyond the data, continued at the series' step), ``horizon`` (steps ahead) and
        ``prediction``."""
        frame = self.ordered(raw)
        origins = self.origins(frame)
        values = self.unscale(outputs, frame, origins)
        steps = np.arange(1, self.horizon + 1)
        rows = (origins[:, None] + steps[None, :]).ravel()
        out: dict[str, Any] = {}
        if self.series_id:
            out[self.series_id] = frame[self.series_id].to_numpy()[np.repeat(origins, self.horizon)]
        out[self.time_column or "row"] = self._times(frame, origins, rows)
        out["horizon"] = np.tile(steps, len(origins))
        out["prediction"] = values.ravel()
        return pd.DataFrame(out)

    def _times(self, frame: pd.DataFrame, origins: np.ndarray, rows: np.ndarray) -> Any:
        """The time of each forecast row: the table's own where its series has the row, else the series' last
        time plus whole steps (the position in the series without a time column)."""
        origin_rows = np.repeat(origins, self.horizon)
        times = time_key(frame, self.time_column) if self.time_column in frame.columns else None
        parts = []
        for _, a, b in series_runs(self.keys(frame)):
            mine = (origin_rows >= a) & (origin_rows < b)
            r = rows[mine]
            if times is None:
                parts.append(r - a)
                continue
            t = times.iloc[a:b].reset_index(drop=True)
            beyond = r - (b - 1)
            if pd.api.types.is_datetime64_any_dtype(t):
                step, last = _step(t), t.iloc[-1]
                future = {int(k): last + int(k) * step for k in np.unique(beyond[beyond > 0])}
                parts.append(pd.DatetimeIndex([future[int(k)] if k > 0 else t.iloc[i - a]
                                               for i, k in zip(r, beyond, strict=True)]).to_numpy())
            else:
                step = _step(t)
                values = np.where(beyond > 0, float(t.iloc[-1]) + beyond * step,
                                  t.to_numpy(np.float64)[np.minimum(r, b - 1) - a])
                whole = pd.api.types.is_integer_dtype(t) and float(step).is_integer()
                parts.append(values.astype(np.int64) if whole else values)
        return np.concatenate(parts) if parts else np.zeros(0)

    # -- the metrics, with the baselines on the same points ----------------------------------------------------

    def split_metrics(self, frame: pd.DataFrame, split: Any, outputs: np.ndarray, ets: bool = True) -> dict[str, Any]:
        """MAE, RMSE, R² and MASE of the forecasts of one split (``split.index``: each window's first target row
        in the ordered ``frame``) in the target's units, with persistence, seasonal naive and (``ets``) ETS on
        the same points."""
        if len(split) == 0:
            return {}
        parts = self.split_forecasts(frame, split, outputs, ets=ets)
        actual, keys, scale = parts.pop("actual"), parts.pop("series"), parts.pop("scale")
        out: dict[str, Any] = {}
        for name, predicted in parts.items():
            err = predicted - actual
            mae = float(np.abs(err).mean())
            prefix = "" if name == "model" else f"{name}_"
            out[f"{prefix}mae"] = mae
            out[f"{prefix}mase"] = mase(predicted, actual, keys, scale)
            if name == "model":
                out["mse"] = float((err ** 2).mean())
                out["rmse"] = float(np.sqrt(out["mse"]))
                total = float(((actual - actual.mean()) ** 2).sum())
                out["r2"] = 1.0 - float((err ** 2).sum()) / total if total > 0 else 0.0
        if "seasonal_naive" in parts:
            out["season"] = self.season
        out["origins"] = int(len(split))
        if self.several:
            out["series"] = len(scale)
        return out

    def split_forecasts(self, frame: pd.DataFrame, split: Any, outputs: np.ndarray, ets: bool = True) -> dict[str, Any]:
        """Per window and step, in the target's units: ``actual``, ``model``, ``naive``, ``seasonal_naive`` (when
        every point has a value one season back in its series), ``ets`` (when it could be fitted to every
        series): arrays ``(N, H)``; the ``series`` of each window ``(N,)`` and each series' MASE ``scale``."""
        origins = np.asarray(split.index, np.int64) - 1
        steps = np.arange(1, self.horizon + 1)
        ahead = origins[:, None] + steps[None, :]
        keys = self.keys(frame)
        starts = np.empty(len(frame), np.int64)
        values = self.values(frame)
        scale = {}
        for key, a, b in series_runs(keys):
            starts[a:b] = a
            scale[key] = float(self.series_stats(key, values[a:b])["scale"] or 1.0)
        y = values[:, 0]
        out: dict[str, Any] = {"actual": y[ahead], "model": self.unscale(outputs, frame, origins),
                               "naive": np.repeat(y[origins][:, None], self.horizon, axis=1)}
        if self.season:
            back = ahead - self.season * -(-steps[None, :] // self.season)
            if (back >= starts[origins][:, None]).all():
                out["seasonal_naive"] = y[back]
        if ets:
            forecasts = ets_forecasts(y, keys, origins, self.horizon, self.season)
            if forecasts is not None:
                out["ets"] = forecasts
        out["series"], out["scale"] = keys[origins], {k: scale[k] for k in np.unique(keys[origins])}
        return out

    def spec(self, embedding_dim: int | None = None) -> FeatureSpec:
        return FeatureSpec(kind="sequence", task="forecast", input_names=["x", "lengths"], n_outputs=self.horizon,
                           input_shape=[self.steps, len(self.features)], feature_names=list(self.features),
                           extra={"window": self.window, "horizon": self.horizon, "target": self.target,
                                  "season": self.season, "series_id": self.series_id, "known": self.known})

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "target": self.target, "features": self.features, "window": self.window,
                "horizon": self.horizon, "time_column": self.time_column, "season": self.season,
                "series_id": self.series_id, "known": self.known, "stats": self.stats}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ForecastPreprocessor:
        if "stats" not in d and d.get("horizon", 1) > 1:  # saved when horizon meant "the one value H steps on"
            raise DataError(f"this forecasting run predicts the single value {d['horizon']} steps ahead, as "
                            "data.horizon meant before it became the next 1..horizon steps: retrain it")
        return cls(**{k: v for k, v in d.items() if k != "kind"})


def _columns(cfg: DataConfig, raw: pd.DataFrame, target: str, time_col: str | None,
             notices: list[str]) -> list[str]:
    """The target, then every other numeric column (covariates), the known ones checked."""
    for name in [cfg.series_id, *cfg.known_covariates]:
        if name is not None and name not in raw.columns:
            what = "data.series_id" if name == cfg.series_id else "data.known_covariates"
            raise DataError(f"{what} column '{name}' not found; columns: {', '.join(map(str, raw.columns[:20]))}")
    features = [target]
    for name in raw.columns:
        if name in (target, time_col, cfg.series_id) or name in cfg.drop:
            continue
        if pd.api.types.is_numeric_dtype(raw[name]):
            features.append(str(name))
        elif name in cfg.known_covariates:
            raise DataError(f"known covariate '{name}' is not numeric")
        else:
            notices.append(f"column '{name}' left out: forecasting uses numeric columns only")
    if target in cfg.known_covariates:
        raise DataError(f"the target '{target}' cannot be a known covariate")
    return features


def mase(predicted: np.ndarray, actual: np.ndarray, keys: np.ndarray, scale: dict[Any, float]) -> float:
    """Each series' MAE divided by its ``scale`` (the in-sample one-step persistence MAE), averaged over series."""
    err = np.abs(np.asarray(predicted) - np.asarray(actual))
    return float(np.mean([err[keys == k].mean() / scale[k] for k in scale]))


def _split_origins(cfg: DataConfig, a: int, stop: int, w: int, h: int) -> tuple[list[np.ndarray], int]:
    """One series' (rows a..stop) train, val and test origins, and its training rows; raises when it is too
    short."""
    n = stop - a
    if cfg.backtest:
        n_te = cfg.backtest * h
        n_va = int(round(n * cfg.split.val))
        n_tr = n - n_te - n_va
        test = a + n_tr + n_va - 1 + h * np.arange(cfg.backtest)
    else:  # the test span starts where it would with the validation rows trained on (train.refit)
        n_tr = int(round(n * cfg.split.train))
        n_va = int(round(n * (cfg.split.train + cfg.split.val))) - n_tr
        test = np.arange(max(a + n_tr + n_va - 1, a + w - 1), stop - h)
    if n_tr < w + h + 1:
        raise DataError(f"the training part has {n_tr} rows: too few for data.window={w} plus data.horizon={h}"
                        + (f" and data.backtest={cfg.backtest}" if cfg.backtest else ""))
    train = np.arange(a + w - 1, a + n_tr - h)
    val = np.arange(max(a + n_tr - 1, a + w - 1), a + n_tr + n_va - h)
    return [train, val, test], n_tr


def prepare(cfg: DataConfig, raw: Any, seed: int, notices: list[str]) -> PreparedData:
    """Order in time per series, split each chronologically, fit scaling on train, cut windows in each split."""
    if not isinstance(raw, pd.DataFrame):
        raise DataError("forecasting needs a table: a CSV or Parquet file with a time column and a numeric target")
    targets = resolve_targets(cfg, raw)
    if len(targets) != 1:
        raise DataError("forecasting predicts one target column; name one with --target")
    target = targets[0]
    time_col = cfg.time_column
    if time_col is not None and time_col not in raw.columns:
        raise DataError(f"data.time_column '{time_col}' not found; columns: {', '.join(map(str, raw.columns[:20]))}")
    time_col = time_col or detect_time_column(raw.drop(columns=[cfg.series_id] if cfg.series_id in raw else []), target)
    if time_col is None:
        notices.append("no time column found (set data.time_column): the rows are taken to be in time order")
    y = pd.to_numeric(raw[target], errors="coerce")
    if y.notna().sum() < len(raw) * 0.5:
        raise DataError(f"forecast target '{target}' must be numeric")
    features = _columns(cfg, raw, target, time_col, notices)
    if y.isna().any():
        notices.append(f"{int(y.isna().sum())} missing '{target}' values filled with the previous value")
    w, h = cfg.window, cfg.horizon
    pre = ForecastPreprocessor(str(target), features, w, h, time_col, None, cfg.series_id, {},
                               [str(c) for c in cfg.known_covariates])
    raw = pre.ordered(raw)
    values = pre.values(raw)
    keys = pre.keys(raw)
    per_split: list[list[np.ndarray]] = [[], [], []]
    short, history, times = [], np.zeros(0), None
    for key, a, b in series_runs(keys):
        try:
            parts, n_tr = _split_origins(cfg, a, b, w, h)
        except DataError:
            if not pre.several:
                raise
            short.append(key)
            continue
        mean, std = finite_stats(f"the series {key!r}" if pre.several else "the series",
                                 pd.DataFrame(values[a:a + n_tr], columns=features))
        mean, std = mean.fillna(0.0).to_numpy(np.float64), std.fillna(1.0).to_numpy(np.float64)
        train_y = values[a:a + n_tr, 0]
        pre.stats[key] = {"mean": mean.tolist(), "std": np.where(std > 1e-12, std, 1.0).tolist(),
                          "scale": float(np.abs(np.diff(train_y)).mean()) or 1.0}
        if len(train_y) > len(history):  # the season is read off the longest series
            history = train_y
            times = time_key(raw.iloc[a:b], time_col) if time_col else None
        for i, part in enumerate(parts):
            per_split[i].append(part)
    if short:
        if not pre.stats:
            raise DataError(f"every series is too short for data.window={w} plus data.horizon={h}")
        notices.append(f"{len(short)} series too short for the window and horizon left out: "
                       f"{', '.join(short[:5])}{' ...' if len(short) > 5 else ''}")
    calendar = calendar_season(times) if times is not None else None
    pre.season = cfg.season or calendar or infer_season(history, max_lag=max(w + 1, 2 * h))
    if pre.season:
        how = ("data.season" if cfg.season else f"from the steps of '{time_col}'" if calendar else
               "inferred from the training autocorrelation")
        notices.append(f"season of {pre.season} steps ({how}; set data.season to change it)")
    z = pre.scaled(raw, values)
    splits = []
    for parts in per_split:
        origins = np.concatenate(parts) if parts else np.zeros(0, np.int64)
        x = pre.windows(z, origins) if len(origins) else np.zeros((0, pre.steps, len(features)), np.float32)
        target_z = pre.targets(z, origins) if len(origins) else np.zeros((0,) if h == 1 else (0, h), np.float32)
        splits.append(Split((torch.from_numpy(x), torch.full((len(x),), pre.steps, dtype=torch.int64)),
                            torch.from_numpy(target_z), index=origins + 1))
    if pre.several:
        notices.append(f"{len(pre.stats)} series in '{cfg.series_id}': one model, each series scaled by its own "
                       "training rows")
    return PreparedData(pre.spec(), pre, *splits, raw=raw, notices=notices)
