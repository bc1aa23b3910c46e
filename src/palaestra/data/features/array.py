"""``image``, ``sequence`` and ``vector``: the ``x`` array of an ``.npz`` file (or a built-in array set).

- ``image``: ``(N, H, W)``, ``(N, C, H, W)`` or ``(N, H, W, C)`` with a small last axis (transposed to
  ``(N, C, H, W)``); standardised per channel.
- ``vector``: ``(N, F)``; standardised per feature.
- ``sequence``: ``(N, T)`` or ``(N, T, F)``; variable lengths are trailing NaN padding. The model receives
  ``(x (N, T, F) float32, lengths (N,) int64)`` with padded steps zero; statistics come from the real steps.

Statistics are fitted on the training split only.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from palaestra.data.features.base import FitOptions, InputFeature
from palaestra.data.scaling import finite_stats
from palaestra.errors import DataError


def array_layout(x: np.ndarray, sequence: bool | None) -> str:
    """How to read an ``x`` array: ``sequence`` when asked for, else by its number of axes."""
    if sequence:
        return "sequence"
    if x.ndim == 2:
        return "vector"
    if x.ndim in (3, 4):
        return "image"
    raise DataError(f"array 'x' of shape {tuple(x.shape)} is not supported: use (N, F), (N, H, W) or (N, C, H, W)")


def sequence_lengths(x: np.ndarray) -> np.ndarray:
    """Steps before the trailing all-NaN padding of ``x (N, T, F)``; NaN inside a sequence is an error."""
    step_missing = np.isnan(x).all(axis=2)  # (N, T)
    trailing = np.cumprod(step_missing[:, ::-1], axis=1).sum(axis=1)
    lengths = x.shape[1] - trailing
    valid = np.arange(x.shape[1])[None, :] < lengths[:, None]
    if np.isnan(x[valid]).any() or np.isinf(x).any():
        bad = int((~np.isfinite(np.where(valid[:, :, None], x, 0.0))).any(axis=(1, 2)).sum())
        raise DataError(f"'x' holds NaN or infinite values inside {bad} sequences (only trailing padding may be NaN)")
    if (lengths == 0).any():
        raise DataError(f"{int((lengths == 0).sum())} sequences in 'x' are empty (all NaN)")
    return lengths.astype(np.int64)


def _numeric(x: Any) -> np.ndarray:
    x = np.asarray(x)
    if (not np.issubdtype(x.dtype, np.number) and x.dtype != bool) or np.issubdtype(x.dtype, np.complexfloating):
        raise DataError(f"inputs must be numeric, got dtype {x.dtype}")
    return x


class ArrayFeature(InputFeature):
    """An array input: ``layout`` is ``image``, ``vector`` or ``sequence``; ``shape`` the per-sample shape."""

    type = "array"
    slot = "own"

    def __init__(self, name: str, layout: str, shape: list[int], mean: list[float], std: list[float],
                 channels_last: bool = False):
        super().__init__(name)
        self.layout, self.shape, self.mean, self.std, self.channels_last = layout, shape, mean, std, channels_last

    # -- shapes --------------------------------------------------------------------------------------------

    def standard(self, x: Any) -> np.ndarray:
        """Any accepted layout -> ``(N, C, H, W)``, ``(N, F)`` or ``(N, T, F)`` float64."""
        x = _numeric(x)
        if self.layout == "sequence":
            if x.ndim == 2:
                x = x[:, :, None]
            if x.ndim != 3:
                raise DataError(f"sequence data 'x' must have shape (N, T) or (N, T, F), got {tuple(x.shape)}")
            return x.astype(np.float64)
        if self.layout == "image":
            if x.ndim == 3:
                x = x[:, None]
            elif self.channels_last and x.ndim == 4:
                x = np.transpose(x, (0, 3, 1, 2))
        return x.astype(np.float64)

    @classmethod
    def fit(cls, name: str, x: Any, options: FitOptions, layout: str = "vector") -> ArrayFeature:
        x = _numeric(x)
        channels_last = layout == "image" and x.ndim == 4 and x.shape[-1] in (1, 3, 4) and x.shape[1] not in (1, 3, 4)
        proto = cls(name, layout, [], [], [], channels_last)
        z = proto.standard(x)
        if layout == "sequence":
            valid = np.arange(z.shape[1])[None, :] < sequence_lengths(z)[:, None]
            steps = z[valid]  # (real steps, F)
            mean, std = finite_stats(f"'{name}'", steps, axis=0)
        else:
            if not np.isfinite(z).all():
                bad = int((~np.isfinite(z)).reshape(len(z), -1).any(axis=1).sum())
                raise DataError(f"'x' holds NaN or infinite values in {bad} samples")
            axes = (0, 2, 3) if layout == "image" else (0,)
            mean, std = finite_stats(f"'{name}'", z, axis=axes)
        proto.shape = list(z.shape[1:])
        proto.mean = [float(m) for m in np.ravel(mean)]
        proto.std = [float(s) if s > 1e-12 else 1.0 for s in np.ravel(std)]
        return proto

    def transform(self, x: Any) -> tuple[np.ndarray, ...]:
        """Raw arrays -> ``(x,)`` standardised float32, or ``(x, lengths)`` for sequences."""
        z = self.standard(x)
        if self.layout == "sequence":
            steps, features = self.shape
            if z.shape[2] != features:
                raise DataError(f"sequences have {z.shape[2]} features per step; the model was trained on {features}")
            if z.shape[1] > steps:
                raise DataError(f"sequences have {z.shape[1]} steps; the model was trained on at most {steps}")
            if z.shape[1] < steps:  # shorter arrays: pad to the trained length
                z = np.concatenate([z, np.full((len(z), steps - z.shape[1], features), np.nan)], axis=1)
            lengths = sequence_lengths(z)
            out = np.nan_to_num((z - np.asarray(self.mean)) / np.asarray(self.std), nan=0.0)
            return out.astype(np.float32), lengths
        if list(z.shape[1:]) != list(self.shape):
            raise DataError(f"input has shape {tuple(z.shape[1:])} per sample; the model was trained on {tuple(self.shape)}")
        if not np.isfinite(z).all():
            raise DataError("inputs hold NaN or infinite values")
        if self.layout == "image":
            m = np.asarray(self.mean)[None, :, None, None]
            s = np.asarray(self.std)[None, :, None, None]
        else:
            m, s = np.asarray(self.mean), np.asarray(self.std)
        out = (z - m) / s
        if np.abs(out).max(initial=0.0) > np.finfo(np.float32).max:
            raise DataError("inputs hold values too large to represent (beyond float32 after scaling)")
        return (out.astype(np.float32),)

    @property
    def input_names(self) -> list[str]:
        return ["x", "lengths"] if self.layout == "sequence" else ["x"]

    def columns(self) -> list[str]:
        if self.layout == "vector":
            return [f"x{i}" for i in range(self.shape[0])]
        if self.layout == "sequence":
            return [f"f{i}" for i in range(self.shape[1])]
        return []

    def describe(self) -> str:
        return f"{self.layout} {tuple(self.shape)}"

    def state(self) -> dict[str, Any]:
        return {"layout": self.layout, "shape": self.shape, "mean": self.mean, "std": self.std,
                "channels_last": self.channels_last}
