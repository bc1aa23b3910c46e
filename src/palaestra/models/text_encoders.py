"""Encoders for the text columns of a table: token ids ``(B, L)`` (0 = padding) -> a vector ``(B, width)``.

``bag``: the mean of the words' embeddings (fastText-like; fast, strong on little data). ``gru``/``lstm``/
``rnn``: the final state of a recurrent network over the packed sequence. ``transformer``: self-attention
with sinusoidal positions and masked mean pooling. ``minilm``: the pretrained sentence encoder
(``pretrained_text.py``, the ``text`` extra).
"""

from __future__ import annotations

import torch
from torch import nn

from palaestra.config import ModelConfig
from palaestra.errors import ConfigError
from palaestra.models.positions import sinusoidal_positions
from palaestra.models.recurrent import RECURRENT, final_state

TEXT_ENCODERS = ("bag", "gru", "lstm", "rnn", "transformer", "minilm")


def _mask(ids: torch.Tensor) -> torch.Tensor:
    """(B, L) True where a real token is."""
    return ids != 0


class BagEncoder(nn.Module):
    def __init__(self, vocab_size: int, dim: int):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, dim, padding_idx=0)
        self.width = dim

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        keep = _mask(ids).unsqueeze(-1).to(self.embed.weight.dtype)
        return (self.embed(ids) * keep).sum(1) / keep.sum(1).clamp(min=1.0)


class RecurrentEncoder(nn.Module):
    def __init__(self, cell: str, vocab_size: int, dim: int, hidden_size: int, layers: int, bidirectional: bool,
                 dropout: float):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, dim, padding_idx=0)
        self.rnn = RECURRENT[cell](dim, hidden_size, num_layers=layers, batch_first=True, bidirectional=bidirectional,
                                   dropout=dropout if layers > 1 else 0.0)
        self.directions = 2 if bidirectional else 1
        self.width = hidden_size * self.directions

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return final_state(self.rnn, self.embed(ids), _mask(ids).sum(1), self.directions)


class TransformerTextEncoder(nn.Module):
    def __init__(self, vocab_size: int, max_length: int, d_model: int, heads: int, layers: int, ff_dim: int,
                 dropout: float):
        super().__init__()
        if d_model % heads:
            raise ConfigError(f"model.d_model ({d_model}) must be divisible by model.heads ({heads})")
        self.embed = nn.Embedding(vocab_size, d_model, padding_idx=0)
        self.register_buffer("positions", sinusoidal_positions(max_length, d_model), persistent=False)
        layer = nn.TransformerEncoderLayer(d_model, heads, ff_dim, dropout, activation="gelu", batch_first=True,
                                           norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d_model)
        self.width = d_model

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        keep = _mask(ids)
        pad = ~keep
        pad[:, 0] = False  # an all-padding text still attends to its first position
        h = self.norm(self.encoder(self.embed(ids) + self.positions[: ids.shape[1]], src_key_padding_mask=pad))
        weight = keep.unsqueeze(-1).to(h.dtype)
        return (h * weight).sum(1) / weight.sum(1).clamp(min=1.0)


def build_text_encoder(name: str, text: dict, cfg: ModelConfig) -> nn.Module:
    """The encoder ``model.text_encoder`` names for the text feature ``text`` (its spec entry), sized by the
    model config (``embedding_dim``, ``hidden_size``...)."""
    if name == "minilm":  # the `text` extra, imported when asked for
        from palaestra.models.pretrained_text import MiniLMEncoder

        return MiniLMEncoder(text, cfg.text_mode, cfg.text_finetune_layers, cfg.text_lr_scale)
    if text.get("tokenizer", "words") != "words":
        raise ConfigError(f"text column '{text['name']}' was cut into {text['tokenizer']} tokens, which only "
                          f"model.text_encoder {text['tokenizer']} reads")
    vocab_size, max_length = text["vocab_size"], text["max_length"]
    dim = cfg.embedding_dim or 64  # measured: 64 beat 32 on a mixed table with a text column (issue 13 note)
    if name == "bag":
        return BagEncoder(vocab_size, dim)
    if name in RECURRENT:
        return RecurrentEncoder(name, vocab_size, dim, cfg.hidden_size, cfg.layers, cfg.bidirectional, cfg.dropout)
    if name == "transformer":
        return TransformerTextEncoder(vocab_size, max_length, cfg.d_model, cfg.heads, cfg.layers,
                                      cfg.ff_dim or 4 * cfg.d_model, cfg.dropout)
    raise ConfigError(f"unknown model.text_encoder '{name}': choose one of {', '.join(TEXT_ENCODERS)}")
