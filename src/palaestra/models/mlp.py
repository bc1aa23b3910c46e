"""The ``mlp`` family: the feature model for tables (``models.tabular``), and a dense network for flat arrays."""

from __future__ import annotations

import math

import torch
from torch import nn

from palaestra.config import ModelConfig
from palaestra.data.spec import FeatureSpec
from palaestra.models.layers import dense_stack
from palaestra.models.registry import register
from palaestra.models.tabular import build_tabular


class VectorMLP(nn.Module):
    """Dense layers over a flat float array: ``forward(x (B, ...))`` -> ``(B, n_outputs)``."""

    def __init__(self, n_in: int, hidden: list[int], n_outputs: int, activation: str = "relu", dropout: float = 0.0):
        super().__init__()
        self.body, width = dense_stack(n_in, hidden, activation, dropout)
        self.head = nn.Linear(width, n_outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x.flatten(1)))


@register("mlp", kinds=("table", "vector", "image"), default_for=("table", "vector"), arrays_as="vector")
def build_mlp(spec: FeatureSpec, cfg: ModelConfig) -> nn.Module:
    if spec.kind == "table":
        return build_tabular(spec, cfg, cfg.text_encoder if cfg.text_encoder != "auto" else "bag")
    return VectorMLP(math.prod(spec.input_shape or [1]), cfg.hidden, spec.n_outputs, cfg.activation, cfg.dropout)
