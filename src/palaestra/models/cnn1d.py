"""1-D convolutional network for sequences and token sequences: (conv -> batch norm -> activation -> pool) blocks.

The ``cnn`` family builds this when the data is a sequence (``spec.kind`` is ``sequence`` or ``tokens``).
"""

from __future__ import annotations

import torch
from torch import nn

from palaestra.config import ModelConfig
from palaestra.data.spec import FeatureSpec
from palaestra.errors import ConfigError
from palaestra.models.layers import activation, dense_stack


class CNN1D(nn.Module):
    """``forward(x (B, T, F) float or (B, T) token ids, lengths (B,) | None)`` -> ``(B, n_outputs)``.

    Padded steps are zeroed before every convolution block, so padding carries no signal.
    """

    def __init__(self, steps: int, features: int, channels: list[int], hidden: list[int], n_outputs: int,
                 act: str = "relu", dropout: float = 0.0, kernel_size: int = 3, batch_norm: bool = True,
                 vocab_size: int | None = None, embedding_dim: int = 32):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, embedding_dim, padding_idx=0) if vocab_size else None
        c_in = embedding_dim if vocab_size else features
        self.blocks = nn.ModuleList()
        t = steps
        for c_out in channels:
            layers: list[nn.Module] = [nn.Conv1d(c_in, c_out, kernel_size, padding=kernel_size // 2, bias=not batch_norm)]
            if batch_norm:
                layers.append(nn.BatchNorm1d(c_out))
            layers.append(activation(act))
            if t >= 2:  # halve the time axis while it is longer than one step
                layers.append(nn.MaxPool1d(2))
                t //= 2
            self.blocks.append(nn.Sequential(*layers))
            c_in = c_out
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.body, width = dense_stack(c_in * t, hidden, act, dropout)
        self.head = nn.Linear(width, n_outputs)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        if self.embed is not None:
            x = self.embed(x)  # (B, T) -> (B, T, E)
        z = x.transpose(1, 2)  # (batch, features, time)
        for block in self.blocks:
            if lengths is not None:
                t = z.shape[-1]
                # a step of this resolution is real if it starts before the (rescaled) length
                scale = x.shape[1] / t
                keep = torch.arange(t, device=z.device)[None, :] * scale < lengths[:, None]
                z = z * keep[:, None, :].to(z.dtype)
            z = block(z)
        return self.head(self.body(self.dropout(z.flatten(1))))


def build_cnn1d(spec: FeatureSpec, cfg: ModelConfig) -> nn.Module:
    if spec.task == "language_model":
        raise ConfigError("model.family 'cnn' cannot be a language model: use transformer, gru, lstm or rnn")
    steps, features = (spec.input_shape or [1, 1])[:2] if spec.kind == "sequence" else ((spec.input_shape or [1])[0], 1)
    vocab = spec.extra.get("vocab_size") if spec.kind == "tokens" else None
    return CNN1D(steps, features, cfg.channels, cfg.hidden, spec.n_outputs, cfg.activation, cfg.dropout,
                 cfg.kernel_size, cfg.batch_norm, vocab_size=vocab, embedding_dim=cfg.embedding_dim or 32)
