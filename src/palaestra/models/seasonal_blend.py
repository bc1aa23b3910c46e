"""A forecast combined with classical seasonal forecasts of the same window, the weights fitted on the validation span.

A network fitted to a short, noisy series can do worse than repeating last season, and which of the two wins
differs from series to series. Combining forecasts is the field's oldest robust answer (Bates and Granger 1969;
the M competitions' simple combinations; AutoGluon-TimeSeries' weighted ensemble of its network with its
seasonal-naive model, the weights chosen on a validation window). Here the network is combined with classical
forecasts that are fixed linear maps of the window it sees (so they cost a matrix product, and predict, serve and
the ONNX export apply them as they apply the network):

- ``seasonal_naive``: last season repeated;
- ``seasonal_mean``: the seasonal profile averaged over the window's whole seasons, at the last season's level
  (the seasonal-naive forecast with less of one year's noise);
- ``seasonal_drift``: seasonal naive plus the window's season-on-season drift (its last season's mean minus its
  first's, per season).

The weights are non-negative and sum to one. The network trains alone (weight 1); the weights are chosen after
training, on the validation span: greedy forward selection (Caruana et al. 2004, as AutoGluon's weighted ensemble),
then shrunk half-way toward equal weights over the members that forecast the validation span within 1.5 times the
best one's MASE. Weights fitted on a short validation span overfit it, and equal weights often forecast better out
of sample than fitted ones (the "forecast combination puzzle": Stock and Watson 2004, Smith and Wallis 2009); the
trim keeps a member that is far off (a wrong season, a network that did not learn) out of the equal share
(trimmed means of forecasts: Jose and Winkler 2008). BENCHMARKS.md ("Forecasting real series") has the choice's
figures.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn

MEMBERS = ("seasonal_naive", "seasonal_mean", "seasonal_drift")  # besides the network, in this order
ROUNDS = 20  # greedy selection's rounds: the fitted weights are multiples of 1/20
SHRINK = 0.5  # the share of the fitted weights in the final ones; the rest is equal weights ...
TRIM = 1.5  # ... over the members whose validation score is at most this times the best one's


def member_maps(season: int, window: int, horizon: int, members: int = len(MEMBERS)) -> torch.Tensor:
    """``(members, horizon, window)``: the first ``members`` classical forecasts as linear maps of the window's
    values (the last column is the last observed step). With one whole season in the window, only seasonal naive
    (the others need two)."""
    seasons = window // season
    maps = torch.zeros(members if seasons >= 2 else 1, horizon, window, dtype=torch.float64)
    for k in range(horizon):
        phase, ahead = k % season, k // season + 1  # step k+1 is `ahead` seasons after its phase's last value
        maps[0, k, window - season + phase] = 1.0
        if len(maps) == 1:
            continue
        for j in range(seasons):  # season j back: window positions [window - (j+1)s, window - js)
            start = window - (j + 1) * season
            maps[1, k, start + phase] += 1.0 / seasons  # the phase's mean over the seasons ...
            maps[1, k, start:start + season] -= 1.0 / (seasons * season)  # ... less their mean level ...
        maps[1, k, window - season:] += 1.0 / season  # ... at the last season's level
        maps[2, k] = maps[0, k]
        maps[2, k, window - season:] += ahead / (season * (seasons - 1))  # the drift per season, `ahead` times
        maps[2, k, window - seasons * season:window - (seasons - 1) * season] -= ahead / (season * (seasons - 1))
    return maps.float()


class SeasonalBlend(nn.Module):
    """Wraps a forecaster ``f(x (B, T, F), lengths) -> (B, H)`` (feature 0: the target's scaled history, the first
    ``window`` steps observed). ``weight``: the network's, then each of ``MEMBERS``' (those the window allows).
    The maps are affine-equivariant (each row sums to one), so they commute with the target's scaling."""

    def __init__(self, inner: nn.Module, season: int, window: int, horizon: int, members: int = len(MEMBERS)):
        super().__init__()
        if window < season:
            raise ValueError(f"a window of {window} steps does not hold a season of {season}")
        self.inner, self.window = inner, window
        self.register_buffer("maps", member_maps(season, window, horizon, members))
        weight = torch.zeros(1 + len(self.maps))
        weight[0] = 1.0  # the network alone while it trains
        self.register_buffer("weight", weight)

    @property
    def members(self) -> tuple[str, ...]:
        return ("network", *MEMBERS[:len(self.maps)])

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        out = self.inner(x, lengths)
        combined = torch.tensordot(self.weight[1:], self.maps, dims=1)  # (H, window): one linear map
        classical = x[:, :self.window, 0] @ combined.T
        return self.weight[0] * out + classical.reshape(out.shape)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003
        # a run saved with seasonal naive alone: its index buffer and one weight, the network's
        if prefix + "back" in state_dict:
            del state_dict[prefix + "back"]
            old = float(state_dict[prefix + "weight"])
            state_dict[prefix + "maps"] = self.maps.clone()
            state_dict[prefix + "weight"] = torch.zeros_like(self.weight)
            state_dict[prefix + "weight"][:2] = torch.tensor([old, 1.0 - old])
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


def find_blend(model: nn.Module) -> SeasonalBlend | None:
    return next((m for m in model.modules() if isinstance(m, SeasonalBlend)), None)


def choose_weights(forecasts: list[np.ndarray], score: Callable[[np.ndarray], float], rounds: int = ROUNDS,
                   shrink: float = SHRINK, trim: float = TRIM) -> list[float]:
    """Greedy forward selection with replacement: ``rounds`` times, add the member whose addition scores lowest (on
    ties, the earlier member: the network first); a member's fitted weight is the share of rounds that chose it.
    The weights returned are ``shrink`` times the fitted ones plus ``1 - shrink`` times equal weights over the
    members that score at most ``trim`` times the best member alone."""
    counts = np.zeros(len(forecasts))
    total = np.zeros_like(forecasts[0], dtype=np.float64)
    for r in range(1, rounds + 1):
        trial = np.nan_to_num([score((total + f) / r) for f in forecasts], nan=np.inf)  # a NaN forecast: last
        best = int(np.argmin(trial))  # argmin: the first of equal scores
        counts[best] += 1
        total += forecasts[best]
    alone = np.array([score(f) for f in forecasts])
    kept = alone <= trim * np.nanmin(alone) if np.isfinite(alone).any() else np.ones(len(alone), bool)
    equal = kept / kept.sum()
    return [shrink * float(c) / rounds + (1.0 - shrink) * float(e) for c, e in zip(counts, equal, strict=True)]
