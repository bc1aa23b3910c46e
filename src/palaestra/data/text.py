"""The character language model's data (``task: language_model``): a ``.txt`` file.

The text is split by position (the first ``split.train`` of it trains, then val, then test), the character
vocabulary comes from the training part (index 0 is the unknown character), and each example is
``data.max_length`` characters with the next characters as targets. (A text *column* of a table is an input
feature: ``palaestra.data.features.text``.)
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
import torch

from palaestra.config import DataConfig
from palaestra.data.raw import TextCorpus
from palaestra.data.sources import read_text
from palaestra.data.spec import FeatureSpec, PreparedData, Split
from palaestra.errors import DataError

__all__ = ["CharPreprocessor", "TextCorpus", "prepare", "read_text", "unigram_entropy"]

UNKNOWN = 0


class CharPreprocessor:
    """Characters <-> ids. ``vocab[i]`` is the character with id ``i + 1``; id 0 is an unknown character."""

    kind = "chars"
    task = "language_model"
    classes = None
    target = "next character"

    def __init__(self, vocab: list[str], context: int, unigram: list[float]):
        self.vocab, self.context, self.unigram = vocab, context, unigram
        self._ids = {c: i + 1 for i, c in enumerate(vocab)}

    @classmethod
    def fit(cls, text: str, context: int) -> CharPreprocessor:
        counts = Counter(text)
        vocab = sorted(counts, key=lambda c: (-counts[c], c))
        total = sum(counts.values())
        # The unigram model (with one pseudo-count for the unknown id) is the baseline a language model must beat.
        unigram = [1.0 / (total + 1)] + [counts[c] / (total + 1) for c in vocab]
        return cls(vocab, context, unigram)

    @property
    def vocab_size(self) -> int:
        return len(self.vocab) + 1

    def encode(self, text: str) -> np.ndarray:
        return np.fromiter((self._ids.get(c, UNKNOWN) for c in text), dtype=np.int64, count=len(text))

    def decode(self, ids: Any) -> str:
        return "".join(self.vocab[i - 1] if 0 < i <= len(self.vocab) else "\ufffd" for i in np.asarray(ids).tolist())

    def examples(self, ids: np.ndarray, stride: int) -> tuple[np.ndarray, np.ndarray]:
        """``(x, y)`` of shape ``(N, context)``: y is x shifted by one character."""
        n = len(ids) - 1
        if n < 1:
            return np.zeros((0, self.context), np.int64), np.zeros((0, self.context), np.int64)
        length = min(self.context, n)
        starts = np.arange(0, n - length + 1, stride)
        idx = starts[:, None] + np.arange(length)[None, :]
        return ids[idx], ids[idx + 1]

    def inputs(self, data: Any) -> tuple[np.ndarray]:
        raise DataError("a language model does not predict rows: sample text with palaestra generate RUN --prompt TEXT")

    def baseline_metrics(self, split: Any) -> dict[str, float]:
        """``unigram_bits_per_char``: the training unigram model's cross-entropy on the same characters."""
        if len(split) == 0:
            return {}
        p = torch.tensor(self.unigram, dtype=torch.float64)
        return {"unigram_bits_per_char": float(-torch.log2(p[split.target.flatten()]).mean())}

    def spec(self, embedding_dim: int | None = None) -> FeatureSpec:
        return FeatureSpec(kind="tokens", task="language_model", input_names=["x"], n_outputs=self.vocab_size,
                           input_shape=[self.context], extra={"vocab_size": self.vocab_size})

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "vocab": self.vocab, "context": self.context, "unigram": self.unigram}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CharPreprocessor:
        return cls(d["vocab"], d["context"], d["unigram"])


def unigram_entropy(text: str) -> float:
    """Bits per character of the text's own character distribution."""
    counts = np.array(list(Counter(text).values()), dtype=np.float64)
    p = counts / counts.sum()
    return float(-(p * np.log2(p)).sum())


def prepare(cfg: DataConfig, raw: Any, seed: int, notices: list[str]) -> PreparedData:
    """Split the text by position, fit the character vocabulary on the training part, cut examples."""
    if not isinstance(raw, TextCorpus):
        raise DataError("a language model learns from a .txt file")
    text = raw.text
    s = cfg.split
    n_tr, n_va = int(len(text) * s.train), int(len(text) * s.val)
    parts = (text[:n_tr], text[n_tr:n_tr + n_va], text[n_tr + n_va:])
    if len(parts[0]) < 2 * cfg.max_length:
        raise DataError(f"the training part holds {len(parts[0])} characters: too few for data.max_length="
                        f"{cfg.max_length} (use a longer text or a smaller max_length)")
    pre = CharPreprocessor.fit(parts[0], cfg.max_length)
    splits = []
    for i, part in enumerate(parts):
        # Training examples overlap by half a context; val/test cover each character once.
        stride = max(1, cfg.max_length // 2) if i == 0 else cfg.max_length
        x, y = pre.examples(pre.encode(part), stride)
        splits.append(Split((torch.from_numpy(x),), torch.from_numpy(y), index=np.arange(len(x))))
    unknown = int((pre.encode(parts[2]) == UNKNOWN).sum())
    if unknown:
        notices.append(f"{unknown} test characters do not occur in the training part (read as unknown)")
    return PreparedData(pre.spec(), pre, *splits, raw=raw, notices=notices)


