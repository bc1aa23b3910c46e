"""Multi-layer perceptron for tables: embeddings for high-cardinality categories, then dense layers."""

from __future__ import annotations

import torch
from torch import nn

from palaestra.config import ModelConfig
from palaestra.data.spec import FeatureSpec
from palaestra.models.layers import dense_stack
from palaestra.models.registry import register


class MLP(nn.Module):
    """``forward(numeric (B, n_numeric), categorical (B, n_embedded))`` -> ``(B, n_outputs)`` logits or values."""

    def __init__(self, n_numeric: int, embeddings: list[tuple[int, int]], hidden: list[int], n_outputs: int,
                 activation: str = "relu", dropout: float = 0.0):
        super().__init__()
        self.embeddings = nn.ModuleList(nn.Embedding(card, dim) for card, dim in embeddings)
        n_in = n_numeric + sum(dim for _, dim in embeddings)
        self.body, width = dense_stack(n_in, hidden, activation, dropout)
        self.head = nn.Linear(width, n_outputs)

    def forward(self, numeric: torch.Tensor, categorical: torch.Tensor | None = None) -> torch.Tensor:
        if len(self.embeddings):
            parts = [numeric] + [emb(categorical[:, i]) for i, emb in enumerate(self.embeddings)]
            numeric = torch.cat(parts, dim=1)
        return self.head(self.body(numeric))


class VectorMLP(MLP):
    """MLP over a flat float array: ``forward(x (B, F))``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return self.head(self.body(x.flatten(1)))


@register("mlp", kinds=("table", "vector", "image"), default_for=("table", "vector"))
def build_mlp(spec: FeatureSpec, cfg: ModelConfig) -> nn.Module:
    if spec.kind == "table":
        return MLP(spec.n_numeric, spec.embeddings, cfg.hidden, spec.n_outputs, cfg.activation, cfg.dropout)
    n_in = 1
    for d in spec.input_shape or []:
        n_in *= d
    return VectorMLP(n_in, [], cfg.hidden, spec.n_outputs, cfg.activation, cfg.dropout)
