"""config -> data -> model -> loss/optimizer -> loop -> evaluation -> run directory. One function: ``train``."""

from __future__ import annotations

import difflib
import platform
import random
import signal
import sys
import time
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from palaestra.artifacts import atomic_write, finite_json, make_dir, write_json, write_manifest, write_tensors
from palaestra.config import (
    Config,
    build_config,
    flatten,
    load_config,
    read_saved_config,
    set_path,
)
from palaestra.data.batching import LoaderBatcher, TensorBatcher
from palaestra.data.forecast import mase
from palaestra.data.prepare import prepare_data
from palaestra.data.spec import FeatureSpec, PreparedData
from palaestra.errors import ConfigError, UserError
from palaestra.evaluation.calibration import calibrate, scaled
from palaestra.evaluation.metrics import metric_set
from palaestra.models import FAMILIES, build_model, resolve_family, resolve_layout
from palaestra.models.seasonal_blend import choose_weights, find_blend
from palaestra.resources import build_within_memory, check_machine
from palaestra.runs import Run, RunIndex, read_state, run_name, runs_root, set_state
from palaestra.training import callbacks as cb
from palaestra.training import trackers as tracking
from palaestra.training.checkpoint import has_checkpoint, load_checkpoint, save_checkpoint
from palaestra.training.loop import evaluate, fit, split_outputs
from palaestra.training.losses import MemberLoss, build_loss
from palaestra.training.optim import Schedule, build_optimizer
from palaestra.training.parallel import setup as setup_distributed
from palaestra.training.state import TrainState


class TrainingInterrupted(UserError):
    """SIGINT/SIGTERM arrived: a checkpoint was saved; the message says how to resume.

    Not bad input: the command line exits with the shell's code for the signal (130 for Ctrl-C, 143 for SIGTERM).
    """

    def __init__(self, message: str, signum: int = signal.SIGINT):
        super().__init__(message)
        self.exit_code = 128 + int(signum)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"train.device is '{name}' but no CUDA GPU is available")
    return device


def environment(device: torch.device, seed: int) -> dict[str, Any]:
    packages = {}
    for dist in ("torch", "numpy", "pandas", "pyarrow", "pydantic", "PyYAML", "torchmetrics", "safetensors",
                 "scikit-learn", "rich", "matplotlib", "optuna", "onnx", "onnxruntime", "fastapi"):
        try:
            packages[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return {"python": platform.python_version(), "platform": platform.platform(), "palaestra": metadata.version("palaestra"),
            "packages": packages, "seed": seed, "device": str(device), "threads": torch.get_num_threads(),
            "cuda": torch.version.cuda if torch.cuda.is_available() else None}


@dataclass
class Interrupt:
    signum: int | None = None


@contextmanager
def _catch_signals(flag: Interrupt):
    """SIGINT/SIGTERM set a flag; the loop checkpoints at the next batch and stops cleanly."""
    def handler(signum, _frame):
        if flag.signum is not None:  # a second Ctrl-C: stop now
            raise KeyboardInterrupt
        flag.signum = signum

    previous = {}
    try:
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, handler)
    except ValueError:  # not the main thread: leave signals alone
        previous = {}
    try:
        yield
    finally:
        for sig, h in previous.items():
            signal.signal(sig, h)


class _InterruptCheck(cb.Callback):
    def __init__(self, flag: Interrupt, save):
        self.flag, self.save = flag, save

    def _check(self, state: TrainState) -> None:
        if self.flag.signum is not None:
            where = self.save(state) if self.save else None
            name = signal.Signals(self.flag.signum).name
            if where is None:
                raise TrainingInterrupted(f"training interrupted by {name} (no run directory, nothing saved)",
                                          self.flag.signum)
            raise TrainingInterrupted(f"training interrupted by {name} at epoch {state.epoch + 1}, step {state.step}; "
                                      f"checkpoint saved. Resume with: palaestra train --resume {where}",
                                      self.flag.signum)

    def on_batch_end(self, state: TrainState, loss: torch.Tensor) -> None:
        # After an epoch's last batch, wait for on_epoch_end: a checkpoint taken between the last batch and the
        # epoch's end would resume into one epoch too many.
        if self.flag.signum is not None and state.batcher.order.position < len(state.batcher):
            self._check(state)

    def on_epoch_end(self, state: TrainState, logs: dict[str, float]) -> None:
        self._check(state)


