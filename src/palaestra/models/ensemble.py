"""k networks for little more than the price of one: BatchEnsemble (Wen et al. 2020) as TabM trains it on tables
(Gorishniy et al. 2024, "TabM: advancing tabular deep learning with parameter-efficient ensembling").

The k members share every dense layer's weight matrix ``W``; member ``i`` scales that layer's input by its own
vector ``r_i`` and its output by ``s_i`` and adds its own bias, and has a head of its own. The first layer's
``r_i`` start as random signs, so the members differ from the first step; every other scale starts at 1. While
training, the model returns every member's output, ``(B, k, outputs)``, and each member is scored on its own
(``training.losses.MemberLoss``): k models that learn apart, not one wide model. In evaluation it returns the
members' mean, ``(B, outputs)``, as any other model.

Member ``i``'s layer is ``x @ (r_i[:, None] * W.T * s_i[None, :]) + b_i``: the scales are folded into k small
weight matrices and the members run as one batched matmul over ``(k, B, width)`` activations, so no scaling
touches the (much larger) activations: 1.3-1.6x faster per training step on the CPU than scaling them
(``benchmarks/ensemble_step.py``).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from palaestra.models.layers import activation


def float_weight(linear: nn.Module) -> torch.Tensor:
    """The float ``(out, in)`` weight of a Linear layer as its forward would use it: pruned (``weight_orig`` x
    ``weight_mask``, torch.nn.utils.prune's reparametrisation) or int8 (``Int8Linear``) included."""
    if hasattr(linear, "weight_mask"):
        return linear.weight_orig * linear.weight_mask
    dequantized = getattr(linear, "float_weight", None)
    return dequantized() if dequantized is not None else linear.weight


class EnsembleLinear(nn.Module):
    """``(k, B, n_in) -> (k, B, n_out)`` (or ``(B, n_in)``, the same input for every member). ``W`` lives in
    ``self.linear`` (no bias), so weight initialisation, pruning and int8 compression treat it as any linear
    layer; ``r``, ``s`` and the bias are per member."""

    def __init__(self, n_in: int, n_out: int, k: int, random_signs: bool):
        super().__init__()
        self.linear = nn.Linear(n_in, n_out, bias=False)
        r = torch.ones(k, n_in)
        if random_signs:
            r = torch.where(torch.rand(k, n_in) < 0.5, -1.0, 1.0)
        self.r = nn.Parameter(r)
        self.s = nn.Parameter(torch.ones(k, n_out))
        bound = 1 / math.sqrt(n_in)  # nn.Linear's bias initialisation, drawn per member
        self.bias = nn.Parameter(torch.empty(k, n_out).uniform_(-bound, bound))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weights = self.r.unsqueeze(2) * float_weight(self.linear).t() * self.s.unsqueeze(1)  # (k, n_in, n_out)
        if x.dim() == 2:
            return torch.matmul(x, weights) + self.bias.unsqueeze(1)
        return torch.baddbmm(self.bias.unsqueeze(1), x, weights)


class MemberHeads(nn.Module):
    """One linear head per member: ``(k, B, width) -> (k, B, outputs)``, each initialised as nn.Linear would be."""

    def __init__(self, width: int, n_outputs: int, k: int):
        super().__init__()
        bound = 1 / math.sqrt(width)
        self.weight = nn.Parameter(torch.empty(k, width, n_outputs).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(k, n_outputs).uniform_(-bound, bound))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return torch.baddbmm(self.bias.unsqueeze(1), h, self.weight)


class EnsembleMLP(nn.Module):
    """Dense layers and heads of ``k`` members: ``(B, n_in)`` -> ``(B, k, outputs)`` training, ``(B, outputs)``
    in evaluation (the members' mean)."""

    def __init__(self, n_in: int, hidden: list[int], n_outputs: int, act: str, dropout: float, k: int):
        super().__init__()
        self.k = k
        layers: list[nn.Module] = []
        for i, width in enumerate(hidden):
            layers += [EnsembleLinear(n_in, width, k, random_signs=i == 0), activation(act)]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            n_in = width
        self.layers = nn.Sequential(*layers)
        self.heads = MemberHeads(n_in, n_outputs, k)  # registered last: parameters list input to output

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.layers(x) if len(self.layers) else x.expand(self.k, -1, -1)  # (k, B, width)
        out = self.heads(h)  # (k, B, outputs)
        return out.transpose(0, 1) if self.training else out.mean(dim=0)
