"""``text``: running text, as token ids padded with 0 to a fixed length (the 95th percentile of the training
texts' lengths, at most ``data.max_length``).

Two tokenizers (``data.tokenizer``): ``words``, lower-cased word tokens and a vocabulary of the
``data.max_vocab`` most frequent training words (id 1 is an unknown word); or ``minilm``, the WordPiece
tokenizer of the pretrained MiniLM encoder (its own vocabulary, [CLS] ... [SEP]; the tokenizer file's sha256
is part of the fitted state). The model reads the ids with the encoder ``model.text_encoder`` names.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

import numpy as np
import pandas as pd

from palaestra import pretrained
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

    def __init__(self, name: str, vocab: list[str], max_length: int, tokenizer: str = "words",
                 tokenizer_sha256: str | None = None, weights_sha256: str | None = None):
        super().__init__(name)
        self.vocab, self.max_length = vocab, max_length
        # With the pretrained tokenizer: the sha256 of its file and of the encoder weights it belongs with.
        self.tokenizer, self.tokenizer_sha256, self.weights_sha256 = tokenizer, tokenizer_sha256, weights_sha256
        self._ids = {w: i + 2 for i, w in enumerate(vocab)}
        self._wordpiece = pretrained.load_tokenizer(tokenizer_sha256) if tokenizer == pretrained.MINILM else None

    @classmethod
    def looks_like(cls, series: pd.Series) -> bool:
        words = mean_words(series)
        if words >= MIN_WORDS:
            return True
        present = series[~is_missing(series)]
        return words >= MIN_WORDS_DISTINCT and len(present) >= 20 and present.nunique() / len(present) > 0.5

    @classmethod
    def fit(cls, name: str, series: pd.Series, options: FitOptions) -> TextFeature:
        texts = _texts(series)
        if options.tokenizer == pretrained.MINILM:
            sha = pretrained.file_sha256(pretrained.verified("tokenizer.json", None))
            weights = pretrained.file_sha256(pretrained.verified("model.safetensors", None))
            tokens = [e.ids for e in pretrained.load_tokenizer(sha).encode_batch(texts)]
            cap, vocab = min(options.max_length, pretrained.MAX_POSITIONS), []
        else:
            sha, weights, tokens = None, None, [tokenize(t) for t in texts]
            counts = Counter(w for t in tokens for w in t)
            vocab = [w for w, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[: options.max_vocab]]
            cap = options.max_length
        # As long as the training texts need (their 95th percentile), at most data.max_length.
        lengths = np.array([len(t) for t in tokens]) if tokens else np.ones(1)
        length = int(min(cap, max(1, np.ceil(np.quantile(lengths, 0.95)))))
        return cls(name, vocab, length, options.tokenizer, sha, weights)

    @property
    def vocab_size(self) -> int:
        if self._wordpiece is not None:
            return self._wordpiece.get_vocab_size()
        return len(self.vocab) + 2

    def transform(self, series: pd.Series) -> np.ndarray:
        """``(N, max_length)`` int64 ids; with words, an empty or missing text is one unknown token."""
        texts = _texts(series)
        ids = np.zeros((len(texts), self.max_length), np.int64)
        if self._wordpiece is not None:
            for row, encoding in enumerate(self._wordpiece.encode_batch(texts)):
                tokens = encoding.ids
                if len(tokens) > self.max_length:  # cut, keeping the closing [SEP] the encoder was trained with
                    tokens = tokens[: self.max_length - 1] + tokens[-1:]
                ids[row, : len(tokens)] = tokens
            return ids
        for row, text in enumerate(texts):
            tokens = [self._ids.get(w, UNKNOWN) for w in tokenize(text)[: self.max_length]] or [UNKNOWN]
            ids[row, : len(tokens)] = tokens
        return ids

    def describe(self) -> str:
        if self._wordpiece is not None:
            return f"text (MiniLM WordPiece, up to {self.max_length} tokens)"
        return f"text ({len(self.vocab)} words, up to {self.max_length} tokens)"

    def state(self) -> dict[str, Any]:
        if self._wordpiece is not None:
            return {"vocab": [], "max_length": self.max_length, "tokenizer": self.tokenizer,
                    "tokenizer_sha256": self.tokenizer_sha256, "weights_sha256": self.weights_sha256}
        return {"vocab": self.vocab, "max_length": self.max_length}


def _texts(series: pd.Series) -> list[str]:
    return series.where(~is_missing(series), "").astype(str).tolist()
