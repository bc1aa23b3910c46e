"""The plain objects the data stage hands on: the feature spec (for the model stage) and the prepared splits.

A model is built from a ``FeatureSpec`` alone, so any model family can be paired with any data that
produces one, and a saved run rebuilds its model from ``preprocess.json``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch


@dataclass
class FeatureSpec:
    """What the model sees.

    kind: ``table`` (a numeric block, embedded categories, text token ids), ``vector`` (a flat float array),
    ``image`` (``(C, H, W)``), ``sequence`` (``(T, F)`` with lengths), ``tokens`` (a language model's ids) or
    ``generation``.
    input_names: the order of the tensors passed to ``model.forward(*inputs)``.
    outputs: one entry per target, in the order of the output columns: ``{"name", "task", "width"}``
    (classification targets add ``classes``). ``n_outputs`` is their total width.
    texts: one entry per text column of a table: ``{"name", "vocab_size", "max_length", "tokenizer"}`` (and,
        with the pretrained tokenizer, ``weights_sha256``: the encoder weights the run starts from).
    """

    kind: str
    task: str
    input_names: list[str]
    n_outputs: int
    n_numeric: int = 0
    embeddings: list[tuple[int, int]] = field(default_factory=list)  # (cardinality incl. unknown, dim)
    input_shape: list[int] | None = None  # per-sample shape for arrays, e.g. [C, H, W]
    classes: list[Any] | None = None
    feature_names: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    texts: list[dict[str, Any]] = field(default_factory=list)
    outputs: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["embeddings"] = [list(e) for e in self.embeddings]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FeatureSpec:
        d = dict(d)
        d["embeddings"] = [tuple(e) for e in d.get("embeddings", [])]
        return cls(**d)

    @property
    def multi_target(self) -> bool:
        return len(self.outputs) > 1


@dataclass
class Decoded:
    """One target's predictions: labels or values, and class probabilities for a classification target."""

    name: str
    predictions: np.ndarray
    probabilities: np.ndarray | None = None
    classes: list[Any] | None = None


@dataclass
class Split:
    """One split's tensors: ``inputs`` in ``spec.input_names`` order, and the encoded target(s)."""

    inputs: tuple[torch.Tensor, ...]
    target: torch.Tensor
    index: np.ndarray  # row positions in the source

    @property
    def tensors(self) -> tuple[torch.Tensor, ...]:
        return (*self.inputs, self.target)

    def __len__(self) -> int:
        return len(self.target)


def to_split(inputs: tuple[np.ndarray, ...], target: np.ndarray, index: np.ndarray) -> Split:
    """A split from numpy arrays (made contiguous, shared with torch without a copy)."""
    return Split(tuple(torch.from_numpy(np.ascontiguousarray(a)) for a in inputs),
                 torch.from_numpy(np.ascontiguousarray(target)), index=index)


@dataclass
class PreparedData:
    spec: FeatureSpec
    preprocessor: Any
    train: Split
    val: Split
    test: Split
    raw: Any  # the source as read: a DataFrame, ArrayData or a TextCorpus
    notices: list[str] = field(default_factory=list)
