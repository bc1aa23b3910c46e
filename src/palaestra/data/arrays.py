"""Fitted preprocessing for arrays: images ``(N, C, H, W)`` and flat vectors ``(N, F)``.

Per-channel (images) or per-feature (vectors) standardization fitted on the training split; round-trips
through JSON like the table preprocessing.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from palaestra.data.preprocess import PREPROCESSORS, KeywordState, _jsonable, label_codes
from palaestra.data.scaling import finite_stats, standardized_target
from palaestra.data.sources import ArrayData
from palaestra.data.spec import FeatureSpec
from palaestra.errors import DataError


class ArrayPreprocessor(KeywordState):
    """Images ``(N, C, H, W)`` (or ``(N, H, W)``) and flat vectors ``(N, F)``: per-channel standardization."""

    kind = "array"

    def __init__(self, target: str, task: str, layout: str, shape: list[int], mean: list[float], std: list[float],
                 classes: list[Any] | None, target_mean: float = 0.0, target_std: float = 1.0, channels_last: bool = False):
        self.target, self.task, self.layout, self.shape = target, task, layout, shape
        self.mean, self.std, self.classes = mean, std, classes
        self.target_mean, self.target_std = target_mean, target_std
        self.channels_last = channels_last

    @staticmethod
    def _layout(x: np.ndarray) -> tuple[str, bool]:
        if x.ndim == 2:
            return "vector", False
        if x.ndim == 3:
            return "image", False
        if x.ndim == 4:
            # (N, H, W, C) with a small last axis is transposed to (N, C, H, W).
            nhwc = x.shape[-1] in (1, 3, 4) and x.shape[1] not in (1, 3, 4)
            return "image", nhwc
        raise DataError(f"array 'x' of shape {tuple(x.shape)} is not supported: use (N, F), (N, H, W) or (N, C, H, W)")

    def _standard_shape(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x)
        if self.layout == "image":
            if x.ndim == 3:
                x = x[:, None]
            elif self.channels_last and x.ndim == 4:
                x = np.transpose(x, (0, 3, 1, 2))
        if list(x.shape[1:]) != list(self.shape):
            raise DataError(f"input has shape {tuple(x.shape[1:])} per sample; the model was trained on {tuple(self.shape)}")
        return x

    @classmethod
    def fit(cls, data: ArrayData, train_idx: np.ndarray, task: str) -> ArrayPreprocessor:
        layout, channels_last = cls._layout(data.x)
        proto = cls("y", task, layout, [], [], [], None, channels_last=channels_last)
        x = data.x.astype(np.float64)
        if layout == "image":
            x = x[:, None] if x.ndim == 3 else (np.transpose(x, (0, 3, 1, 2)) if channels_last else x)
        proto.shape = list(x.shape[1:])
        xt = x[train_idx]
        axes = (0, 2, 3) if layout == "image" else (0,)
        mean = xt.mean(axis=axes)
        std = xt.std(axis=axes)
        std = np.where(std > 1e-12, std, 1.0)
        proto.mean, proto.std = [float(m) for m in np.ravel(mean)], [float(s) for s in np.ravel(std)]
        y = data.y
        if task == "classification":
            classes = sorted({_jsonable(v) for v in y[train_idx]}, key=lambda v: (str(type(v)), v))
            if len(classes) < 2:
                raise DataError("target 'y' has only one class in the training split: nothing to learn")
            proto.classes = classes
        else:
            yt = y[train_idx].astype(np.float64)
            proto.target_mean, proto.target_std = finite_stats("target 'y'", yt)
            proto.target_std = proto.target_std or 1.0
        return proto

    def inputs(self, x: np.ndarray | ArrayData) -> tuple[np.ndarray, ...]:
        if isinstance(x, ArrayData):
            x = x.x
        x = self._standard_shape(np.asarray(x))
        if not np.issubdtype(x.dtype, np.number) and x.dtype != bool:
            raise DataError(f"inputs must be numeric, got dtype {x.dtype}")
        x = x.astype(np.float32)
        if not np.isfinite(x).all():
            raise DataError("inputs hold NaN or infinite values")
        if self.layout == "image":
            m = np.asarray(self.mean, np.float32)[None, :, None, None]
            s = np.asarray(self.std, np.float32)[None, :, None, None]
        else:
            m = np.asarray(self.mean, np.float32)
            s = np.asarray(self.std, np.float32)
        return ((x - m) / s,)

    def encode_target(self, y: np.ndarray) -> np.ndarray:
        if self.task == "classification":
            codes = label_codes(y, self.classes)
            if (codes < 0).any():
                raise DataError("labels 'y' include classes not seen in training")
            return codes
        try:
            values = np.asarray(y, np.float64)
        except (TypeError, ValueError):
            raise DataError("labels 'y' must be numbers for regression") from None
        if not np.isfinite(values).all():
            raise DataError(f"labels 'y' hold NaN or infinite values in {int((~np.isfinite(values)).sum())} samples")
        return standardized_target("target 'y'", values, self.target_mean, self.target_std)

    def decode_target(self, values: np.ndarray) -> np.ndarray:
        if self.task == "classification":
            return np.asarray(self.classes, dtype=object)[values]
        return values * self.target_std + self.target_mean

    def spec(self, embedding_dim: int | None = None) -> FeatureSpec:
        kind = "image" if self.layout == "image" else "vector"
        names = [f"x{i}" for i in range(self.shape[0])] if kind == "vector" else []
        return FeatureSpec(kind=kind, task=self.task, input_names=["x"],
                           n_outputs=len(self.classes) if self.classes else 1, input_shape=list(self.shape),
                           classes=self.classes, feature_names=names,
                           n_numeric=self.shape[0] if kind == "vector" else 0)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "target": self.target, "task": self.task, "layout": self.layout, "shape": self.shape,
                "mean": self.mean, "std": self.std, "classes": self.classes, "target_mean": self.target_mean,
                "target_std": self.target_std, "channels_last": self.channels_last}



PREPROCESSORS[ArrayPreprocessor.kind] = ArrayPreprocessor
