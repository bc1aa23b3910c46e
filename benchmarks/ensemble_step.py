"""One training step of the table ensemble (``model.ensemble``), as the default builds it, against the same
function written the direct way, and with dropout: the figures behind the ensemble's layout and its dropout 0.

Contenders, each 8 members x [64, 64], batch 256, cross-entropy on two classes, AdamW, one thread:

- ``folded``: ``palaestra.models.ensemble`` (each member's scales folded into its weight matrix, one batched
  matmul over ``(k, B, width)``), dropout 0 (the table default);
- ``folded, dropout 0.2``: the same with ``model.dropout: 0.2``;
- ``scaled activations``: the same layers written as BatchEnsemble is usually written, ``((x * r) @ W.T) * s + b``
  on ``(B, k, width)`` activations and an einsum head: the layout measured first.

    .venv/bin/python -m benchmarks.ensemble_step             # 12, 30 and 80 inputs
"""

from __future__ import annotations

import argparse
import time
from itertools import pairwise

import torch
from torch import nn
from torch.nn import functional as F

K, HIDDEN, BATCH = 8, [64, 64], 256


class ScaledActivations(nn.Module):
    """BatchEnsemble with the scales applied to the activations (the reference layout)."""

    def __init__(self, n_in: int, n_out: int):
        super().__init__()
        widths = [n_in, *HIDDEN]
        self.w = nn.ParameterList(nn.Parameter(torch.randn(o, i) / i ** 0.5) for i, o in pairwise(widths))
        self.r = nn.ParameterList(nn.Parameter(torch.ones(K, i)) for i in widths[:-1])
        self.s = nn.ParameterList(nn.Parameter(torch.ones(K, o)) for o in widths[1:])
        self.b = nn.ParameterList(nn.Parameter(torch.zeros(K, o)) for o in widths[1:])
        self.head = nn.Parameter(torch.randn(K, widths[-1], n_out) / widths[-1] ** 0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.unsqueeze(1).expand(-1, K, -1)  # (B, k, n_in)
        for w, r, s, b in zip(self.w, self.r, self.s, self.b, strict=True):
            h = torch.relu(F.linear(h * r, w) * s + b)
        return torch.einsum("bkw,kwo->bko", h, self.head)  # (B, k, outputs)


def palaestra_model(n_in: int, dropout: float) -> nn.Module:
    from palaestra.models.ensemble import EnsembleMLP

    return EnsembleMLP(n_in, HIDDEN, 2, "relu", dropout, K)


def ms_per_step(model: nn.Module, n_in: int, steps: int, repeats: int) -> float:
    """Best of ``repeats`` mean step times (forward, per-member loss, backward, AdamW)."""
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(BATCH, n_in, generator=g), torch.randint(0, 2, (BATCH,), generator=g)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.1)
    model.train()

    def step():
        opt.zero_grad(set_to_none=True)
        out = model(x)
        if out.shape[0] != BATCH:  # the folded layout returns (B, k, outputs) from (k, B, ...): already transposed
            raise AssertionError(out.shape)
        F.cross_entropy(out.flatten(0, 1), y.repeat_interleave(K)).backward()
        opt.step()

    for _ in range(20):
        step()
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        for _ in range(steps):
            step()
        best = min(best, (time.perf_counter() - started) / steps)
    return best * 1e3


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--inputs", nargs="+", type=int, default=[12, 30, 80])
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    print("| inputs | folded (default) ms | folded, dropout 0.2 ms | scaled activations ms | scaled ÷ folded |")
    print("|---:|---:|---:|---:|---:|")
    for n_in in args.inputs:
        torch.manual_seed(0)
        folded = ms_per_step(palaestra_model(n_in, 0.0), n_in, args.steps, args.repeats)
        dropout = ms_per_step(palaestra_model(n_in, 0.2), n_in, args.steps, args.repeats)
        scaled = ms_per_step(ScaledActivations(n_in, 2), n_in, args.steps, args.repeats)
        print(f"| {n_in} | {folded:.2f} | {dropout:.2f} | {scaled:.2f} | {scaled / folded:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
