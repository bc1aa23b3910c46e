"""Sequences for classification and regression: ``.npz`` with ``x`` of shape ``(N, T)`` or ``(N, T, F)``.

Variable lengths are written as trailing NaN padding (a sequence of length 30 in a ``T = 40`` array has NaN
in steps 30..39). The model receives ``(x (B, T, F) float32, lengths (B,) int64)``: padded steps are zero and
``lengths`` lets recurrent models pack and attention/convolution models mask. Per-feature mean and standard
deviation are fitted on the real (non-padded) steps of the training split only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from palaestra.config import Config, DataConfig
from palaestra.data.preprocess import PREPROCESSORS, KeywordState, _jsonable, infer_task, label_codes
from palaestra.data.scaling import finite_stats, standardized_target
from palaestra.data.sources import ArrayData, BuiltIn, register_builtin
from palaestra.data.spec import FeatureSpec
from palaestra.data.splits import split_indices
from palaestra.errors import DataError

# Families that read an (N, T[, F]) array as a sequence rather than as a vector or an image.
SEQUENCE_FAMILIES = ("rnn", "lstm", "gru", "transformer")


@dataclass
class SequenceArrays(ArrayData):
    """Arrays that are sequences by construction. ``test_size``: the last rows form a fixed test set."""

    test_size: int = 0


def resolve_layout(config: Config) -> DataConfig:
    """The data config as the model family needs it: sequence families read arrays as sequences, and the
    GAN makes the task ``generation``."""
    data = config.data
    if data.sequence is None and config.model.family in SEQUENCE_FAMILIES:
        data = data.model_copy(update={"sequence": True})
    elif data.sequence is None and config.model.family == "mlp":  # an MLP reads a sequence as a flat vector
        data = data.model_copy(update={"sequence": False})
    if data.task == "auto" and config.model.family == "gan":
        data = data.model_copy(update={"task": "generation"})
    return data


def _as_sequences(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim == 2:
        x = x[:, :, None]  # (N, T) -> (N, T, 1)
    if x.ndim != 3:
        raise DataError(f"sequence data 'x' must have shape (N, T) or (N, T, F), got {tuple(x.shape)}")
    if not np.issubdtype(x.dtype, np.number) and x.dtype != bool:
        raise DataError(f"sequence data 'x' must be numeric, got dtype {x.dtype}")
    return x.astype(np.float64)


def _lengths(x: np.ndarray) -> np.ndarray:
    """Steps before the trailing all-NaN padding; NaN inside a sequence is an error."""
    step_missing = np.isnan(x).all(axis=2)  # (N, T)
    # length = T - number of trailing missing steps
    trailing = np.cumprod(step_missing[:, ::-1], axis=1).sum(axis=1)
    lengths = x.shape[1] - trailing
    valid = np.arange(x.shape[1])[None, :] < lengths[:, None]
    if np.isnan(x[valid]).any() or np.isinf(x).any():
        bad = int((~np.isfinite(np.where(valid[:, :, None], x, 0.0))).any(axis=(1, 2)).sum())
        raise DataError(f"'x' holds NaN or infinite values inside {bad} sequences (only trailing padding may be NaN)")
    if (lengths == 0).any():
        raise DataError(f"{int((lengths == 0).sum())} sequences in 'x' are empty (all NaN)")
    return lengths.astype(np.int64)


class SequencePreprocessor(KeywordState):
    """``(N, T[, F])`` arrays -> ``(x (N, T, F) float32 standardized, lengths (N,) int64)``."""

    kind = "sequence"

    def __init__(self, task: str, steps: int, features: int, mean: list[float], std: list[float],
                 classes: list[Any] | None, target_mean: float = 0.0, target_std: float = 1.0, target: str = "y"):
        self.task, self.steps, self.features = task, steps, features
        self.mean, self.std, self.classes = mean, std, classes
        self.target_mean, self.target_std, self.target = target_mean, target_std, target

    @classmethod
    def fit(cls, x: np.ndarray, y: np.ndarray, task: str) -> SequencePreprocessor:
        """Fit on the training split's sequences ``x (N, T, F)`` and labels ``y``."""
        valid = np.arange(x.shape[1])[None, :] < _lengths(x)[:, None]
        steps = x[valid]  # (real steps, F)
        std = steps.std(axis=0)
        pre = cls(task, x.shape[1], x.shape[2], [float(m) for m in steps.mean(axis=0)],
                  [float(s) if s > 1e-12 else 1.0 for s in std], None)
        if task == "classification":
            pre.classes = sorted({_jsonable(v) for v in y}, key=lambda v: (str(type(v)), v))
            if len(pre.classes) < 2:
                raise DataError("labels 'y' hold only one class in the training split: nothing to learn")
        else:
            yv = np.asarray(y, np.float64)
            pre.target_mean, pre.target_std = finite_stats("labels 'y'", yv)
            pre.target_std = pre.target_std or 1.0
        return pre

    def inputs(self, x: np.ndarray | ArrayData) -> tuple[np.ndarray, np.ndarray]:
        if isinstance(x, ArrayData):
            x = x.x
        x = _as_sequences(x)
        if x.shape[2] != self.features:
            raise DataError(f"sequences have {x.shape[2]} features per step; the model was trained on {self.features}")
        if x.shape[1] > self.steps:
            raise DataError(f"sequences have {x.shape[1]} steps; the model was trained on at most {self.steps}")
        if x.shape[1] < self.steps:  # shorter arrays: pad to the trained length
            x = np.concatenate([x, np.full((len(x), self.steps - x.shape[1], self.features), np.nan)], axis=1)
        lengths = _lengths(x)
        z = (x - np.asarray(self.mean)) / np.asarray(self.std)
        z = np.nan_to_num(z, nan=0.0)  # padding -> 0
        return z.astype(np.float32), lengths

    def encode_target(self, y: np.ndarray) -> np.ndarray:
        if self.task == "classification":
            codes = label_codes(y, self.classes)
            if (codes < 0).any():
                raise DataError("labels 'y' include classes not seen in training")
            return codes
        return standardized_target("labels 'y'", np.asarray(y, np.float64), self.target_mean, self.target_std)

    def decode_target(self, values: np.ndarray) -> np.ndarray:
        if self.task == "classification":
            return np.asarray(self.classes, dtype=object)[values]
        return values * self.target_std + self.target_mean

    def spec(self, embedding_dim: int | None = None) -> FeatureSpec:
        return FeatureSpec(kind="sequence", task=self.task, input_names=["x", "lengths"],
                           n_outputs=len(self.classes) if self.classes else 1,
                           input_shape=[self.steps, self.features], classes=self.classes,
                           feature_names=[f"f{i}" for i in range(self.features)])

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "task": self.task, "steps": self.steps, "features": self.features,
                "mean": self.mean, "std": self.std, "classes": self.classes, "target_mean": self.target_mean,
                "target_std": self.target_std, "target": self.target}



