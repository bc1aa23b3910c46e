"""Forecast windows: cut after a chronological split, scaling from the training rows, persistence baseline."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from palaestra.config import DataConfig
from palaestra.data.prepare import prepare_data
from palaestra.errors import DataError


def _cfg(**kw) -> DataConfig:
    return DataConfig(source="series.csv", target="y", task="forecast",
                      split={"train": 0.6, "val": 0.2, "test": 0.2}, **kw)


def _series(n: int = 50) -> pd.DataFrame:
    return pd.DataFrame({"t": np.arange(n), "y": np.arange(n, dtype=float) ** 1.5, "other": np.arange(n) % 3})


def test_windows_targets_and_no_leakage():
    df = _series()
    data = prepare_data(_cfg(window=4, horizon=2), 0, source=df)
    pre = data.preprocessor
    assert pre.features == ["y", "other"] and pre.time_column == "t"
    # scaling from the 30 training rows only
    assert pre.mean[0] == pytest.approx(df.y[:30].mean()) and pre.std[0] == pytest.approx(df.y[:30].std(ddof=0))
    # each target lies in its own split; train targets start at window + horizon - 1
    assert data.train.index.tolist() == list(range(5, 30))
    assert data.val.index.tolist() == list(range(30, 40)) and data.test.index.tolist() == list(range(40, 50))
    x, target = data.test.inputs[0], data.test.target
    first = data.test.index[0]  # row 40: inputs rows 35..38 (the window ends horizon=2 steps before)
    y_scaled = (df.y.to_numpy() - pre.mean[0]) / pre.std[0]
    assert np.allclose(x[0, :, 0].numpy(), y_scaled[35:39], atol=1e-5)
    assert target[0].item() == pytest.approx(y_scaled[first], abs=1e-5)
    # changing the future (test rows) changes nothing in training
    changed = df.copy()
    changed.loc[40:, "y"] = -1000.0
    again = prepare_data(_cfg(window=4, horizon=2), 0, source=changed)
    assert np.array_equal(again.train.inputs[0].numpy(), data.train.inputs[0].numpy())
    assert again.preprocessor.mean == pre.mean


def test_naive_mae_is_the_persistence_forecast():
    df = _series()
    data = prepare_data(_cfg(window=3, horizon=1), 0, source=df)
    naive = data.preprocessor.baseline_metrics(data.test)["naive_mae"]
    y = df.y.to_numpy()
    assert naive == pytest.approx(np.abs(y[40:50] - y[39:49]).mean(), rel=1e-5)


def test_rows_are_put_in_time_order():
    df = _series()
    shuffled = df.sample(frac=1.0, random_state=0)
    a = prepare_data(_cfg(window=4), 0, source=df)
    b = prepare_data(_cfg(window=4), 0, source=shuffled)
    assert np.allclose(a.test.inputs[0].numpy(), b.test.inputs[0].numpy())
    dates = df.assign(t=pd.date_range("2020-01-01", periods=len(df), freq="D").astype(str)).sample(frac=1.0, random_state=1)
    c = prepare_data(_cfg(window=4, time_column="t"), 0, source=dates)
    assert np.allclose(a.test.target.numpy(), c.test.target.numpy())


def test_too_short_series_is_a_plain_error():
    with pytest.raises(DataError, match="too few"):
        prepare_data(_cfg(window=40), 0, source=_series(30))
    with pytest.raises(DataError, match="time_column"):
        prepare_data(_cfg(time_column="when"), 0, source=_series())


def test_sunspots_builtin_is_a_forecast():
    data = prepare_data(DataConfig(source="sunspots"), 0)
    assert data.spec.task == "forecast" and data.preprocessor.time_column == "YEAR"
    assert data.preprocessor.features == ["SUNACTIVITY"]
