"""``binary``: true/false, yes/no, or a boolean column; read as 1/0 and treated like a number."""

from __future__ import annotations

import pandas as pd

from palaestra.data.features.base import boolean_view
from palaestra.data.features.numeric import NumericFeature


class BinaryFeature(NumericFeature):
    type = "binary"

    @classmethod
    def values(cls, name: str, series: pd.Series) -> pd.Series:
        values = boolean_view(series)
        # At predict time a 0/1 column may arrive as numbers: read it as such.
        return values if values is not None else NumericFeature.values(name, series)
