"""Reversible normalisation of forecast windows (Kim et al. 2022, "RevIN"; the residual-to-last-value variant).

Windows are scaled with the training split's statistics, so a series that trends beyond its training range
shows the model levels it has never seen. Seen relative to each window's own level instead, every window
looks alike: the model predicts the change, and the level is added back to its output.
"""

from __future__ import annotations

import torch
from torch import nn


class WindowNorm(nn.Module):
    """Wraps a forecaster ``f(x (B, T, F), lengths) -> (B, H)`` (feature 0 is the target's history).

    ``last``: ``f(x - x[:, t]) + x[:, t, 0]``, with ``t`` the window's last observed step. ``mean``: each window
    standardised by its own mean and spread over the observed steps, the forecast rescaled by the target's.
    ``observed``: the observed steps, when the window goes on with the horizon's known covariates (None: all).
    """

    def __init__(self, inner: nn.Module, mode: str, observed: int | None = None):
        super().__init__()
        self.inner, self.mode, self.observed = inner, mode, observed

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        seen = x if self.observed is None else x[:, : self.observed]
        if self.mode == "last":
            level = seen[:, -1:, :]  # (batch, 1, features)
            return self.inner(x - level, lengths) + level[:, 0, :1]
        level = seen.mean(dim=1, keepdim=True)
        spread = seen.std(dim=1, keepdim=True, unbiased=False).clamp(min=1e-5)
        return self.inner((x - level) / spread, lengths) * spread[:, 0, :1] + level[:, 0, :1]
