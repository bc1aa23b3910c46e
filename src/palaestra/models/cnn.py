"""Convolutional network for images: (conv -> batch norm -> activation -> max-pool) blocks, then dense."""

from __future__ import annotations

import torch
from torch import nn

from palaestra.config import ModelConfig
from palaestra.data.spec import FeatureSpec
from palaestra.models.layers import activation, dense_stack
from palaestra.models.registry import register


class CNN(nn.Module):
    """``forward(x (B, C, H, W))`` -> ``(B, n_outputs)``."""

    def __init__(self, input_shape: list[int], channels: list[int], hidden: list[int], n_outputs: int,
                 act: str = "relu", dropout: float = 0.0, kernel_size: int = 3, batch_norm: bool = True):
        super().__init__()
        c_in, h, w = input_shape
        blocks: list[nn.Module] = []
        for c_out in channels:
            blocks += [nn.Conv2d(c_in, c_out, kernel_size, padding=kernel_size // 2, bias=not batch_norm)]
            if batch_norm:
                blocks.append(nn.BatchNorm2d(c_out))
            blocks.append(activation(act))
            if min(h, w) >= 2:  # pool while the map is still larger than one pixel
                blocks.append(nn.MaxPool2d(2))
                h, w = h // 2, w // 2
            c_in = c_out
        self.features = nn.Sequential(*blocks)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.body, width = dense_stack(c_in * h * w, hidden, act, dropout)
        self.head = nn.Linear(width, n_outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.features(x).flatten(1)  # (batch, channels * h * w)
        return self.head(self.body(self.dropout(z)))


@register("cnn", kinds=("image", "sequence"), default_for=("image", "sequence"), channels_last=True,
          size_knobs=("model.channels", "model.hidden"))
def build_cnn(spec: FeatureSpec, cfg: ModelConfig) -> nn.Module:
    if spec.kind == "sequence":
        from palaestra.models.cnn1d import build_cnn1d

        return build_cnn1d(spec, cfg)
    return CNN(list(spec.input_shape or []), cfg.channels, cfg.hidden, spec.n_outputs, cfg.activation,
               cfg.dropout, cfg.kernel_size, cfg.batch_norm)