PREPROCESSORS[SequencePreprocessor.kind] = SequencePreprocessor


def claims(cfg: DataConfig, raw: Any) -> bool:
    """Sequence arrays: a built-in sequence set, or ``.npz`` arrays with ``data.sequence`` on."""
    if isinstance(raw, SequenceArrays):
        return cfg.sequence is not False
    return isinstance(raw, ArrayData) and bool(cfg.sequence)


def prepare(cfg: DataConfig, raw: ArrayData, seed: int, notices: list[str]):
    """Split (a fixed test set where the data set defines one), fit on train, tensorize."""
    from palaestra.data.prepare import PreparedData, Split, _to_tensors

    if raw.y is None:
        raise DataError("the .npz file has no 'y' array to learn from")
    x, y = _as_sequences(raw.x), np.asarray(raw.y)
    if len(x) < 10:
        raise DataError(f"only {len(x)} sequences: too few to split into train, val and test")
    task = cfg.task if cfg.task != "auto" else infer_task(y)
    if task not in ("classification", "regression"):
        raise DataError(f"task '{task}' is not available for sequence arrays (use classification or regression)")
    strat = y.astype(str) if task == "classification" else None
    s = cfg.split
    fixed = getattr(raw, "test_size", 0)
    if fixed:
        # The data set's own test set; train/val come from the rest in the configured proportion.
        n = len(x) - fixed
        tr, va, _ = split_indices(n, None if strat is None else strat[:n], s.train / (s.train + s.val),
                                  s.val / (s.train + s.val), 0.0, seed, stratify=s.stratify)
        te = np.arange(n, len(x))
    else:
        tr, va, te = split_indices(len(x), strat, s.train, s.val, s.test, seed, stratify=s.stratify)
    pre = SequencePreprocessor.fit(x[tr], y[tr], task)
    splits = []
    for idx in (tr, va, te):
        inputs = pre.inputs(x[idx])
        splits.append(Split(*_to_tensors(pre, inputs, pre.encode_target(y[idx])), index=idx))
    return PreparedData(pre.spec(), pre, *splits, raw=raw, notices=notices)


def _mnist1d() -> SequenceArrays:
    # Generated locally from the package's templates (no download): 4,000 train + 1,000 test sequences.
    from mnist1d.data import get_dataset_args, make_dataset

    d = make_dataset(get_dataset_args())
    x = np.concatenate([d["x"], d["x_test"]]).astype(np.float32)
    y = np.concatenate([d["y"], d["y_test"]]).astype(np.int64)
    return SequenceArrays(x=x, y=y, name="mnist1d", test_size=len(d["x_test"]))


register_builtin("mnist1d", BuiltIn(_mnist1d, "y", "classification",
                                    "MNIST-1D: length-40 signals of the ten digits (4,000 train / 1,000 test)"))
