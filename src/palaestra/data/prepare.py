"""From a config to fitted preprocessing and train/val/test tensors: the data stage's one entry point.

A run is either *supervised* (typed input features -> one or more targets: tables and arrays) or one of the
tasks with their own data preparation, registered in ``TASKS`` (language model, forecasting, generation).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from palaestra.config import DataConfig
from palaestra.data import forecast, generation, text
from palaestra.data.datasets import builtin_task
from palaestra.data.features import (
    DROPPED_ID,
    GROUP_KEY,
    OUTPUT_ALIASES,
    TASK_OUTPUT,
    FitOptions,
    array_layout_for,
    infer_column,
    infer_task,
    looks_like_group_key,
)
from palaestra.data.features.base import is_missing
from palaestra.data.preprocess import FeaturePreprocessor
from palaestra.data.raw import ArrayData, SequenceArrays, TextCorpus
from palaestra.data.sources import read_source
from palaestra.data.spec import PreparedData, to_split
from palaestra.data.splits import split_indices
from palaestra.data.targets import resolve_targets
from palaestra.errors import DataError

__all__ = ["PreparedData", "TASKS", "prepare_data", "resolve_task"]

# Tasks whose data is not typed features -> targets: each prepares its own examples.
TASKS: dict[str, Callable[[DataConfig, Any, int, list[str]], PreparedData]] = {
    "language_model": text.prepare,
    "forecast": forecast.prepare,
    "generation": generation.prepare,
}
SUPERVISED = ("auto", "classification", "regression", "multi_target")
def resolve_task(cfg: DataConfig, raw: Any) -> str:
    """The task's family of data preparation: a key of ``TASKS``, or ``supervised``."""
    if isinstance(raw, TextCorpus):
        if cfg.task not in ("auto", "language_model"):
            raise DataError(f"a .txt file trains a language model; task '{cfg.task}' needs a table or arrays")
        return "language_model"
    if cfg.task in TASKS:
        return cfg.task
    if cfg.task == "auto" and isinstance(raw, pd.DataFrame) and builtin_task(cfg.source) in TASKS:
        return builtin_task(cfg.source)
    return "supervised"


