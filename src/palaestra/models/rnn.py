"""Recurrent families ``rnn``, ``lstm``, ``gru`` for sequences, token sequences and character language models.

Classification/regression read the final hidden state (packed sequences, so padding is never read);
a language model emits one prediction per step (unidirectional only: it must not see the future).
"""

from __future__ import annotations

import torch
from torch import nn

from palaestra.config import ModelConfig
from palaestra.data.spec import FeatureSpec
from palaestra.errors import ConfigError
from palaestra.models.recurrent import RECURRENT, final_state
from palaestra.models.registry import register
from palaestra.models.tabular import build_text_table

# Exploding gradients are the recurrent models' classic failure: clip unless the user chose otherwise.
DEFAULT_GRAD_CLIP = 1.0
# A CPU-sized budget: recurrent epochs are slow on 2 cores (mnist1d: ~5 s an epoch, up to 200 epochs); the run
# ends gracefully after 10 minutes with its best weights. Set train.time_limit (or null) to change it.
SEQUENCE_TIME_LIMIT = 600.0
SEQUENCE_DEFAULTS = {"train.grad_clip": DEFAULT_GRAD_CLIP, "train.time_limit": SEQUENCE_TIME_LIMIT}


class RecurrentNet(nn.Module):
    """``forward(x (B, T, F) float or (B, T) token ids, lengths (B,) | None)``.

    Returns ``(B, n_outputs)``, or ``(B, T, vocab)`` logits when ``per_step`` (a language model).
    """

    def __init__(self, cell: str, n_in: int, hidden_size: int, layers: int, n_outputs: int, bidirectional: bool = False,
                 dropout: float = 0.0, vocab_size: int | None = None, per_step: bool = False):
        super().__init__()
        self.cell, self.per_step = cell, per_step
        self.embed = nn.Embedding(vocab_size, n_in) if vocab_size else None
        kw = {"nonlinearity": "tanh"} if cell == "rnn" else {}
        self.rnn = RECURRENT[cell](n_in, hidden_size, num_layers=layers, batch_first=True, bidirectional=bidirectional,
                                   dropout=dropout if layers > 1 else 0.0, **kw)
        self.directions = 2 if bidirectional else 1
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.head = nn.Linear(hidden_size * self.directions, n_outputs)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        if self.embed is not None:
            x = self.embed(x)  # (B, T) -> (B, T, E)
        if self.per_step:
            out, _ = self.rnn(x)  # (batch, time, hidden)
            return self.head(self.dropout(out))
        summary = final_state(self.rnn, x, lengths, self.directions)
        return self.head(self.dropout(summary))

    @torch.no_grad()
    def step(self, x: torch.Tensor, state=None) -> tuple[torch.Tensor, object]:
        """One generation step for a language model: ``x (B, T)`` ids -> (last logits (B, V), state)."""
        out, state = self.rnn(self.embed(x), state)
        return self.head(out[:, -1]), state


def _build(cell: str):
    def build(spec: FeatureSpec, cfg: ModelConfig) -> nn.Module:
        if spec.kind == "table":  # a table's text columns are read by this family
            return build_text_table(spec, cfg, cell)
        lm = spec.task == "language_model"
        if lm and cfg.bidirectional:
            raise ConfigError("a language model cannot be bidirectional (it would read the characters it predicts); "
                              "set model.bidirectional=false")
        if spec.kind == "tokens":
            vocab = int(spec.extra["vocab_size"])
            return RecurrentNet(cell, cfg.embedding_dim or 64, cfg.hidden_size, cfg.layers, spec.n_outputs,
                                cfg.bidirectional, cfg.dropout, vocab_size=vocab, per_step=lm)
        features = (spec.input_shape or [1, 1])[-1]
        return RecurrentNet(cell, features, cfg.hidden_size, cfg.layers, spec.n_outputs, cfg.bidirectional, cfg.dropout)

    return build


for _name in RECURRENT:
    register(_name, kinds=("sequence", "tokens", "table"), defaults=SEQUENCE_DEFAULTS,
             arrays_as="sequence", size_knobs=("model.hidden_size", "model.layers"))(_build(_name))
