"""Stage 3: losses against torch's functional forms worked by hand, optimizers and schedules as configured."""

import math

import pytest
import torch
import torch.nn.functional as F

from palaestra.config import LossConfig, OptimizerConfig, ScheduleConfig
from palaestra.data.spec import FeatureSpec
from palaestra.errors import ConfigError
from palaestra.training.losses import build_loss
from palaestra.training.optim import Schedule, build_optimizer

CLS = FeatureSpec(kind="table", task="classification", input_names=["numeric"], n_outputs=3)
BIN = FeatureSpec(kind="table", task="classification", input_names=["numeric"], n_outputs=2)
REG = FeatureSpec(kind="table", task="regression", input_names=["numeric"], n_outputs=1)


def test_cross_entropy_with_balanced_class_weights_and_label_smoothing():
    target = torch.tensor([0, 0, 0, 1, 2, 2])  # counts 3, 1, 2
    logits = torch.randn(6, 3, generator=torch.Generator().manual_seed(0))
    loss = build_loss(LossConfig(class_weights="balanced", label_smoothing=0.1), CLS, target)
    weights = torch.tensor([6 / (3 * 3), 6 / (3 * 1), 6 / (3 * 2)])  # n / (k * count), as scikit-learn
    want = F.cross_entropy(logits, target, weight=weights, label_smoothing=0.1)
    assert torch.allclose(loss(logits, target), want)
    assert torch.allclose(build_loss(LossConfig(), CLS, target)(logits, target), F.cross_entropy(logits, target))


def test_bce_on_two_logits_is_bce_of_the_margin():
    target = torch.tensor([0, 1, 1, 0])
    logits = torch.tensor([[0.2, -0.1], [0.0, 1.0], [2.0, 0.5], [-1.0, -3.0]])
    got = build_loss(LossConfig(name="bce"), BIN, target)(logits, target)
    p = logits.softmax(-1)[:, 1]  # sigmoid(l1 - l0) equals the softmax's class-1 probability
    want = -(target * p.log() + (1 - target) * (1 - p).log()).mean()
    assert torch.allclose(got, want, atol=1e-6)
    with pytest.raises(ConfigError, match="exactly two classes"):
        build_loss(LossConfig(name="bce"), CLS, torch.tensor([0, 1, 2]))


@pytest.mark.parametrize(("name", "want"), [("mse", (0.25 + 4) / 2), ("mae", (0.5 + 2) / 2),
                                             ("huber", (0.5 * 0.25 + (2 - 0.5)) / 2)])
def test_regression_losses_by_hand(name, want):
    out = torch.tensor([[1.5], [-2.0]])  # (B, 1) as the model gives
    target = torch.tensor([1.0, 0.0])
    assert build_loss(LossConfig(name=name), REG, target)(out, target).item() == pytest.approx(want)


def test_loss_must_fit_the_task():
    with pytest.raises(ConfigError, match="does not fit a regression task"):
        build_loss(LossConfig(name="cross_entropy"), REG, torch.zeros(3))
    with pytest.raises(ConfigError, match="does not fit a classification task"):
        build_loss(LossConfig(name="mse"), CLS, torch.tensor([0, 1]))


def _params():
    return [torch.nn.Parameter(torch.ones(3))]


@pytest.mark.parametrize(("cfg", "cls", "check"), [
    (OptimizerConfig(name="sgd", lr=0.1, momentum=0.9, nesterov=True), torch.optim.SGD,
     {"momentum": 0.9, "nesterov": True}),
    (OptimizerConfig(name="sgd", lr=0.1, momentum=0.0, nesterov=True), torch.optim.SGD, {"nesterov": False}),
    (OptimizerConfig(name="adam", weight_decay=0.0), torch.optim.Adam, {"weight_decay": 0.0}),
    (OptimizerConfig(name="adamw", weight_decay=0.05), torch.optim.AdamW, {"weight_decay": 0.05}),
    (OptimizerConfig(name="rmsprop", momentum=0.5), torch.optim.RMSprop, {"momentum": 0.5}),
])
def test_optimizers_as_configured(cfg, cls, check):
    opt = build_optimizer(_params(), cfg)
    assert type(opt) is cls and opt.param_groups[0]["lr"] == cfg.lr
    for key, value in check.items():
        assert opt.param_groups[0][key] == value


def test_frozen_parameters_are_not_optimized():
    frozen = torch.nn.Parameter(torch.ones(2), requires_grad=False)
    opt = build_optimizer([frozen, *_params()], OptimizerConfig())
    assert len(opt.param_groups[0]["params"]) == 1


def _lrs(cfg: ScheduleConfig, epochs=4, steps=3, monitored=None):
    opt = build_optimizer(_params(), OptimizerConfig(name="sgd", lr=0.1, momentum=0.0))
    sched = Schedule(cfg, opt, 0.1, epochs, steps)
    lrs = []
    for e in range(epochs):
        for _ in range(steps):
            opt.step()
            sched.step_batch()
        sched.step_epoch(monitored[e] if monitored else None)
        lrs.append(opt.param_groups[0]["lr"])
    return lrs


def test_schedules():
    assert _lrs(ScheduleConfig(name="none")) == [0.1] * 4
    assert _lrs(ScheduleConfig(name="step", step_size=2, gamma=0.5)) == pytest.approx([0.1, 0.05, 0.05, 0.025])
    cosine = _lrs(ScheduleConfig(name="cosine"))
    assert cosine == pytest.approx([0.1 * (1 + math.cos(math.pi * e / 4)) / 2 for e in range(1, 5)])
    plateau = _lrs(ScheduleConfig(name="plateau", patience=0, factor=0.5), monitored=[1.0, 1.0, 0.5, 0.6])
    assert plateau == pytest.approx([0.1, 0.05, 0.05, 0.025])
    onecycle = _lrs(ScheduleConfig(name="onecycle"), epochs=4, steps=3)
    # Steps per batch: near its peak (10 x lr) after the warm-up third, then annealing down.
    assert 0.9 < onecycle[0] <= 1.0 and onecycle == sorted(onecycle, reverse=True) and onecycle[-1] < 0.05


def test_plateau_schedule_follows_the_monitors_direction():
    """With an accuracy monitor the plateau schedule must not cut the learning rate while accuracy improves."""
    for mode, values, cut in (("max", [0.5, 0.6, 0.7, 0.8, 0.9], False), ("min", [0.5, 0.6, 0.7, 0.8, 0.9], True)):
        opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
        schedule = Schedule(ScheduleConfig(name="plateau", patience=1, factor=0.5), opt, 1.0, 10, 1, mode=mode)
        for v in values:
            schedule.step_epoch(v)
        assert (opt.param_groups[0]["lr"] < 1.0) == cut, mode
