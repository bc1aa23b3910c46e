"""The feature spec: the plain object the data stage hands the model stage.

A model is built from a ``FeatureSpec`` alone, so any model family can be paired with any data that
produces one, and a saved run rebuilds its model from ``preprocess.json``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class FeatureSpec:
    """What the model sees.

    kind: ``table`` (numeric block + categorical indices), ``vector`` (a flat float array),
    ``image`` (``(C, H, W)``), or a kind a later stage registers (``sequence``, ``text``...).
    input_names: the order of the tensors passed to ``model.forward(*inputs)``.
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

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["embeddings"] = [list(e) for e in self.embeddings]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FeatureSpec:
        d = dict(d)
        d["embeddings"] = [tuple(e) for e in d.get("embeddings", [])]
        return cls(**d)
