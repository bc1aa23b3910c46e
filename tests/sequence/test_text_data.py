"""Text: character vocabulary and next-character targets; word vocabulary from the training split."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from palaestra.config import DataConfig
from palaestra.data.prepare import prepare_data
from palaestra.data.registry import preprocessor_from_dict
from palaestra.data.text import CharPreprocessor, read_text, unigram_entropy
from palaestra.errors import DataError


def test_characters_targets_and_unknown(tmp_path):
    text = "abracadabra " * 40 + "xyz"  # x, y, z only in the test part
    (tmp_path / "t.txt").write_text(text, encoding="utf-8")
    data = prepare_data(DataConfig(source=str(tmp_path / "t.txt"), max_length=8,
                                   split={"train": 0.8, "val": 0.1, "test": 0.1}), 0)
    pre = data.preprocessor
    assert isinstance(pre, CharPreprocessor) and set(pre.vocab) == set("abrcd ")
    x, y = data.train.inputs[0], data.train.target
    assert x.shape[1] == 8 and np.array_equal(x[0, 1:].numpy(), y[0, :-1].numpy())  # y is x shifted by one
    assert pre.decode(x[0].numpy()) == text[:8]
    assert pre.encode("xa").tolist() == [0, pre.encode("a")[0]]  # unseen -> 0
    assert data.spec.task == "language_model" and data.spec.extra["vocab_size"] == len(pre.vocab) + 1
    assert any("do not occur" in n for n in data.notices)
    again = preprocessor_from_dict(json.loads(json.dumps(pre.to_dict())))
    assert again.encode("cab").tolist() == pre.encode("cab").tolist()
    # the unigram baseline on the training text equals its entropy (up to the unknown pseudo-count)
    assert pre.baseline_metrics(data.train)["unigram_bits_per_char"] == pytest.approx(unigram_entropy(text[:400]), abs=0.05)


def test_text_file_errors(tmp_path):
    bad = tmp_path / "b.txt"
    bad.write_bytes(b"\xff\xfe\x00a")
    with pytest.raises(DataError, match="UTF-8"):
        read_text(bad)
    short = tmp_path / "s.txt"
    short.write_text("hello world")
    with pytest.raises(DataError, match="too few"):
        prepare_data(DataConfig(source=str(short)), 0)


def test_text_classification_vocabulary_from_train_only():
    rng = np.random.default_rng(0)
    good, bad = ["great fun film", "loved it a lot", "wonderful acting here"], ["boring dull film", "hated it a lot", "awful acting here"]
    rows = [(t + " " + " ".join(rng.choice(["the", "and", "movie"], 3)), lab) for _ in range(20)
            for lab, ts in (("pos", good), ("neg", bad)) for t in ts]
    df = pd.DataFrame(rows, columns=["review", "label"])
    df.loc[0, "review"] = "zzzunique " + df.loc[0, "review"]
    data = prepare_data(DataConfig(source="r.csv", target="label", max_length=6), 0, source=df)
    pre = data.preprocessor
    text = pre.features[0]
    assert text.type == "text" and data.spec.kind == "table" and data.spec.classes == ["neg", "pos"]
    assert data.spec.input_names == ["numeric", "categorical", "text:review"]
    assert ("zzzunique" in text.vocab) == (0 in data.train.index)
    _, _, ids = pre.inputs(pd.DataFrame({"review": ["great unseenword film " * 5, ""]}))
    # padded with 0, unknown words (and an empty text) are id 1
    assert ids.shape == (2, 6) and (ids[0] != 0).sum() == 6 and ids[0, 1] == 1 and ids[1].tolist() == [1, 0, 0, 0, 0, 0]
