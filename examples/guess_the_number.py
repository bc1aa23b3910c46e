"""Guess the number: the model ``y = k * x`` learns the number someone thinks of (0-100).

The only data is the thinker's answer to a guess ``k``: "too high" or "too low" (the *sign* of the error),
or, in a kinder game, the error itself. Four levers decide how fast the guess gets there:

* initialization - where ``k`` starts;
* the loss - the sign of the error gives only a direction, the error itself also gives a distance;
* the optimizer - a fixed step, gradient descent with a learning rate, momentum, or bisection;
* the model family - a straight line ``y = k * x`` cannot fit a curve, however long it trains.

Run: ``python examples/guess_the_number.py [--quick] [--out DIR]``
"""

from __future__ import annotations

import math
import sys

try:
    from examples._common import figure, parse, save
except ImportError:  # run as a script: examples/ is on sys.path
    from _common import figure, parse, save

SECRET = 37
MAX_STEPS = 200


def too_high(k: float, secret: float) -> int:
    """The thinker's answer: +1 "too high", -1 "too low", 0 "that's it" (a guess within 0.5 rounds to it)."""
    return 0 if abs(k - secret) < 0.5 else (1 if k > secret else -1)


def fixed_step(secret: float, k: float = 0.0, step: float = 1.0) -> list[float]:
    """Sign of the error, constant step: as many steps as the distance."""
    path = [k]
    while too_high(k, secret) and len(path) <= MAX_STEPS:
        k -= step * too_high(k, secret)
        path.append(k)
    return path


def gradient_descent(secret: float, k: float = 0.0, lr: float = 0.25) -> list[float]:
    """The error itself: loss (k - s)^2, gradient 2 (k - s), step -lr * gradient. The step shrinks near the goal."""
    path = [k]
    while too_high(k, secret) and len(path) <= MAX_STEPS and math.isfinite(k):
        k -= lr * 2 * (k - secret)
        path.append(k)
    return path


def momentum(secret: float, k: float = 0.0, step: float = 1.0, beta: float = 0.9) -> list[float]:
    """Sign of the error, with a velocity: it speeds up on a long way, then overshoots and swings back."""
    path, v = [k], 0.0
    while too_high(k, secret) and len(path) <= MAX_STEPS:
        v = beta * v - step * too_high(k, secret)
        k += v
        path.append(k)
    return path


def bisection(secret: float, lo: float = 0.0, hi: float = 100.0) -> list[float]:
    """Keep the interval that must hold the number; guess its middle. Halves the doubt every step."""
    k = round((lo + hi) / 2)
    path = [k]
    while (answer := too_high(k, secret)) and len(path) <= MAX_STEPS:
        lo, hi = (lo, k - 1) if answer > 0 else (k + 1, hi)
        k = round((lo + hi) / 2)
        path.append(k)
    return path


XS = [i / 20 for i in range(21)]  # points of the curve y = x^2 on [0, 1]


def fit_to_curve(steps: int, feature=lambda x: x, lr: float = 1.0) -> list[float]:
    """Fit y = k * feature(x) to y = x^2 by gradient descent on the mean squared error; the loss per step."""
    k, losses = 0.0, []
    for _ in range(steps):
        errors = [k * feature(x) - x * x for x in XS]
        losses.append(sum(e * e for e in errors) / len(XS))
        k -= lr * sum(2 * e * feature(x) for e, x in zip(errors, XS, strict=True)) / len(XS)
    return losses


def best_line_loss() -> float:
    """The lowest loss any line y = k * x reaches on the curve (least squares: k = sum x^3 / sum x^2)."""
    k = sum(x**3 for x in XS) / sum(x**2 for x in XS)
    return sum((k * x - x * x) ** 2 for x in XS) / len(XS)


def main(argv: list[str] | None = None) -> int:
    args = parse(__doc__.splitlines()[0], argv)
    s = SECRET
    print(f"the secret number is {s}")
    runs = {
        "fixed step 1 from 0": fixed_step(s, 0.0),
        "fixed step 1 from 50 (better init)": fixed_step(s, 50.0),
        "gradient descent lr 0.1": gradient_descent(s, lr=0.1),
        "gradient descent lr 0.25": gradient_descent(s, lr=0.25),
        "gradient descent lr 0.5": gradient_descent(s, lr=0.5),
        "gradient descent lr 0.9": gradient_descent(s, lr=0.9),
        "gradient descent lr 1.1": gradient_descent(s, lr=1.1),
        "momentum 0.9 (sign)": momentum(s),
        "bisection": bisection(s),
    }
    # a step is one guess put to the thinker
    for name, path in runs.items():
        found = not too_high(path[-1], s)
        print(f"{name:36s} {len(path):4d} steps  {'found' if found else 'NOT found'} (last guess {path[-1]:.4g})")
    worst = max(len(bisection(n)) for n in range(101))
    print(f"bisection finds any number 0-100 in at most {worst} steps (ceil(log2(101)) = {math.ceil(math.log2(101))})")
    print("gradient descent with lr 0.5 lands on the number after one update: lr * 2 = 1 undoes the error exactly; "
          "lr 1.1 overshoots further every step and diverges")
    steps = 200 if args.quick else 2000
    losses = fit_to_curve(steps)
    curve = fit_to_curve(steps, feature=lambda x: x * x)
    print(f"a line y = k*x fitted to y = x^2: loss {losses[9]:.4f} after 10 steps, {losses[-1]:.4f} after {steps}; "
          f"the best any line can do is {best_line_loss():.4f} > 0 (the model family is wrong, not the training). "
          f"y = k*x^2 reaches {curve[-1]:.1e}")

    fig, (ax1, ax2, ax3) = figure(3)
    for name, path in runs.items():
        if "1.1" not in name:  # the diverging run would flatten the others
            ax1.plot(range(len(path)), path, label=name, marker="." if len(path) < 30 else None)
    ax1.axhline(s, color="k", lw=0.8, ls="--")
    ax1.set(xlabel="step", ylabel="guess k", title="the guess over time", xlim=(0, 60))
    ax1.legend(fontsize=6)
    names = list(runs)
    ax2.barh(names, [len(runs[n]) - 1 for n in names])
    ax2.set(xlabel="steps to the number", title="steps by lever")
    ax2.tick_params(axis="y", labelsize=6)
    ax3.plot(losses, label="y = k x (a line)")
    ax3.plot([max(v, 1e-12) for v in curve], label="y = k x^2")
    ax3.legend(fontsize=7)
    ax3.set(xlabel="step", ylabel="mean squared error", yscale="log", title="a line cannot fit y = x^2")
    save(fig, args.out / "guess_the_number.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
