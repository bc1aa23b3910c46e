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
    mean, std = pre.stats[""]["mean"], pre.stats[""]["std"]
    assert mean[0] == pytest.approx(df.y[:30].mean()) and std[0] == pytest.approx(df.y[:30].std(ddof=0))
    # each window's two targets lie in its own split; the index is the first target's row
    assert data.train.index.tolist() == list(range(4, 29))
    assert data.val.index.tolist() == list(range(30, 39)) and data.test.index.tolist() == list(range(40, 49))
    x, target = data.test.inputs[0], data.test.target
    assert target.shape == (9, 2)
    y_scaled = (df.y.to_numpy() - mean[0]) / std[0]
    assert np.allclose(x[0, :, 0].numpy(), y_scaled[36:40], atol=1e-5)  # rows 36..39, the origin is row 39
    assert np.allclose(target[0].numpy(), y_scaled[40:42], atol=1e-5)
    # changing the future (test rows) changes nothing in training
    changed = df.copy()
    changed.loc[40:, "y"] = -1000.0
    again = prepare_data(_cfg(window=4, horizon=2), 0, source=changed)
    assert np.array_equal(again.train.inputs[0].numpy(), data.train.inputs[0].numpy())
    assert again.preprocessor.stats == pre.stats


def test_backtest_forecasts_from_k_origins_a_horizon_apart():
    df = _series()
    data = prepare_data(_cfg(window=4, horizon=3, backtest=2), 0, source=df)
    assert data.test.index.tolist() == [44, 47]  # targets 44..46 and 47..49: the last 2 x 3 rows
    assert data.val.index.max() + 2 < 44  # validation targets end before the test span
    assert data.spec.n_outputs == 3 and data.spec.input_shape == [4, 2]


def test_several_series_are_scaled_and_windowed_apart():
    a, b = _series(40), _series(40)
    b["y"] = b["y"] * 100 + 5000
    frame = pd.concat([a.assign(store="a"), b.assign(store="b")]).sample(frac=1.0, random_state=0)
    data = prepare_data(_cfg(window=4, series_id="store"), 0, source=frame)
    pre = data.preprocessor
    assert set(pre.stats) == {"a", "b"} and pre.stats["b"]["mean"][0] > 100 * pre.stats["a"]["mean"][0]
    # no window crosses from one series into the other: both series' windows look alike once scaled
    assert len(data.train) == 2 * (24 - 4) and np.allclose(data.train.inputs[0][:20], data.train.inputs[0][20:], atol=1e-4)
    # a known covariate is read over the horizon too; the rest hold their origin's value there
    known = prepare_data(_cfg(window=4, horizon=2, known_covariates=["other"]), 0, source=_series())
    x = known.train.inputs[0]
    assert x.shape[1:] == (6, 2)
    z_other = (_series().other.to_numpy() - known.preprocessor.stats[""]["mean"][1]) / known.preprocessor.stats[""]["std"][1]
    assert np.allclose(x[0, 4:, 1].numpy(), z_other[4:6], atol=1e-5)  # rows after the origin (row 3)
    assert np.allclose(x[0, 4:, 0].numpy(), x[0, 3, 0].item())  # the target held at the origin


def test_baselines_are_measured_on_the_same_points_in_target_units():
    df = _series()
    data = prepare_data(_cfg(window=3, horizon=1, season=4), 0, source=df)
    pre, test = data.preprocessor, data.test
    persistence = test.inputs[0][:, -1, :1].numpy()  # a "model" that forecasts the last value
    m = pre.split_metrics(data.raw, test, persistence, ets=False)
    y = df.y.to_numpy()
    assert m["naive_mae"] == pytest.approx(np.abs(y[40:50] - y[39:49]).mean(), rel=1e-5)
    assert m["mae"] == pytest.approx(m["naive_mae"], rel=1e-5) and m["mase"] == pytest.approx(m["naive_mase"], rel=1e-5)
    assert m["seasonal_naive_mae"] == pytest.approx(np.abs(y[40:50] - y[36:46]).mean(), rel=1e-5)
    assert m["naive_mase"] == pytest.approx(m["naive_mae"] / np.abs(np.diff(y[:30])).mean(), rel=1e-5)