def _monitor(config: Config, has_val: bool) -> tuple[str, str]:
    es = config.train.early_stopping
    monitor = es.monitor if es else "val_loss"
    if not has_val and monitor.startswith("val_"):
        monitor = "train_loss"
    return monitor, cb.monitor_mode(monitor, es.mode if es else "auto")


def _batchers(config: Config, data: PreparedData, device: torch.device, rank: int, world_size: int):
    mode = config.data.batching
    if mode == "auto":
        mode = "memory" if config.data.num_workers == 0 else "loader"
    cls = TensorBatcher if mode == "memory" else LoaderBatcher
    kw = {"num_workers": config.data.num_workers} if cls is LoaderBatcher else {}
    on = device if device.type != "cpu" else None
    train = cls(data.train.tensors, config.train.batch_size, shuffle=True, seed=config.seed + 1, rank=rank,
                world_size=world_size, device=on, **kw)
    eval_bs = max(config.train.batch_size, 1024)
    val = TensorBatcher(data.val.tensors, eval_bs, shuffle=False, device=on) if len(data.val) else None
    test = TensorBatcher(data.test.tensors, eval_bs, shuffle=False, device=on) if len(data.test) else None
    return train, val, test


# --- the steps of a run -------------------------------------------------------------------------------------


def resolve_config(config: Config, spec: FeatureSpec, rows: int = 0) -> Config:
    """``auto`` resolved (family, task) and the family's declared defaults filled in where the user set nothing,
    so the run's config.yaml alone retrains the same model. An explicit user setting always wins; the family's
    data-dependent defaults (``recipes``, given the ``rows`` training rows) see what the user set."""
    family = FAMILIES[resolve_family(spec, config.model)]
    explicit = config.explicit()
    given = flatten(explicit)

    def set_by_user(path: str) -> bool:  # the user set it (or part of it)
        return any(k == path or k.startswith(path + ".") for k in given)

    tree = {**explicit, "model": {**explicit.get("model", {}), "family": family.name},
            "data": {**explicit.get("data", {}), "task": spec.task}}
    for path, value in family.defaults.items():
        if not set_by_user(path):
            set_path(tree, path.split("."), value)
    for path, value in (family.recipes(spec, rows, set_by_user) if family.recipes else {}).items():
        if not set_by_user(path):
            set_path(tree, path.split("."), value)
    return build_config(tree)


def use_channels_last(config: Config, spec: FeatureSpec) -> bool:
    """``train.channels_last`` resolved: null means what the family declares, for 2-D image models only."""
    if spec.kind != "image":
        return False
    if config.train.channels_last is not None:
        return config.train.channels_last
    return FAMILIES[config.model.family].channels_last


@dataclass
class Parts:
    """What training needs, built from the resolved config and the prepared data."""

    model: nn.Module
    loss_fn: nn.Module
    state: TrainState
    val: TensorBatcher | None
    test: TensorBatcher | None
    metrics: Callable[[], Any]
    channels_last: bool


def build_parts(config: Config, data: PreparedData, device: torch.device, dist) -> Parts:
    seed_everything(config.seed)  # the same weights whatever the data stage consumed
    model = build_within_memory(build_model, data.spec, config.model, device).to(device)
    channels_last = use_channels_last(config, data.spec)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    loss_fn = build_loss(config.loss, data.spec, data.train.target, config.model.ensemble).to(device)
    optimizer = build_optimizer(model, config.optimizer)
    train_b, val_b, test_b = _batchers(config, data, device, dist.rank if dist else 0, dist.world_size if dist else 1)
    monitor, mode = _monitor(config, val_b is not None)
    schedule = Schedule(config.schedule, optimizer, config.optimizer.lr, config.train.epochs, len(train_b), mode=mode)
    state = TrainState(model, optimizer, schedule, train_b, monitor=monitor, mode=mode)
    pre = data.preprocessor

    def metrics():
        ms = metric_set(data.spec, getattr(pre, "target_mean", 0.0), getattr(pre, "target_std", 1.0), device)
        return dist.local_metrics(ms) if dist is not None else ms

    _check_monitor(config, monitor, metrics().names if val_b is not None else [])
    return Parts(model, loss_fn, state, val_b, test_b, metrics, channels_last)


