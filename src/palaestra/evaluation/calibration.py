"""Probabilities you can trust and decisions for the imbalanced case (classification).

- **Expected calibration error** (ECE) over ``N_BINS`` equal-width bins of the top-class confidence, right-closed
  (``(k/B, (k+1)/B]``): ``sum_k |sum of confidences in k - correct predictions in k| / N`` (Guo et al., 2017),
  and the **reliability diagram** behind it (per bin: bounds, rows, mean confidence, accuracy). ``Reliability`` is the
  streaming torchmetrics metric the loop and ``Run.evaluate`` use; ``reliability_table`` the same from arrays.
- **Temperature scaling**: one scalar ``T`` that divides the logits, fitted on the validation split by minimising
  the negative log-likelihood (``fit_temperature``). It changes no prediction (argmax is kept), only confidence.
- **Decision threshold** (binary targets): the probability of the positive (minority) class above which a row
  is called positive, chosen on the validation split for an objective: ``f1`` (of the positive class),
  ``balanced_accuracy``, or a cost ratio ``c`` (a missed positive costs ``c`` false alarms).

>>> ece(torch.tensor([[0.9, 0.1], [0.2, 0.8]]), torch.tensor([0, 0]))  # doctest: +SKIP
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import nn
from torchmetrics import Metric

N_BINS = 15
MIN_T, MAX_T = 0.05, 20.0  # temperatures outside this are a sign of a degenerate validation split


def bin_index(confidence: torch.Tensor, n_bins: int = N_BINS) -> torch.Tensor:
    """The right-closed equal-width bin of each confidence: ``(k/B, (k+1)/B]`` -> k (0 falls in bin 0)."""
    return (torch.ceil(confidence.double() * n_bins).long() - 1).clamp(0, n_bins - 1)


class Reliability(Metric):
    """Streaming per-bin sums of the top-class confidence: rows, summed confidence, correct predictions.

    ``compute()`` returns a ``(3, n_bins)`` tensor (count, confidence sum, correct sum); ``summary`` turns it into
    ECE and the reliability diagram's table."""

    full_state_update = False

    def __init__(self, n_bins: int = N_BINS, **kwargs: Any):
        super().__init__(**kwargs)
        self.n_bins = n_bins
        for name in ("count", "confidence", "correct"):
            self.add_state(name, default=torch.zeros(n_bins, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, probs: torch.Tensor, target: torch.Tensor) -> None:
        conf, pred = probs.max(dim=1)
        bins = bin_index(conf, self.n_bins)
        self.count += torch.bincount(bins, minlength=self.n_bins).double()
        self.confidence += torch.bincount(bins, weights=conf.double(), minlength=self.n_bins)
        self.correct += torch.bincount(bins, weights=(pred == target).double(), minlength=self.n_bins)

    def compute(self) -> torch.Tensor:
        return torch.stack([self.count, self.confidence, self.correct])


def summary(sums: torch.Tensor | np.ndarray) -> tuple[float, list[list[float]]]:
    """``(ece, reliability)`` from per-bin sums (count, confidence sum, correct sum).

    ``reliability`` lists the bins that hold rows, each ``[lower, upper, rows, mean confidence, accuracy]``: a
    list of rows like ``confusion_matrix``, so metrics.json's blocks keep only scalars and lists."""
    count, conf, correct = (np.asarray(s, dtype=np.float64) for s in sums)
    n, bins = count.sum(), len(count)
    value = float(np.abs(conf - correct).sum() / n) if n else math.nan
    table = [[k / bins, (k + 1) / bins, int(count[k]), float(conf[k] / count[k]), float(correct[k] / count[k])]
             for k in range(bins) if count[k] > 0]
    return value, table


def reliability_table(probs: np.ndarray | torch.Tensor, target: np.ndarray | torch.Tensor,
                      n_bins: int = N_BINS) -> tuple[float, list[list[float]]]:
    """ECE and the reliability table of probabilities ``(N, K)`` against labels ``(N,)``."""
    m = Reliability(n_bins)
    m.update(torch.as_tensor(np.asarray(probs), dtype=torch.float64), torch.as_tensor(np.asarray(target)))
    return summary(m.compute())


def ece(probs: np.ndarray | torch.Tensor, target: np.ndarray | torch.Tensor, n_bins: int = N_BINS) -> float:
    return reliability_table(probs, target, n_bins)[0]


def fit_temperature(logits: torch.Tensor, target: torch.Tensor) -> float:
    """The temperature ``T`` minimising the mean NLL of ``softmax(logits / T)`` (L-BFGS on ``log T``)."""
    logits, target = logits.detach().double(), target.detach().long()
    log_t = torch.zeros((), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=0.5, max_iter=100, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = nn.functional.cross_entropy(logits / log_t.exp(), target)
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    t = float(log_t.detach().exp())
    return min(max(t, MIN_T), MAX_T) if math.isfinite(t) else 1.0


class TemperatureScaled(nn.Module):
    """``model``'s logits divided by ``temperature``: how evaluation sees a calibrated classifier."""

    def __init__(self, model: nn.Module, temperature: float):
        super().__init__()
        self.model, self.temperature = model, float(temperature)
        self.train(model.training)  # a fresh Module is in training mode: wrapping must not change the model's

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.model(*inputs) / self.temperature


def scaled(model: nn.Module, temperature: float) -> nn.Module:
    return model if temperature == 1.0 else TemperatureScaled(model, temperature)


# --- decisions (binary targets) --------------------------------------------------------------------------------


def binary_scores(p_positive: np.ndarray, y_positive: np.ndarray, threshold: float) -> dict[str, float]:
    """Precision, recall and F1 of the positive class, balanced accuracy and accuracy at ``threshold``."""
    pred = np.asarray(p_positive) >= threshold
    y = np.asarray(y_positive).astype(bool)
    tp, fp = float(np.sum(pred & y)), float(np.sum(pred & ~y))
    fn, tn = float(np.sum(~pred & y)), float(np.sum(~pred & ~y))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    specificity = tn / (tn + fp) if tn + fp else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "balanced_accuracy": (recall + specificity) / 2,
            "accuracy": (tp + tn) / max(len(y), 1), "false_positives": fp, "false_negatives": fn}


def objective_score(scores: dict[str, float], objective: str | float) -> float:
    """Higher is better: F1, balanced accuracy, or minus the cost ``FP + c * FN`` for a cost ratio ``c``."""
    if objective in ("f1", "balanced_accuracy"):
        return scores[objective]
    return -(scores["false_positives"] + float(objective) * scores["false_negatives"])


def choose_threshold(p_positive: np.ndarray, y_positive: np.ndarray, objective: str | float,
                     max_candidates: int = 512) -> float:
    """The threshold with the best ``objective`` on these rows: candidates halfway between consecutive distinct
    probabilities (so a threshold never sits on a row's own value), and 0.5; ties go to the one nearest 0.5."""
    p = np.unique(np.asarray(p_positive, dtype=np.float64))
    if len(p) > max_candidates:
        p = np.unique(np.quantile(p, np.linspace(0, 1, max_candidates)))
    candidates = np.concatenate([(p[:-1] + p[1:]) / 2, [0.5]]) if len(p) > 1 else np.array([0.5])
    values = np.array([objective_score(binary_scores(p_positive, y_positive, t), objective) for t in candidates])
    best = np.flatnonzero(values >= values.max() - 1e-12)
    return float(candidates[best[np.argmin(np.abs(candidates[best] - 0.5))]])


# --- after training: fit on the validation split, measure on both ------------------------------------------------


def collect_logits(model: nn.Module, batches: Any, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """The model's logits and the labels over ``batches`` (float64 logits on the CPU)."""
    was_training = model.training
    model.eval()
    outs, targets = [], []
    with torch.inference_mode():
        for *inputs, target in batches:
            outs.append(model(*inputs).double().cpu())
            targets.append(target.long().cpu())
    model.train(was_training)
    if not outs:
        return torch.zeros(0, 0, dtype=torch.float64), torch.zeros(0, dtype=torch.long)
    return torch.cat(outs), torch.cat(targets)


def _probs(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    return torch.softmax(logits / temperature, dim=1)


def calibrate(model: nn.Module, val_batches: Any, test_batches: Any, output: Any, train_target: torch.Tensor,
              method: str, objective: str | float, device: torch.device) -> dict[str, Any]:
    """Fit temperature scaling (and, for a binary target, a decision threshold) on the validation split; set
    them on ``output`` (the run's ``CategoryOutput``, so every decode applies them); return what metrics.json
    records: ``{"calibration": {...}, "decision": {...}}`` (each only when it applies)."""
    result: dict[str, Any] = {}
    val_logits, val_y = collect_logits(model, val_batches, device) if val_batches is not None else (None, None)
    if val_logits is None or len(val_y) < 2:
        if method == "temperature" or objective != "none":
            result["calibration"] = {"method": "none", "reason": "no validation split to fit on"}
        return result
    test_logits, test_y = collect_logits(model, test_batches, device) if test_batches is not None else (None, None)
    has_test = test_logits is not None and len(test_y) > 0
    temperature = 1.0
    if method != "none":
        fitted = fit_temperature(val_logits, val_y)
        before, after = ece(_probs(val_logits, 1.0), val_y), ece(_probs(val_logits, fitted), val_y)
        applied = method == "temperature" or after < before
        temperature = fitted if applied else 1.0
        block: dict[str, Any] = {"method": "temperature", "mode": method, "temperature": fitted, "applied": applied,
                                 "val_ece_before": before, "val_ece_after": after}
        if has_test:
            test_before, block["reliability_before"] = reliability_table(_probs(test_logits, 1.0), test_y)
            block["test_ece_before"] = test_before
            block["test_ece_after"] = ece(_probs(test_logits, fitted), test_y)
        result["calibration"] = block
    output.temperature = temperature
    if objective != "none" and output.width == 2:
        counts = torch.bincount(train_target.long().flatten(), minlength=2)
        positive = int(torch.argmin(counts))  # the minority class (the second on a tie)
        if counts[0] == counts[1]:
            positive = 1
        p_val = _probs(val_logits, temperature)[:, positive].numpy()
        threshold = choose_threshold(p_val, val_y.numpy() == positive, objective)
        decision: dict[str, Any] = {"objective": objective, "threshold": threshold, "positive_class": output.classes[positive]}
        splits = [("val", p_val, val_y)]
        if has_test:
            splits.append(("test", _probs(test_logits, temperature)[:, positive].numpy(), test_y))
        for name, p, y in splits:
            truth = y.numpy() == positive
            decision[name] = {"at_0.5": binary_scores(p, truth, 0.5), "at_threshold": binary_scores(p, truth, threshold)}
        result["decision"] = decision
        output.threshold, output.positive = threshold, positive
    return result
