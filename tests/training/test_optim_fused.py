"""optimizer.fused: the opt-in fused kernels train to the same weights as torch's default, up to rounding."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from palaestra.config import OptimizerConfig
from palaestra.errors import ConfigError
from palaestra.training.optim import build_optimizer


def _train(cfg: OptimizerConfig) -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    opt = build_optimizer(model.parameters(), cfg)
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(64, 4, generator=g), torch.randint(0, 3, (64,), generator=g)
    for i in range(0, 64, 16):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x[i:i + 16]), y[i:i + 16]).backward()
        opt.step()
    return model


@pytest.mark.parametrize("name", ["sgd", "adam", "adamw"])
def test_fused_matches_default_up_to_rounding(name):
    default = _train(OptimizerConfig(name=name, lr=0.05))
    fused = _train(OptimizerConfig(name=name, lr=0.05, fused=True))
    assert build_optimizer(fused.parameters(), OptimizerConfig(name=name, fused=True)).defaults["fused"] is True
    for a, b in zip(default.parameters(), fused.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    torch.manual_seed(0)
    assert not torch.equal(default[0].weight, nn.Linear(4, 8).weight)  # it moved from its initial weights


def test_fused_is_off_by_default_and_refused_for_rmsprop():
    assert build_optimizer([nn.Parameter(torch.zeros(2))], OptimizerConfig()).defaults.get("fused") in (None, False)
    with pytest.raises(ConfigError, match="rmsprop"):
        build_optimizer([nn.Parameter(torch.zeros(2))], OptimizerConfig(name="rmsprop", fused=True))
