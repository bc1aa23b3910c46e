"""Standardisation statistics that are finite or refused: one rule for every preprocessor.

Values near the float limit (``1e308``) make a mean or a standard deviation overflow to infinity; saved, that
is ``Infinity`` in ``preprocess.json`` (not JSON) and, applied, it scales the column to zeros. Such data is
refused here, naming the column, instead.

>>> finite_stats("column 'a'", np.array([1.0, 3.0]))
(2.0, 1.0)
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from palaestra.errors import DataError


def finite_stats(what: str, values: Any, axis: int | None = None) -> tuple[Any, Any]:
    """``(mean, std)`` (population std) as the caller computed them before: pandas' for a Series (floats) or a
    DataFrame (per column, NaN for an all-missing one), numpy's over ``axis`` for arrays."""
    with np.errstate(over="ignore", invalid="ignore"):
        if isinstance(values, pd.Series | pd.DataFrame):
            mean, std = values.mean(), values.std(ddof=0)
        else:
            v = np.asarray(values, dtype=np.float64)
            mean, std = v.mean(axis=axis), v.std(axis=axis)
    m, s = np.asarray(mean, np.float64), np.asarray(std, np.float64)
    # A NaN mean means no values at all (the caller's default applies); an infinity means overflow.
    if (np.isinf(m) | np.isinf(s) | (np.isnan(s) & ~np.isnan(m))).any():
        with np.errstate(invalid="ignore"):
            biggest = float(np.nanmax(np.abs(np.asarray(values, np.float64))))
        raise DataError(f"{what} holds values too large to scale (up to {biggest:.3g}): rescale it "
                        f"(e.g. log or divide by a constant) or leave it out")
    return (float(mean), float(std)) if np.ndim(m) == 0 else (mean, std)


def standardized_target(what: str, values: Any, mean: float, std: float) -> np.ndarray:
    """``(values - mean) / std`` as float32, refused where a value is beyond float32 once scaled (e.g. a 1e308
    in the validation or test split, which the training statistics never saw)."""
    with np.errstate(over="ignore", invalid="ignore"):
        z = ((np.asarray(values, np.float64) - mean) / std).astype(np.float32)
    if not np.isfinite(z).all():
        raise DataError(f"{what} holds a value too large to represent (beyond float32 after scaling)")
    return z