def test_ets_baseline_and_mase_averaged_over_series():
    t = np.arange(120)
    season = 10 + 3 * np.sin(2 * np.pi * t / 12)
    frame = pd.concat([pd.DataFrame({"t": t, "y": season + 0.05 * t, "shop": "a"}),
                       pd.DataFrame({"t": t, "y": 100 * season, "shop": "b"})])
    data = prepare_data(_cfg(window=12, horizon=2, season=12, series_id="shop"), 0, source=frame)
    pre, test = data.preprocessor, data.test
    parts = pre.split_forecasts(data.raw, test, np.zeros((len(test), 2)))
    assert set(parts) >= {"actual", "model", "naive", "seasonal_naive", "ets"}
    # ETS with the season fits these noiseless series far better than persistence
    assert np.abs(parts["ets"] - parts["actual"]).mean() < 0.1 * np.abs(parts["naive"] - parts["actual"]).mean()
    m = pre.split_metrics(data.raw, test, np.zeros((len(test), 2)), ets=False)
    mase = [np.abs(parts["naive"] - parts["actual"])[parts["series"] == k].mean() / parts["scale"][k] for k in "ab"]
    assert m["series"] == 2 and m["naive_mase"] == pytest.approx(np.mean(mase))  # each series weighs the same


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


def test_ets_forecasts_from_every_origin_match_statsmodels_refiltering():
    """One filter pass, then the state-space recursion: the same forecasts as statsmodels' own
    ``apply(history up to the origin).forecast(h)`` from each origin, with the parameters kept."""
    pytest.importorskip("statsmodels")
    import warnings

    from statsmodels.tsa.statespace.exponential_smoothing import ExponentialSmoothing

    from palaestra.data.forecast_baselines import _best_ets, _forecasts_from

    t = np.arange(160)
    y = 10 + 0.05 * t + 2 * np.sin(2 * np.pi * t / 12) + np.random.default_rng(0).normal(0, 0.3, 160)
    fit = _best_ets(ExponentialSmoothing, y[:120], 12)
    assert fit is not None and fit.model.seasonal
    origins = np.array([119, 130, 147])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = np.stack([np.asarray(fit.apply(y[:o + 1]).forecast(12)) for o in origins])
    assert np.allclose(_forecasts_from(fit, y[:148], origins, 12), expected, atol=1e-9)


def test_the_same_ets_question_is_answered_without_fitting_again(monkeypatch):
    pytest.importorskip("statsmodels")
    from palaestra.data import forecast_baselines as fb

    fits = []
    fitted = fb._best_ets
    monkeypatch.setattr(fb, "_best_ets", lambda *a: fits.append(1) or fitted(*a))
    t = np.arange(120)
    y = 10 + 2 * np.sin(2 * np.pi * t / 12) + np.random.default_rng(1).normal(0, 0.3, 120)
    keys = np.array(["a"] * 60 + ["b"] * 60, dtype=object)
    origins = np.array([40, 47, 100, 107])
    first = fb.ets_forecasts(y, keys, origins, 3, 12)
    assert len(fits) == 2 and first.shape == (4, 3)  # one fit per series
    first[:] = 0.0  # the caller's copy: the remembered answer is untouched
    again = fb.ets_forecasts(y.copy(), keys.copy(), origins.copy(), 3, 12)
    assert len(fits) == 2 and np.isfinite(again).all() and not np.allclose(again, 0.0)
    y[50] += 1.0  # other values, other series, other origins or another horizon: fitted afresh
    fb.ets_forecasts(y, keys, origins, 3, 12)
    fb.ets_forecasts(y, keys, origins[:2], 3, 12)
    fb.ets_forecasts(y, keys, origins, 2, 12)
    assert len(fits) == 2 + 2 + 1 + 2


def test_a_run_saved_before_series_and_multi_step_horizons_still_loads_or_says_why():
    from palaestra.data.forecast import ForecastPreprocessor

    old = {"kind": "forecast", "target": "y", "features": ["y"], "mean": [5.0], "std": [2.0], "window": 4,
           "horizon": 1, "time_column": "t", "season": None, "scale": 0.5}
    pre = ForecastPreprocessor.from_dict(old)
    assert (pre.target_mean, pre.target_std, pre.stats[""]["scale"]) == (5.0, 2.0, 0.5)
    with pytest.raises(DataError, match="retrain it"):
        ForecastPreprocessor.from_dict({**old, "horizon": 3})
