"""Streaming metrics (torchmetrics), named as in DESIGN.md section 4.

Classification: accuracy, precision_macro, recall_macro, f1_macro, f1_weighted, roc_auc, confusion_matrix, and the
expected calibration error ``ece`` with its reliability diagram (``reliability``: per-bin rows, confidence, accuracy).
Regression: mse, rmse, mae, r2 -- in the target's original units.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import torch
import torch.nn.functional as F
from torchmetrics import MeanMetric, MetricCollection
from torchmetrics import classification as C
from torchmetrics import regression as R

from palaestra.evaluation.calibration import Reliability, summary
from palaestra.training.loop import scalar_metrics

__all__ = ["MetricSet", "MultiMetricSet", "metric_set", "scalar_metrics"]


class MetricSet:
    """Accumulates model outputs batch by batch; ``compute()`` returns plain floats (and lists).

    Streaming in chunks: outputs are gathered until they hold ``chunk_elements`` values (16 MB of float32 by
    default) or ``compute`` is called, and then passed to every metric in one ``update``, so a validation pass of a few batches costs one update per metric, not one
    per batch (each torchmetrics call has a fixed Python cost), while memory stays bounded. Inputs come from our
    own preprocessing, so torchmetrics' per-call input validation is off (``validate_args=False``).

    >>> m = MetricSet("classification", n_classes=2)
    >>> m.update(torch.tensor([[2.0, 0.0], [0.0, 2.0]]), torch.tensor([0, 0]))
    >>> m.compute()["accuracy"]
    0.5
    """

    def __init__(self, task: str, n_classes: int = 0, target_mean: float = 0.0, target_std: float = 1.0,
                 classes: list[Any] | None = None, device: torch.device | str = "cpu",
                 chunk_elements: int = 1 << 22, sync: bool = True):
        self.task, self.n_classes, self.classes = task, n_classes, classes
        self.target_mean, self.target_std = target_mean, target_std
        self.chunk_elements = chunk_elements
        self._outputs: list[torch.Tensor] = []
        self._targets: list[torch.Tensor] = []
        self._elements = 0
        local = {"sync_on_compute": sync}  # False: this process's rows only, no gather across ranks
        if task == "classification":
            k, fast = n_classes, {"validate_args": False, **local}
            self.metrics = MetricCollection({
                "accuracy": C.MulticlassAccuracy(k, average="micro", **fast),
                "precision_macro": C.MulticlassPrecision(k, average="macro", **fast),
                "recall_macro": C.MulticlassRecall(k, average="macro", **fast),
                "f1_macro": C.MulticlassF1Score(k, average="macro", **fast),
                "f1_weighted": C.MulticlassF1Score(k, average="weighted", **fast),
                "roc_auc": C.MulticlassAUROC(k, average="macro", **fast),
                "confusion_matrix": C.MulticlassConfusionMatrix(k, **fast),
                "reliability": Reliability(**local),
            }, compute_groups=False)
        elif task == "language_model":
            # Mean next-token cross-entropy (nats) over every position; bits_per_char = loss / ln 2.
            self.metrics = MetricCollection({"loss": MeanMetric(**local)}, compute_groups=False)
        else:
            self.metrics = MetricCollection({"mse": R.MeanSquaredError(**local), "mae": R.MeanAbsoluteError(**local),
                                             "r2": R.R2Score(**local)}, compute_groups=False)
        self.metrics.to(device)

    @property
    def all_metrics(self) -> list:
        return list(self.metrics.values())

    @property
    def names(self) -> list[str]:
        """The scalar metrics ``compute`` returns (what the loop logs as ``val_<name>``)."""
        extra = {"classification": ["ece"], "language_model": ["bits_per_char"]}.get(self.task, ["rmse"])
        return [k for k in self.metrics.keys() if k not in ("confusion_matrix", "reliability")] + extra

    def update(self, outputs: torch.Tensor, target: torch.Tensor) -> None:
        outputs = outputs.detach().float()
        if self.task == "language_model":  # outputs (B, T, V) logits, target (B, T) ids: too large to gather
            self.metrics["loss"].update(F.cross_entropy(outputs.flatten(0, 1), target.flatten(), reduction="none"))
            return
        self._outputs.append(outputs)
        self._targets.append(target.detach())
        self._elements += outputs.numel()
        if self._elements >= self.chunk_elements:
            self._flush()

    def _flush(self) -> None:
        if not self._outputs:
            return
        outputs = self._outputs[0] if len(self._outputs) == 1 else torch.cat(self._outputs)
        target = self._targets[0] if len(self._targets) == 1 else torch.cat(self._targets)
        self._outputs, self._targets, self._elements = [], [], 0
        if self.task == "classification":
            self.metrics.update(outputs.softmax(dim=-1), target)
        else:
            scale = self.target_std
            if outputs.dim() == 2 and outputs.shape[1] > 1:  # several steps ahead: every value counts once
                outputs, target = outputs.reshape(-1, 1), target.reshape(-1)
            self.metrics.update(outputs.squeeze(-1) * scale + self.target_mean, target.float() * scale + self.target_mean)

    def compute(self) -> dict[str, Any]:
        self._flush()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. a class absent from a small validation split
            raw = self.metrics.compute()
        out: dict[str, Any] = {}
        for name, value in raw.items():
            if name == "confusion_matrix":
                out[name] = value.cpu().long().tolist()
            elif name == "reliability":
                out["ece"], out[name] = summary(value.cpu())
            else:
                out[name] = float(value)
        if self.task == "classification":
            out["classes"] = self.classes
        elif self.task == "language_model":
            out["bits_per_char"] = out["loss"] / math.log(2)
        else:
            out["rmse"] = math.sqrt(out["mse"])
        return out

    def reset(self) -> None:
        self._outputs, self._targets, self._elements = [], [], 0
        self.metrics.reset()


class MultiMetricSet:
    """One ``MetricSet`` per target, each fed its own columns of the outputs and its column of the target.

    ``compute()`` returns one block per target: ``{"price": {"mae": ...}, "kind": {"accuracy": ...}}``.
    """

    def __init__(self, names: list[str], parts: list[MetricSet], widths: list[int]):
        self.names_of_targets, self.parts = names, parts
        self.spans = []
        start = 0
        for w in widths:
            self.spans.append((start, start + w))
            start += w

    @property
    def all_metrics(self) -> list:
        return [m for part in self.parts for m in part.metrics.values()]

    @property
    def names(self) -> list[str]:
        return [f"{name}_{m}" for name, part in zip(self.names_of_targets, self.parts, strict=True) for m in part.names]

    def update(self, outputs: torch.Tensor, target: torch.Tensor) -> None:
        for j, (part, (start, stop)) in enumerate(zip(self.parts, self.spans, strict=True)):
            column = target[:, j]
            part.update(outputs[:, start:stop], column.long() if part.task == "classification" else column)

    def compute(self) -> dict[str, Any]:
        return {name: part.compute() for name, part in zip(self.names_of_targets, self.parts, strict=True)}

    def reset(self) -> None:
        for part in self.parts:
            part.reset()


def metric_set(spec: Any, target_mean: float = 0.0, target_std: float = 1.0,
               device: torch.device | str = "cpu", sync: bool = True) -> MetricSet | MultiMetricSet:
    """The metrics of a run's task: one ``MetricSet``, or one per target for several targets. ``sync``: gather
    across the ranks of a data-parallel run when computed (the loop's sharded splits); off for data only this
    process holds (``Run.evaluate``, which rank 0 alone calls while it writes the run's report)."""
    outputs = getattr(spec, "outputs", None) or []
    if len(outputs) <= 1:
        return MetricSet(spec.task, spec.n_outputs, target_mean, target_std, spec.classes, device, sync=sync)
    parts = [MetricSet(o["task"], o["width"], o.get("mean", 0.0), o.get("std", 1.0), o.get("classes"), device,
                       sync=sync) for o in outputs]
    return MultiMetricSet([o["name"] for o in outputs], parts, [o["width"] for o in outputs])
