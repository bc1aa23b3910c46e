"""A forecast combined with the seasonal-naive forecast, the weight fitted on the validation span.

A network fitted to a short, noisy series can do worse than repeating last season, and which of the two wins
differs from series to series. Combining forecasts is the field's oldest robust answer (Bates and Granger 1969;
the M competitions' simple combinations; AutoGluon-TimeSeries' weighted ensemble of the network with its
seasonal-naive model, its weights chosen on a validation window). Here the combination is one weight ``w``:
``w * network + (1 - w) * seasonal naive``. It trains at ``w = 1`` (the network alone) and is fitted afterwards on
the validation span; it lives in the model, so predict, serve and the ONNX export all apply it.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn

GRID = np.linspace(0.0, 1.0, 21)  # the network's weights tried on the validation span (steps of 0.05)


class SeasonalBlend(nn.Module):
    """Wraps a forecaster ``f(x (B, T, F), lengths) -> (B, H)`` (feature 0: the target's scaled history, the first
    ``window`` steps observed). The seasonal-naive forecast of step ``k`` (1-based) is the observed value
    ``season * ceil(k / season)`` steps before it, which a window of at least one season always holds."""

    def __init__(self, inner: nn.Module, season: int, window: int, horizon: int):
        super().__init__()
        if window < season:
            raise ValueError(f"a window of {window} steps does not hold a season of {season}")
        self.inner = inner
        self.register_buffer("back", window - season + torch.arange(horizon) % season)  # index into the window
        self.register_buffer("weight", torch.ones(()))  # the network's weight; 1 while it trains

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        out = self.inner(x, lengths)
        seasonal = x[:, self.back, 0].reshape(out.shape)
        return self.weight * out + (1.0 - self.weight) * seasonal


def find_blend(model: nn.Module) -> SeasonalBlend | None:
    return next((m for m in model.modules() if isinstance(m, SeasonalBlend)), None)


def choose_weight(network: np.ndarray, seasonal: np.ndarray, score: Callable[[np.ndarray], float]) -> tuple[float, list[float]]:
    """The grid weight whose combination scores lowest (on ties, the larger weight: the network), and every
    grid point's score."""
    scores = [score(w * network + (1.0 - w) * seasonal) for w in GRID]
    best = min(range(len(GRID)), key=lambda i: (scores[i], -GRID[i]))
    return round(float(GRID[best]), 4), scores
