"""Reversible normalisation of forecast windows (Kim et al. 2022, "RevIN"; the residual-to-last-value variant).

Windows are scaled with the training split's statistics, so a series that trends beyond its training range
shows the model levels it has never seen. Seen relative to each window's own level instead, every window
looks alike: the model predicts the change, and the level is added back to its output.
"""

from __future__ import annotations

import torch
from torch import nn


class WindowNorm(nn.Module):
    """Wraps a forecaster ``f(x (B, T, F), lengths) -> (B, 1)`` (feature 0 is the target's history).

    ``last``: ``f(x - x[:, -1]) + x[:, -1, 0]``. ``mean``: each window standardised by its own mean and spread,
    the forecast rescaled by the target's.
    """

    def __init__(self, inner: nn.Module, mode: str):
        super().__init__()
        self.inner, self.mode = inner, mode

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        if self.mode == "last":
            level = x[:, -1:, :]  # (batch, 1, features)
            return self.inner(x - level, lengths) + level[:, 0, :1]
        level = x.mean(dim=1, keepdim=True)
        spread = x.std(dim=1, keepdim=True, unbiased=False).clamp(min=1e-5)
        return self.inner((x - level) / spread, lengths) * spread[:, 0, :1] + level[:, 0, :1]
