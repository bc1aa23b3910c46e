"""A small, fixed set of hooks (``palaestra.hooks``), called from one place (``CallbackList``) in a fixed order.

Hooks: ``on_train_begin``, ``on_epoch_begin``, ``on_batch_end``, ``on_epoch_end``, ``on_train_end``.
Callbacks keep no training state of their own: what must survive a resume lives in ``TrainState``.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch.profiler import record_function

from palaestra.config import EarlyStoppingConfig
from palaestra.errors import ConfigError
from palaestra.formatting import format_duration
from palaestra.hooks import HOOKS, Callback  # noqa: F401  (re-exported: the hook names)
from palaestra.training.state import TrainState


class CallbackList:
    """The one place hooks are dispatched from.

    Every hook but the per-step one runs inside a ``torch.profiler.record_function`` named
    ``palaestra.<Callback>.<hook>`` while a profiler records, so a ``torch.profiler`` trace shows what each
    callback costs (``on_batch_end`` is left bare: it runs every step).
    """

    def __init__(self, callbacks: Sequence[Callback]):
        self.callbacks = list(callbacks)
        # The per-step path dispatches only to callbacks that override ``on_batch_end`` and want it.
        self._batch = [c for c in self.callbacks
                       if c.per_batch and type(c).on_batch_end is not Callback.on_batch_end]

    def _call(self, hook: str, *args) -> None:
        labelled = torch.autograd._profiler_enabled()  # a label costs ~5 µs: only while a profiler records
        for c in self.callbacks:
            with record_function(f"palaestra.{type(c).__name__}.{hook}") if labelled else contextlib.nullcontext():
                getattr(c, hook)(*args)

    def on_train_begin(self, state: TrainState) -> None:
        self._call("on_train_begin", state)

    def on_epoch_begin(self, state: TrainState) -> None:
        self._call("on_epoch_begin", state)

    def on_batch_end(self, state: TrainState, loss: torch.Tensor) -> None:
        for c in self._batch:
            c.on_batch_end(state, loss)

    def on_epoch_end(self, state: TrainState, logs: dict[str, float]) -> None:
        self._call("on_epoch_end", state, logs)

    def on_train_end(self, state: TrainState) -> None:
        self._call("on_train_end", state)


def monitor_mode(monitor: str, mode: str = "auto") -> str:
    if mode != "auto":
        return mode
    lowered = monitor.lower()
    return "min" if any(w in lowered for w in ("loss", "error", "mse", "mae", "rmse", "bits", "perplexity")) else "max"


class BestTracker(Callback):
    """Tracks the monitored metric's best value and keeps those weights (for ``restore_best``)."""

    def __init__(self, min_delta: float = 0.0):
        self.min_delta = min_delta

    def on_train_begin(self, state: TrainState) -> None:
        if state.best_weights is None:
            state.best = math.inf if state.mode == "min" else -math.inf
            state.snapshot_best()  # the initial weights: what a run that never improves falls back to

    def on_epoch_end(self, state: TrainState, logs: dict[str, float]) -> None:
        value = logs.get(state.monitor)
        if value is None:
            # A misspelt monitor would otherwise never improve, and restore_best would end on the initial weights.
            import difflib

            names = [k for k in logs if k not in ("epoch", "seconds", "lr", "grad_norm")]
            close = difflib.get_close_matches(state.monitor, names, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ConfigError(f"train.early_stopping.monitor '{state.monitor}' is not a logged metric{hint}; "
                              f"choose from {', '.join(names)}")
        if state.improved(value, self.min_delta):
            state.best, state.best_epoch, state.wait = value, state.epoch, 0
            state.snapshot_best()
        else:
            state.wait += 1


class EarlyStopping(Callback):
    """Stops when the monitored metric has not improved for ``patience`` epochs."""

    def __init__(self, cfg: EarlyStoppingConfig):
        self.patience = cfg.patience

    def on_epoch_end(self, state: TrainState, logs: dict[str, float]) -> None:
        if state.wait >= self.patience and not state.should_stop:
            state.stop_reason = (f"early stopping: {state.monitor} has not improved for {self.patience} epochs "
                                 f"(best {state.best:.4g} at epoch {state.best_epoch})")


class StopAtTarget(Callback):
    """Stops once every named metric reaches its preset value (below for losses, above for scores)."""

    def __init__(self, targets: dict[str, float]):
        self.targets = targets

    def on_epoch_end(self, state: TrainState, logs: dict[str, float]) -> None:
        reached = []
        for name, goal in self.targets.items():
            key = name if name in logs else f"val_{name}"
            value = logs.get(key)
            if value is None:
                return
            ok = value <= goal if monitor_mode(key) == "min" else value >= goal
            if not ok:
                return
            reached.append(f"{key}={value:.4g}")
        if reached and not state.should_stop:
            state.stop_reason = "target reached: " + ", ".join(reached)


class TimeLimit(Callback):
    """Ends training once ``seconds`` have passed since it started (or resumed), after the current step."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.deadline = math.inf

    def on_train_begin(self, state: TrainState) -> None:
        self.deadline = time.monotonic() + self.seconds

    def on_batch_end(self, state: TrainState, loss: torch.Tensor) -> None:
        if time.monotonic() >= self.deadline and not state.should_stop:
            state.stop_reason = f"time limit: train.time_limit of {self.seconds:g} s reached in epoch {state.epoch + 1}"

    def on_epoch_end(self, state: TrainState, logs: dict[str, float]) -> None:
        self.on_batch_end(state, None)


class LRSchedule(Callback):
    """Steps the learning-rate schedule: per batch for one-cycle, per epoch for the others."""

    def __init__(self, per_batch: bool = True):
        self.per_batch = per_batch

    def on_batch_end(self, state: TrainState, loss: torch.Tensor) -> None:
        state.schedule.step_batch()

    def on_epoch_end(self, state: TrainState, logs: dict[str, float]) -> None:
        state.schedule.step_epoch(logs.get(state.monitor))


class Checkpoint(Callback):
    """Saves resumable state every epoch and, optionally, every N optimizer steps."""

    def __init__(self, save: Callable[[TrainState], Any], every_steps: int | None = None):
        self.save, self.every_steps = save, every_steps
        self.per_batch = bool(every_steps)

    def on_batch_end(self, state: TrainState, loss: torch.Tensor) -> None:
        if self.every_steps and state.step % self.every_steps == 0 and state.batcher.order.position < len(state.batcher):
            self.save(state)

    def on_epoch_end(self, state: TrainState, logs: dict[str, float]) -> None:
        self.save(state)


class HistoryCSV(Callback):
    """Rewrites ``history.csv`` (atomically) after every epoch, so a running or interrupted run shows its epochs.

    Only per epoch: nothing on the per-step path. The file is the whole history each time (a resumed run's
    history comes back from the checkpoint), in the same columns as the finished run's.
    """

    per_batch = False

    def __init__(self, path):
        self.path = path

    def on_epoch_end(self, state: TrainState, logs: dict[str, float]) -> None:
        from palaestra.artifacts import atomic_write

        atomic_write(self.path, history_csv(state.history))


def history_columns(history: Sequence[dict]) -> list[str]:
    """history.csv's columns: epoch, train_loss, val_loss, val_<metric>..., grad_norm, lr, seconds, then extras."""
    seen = list(dict.fromkeys(k for row in history for k in row))
    order = ["epoch", "train_loss", "val_loss"] + sorted(c for c in seen if c.startswith("val_") and c != "val_loss")
    order += [c for c in ("grad_norm", "lr", "seconds") if c in seen]
    order += [c for c in seen if c not in order]  # what callbacks added (e.g. a GAN's d_loss, g_loss)
    return [c for c in order if c in seen]


def history_csv(history: Sequence[dict]) -> str:
    """The history as CSV text (``pandas.read_csv`` reads it back exactly; a missing or NaN value is empty)."""
    columns = history_columns(history)

    def cell(v: Any) -> str:
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return ""
        return repr(float(v)) if isinstance(v, float) else str(v)

    lines = [",".join(columns)] + [",".join(cell(row.get(c)) for c in columns) for row in history]
    return "\n".join(lines) + "\n"


class Progress(Callback):
    """Training progress: a live rich bar on a terminal, one plain line per epoch anywhere else.

    On a terminal the bar shows epoch, batch, training loss, the monitor and an ETA. Redrawn from the training
    thread at most ``refresh_per_second`` times (no refresh thread competing for the interpreter; one draw
    costs about half a millisecond); the loss is read from the device (a host sync) only when the bar is
    redrawn. Off a terminal (CI, ``nohup``, ``| tee``) a bar would show nothing until the end: each epoch prints
    ``epoch k/N  train_loss ...  val_... Ns  ETA ...`` instead, and nothing runs per step.

    The ETA is the mean epoch time so far times the epochs left: an upper bound when early stopping ends
    training sooner.
    """

    def __init__(self, epochs: int, console=None, refresh_per_second: float = 5):
        if console is None:
            from rich.console import Console

            console = Console(stderr=True, highlight=False)
        self.epochs, self.console, self.interval = epochs, console, 1.0 / refresh_per_second
        self.live = console.is_terminal
        self.per_batch = self.live  # the plain lines are per epoch only
        self.progress = None
        self.done, self.next_draw = 0, 0.0

    def on_train_begin(self, state: TrainState) -> None:
        self.started, self.first_epoch = time.monotonic(), state.epoch
        self.epoch_started = self.started
        self.last = ""
        if not self.live:
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.progress = Progress(TextColumn("[bold]epoch {task.fields[epoch]}/{task.fields[epochs]}"), BarColumn(),
                                 MofNCompleteColumn(), TextColumn("{task.fields[info]}"), TimeElapsedColumn(),
                                 TextColumn("{task.fields[eta]}"),
                                 console=self.console, transient=False, auto_refresh=False)
        self.progress.start()
        self.task = self.progress.add_task("train", total=len(state.batcher), epoch=state.epoch + 1,
                                           epochs=self.epochs, info="", eta="")
        self.bar = next(t for t in self.progress.tasks if t.id == self.task)

    def on_epoch_begin(self, state: TrainState) -> None:
        self.epoch_started = time.monotonic()
        if not self.live:
            return
        position = state.batcher.order.position
        self.done = position if 0 < position < len(state.batcher) else 0
        self.progress.update(self.task, total=len(state.batcher), completed=self.done, epoch=state.epoch + 1,
                             epochs=self.epochs, info=self.last)
        # A new epoch's clock. (``Progress.reset`` would do this too, but it also redraws at once, every epoch.)
        self.bar.start_time, self.bar.finished_time = self.progress.get_time(), None

    def on_batch_end(self, state: TrainState, loss: torch.Tensor) -> None:
        self.done += 1
        if time.monotonic() >= self.next_draw:
            self.progress.update(self.task, completed=self.done, info=f"loss {loss.item():.4f}  {self.last}")
            self._draw()

    def _eta(self, state: TrainState) -> str:
        done = state.epoch - self.first_epoch
        if done <= 0 or state.epoch >= self.epochs:
            return ""
        per_epoch = (time.monotonic() - self.started) / done
        return f"ETA {format_duration(per_epoch * (self.epochs - state.epoch))}"

    def on_epoch_end(self, state: TrainState, logs: dict[str, float]) -> None:
        shown = [f"train_loss {logs['train_loss']:.4f}"]
        for k, v in logs.items():
            if k.startswith("val_") and (len(shown) < 3 or not self.live):
                shown.append(f"{k} {v:.4f}")
        self.last = "  ".join(shown)
        eta = self._eta(state)
        if not self.live:
            seconds = time.monotonic() - self.epoch_started
            line = f"epoch {state.epoch}/{self.epochs}  {self.last}  {seconds:.1f}s" + (f"  {eta}" if eta else "")
            self.console.print(line, markup=False, highlight=False, soft_wrap=True)
            return
        self.progress.update(self.task, completed=self.done, info=self.last, eta=eta)
        if time.monotonic() >= self.next_draw:
            self._draw()

    def on_train_end(self, state: TrainState) -> None:
        if self.progress is not None:
            self.progress.stop()  # draws the final state

    def _draw(self) -> None:
        self.progress.refresh()
        self.next_draw = time.monotonic() + self.interval
