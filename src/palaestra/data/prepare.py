"""From a config to fitted preprocessing and train/val/test tensors: the data stage's one entry point."""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from palaestra.config import DataConfig
from palaestra.data.arrays import ArrayPreprocessor
from palaestra.data.preprocess import TablePreprocessor, _is_na_token, infer_task
from palaestra.data.sources import ArrayData, default_target, read_source
from palaestra.data.spec import FeatureSpec
from palaestra.data.splits import split_indices
from palaestra.errors import DataError

Preprocessor = TablePreprocessor | ArrayPreprocessor


@dataclass
class Split:
    """One split's tensors: ``inputs`` in ``spec.input_names`` order, and the encoded target."""

    inputs: tuple[torch.Tensor, ...]
    target: torch.Tensor
    index: np.ndarray  # row positions in the source

    @property
    def tensors(self) -> tuple[torch.Tensor, ...]:
        return (*self.inputs, self.target)

    def __len__(self) -> int:
        return len(self.target)


@dataclass
class PreparedData:
    spec: FeatureSpec
    preprocessor: Preprocessor
    train: Split
    val: Split
    test: Split
    raw: pd.DataFrame | ArrayData
    notices: list[str] = field(default_factory=list)


def resolve_target(cfg: DataConfig, raw: pd.DataFrame | ArrayData) -> str:
    if isinstance(raw, ArrayData):
        if raw.y is None:
            raise DataError("the .npz file has no 'y' array to learn from")
        return "y"
    target = cfg.target or (default_target(cfg.source) if isinstance(cfg.source, str) else None)
    if target is None:
        raise DataError(f"name the target column with --target (columns: {', '.join(map(str, raw.columns[:20]))})")
    if target not in raw.columns:
        close = difflib.get_close_matches(target, [str(c) for c in raw.columns], n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise DataError(f"target column '{target}' not found{hint}; columns: {', '.join(map(str, raw.columns[:20]))}")
    return target


def _to_tensors(pre: Preprocessor, inputs: tuple[np.ndarray, ...], y: np.ndarray) -> tuple[tuple[torch.Tensor, ...], torch.Tensor]:
    return tuple(torch.from_numpy(np.ascontiguousarray(a)) for a in inputs), torch.from_numpy(np.ascontiguousarray(y))


def _special_preparers() -> list:
    """(claims(cfg, raw) -> bool, prepare(cfg, raw, seed, notices)) pairs for non-table, non-image data."""
    from palaestra.data import forecast, sequence, text
    from palaestra.generative import data as generation

    return [(generation.claims, generation.prepare), (text.claims, text.prepare), (forecast.claims, forecast.prepare),
            (sequence.claims, sequence.prepare)]


def prepare_data(cfg: DataConfig, seed: int, source: pd.DataFrame | ArrayData | None = None,
                 embedding_dim: int | None = None,
                 split_override: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None) -> PreparedData:
    """Read, infer, split, fit on the training split, and tensorize.

    ``split_override`` gives explicit (train, val, test) row positions instead of the configured split
    (cross-validation folds); positions count rows after those without a target are left out.

    >>> from palaestra.config import DataConfig
    >>> data = prepare_data(DataConfig(source="iris"), seed=0)
    >>> data.spec.kind, data.spec.n_outputs, len(data.train) + len(data.val) + len(data.test)
    ('table', 3, 150)
    """
    notices: list[str] = []
    raw = read_source(source if source is not None else cfg.source)
    for claims, prepare in _special_preparers():
        if claims(cfg, raw):  # sequences, series, text: their own preparation
            return prepare(cfg, raw, seed, notices)
    target = resolve_target(cfg, raw)
    if isinstance(raw, ArrayData):
        return _prepare_arrays(cfg, raw, seed, notices, split_override=split_override)
    missing_target = _is_na_token(raw[target])
    if missing_target.all():
        raise DataError(f"target column '{target}' is empty")
    if missing_target.any():
        notices.append(f"{int(missing_target.sum())} rows without a '{target}' value were left out")
        raw = raw.loc[~missing_target.to_numpy()].reset_index(drop=True)
    task = cfg.task if cfg.task != "auto" else infer_task(raw[target])
    if task not in ("classification", "regression"):
        raise DataError(f"task '{task}' needs sequence or text data; tables support classification and regression")
    kinds, dropped = TablePreprocessor.infer_columns(raw, target, cfg.drop, notices)
    y_all = raw[target].astype(str).to_numpy() if task == "classification" else None
    if task == "classification" and len(np.unique(y_all)) < 2:
        raise DataError(f"target '{target}' has only one class ({y_all[0]!r}): nothing to learn")
    if len(raw) < 10:
        raise DataError(f"only {len(raw)} rows with a target: too few to split into train, val and test")
    s = cfg.split
    tr, va, te = split_override if split_override is not None else \
        split_indices(len(raw), y_all, s.train, s.val, s.test, seed, stratify=s.stratify)
    pre = TablePreprocessor.fit(raw.iloc[tr], target, task, kinds, dropped, cfg.embedding_threshold)
    splits = []
    for idx in (tr, va, te):
        part = raw.iloc[idx]
        inputs = pre.transform(part)
        y = pre.encode_target(part[target]) if len(idx) else np.zeros(0, np.int64 if task == "classification" else np.float32)
        splits.append(Split(*_to_tensors(pre, inputs, y), index=idx))
    return PreparedData(pre.spec(embedding_dim), pre, *splits, raw=raw, notices=notices)


def _prepare_arrays(cfg: DataConfig, raw: ArrayData, seed: int, notices: list[str],
                    split_override: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None) -> PreparedData:
    x = raw.x
    if not np.isfinite(x.astype(np.float64, copy=False)).all():
        bad = int((~np.isfinite(x.astype(np.float64, copy=False))).reshape(len(x), -1).any(axis=1).sum())
        raise DataError(f"'x' holds NaN or infinite values in {bad} samples")
    y = np.asarray(raw.y)
    task = cfg.task if cfg.task != "auto" else infer_task(y)
    if task not in ("classification", "regression"):
        raise DataError(f"task '{task}' is not available for this array data")
    if task == "classification" and len(np.unique(y)) < 2:
        raise DataError("labels 'y' hold only one class: nothing to learn")
    s = cfg.split
    tr, va, te = split_override if split_override is not None else \
        split_indices(len(x), y.astype(str) if task == "classification" else None,
                      s.train, s.val, s.test, seed, stratify=s.stratify)
    pre = ArrayPreprocessor.fit(raw, tr, task)
    if pre.channels_last:
        notices.append(f"'x' of shape {tuple(x.shape)} read as (N, H, W, C) and transposed to (N, C, H, W)")
    splits = []
    for idx in (tr, va, te):
        inputs = pre.inputs(x[idx])
        target = pre.encode_target(y[idx])
        splits.append(Split(*_to_tensors(pre, inputs, target), index=idx))
    return PreparedData(pre.spec(), pre, *splits, raw=raw, notices=notices)