def prepare_data(cfg: DataConfig, seed: int, source: Any = None, embedding_dim: int | None = None,
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
    task = resolve_task(cfg, raw)
    if task in TASKS:
        return TASKS[task](cfg, raw, seed, notices)
    if cfg.task not in SUPERVISED:
        raise DataError(f"task '{cfg.task}' does not fit this data")
    if isinstance(raw, ArrayData):
        if raw.y is None:
            raise DataError("the .npz file has no 'y' array to learn from")
        return _prepare(cfg, raw, seed, notices, ["y"], embedding_dim, split_override)
    if not isinstance(raw, pd.DataFrame):
        raise DataError(f"cannot learn {cfg.task} from {type(raw).__name__}")
    targets = resolve_targets(cfg, raw)
    missing = np.zeros(len(raw), dtype=bool)
    for target in targets:
        gone = is_missing(raw[target]).to_numpy()
        if gone.all():
            raise DataError(f"target column '{target}' is empty")
        missing |= gone
    if missing.any():
        named = "', '".join(targets)
        notices.append(f"{int(missing.sum())} rows without a '{named}' value were left out")
        raw = raw.loc[~missing].reset_index(drop=True)
    return _prepare(cfg, raw, seed, notices, targets, embedding_dim, split_override)


def _output_types(cfg: DataConfig, raw: Any, targets: list[str]) -> dict[str, str]:
    """Each target's output type: ``category`` or ``number``, from data.features, data.task or the values."""
    out = {}
    for name in targets:
        declared = cfg.features.get(name)
        if declared is not None:
            if declared.type not in OUTPUT_ALIASES:
                raise DataError(f"data.features.{name}: a target is a category or a number, not {declared.type}")
            out[name] = OUTPUT_ALIASES[declared.type]
            continue
        values = raw.y if isinstance(raw, ArrayData) else raw[name]
        task = cfg.task if cfg.task in TASK_OUTPUT else infer_task(values)
        out[name] = TASK_OUTPUT[task]
    return out


def _input_types(cfg: DataConfig, raw: Any, targets: list[str], notices: list[str]) -> tuple[dict[str, str], dict[str, str]]:
    """Each input's feature type (inferred, or as data.features says), and the columns left out with why."""
    declared = {k: v.type for k, v in cfg.features.items()}
    if cfg.text_column is not None:
        declared.setdefault(cfg.text_column, "text")
    if isinstance(raw, ArrayData):
        x = np.asarray(raw.x)
        sequence = cfg.sequence if cfg.sequence is not None else isinstance(raw, SequenceArrays)
        layout = declared.get("x") or array_layout_for(x, sequence)
        if layout not in ("image", "vector", "sequence"):
            raise DataError(f"data.features.x: an array is read as image, vector or sequence, not {layout}")
        if layout != "sequence" and np.issubdtype(x.dtype, np.number) and not np.isfinite(x).all():
            bad = int((~np.isfinite(x.astype(np.float64))).reshape(len(x), -1).any(axis=1).sum())
            raise DataError(f"'x' holds NaN or infinite values in {bad} samples")
        return {"x": layout}, {}
    unknown = [c for c in declared if c not in raw.columns]
    if unknown:
        raise DataError(f"data.features names column{'s' if len(unknown) > 1 else ''} not in the data: "
                        f"{', '.join(unknown)}; columns: {', '.join(map(str, raw.columns[:20]))}")
    types, dropped = {}, {}
    for name in raw.columns:
        if name in targets:
            continue
        if name in cfg.drop:
            dropped[name] = "dropped by data.drop"
            continue
        kind = declared.get(name) or infer_column(str(name), raw[name])
        if kind is None:
            dropped[name] = DROPPED_ID
            notices.append(f"column '{name}' dropped: {DROPPED_ID}")
        elif kind in ("image", "vector", "sequence", "number"):
            raise DataError(f"data.features.{name}: type {kind} is not for a table column")
        else:
            types[str(name)] = kind
            if kind == "category" and name not in declared and looks_like_group_key(str(name), raw[name]):
                notices.append(f"column '{name}': {GROUP_KEY} ({raw[name].nunique()} values over {len(raw)} "
                               f"rows; data.features: {{{name}: numeric}} to read it as a number)")
    if not types:
        raise DataError("no usable feature columns remain besides the target")
    return types, dropped


def _prepare(cfg: DataConfig, raw: Any, seed: int, notices: list[str], targets: list[str],
             embedding_dim: int | None, split_override) -> PreparedData:
    outputs = _output_types(cfg, raw, targets)
    types, dropped = _input_types(cfg, raw, targets, notices)
    n = len(raw.x) if isinstance(raw, ArrayData) else len(raw)
    if n < 10:
        raise DataError(f"only {n} rows with a target (n_samples = {n}): too few to split into train, val and test")
    # Stratify by the first classification target.
    strat_name = next((t for t in targets if outputs[t] == "category"), None)
    strat = None
    if strat_name is not None:
        strat = np.asarray(raw.y if isinstance(raw, ArrayData) else raw[strat_name]).astype(str)
        if len(np.unique(strat)) < 2:
            raise DataError(f"target '{strat_name}' has only one class ({strat[0]!r}): nothing to learn")
    tr, va, te = split_override if split_override is not None else _split(cfg, raw, n, strat, seed)
    options = FitOptions(cfg.embedding_threshold, cfg.max_length, cfg.max_vocab, cfg.tokenizer or "words",
                         cfg.numeric_encoding, cfg.numeric_bins)
    pre = FeaturePreprocessor.fit(_rows(raw, tr), types, outputs, options, dropped, embedding_dim)
    if isinstance(raw, pd.DataFrame):
        notices.append("feature types: " + "; ".join(pre.describe()) + " (override with data.features)")
    elif pre.array is not None and pre.array.channels_last:
        notices.append(f"'x' of shape {tuple(np.shape(raw.x))} read as (N, H, W, C) and transposed to (N, C, H, W)")
    splits = []
    for idx in (tr, va, te):
        part = _rows(raw, idx)
        splits.append(to_split(pre.inputs(part), pre.encode_targets(part), idx))
    return PreparedData(pre.spec(), pre, *splits, raw=raw, notices=notices)


def _split(cfg: DataConfig, raw: Any, n: int, strat: np.ndarray | None, seed: int):
    s = cfg.split
    fixed = getattr(raw, "test_size", 0)
    if fixed:
        # The data set's own test set; train/val come from the rest in the configured proportion.
        rest = n - fixed
        tr, va, _ = split_indices(rest, None if strat is None else strat[:rest], s.train / (s.train + s.val),
                                  s.val / (s.train + s.val), 0.0, seed, stratify=s.stratify)
        return tr, va, np.arange(rest, n)
    return split_indices(n, strat, s.train, s.val, s.test, seed, stratify=s.stratify)


def _rows(raw: Any, idx: np.ndarray) -> Any:
    if isinstance(raw, ArrayData):
        return ArrayData(x=np.asarray(raw.x)[idx], y=None if raw.y is None else np.asarray(raw.y)[idx], name=raw.name)
    return raw.iloc[idx]
