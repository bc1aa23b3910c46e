"""Loss functions, chosen by name or by the task (``loss: auto``)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from palaestra.config import LossConfig
from palaestra.data.spec import FeatureSpec
from palaestra.errors import ConfigError

CLASSIFICATION_LOSSES = ("cross_entropy", "bce")
REGRESSION_LOSSES = ("mse", "mae", "huber")


class BinaryCrossEntropy(nn.Module):
    """BCE on two logits: ``sigmoid(l1 - l0)`` equals ``softmax(l)[1]``, so probabilities stay a softmax."""

    def __init__(self, pos_weight: torch.Tensor | None = None):
        super().__init__()
        self.register_buffer("pos_weight", pos_weight)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        margin = logits[:, 1] - logits[:, 0]
        return F.binary_cross_entropy_with_logits(margin, target.to(margin.dtype), pos_weight=self.pos_weight)


class RegressionLoss(nn.Module):
    """Wraps an elementwise loss so the model's ``(B, 1)`` output meets a ``(B,)`` target."""

    def __init__(self, fn: nn.Module):
        super().__init__()
        self.fn = fn

    def forward(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.fn(output.squeeze(-1), target.to(output.dtype))


class TokenCrossEntropy(nn.Module):
    """Cross-entropy of ``(B, T, V)`` next-token logits against ``(B, T)`` ids (language models)."""

    def __init__(self, label_smoothing: float = 0.0):
        super().__init__()
        self.label_smoothing = label_smoothing

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits.flatten(0, 1), target.flatten(), label_smoothing=self.label_smoothing)


class MemberLoss(nn.Module):
    """Scores an ensemble's members each on its own: a ``(B, k, outputs)`` output (``model.ensemble: k`` while
    training) is the mean of the k members' losses; a ``(B, outputs)`` one is passed through."""

    def __init__(self, fn: nn.Module):
        super().__init__()
        self.fn = fn

    def forward(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if output.dim() == 3:
            return self.fn(output.flatten(0, 1), target.repeat_interleave(output.shape[1], dim=0))
        return self.fn(output, target)


def resolve_loss_name(cfg: LossConfig, task: str) -> str:
    if cfg.name == "auto":
        return "cross_entropy" if task == "classification" else "mse"
    allowed = CLASSIFICATION_LOSSES if task == "classification" else REGRESSION_LOSSES
    if cfg.name not in allowed:
        raise ConfigError(f"loss '{cfg.name}' does not fit a {task} task; use one of {', '.join(allowed)}")
    return cfg.name


def class_weights(cfg: LossConfig, counts: torch.Tensor) -> torch.Tensor | None:
    if cfg.class_weights is None:
        return None
    if cfg.class_weights == "balanced":
        # n_samples / (n_classes * count), as scikit-learn's class_weight="balanced"
        return counts.sum() / (len(counts) * counts.clamp(min=1).float())
    w = torch.tensor(cfg.class_weights, dtype=torch.float32)
    if len(w) != len(counts):
        raise ConfigError(f"loss.class_weights has {len(w)} values for {len(counts)} classes")
    return w


class MultiTargetLoss(nn.Module):
    """The weighted sum of each target's loss on its own columns of the output.

    ``target`` is ``(B, targets)`` float: class codes (exact in float32) or standardised values per column.
    """

    def __init__(self, losses: list[nn.Module], spans: list[tuple[int, int]], weights: list[float]):
        super().__init__()
        self.losses = nn.ModuleList(losses)
        self.spans, self.weights = spans, weights

    def forward(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        total = output.new_zeros(())
        for j, (fn, (start, stop), w) in enumerate(zip(self.losses, self.spans, self.weights, strict=True)):
            column = target[:, j]
            if isinstance(fn, (nn.CrossEntropyLoss, BinaryCrossEntropy)):
                column = column.long()
            total = total + w * fn(output[:, start:stop], column)
        return total


def _single_loss(cfg: LossConfig, task: str, n_outputs: int, train_target: torch.Tensor, lenient: bool) -> nn.Module:
    name = "auto" if lenient and cfg.name not in (CLASSIFICATION_LOSSES if task == "classification"
                                                  else REGRESSION_LOSSES) else cfg.name
    name = resolve_loss_name(cfg.model_copy(update={"name": name}), task)
    if name == "cross_entropy":
        counts = torch.bincount(train_target.long(), minlength=n_outputs)
        return nn.CrossEntropyLoss(weight=class_weights(cfg, counts), label_smoothing=cfg.label_smoothing)
    if name == "bce":
        if n_outputs != 2:
            raise ConfigError(f"loss 'bce' needs exactly two classes, found {n_outputs}: use cross_entropy")
        counts = torch.bincount(train_target.long(), minlength=2)
        w = class_weights(cfg, counts)
        return BinaryCrossEntropy(None if w is None else (w[1] / w[0]).reshape(()))
    fn = {"mse": nn.MSELoss(), "mae": nn.L1Loss(), "huber": nn.HuberLoss(delta=cfg.huber_delta)}[name]
    return RegressionLoss(fn)


def build_loss(cfg: LossConfig, spec: FeatureSpec, train_target: torch.Tensor, members: int = 1) -> nn.Module:
    """The training loss. ``train_target`` (encoded) is used for class weights.

    Several targets: each gets the loss of its task (``loss.name`` applies where it fits the task), summed with
    ``loss.weights`` (default 1 each). ``members`` > 1 (``model.ensemble``): each member scored on its own.
    """
    loss = _task_loss(cfg, spec, train_target)
    return MemberLoss(loss) if members > 1 else loss


def _task_loss(cfg: LossConfig, spec: FeatureSpec, train_target: torch.Tensor) -> nn.Module:
    if spec.task == "language_model":
        return TokenCrossEntropy(cfg.label_smoothing)
    if not spec.multi_target:
        return _single_loss(cfg, spec.task, spec.n_outputs, train_target, lenient=False)
    names = [o["name"] for o in spec.outputs]
    unknown = sorted(set(cfg.weights) - set(names))
    if unknown:
        raise ConfigError(f"loss.weights names {', '.join(unknown)}, which is not a target (targets: {', '.join(names)})")
    if cfg.class_weights not in (None, "balanced"):
        raise ConfigError("loss.class_weights as a list is for one target; with several use 'balanced' or null")
    losses, spans, start = [], [], 0
    for j, o in enumerate(spec.outputs):
        losses.append(_single_loss(cfg, o["task"], o["width"], train_target[:, j], lenient=True))
        spans.append((start, start + o["width"]))
        start += o["width"]
    return MultiTargetLoss(losses, spans, [float(cfg.weights.get(n, 1.0)) for n in names])
