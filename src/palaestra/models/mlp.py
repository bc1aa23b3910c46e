"""The ``mlp`` family: the feature model for tables (``models.tabular``), and a dense network for flat arrays."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

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


# Tables of numbers and categories (no text column), chosen on the validation scores of the 13-table suite
# (benchmarks/tables.py; BENCHMARKS.md "Tables against gradient boosting"): eight members sharing two layers of
# 64 (TabM-like) with no dropout (the ensemble regularises; dropout 0.2 doubled its step time), in batches of
# 256 rows, or an eighth of the training rows on small tables (at least 32).
TABLE_MODEL = {"model.combiner": "concat", "model.ensemble": 8, "model.hidden": [64, 64]}


def table_recipes(spec: FeatureSpec, rows: int, set_by_user: Callable[[str], bool]) -> dict[str, Any]:
    """The table defaults. A user who describes the network (its width, members, combiner or initial weights) gets
    that network (with the plain defaults: dropout 0.2); one who sets only the dropout (a tuning trial) keeps the
    ensemble."""
    if spec.kind != "table" or spec.texts or spec.task not in ("classification", "regression", "multi_target"):
        return {}
    batch = 1 << max(5, min(8, (max(rows, 1) // 8).bit_length() - 1))  # a power of two in 32..256
    recipe: dict[str, Any] = {"train.batch_size": batch}
    # model.init (e.g. warm-starting from an earlier run) describes the network too: its weights fit the plain one
    if not any(set_by_user(path) for path in (*TABLE_MODEL, "model.init")):
        recipe |= {**TABLE_MODEL, "model.dropout": 0.0}
    return recipe


@register("mlp", kinds=("table", "vector", "image"), default_for=("table", "vector"), arrays_as="vector",
          recipes=table_recipes)
def build_mlp(spec: FeatureSpec, cfg: ModelConfig) -> nn.Module:
    if spec.kind == "table":
        return build_tabular(spec, cfg, cfg.text_encoder if cfg.text_encoder != "auto" else "bag")
    return VectorMLP(math.prod(spec.input_shape or [1]), cfg.hidden, spec.n_outputs, cfg.activation, cfg.dropout)
