"""A forecast combined with seasonal naive (``model.blend``): the seasonal half is the baseline's forecast, the
weight is the one that scores best on the validation span, and it travels with the saved model."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from testkit import tiny

from palaestra.data.forecast import mase
from palaestra.models.seasonal_blend import GRID, SeasonalBlend, find_blend
from palaestra.pipeline import train
from palaestra.runs import Run
from palaestra.training.loop import split_outputs

CPU = torch.device("cpu")


def _quarters(n: int = 160, seed: int = 0) -> pd.DataFrame:
    """A noisy quarterly season on a wandering level: seasonal naive is hard to beat,
    and a network two epochs from the persistence forecast it starts at has not learnt the season yet."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    y = 20 + np.cumsum(rng.normal(0, 0.3, n)) + 3 * np.array([1.0, -2.0, 0.5, 0.5])[t % 4] + rng.normal(0, 1.0, n)
    return pd.DataFrame({"t": t, "y": y.round(4)})


@pytest.fixture(scope="module")
def blended(tmp_path_factory):
    out = tmp_path_factory.mktemp("blend")
    # a horizon longer than the season: steps 5 and 6 look two seasons back
    cfg = tiny(epochs=2, data={"task": "forecast", "target": "y", "season": 4, "window": 8, "horizon": 6},
               train={"batch_size": 16})
    run = train(cfg, source=_quarters(), out=out / "run", quiet=True)
    return run, out / "run"


def _forecasts(run, split, weight: float) -> dict:
    blend = find_blend(run.model)
    kept = float(blend.weight)
    blend.weight.fill_(weight)
    try:
        return run.preprocessor.split_forecasts(run.data.raw, split, split_outputs(run.model, split, CPU), ets=False)
    finally:
        blend.weight.fill_(kept)


def test_the_seasonal_half_is_the_seasonal_naive_forecast(blended):
    run, _ = blended
    for split in (run.data.val, run.data.test):
        seasonal = _forecasts(run, split, 0.0)
        assert seasonal["model"].shape == (len(split), 6)
        np.testing.assert_allclose(seasonal["model"], seasonal["seasonal_naive"], rtol=1e-5, atol=1e-4)
        network = _forecasts(run, split, 1.0)  # weight 1: the network alone, as it trained
        with torch.no_grad():
            inner = run.preprocessor.unscale(find_blend(run.model).inner(*split.inputs).numpy(), run.data.raw,
                                             np.asarray(split.index) - 1)
        np.testing.assert_allclose(network["model"], inner, rtol=1e-6)


def test_the_weight_is_the_best_on_the_validation_span(blended):
    run, run_dir = blended
    chosen = run.metrics["blend"]
    network, seasonal = _forecasts(run, run.data.val, 1.0), _forecasts(run, run.data.val, 0.0)
    args = network["actual"], network["series"], network["scale"]
    scores = {round(float(w), 4): mase(w * network["model"] + (1 - w) * seasonal["model"], *args) for w in GRID}
    assert chosen["network_weight"] == min(scores, key=scores.get)
    assert chosen["network_weight"] < 1.0  # on this series seasonal naive earns a share
    assert chosen["val_mase"] == pytest.approx(min(scores.values()), rel=1e-6)
    assert chosen["val_mase_network"] == pytest.approx(scores[1.0], rel=1e-6)
    assert chosen["val_mase_seasonal_naive"] == pytest.approx(run.metrics["val"]["seasonal_naive_mase"], rel=1e-5)
    # the run's metrics are the combination's, on validation and test
    assert run.metrics["val"]["mase"] == pytest.approx(chosen["val_mase"], rel=1e-5)
    w = chosen["network_weight"]
    test_n, test_s = _forecasts(run, run.data.test, 1.0), _forecasts(run, run.data.test, 0.0)
    combined = mase(w * test_n["model"] + (1 - w) * test_s["model"], test_n["actual"], test_n["series"], test_n["scale"])
    assert run.metrics["test"]["mase"] == pytest.approx(combined, rel=1e-5)
    # saved with the weights: the loaded run forecasts the same
    loaded = Run.load(run_dir)
    assert float(find_blend(loaded.model).weight) == pytest.approx(w)
    frame = _quarters()
    pd.testing.assert_frame_equal(loaded.predict(frame), run.predict(frame))


