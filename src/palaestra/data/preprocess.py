"""Fitted preprocessing for supervised runs: typed input features and one or more targets.

A ``FeaturePreprocessor`` holds the run's input features (each a fitted feature type from
``palaestra.data.features``) and its output features (targets). It turns raw rows (a DataFrame) or arrays
into the model's input tensors, encodes targets for the loss, and decodes model outputs into predictions.
Everything is fitted on the training split only and round-trips through JSON (``preprocess.json``), so a
saved run applies exactly the same transformation at predict, serve and export time.

Tensors of a table: ``numeric`` (every dense column: numbers, booleans, one-hot categories, date parts),
``categorical`` (one index per embedded category), then one ``text:NAME`` id matrix per text column. An
array run has the array feature's own tensors (``x``, or ``x`` and ``lengths`` for sequences).
"""

from __future__ import annotations

import difflib
from typing import Any

import numpy as np
import pandas as pd

from palaestra.data.features import (
    INPUT_TYPES,
    OUTPUT_TYPES,
    ArrayFeature,
    CategoryOutput,
    FitOptions,
    InputFeature,
    OutputFeature,
    TextFeature,
    input_from_dict,
    output_from_dict,
)
from palaestra.data.sources import ArrayData
from palaestra.data.spec import Decoded, FeatureSpec
from palaestra.errors import DataError

TEXT_PREFIX = "text:"


def column(raw: Any, name: str) -> Any:
    """A named column of a frame, or the named array of ``ArrayData`` (``x``/``y``)."""
    if isinstance(raw, pd.DataFrame):
        return raw[name]
    if isinstance(raw, ArrayData):
        return raw.x if name == "x" else raw.y
    if isinstance(raw, np.ndarray) and name == "x":
        return raw
    raise DataError(f"cannot read '{name}' from {type(raw).__name__}")


