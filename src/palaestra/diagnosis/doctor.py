"""The training doctor: read a finished run and say, with the evidence, what went wrong and what to change.

Every threshold is relative to something the run itself defines, so the same numbers hold for any dataset:
losses are compared with the *baseline loss* (what the best constant prediction scores: the entropy of the
class prior, or the spread of the standardised target), gradients with the other layers' gradients.
A healthy run gets no findings.

>>> from palaestra.diagnosis import diagnose
>>> [f.code for f in diagnose("runs/penguins")]  # doctest: +SKIP
[]
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from palaestra.diagnosis import data_checks as dc
from palaestra.diagnosis.facts import Facts

UNDERFIT = 0.6  # train and val loss still >= 60% of the baseline: the model explains < 40% of it
OVERFIT_RISE = 0.2  # val loss ends >= 20% above its minimum ...
OVERFIT_ABS = 0.1  # ... and by >= 10% of the baseline loss (tiny losses wobble by large ratios)
OSCILLATION = 0.1  # an epoch-to-epoch rise of the train loss bigger than 10% of the baseline
BLOW_UP = 2.0  # train loss climbs to twice its first-epoch value
SLOW = 0.1  # lr too low: the train loss fell < 10% over the whole run ...
MOVED = 0.01  # ... and the weights moved < 1% of their norm away from the initialisation
VANISH_RATIO = 1e-3  # first layer's gradient < 1/1000 of the last layer's: the first layer barely learns
EXPLODE_NORM = 1e3  # with standardised inputs and O(1) losses, healthy per-layer gradient norms are O(0.01-10)
DEAD_SHARE = 0.25  # a quarter of a layer's ReLU units never fire on any training row
MAX_ROWS = 5000  # rows pushed through the model for the dead-unit check
HIGH_DROPOUT = 0.4  # at or above this, more dropout is not the advice
HIGH_DECAY = 0.3  # likewise for weight decay


def size_knobs(family: str) -> tuple[str, ...]:
    """The config keys that set a family's size (what the family declares; the table model's otherwise)."""
    from palaestra.models import FAMILIES

    fam = FAMILIES.get(family)
    return fam.size_knobs if fam is not None and fam.size_knobs else ("model.hidden",)


@dataclass
class Finding:
    """One diagnosis: a stable ``code``, a one-line ``title``, the numbers behind it, and what to change."""

    code: str
    title: str
    evidence: str
    suggestion: str

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


def diagnose(run_dir: str | Path, *, run: Any = None, raw: Any = None, notes: list[str] | None = None) -> list[Finding]:
    """Findings for a finished run directory; ``[]`` for a healthy run.

    ``run`` and ``raw`` (the in-memory model and source data) spare re-loading them right after training;
    ``notes`` collects why a check was skipped (e.g. the data source is no longer readable).
    """
    facts = Facts(Path(run_dir), run, raw, notes)
    findings: list[Finding] = []
    for check in _CHECKS_FOR.get(facts.task, _CHECKS):
        if check in (_lr_too_low, _underfitting) and any(f.code in ("lr_too_high", "lr_too_low") for f in findings):
            continue  # the learning rate explains a high loss: don't also blame the model
        try:
            found = check(facts)
        except Exception as exc:  # one check that cannot read this kind of run must not hide the others
            facts.notes.append(f"{check.__name__.strip('_')} check skipped ({type(exc).__name__}: {exc})")
            continue
        findings += found if isinstance(found, list) else [found] if found else []
    return findings


# --- the loss curves ---------------------------------------------------------------------------------------


def _lr_too_high(f: Facts) -> Finding | None:
    train = f.col("train_loss")
    lr_text = f"optimizer.lr is {f.config.optimizer.lr:g} ({f.config.optimizer.name})"
    stop = str(f.metrics.get("stop_reason") or "")
    if stop.startswith("diverged") or (len(train) and not np.isfinite(train).all()):
        bad = int(np.argmax(~np.isfinite(train))) + 1 if len(train) and not np.isfinite(train).all() else len(train)
        return Finding("lr_too_high", "the loss diverged (NaN or infinite)",
                       f"the training loss became non-finite at epoch {bad}; {lr_text}",
                       "lower optimizer.lr by 10x; set train.grad_clip (e.g. 1.0); check the inputs for huge values")
    if len(train) < 2:
        return None
    if train.max() >= BLOW_UP * train[0] and train.argmax() > 0:
        return Finding("lr_too_high", "the training loss grew instead of falling",
                       f"train_loss went from {train[0]:.4g} (epoch 1) up to {train.max():.4g} "
                       f"(epoch {int(train.argmax()) + 1}); {lr_text}",
                       "lower optimizer.lr by 10x, or add a warm-up/decaying schedule (schedule: onecycle)")
    base = f.baseline()
    rises = np.diff(train)
    big = int((rises > OSCILLATION * base).sum())
    if len(train) >= 3 and big >= max(2, len(rises) // 4):
        return Finding("lr_too_high", "the training loss oscillates",
                       f"train_loss rose by more than {OSCILLATION:.0%} of the baseline loss ({base:.3g}) in {big} of "
                       f"{len(rises)} epochs; {lr_text}",
                       "lower optimizer.lr by 3-10x, or use a decaying schedule (cosine, plateau)")
    return None


def _lr_too_low(f: Facts) -> Finding | None:
    train = f.col("train_loss")
    if len(train) < 3 or not np.isfinite(train).all():
        return None
    base = f.baseline()
    drop = (train[0] - train[-1]) / max(abs(train[0]), 1e-12)
    if drop >= SLOW or train[-1] < UNDERFIT * base:
        return None
    # A loss stuck high is either a model that cannot do better (underfitting) or steps too small to get
    # anywhere: the second leaves the weights where they started.
    try:
        moved = f.weight_change()
    except Exception:  # no loadable model: judge by the curve alone
        moved = None
    falling = float((np.diff(train) < 0).mean())
    if (moved is not None and moved < MOVED) or (moved is None and falling >= 0.7):
        where = f"the weights moved {moved * 100:.2g}% of their size from the initialisation" if moved is not None \
            else f"the loss fell in {falling:.0%} of epochs"
        return Finding("lr_too_low", "the loss barely moves",
                       f"train_loss fell only {drop:.1%} in {len(train)} epochs ({train[0]:.4g} -> {train[-1]:.4g}), "
                       f"still {train[-1] / base:.0%} of the baseline loss {base:.3g}; {where}; "
                       f"optimizer.lr is {f.config.optimizer.lr:g}",
                       "raise optimizer.lr by 10x (or find it with palaestra tune); train for more epochs")
    return None


def _underfitting(f: Facts) -> Finding | None:
    train, val = f.col("train_loss"), f.col("val_loss")
    if len(train) < 2 or not np.isfinite(train).all():
        return None
    base = f.baseline()
    t_end = float(train[-max(1, len(train) // 5):].min())
    v_best = float(np.nanmin(val)) if len(val) and np.isfinite(val).any() else t_end
    if t_end < UNDERFIT * base or v_best < UNDERFIT * base:
        return None
    tail = train[len(train) * 2 // 3:]
    fell = float(tail[0] - tail[-1]) if len(tail) >= 2 else 0.0
    # Still falling: by more than 2% over the last third, or steadily (every epoch lower than the one before).
    still = len(tail) >= 2 and (fell > 0.02 * abs(tail[0]) or (fell > 0 and bool((np.diff(tail) <= 0).all())))
    trend = ("still falling at the end: it stopped too early" if still else
             "flat over the last third of training: the model cannot fit more")
    m = f.config.model
    bigger = ", ".join(f"{k} is {getattr(m, k.split('.')[1])}" for k in size_knobs(m.family))
    less_reg = [f"model.dropout ({m.dropout:g})" if m.dropout > 0 else "",
                f"optimizer.weight_decay ({f.config.optimizer.weight_decay:g})" if f.config.optimizer.weight_decay > 0 else ""]
    less_reg = " and ".join(x for x in less_reg if x)
    return Finding("underfitting", "training and validation loss both stay high",
                   f"after {len(train)} epochs train_loss is {t_end:.4g} and the best val_loss {v_best:.4g}, "
                   f"{t_end / base:.0%} and {v_best / base:.0%} of the baseline loss {base:.3g} "
                   f"(a constant prediction); {trend}",
                   ("train for more epochs or raise optimizer.lr; " if still else "")
                   + f"use a bigger model ({bigger}) or another family"
                   + (f"; lower {less_reg}" if less_reg else ""))


def _overfitting(f: Facts) -> Finding | None:
    train, val = f.col("train_loss"), f.col("val_loss")
    if len(val) < 5 or not (np.isfinite(val).all() and np.isfinite(train).all()):
        return None
    base, best = f.baseline(), int(np.argmin(val))
    rise = float(val[-1] - val[best])
    if rise < OVERFIT_RISE * val[best] or rise < OVERFIT_ABS * base or train[-1] >= train[best]:
        return None
    es = f.config.train.early_stopping
    kept = (f"; early stopping was on and the epoch-{best + 1} weights were kept"
            if es and f.config.train.restore_best else "")
    dropout, decay = f.config.model.dropout, f.config.optimizer.weight_decay
    # Advice that is already taken is no advice: high dropout or decay points at the model size or the data.
    regularise = [f"dropout (model.dropout is {dropout:g})" if dropout < HIGH_DROPOUT else "",
                  f"weight decay (optimizer.weight_decay is {decay:g})" if decay < HIGH_DECAY else ""]
    regularise = " or ".join(x for x in regularise if x)
    suggestion = f"add {regularise}; " if regularise else ""
    suggestion += "turn on early stopping (train.early_stopping); " if not es else ""
    suggestion += f"use a smaller model ({', '.join(size_knobs(f.config.model.family))}) or more training data"
    return Finding("overfitting", "validation loss rises while training loss falls",
                   f"val_loss reached its minimum {val[best]:.4g} at epoch {best + 1}, then rose to {val[-1]:.4g} "
                   f"(+{rise / val[best]:.0%}) by epoch {len(val)} while train_loss fell from {train[best]:.4g} to "
                   f"{train[-1]:.4g}{kept}", suggestion)


# --- gradients and units -------------------------------------------------------------------------------------


def _layer_shapes(f: Facts) -> dict[str, tuple[int, ...]]:
    if f.run_loaded:
        return {n: tuple(p.shape) for n, p in f.run().model.named_parameters()}
    from safetensors import safe_open

    with safe_open(str(f.run_dir / "model.safetensors"), framework="pt") as st:
        return {k: tuple(st.get_slice(k).get_shape()) for k in st.keys()}


def _gradients(f: Facts) -> list[Finding]:
    if not f.grad_norms:
        return []
    shapes = _layer_shapes(f)
    # weight matrices and kernels, input to output; embeddings get sparse lookups, not a layered signal; an
    # ensemble's per-member scales and biases, (members, units), are not layers
    layers = [n for n in f.grad_norms[0] if len(shapes.get(n, ())) >= 2 and "embedding" not in n
              and n.rsplit(".", 1)[-1].startswith("weight")]
    if not layers:
        return []
    norms = np.array([[epoch.get(n, np.nan) for n in layers] for epoch in f.grad_norms], dtype=np.float64)
    findings = []
    peak = np.nanmax(np.where(np.isfinite(norms), norms, np.inf), axis=0)
    if np.isinf(peak).any() or peak.max() >= EXPLODE_NORM:
        k = int(np.argmax(peak))
        findings.append(Finding("exploding_gradients", "gradients are exploding",
                                f"the gradient norm of {layers[k]} reached {peak[k]:.3g} (epoch "
                                f"{int(np.nanargmax(np.where(np.isfinite(norms[:, k]), norms[:, k], np.inf))) + 1}); "
                                f"healthy per-layer norms are below {EXPLODE_NORM:g}",
                                "set train.grad_clip (e.g. 1.0); use model.init kaiming/xavier instead of a wide "
                                "normal/uniform init; lower optimizer.lr"))
    typical = np.nanmedian(norms, axis=0)  # per layer, over epochs
    if len(layers) >= 2 and np.isfinite(typical).all() and typical[-1] > 0:
        ratio = typical[0] / typical[-1]
        if ratio <= VANISH_RATIO:
            findings.append(Finding("vanishing_gradients", "gradients vanish before they reach the first layers",
                                    f"median gradient norm of {layers[0]} is {typical[0]:.3g} against {typical[-1]:.3g} "
                                    f"for {layers[-1]} (ratio {ratio:.1e}) over {len(layers)} layers; "
                                    f"activation {f.config.model.activation}, init {f.config.model.init}",
                                    "use model.activation relu (or gelu) with model.init kaiming; fewer layers; "
                                    "batch norm or residual connections"))
    return findings


def _dead_units(f: Facts) -> Finding | None:
    if f.config.model.activation != "relu":
        return None
    train = f.split("train")
    if train is None:
        return None
    import torch
    from torch import nn

    from palaestra.data.sources import ArrayData

    rows = train[0][:MAX_ROWS]
    run = f.run()
    if not any(isinstance(m, nn.ReLU) for m in run.model.modules()):
        return None  # e.g. a recurrent model: nothing to check, and no forward pass over the training rows
    alive: dict[str, torch.Tensor] = {}
    from palaestra.models.ensemble import EnsembleMLP

    # (members, B, units) inside an ensemble: every member's unit counts; (B, channels, ...) elsewhere: a channel
    members = {id(m) for e in run.model.modules() if isinstance(e, EnsembleMLP) for m in e.modules()}

    def hook(name: str, per_member: bool):
        def record(_module, _inputs, out):
            if per_member:
                fired = (out > 0).transpose(0, 1).flatten(1)  # (B, members x units)
            else:
                fired = (out > 0).flatten(2).any(2) if out.dim() > 2 else out > 0  # (B, units)
            seen = fired.any(0).cpu()
            alive[name] = alive[name] | seen if name in alive else seen
        return record

    handles = [m.register_forward_hook(hook(n, id(m) in members)) for n, m in run.model.named_modules()
               if isinstance(m, nn.ReLU)]
    try:
        run.outputs(rows if isinstance(rows, pd.DataFrame) else ArrayData(x=rows, y=None))
    finally:
        for h in handles:
            h.remove()
    dead = {n: (int((~a).sum()), a.numel()) for n, a in alive.items()}
    worst = [(n, d, t) for n, (d, t) in dead.items() if d / t >= DEAD_SHARE]
    if not worst:
        return None
    total_dead, total = sum(d for d, _ in dead.values()), sum(t for _, t in dead.values())
    per_layer = ", ".join(f"{n}: {d}/{t}" for n, d, t in worst)
    return Finding("dead_units", "ReLU units that never fire",
                   f"{total_dead} of {total} ReLU units output 0 on all {len(rows)} training rows ({per_layer}); "
                   "a dead unit gets no gradient, so it never recovers",
                   "use model.init kaiming (zero biases), a lower optimizer.lr, or model.activation leaky_relu/gelu")


# --- the data ------------------------------------------------------------------------------------------------


def _class_imbalance(f: Facts) -> Finding | None:
    if f.task != "classification":
        return None
    name = "test" if f.metrics.get("test") else "val"
    m = f.metrics.get(name) or {}
    acc, f1 = m.get("accuracy"), m.get("f1_macro")
    train = f.split("train")
    if acc is None or f1 is None or train is None:
        return None
    counts = np.bincount(train[1][train[1] >= 0], minlength=len(f.classes))
    present = counts[counts > 0]
    ratio = present.max() / present.min() if len(present) >= 2 else 1.0
    if ratio < dc.IMBALANCE_RATIO or acc - f1 < dc.METRIC_GAP:
        return None
    major = str(f.classes[int(counts.argmax())])
    worst = dc.worst_recall(m.get("confusion_matrix", []), f.classes)
    missed = f"; the model finds only {worst[1]:.0%} of class '{worst[0]}'" if worst else ""
    return Finding("class_imbalance", "imbalanced classes: accuracy hides the minority classes",
                   f"'{major}' is {counts.max() / counts.sum():.0%} of the training rows ({ratio:.1f}x the smallest "
                   f"class); {name} accuracy {acc:.3f} but macro F1 {f1:.3f}{missed}",
                   "judge the model by f1_macro, not accuracy; set loss.class_weights: balanced; "
                   "collect more rows of the small classes")


def _duplicates(f: Facts) -> Finding | None:
    train, test = f.split("train"), f.split("test") or f.split("val")
    if train is None or test is None:
        return None
    hits, same = dc.duplicate_overlap(train[0], test[0], train[1], test[1])
    share = hits / len(test[1])
    if hits < 2 or share < dc.DUPLICATE_SHARE:
        return None
    which = "test" if f.split("test") is not None else "val"
    return Finding("leakage_duplicates", f"{which} rows also appear in the training split",
                   f"{hits} of {len(test[1])} {which} rows ({share:.0%}) have an identical feature row in the training "
                   f"split ({same} of them with the same label): the {which} score partly measures memory",
                   "remove duplicate rows before splitting (or split by group, e.g. by source id), then retrain")


def _leaked_feature(f: Facts) -> Finding | None:
    train = f.split("train")
    if train is None or not isinstance(train[0], pd.DataFrame) or len(train[1]) < 20:
        return None
    # Exact duplicate rows would let every column "predict" its own copies: judge each distinct row once.
    keep = ~pd.DataFrame(train[0]).assign(__y=train[1]).duplicated().to_numpy()
    found = dc.leaked_features(train[0][keep], train[1][keep], f.task, len(f.classes))
    if not found:
        return None
    how = ("alone predicts the class (leave-one-out balanced accuracy {:.3f})" if f.task == "classification"
           else "alone tracks the target (correlation {:+.3f})")
    names = "; ".join(f"'{n}' " + how.format(s) for n, s in found)
    return Finding("leakage_feature", "a feature gives the answer away",
                   f"on the {len(train[1])} training rows, {names}",
                   "check the column is known at prediction time and not derived from the target; "
                   "if it leaks, add it to data.drop and retrain")


_CHECKS = (_lr_too_high, _lr_too_low, _underfitting, _overfitting, _gradients, _dead_units, _class_imbalance,
           _duplicates, _leaked_feature)
# Tasks past classification and regression run only the checks whose evidence means the same thing there:
# overlapping forecast windows are not leakage, and a GAN's losses do not fall like a fit's.
_CHECKS_FOR = {
    "forecast": (_lr_too_high, _lr_too_low, _underfitting, _overfitting, _gradients, _dead_units),
    "language_model": (_lr_too_high, _lr_too_low, _underfitting, _overfitting, _gradients),
    "generation": (_lr_too_high, _gradients),
    # Several targets: the summed loss has no single baseline, so only the checks that do not need one.
    "multi_target": (_lr_too_high, _gradients, _dead_units, _duplicates),
}
