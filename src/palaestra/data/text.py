"""Text: a ``.txt`` file for a character-level language model, and a text column for text classification.

Language model (``task: language_model``): the text is split by position (the first ``split.train`` of it
trains, then val, then test), the character vocabulary comes from the training part (index 0 is the unknown
character), and each example is ``data.max_length`` characters with the next characters as targets.

Text classification: a CSV with a text column (``data.text_column``, or the column with the longest texts):
lower-cased word tokens, a vocabulary of the ``data.max_vocab`` most frequent training words (0 padding,
1 unknown), truncated or padded to ``data.max_length`` tokens.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from palaestra.config import DataConfig
from palaestra.data.preprocess import PREPROCESSORS, KeywordState, _is_na_token, _jsonable, label_codes
from palaestra.data.spec import FeatureSpec
from palaestra.errors import DataError

UNKNOWN, PAD = 0, 0
WORD = re.compile(r"\w+|[^\w\s]")


@dataclass
class TextCorpus:
    """The contents of a ``.txt`` file."""

    text: str
    name: str = "text"


def read_text(path: Path) -> TextCorpus:
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError:
        raise DataError(f"{path} is not UTF-8 text (re-save it as UTF-8)") from None
    if "\x00" in text:
        raise DataError(f"{path} contains NUL bytes: it looks like a binary file, not text")
    if not text.strip():
        raise DataError(f"{path} holds no text")
    return TextCorpus(text, path.stem)


# --- character language model ---------------------------------------------------------------------------


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


def _prepare_language_model(cfg: DataConfig, raw: TextCorpus, notices: list[str]):
    from palaestra.data.prepare import PreparedData, Split

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


# --- text classification ----------------------------------------------------------------------------------


def tokenize(text: str) -> list[str]:
    return WORD.findall(text.lower())


def detect_text_column(df: pd.DataFrame, target: str) -> str | None:
    """The non-numeric column with the most words per value, if it holds running text (>= 4 words on average)."""
    best, best_words = None, 0.0
    for name in df.columns:
        if name == target or pd.api.types.is_numeric_dtype(df[name]):
            continue
        words = df[name].dropna().astype(str).str.split().str.len().mean()
        if words and words >= 4 and words > best_words:
            best, best_words = str(name), float(words)
    return best


class WordPreprocessor(KeywordState):
    """Texts -> ``(ids (N, max_length) int64, lengths (N,))``; labels -> class codes."""

    kind = "words"
    task = "classification"
    accepts_frames = True

    def __init__(self, text_column: str, target: str, vocab: list[str], max_length: int, classes: list[Any]):
        self.text_column, self.target, self.vocab, self.max_length = text_column, target, vocab, max_length
        self.classes = classes
        self._ids = {w: i + 2 for i, w in enumerate(vocab)}  # 0 padding, 1 unknown

    @classmethod
    def fit(cls, texts: pd.Series, labels: pd.Series, text_column: str, target: str, max_length: int,
            max_vocab: int) -> WordPreprocessor:
        counts = Counter(w for t in texts.fillna("").astype(str) for w in tokenize(t))
        vocab = [w for w, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:max_vocab]]
        classes = sorted({_jsonable(v) for v in labels}, key=lambda v: (str(type(v)), v))
        if len(classes) < 2:
            raise DataError(f"target '{target}' has only one class in the training split: nothing to learn")
        return cls(text_column, target, vocab, max_length, classes)

    def inputs(self, df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        if not isinstance(df, pd.DataFrame) or self.text_column not in df.columns:
            raise DataError(f"give rows with the text column '{self.text_column}'")
        texts = df[self.text_column].where(~_is_na_token(df[self.text_column]), "").astype(str)
        ids = np.zeros((len(texts), self.max_length), np.int64)
        lengths = np.ones(len(texts), np.int64)
        for row, text in enumerate(texts):
            tokens = [self._ids.get(w, 1) for w in tokenize(text)[: self.max_length]] or [1]
            ids[row, : len(tokens)] = tokens
            lengths[row] = len(tokens)
        return ids, lengths

    def encode_target(self, y: Any) -> np.ndarray:
        codes = label_codes(y, self.classes)
        if (codes < 0).any():
            raise DataError(f"target '{self.target}' has labels not seen in training")
        return codes

    def decode_target(self, values: np.ndarray) -> np.ndarray:
        return np.asarray(self.classes, dtype=object)[values]

    def spec(self, embedding_dim: int | None = None) -> FeatureSpec:
        return FeatureSpec(kind="tokens", task="classification", input_names=["x", "lengths"],
                           n_outputs=len(self.classes), input_shape=[self.max_length], classes=self.classes,
                           extra={"vocab_size": len(self.vocab) + 2}, feature_names=[self.text_column])

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "text_column": self.text_column, "target": self.target, "vocab": self.vocab,
                "max_length": self.max_length, "classes": self.classes}



def _prepare_text_classification(cfg: DataConfig, raw: pd.DataFrame, seed: int, notices: list[str]):
    from palaestra.data.prepare import PreparedData, Split, _to_tensors, resolve_target
    from palaestra.data.splits import split_indices

    target = resolve_target(cfg, raw)
    column = cfg.text_column or detect_text_column(raw, target)
    if column is None or column not in raw.columns:
        raise DataError(f"text column '{column}' not found; columns: {', '.join(map(str, raw.columns[:20]))}")
    raw = raw.loc[~_is_na_token(raw[target]).to_numpy()].reset_index(drop=True)
    others = [c for c in raw.columns if c not in (column, target)]
    if others:
        notices.append(f"text classification reads '{column}' only; left out: {', '.join(map(str, others[:10]))}")
    y = raw[target].astype(str).to_numpy()
    if len(raw) < 10:
        raise DataError(f"only {len(raw)} rows with a target: too few to split into train, val and test")
    s = cfg.split
    tr, va, te = split_indices(len(raw), y, s.train, s.val, s.test, seed, stratify=s.stratify)
    pre = WordPreprocessor.fit(raw[column].iloc[tr], raw[target].iloc[tr], column, target, cfg.max_length, cfg.max_vocab)
    splits = []
    for idx in (tr, va, te):
        part = raw.iloc[idx]
        splits.append(Split(*_to_tensors(pre, pre.inputs(part), pre.encode_target(part[target])), index=idx))
    return PreparedData(pre.spec(), pre, *splits, raw=raw, notices=notices)


PREPROCESSORS[CharPreprocessor.kind] = CharPreprocessor
PREPROCESSORS[WordPreprocessor.kind] = WordPreprocessor


def claims(cfg: DataConfig, raw: Any) -> bool:
    """A ``.txt`` file, or a table whose text column is named (``data.text_column``) or found."""
    if isinstance(raw, TextCorpus):
        return True
    if isinstance(raw, pd.DataFrame) and cfg.task in ("auto", "classification"):
        if cfg.text_column is not None:
            return True
        # Found only in small tables (a text, its label, perhaps an id): a wide table stays a table.
        target = cfg.target
        return (target is not None and target in raw.columns and raw.shape[1] <= 4
                and detect_text_column(raw, target) is not None)
    return False


def prepare(cfg: DataConfig, raw: Any, seed: int, notices: list[str]):
    if isinstance(raw, TextCorpus):
        if cfg.task not in ("auto", "language_model"):
            raise DataError(f"a .txt file trains a language model; task '{cfg.task}' needs a table or arrays")
        return _prepare_language_model(cfg, raw, notices)
    return _prepare_text_classification(cfg, raw, seed, notices)

