"""Weights, loss, optimizer, back-propagation: one training step of a tiny MLP, every number by hand.

Network: 2 inputs -> 3 sigmoid units -> 1 output, mean squared error, plain SGD. The chain rule is written
out line by line, then every gradient is checked against PyTorch's autograd.

Run: ``python examples/backprop_by_hand.py [--quick] [--out DIR]``
"""

from __future__ import annotations

import sys

import torch

try:
    from examples._common import parse
except ImportError:
    from _common import parse


def show(name: str, t: torch.Tensor) -> None:
    print(f"{name:>10s} = {[round(v, 4) for v in t.flatten().tolist()]}  shape {tuple(t.shape)}")


def main(argv: list[str] | None = None) -> int:
    parse(__doc__.splitlines()[0], argv)
    torch.manual_seed(0)
    dt = torch.float64  # double precision: hand and autograd agree to ~1e-15
    x = torch.tensor([[0.5, -1.0], [1.5, 2.0], [-0.3, 0.8], [1.0, 0.0]], dtype=dt)  # (batch 4, features 2)
    y = torch.tensor([[1.0], [0.0], [0.5], [2.0]], dtype=dt)  # (4, 1)
    W1 = torch.randn(3, 2, dtype=dt) * 0.8
    b1 = torch.zeros(3, dtype=dt)
    W2 = torch.randn(1, 3, dtype=dt) * 0.8
    b2 = torch.zeros(1, dtype=dt)
    lr = 0.5

    print("forward pass")
    z1 = x @ W1.T + b1  # (4, 3) pre-activations
    h = torch.sigmoid(z1)  # (4, 3)
    out = h @ W2.T + b2  # (4, 1)
    loss = ((out - y) ** 2).mean()
    for name, t in (("z1", z1), ("h", h), ("output", out)):
        show(name, t)
    print(f"      loss = mean((output - y)^2) = {loss.item():.6f}")

    print("backward pass (chain rule, output to input)")
    d_out = 2 * (out - y) / y.numel()  # dL/d output
    g = {"W2": d_out.T @ h, "b2": d_out.sum(0)}  # output = h W2^T + b2
    d_h = d_out @ W2  # (4, 3)
    d_z1 = d_h * h * (1 - h)  # sigmoid'(z) = s (1 - s)
    g["W1"] = d_z1.T @ x
    g["b1"] = d_z1.sum(0)
    for name in ("W2", "b2", "W1", "b1"):
        show("dL/d" + name, g[name])

    params = {"W1": W1, "b1": b1, "W2": W2, "b2": b2}
    auto = {k: v.clone().requires_grad_(True) for k, v in params.items()}
    auto_loss = ((torch.sigmoid(x @ auto["W1"].T + auto["b1"]) @ auto["W2"].T + auto["b2"] - y) ** 2).mean()
    auto_loss.backward()
    matches = {k: torch.allclose(g[k], auto[k].grad, rtol=1e-10, atol=1e-12) for k in params}
    for k, ok in matches.items():
        print(f"  {k}: hand gradient matches autograd: {ok} (max difference {(g[k] - auto[k].grad).abs().max():.1e})")
    print(f"all {sum(v.numel() for v in params.values())} gradient entries (4 tensors) match autograd: {all(matches.values())}")

    print(f"update (SGD, lr {lr}): w <- w - lr * dL/dw")
    new = {k: params[k] - lr * g[k] for k in params}
    new_loss = ((torch.sigmoid(x @ new["W1"].T + new["b1"]) @ new["W2"].T + new["b2"] - y) ** 2).mean()
    for k in ("W2", "b2"):
        show("new " + k, new[k])
    print(f"loss before the step {loss.item():.6f}, after {new_loss.item():.6f}: "
          f"{'lower' if new_loss < loss else 'NOT lower'}")
    return 0 if all(matches.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
