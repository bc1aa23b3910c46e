"""The registry of feature types: one line per type, each a module of its own beside this file.

``INPUT_TYPES`` are the types a column (or array) can be read as; ``OUTPUT_TYPES`` the types a target can
have. ``infer_column`` decides a table column's type, in the order the checks below give; a type named in
``data.features`` overrides it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from palaestra.data.features.array import ArrayFeature
from palaestra.data.features.array import array_layout as array_layout_for
from palaestra.data.features.base import (
    FitOptions,
    InputFeature,
    OutputFeature,
    boolean_view,
    is_missing,
    numeric_view,
)
from palaestra.data.features.binary import BinaryFeature
from palaestra.data.features.category import CategoryFeature
from palaestra.data.features.datetime import DatetimeFeature, looks_like_times
from palaestra.data.features.numeric import NumericFeature
from palaestra.data.features.outputs import CategoryOutput, NumberOutput, infer_task
from palaestra.data.features.text import TextFeature
from palaestra.errors import DataError

INPUT_TYPES: dict[str, type[InputFeature]] = {
    "numeric": NumericFeature,
    "binary": BinaryFeature,
    "category": CategoryFeature,
    "text": TextFeature,
    "datetime": DatetimeFeature,
    "array": ArrayFeature,  # image | vector | sequence: the x array of an .npz
}
TABLE_TYPES = ("numeric", "binary", "category", "text", "datetime")
ARRAY_LAYOUTS = ("image", "vector", "sequence")
OUTPUT_TYPES: dict[str, type[OutputFeature]] = {"category": CategoryOutput, "number": NumberOutput}
TASK_OUTPUT = {"classification": "category", "regression": "number"}
# What a user may write as a target's type in data.features.
OUTPUT_ALIASES = {"category": "category", "binary": "category", "number": "number", "numeric": "number"}

DROPPED_ID = "identifier-like (a distinct value on almost every row)"


def input_from_dict(d: dict) -> InputFeature:
    kind = d.get("type")
    if kind not in INPUT_TYPES:
        raise DataError(f"preprocess.json names an unknown feature type {kind!r}")
    return INPUT_TYPES[kind].from_dict(d)


def output_from_dict(d: dict) -> OutputFeature:
    kind = d.get("type")
    if kind not in OUTPUT_TYPES:
        raise DataError(f"preprocess.json names an unknown target type {kind!r}")
    return OUTPUT_TYPES[kind].from_dict(d)


def _named_id(name: str, positional: bool = True) -> bool:
    """Named as an identifier: ``id``, ``*_id``, ``key`` (and, ``positional``, ``index``, ``uuid``, ``row``)."""
    lowered = name.lower()
    names = {"index", "uuid", "key", "row"} if positional else {"key"}
    return lowered == "id" or lowered.endswith(("_id", " id")) or lowered in names


def looks_like_identifier(name: str, series: pd.Series) -> bool:
    """A distinct value on (almost) every row, or consecutive integers: a row's name, not a property of it."""
    s = series.dropna()
    if len(s) < 20:
        return False
    unique_ratio = s.nunique() / len(s)
    named_id = _named_id(name)
    if pd.api.types.is_integer_dtype(s):
        v = np.sort(s.to_numpy())
        consecutive = unique_ratio == 1.0 and np.all(np.diff(v) == 1)
        return bool(consecutive or (named_id and unique_ratio > 0.95))
    if pd.api.types.is_float_dtype(s):
        return False
    return bool(unique_ratio > 0.9 or (named_id and unique_ratio > 0.5))


CODED_LEVELS = 20  # a mostly numeric column with at most this many distinct values and some text: a category


def looks_like_group_key(name: str, series: pd.Series) -> bool:
    """Integers (as read, or as text) that name one entity (a panel's person, a store) over several rows: named
    as an identifier (``id``, ``*_id``, ``key``) with values that repeat, at most half as many as the rows; or,
    whatever the name, a balanced panel's key: more than ``CODED_LEVELS`` values, each on the same number of
    rows (two or more), not evenly spaced (a panel's year or week, or a grid of ages, is evenly spaced and stays
    a number). Its number means nothing; which entity it is may: a category."""
    values, bad = numeric_view(series)
    if bad.any():  # some text that is no number
        return False
    s = values.dropna()
    if len(s) < 20 or not bool(np.isfinite(s).all() and (s == s.round()).all()):
        return False
    if _named_id(name, positional=False):
        return 2 <= s.nunique() <= len(s) // 2
    counts = s.value_counts()
    if len(counts) <= CODED_LEVELS or not counts.iloc[-1] == counts.iloc[0] >= 2:
        return False
    steps = np.diff(np.sort(counts.index.to_numpy(np.float64)))
    return bool(steps.max() > steps.min())


GROUP_KEY = "an identifier that repeats over rows (one entity each): read as a category, not a number"


def infer_column(name: str, series: pd.Series) -> str | None:
    """A column's feature type, or None for an identifier to drop. Raises for a column it cannot use."""
    missing = is_missing(series)
    if missing.all():
        raise DataError(f"column '{name}' is empty (every value is missing): remove it or add it to data.drop")
    if boolean_view(series) is not None:
        return "binary"
    values, bad = numeric_view(series)
    if not bad.any():
        # Judge the parsed numbers, not the text: a measurement column read as text (because of a '?' or 'NA'
        # token) has a distinct string on almost every row but is no identifier.
        present = values.dropna()
        integral = len(present) > 0 and bool(np.isfinite(present).all() and (present == present.round()).all())
        if integral and looks_like_group_key(name, series):
            return "category"
        return None if looks_like_identifier(name, present.astype("int64") if integral else present) else "numeric"
    n_present = int((~missing).sum())
    if looks_like_times(series):
        return "datetime"
    if n_present and bad.sum() / n_present <= 0.1:
        if series[~missing].astype(str).nunique() <= CODED_LEVELS:
            return "category"  # a coded column: grades '9'..'12' and 'other' are levels, not measurements
        first = bad.idxmax()
        raise DataError(f"column '{name}' is numeric but row {first} holds text {series[first]!r}: "
                        f"fix the value, or mark it missing (empty, NA or ?)")
    if TextFeature.looks_like(series):
        return "text"
    if looks_like_identifier(name, series):
        return None
    return "category"


__all__ = ["ARRAY_LAYOUTS", "DROPPED_ID", "GROUP_KEY", "INPUT_TYPES", "OUTPUT_ALIASES", "OUTPUT_TYPES", "TABLE_TYPES",
           "TASK_OUTPUT", "ArrayFeature", "array_layout_for", "BinaryFeature", "CategoryFeature", "CategoryOutput", "DatetimeFeature",
           "FitOptions", "InputFeature", "NumberOutput", "NumericFeature", "OutputFeature", "TextFeature",
           "infer_column", "infer_task", "input_from_dict", "looks_like_group_key", "looks_like_identifier",
           "output_from_dict"]
