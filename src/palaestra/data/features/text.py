"""``text``: running text. Lower-cased word tokens; a vocabulary of the ``data.max_vocab`` most frequent
training words (id 0 is padding, 1 an unknown word); each text truncated or padded to ``data.max_length``
tokens. The model reads the ids with the encoder ``model.text_encoder`` names (bag, gru, transformer)."""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

import numpy as np
import pandas as pd

from palaestra.data.features.base import FitOptions, InputFeature, is_missing

PAD, UNKNOWN = 0, 1
WORD = re.compile(r"\w+|[^\w\s]")
MIN_WORDS = 4  # a column averaging this many words per value is running text, not a label or an identifier
# Shorter phrases (titles, product names) are text too when most of them are distinct: as categories they would
# be identifiers, and their words still carry meaning.
MIN_WORDS_DISTINCT = 2


def tokenize(text: str) -> list[str]:
    return WORD.findall(text.lower())


def mean_words(series: pd.Series) -> float:
    """Average number of whitespace-separated words per present value (0 for numbers)."""
    if pd.api.types.is_numeric_dtype(series) or pd.api.types.is_bool_dtype(series):
        return 0.0
    present = series[~is_missing(series)].astype(str)
    if present.empty:
        return 0.0
    return float(present.str.count(r"\S+").mean())


class TextFeature(InputFeature):
    type = "text"
    slot = "own"

    def __init__(self, name: str, vocab: list[str], max_length: int):
        super().__init__(name)
        self.vocab, self.max_length = vocab, max_length
        self._ids = {w: i + 2 for i, w in enumerate(vocab)}

    @classmethod
    def looks_like(cls, series: pd.Series) -> bool:
        words = mean_words(series)
        if words >= MIN_WORDS:
            return True
        present = series[~is_missing(series)]
        return words >= MIN_WORDS_DISTINCT and len(present) >= 20 and present.nunique() / len(present) > 0.5

    @classmethod
    def fit(cls, name: str, series: pd.Series, options: FitOptions) -> TextFeature:
        texts = series.where(~is_missing(series), "").astype(str)
        counts = Counter(w for t in texts for w in tokenize(t))
        vocab = [w for w, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[: options.max_vocab]]
        # As long as the training texts need (their 95th percentile), at most data.max_length.
        lengths = np.array([len(tokenize(t)) for t in texts]) if len(texts) else np.ones(1)
        length = int(min(options.max_length, max(1, np.ceil(np.quantile(lengths, 0.95)))))
        return cls(name, vocab, length)

    @property
    def vocab_size(self) -> int:
        return len(self.vocab) + 2

    def transform(self, series: pd.Series) -> np.ndarray:
        """``(N, max_length)`` int64 ids; an empty or missing text is one unknown token."""
        texts = series.where(~is_missing(series), "").astype(str)
        ids = np.zeros((len(texts), self.max_length), np.int64)
        for row, text in enumerate(texts):
            tokens = [self._ids.get(w, UNKNOWN) for w in tokenize(text)[: self.max_length]] or [UNKNOWN]
            ids[row, : len(tokens)] = tokens
        return ids

    def describe(self) -> str:
        return f"text ({len(self.vocab)} words, up to {self.max_length} tokens)"

    def state(self) -> dict[str, Any]:
        return {"vocab": self.vocab, "max_length": self.max_length}