def test_no_blend_without_a_season_in_the_window():
    inner = torch.nn.Linear(1, 1)
    with pytest.raises(ValueError, match="season"):
        SeasonalBlend(inner, season=12, window=8, horizon=1)
    cfg = tiny(epochs=2, data={"task": "forecast", "target": "y", "season": 12, "window": 8})
    run = train(cfg, source=_quarters(), quiet=True)
    assert find_blend(run.model) is None and "blend" not in run.metrics
    cfg = tiny(epochs=2, data={"task": "forecast", "target": "y", "season": 4, "window": 8}, model={"blend": "none"})
    run = train(cfg, source=_quarters(), quiet=True)
    assert find_blend(run.model) is None and "blend" not in run.metrics


def test_refit_trains_on_the_validation_span_too_and_keeps_the_test_span(tmp_path):
    cfg = tiny(epochs=2, data={"task": "forecast", "target": "y", "season": 4, "window": 8, "horizon": 6,
                               "backtest": 3}, train={"batch_size": 16, "refit": True})
    run = train(cfg, source=_quarters(), out=tmp_path / "run", quiet=True)
    plain = train({**cfg, "train": {**cfg["train"], "refit": False}}, source=_quarters(), quiet=True)
    # the first training is the plain run: same validation scores, same blend weight
    assert run.metrics["val"] == plain.metrics["val"] and run.metrics["blend"] == plain.metrics["blend"]
    assert run.metrics["refit"]["epochs"] == plain.metrics["best_epoch"]
    # the kept model trained on the validation rows as well, and forecasts the same test origins
    assert set(plain.data.val.index) <= set(run.data.train.index) and len(run.data.val) == 0
    np.testing.assert_array_equal(run.data.test.index, plain.data.test.index)
    assert float(find_blend(run.model).weight) == pytest.approx(run.metrics["blend"]["network_weight"])
    assert run.metrics["test"]["origins"] == 3 and run.metrics["test"]["mase"] != plain.metrics["test"]["mase"]
    loaded = Run.load(tmp_path / "run")
    pd.testing.assert_frame_equal(loaded.predict(_quarters()), run.predict(_quarters()))


def test_refit_is_refused_before_anything_trains_where_it_cannot_run(tmp_path):
    from palaestra.errors import ConfigError

    with pytest.raises(ConfigError, match="forecasting"):
        train(tiny("iris", epochs=1, train={"refit": True}), out=tmp_path / "a", quiet=True)
    with pytest.raises(ConfigError, match="validation span"):
        train(tiny(epochs=1, data={"task": "forecast", "target": "y", "window": 8,
                                   "split": {"train": 0.85, "val": 0.0, "test": 0.15}}, train={"refit": True}),
              source=_quarters(), out=tmp_path / "b", quiet=True)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_the_test_span_does_not_move_when_validation_rows_are_trained_on():
    from palaestra.config import DataConfig
    from palaestra.data.forecast import _split_origins

    for n in range(60, 160):
        for train_share, val_share in ((0.7, 0.15), (0.6, 0.25), (0.75, 0.1)):
            split = {"train": train_share, "val": val_share, "test": round(1 - train_share - val_share, 10)}
            merged = {"train": train_share + val_share, "val": 0.0, "test": split["test"]}
            plain = _split_origins(DataConfig(split=split), 0, n, 8, 2)[0]
            refit = _split_origins(DataConfig(split=merged), 0, n, 8, 2)[0]
            np.testing.assert_array_equal(plain[2], refit[2])
            assert set(plain[0]) | set(plain[1]) <= set(refit[0]) | set(plain[1])


def test_the_onnx_export_carries_the_combination(blended, tmp_path):
    from palaestra.deployment.export import export, predict_exported

    run, run_dir = blended
    loaded = Run.load(run_dir)
    assert 0.0 < run.metrics["blend"]["network_weight"] < 1.0  # both halves count
    rows = _quarters().tail(8)  # one window: the forecast beyond the data
    path, check = export(loaded, "onnx", tmp_path / "model.onnx")
    assert check.ok, check
    exported = predict_exported(path, rows)
    np.testing.assert_allclose(exported, loaded.outputs(rows), atol=1e-4)
    blend = find_blend(loaded.model)
    blend.weight.fill_(1.0)  # the network alone forecasts otherwise: the export holds the seasonal half too
    assert not np.allclose(exported, loaded.outputs(rows), atol=1e-3)
