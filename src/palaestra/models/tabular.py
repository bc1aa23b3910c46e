"""The model for tables: one encoder per input feature, a combiner, and one output head per target.

Encoders: the numeric block (numbers, booleans, one-hot categories, date parts) is read as it is; each
embedded category gets an ``nn.Embedding``; each text column the encoder ``model.text_encoder`` names.
Combiners: ``concat`` (the encodings side by side, then the dense layers ``model.hidden``) or ``transformer``
(one token per feature, attention across features, a [CLS] token read out; Gorishniy et al. 2021's
FT-Transformer). The head is one linear layer whose columns are the targets' outputs side by side.
With ``model.ensemble: k > 1`` the dense layers and the head are k members (``models.ensemble``).
"""

from __future__ import annotations

import torch
from torch import nn

from palaestra.config import ModelConfig
from palaestra.data.spec import FeatureSpec
from palaestra.errors import ConfigError
from palaestra.models.ensemble import EnsembleMLP
from palaestra.models.layers import dense_stack
from palaestra.models.text_encoders import build_text_encoder


class TabularModel(nn.Module):
    """``forward(numeric (B, n_numeric), categorical (B, n_embedded), *texts (B, L))`` -> ``(B, n_outputs)``."""

    def __init__(self, spec: FeatureSpec, cfg: ModelConfig, text_encoder: str):
        super().__init__()
        self.embeddings = nn.ModuleList(nn.Embedding(card, dim) for card, dim in spec.embeddings)
        self.texts = nn.ModuleList(build_text_encoder(text_encoder, t, cfg)
                                   for t in spec.texts)
        n_in = spec.n_numeric + sum(dim for _, dim in spec.embeddings) + sum(t.width for t in self.texts)
        if cfg.ensemble > 1:  # the members' heads are part of the ensemble
            self.body: nn.Module = EnsembleMLP(n_in, cfg.hidden, spec.n_outputs, cfg.activation, cfg.dropout,
                                               cfg.ensemble)
            self.head: nn.Module = nn.Identity()
        else:
            self.body, width = dense_stack(n_in, cfg.hidden, cfg.activation, cfg.dropout)
            self.head = nn.Linear(width, spec.n_outputs)

    def forward(self, numeric: torch.Tensor, categorical: torch.Tensor | None = None, *texts: torch.Tensor) -> torch.Tensor:
        parts = [numeric]
        parts += [emb(categorical[:, i]) for i, emb in enumerate(self.embeddings)]
        parts += [encode(ids) for encode, ids in zip(self.texts, texts, strict=True)]
        x = torch.cat(parts, dim=1) if len(parts) > 1 else numeric  # (batch, encoded width)
        return self.head(self.body(x))


class FeatureTokenizer(nn.Module):
    """Each numeric column -> ``x_j * w_j + b_j``; each embedded category and each text encoding -> a
    ``d_model`` token: ``(B, features, d_model)``."""

    def __init__(self, spec: FeatureSpec, cfg: ModelConfig, text_encoder: str):
        super().__init__()
        d = cfg.d_model
        self.weight = nn.Parameter(torch.randn(spec.n_numeric, d) * 0.02)
        self.bias = nn.Parameter(torch.zeros(spec.n_numeric, d))
        self.embeddings = nn.ModuleList(nn.Embedding(card, d) for card, _ in spec.embeddings)
        self.texts = nn.ModuleList(build_text_encoder(text_encoder, t, cfg)
                                   for t in spec.texts)
        self.text_proj = nn.ModuleList(nn.Linear(t.width, d) for t in self.texts)

    def forward(self, numeric: torch.Tensor, categorical: torch.Tensor, texts: tuple[torch.Tensor, ...]) -> torch.Tensor:
        tokens = [numeric.unsqueeze(-1) * self.weight + self.bias]  # (B, n_numeric, d)
        tokens += [emb(categorical[:, i]).unsqueeze(1) for i, emb in enumerate(self.embeddings)]
        tokens += [proj(enc(ids)).unsqueeze(1) for enc, proj, ids in zip(self.texts, self.text_proj, texts, strict=True)]
        return torch.cat(tokens, dim=1)


class FeatureTransformer(nn.Module):
    """The ``transformer`` combiner: attention across one token per feature, read out from a [CLS] token."""

    def __init__(self, spec: FeatureSpec, cfg: ModelConfig, text_encoder: str):
        super().__init__()
        d = cfg.d_model
        if d % cfg.heads:
            raise ConfigError(f"model.d_model ({d}) must be divisible by model.heads ({cfg.heads})")
        self.tokenizer = FeatureTokenizer(spec, cfg, text_encoder)
        self.cls = nn.Parameter(torch.zeros(1, 1, d))
        layer = nn.TransformerEncoderLayer(d, cfg.heads, cfg.ff_dim or 2 * d, cfg.dropout, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, cfg.layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, spec.n_outputs)

    def forward(self, numeric: torch.Tensor, categorical: torch.Tensor | None = None, *texts: torch.Tensor) -> torch.Tensor:
        tokens = self.tokenizer(numeric, categorical, texts)
        h = torch.cat([self.cls.expand(tokens.size(0), -1, -1), tokens], dim=1)  # (batch, 1 + features, d_model)
        return self.head(torch.relu(self.norm(self.encoder(h)[:, 0])))


def build_tabular(spec: FeatureSpec, cfg: ModelConfig, text_encoder: str) -> nn.Module:
    if cfg.combiner == "transformer":
        return FeatureTransformer(spec, cfg, text_encoder)
    return TabularModel(spec, cfg, text_encoder)


def build_text_table(spec: FeatureSpec, cfg: ModelConfig, family: str) -> nn.Module:
    """A sequence family on a table: the feature model, with the family reading the text columns."""
    if not spec.texts:
        raise ConfigError(f"model.family '{family}' reads sequences or text, and this table has no text column: "
                          f"use model.family mlp (or name a text column in data.features)")
    return build_tabular(spec, cfg, cfg.text_encoder if cfg.text_encoder != "auto" else family)
