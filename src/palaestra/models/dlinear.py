"""DLinear (Zeng et al. 2023, "Are Transformers Effective for Time Series Forecasting?"): each window split into a
trend (its moving average) and the rest, and one linear map from each part to the forecast. Cheap, and on real
series a strong default: a linear model on a decomposition beats many deep forecasters.

It starts at zero, which under the default window normalisation (``model.window_norm: last``: inputs and
forecast relative to the window's last value) is the persistence forecast: training moves it away from
persistence only where the data pays for it, and weight decay pulls it back.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from palaestra.config import ModelConfig
from palaestra.data.spec import FeatureSpec
from palaestra.models.registry import register

KERNEL = 25  # the moving average's width (the paper's), cut to the window


class DLinear(nn.Module):
    """``forward(x (B, T, F), lengths) -> (B, n_outputs)``: linear maps of the trend and the remainder of every
    feature over the whole window."""

    keeps_init = True

    def __init__(self, steps: int, features: int, n_outputs: int, kernel: int = KERNEL):
        super().__init__()
        width = min(kernel, steps)
        self.kernel = width if width % 2 else width - 1  # odd (centred), at most the window
        self.trend = nn.Linear(steps * features, n_outputs)
        self.remainder = nn.Linear(steps * features, n_outputs)
        for layer in (self.trend, self.remainder):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        half = self.kernel // 2
        z = x.transpose(1, 2)  # (B, F, T)
        padded = F.pad(z, (half, half), mode="replicate") if half else z
        trend = F.avg_pool1d(padded, self.kernel, stride=1)
        return self.trend(trend.flatten(1)) + self.remainder((z - trend).flatten(1))


@register("dlinear", kinds=("sequence",), default_for=("forecast",), size_knobs=("data.window",))
def build_dlinear(spec: FeatureSpec, cfg: ModelConfig) -> nn.Module:
    steps, features = spec.input_shape or [1, 1]
    return DLinear(int(steps), int(features), spec.n_outputs)
