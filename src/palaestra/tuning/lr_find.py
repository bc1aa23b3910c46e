"""The learning-rate range test (Smith, 2017; fastai's ``lr_find``): train a few steps with an exponentially
growing learning rate, watch the smoothed loss, and suggest the lr where it falls fastest.

It is a callback on the ordinary training loop: the model, data and optimizer are exactly those ``palaestra
train`` would build from the same config.

    >>> result = lr_find({"data": {"source": "iris"}}, out="runs/iris-lr-find")  # doctest: +SKIP
    >>> result.suggested_lr                                                      # doctest: +SKIP
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from palaestra.artifacts import atomic_write, claim_dir, finite_json, write_json
from palaestra.config import Config, load_config
from palaestra.errors import ConfigError
from palaestra.training import callbacks as cb


class _RangeDone(Exception):
    """Raised from a batch hook to end the range test mid-epoch."""


class RangeTest(cb.Callback):
    """Sets lr_i = start * (end / start) ** (i / (steps - 1)) before step i; records the loss after it."""

    # beta 0.9 (a memory of ~10 steps), not fastai's 0.98: over 100 steps spanning 8 decades of lr, a
    # ~50-step average lags the curve by decades and pushes the suggestion far too high.
    def __init__(self, start: float, end: float, steps: int, beta: float = 0.9, diverge: float = 4.0):
        self.start, self.end, self.steps, self.beta, self.diverge = start, end, steps, beta, diverge
        self.lrs: list[float] = []
        self.losses: list[float] = []
        self.smoothed: list[float] = []
        self.stop_reason = f"reached lr {end:g}"
        self._avg, self._best = 0.0, math.inf

    def lr_at(self, i: int) -> float:
        return self.start * (self.end / self.start) ** (i / max(1, self.steps - 1))

    @staticmethod
    def _set(state, lr: float) -> None:
        for group in state.optimizer.param_groups:
            group["lr"] = lr

    def on_train_begin(self, state) -> None:
        self._set(state, self.lr_at(0))

    def on_batch_end(self, state, loss) -> None:
        i = len(self.lrs)
        value = float(loss.detach())
        self.lrs.append(self.lr_at(i))
        self.losses.append(value)
        if not math.isfinite(value):
            self.stop_reason = f"the loss became {value} at lr {self.lr_at(i):.3g}"
            raise _RangeDone
        # Exponential moving average with bias correction: the raw per-batch loss is too noisy to read.
        self._avg = self.beta * self._avg + (1 - self.beta) * value
        smooth = self._avg / (1 - self.beta ** (i + 1))
        self.smoothed.append(smooth)
        if i > 0 and smooth > self.diverge * self._best:
            self.stop_reason = f"the loss exceeded {self.diverge:g}x its best at lr {self.lr_at(i):.3g}"
            raise _RangeDone
        self._best = min(self._best, smooth)
        if i + 1 >= self.steps:
            raise _RangeDone
        self._set(state, self.lr_at(i + 1))


@dataclass
class LRFindResult:
    lrs: list[float]
    losses: list[float]
    smoothed: list[float]
    min_lr: float  # lr at the lowest smoothed loss
    min_loss: float
    steepest_lr: float  # lr where the smoothed loss falls fastest (per decade of lr)
    suggested_lr: float
    stop_reason: str
    files: list[Path] = field(default_factory=list)


def suggest(lrs: list[float], smoothed: list[float]) -> tuple[float, float, float, float]:
    """(min_lr, min_loss, steepest_lr, suggested): steepest descent before the minimum, else min_lr / 10."""
    if not smoothed:
        raise ConfigError("the range test recorded no loss (is the training split empty?)")
    s = np.asarray(smoothed[: len(lrs)])
    lr = np.asarray(lrs[: len(s)])
    i_min = int(np.argmin(s))
    min_lr, min_loss = float(lr[i_min]), float(s[i_min])
    # The first points average few batches (the moving average is young): too noisy to read a slope from.
    skip = min(10, len(s) // 10)
    if i_min - skip >= 3:
        slope = np.gradient(s[skip: i_min + 1], np.log10(lr[skip: i_min + 1]))
        steepest = float(lr[skip + int(np.argmin(slope))])
        return min_lr, min_loss, steepest, steepest
    return min_lr, min_loss, min_lr / 10, min_lr / 10


def _plot(path: Path, result: LRFindResult) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, ax = plt.subplots(figsize=(6, 4))
    n = len(result.smoothed)
    ax.plot(result.lrs[:n], result.losses[:n], alpha=0.3, label="loss")
    ax.plot(result.lrs[:n], result.smoothed, label="smoothed loss")
    ax.axvline(result.suggested_lr, color="red", linestyle="--", label=f"suggested {result.suggested_lr:.2g}")
    ax.axvline(result.min_lr / 10, color="grey", linestyle=":", label=f"min / 10 = {result.min_lr / 10:.2g}")
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("training loss")
    ax.set_title("learning-rate range test")
    ax.legend()
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return True


def lr_find(config: Config | dict | str | Path | None, *, out: str | Path | None = None, start_lr: float = 1e-7,
            end_lr: float = 10.0, steps: int = 100, overrides: list[str] | dict | None = None) -> LRFindResult:
    """Run the range test on the config's model and data; with ``out``, write lr_find.png/.csv/.json."""
    from palaestra.pipeline import train

    if not 0 < start_lr < end_lr:
        raise ConfigError(f"lr-find needs 0 < --start-lr < --end-lr, got {start_lr:g} and {end_lr:g}")
    if steps < 5:
        raise ConfigError(f"lr-find needs at least 5 steps, got {steps}")
    cfg = load_config(config, overrides)
    if out is not None:  # before the test runs: refuse a directory of someone else's files at once
        claim_dir(out, "lr-find")
    # The range test owns the lr: no schedule, no early stop, and enough epochs to reach `steps` batches.
    cfg = load_config(cfg, {"schedule": {"name": "none"}, "train.early_stopping": None, "train.stop_at": None,
                            "train.epochs": 10**6, "train.progress": False, "optimizer.lr": start_lr})
    test = RangeTest(start_lr, end_lr, steps)
    try:
        train(cfg, quiet=True, extra_callbacks=[test])
    except _RangeDone:
        pass
    min_lr, min_loss, steepest, suggested = suggest(test.lrs, test.smoothed)
    result = LRFindResult(test.lrs, test.losses, test.smoothed, min_lr, min_loss, steepest, suggested,
                          test.stop_reason)
    if out is not None:
        out = claim_dir(out, "lr-find")
        n = len(test.smoothed)
        frame = pd.DataFrame({"lr": test.lrs[:n], "loss": test.losses[:n], "smoothed": test.smoothed})
        atomic_write(out / "lr_find.csv", frame.to_csv(index=False))
        summary: dict[str, Any] = {"min_lr": min_lr, "min_loss": min_loss, "steepest_lr": steepest,
                                   "suggested_lr": suggested, "stop_reason": test.stop_reason, "steps": n}
        write_json(out / "lr_find.json", finite_json(summary))
        result.files = [out / "lr_find.csv", out / "lr_find.json"]
        if _plot(out / "lr_find.png", result):
            result.files.insert(0, out / "lr_find.png")
    return result
