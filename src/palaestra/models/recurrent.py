"""What the recurrent families and the recurrent text encoders share: the cells, and reading the final state."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

RECURRENT = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}


def final_state(rnn: nn.RNNBase, x: torch.Tensor, lengths: torch.Tensor | None, directions: int) -> torch.Tensor:
    """The last layer's state after each sequence's last real step: ``(B, hidden * directions)``.

    One direction: the output at step ``length - 1`` (a forward network has seen only real steps there), which
    traces and exports without packing. Two directions: packed sequences, so the backward pass starts at each
    sequence's own end.
    """
    if directions == 1:
        out, _ = rnn(x)  # (batch, time, hidden)
        if lengths is None:
            return out[:, -1]
        last = (lengths.clamp(min=1, max=x.shape[1]) - 1).to(torch.long)
        return out[torch.arange(out.shape[0], device=out.device), last]
    if lengths is not None:
        x = pack_padded_sequence(x, lengths.clamp(min=1).cpu(), batch_first=True, enforce_sorted=False)
    _, h = rnn(x)
    if isinstance(h, tuple):  # LSTM: (h, c)
        h = h[0]
    return torch.cat(list(h[-directions:]), dim=-1)  # (layers * directions, batch, hidden) -> last layer
