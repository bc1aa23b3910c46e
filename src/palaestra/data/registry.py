"""Every kind of fitted preprocessing a run directory can hold, by the ``kind`` saved in ``preprocess.json``."""

from __future__ import annotations

from typing import Any

from palaestra.data.forecast import ForecastPreprocessor
from palaestra.data.generation import GenerationPreprocessor
from palaestra.data.preprocess import FeaturePreprocessor
from palaestra.data.text import CharPreprocessor
from palaestra.errors import DataError

RETIRED = ("table", "array", "sequence", "words")  # before typed features (issue 13)
PREPROCESSORS: dict[str, type] = {cls.kind: cls for cls in (FeaturePreprocessor, CharPreprocessor,
                                                            ForecastPreprocessor, GenerationPreprocessor)}


def preprocessor_from_dict(d: dict[str, Any]) -> Any:
    """Rebuild a fitted preprocessor of any registered kind from its ``to_dict()``."""
    kind = d.get("kind") if isinstance(d, dict) else None
    if kind in RETIRED:
        raise DataError(f"preprocess.json was written by an earlier Palaestra (preprocessing kind {kind!r}, now typed "
                        f"features): retrain the run with its config.yaml")
    if kind not in PREPROCESSORS:
        raise DataError(f"preprocess.json names an unknown preprocessing kind {kind!r}")
    return PREPROCESSORS[kind].from_dict(d)
