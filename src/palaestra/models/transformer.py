"""The ``transformer`` family: multi-head self-attention with sinusoidal positional encoding.

An encoder (padding masked, masked mean pooling, then a classification or regression head) for sequences and
token sequences, and a causal decoder-only variant (each position attends to itself and the past only) for
the character language model.
"""

from __future__ import annotations

import torch
from torch import nn

from palaestra.config import ModelConfig
from palaestra.data.spec import FeatureSpec
from palaestra.errors import ConfigError
from palaestra.models.positions import sinusoidal_positions
from palaestra.models.registry import register
from palaestra.models.rnn import SEQUENCE_TIME_LIMIT
from palaestra.models.tabular import build_text_table


class TransformerNet(nn.Module):
    """``forward(x (B, T, F) float or (B, T) token ids, lengths (B,) | None)``.

    Returns ``(B, n_outputs)``, or ``(B, T, vocab)`` next-token logits when ``causal``.
    """

    def __init__(self, n_in: int, max_len: int, d_model: int, heads: int, layers: int, ff_dim: int, n_outputs: int,
                 dropout: float = 0.1, vocab_size: int | None = None, causal: bool = False, kernel_size: int = 1):
        super().__init__()
        if d_model % heads:
            raise ConfigError(f"model.d_model ({d_model}) must be divisible by model.heads ({heads})")
        self.causal, self.max_len = causal, max_len
        # Tokens: an embedding. Real-valued steps: a convolution over `kernel_size` neighbouring steps, so each
        # token carries a local shape, not a lone scalar (a single-feature step gives attention little to match).
        self.embed = nn.Embedding(vocab_size, d_model) if vocab_size else None
        self.stem = None if vocab_size else nn.Conv1d(n_in, d_model, kernel_size, padding=kernel_size // 2)
        self.register_buffer("positions", sinusoidal_positions(max_len, d_model), persistent=False)
        self.dropout = nn.Dropout(dropout)
        layer = nn.TransformerEncoderLayer(d_model, heads, ff_dim, dropout, activation="gelu", batch_first=True,
                                           norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, n_outputs)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        t = x.shape[1]
        if t > self.max_len:
            raise ValueError(f"sequence of {t} steps is longer than the model's {self.max_len}")
        pad = None
        if lengths is not None:
            pad = torch.arange(t, device=x.device)[None, :] >= lengths[:, None]  # True = padding
        if self.embed is not None:
            h = self.embed(x)
        else:
            if pad is not None:
                x = x.masked_fill(pad.unsqueeze(-1), 0.0)  # the stem must not read padding
            h = self.stem(x.transpose(1, 2)).transpose(1, 2)
        h = self.dropout(h + self.positions[:t])  # (batch, time, d_model)
        if self.causal:
            mask = nn.Transformer.generate_square_subsequent_mask(t, device=x.device, dtype=h.dtype)
            return self.head(self.norm(self.encoder(h, mask=mask, is_causal=True)))
        h = self.norm(self.encoder(h, src_key_padding_mask=pad))
        if pad is None:
            pooled = h.mean(dim=1)
        else:
            keep = (~pad).unsqueeze(-1).to(h.dtype)
            pooled = (h * keep).sum(dim=1) / keep.sum(dim=1).clamp(min=1.0)
        return self.head(pooled)


@register("transformer", kinds=("sequence", "tokens", "table"), default_for=("tokens",), arrays_as="sequence",
          defaults={"train.time_limit": SEQUENCE_TIME_LIMIT},
          size_knobs=("model.d_model", "model.layers"))
def build_transformer(spec: FeatureSpec, cfg: ModelConfig) -> nn.Module:
    if spec.kind == "table":  # a table's text columns are read by self-attention
        return build_text_table(spec, cfg, "transformer")
    shape = spec.input_shape or [1, 1]
    vocab = int(spec.extra["vocab_size"]) if spec.kind == "tokens" else None
    return TransformerNet(shape[-1] if spec.kind == "sequence" else 1, shape[0], cfg.d_model, cfg.heads, cfg.layers,
                          cfg.ff_dim or 4 * cfg.d_model, spec.n_outputs, cfg.dropout, vocab_size=vocab,
                          causal=spec.task == "language_model", kernel_size=cfg.kernel_size)