def _check_monitor(config: Config, monitor: str, val_names: list[str]) -> None:
    """A misspelt validation monitor is refused before training, with the names that are logged."""
    if not monitor.startswith("val_") or not val_names:
        return
    logged = ["val_loss"] + [f"val_{n}" for n in val_names]
    if monitor not in logged:
        close = difflib.get_close_matches(monitor, logged, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise ConfigError(f"train.early_stopping.monitor '{monitor}' is not a logged metric{hint}; "
                          f"choose from train_loss, {', '.join(logged)}")


def build_callbacks(config: Config, parts: Parts, save, run_dir: Path | None, flag: Interrupt,
                    extra: Sequence[cb.Callback], console, quiet: bool,
                    trackers: Sequence[cb.Callback] = ()) -> tuple[list[cb.Callback], Callable | None, list]:
    """The callbacks in their fixed order, and the model's own training step and monitors, if it declares them.

    Trackers (MLflow, TensorBoard) come after the model's own monitors, so they log what those add to an epoch."""
    es = config.train.early_stopping
    callbacks: list[cb.Callback] = [cb.LRSchedule(parts.state.schedule.per_batch),
                                    cb.BestTracker(es.min_delta if es else 0.0)]
    if es:
        callbacks.append(cb.EarlyStopping(es))
    if config.train.stop_at:
        callbacks.append(cb.StopAtTarget(config.train.stop_at))
    if config.train.time_limit:
        callbacks.append(cb.TimeLimit(config.train.time_limit))
    if run_dir is not None:  # a running or interrupted run shows its epochs
        callbacks.append(cb.HistoryCSV(run_dir / "history.csv"))
    if save:
        callbacks.append(cb.Checkpoint(save, config.train.checkpoint_every_steps))
    callbacks.extend(extra)
    own = FAMILIES[config.model.family].training  # e.g. a GAN's alternating step and its sample grids
    step_fn, model_callbacks = own(parts.model, run_dir) if own is not None else (None, [])
    callbacks.extend(model_callbacks)
    callbacks.extend(trackers)
    callbacks.append(_InterruptCheck(flag, save))
    if config.train.progress and not quiet:
        callbacks.append(cb.Progress(config.train.epochs, console=console))
    return callbacks, step_fn, model_callbacks


def evaluate_splits(parts: Parts, data: PreparedData, device: torch.device,
                    with_test: bool = True) -> tuple[dict, dict]:
    """Validation and test metrics of the trained model, with the task's baselines beside them (``with_test``:
    False when another model will be tested, as after ``train.refit``)."""
    model = scaled(parts.model, getattr(data.preprocessor, "temperature", 1.0))  # calibrated, if it was
    val = evaluate(model, parts.val, parts.loss_fn, parts.metrics(), device) if parts.val is not None else {}
    test = evaluate(model, parts.test, parts.loss_fn, parts.metrics(), device) \
        if parts.test is not None and with_test else {}
    baseline = getattr(data.preprocessor, "baseline_metrics", None)  # e.g. the unigram model's bits per char
    # forecasting: the metrics in the target's units per series, with the persistence, seasonal and ETS baselines
    own = getattr(data.preprocessor, "split_metrics", None)
    for metrics, split in ((val, data.val), (test, data.test)):
        if metrics and baseline is not None:
            metrics.update(baseline(split))
        if metrics and own is not None:
            metrics.update(own(data.raw, split, split_outputs(model, split, device)))
    return val, test


def member_forecasts(model: nn.Module, pre: Any, raw: Any, split: Any, device: torch.device) -> dict[str, dict]:
    """Each blend member's forecasts alone on ``split``: ``split_forecasts``' dict (without ETS) per member name.
    The blend's weights are as they were afterwards."""
    blend = find_blend(model)
    kept, out = blend.weight.clone(), {}
    try:
        for j, name in enumerate(blend.members):
            blend.weight.zero_()
            blend.weight[j] = 1.0
            out[name] = pre.split_forecasts(raw, split, split_outputs(model, split, device), ets=False)
    finally:
        blend.weight.copy_(kept)
    return out


def fit_forecast_blend(parts: Parts, data: PreparedData, device: torch.device) -> dict[str, Any]:
    """A forecast's combination with the classical forecasts of its window (``model.blend``): the weights that score
    the lowest validation MASE, set in the model (so predict, serve and export apply them). What metrics.json
    records of it."""
    blend = find_blend(parts.model)
    if blend is None or data.val is None or len(data.val) == 0:
        return {}
    members = member_forecasts(parts.model, data.preprocessor, data.raw, data.val, device)
    val = members["network"]
    if "seasonal_naive" not in val:  # a validation origin less than a season into its series
        return {}

    def score(f: np.ndarray) -> float:
        return mase(f, val["actual"], val["series"], val["scale"])

    forecasts = [m["model"] for m in members.values()]
    weights = choose_weights(forecasts, score)
    blend.weight.copy_(torch.tensor(weights))
    return {"blend": {"weights": dict(zip(members, weights, strict=True)),
                      "val_mase": score(sum(w * f for w, f in zip(weights, forecasts, strict=True))),
                      "val_mase_members": {name: score(f) for name, f in zip(members, forecasts, strict=True)}}}


class _KeepBlend(cb.Callback):
    """Gives a refitted forecaster the blend weights its first training chose (the refit has no validation span)."""

    def __init__(self, weights: torch.Tensor):
        self.weights = weights.clone()

    def on_train_end(self, state: TrainState) -> None:
        blend = find_blend(state.model)
        if blend is not None:
            blend.weight.copy_(self.weights)


def check_refit(data: PreparedData, dist: Any, split_override: Any) -> None:
    """``train.refit`` refused before anything trains where it cannot run."""
    if data.spec.task != "forecast":
        raise ConfigError("train.refit is for forecasting (task: forecast): other splits are not in time order")
    if split_override is not None or dist is not None:
        raise ConfigError("train.refit runs in one process, on the configured split")
    if data.val is None or len(data.val) == 0:
        raise ConfigError("train.refit needs a validation span to learn the epoch count from (data.split.val > 0)")


def refit(config: Config, source: Any, model: nn.Module, epochs: int) -> Run:
    """``train.refit``: the same config trained from scratch on the training and validation rows together for
    ``epochs`` epochs, no early stopping; the test span stays where it was (a forecast's split is chronological)."""
    split = config.data.split
    tree = config.explicit()
    tree.setdefault("data", {})["split"] = {**split.model_dump(), "train": split.train + split.val, "val": 0.0}
    tree["train"] = {**tree.get("train", {}), "epochs": max(1, epochs), "early_stopping": None, "restore_best": False,
                     "refit": False, "time_limit": None, "trackers": [], "progress": False}
    blend = find_blend(model)
    keep = [_KeepBlend(blend.weight)] if blend is not None else []
    return train(tree, source=source, quiet=True, extra_callbacks=keep)


def calibrate_decisions(config: Config, parts: Parts, data: PreparedData, device: torch.device) -> dict[str, Any]:
    """Classification with one target: temperature scaling and, for two classes, the decision threshold, fitted on
    the validation split and set on the run's preprocessing (so predict, serve and export apply them); the class
    weights the loss used. What metrics.json records of them."""
    output = getattr(data.preprocessor, "calibrated_output", None)
    if output is None:
        return {}
    out = calibrate(parts.model, parts.val, parts.test, output, data.train.target, config.train.calibrate,
                    config.train.threshold_objective, device)
    loss_fn = parts.loss_fn.fn if isinstance(parts.loss_fn, MemberLoss) else parts.loss_fn  # an ensemble's
    weight = getattr(loss_fn, "weight", None)  # cross-entropy's per-class weights (loss.class_weights)
    pos_weight = getattr(loss_fn, "pos_weight", None)  # bce: the second class's weight relative to the first
    if weight is None and pos_weight is not None:
        weight = torch.stack([torch.ones_like(pos_weight), pos_weight])
    if weight is not None and output.classes:
        out["class_weights"] = {str(c): float(w) for c, w in zip(output.classes, weight.tolist(), strict=True)}
    return out


def train(config: Config | dict | str | Path | None = None, *, source: Any = None,
          out: str | Path | None = None, resume: str | Path | None = None, overrides: Sequence[str] | dict | None = None,
          extra_callbacks: Sequence[cb.Callback] = (), console=None, quiet: bool = False,
          split_override: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None) -> Run:
    """Train a model from a config and return the ``Run``; with ``out``, also write the run directory.

    ``split_override``: explicit (train, val, test) row positions instead of the configured split (k-fold).

    >>> run = train({"data": {"source": "iris"}, "train": {"epochs": 5, "progress": False}}, quiet=True)  # doctest: +SKIP
    """
    if resume is not None:
        config, out = resume_config(config, overrides, Path(resume)), Path(resume)
    else:
        config = load_config(config, overrides)
    for name in config.train.trackers:  # a tracker that is not installed is refused before anything is written
        tracking.require(name)
    seed_everything(config.seed)
    check_machine(config)
    if config.train.threads:
        torch.set_num_threads(config.train.threads)
    device = pick_device(config.train.device)
    dist = setup_distributed(device)  # under torchrun (`--nproc N`): this rank's place; None in one process
    if dist is not None:
        device, quiet = dist.device, quiet or not dist.is_main  # only rank 0 prints
    data = prepare_data(resolve_layout(config), config.seed, source=source, embedding_dim=config.model.embedding_dim,
                        split_override=split_override)
    if config.train.refit:
        check_refit(data, dist, split_override)
    config = resolve_config(config, data.spec, len(data.train.target))
    parts = build_parts(config, data, device, dist)
    run_dir, save = _open_run_dir(out, resume, config, data.spec, getattr(data.preprocessor, "target", None),
                                  parts.state, dist)
    flag = Interrupt()
    trackers = _trackers(config, run_dir, data.spec, getattr(data.preprocessor, "target", None))
    callbacks, step_fn, model_callbacks = build_callbacks(config, parts, save, run_dir, flag, extra_callbacks,
                                                          console, quiet, trackers)
    if not quiet:
        for notice in data.notices:
            _say(console, f"[yellow]note:[/] {notice}")
    try:
        train_seconds = _fit(config, parts, callbacks, step_fn, device, dist, flag, run_dir)
    except TrainingInterrupted:
        _close_trackers(trackers, "KILLED")  # resumed later into the same tracked run
        raise
    except BaseException:
        _close_trackers(trackers, "FAILED")
        raise
    state, model = parts.state, parts.model
    if config.train.restore_best and state.best_weights is not None and not state.diverged:
        model.load_state_dict(state.best_weights)
    decisions = {} if state.diverged else {**calibrate_decisions(config, parts, data, device),
                                            **fit_forecast_blend(parts, data, device)}
    refitting = config.train.refit and not state.diverged
    val, test = evaluate_splits(parts, data, device, with_test=not refitting)  # a refit model is the one tested
    if refitting:
        refitted = refit(config, source, model, state.best_epoch or state.epoch)
        model, data, test = refitted.model, refitted.data, refitted.metrics["test"]
        decisions["refit"] = {"epochs": refitted.metrics["epochs"], "train_seconds": refitted.metrics["train_seconds"]}
    metrics = {"val": val, "test": test, **decisions, "epochs": state.epoch, "best_epoch": state.best_epoch,
               "monitor": state.monitor, "train_seconds": round(train_seconds, 3), "stop_reason": state.stop_reason,
               "parameters": sum(p.numel() for p in model.parameters()),
               "trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad)}
    if dist is not None:
        metrics["world_size"] = dist.world_size  # train.batch_size was per rank: retrain with --nproc this
    run = Run(config, data.preprocessor, data.spec, model, metrics, state.history, run_dir, notices=data.notices,
              state=state, data=data)
    # Model-declared monitors may add report sections (e.g. the GAN's samples per epoch).
    run.report_sections = [s for c in model_callbacks if (s := getattr(c, "report_section", lambda h: None)(state.history))]
    if run_dir is not None:
        _write_run(run_dir, run, data, state, device)
        for tracker in trackers:  # the test metrics and the written files, then the tracked run ends
            tracker.finish(run_dir, run.metrics, failed=state.diverged)
        _refuse_diverged(run_dir, state)
    if state.diverged and not quiet:
        _say(console, f"[red]warning:[/] {state.stop_reason}")
    return run


def _trackers(config: Config, run_dir: Path | None, spec: FeatureSpec, target: Any) -> list[cb.Callback]:
    """``train.trackers`` as callbacks (none without a run directory: only rank 0 of a data-parallel run has one)."""
    if not config.train.trackers:
        return []
    tags = {"palaestra.task": spec.task, "palaestra.family": config.model.family, "palaestra.kind": spec.kind}
    return tracking.build_trackers(config.train.trackers, run_dir, runs_root(), run_name(config, target),
                                   config.to_dict(), tags)


def _close_trackers(trackers: Sequence[cb.Callback], status: str) -> None:
    for tracker in trackers:
        tracker.close(status)


def _open_run_dir(out, resume, config: Config, spec: FeatureSpec, target: Any, state: TrainState, dist):
    """The run directory (claimed, or reopened to resume) and the checkpoint function; None/None without one."""
    run_dir = Path(out) if out is not None else None
    ckpt_dir = run_dir / "checkpoints" if run_dir else None
    if dist is not None and resume is not None:
        # Every rank reads the checkpoint only once all have arrived: none may still be writing the last one.
        dist.barrier()
    if dist is not None and not dist.is_main:
        # Only rank 0 writes; on --resume every rank loads the same checkpoint (rank 0 below).
        if resume is not None and has_checkpoint(ckpt_dir):
            load_checkpoint(ckpt_dir, state)
        return None, None
    if run_dir is None:
        return None, None
    if resume is None:
        _claim_run_dir(run_dir)
        atomic_write(run_dir / "config.yaml", config.to_yaml())
    else:
        if has_checkpoint(ckpt_dir):
            load_checkpoint(ckpt_dir, state)
        atomic_write(run_dir / "config.yaml", config.to_yaml())  # e.g. train.epochs raised to train longer
    set_state(run_dir, "running")
    RunIndex.default().record(run_dir, name=run_name(config, target), task=spec.task)
    return run_dir, lambda s: (save_checkpoint(ckpt_dir, s), run_dir)[1]


def _fit(config: Config, parts: Parts, callbacks, step_fn, device, dist, flag: Interrupt, run_dir: Path | None) -> float:
    """The loop, with signals caught and the run's state recorded on failure; returns the seconds it took."""
    state, model = parts.state, parts.model
    scaler = torch.amp.GradScaler("cuda") if config.train.precision == "fp16" and device.type == "cuda" else None
    started = time.perf_counter()
    if config.train.compile:
        state.model = torch.compile(model)
    if dist is not None:
        state.model = dist.wrap(state.model)  # DistributedDataParallel: gradients averaged across ranks
    try:
        with _catch_signals(flag):
            fit(state, config.train.epochs, parts.loss_fn, parts.val, parts.metrics(), cb.CallbackList(callbacks),
                device, config.train.precision, config.train.grad_clip, scaler, step_fn=step_fn)
    except TrainingInterrupted:
        if run_dir is not None:
            set_state(run_dir, "interrupted")
        raise
    except BaseException as exc:
        if run_dir is not None:
            set_state(run_dir, "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed",
                      error=f"{type(exc).__name__}: {exc}"[:500])
        raise
    finally:
        state.model = model
        if parts.channels_last:  # evaluation, the saved weights and export see the standard layout
            model.to(memory_format=torch.contiguous_format)
    return time.perf_counter() - started


def _say(console, text: str) -> None:
    if console is None:
        from rich.console import Console

        console = Console(stderr=True)
    console.print(text, soft_wrap=True)  # one line each, however long: readable in logs and by tools


class TrainingDiverged(UserError):
    """The loss became NaN or infinite: the run directory is kept (for ``palaestra doctor``), marked failed."""


def _refuse_diverged(run_dir: Path, state: TrainState) -> None:
    """A diverged run is not a finished model: mark it failed (not complete) and exit 2 saying so."""
    if not state.diverged:
        return  # (_write_run has already marked it failed)
    raise TrainingDiverged(f"training {state.stop_reason}; the run {run_dir} is marked failed "
                           f"(see: palaestra doctor {run_dir})")


def _claim_run_dir(run_dir: Path) -> None:
    if run_dir.is_dir() and any(run_dir.iterdir()):
        state = read_state(run_dir)
        raise UserError(f"run directory {run_dir} already exists (state: {state}); "
                        f"choose another --out, or continue it with --resume {run_dir}")
    make_dir(run_dir)  # a place that cannot hold a directory is an OutputError (exit 2)


def resume_config(config: Config | dict | str | Path | None, overrides, run_dir: Path) -> Config:
    if not run_dir.is_dir() or not (run_dir / "config.yaml").is_file():
        raise UserError(f"cannot resume {run_dir}: it is not a run directory (no config.yaml)")
    saved = read_saved_config(run_dir / "config.yaml")
    if read_state(run_dir) == "complete":
        raise UserError(f"run {run_dir} is already complete; nothing to resume")
    if config is not None or overrides:
        given = load_config(config, overrides)
        # Compare what the user set (the saved config also holds what `auto` and the family resolved to);
        # training longer (train.epochs) or quieter (train.progress) is allowed.
        resumable = {"train.epochs", "train.progress"}
        mine, theirs = flatten(given.explicit()), flatten(saved.to_dict())
        diff = sorted({k.split(".")[0] for k, v in mine.items()
                       if k not in resumable and k not in ("model.family", "data.task") and theirs.get(k) != v})
        if diff:
            raise UserError(f"cannot resume {run_dir} with a different config (differs in: {', '.join(diff)}); "
                            f"resume with the run's own config: palaestra train --resume {run_dir}")
        changed = {k: v for k, v in mine.items() if k in resumable and theirs.get(k) != v}
        if changed:
            saved = load_config(saved, changed)
    return saved


def _write_run(run_dir: Path, run: Run, data: PreparedData, state: TrainState, device: torch.device) -> None:
    write_tensors(run_dir / "model.safetensors", run.model.state_dict())
    write_json(run_dir / "preprocess.json", {"version": 1, "preprocessor": run.preprocessor.to_dict(),
                                             "spec": run.spec.to_dict(),
                                             "splits": {k: getattr(data, k).index.tolist() for k in ("train", "val", "test")}})
    write_json(run_dir / "metrics.json", finite_json(run.metrics))
    atomic_write(run_dir / "history.csv", cb.history_csv(state.history))
    write_json(run_dir / "diagnostics.json", finite_json({"grad_norms": state.grad_history}))
    write_json(run_dir / "env.json", environment(device, run.config.seed))
    files = ["config.yaml", "model.safetensors", "preprocess.json", "metrics.json", "history.csv", "diagnostics.json", "env.json"]
    try:  # the training doctor: findings go into report.html; `palaestra train` prints run.findings
        from palaestra.diagnosis import diagnose, findings_html

        run.findings = diagnose(run_dir, run=run, raw=data.raw)
        run.report_sections = [*(getattr(run, "report_sections", None) or []), ("Doctor", findings_html(run.findings))]
    except ImportError:
        pass
    files += _report(run_dir, run, data)
    write_manifest(run_dir, files)
    # A diverged run is never marked complete, not even for a moment (a kill here must not leave it so).
    if state.diverged:
        set_state(run_dir, "failed", error=str(state.stop_reason)[:500])
    else:
        set_state(run_dir, "complete")
    test = run.metrics.get("test", {})
    RunIndex.default().record(run_dir, metrics={k: v for k, v in test.items() if isinstance(v, float)})


def _report(run_dir: Path, run: Run, data: PreparedData) -> list[str]:
    try:
        from palaestra.evaluation.report import regression_predictions, write_report
        from palaestra.evaluation.task_sections import (
            decisions_section,
            forecast_section,
            text_sample_section,
        )
    except ImportError:
        return []
    calibration = decisions_section(run.metrics)
    if calibration is not None:
        run.report_sections = [*run.report_sections, calibration]
    importance = _importance_section(run, data)
    if importance is not None:
        run.report_sections = [*run.report_sections, importance]
    for section in (forecast_section(run, data), text_sample_section(run)):
        if section is not None:
            run.report_sections = [section, *run.report_sections]
    info = {"task": run.spec.task, "data": run.config.data.source, "model": run.config.model.family,
            "parameters": run.metrics.get("parameters"), "train rows": len(data.train), "val rows": len(data.val),
            "test rows": len(data.test)}
    return write_report(run_dir, run.config.to_dict(), run.history, run.metrics, info, data.notices,
                        sections=getattr(run, "report_sections", None), predictions=regression_predictions(run, data.test))


REPORT_IMPORTANCE_COLUMNS = 32  # wider tables: `palaestra explain RUN --column ...` on the columns of interest


def _importance_section(run: Run, data: PreparedData) -> tuple[str, str] | None:
    """Permutation importance on the test split, for report.html (tables of up to 32 columns; 5 repeats)."""
    columns = getattr(run.preprocessor, "feature_columns", None)
    if run.spec.kind != "table" or not columns or len(columns) > REPORT_IMPORTANCE_COLUMNS or len(data.test) < 10:
        return None
    from palaestra.diagnosis.explain import importance_section, permutation_importance

    rows = data.raw.iloc[np.asarray(data.test.index)]
    return importance_section(permutation_importance(run, rows, repeats=5, max_rows=1000, seed=run.config.seed))


def main_job() -> int:  # pragma: no cover - convenience for `python -m palaestra.pipeline`
    run = train({"data": {"source": "penguins"}})
    print(run.metrics["test"])
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main_job())
