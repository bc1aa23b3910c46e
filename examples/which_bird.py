"""Which bird is this: the penguins classifier built three ways, and what each parameter count buys.

1. logistic regression - ``model.hidden: []``: one linear layer, the softmax of a weighted sum;
2. an MLP - two hidden layers of 64 ReLU units;
3. the same MLP with dropout 0.3.

Run: ``python examples/which_bird.py [--quick] [--out DIR]``
"""

from __future__ import annotations

import sys

import palaestra

try:
    from examples._common import figure, parse, save
except ImportError:
    from _common import figure, parse, save

MODELS = {
    "logistic regression": {"hidden": [], "dropout": 0.0},
    "MLP [64, 64]": {"hidden": [64, 64], "dropout": 0.0},
    "MLP [64, 64] + dropout 0.3": {"hidden": [64, 64], "dropout": 0.3},
}


def main(argv: list[str] | None = None) -> int:
    args = parse(__doc__.splitlines()[0], argv)
    epochs = 12 if args.quick else 200  # early stopping ends the full runs sooner
    results = {}
    for name, model in MODELS.items():
        config = {"seed": 0, "data": {"source": "penguins"}, "model": model, "optimizer": {"lr": 0.02},
                  "train": {"epochs": epochs, "progress": False, "early_stopping": {"patience": 15}}}
        run = palaestra.train(config, quiet=True)
        results[name] = (run.metrics["parameters"], run.metrics["test"]["accuracy"], run.metrics["epochs"])
        print(f"{name:28s} {results[name][0]:6d} parameters  test accuracy {results[name][1]:.3f}  "
              f"({results[name][2]} epochs)")
    print(f"every model reaches test accuracy >= 0.9: {all(acc >= 0.9 for _, acc, _ in results.values())}")

    fig, ax = figure(1)
    names = list(results)
    ax.bar(range(len(names)), [results[n][1] for n in names])
    for i, n in enumerate(names):
        ax.annotate(f"{results[n][0]} params", (i, results[n][1]), ha="center", va="bottom", fontsize=8)
    ax.set_xticks(range(len(names)), names, fontsize=7)
    ax.set(ylabel="test accuracy", ylim=(0.5, 1.05), title="penguins: three models")
    save(fig, args.out / "which_bird.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
