"""``category``: one of a set of labels. Few levels: one-hot columns; more than ``data.embedding_threshold``:
a learned embedding. Unseen labels are all-zero (one-hot) or the unknown index 0 (embedding); missing values
are a level of their own."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from palaestra.data.features.base import MISSING, FitOptions, InputFeature, as_text, is_missing, jsonable


def category_text(series: pd.Series) -> np.ndarray:
    """Values as stripped text, missing ones as the ``__missing__`` level."""
    return as_text(series).where(~is_missing(series), MISSING).astype(object).to_numpy()


class CategoryFeature(InputFeature):
    type = "category"

    def __init__(self, name: str, categories: list[Any], embed: bool = False, freqs: list[float] | None = None):
        super().__init__(name)
        self.categories, self.embed, self.freqs = categories, embed, freqs or []
        self.slot = "categorical" if embed else "numeric"
        self._lookup = {str(c): i for i, c in enumerate(categories)}

    @classmethod
    def fit(cls, name: str, series: pd.Series, options: FitOptions) -> CategoryFeature:
        counts = pd.Series(category_text(series)).value_counts()
        cats = [jsonable(c) for c in counts.index]
        return cls(name, cats, embed=len(cats) > options.embedding_threshold,
                   freqs=[float(c) for c in counts.to_numpy() / counts.sum()])

    def codes(self, series: pd.Series) -> np.ndarray:
        """Index of each value's level; -1 where unseen in training."""
        return np.array([self._lookup.get(str(t), -1) for t in category_text(series)], dtype=np.int64)

    def transform(self, series: pd.Series) -> np.ndarray:
        codes = self.codes(series)
        if self.embed:
            return (codes + 1)[:, None]  # 0 is the unknown level
        onehot = np.zeros((len(codes), len(self.categories)))
        known = codes >= 0
        onehot[np.nonzero(known)[0], codes[known]] = 1.0  # unseen: all zeros
        return onehot

    @property
    def cardinality(self) -> int:
        """Embedding rows: every level plus the unknown one."""
        return len(self.categories) + 1

    def columns(self) -> list[str]:
        return [] if self.embed else [f"{self.name}={v}" for v in self.categories]

    def describe(self) -> str:
        how = "embedding" if self.embed else "one-hot"
        return f"category ({len(self.categories)} levels, {how})"

    def state(self) -> dict[str, Any]:
        return {"categories": self.categories, "embed": self.embed, "freqs": self.freqs}
