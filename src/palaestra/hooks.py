"""The training loop's hook points: a small, fixed set, shared by the loop and anything that plugs into it.

A leaf module (it imports nothing of Palaestra's), so a model family can declare a monitor for its own
training without importing the training stage.
"""

from __future__ import annotations

from typing import Any

HOOKS = ("on_train_begin", "on_epoch_begin", "on_batch_end", "on_epoch_end", "on_train_end")


class Callback:
    """Override any of the five hooks. ``state`` is the loop's ``TrainState``; ``logs`` the epoch's metrics."""

    per_batch = True  # False: ``on_batch_end`` is never called (kept off the per-step path)

    def on_train_begin(self, state: Any) -> None: ...
    def on_epoch_begin(self, state: Any) -> None: ...
    def on_batch_end(self, state: Any, loss: Any) -> None: ...
    def on_epoch_end(self, state: Any, logs: dict[str, float]) -> None: ...
    def on_train_end(self, state: Any) -> None: ...
