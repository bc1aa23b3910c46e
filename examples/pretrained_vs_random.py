"""Pretrained against random initialisation: the same text classifier, its text encoder starting from random
weights (``bag``: word embeddings learned from the labelled texts alone) or from a pretrained sentence
encoder (``minilm``: all-MiniLM-L6-v2, trained in advance on about a billion sentence pairs, kept frozen).

The task is the built-in ``pydocs`` set: which part of Python's standard library does a docstring come
from (files, math, text, network, time, concurrency, formats)? Both models see the same labelled examples,
from 100 to all of them, and are scored on the same held-out texts: a learning curve per initialisation.

Needs the ``text`` extra. Run: ``python examples/pretrained_vs_random.py [--quick] [--out DIR]``
"""

from __future__ import annotations

import sys

import numpy as np

try:
    from examples._common import figure, parse, save
except ImportError:
    from _common import figure, parse, save

ENCODERS = {"random init (bag of words)": "bag", "pretrained (MiniLM, frozen)": "minilm"}


def main(argv: list[str] | None = None) -> int:
    from palaestra.data.datasets import BUILTINS
    from palaestra.pipeline import train

    args = parse(__doc__.splitlines()[0], argv)
    frame = BUILTINS["pydocs"].load()
    rng = np.random.default_rng(0)
    order = rng.permutation(len(frame))
    test, pool = np.sort(order[:300]), order[300:]
    budgets = [100, 400] if args.quick else [100, 300, 1000, len(pool)]
    curves: dict[str, list[float]] = {name: [] for name in ENCODERS}
    for budget in budgets:
        chosen = pool[:budget]  # the first `budget` of one shuffled order: each budget holds the smaller ones
        cut = int(0.8 * budget)
        split = (np.sort(chosen[:cut]), np.sort(chosen[cut:]), test)
        for name, encoder in ENCODERS.items():
            config = {"seed": 0, "data": {"source": "pydocs", "target": "topic", "features": {"doc": "text"}},
                      "model": {"text_encoder": encoder},
                      "train": {"progress": False, **({"epochs": 30} if args.quick else {})}}
            run = train(config, source=frame, split_override=split, quiet=True)
            curves[name].append(run.metrics["test"]["accuracy"])
            print(f"{budget:5d} labelled texts  {name:28s} test accuracy {curves[name][-1]:.3f}")
    random_init, pretrained = curves.values()
    gaps = [p - r for p, r in zip(pretrained, random_init, strict=True)]
    print(f"pretrained beats random init at every budget: {all(g > 0 for g in gaps)} "
          f"(by {gaps[0]:.3f} at {budgets[0]} texts, {gaps[-1]:.3f} at {budgets[-1]})")

    fig, ax = figure(1)
    for name, accs in curves.items():
        ax.plot(budgets, accs, marker="o", label=name)
    ax.set(xscale="log", xlabel="labelled training texts", ylabel="test accuracy", ylim=(0, 1),
           title="pydocs: docstring -> topic (7 classes)")
    ax.axhline(1 / 7, color="grey", lw=0.8, ls=":", label="chance")
    ax.legend(fontsize=8)
    save(fig, args.out / "pretrained_vs_random.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
