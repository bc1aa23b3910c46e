"""Fitted preprocessing: column types, imputation, scaling, encoding, label encoding.

Everything is fitted on the training split only and round-trips through JSON (``preprocess.json``), so a
saved run applies exactly the same transformation at predict and serve time.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from palaestra.data.scaling import finite_stats, standardized_target
from palaestra.data.spec import FeatureSpec
from palaestra.errors import DataError

NA_TOKENS = {"", "?", "na", "n/a", "nan", "null", "none", "-", "--", "missing"}
TRUE_TOKENS = {"true", "t", "yes", "y"}
FALSE_TOKENS = {"false", "f", "no", "n"}
MISSING = "__missing__"


def _jsonable(v: Any) -> Any:
    if isinstance(v, np.generic):
        return v.item()
    return v


def label_codes(y: Any, classes: list[Any] | None) -> np.ndarray:
    """Class labels -> their index in ``classes`` (matched by text, so 1 and "1" agree); -1 where unseen."""
    lookup = {str(c): i for i, c in enumerate(classes or [])}
    return np.array([lookup.get(str(_jsonable(v)), -1) for v in np.asarray(y, dtype=object)], dtype=np.int64)


def _as_text(series: pd.Series) -> pd.Series:
    return series.astype("string").str.strip()


def _is_na_token(series: pd.Series) -> pd.Series:
    return series.isna() | _as_text(series).str.lower().isin(NA_TOKENS).fillna(False).astype(bool)


@dataclass
class Column:
    name: str
    kind: str  # numeric | boolean | categorical
    # numeric/boolean: impute with `fill`, scale with mean/std; `indicator` adds a was-missing feature
    fill: float = 0.0
    mean: float = 0.0
    std: float = 1.0
    indicator: bool = False
    # categorical: categories seen in training, most frequent first; unseen -> all-zero / index 0
    categories: list[Any] = field(default_factory=list)
    embed: bool = False
    # drift monitoring: training-split histogram
    bins: list[float] = field(default_factory=list)
    freqs: list[float] = field(default_factory=list)


def infer_task(y: pd.Series | np.ndarray) -> str:
    s = pd.Series(np.asarray(y)) if not isinstance(y, pd.Series) else y
    s = s.dropna()
    if s.dtype == bool or not pd.api.types.is_numeric_dtype(s):
        return "classification"
    values = s.to_numpy(dtype=float)
    integral = np.all(np.isfinite(values)) and np.all(values == np.round(values))
    if integral and s.nunique() <= 20:
        return "classification"
    return "regression"


def _numeric_view(series: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Parse a column as numbers; returns (values with NaN for missing, mask of unparseable text)."""
    if pd.api.types.is_bool_dtype(series):
        return series.astype(float), pd.Series(False, index=series.index)
    if pd.api.types.is_numeric_dtype(series):
        return series.astype(float), pd.Series(False, index=series.index)
    na = _is_na_token(series)
    parsed = pd.to_numeric(series.where(~na), errors="coerce")
    bad = parsed.isna() & ~na
    return parsed.astype(float), bad


def _boolean_view(series: pd.Series) -> pd.Series | None:
    if pd.api.types.is_bool_dtype(series):
        return series.astype(float)
    if pd.api.types.is_numeric_dtype(series):
        return None
    na = _is_na_token(series)
    text = _as_text(series).str.lower()
    vals = set(text[~na].dropna().unique())
    if not vals or not vals <= (TRUE_TOKENS | FALSE_TOKENS) or len(vals) > 2:
        return None
    out = pd.Series(np.nan, index=series.index)
    out[text.isin(TRUE_TOKENS).fillna(False).astype(bool)] = 1.0
    out[text.isin(FALSE_TOKENS).fillna(False).astype(bool)] = 0.0
    return out


