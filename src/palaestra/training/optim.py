"""Optimizers and learning-rate schedules."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from palaestra.config import OptimizerConfig, ScheduleConfig
from palaestra.errors import ConfigError


def parameter_groups(model: nn.Module, lr: float) -> list[dict]:
    """The trainable parameters of ``model`` in groups by learning rate: a module with an ``lr_scale``
    attribute (a fine-tuned pretrained encoder) trains at ``lr * lr_scale``; the rest, first, at ``lr``."""
    scales: dict[int, float] = {}
    for module in model.modules():
        if isinstance(getattr(module, "lr_scale", None), float):
            scales.update({id(p): module.lr_scale for p in module.parameters()})
    groups: dict[float, list[nn.Parameter]] = {1.0: []}
    for p in model.parameters():
        if p.requires_grad:
            groups.setdefault(scales.get(id(p), 1.0), []).append(p)
    return [{"params": ps, "lr": lr * scale, "lr_scale": scale} for scale, ps in groups.items() if ps or scale == 1.0]


def build_optimizer(params: Iterable[nn.Parameter] | nn.Module, cfg: OptimizerConfig) -> torch.optim.Optimizer:
    """SGD (momentum, Nesterov), Adam, AdamW or RMSprop, with weight decay; given a model, its parameters in
    the groups ``parameter_groups`` makes.

    >>> opt = build_optimizer([nn.Parameter(torch.zeros(2))], OptimizerConfig(name="sgd", lr=0.1, momentum=0.9))
    >>> type(opt).__name__, opt.param_groups[0]["momentum"]
    ('SGD', 0.9)
    """
    if isinstance(params, nn.Module):
        groups = parameter_groups(params, cfg.lr)
        flat = [p for g in groups for p in g["params"]]
        params = groups if len(groups) > 1 else flat
    else:
        params = flat = [p for p in params if p.requires_grad]
    wd = cfg.weight_decay
    if cfg.fused and cfg.name == "rmsprop":
        raise ConfigError("optimizer.fused is available for sgd, adam and adamw, not rmsprop")
    fused = {"fused": True} if use_fused(cfg, flat) else {}
    if cfg.name == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov and cfg.momentum > 0,
                               weight_decay=wd, **fused)
    if cfg.name == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, betas=cfg.betas, weight_decay=wd, **fused)
    if cfg.name == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, betas=cfg.betas, weight_decay=wd, **fused)
    return torch.optim.RMSprop(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=wd)


FUSED = ("sgd", "adam", "adamw")
_FUSED_DEVICES = ("cpu", "cuda")


def use_fused(cfg: OptimizerConfig, params: list[nn.Parameter]) -> bool:
    """``optimizer.fused`` resolved: null means fused wherever torch has the kernel (measured: BENCHMARKS.md).

    >>> use_fused(OptimizerConfig(name="adamw"), [nn.Parameter(torch.zeros(2))])
    True
    >>> use_fused(OptimizerConfig(name="rmsprop"), [nn.Parameter(torch.zeros(2))])
    False
    """
    if cfg.fused is not None:
        return cfg.fused
    return (cfg.name in FUSED and bool(params)
            and all(p.device.type in _FUSED_DEVICES and p.is_floating_point() and not p.is_sparse for p in params))


class Schedule:
    """A learning-rate schedule and when it steps: per batch (one-cycle) or per epoch (the rest)."""

    def __init__(self, cfg: ScheduleConfig, optimizer: torch.optim.Optimizer, lr: float, epochs: int,
                 steps_per_epoch: int, mode: str = "min"):
        """``mode``: whether the monitored metric improves downwards (``min``: a loss) or upwards (``max``: an
        accuracy); the plateau schedule lowers the learning rate when it stops improving in that direction."""
        self.name = cfg.name
        self.per_batch = cfg.name == "onecycle"
        self.scheduler: object | None
        if cfg.name == "step":
            self.scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=cfg.step_size, gamma=cfg.gamma)
        elif cfg.name == "cosine":
            self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs, eta_min=cfg.min_lr)
        elif cfg.name == "onecycle":
            peak = cfg.max_lr or 10 * lr  # each group keeps its own share of it (a fine-tuned encoder's lr_scale)
            self.scheduler = torch.optim.lr_scheduler.OneCycleLR(
                optimizer, max_lr=[peak * g.get("lr_scale", 1.0) for g in optimizer.param_groups],
                total_steps=max(1, epochs * steps_per_epoch))
        elif cfg.name == "plateau":
            self.scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
                optimizer, mode=mode, factor=cfg.factor, patience=cfg.patience, min_lr=cfg.min_lr)
        else:
            self.scheduler = None

    def step_batch(self) -> None:
        if self.per_batch and self.scheduler is not None:
            self.scheduler.step()

    def step_epoch(self, monitored: float | None) -> None:
        if self.scheduler is None or self.per_batch:
            return
        if self.name == "plateau":
            if monitored is not None:
                self.scheduler.step(monitored)
        else:
            self.scheduler.step()

    def state_dict(self) -> dict:
        return self.scheduler.state_dict() if self.scheduler is not None else {}

    def load_state_dict(self, state: dict) -> None:
        if self.scheduler is not None and state:
            self.scheduler.load_state_dict(state)
