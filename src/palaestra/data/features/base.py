"""What every feature type shares: missing-value tokens, parsing helpers, and the two base classes.

A feature type is one module under ``palaestra/data/features/`` holding one class, registered in
``features/__init__.py``. An input feature infers (does this column look like me?), fits its state on the
training split (JSON, no pickle), and transforms raw values into arrays for the model, handling missing
and unseen values. An output feature (a target) encodes labels or values for the loss and decodes the
model's outputs back into predictions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import pandas as pd

NA_TOKENS = {"", "?", "na", "n/a", "nan", "null", "none", "-", "--", "missing"}
TRUE_TOKENS = {"true", "t", "yes", "y"}
FALSE_TOKENS = {"false", "f", "no", "n"}
MISSING = "__missing__"


def jsonable(v: Any) -> Any:
    """A numpy scalar as its Python value (JSON can hold it)."""
    if isinstance(v, np.generic):
        return v.item()
    return v


def as_text(series: pd.Series) -> pd.Series:
    return series.astype("string").str.strip()


def is_missing(series: pd.Series) -> pd.Series:
    """True where a value is missing: NaN/None, or a token such as '', 'NA' or '?'."""
    if pd.api.types.is_numeric_dtype(series) or pd.api.types.is_datetime64_any_dtype(series):
        return series.isna()
    return series.isna() | as_text(series).str.lower().isin(NA_TOKENS).fillna(False).astype(bool)


# "No unparseable values": shared by every numeric column (a wide table has thousands; building a mask each
# time was a third of the type inference's time on a 5,000-column table).
NOTHING_BAD = pd.Series([], dtype=bool)


def numeric_view(series: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Parse a column as numbers; returns (values with NaN for missing, mask of unparseable text)."""
    if pd.api.types.is_bool_dtype(series) or pd.api.types.is_numeric_dtype(series):
        return series.astype(float), NOTHING_BAD
    na = is_missing(series)
    parsed = pd.to_numeric(series.where(~na), errors="coerce")
    bad = parsed.isna() & ~na
    return parsed.astype(float), bad


def boolean_view(series: pd.Series) -> pd.Series | None:
    """1.0/0.0/NaN when every present value is a true/false token (or the column is boolean); else None."""
    if pd.api.types.is_bool_dtype(series):
        return series.astype(float)
    if pd.api.types.is_numeric_dtype(series) or pd.api.types.is_datetime64_any_dtype(series):
        return None
    na = is_missing(series)
    text = as_text(series).str.lower()
    vals = set(text[~na].dropna().unique())
    if not vals or not vals <= (TRUE_TOKENS | FALSE_TOKENS) or len(vals) > 2:
        return None
    out = pd.Series(np.nan, index=series.index)
    out[text.isin(TRUE_TOKENS).fillna(False).astype(bool)] = 1.0
    out[text.isin(FALSE_TOKENS).fillna(False).astype(bool)] = 0.0
    return out


def label_codes(y: Any, classes: list[Any] | None) -> np.ndarray:
    """Class labels -> their index in ``classes`` (matched by text, so 1 and "1" agree); -1 where unseen."""
    lookup = {str(c): i for i, c in enumerate(classes or [])}
    return np.array([lookup.get(str(jsonable(v)), -1) for v in np.asarray(y, dtype=object)], dtype=np.int64)


def sorted_labels(values: Any) -> list[Any]:
    """The distinct labels, sorted within each type (numbers before text), as JSON-able values."""
    return sorted({jsonable(v) for v in values}, key=lambda v: (str(type(v)), v))


def histogram(values: np.ndarray) -> tuple[list[float], list[float]]:
    """Decile edges and bucket frequencies of finite values: the training distribution drift is judged against."""
    edges = np.unique(np.quantile(values, np.linspace(0, 1, 11)))
    if len(edges) < 2:
        return [float(e) for e in edges], []
    counts, _ = np.histogram(np.clip(values, edges[0], edges[-1]), bins=edges)
    return [float(e) for e in edges], [float(c) for c in counts / counts.sum()]


@dataclass(frozen=True)
class FitOptions:
    """The data config's knobs a feature type may read when it is fitted."""

    embedding_threshold: int = 16
    max_length: int = 128
    max_vocab: int = 20000
    tokenizer: str = "words"  # text: `words` or `minilm` (the pretrained encoder's WordPiece)
    numeric_encoding: str = "quantile"  # numeric: quantile | standard | piecewise
    numeric_bins: int = 16  # numeric, piecewise: bins between training quantiles (at most)


class Fitted:
    """A named thing with fitted state that round-trips through JSON: ``{"type", "name", **state()}``."""

    type: ClassVar[str]

    def __init__(self, name: str):
        self.name = name

    def state(self) -> dict[str, Any]:
        """The fitted state: the constructor's keywords besides ``name``."""
        return {}

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, "name": self.name, **self.state()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Any:
        return cls(**{k: v for k, v in d.items() if k != "type"})


class InputFeature(Fitted):
    """One input column (or array) of a run.

    ``slot`` says where its arrays go: ``numeric`` (columns of the dense float block shared by all such
    features), ``categorical`` (one column of the integer block of embedded categories), or ``own`` (tensors
    of its own: a text's token ids, an image).
    """

    slot: ClassVar[str] = "numeric"

    @classmethod
    def fit(cls, name: str, series: Any, options: FitOptions) -> InputFeature:
        raise NotImplementedError

    def transform(self, series: Any) -> np.ndarray:
        """Raw values -> ``(N, width)`` float (numeric slot), ``(N, 1)`` int64 (categorical slot)."""
        raise NotImplementedError

    def columns(self) -> list[str]:
        """Names of the dense columns this feature contributes to the numeric block."""
        return []

    def describe(self) -> str:
        return self.type


class OutputFeature(Fitted):
    """One target: encodes raw labels/values for the loss, decodes model outputs into predictions."""

    task: ClassVar[str]

    @property
    def width(self) -> int:
        """Columns of the model's output this target owns."""
        raise NotImplementedError

    def encode(self, values: Any) -> np.ndarray:
        raise NotImplementedError

    def decode(self, outputs: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """``(N, width)`` model outputs -> (predictions in the data's own labels/units, probabilities or None)."""
        raise NotImplementedError
