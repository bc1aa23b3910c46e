"""A forecast combined with classical seasonal forecasts of its window (``model.blend``): each member is the forecast
it is named for, the weights are greedy selection on the validation span shrunk toward equal weights, and they
travel with the saved model (predict, load, ONNX)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from testkit import tiny

from palaestra.data.forecast import mase
from palaestra.models.seasonal_blend import MEMBERS, SeasonalBlend, choose_weights, find_blend
from palaestra.pipeline import member_forecasts, train
from palaestra.runs import Run
from palaestra.training.loop import split_outputs

CPU = torch.device("cpu")
WINDOW, SEASON, HORIZON = 8, 4, 6


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
    cfg = tiny(epochs=2, data={"task": "forecast", "target": "y", "season": SEASON, "window": WINDOW,
                               "horizon": HORIZON}, train={"batch_size": 16})
    run = train(cfg, source=_quarters(), out=out / "run", quiet=True)
    return run, out / "run"


def _forecasts(run, split, member: str) -> dict:
    """``split_forecasts`` with one member's weight 1, in the target's units."""
    return member_forecasts(run.model, run.preprocessor, run.data.raw, split, CPU)[member]


def _by_hand(y: np.ndarray, origin: int) -> dict[str, np.ndarray]:
    """The classical forecasts from the window ending at row ``origin``, written out step by step."""
    window = y[origin - WINDOW + 1:origin + 1]
    last, first = window[-SEASON:], window[:SEASON]  # the window holds two seasons
    profile = ((last - last.mean()) + (first - first.mean())) / 2
    drift = last.mean() - first.mean()  # per season (two seasons: one season apart)
    out = {name: np.empty(HORIZON) for name in MEMBERS}
    for k in range(HORIZON):
        ahead = k // SEASON + 1
        out["seasonal_naive"][k] = last[k % SEASON]
        out["seasonal_mean"][k] = last.mean() + profile[k % SEASON]
        out["seasonal_drift"][k] = last[k % SEASON] + ahead * drift
    return out


def test_each_member_is_the_forecast_it_is_named_for(blended):
    run, _ = blended
    blend = find_blend(run.model)
    assert blend.members == ("network", *MEMBERS)
    y = run.data.raw["y"].to_numpy(np.float64)
    for split in (run.data.val, run.data.test):
        origins = np.asarray(split.index) - 1
        seasonal = _forecasts(run, split, "seasonal_naive")
        assert seasonal["model"].shape == (len(split), HORIZON)
        np.testing.assert_allclose(seasonal["model"], seasonal["seasonal_naive"], rtol=1e-5, atol=1e-4)
        for name in MEMBERS:
            got = _forecasts(run, split, name)["model"]
            np.testing.assert_allclose(got, [_by_hand(y, o)[name] for o in origins], rtol=1e-5, atol=1e-4)
        network = _forecasts(run, split, "network")  # the network alone, as it trained
        with torch.no_grad():
            inner = run.preprocessor.unscale(blend.inner(*split.inputs).numpy(), run.data.raw, origins)
        np.testing.assert_allclose(network["model"], inner, rtol=1e-6)


def test_the_maps_where_the_window_is_not_a_whole_number_of_seasons():
    """Window 24, season 7: three whole seasons (the last 21 steps), horizon 9 reaching two seasons ahead."""
    from palaestra.models.seasonal_blend import member_maps

    window, season, horizon = 24, 7, 9
    x = np.random.default_rng(1).normal(size=window)
    got = member_maps(season, window, horizon).double().numpy() @ x
    seasons = [x[window - (j + 1) * season:window - j * season] for j in range(3)]  # the last one first
    profile = np.mean([s - s.mean() for s in seasons], axis=0)
    drift = (seasons[0].mean() - seasons[2].mean()) / 2
    for k in range(horizon):
        phase, ahead = k % season, k // season + 1
        assert got[0, k] == pytest.approx(seasons[0][phase])
        assert got[1, k] == pytest.approx(seasons[0].mean() + profile[phase])
        assert got[2, k] == pytest.approx(seasons[0][phase] + ahead * drift)
    np.testing.assert_allclose(member_maps(season, window, horizon).sum(-1), 1.0, rtol=1e-6)  # affine: rows sum to 1


def test_greedy_selection_shrunk_half_way_to_equal_weights_of_the_members_near_the_best():
    actual = np.array([1.0, 2.0, 3.0, 4.0])

    def score(f):
        return float(np.abs(f - actual).mean())

    # the mean of two members errs less than either: greedy selection finds the pair
    assert choose_weights([actual + 1.0, actual - 1.0], score, shrink=1.0) == [0.5, 0.5]
    # ties go to the earlier member, the network
    assert choose_weights([actual, actual.copy()], score, shrink=1.0) == [1.0, 0.0]
    # a member that cannot forecast (NaN) gets nothing, and does not spoil the others
    assert choose_weights([actual + 1.0, actual - 1.0, actual + np.nan], score) == [0.5, 0.5, 0.0]
    # greedy: the first member wins every round; the equal half goes to the members within 1.5x its error (1.0),
    # not to the one 2x off
    members = [actual + 1.0, actual - 1.2, actual + 2.0, actual - 1.5]
    assert choose_weights(members, score, shrink=1.0)[2:] == [0.0, 0.0]
    fitted = choose_weights(members, score, shrink=1.0)
    assert choose_weights(members, score) == pytest.approx([0.5 * w + 0.5 * e for w, e in
                                                            zip(fitted, [1 / 3, 1 / 3, 0.0, 1 / 3], strict=True)])


def test_the_weights_are_chosen_on_the_validation_span(blended):
    run, run_dir = blended
    chosen = run.metrics["blend"]
    names = ("network", *MEMBERS)
    members = {name: _forecasts(run, run.data.val, name) for name in names}
    args = members["network"]["actual"], members["network"]["series"], members["network"]["scale"]
    weights = choose_weights([members[n]["model"] for n in names], lambda f: mase(f, *args))
    assert list(chosen["weights"]) == list(names) and list(chosen["weights"].values()) == weights
    assert sum(weights) == pytest.approx(1.0) and min(weights) >= 0.0
    assert weights[0] < 0.5  # on this series the classical forecasts earn a share
    for name in names:
        assert chosen["val_mase_members"][name] == pytest.approx(mase(members[name]["model"], *args), rel=1e-6)
    assert chosen["val_mase_members"]["seasonal_naive"] == pytest.approx(run.metrics["val"]["seasonal_naive_mase"],
                                                                          rel=1e-5)
    # the run's metrics are the combination's, on validation and test
    assert run.metrics["val"]["mase"] == pytest.approx(chosen["val_mase"], rel=1e-5)
    assert chosen["val_mase"] < min(chosen["val_mase_members"].values())
    test = {name: _forecasts(run, run.data.test, name) for name in names}
    combined = sum(w * test[n]["model"] for w, n in zip(weights, names, strict=True))
    targs = test["network"]["actual"], test["network"]["series"], test["network"]["scale"]
    assert run.metrics["test"]["mase"] == pytest.approx(mase(combined, *targs), rel=1e-5)
    # saved with the weights: the loaded run forecasts the same
    loaded = Run.load(run_dir)
    np.testing.assert_allclose(find_blend(loaded.model).weight.numpy(), weights, rtol=1e-6)
    frame = _quarters()
    pd.testing.assert_frame_equal(loaded.predict(frame), run.predict(frame))


def test_a_model_saved_with_seasonal_naive_alone_loads_and_forecasts_as_it_did():
    """Runs saved before the other members: an index buffer ``back`` and one weight, the network's."""
    class Linear(torch.nn.Linear):
        def forward(self, x, lengths=None):
            return super().forward(x[..., 0])

    torch.manual_seed(0)
    x = torch.randn(5, WINDOW, 1)
    for members in (1, len(MEMBERS)):
        inner = Linear(WINDOW, HORIZON)
        blend = SeasonalBlend(inner, SEASON, WINDOW, HORIZON, members)
        back = WINDOW - SEASON + torch.arange(HORIZON) % SEASON
        old = {"inner.weight": inner.weight.detach().clone(), "inner.bias": inner.bias.detach().clone(),
               "back": back, "weight": torch.tensor(0.3)}
        blend.load_state_dict(old)
        assert blend.weight.tolist() == pytest.approx([0.3, 0.7] + [0.0] * (members - 1))
        with torch.no_grad():
            expected = 0.3 * inner(x) + 0.7 * x[:, back, 0]
            torch.testing.assert_close(blend(x), expected)


