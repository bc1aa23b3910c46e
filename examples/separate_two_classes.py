"""A line that separates two classes: the classifier "class 1 if x > k" on 2-D points, trained by minimising a loss.

The rule itself has a step in it, so its error count gives no gradient. Training therefore minimises a smooth
stand-in: the logistic loss of ``sigmoid((x - k) / T)``, whose gradient says which way to move ``k`` and how far.

Run: ``python examples/separate_two_classes.py [--quick] [--out DIR]``
"""

from __future__ import annotations

import sys

import torch

try:
    from examples._common import figure, parse, save
except ImportError:
    from _common import figure, parse, save


def make_points(n: int = 200, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Two clouds of 2-D points: class 0 around x = 1, class 1 around x = 3 (y carries no information)."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 2
    points = torch.randn(n, 2, generator=g) * 0.6
    points[:, 0] += 1.0 + 2.0 * labels
    return points, labels.float()


def train_boundary(points: torch.Tensor, labels: torch.Tensor, steps: int, lr: float = 0.5,
                   temperature: float = 0.5) -> tuple[float, list[float], list[float]]:
    """Gradient descent on k; returns the final k, the loss per step and k per step."""
    k = torch.zeros((), requires_grad=True)  # start the line at x = 0, left of both classes
    opt = torch.optim.SGD([k], lr=lr)
    losses, ks = [], []
    for _ in range(steps):
        logits = (points[:, 0] - k) / temperature
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
        ks.append(k.item())
    return k.item(), losses, ks


def main(argv: list[str] | None = None) -> int:
    args = parse(__doc__.splitlines()[0], argv)
    points, labels = make_points()
    steps = 60 if args.quick else 300
    k, losses, ks = train_boundary(points, labels, steps)
    accuracy = ((points[:, 0] > k).float() == labels).float().mean().item()
    print(f"after {steps} steps the line is x = {k:.3f} (the clouds' midpoint is 2.0); loss {losses[0]:.3f} -> "
          f"{losses[-1]:.3f}; accuracy {accuracy:.3f}")

    fig, (ax1, ax2) = figure(2)
    for c, colour in ((0, "tab:blue"), (1, "tab:orange")):
        sel = labels == c
        ax1.scatter(points[sel, 0], points[sel, 1], s=10, c=colour, label=f"class {c}")
    ax1.axvline(k, color="k", label=f"x = {k:.2f}")
    ax1.set(xlabel="x", ylabel="y", title="points and the learned line")
    ax1.legend(fontsize=7)
    ax2.plot(losses, label="loss")
    ax2.set(xlabel="step", ylabel="logistic loss", title="the loss over training")
    twin = ax2.twinx()
    twin.plot(ks, color="tab:green", ls="--", label="k")
    twin.set_ylabel("k")
    save(fig, args.out / "separate_two_classes.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
