"""The learning-rate range test: the lr schedule it applies, when it stops, and what it suggests."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from palaestra.cli import main
from palaestra.tuning.lr_find import RangeTest, _RangeDone, lr_find, suggest


def test_lrs_grow_exponentially_and_the_test_stops_once_the_loss_passes_4x_its_best():
    param = torch.nn.Parameter(torch.zeros(1))
    state = SimpleNamespace(optimizer=torch.optim.SGD([param], lr=1.0))
    test = RangeTest(1e-6, 1.0, steps=7, beta=0.0)  # beta 0: no smoothing, so the rule is exact
    test.on_train_begin(state)
    assert state.optimizer.param_groups[0]["lr"] == pytest.approx(1e-6)
    losses = [1.0, 0.8, 0.5, 0.6, 1.9, 2.1]  # 2.1 > 4 x 0.5
    with pytest.raises(_RangeDone):
        for loss in losses:
            test.on_batch_end(state, torch.tensor(loss))
    assert test.lrs == pytest.approx([10.0 ** (-6 + i) for i in range(6)])
    assert "exceeded 4x" in test.stop_reason and len(test.smoothed) == 6


def test_suggest_finds_the_steepest_descent_before_the_minimum():
    lrs = np.logspace(-6, 0, 61)
    x = np.log10(lrs)
    loss = 1 - np.tanh(2 * (x + 3)) + np.where(x > -1, 50 * (x + 1) ** 2, 0)  # steepest at 1e-3, min near 1e-1
    min_lr, _, steepest, suggested = suggest(list(lrs), list(loss))
    assert steepest == pytest.approx(1e-3, rel=0.01) and suggested == steepest
    assert -1.5 < math.log10(min_lr) < -0.5
    # Too few points before the minimum: fall back to min / 10.
    assert suggest([1e-3, 1e-2, 1e-1], [1.0, 2.0, 3.0])[3] == pytest.approx(1e-4)


def test_lr_find_on_iris_writes_a_plot_and_suggests_a_sensible_lr(tmp_path, capsys):
    n = torch.get_num_threads()
    try:
        code = main(["lr-find", "--data", "iris", "--set", "model.hidden=[8]", "--set", "train.threads=1",
                     "--set", "train.batch_size=16", "--steps", "60", "--out", str(tmp_path)])
    finally:
        torch.set_num_threads(n)
    assert code == 0
    out = capsys.readouterr().out
    assert "suggested lr" in out
    assert (tmp_path / "lr_find.png").stat().st_size > 1000
    result = lr_find({"data": {"source": "iris"}, "model": {"hidden": [8]}, "train": {"batch_size": 16}}, steps=60)
    ratios = np.diff(np.log(result.lrs))
    assert np.allclose(ratios, ratios[0]) and result.lrs[0] == pytest.approx(1e-7)
    # Adam on iris: the loss falls somewhere between 1e-4 and 1, and the suggestion lies before the minimum.
    assert 1e-5 < result.suggested_lr <= result.min_lr < 10
    assert result.min_loss < result.smoothed[0]
