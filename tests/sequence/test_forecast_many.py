"""Several series in one table, several steps ahead, known covariates: one global model, trained, evaluated,
predicted with its time index, served over HTTP and exported."""

from __future__ import annotations

import json

import httpx
import numpy as np
import pandas as pd
import pytest
from testkit import running, tiny

from palaestra.cli import main as cli_main
from palaestra.deployment.export import export, predict_exported
from palaestra.deployment.server import build_app
from palaestra.pipeline import train
from palaestra.runs import Run


def _shops(n: int = 96) -> pd.DataFrame:
    """Three monthly series of very different sizes, each with a trend and a yearly season."""
    rng = np.random.default_rng(0)
    t = np.arange(n)
    frames = []
    for shop, size in (("north", 1.0), ("south", 40.0), ("east", 1000.0)):
        y = size * (10 + 0.05 * t + 2 * np.sin(2 * np.pi * t / 12) + rng.normal(0, 0.2, n))
        frames.append(pd.DataFrame({"month": pd.date_range("2015-01-01", periods=n, freq="MS").strftime("%Y-%m-%d"),
                                    "shop": shop, "sales": y.round(3)}))
    return pd.concat(frames).sample(frac=1.0, random_state=0).reset_index(drop=True)  # any row order


@pytest.fixture(scope="module")
def shops_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("shops")
    frame = _shops()
    frame.to_csv(out / "shops.csv", index=False)
    cfg = tiny(str(out / "shops.csv"), epochs=60, data={"task": "forecast", "target": "sales", "series_id": "shop",
                                                        "window": 24, "horizon": 3},
               train={"batch_size": 16, "early_stopping": {"patience": 15}}, optimizer={"lr": 0.01})
    train(cfg, out=out / "run", quiet=True)
    return out, frame


def test_one_global_model_of_several_series_beats_the_baselines(shops_run):
    out, _ = shops_run
    test = json.loads((out / "run" / "metrics.json").read_text())["test"]
    assert test["series"] == 3 and test["season"] == 12
    assert json.loads((out / "run" / "preprocess.json").read_text())["spec"]["n_outputs"] == 3
    # MASE averages the series, so the large one does not drown the small ones
    assert test["mase"] < test["naive_mase"] and test["mase"] < test["seasonal_naive_mase"], test
    assert "ets_mase" in test and test["ets_mae"] > 0
    report = (out / "run" / "report.html").read_text()
    assert "Forecast vs actual (test span)" in report
    weights = json.loads((out / "run" / "metrics.json").read_text())["blend"]["weights"]
    assert f"{weights['seasonal_mean']:.2f} &times; the mean seasonal profile" in report


def test_predict_writes_every_series_with_its_time_index(shops_run, capsys):
    out, frame = shops_run
    run = Run.load(out / "run")
    pred = run.predict(frame)
    assert list(pred.columns) == ["shop", "month", "horizon", "prediction"]
    for shop, size in (("north", 1.0), ("south", 40.0), ("east", 1000.0)):
        mine = pred[pred["shop"] == shop]
        assert len(mine) == 3 * (96 - 24 + 1)  # every origin with a full window, three steps each
        beyond = mine.tail(3)
        # the last origin (Dec 2022) forecasts Jan-Mar 2023, on the series' own scale
        assert beyond["month"].dt.strftime("%Y-%m").tolist() == ["2023-01", "2023-02", "2023-03"]
        assert beyond["horizon"].tolist() == [1, 2, 3]
        assert np.all(np.abs(beyond["prediction"] / size - 14.6) < 3.0), beyond
    assert cli_main(["predict", str(out / "run"), "--data", str(out / "shops.csv"), "--out", str(out / "pred.csv")]) == 0
    written = pd.read_csv(out / "pred.csv")
    assert len(written) == len(pred) and {"shop", "month", "horizon", "prediction"} <= set(written.columns)
    again = run.evaluate(frame)
    assert again["series"] == 3 and again["mase"] < again["naive_mase"]


@pytest.mark.parametrize("backend", ["torch", "onnx"])
def test_served_and_exported_forecasts_are_the_runs(shops_run, backend, tmp_path):
    out, frame = shops_run
    run = Run.load(out / "run")
    rows = frame[frame["shop"].isin(["south", "east"])]
    rows = rows.sort_values("month").groupby("shop").tail(24)  # one window per series: a forecast beyond the data
    expected = run.decode(rows)
    assert [d.name for d in expected] == ["sales+1", "sales+2", "sales+3"]
    body = {"rows": json.loads(rows.to_json(orient="records"))}
    with running(build_app(run, backend=backend)) as base:
        answer = httpx.post(f"{base}/predict", json=body, timeout=60)
        split = json.loads(rows.to_json(orient="split", index=False))
        mlflow = httpx.post(f"{base}/invocations", json={"dataframe_split": split}, timeout=60)
    assert answer.status_code == 200, answer.text
    got = answer.json()["predictions"]
    for d in expected:
        assert np.allclose([row[d.name] for row in got], d.predictions, rtol=1e-4), (got, d)
    assert mlflow.status_code == 200, mlflow.text
    records = mlflow.json()["predictions"]
    assert np.allclose([r["sales+3_prediction"] for r in records], expected[2].predictions, rtol=1e-4)
    if backend == "onnx":
        path, check = export(run, "onnx", tmp_path / "model.onnx")
        assert check.ok, check
        assert np.allclose(predict_exported(path, rows), run.outputs(rows), atol=1e-4)


def test_known_covariates_are_read_over_the_horizon():
    """Sales jump on promotion days, which are planned ahead: only a model that reads the horizon's
    promotions can forecast the jumps."""
    rng = np.random.default_rng(1)
    n = 400
    promo = (rng.random(n) < 0.2).astype(float)
    frame = pd.DataFrame({"day": np.arange(n), "promo": promo, "sales": 5 + 4 * promo + rng.normal(0, 0.2, n)})
    scores = {}
    for known in ([], ["promo"]):
        cfg = tiny("sales.csv", epochs=60, data={"task": "forecast", "target": "sales", "window": 8, "horizon": 2,
                                                 "known_covariates": known},
                   train={"batch_size": 32, "early_stopping": {"patience": 10}}, optimizer={"lr": 0.01})
        run = train(cfg, source=frame, quiet=True)
        scores[bool(known)] = run.metrics["test"]["mae"]
    assert scores[True] < 0.4 * scores[False], scores
    # to forecast beyond the data, the table brings the horizon's promotions in rows without sales
    future = pd.DataFrame({"day": [n, n + 1], "promo": [1.0, 0.0], "sales": [np.nan, np.nan]})
    pred = run.predict(pd.concat([frame, future], ignore_index=True))
    last = pred.tail(2)  # the last origin, day n - 1: its two steps ahead
    assert last["day"].tolist() == [n, n + 1] and last["prediction"].iloc[0] > last["prediction"].iloc[1] + 2
