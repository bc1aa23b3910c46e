"""Which columns a run learns to predict: ``data.target`` (one name or a list), else the built-in's own."""

from __future__ import annotations

import difflib
from typing import Any

import numpy as np
import pandas as pd

from palaestra.config import DataConfig
from palaestra.data.datasets import default_target
from palaestra.data.features.base import is_missing
from palaestra.errors import DataError


def resolve_targets(cfg: DataConfig, raw: pd.DataFrame) -> list[str]:
    """The target column names, each checked against the table's columns (with a did-you-mean)."""
    given = cfg.target if cfg.target is not None else default_target(cfg.source)
    if given is None or given == []:
        raise DataError(f"name the target column with --target (columns: {', '.join(map(str, raw.columns[:20]))})")
    names = [given] if isinstance(given, str) else list(given)
    if len(set(names)) != len(names):
        raise DataError(f"a target is named twice: {', '.join(names)}")
    missing = []
    for target in names:
        if target not in raw.columns:
            close = difflib.get_close_matches(target, [str(c) for c in raw.columns], n=1)
            missing.append(f"'{target}'" + (f" (did you mean '{close[0]}'?)" if close else ""))
    if missing:
        raise DataError(f"target column{'s' if len(missing) > 1 else ''} {', '.join(missing)} not found; "
                        f"columns: {', '.join(map(str, raw.columns[:20]))}")
    return names


def labelled_rows(raw: Any, targets: list[str]) -> Any:
    """The rows of a table whose every target is present (arrays pass as they are)."""
    if not isinstance(raw, pd.DataFrame) or not targets:
        return raw
    absent = [t for t in targets if t not in raw.columns]
    if absent:
        raise DataError(f"target column{'s' if len(absent) > 1 else ''} {', '.join(map(repr, absent))} not found in the data")
    keep = np.ones(len(raw), dtype=bool)
    for t in targets:
        keep &= ~is_missing(raw[t]).to_numpy()
    return raw.loc[keep]
