"""Mini-batch and epoch: the same model trained with batch sizes 1, 32 and the full training set.

An epoch is one pass over the training rows; a batch is how many rows one optimizer step sees. Smaller
batches take more (noisier) steps per epoch; the full batch takes one exact step per epoch.

Run: ``python examples/minibatch_and_epoch.py [--quick] [--out DIR]``
"""

from __future__ import annotations

import math
import sys

import palaestra

try:
    from examples._common import figure, parse, save
except ImportError:
    from _common import figure, parse, save


def main(argv: list[str] | None = None) -> int:
    args = parse(__doc__.splitlines()[0], argv)
    epochs = 4 if args.quick else 40
    curves = {}
    for batch_size in (1, 32, 100_000):  # 100,000 > rows: the whole training split in one batch
        config = {"seed": 0, "data": {"source": "penguins"}, "model": {"hidden": [32], "dropout": 0.0},
                  "optimizer": {"name": "sgd", "lr": 0.05, "momentum": 0.0},
                  "train": {"epochs": epochs, "batch_size": batch_size, "progress": False, "early_stopping": None}}
        run = palaestra.train(config, quiet=True)
        rows = len(run.data.train)
        label = "full batch" if batch_size >= rows else f"batch {batch_size}"
        steps = run.state.step
        curves[label] = ([h["train_loss"] for h in run.history], run.metrics["train_seconds"])
        print(f"{label:11s} {steps:5d} steps = {epochs} epochs x ceil({rows}/{min(batch_size, rows)}) = "
              f"{epochs * math.ceil(rows / min(batch_size, rows))}; final train_loss {curves[label][0][-1]:.4f}; "
              f"wall time {run.metrics['train_seconds']:.2f} s")

    fig, (ax1, ax2) = figure(2)
    for label, (losses, _) in curves.items():
        ax1.plot(range(1, len(losses) + 1), losses, marker=".", label=label)
    ax1.set(xlabel="epoch", ylabel="train loss", title="loss per epoch", yscale="log")
    ax1.legend(fontsize=7)
    ax2.bar(list(curves), [seconds for _, seconds in curves.values()])
    ax2.set(ylabel="seconds", title="wall time for the same epochs")
    save(fig, args.out / "minibatch_and_epoch.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
