"""Forecasting a trending, seasonal series: windows seen relative to their own level, seasonal baselines, MASE."""

from __future__ import annotations

import numpy as np
import pandas as pd
from testkit import tiny

from palaestra.data.forecast import _parse_times
from palaestra.data.forecast_baselines import calendar_season, infer_season
from palaestra.pipeline import train


def _trending(n: int = 360, season: int = 12, seed: int = 0) -> pd.DataFrame:
    """A rising series with a season: the test years lie above every training value."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    y = 0.08 * t + 2.0 * np.sin(2 * np.pi * t / season) + rng.normal(0, 0.3, n)
    return pd.DataFrame({"step": t, "sales": y})


def _fit(frame: pd.DataFrame, norm: str):
    cfg = tiny("sales.csv", epochs=60, data={"task": "forecast", "target": "sales", "window": 24},
               model={"window_norm": norm, "blend": "none", "family": "cnn", "channels": [16], "hidden": [16], "dropout": 0.0},
               train={"batch_size": 16, "early_stopping": {"patience": 10}}, optimizer={"lr": 0.003})
    return train(cfg, source=frame, quiet=True).metrics["test"]


def test_scale_free_windows_beat_persistence_where_global_scaling_cannot():
    frame = _trending()
    scale_free, fixed = _fit(frame, "last"), _fit(frame, "none")
    assert {"naive_mae", "seasonal_naive_mae", "mase", "naive_mase", "seasonal_naive_mase"} <= set(scale_free)
    assert scale_free["season"] == 12  # inferred from the training autocorrelation
    assert scale_free["mae"] < 0.9 * scale_free["naive_mae"], scale_free  # at least 10% under persistence
    assert scale_free["mae"] < scale_free["seasonal_naive_mae"], scale_free
    assert scale_free["mase"] < 1.0 and fixed["mae"] > scale_free["mae"], (fixed, scale_free)


def test_season_inference():
    t = np.arange(240)
    assert infer_season(np.sin(2 * np.pi * t / 7) + 0.1 * t, max_lag=20) == 7
    assert infer_season(np.random.default_rng(0).normal(size=240), max_lag=20) is None


def test_the_season_is_read_off_the_calendar():
    assert calendar_season(pd.Series(pd.date_range("2000-01-01", periods=30, freq="MS"))) == 12
    assert calendar_season(pd.Series(pd.date_range("2000-01-01", periods=30, freq="QS"))) == 4
    assert calendar_season(pd.Series(pd.date_range("2000-01-03", periods=30, freq="W-MON"))) == 52
    assert calendar_season(pd.Series(1991.5 + np.arange(30) / 12)) == 12  # years counted in months (R's ts)
    assert calendar_season(pd.Series(np.arange(1950, 1980))) is None  # whole years: no season in the calendar
    # the quarters and ISO weeks tsibble prints are times too
    assert _parse_times(pd.Series(["1981 Q1", "1981 Q4"])).tolist() == [pd.Timestamp("1981-01-01"), pd.Timestamp("1981-10-01")]
    assert _parse_times(pd.Series(["1991 W06"])).tolist() == [pd.Timestamp("1991-02-04")]
