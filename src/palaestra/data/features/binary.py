"""``binary``: true/false, yes/no, or a boolean column; read as 1/0 and treated like a number."""

from __future__ import annotations

import numpy as np
import pandas as pd

from palaestra.data.features.base import FitOptions, boolean_view
from palaestra.data.features.numeric import NumericFeature


class BinaryFeature(NumericFeature):
    type = "binary"

    @classmethod
    def values(cls, name: str, series: pd.Series) -> pd.Series:
        values = boolean_view(series)
        # At predict time a 0/1 column may arrive as numbers: read it as such.
        return values if values is not None else NumericFeature.values(name, series)

    def describe(self) -> str:
        return self.type

    @classmethod
    def encoding_for(cls, finite: np.ndarray, options: FitOptions) -> tuple[str, list[float], list[float]]:
        return "standard", [], []  # two values: nothing for quantiles to spread