def test_blend_seasonal_naive_combines_with_that_alone_and_one_season_allows_nothing_else():
    cfg = tiny(epochs=2, data={"task": "forecast", "target": "y", "season": SEASON, "window": WINDOW},
               model={"blend": "seasonal_naive"})
    run = train(cfg, source=_quarters(), quiet=True)
    blend = find_blend(run.model)
    assert blend.members == ("network", "seasonal_naive")
    assert list(run.metrics["blend"]["weights"]) == ["network", "seasonal_naive"]
    # its weights as a run saved before the other members held them load into the model Run.load builds
    from palaestra.models.registry import build_model

    w = float(blend.weight[0])
    assert 0.0 < w < 1.0  # both parts count
    saved = {k: v for k, v in run.model.state_dict().items() if k != "maps"}
    saved |= {"back": WINDOW - SEASON + torch.arange(1) % SEASON, "weight": torch.tensor(w)}
    rebuilt = build_model(run.spec, run.config.model)
    rebuilt.load_state_dict(saved)
    split = run.data.test
    np.testing.assert_allclose(split_outputs(rebuilt, split, CPU), split_outputs(run.model, split, CPU), rtol=1e-6)
    assert SeasonalBlend(torch.nn.Identity(), SEASON, SEASON + 3, 1).members == ("network", "seasonal_naive")


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
    # the first training is the plain run: same validation scores, same blend weights
    assert run.metrics["val"] == plain.metrics["val"] and run.metrics["blend"] == plain.metrics["blend"]
    assert run.metrics["refit"]["epochs"] == plain.metrics["best_epoch"]
    # the kept model trained on the validation rows as well, and forecasts the same test origins
    assert set(plain.data.val.index) <= set(run.data.train.index) and len(run.data.val) == 0
    np.testing.assert_array_equal(run.data.test.index, plain.data.test.index)
    np.testing.assert_allclose(find_blend(run.model).weight.numpy(), list(run.metrics["blend"]["weights"].values()))
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
    assert 0.0 < run.metrics["blend"]["weights"]["network"] < 1.0  # every member counts
    rows = _quarters().tail(8)  # one window: the forecast beyond the data
    path, check = export(loaded, "onnx", tmp_path / "model.onnx")
    assert check.ok, check
    exported = predict_exported(path, rows)
    np.testing.assert_allclose(exported, loaded.outputs(rows), atol=1e-4)
    blend = find_blend(loaded.model)
    blend.weight.zero_()
    blend.weight[0] = 1.0  # the network alone forecasts otherwise: the export holds the classical members too
    assert not np.allclose(exported, loaded.outputs(rows), atol=1e-3)