class FeaturePreprocessor:
    """Input features -> model tensors; targets <-> encoded labels/values. ``kind`` in preprocess.json: ``features``."""

    kind = "features"

    def __init__(self, inputs: list[InputFeature], outputs: list[OutputFeature], dropped: dict[str, str] | None = None,
                 embedding_dim: int | None = None):
        self.features, self.outputs = inputs, outputs
        self.dropped = dropped or {}
        self.embedding_dim = embedding_dim
        self.array = next((f for f in inputs if isinstance(f, ArrayFeature)), None)
        self.texts = [f for f in inputs if isinstance(f, TextFeature)]
        self.embedded = [f for f in inputs if f.slot == "categorical"]
        self.dense = [f for f in inputs if f.slot == "numeric"]

    # -- what it is ----------------------------------------------------------------------------------------

    @property
    def task(self) -> str:
        return self.outputs[0].task if len(self.outputs) == 1 else "multi_target"

    @property
    def target(self) -> str | list[str]:
        names = [o.name for o in self.outputs]
        return names[0] if len(names) == 1 else names

    @property
    def targets(self) -> list[str]:
        return [o.name for o in self.outputs]

    @property
    def classes(self) -> list[Any] | None:
        out = self.outputs[0]
        return out.classes if len(self.outputs) == 1 and isinstance(out, CategoryOutput) else None

    @property
    def target_mean(self) -> float:
        return getattr(self.outputs[0], "mean", 0.0) if len(self.outputs) == 1 else 0.0

    @property
    def target_std(self) -> float:
        return getattr(self.outputs[0], "std", 1.0) if len(self.outputs) == 1 else 1.0

    @property
    def feature_columns(self) -> list[str]:
        """The raw columns the model reads (a table), in order."""
        return [f.name for f in self.features]

    @property
    def input_names(self) -> list[str]:
        if self.array is not None:
            return self.array.input_names
        return ["numeric", "categorical"] + [TEXT_PREFIX + f.name for f in self.texts]

    def feature_names(self) -> list[str]:
        """Names of the numeric block's columns (or of an array's features)."""
        if self.array is not None:
            return self.array.columns()
        return [name for f in self.dense for name in f.columns()]

    # -- applying ------------------------------------------------------------------------------------------

    def check_columns(self, df: pd.DataFrame) -> None:
        missing = [c for c in self.feature_columns if c not in df.columns]
        if missing:
            hints = []
            for m in missing:
                close = difflib.get_close_matches(m, [str(c) for c in df.columns], n=1)
                hints.append(f"'{m}'" + (f" (found '{close[0]}')" if close else ""))
            raise DataError(f"missing column{'s' if len(missing) > 1 else ''}: {', '.join(hints)}")

    def inputs(self, raw: Any) -> tuple[np.ndarray, ...]:
        """Raw rows or arrays -> the model's input arrays, in ``input_names`` order."""
        if self.array is not None:
            if isinstance(raw, pd.DataFrame):
                raise DataError("this model was trained on arrays: give an .npz file or an array")
            return self.array.transform(column(raw, "x"))
        if not isinstance(raw, pd.DataFrame):
            raise DataError("this model was trained on a table: give rows with the training columns")
        self.check_columns(raw)
        n = len(raw)
        dense = [f.transform(raw[f.name]) for f in self.dense]
        with np.errstate(over="ignore"):
            numeric = np.concatenate(dense, axis=1).astype(np.float32) if dense else np.zeros((n, 0), np.float32)
        embedded = [f.transform(raw[f.name]) for f in self.embedded]
        categorical = np.concatenate(embedded, axis=1) if embedded else np.zeros((n, 0), np.int64)
        return (numeric, categorical, *(f.transform(raw[f.name]) for f in self.texts))

    def encode_targets(self, raw: Any) -> np.ndarray:
        """Targets -> class codes (int64) or standardised values (float32) for one target; for several, an
        ``(N, targets)`` float32 matrix of the same numbers (class codes are exact in float32)."""
        if isinstance(raw, pd.DataFrame):
            absent = [o.name for o in self.outputs if o.name not in raw.columns]
            if absent:
                raise DataError(f"target column{'s' if len(absent) > 1 else ''} {', '.join(map(repr, absent))} "
                                f"not found in the data")
        encoded = [o.encode(column(raw, o.name)) for o in self.outputs]
        if len(encoded) == 1:
            return encoded[0]
        return np.stack([e.astype(np.float32) for e in encoded], axis=1)

    def labelled(self, raw: Any) -> tuple[tuple[np.ndarray, ...], np.ndarray]:
        """Labelled rows -> (model inputs, encoded targets), for evaluation on new data."""
        return self.inputs(raw), self.encode_targets(raw)

    def spans(self) -> list[tuple[OutputFeature, slice]]:
        """Each target with its columns of the model's output."""
        out, start = [], 0
        for o in self.outputs:
            out.append((o, slice(start, start + o.width)))
            start += o.width
        return out

    @property
    def calibrated_output(self) -> CategoryOutput | None:
        """The one category target whose decoding calibration may adjust (temperature, threshold); None else."""
        out = self.outputs[0]
        return out if len(self.outputs) == 1 and isinstance(out, CategoryOutput) else None

    @property
    def temperature(self) -> float:
        """The fitted temperature the logits are divided by (1.0: none)."""
        out = self.calibrated_output
        return out.temperature if out is not None else 1.0

    def decode(self, outputs: np.ndarray) -> list[Decoded]:
        """Model outputs ``(N, n_outputs)`` -> predictions per target: the one path used by ``Run.predict``,
        the server and the scikit-learn estimators."""
        decoded = []
        for o, cols in self.spans():
            predictions, probs = o.decode(np.asarray(outputs)[:, cols])
            decoded.append(Decoded(o.name, predictions, probs, getattr(o, "classes", None)))
        return decoded

    # -- describing ----------------------------------------------------------------------------------------

    def spec(self) -> FeatureSpec:
        outputs = [{"name": o.name, "task": o.task, "width": o.width,
                    **({"classes": o.classes} if isinstance(o, CategoryOutput) else {"mean": o.mean, "std": o.std})}
                   for o in self.outputs]
        n_outputs = sum(o.width for o in self.outputs)
        common = {"task": self.task, "n_outputs": n_outputs, "classes": self.classes, "outputs": outputs,
                  "input_names": self.input_names, "feature_names": self.feature_names()}
        if self.array is not None:
            a = self.array
            return FeatureSpec(kind=a.layout, input_shape=list(a.shape),
                               n_numeric=a.shape[0] if a.layout == "vector" else 0, **common)
        embeddings = []
        for f in self.embedded:
            card = f.cardinality
            embeddings.append((card, self.embedding_dim or min(16, (card + 1) // 2)))
        texts = [{"name": f.name, "vocab_size": f.vocab_size, "max_length": f.max_length, "tokenizer": f.tokenizer,
                  **({"weights_sha256": f.weights_sha256} if f.weights_sha256 else {})} for f in self.texts]
        return FeatureSpec(kind="table", n_numeric=sum(len(f.columns()) for f in self.dense), embeddings=embeddings,
                           texts=texts, **common)

    def describe(self) -> list[str]:
        """One line per input feature: how it was typed (for the run's notices)."""
        return [f"'{f.name}': {f.describe()}" for f in self.features]

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "inputs": [f.to_dict() for f in self.features],
                "outputs": [o.to_dict() for o in self.outputs], "dropped": self.dropped,
                "embedding_dim": self.embedding_dim}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FeaturePreprocessor:
        return cls([input_from_dict(f) for f in d["inputs"]], [output_from_dict(o) for o in d["outputs"]],
                   d.get("dropped"), d.get("embedding_dim"))

    # -- fitting -------------------------------------------------------------------------------------------

    @classmethod
    def fit(cls, raw: Any, types: dict[str, str], outputs: dict[str, str], options: FitOptions,
            dropped: dict[str, str] | None = None, embedding_dim: int | None = None) -> FeaturePreprocessor:
        """Fit on the training rows ``raw``. ``types``: input name -> feature type (``image``/``vector``/
        ``sequence`` for an array); ``outputs``: target name -> ``category`` | ``number``."""
        inputs: list[InputFeature] = []
        for name, kind in types.items():
            if kind in ("image", "vector", "sequence"):
                inputs.append(ArrayFeature.fit(name, column(raw, name), options, layout=kind))
            else:
                inputs.append(INPUT_TYPES[kind].fit(name, column(raw, name), options))
        targets = [OUTPUT_TYPES[kind].fit(name, column(raw, name)) for name, kind in outputs.items()]
        return cls(inputs, targets, dropped, embedding_dim)
