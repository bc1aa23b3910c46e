"""The loop's state: everything needed to continue training, saved and restored whole.

Weights, optimizer, schedule, every RNG (torch, numpy, python, the shuffling generator), epoch and batch
position, the monitored metric's best value and patience counter, and the history all live here, so a
checkpoint is ``state.state_dict()`` and a resume is ``state.load_state_dict(...)``.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from palaestra.data.batching import TensorBatcher
from palaestra.training.optim import Schedule


def capture_rng() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(tensors, json) for torch's, numpy's and python's global generators."""
    np_state = np.random.get_state()
    py_state = random.getstate()
    tensors = {"rng.torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = s
    meta = {
        "numpy": [np_state[0], np.asarray(np_state[1]).tolist(), int(np_state[2]), int(np_state[3]), float(np_state[4])],
        "python": [py_state[0], list(py_state[1]), py_state[2]],
    }
    return tensors, meta


def restore_rng(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    torch.set_rng_state(tensors["rng.torch"])
    cuda = [tensors[k] for k in sorted(k for k in tensors if k.startswith("rng.cuda."))]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)
    n = meta["numpy"]
    np.random.set_state((n[0], np.asarray(n[1], dtype=np.uint32), n[2], n[3], n[4]))
    p = meta["python"]
    random.setstate((p[0], tuple(p[1]), p[2]))


@dataclass
class TrainState:
    model: nn.Module
    optimizer: torch.optim.Optimizer
    schedule: Schedule
    batcher: TensorBatcher
    monitor: str = "val_loss"
    mode: str = "min"
    epoch: int = 0  # epochs completed
    step: int = 0  # optimizer steps taken
    history: list[dict[str, float]] = field(default_factory=list)
    best: float = math.inf
    best_epoch: int = 0
    wait: int = 0  # epochs since the monitored metric last improved
    best_weights: dict[str, torch.Tensor] | None = None
    stop_reason: str | None = None
    diverged: bool = False
    last_grad_norms: dict[str, float] = field(default_factory=dict)
    grad_history: list[dict[str, float]] = field(default_factory=list)  # per-parameter norms, one per epoch
    # The current epoch's running (loss sum, samples) while it is under way, so a mid-epoch resume logs the
    # same train_loss (and so takes the same early-stopping and plateau decisions) as an uninterrupted run.
    # A float on the CPU, a device tensor elsewhere (see ``fit``).
    epoch_loss: tuple[torch.Tensor | float, int] | None = None

    @property
    def should_stop(self) -> bool:
        return self.stop_reason is not None

    def improved(self, value: float, min_delta: float = 0.0) -> bool:
        if not math.isfinite(value):
            return False
        if self.mode == "min":
            return value < self.best - min_delta
        return value > self.best + min_delta

    def snapshot_best(self) -> None:
        self.best_weights = {k: v.detach().to("cpu", copy=True) for k, v in self.model.state_dict().items()}

    # -- persistence: (tensors for safetensors, plain data for JSON) ---------------------------------------

    def state_dict(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        tensors: dict[str, torch.Tensor] = {}
        for k, v in self.model.state_dict().items():
            tensors[f"model.{k}"] = v
        if self.best_weights is not None:
            for k, v in self.best_weights.items():
                tensors[f"best.{k}"] = v
        opt = self.optimizer.state_dict()
        opt_meta: dict[str, Any] = {"param_groups": opt["param_groups"], "state": {}}
        for pid, pstate in opt["state"].items():
            entry = {}
            for name, value in pstate.items():
                if torch.is_tensor(value):
                    tensors[f"optim.{pid}.{name}"] = value
                    entry[name] = "tensor"
                else:
                    entry[name] = value
            opt_meta["state"][str(pid)] = entry
        rng_tensors, rng_meta = capture_rng()
        tensors.update(rng_tensors)
        batcher = self.batcher.state_dict()
        tensors["batcher.epoch_start_state"] = batcher["epoch_start_state"]
        if self.epoch_loss is not None:
            done = self.epoch_loss[0]
            tensors["epoch.loss_sum"] = done if torch.is_tensor(done) else torch.tensor(done, dtype=torch.float64)
        meta = {
            "epoch": self.epoch, "step": self.step, "history": self.history, "best": self.best,
            "best_epoch": self.best_epoch, "wait": self.wait, "monitor": self.monitor, "mode": self.mode,
            "stop_reason": self.stop_reason, "diverged": self.diverged, "grad_history": self.grad_history,
            "batch_position": batcher["position"],
            "epoch_seen": self.epoch_loss[1] if self.epoch_loss is not None else None,
            "optimizer": opt_meta, "schedule": self.schedule.state_dict(), "rng": rng_meta,
        }
        return {k: v.detach().cpu().contiguous() for k, v in tensors.items()}, meta

    def load_state_dict(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        self.model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
        best = {k[5:]: v for k, v in tensors.items() if k.startswith("best.")}
        self.best_weights = best or None
        opt_meta = meta["optimizer"]
        state: dict[int, dict[str, Any]] = {}
        for pid, entry in opt_meta["state"].items():
            state[int(pid)] = {name: tensors[f"optim.{pid}.{name}"] if value == "tensor" else value
                               for name, value in entry.items()}
        self.optimizer.load_state_dict({"state": state, "param_groups": opt_meta["param_groups"]})
        # Checkpoints hold contiguous tensors; moments must share their parameter's layout (channels_last
        # weights), as when the optimizer creates them, since fused kernels walk them in memory order.
        for param, pstate in self.optimizer.state.items():
            for name, value in pstate.items():
                if torch.is_tensor(value) and value.shape == param.shape and value.stride() != param.stride():
                    pstate[name] = torch.empty_like(param, dtype=value.dtype).copy_(value)
        self.schedule.load_state_dict(meta["schedule"])
        restore_rng(tensors, meta["rng"])
        self.batcher.load_state_dict({"epoch_start_state": tensors["batcher.epoch_start_state"],
                                      "position": meta["batch_position"]})
        self.epoch, self.step, self.history = meta["epoch"], meta["step"], meta["history"]
        self.best, self.best_epoch, self.wait = meta["best"], meta["best_epoch"], meta["wait"]
        self.stop_reason = meta.get("stop_reason")
        self.diverged = meta.get("diverged", False)
        self.grad_history = meta.get("grad_history", [])
        seen = meta.get("epoch_seen")
        self.epoch_loss = (tensors["epoch.loss_sum"], int(seen)) if seen is not None and "epoch.loss_sum" in tensors else None