def _looks_like_identifier(name: str, series: pd.Series) -> bool:
    s = series.dropna()
    if len(s) < 20:
        return False
    unique_ratio = s.nunique() / len(s)
    lowered = name.lower()
    named_id = lowered == "id" or lowered.endswith("_id") or lowered.endswith(" id") or lowered in {"index", "uuid", "key", "row"}
    if pd.api.types.is_integer_dtype(s):
        v = np.sort(s.to_numpy())
        consecutive = unique_ratio == 1.0 and np.all(np.diff(v) == 1)
        return bool(consecutive or (named_id and unique_ratio > 0.95))
    if pd.api.types.is_float_dtype(s):
        return False
    return bool(unique_ratio > 0.9 or (named_id and unique_ratio > 0.5))


class TablePreprocessor:
    """Turns raw DataFrame rows into ``(numeric float32 (N, d), categorical int64 (N, k))`` tensors."""

    kind = "table"

    def __init__(self, target: str, task: str, columns: list[Column], classes: list[Any] | None,
                 target_mean: float = 0.0, target_std: float = 1.0, dropped: dict[str, str] | None = None):
        self.target, self.task, self.columns, self.classes = target, task, columns, classes
        self.target_mean, self.target_std = target_mean, target_std
        self.dropped = dropped or {}

    # -- fitting ------------------------------------------------------------------------------------------

    @classmethod
    def infer_columns(cls, df: pd.DataFrame, target: str, drop: list[str], notices: list[str]) -> tuple[list[tuple[str, str]], dict[str, str]]:
        """Decide each feature column's kind from the whole frame (a schema, not a statistic)."""
        kinds: list[tuple[str, str]] = []
        dropped: dict[str, str] = {}
        for name in df.columns:
            if name == target:
                continue
            if name in drop:
                dropped[name] = "dropped by data.drop"
                continue
            series = df[name]
            if _is_na_token(series).all():
                raise DataError(f"column '{name}' is empty (every value is missing): remove it or add it to data.drop")
            if _boolean_view(series) is not None:
                kinds.append((name, "boolean"))
                continue
            values, bad = _numeric_view(series)
            n_present = int((~_is_na_token(series)).sum())
            if not bad.any():
                # Judge the parsed numbers, not the text: a measurement column read as text (because of a
                # '?' or 'NA' token) has a distinct string on almost every row but is no identifier.
                present = values.dropna()
                integral = len(present) > 0 and bool(np.isfinite(present).all() and (present == present.round()).all())
                if _looks_like_identifier(name, present.astype("int64") if integral else present):
                    dropped[name] = "identifier-like (a distinct value on almost every row)"
                    continue
                kinds.append((name, "numeric"))
                continue
            if n_present and bad.sum() / n_present <= 0.1:
                first = bad.idxmax()
                raise DataError(
                    f"column '{name}' is numeric but row {first} holds text {series[first]!r}: "
                    f"fix the value, or mark it missing (empty, NA or ?)")
            if _looks_like_identifier(name, series):
                dropped[name] = "identifier-like (a distinct value on almost every row)"
                continue
            kinds.append((name, "categorical"))
        for name, why in dropped.items():
            if why != "dropped by data.drop":
                notices.append(f"column '{name}' dropped: {why}")
        if not kinds:
            raise DataError("no usable feature columns remain besides the target")
        return kinds, dropped

    @classmethod
    def fit(cls, df: pd.DataFrame, target: str, task: str, kinds: list[tuple[str, str]], dropped: dict[str, str],
            embedding_threshold: int) -> TablePreprocessor:
        columns: list[Column] = []
        for name, kind in kinds:
            series = df[name]
            if kind in ("numeric", "boolean"):
                values = _boolean_view(series) if kind == "boolean" else _numeric_view(series)[0]
                finite = values[np.isfinite(values)]
                if len(finite) == 0:
                    raise DataError(f"column '{name}' has no values in the training split")
                fill = float(finite.median())
                mean, std = finite_stats(f"column '{name}'", finite)
                col = Column(name, kind, fill=fill, mean=mean, std=std if std > 1e-12 else 1.0,
                             indicator=bool(values.isna().any()))
                edges = np.unique(np.quantile(finite, np.linspace(0, 1, 11)))
                col.bins = [float(e) for e in edges]
                if len(edges) > 1:
                    counts, _ = np.histogram(np.clip(finite, edges[0], edges[-1]), bins=edges)
                    col.freqs = [float(c) for c in counts / counts.sum()]
            else:
                text = _as_text(series).where(~_is_na_token(series), MISSING)
                counts = text.value_counts()
                cats = [_jsonable(c) for c in counts.index]
                col = Column(name, kind, categories=cats, embed=len(cats) > embedding_threshold)
                col.freqs = [float(c) for c in counts.to_numpy() / counts.sum()]
            columns.append(col)
        classes = None
        t_mean, t_std = 0.0, 1.0
        y = df[target]
        if task == "classification":
            classes = sorted({_jsonable(v) for v in y.dropna()}, key=lambda v: (str(type(v)), v))
            if len(classes) < 2:
                raise DataError(f"target '{target}' has only one class ({classes[0]!r}) in the training split: nothing to learn")
        else:
            yv = _numeric_view(y)[0]
            if yv.isna().all():
                raise DataError(f"target '{target}' has no numeric values for regression")
            t_mean, t_std = finite_stats(f"target '{target}'", yv)
            t_std = t_std or 1.0
        return cls(target, task, columns, classes, t_mean, t_std, dropped)

    # -- applying -----------------------------------------------------------------------------------------

    @property
    def feature_columns(self) -> list[str]:
        return [c.name for c in self.columns]

    def check_columns(self, df: pd.DataFrame) -> None:
        missing = [c for c in self.feature_columns if c not in df.columns]
        if missing:
            hints = []
            for m in missing:
                close = difflib.get_close_matches(m, [str(c) for c in df.columns], n=1)
                hints.append(f"'{m}'" + (f" (found '{close[0]}')" if close else ""))
            raise DataError(f"missing column{'s' if len(missing) > 1 else ''}: {', '.join(hints)}")

    def transform(self, df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """Raw rows -> (numeric (N, n_numeric) float32, categorical (N, n_embedded) int64)."""
        self.check_columns(df)
        numeric: list[np.ndarray] = []
        embedded: list[np.ndarray] = []
        for col in self.columns:
            series = df[col.name]
            if col.kind in ("numeric", "boolean"):
                if col.kind == "boolean":
                    values = _boolean_view(series)
                    if values is None:
                        values = _numeric_view(series)[0]
                else:
                    values, bad = _numeric_view(series)
                    if bad.any():
                        first = bad.idxmax()
                        raise DataError(f"column '{col.name}' must be numeric; row {first} holds {series[first]!r}")
                v = values.to_numpy(dtype=np.float64)
                if np.isinf(v).any():
                    raise DataError(f"column '{col.name}' holds an infinite value")
                was_missing = np.isnan(v)
                v = np.where(was_missing, col.fill, v)
                numeric.append(((v - col.mean) / col.std)[:, None])
                if col.indicator:
                    numeric.append(was_missing.astype(np.float64)[:, None])
            else:
                text = _as_text(series).where(~_is_na_token(series), MISSING).astype(object).to_numpy()
                lookup = {str(c): i for i, c in enumerate(col.categories)}
                codes = np.array([lookup.get(str(t), -1) for t in text], dtype=np.int64)
                if col.embed:
                    embedded.append((codes + 1)[:, None])  # 0 is the unknown category
                else:
                    onehot = np.zeros((len(codes), len(col.categories)))
                    known = codes >= 0
                    onehot[np.nonzero(known)[0], codes[known]] = 1.0  # unseen category: all zeros
                    numeric.append(onehot)
        n = len(df)
        with np.errstate(over="ignore"):
            num = np.concatenate(numeric, axis=1).astype(np.float32) if numeric else np.zeros((n, 0), np.float32)
        if not np.isfinite(num).all():
            column = self.feature_names()[int(np.nonzero(~np.isfinite(num).all(axis=0))[0][0])]
            raise DataError(f"column '{column}' holds a value too large to represent (beyond float32 after scaling)")
        cat = np.concatenate(embedded, axis=1) if embedded else np.zeros((n, 0), np.int64)
        return num, cat

    def inputs(self, df: pd.DataFrame) -> tuple[np.ndarray, ...]:
        return self.transform(df)

    def encode_target(self, y: pd.Series | np.ndarray) -> np.ndarray:
        y = pd.Series(np.asarray(y) if not isinstance(y, pd.Series) else y)
        if self.task == "classification":
            codes = label_codes(y, self.classes)
            if (codes < 0).any():
                unknown = sorted({str(v) for v, c in zip(y, codes, strict=True) if c < 0})[:5]
                raise DataError(f"target '{self.target}' has labels not seen in training: {', '.join(unknown)}")
            return codes
        values, bad = _numeric_view(y)
        if bad.any() or values.isna().any():
            raise DataError(f"target '{self.target}' must be numeric with no missing values for regression")
        if np.isinf(values.to_numpy(dtype=np.float64)).any():
            raise DataError(f"target '{self.target}' holds an infinite value: regression needs finite targets")
        return standardized_target(f"target '{self.target}'", values.to_numpy(dtype=np.float64), self.target_mean, self.target_std)

    def decode_target(self, values: np.ndarray) -> np.ndarray:
        """Model outputs on the training scale -> labels (classification codes) or original units."""
        if self.task == "classification":
            return np.asarray(self.classes, dtype=object)[values]
        return values * self.target_std + self.target_mean

    def feature_names(self) -> list[str]:
        names: list[str] = []
        for c in self.columns:
            if c.kind in ("numeric", "boolean"):
                names.append(c.name)
                if c.indicator:
                    names.append(f"{c.name}__missing")
            elif not c.embed:
                names.extend(f"{c.name}={v}" for v in c.categories)
        return names

    def spec(self, embedding_dim: int | None) -> FeatureSpec:
        embeddings = []
        for c in self.columns:
            if c.kind == "categorical" and c.embed:
                card = len(c.categories) + 1
                embeddings.append((card, embedding_dim or min(16, (card + 1) // 2)))
        names = self.feature_names()
        return FeatureSpec(kind="table", task=self.task, input_names=["numeric", "categorical"],
                           n_outputs=len(self.classes) if self.classes else 1, n_numeric=len(names),
                           embeddings=embeddings, classes=self.classes, feature_names=names)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "target": self.target, "task": self.task, "classes": self.classes,
                "target_mean": self.target_mean, "target_std": self.target_std, "dropped": self.dropped,
                "columns": [vars(c) for c in self.columns]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TablePreprocessor:
        return cls(d["target"], d["task"], [Column(**c) for c in d["columns"]], d.get("classes"),
                   d.get("target_mean", 0.0), d.get("target_std", 1.0), d.get("dropped"))


class KeywordState:
    """For a preprocessor whose ``to_dict()`` is its constructor's keywords plus ``kind``."""

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Any:
        return cls(**{k: v for k, v in d.items() if k != "kind"})


PREPROCESSORS: dict[str, type] = {"table": TablePreprocessor}  # other kinds register themselves


def preprocessor_from_dict(d: dict[str, Any]) -> Any:
    """Rebuild a fitted preprocessor of any registered kind from its ``to_dict()``."""
    kind = d.get("kind")
    if kind not in PREPROCESSORS:
        raise DataError(f"preprocess.json names an unknown preprocessing kind {kind!r}")
    return PREPROCESSORS[kind].from_dict(d)


# Arrays, sequences, series and text (and their built-in data sets) register their kinds here.
from palaestra.data import arrays as _arrays  # noqa: E402, F401, I001
from palaestra.data import forecast as _forecast  # noqa: E402, F401
from palaestra.data import sequence as _sequence  # noqa: E402, F401
from palaestra.data import text as _text  # noqa: E402, F401
from palaestra.generative import data as _generation  # noqa: E402, F401
