"""Data for generative models (``task: generation``): images or vectors scaled to [-1, 1], no labels.

The generator ends in ``tanh``, so training data is mapped linearly from its training range to [-1, 1] and
samples are mapped back, giving ``x`` with the same shape and scale as the training data.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from palaestra.config import DataConfig
from palaestra.data.raw import ArrayData
from palaestra.data.spec import FeatureSpec, PreparedData, Split
from palaestra.errors import DataError


class GenerationPreprocessor:
    """``(N, H, W)``, ``(N, C, H, W)`` or ``(N, F)`` arrays <-> model space ``(N, C, H, W)`` / ``(N, F)`` in [-1, 1]."""

    kind = "generation"
    task = "generation"
    classes = None
    target = None

    def __init__(self, raw_shape: list[int], shape: list[int], low: float, high: float):
        self.raw_shape, self.shape, self.low, self.high = raw_shape, shape, low, high

    @classmethod
    def fit(cls, x: np.ndarray) -> GenerationPreprocessor:
        if x.ndim not in (2, 3, 4):
            raise DataError(f"generation needs images (N, H, W), (N, C, H, W) or vectors (N, F); got {tuple(x.shape)}")
        shape = list(x.shape[1:]) if x.ndim != 3 else [1, *x.shape[1:]]
        low, high = float(x.min()), float(x.max())
        if high - low < 1e-12:
            raise DataError("every value in 'x' is the same: nothing to learn")
        return cls(list(x.shape[1:]), shape, low, high)

    def inputs(self, x: np.ndarray | ArrayData) -> tuple[np.ndarray]:
        x = np.asarray(x.x if isinstance(x, ArrayData) else x, dtype=np.float64)
        if list(x.shape[1:]) != self.raw_shape:
            raise DataError(f"input has shape {tuple(x.shape[1:])} per sample; the model was trained on {tuple(self.raw_shape)}")
        z = (x - self.low) / (self.high - self.low) * 2.0 - 1.0
        return (z.reshape(len(x), *self.shape).astype(np.float32),)

    def decode_samples(self, z: np.ndarray) -> np.ndarray:
        """Model space [-1, 1] -> the training data's shape and scale."""
        x = (np.clip(z, -1.0, 1.0) + 1.0) / 2.0 * (self.high - self.low) + self.low
        return x.reshape(len(z), *self.raw_shape).astype(np.float32)

    def spec(self, embedding_dim: int | None = None) -> FeatureSpec:
        return FeatureSpec(kind="generation", task="generation", input_names=["x"], n_outputs=1,
                           input_shape=list(self.shape))

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "raw_shape": self.raw_shape, "shape": self.shape, "low": self.low, "high": self.high}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> GenerationPreprocessor:
        return cls(d["raw_shape"], d["shape"], d["low"], d["high"])


def prepare(cfg: DataConfig, raw: Any, seed: int, notices: list[str]) -> PreparedData:
    """Every sample trains (the adversarial losses are not a validation score); labels, if any, are ignored."""
    if not isinstance(raw, ArrayData):
        raise DataError("generation needs arrays: an .npz file with 'x', or a built-in image set such as digits")
    x = np.asarray(raw.x)
    if not np.issubdtype(x.dtype, np.number) or not np.isfinite(x).all():
        raise DataError("'x' must be numeric with no NaN or infinite values")
    pre = GenerationPreprocessor.fit(x)
    z = torch.from_numpy(pre.inputs(x)[0])
    idx = np.arange(len(x))
    train = Split((z,), torch.zeros(len(x)), index=idx)
    empty = Split((z[:0],), torch.zeros(0), index=idx[:0])
    notices.append(f"generation: all {len(x)} samples train the GAN; there is no validation or test split")
    return PreparedData(pre.spec(), pre, train, empty, empty, raw=raw, notices=notices)
