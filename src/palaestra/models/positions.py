"""Sinusoidal positional encoding (Vaswani et al., 2017), shared by the attention models."""

from __future__ import annotations

import math

import torch


def sinusoidal_positions(length: int, d_model: int) -> torch.Tensor:
    """``(length, d_model)``: sin on even, cos on odd features."""
    pos = torch.arange(length, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, d_model, 2, dtype=torch.float32) * (-math.log(10000.0) / d_model))
    pe = torch.zeros(length, d_model)
    pe[:, 0::2] = torch.sin(pos * freq)
    pe[:, 1::2] = torch.cos(pos * freq)[:, : d_model // 2]
    return pe
