"""The training loop: epochs, batches, forward, loss, backward, step, evaluate, callbacks. Read top to bottom."""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn
from torch.profiler import record_function

from palaestra.training.callbacks import CallbackList
from palaestra.training.parallel import reduce_sum
from palaestra.training.state import TrainState

Batch = tuple[torch.Tensor, ...]  # (input_1, ..., input_k, target)


def autocast(device: torch.device, precision: str):
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def evaluate(model: nn.Module, batches: Iterable[Batch], loss_fn: nn.Module, metrics: Any,
             device: torch.device, precision: str = "fp32") -> dict:
    """Mean loss and metrics over ``batches`` without building a graph (``torch.inference_mode``).

    The one evaluation path: the loop's validation, the test split, ``Run.evaluate`` and forecasting use it.
    ``metrics`` is a ``palaestra.evaluation.metrics`` metric set (``reset``, ``update``, ``compute``) or None.
    """
    was_training = model.training
    model.eval()
    total, count = torch.zeros((), device=device), 0
    if metrics is not None:
        metrics.reset()
    with torch.inference_mode(), autocast(device, precision):
        for *inputs, target in batches:
            out = model(*inputs)
            total += loss_fn(out, target).float() * len(target)
            count += len(target)
            if metrics is not None:
                metrics.update(out, target)
    model.train(was_training)
    result = metrics.compute() if metrics is not None and count else {}
    result["loss"] = float(total / max(count, 1)) if count else math.nan
    return result


def split_outputs(model: torch.nn.Module, split: Any, device: torch.device, batch: int = 4096) -> Any:
    """The model's outputs for a split's inputs, in evaluation mode (the mode it was in is restored)."""
    was = model.training
    model.eval()
    try:
        with torch.inference_mode():
            outs = [model(*(t[i:i + batch].to(device) for t in split.inputs)).float().cpu()
                    for i in range(0, len(split), batch)]
    finally:
        model.train(was)
    return torch.cat(outs).numpy() if outs else torch.zeros(0, 1).numpy()


def scalar_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """The float-valued metrics, as the loop logs them; a block per target is flattened to ``TARGET_METRIC``."""
    out: dict[str, float] = {}
    for k, v in metrics.items():
        if isinstance(v, float):
            out[k] = v
        elif isinstance(v, dict):
            out.update({f"{k}_{name}": value for name, value in v.items() if isinstance(value, float)})
    return out


def grad_norms(model: nn.Module) -> dict[str, float]:
    """Per-parameter gradient L2 norms (sampled once per epoch, for diagnostics)."""
    return {n: float(p.grad.detach().norm()) for n, p in model.named_parameters() if p.grad is not None}


def fit(state: TrainState, epochs: int, loss_fn: nn.Module, val_batches: Iterable[Batch] | None,
        val_metrics: Any, callbacks: CallbackList, device: torch.device, precision: str = "fp32",
        grad_clip: float | None = None, scaler: torch.amp.GradScaler | None = None,
        step_fn: Callable[[TrainState, Batch], torch.Tensor] | None = None) -> TrainState:
    """Train ``state.model`` until ``epochs`` are done or a callback sets ``state.stop_reason``.

    ``step_fn`` replaces the default forward/backward/step for one batch (e.g. a GAN's alternating step).
    """
    model, optimizer, batcher = state.model, state.optimizer, state.batcher
    # The epoch's running loss is summed without a host sync: on an accelerator as a device tensor; on the CPU,
    # where reading a scalar waits for nothing, as a Python float (cheaper than any tensor op per step).
    on_cpu = device.type == "cpu"
    amp = autocast(device, precision)
    callbacks.on_train_begin(state)
    while state.epoch < epochs and not state.should_stop:
        callbacks.on_epoch_begin(state)
        model.train()
        started = time.perf_counter()
        running: float | torch.Tensor = 0.0 if on_cpu else torch.zeros((), device=device)
        seen = 0
        if state.epoch_loss is not None:  # resumed mid-epoch: the batches done before the stop count too
            done, seen = state.epoch_loss
            running = float(done) if on_cpu else torch.as_tensor(done).to(device, torch.float32)
        with record_function("palaestra.train_batches"):  # labelled for torch.profiler, once per epoch
            for batch in batcher:
                if step_fn is not None:
                    loss = step_fn(state, batch)
                else:
                    *inputs, target = batch
                    with amp:
                        loss = loss_fn(model(*inputs), target)
                    optimizer.zero_grad(set_to_none=True)
                    if scaler is not None:
                        scaler.scale(loss).backward()
                        if grad_clip:
                            scaler.unscale_(optimizer)
                            nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
                        scaler.step(optimizer)
                        scaler.update()
                    else:
                        loss.backward()
                        if grad_clip:
                            nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
                        optimizer.step()
                state.step += 1
                n = batch[-1].shape[0]
                if on_cpu:
                    running += loss.item() * n  # a NaN anywhere makes the sum NaN
                else:
                    running.add_(loss.detach(), alpha=n)  # one fused op (sum += n * loss), no sync
                seen += n
                state.epoch_loss = (running, seen)  # so a mid-epoch checkpoint holds the epoch's running loss
                callbacks.on_batch_end(state, loss)
                if state.stop_reason is not None:  # e.g. a time limit: end the epoch after this step
                    break
        state.epoch_loss = None
        loss_sum = torch.tensor(running, dtype=torch.float64) if on_cpu else running
        loss_sum, seen = reduce_sum(loss_sum, seen, model)  # data-parallel: the mean over every rank's samples
        logs: dict[str, float] = {"epoch": state.epoch + 1, "train_loss": float(loss_sum / max(seen, 1))}
        norms = grad_norms(model)
        logs["grad_norm"] = math.sqrt(sum(v * v for v in norms.values())) if norms else 0.0
        if val_batches is not None:
            with record_function("palaestra.validate"):
                val = evaluate(model, val_batches, loss_fn, val_metrics, device, precision)
            logs["val_loss"] = val.pop("loss")
            logs.update({f"val_{k}": v for k, v in scalar_metrics(val).items()})
        logs["lr"] = optimizer.param_groups[0]["lr"]
        logs["seconds"] = time.perf_counter() - started
        state.epoch += 1
        state.last_grad_norms = norms
        state.grad_history.append(norms)
        if not all(math.isfinite(logs[k]) for k in ("train_loss", "val_loss") if k in logs):
            # Divergence guard: record the epoch, go back to the last good weights, stop.
            state.history.append(logs)
            state.stop_reason = (f"diverged: the loss became {logs['train_loss']} at epoch {state.epoch}; "
                                 f"the last good weights (epoch {state.best_epoch}) were kept. Try a lower optimizer.lr")
            state.diverged = True
            if state.best_weights is not None:
                model.load_state_dict(state.best_weights)
            break
        state.history.append(logs)
        callbacks.on_epoch_end(state, logs)
    callbacks.on_train_end(state)
    return state
