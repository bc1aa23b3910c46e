"""Each sequence, text and generative family learns on a small problem, end to end through ``train``.

One cheap learning test per family (seconds each); the real-data results (mnist1d, sunspots, a text corpus,
digits) are measured outside the suite and reported in the issue.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import yaml
from testkit import tiny

from palaestra.cli import main as cli_main
from palaestra.errors import DataError
from palaestra.pipeline import train
from palaestra.runs import Run


def _ramps(path, n=160, t=12, seed=0):
    """Class 0 rises, class 1 falls; some sequences are shorter (NaN padding)."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    slope = np.where(y == 0, 1.0, -1.0)[:, None]
    x = slope * np.linspace(-1, 1, t)[None, :] + rng.normal(0, 0.3, (n, t))
    x[::5, 8:] = np.nan
    np.savez(path, x=x.astype(np.float32), y=y)
    return path


@pytest.mark.parametrize("family", ["gru", "lstm", "rnn", "transformer", "cnn"])
def test_sequence_families_learn(family, tmp_path):
    data = _ramps(tmp_path / "ramps.npz")
    extra = {"sequence": True} if family == "cnn" else {}
    cfg = tiny(str(data), epochs=8, data=extra, train={"batch_size": 16},
               model={"family": family, "hidden_size": 16, "layers": 1, "d_model": 16, "heads": 2, "channels": [8],
                      "dropout": 0.0}, optimizer={"lr": 0.01})
    run = train(cfg, quiet=True)
    assert run.spec.kind == "sequence"
    assert run.metrics["test"]["accuracy"] >= 0.9, run.metrics["test"]
    recurrent = family in ("gru", "lstm", "rnn")
    assert run.config.train.grad_clip == (1.0 if recurrent else None)  # clipping is on for recurrent models
    assert all(h["grad_norm"] > 0 for h in run.history)


def test_sequence_run_round_trip(tmp_path):
    data = _ramps(tmp_path / "ramps.npz", n=60)
    cfg = tiny(str(data), epochs=2, model={"family": "gru", "hidden_size": 8, "layers": 1})
    run = train(cfg, out=tmp_path / "run", quiet=True)
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert saved["train"]["grad_clip"] == 1.0 and saved["model"]["family"] == "gru"
    assert "grad_norm" in pd.read_csv(tmp_path / "run" / "history.csv").columns
    loaded = Run.load(tmp_path / "run")
    frame = loaded.predict(str(data))
    assert len(frame) == 60 and {"prediction", "prob_0", "prob_1"} <= set(frame.columns)
    assert np.allclose(loaded.outputs(str(data)), run.outputs(str(data)), atol=1e-5)


def test_forecast_beats_persistence_and_predicts_past_the_end(tmp_path, capsys):
    rng = np.random.default_rng(0)
    t = np.arange(240)
    df = pd.DataFrame({"date": pd.date_range("2000-01-01", periods=240, freq="D").astype(str),
                       "load": 10 + 5 * np.sin(2 * np.pi * t / 12) + rng.normal(0, 0.3, 240)})
    df.to_csv(tmp_path / "load.csv", index=False)
    cfg = tiny(str(tmp_path / "load.csv"), epochs=25, data={"task": "forecast", "window": 12, "target": "load"},
               model={"family": "gru", "hidden_size": 16, "layers": 1, "dropout": 0.0}, optimizer={"lr": 0.01},
               train={"batch_size": 16})
    train(cfg, out=tmp_path / "run", quiet=True)
    test = json.loads((tmp_path / "run" / "metrics.json").read_text())["test"]
    assert {"mae", "rmse", "naive_mae"} <= set(test)
    assert test["mae"] < 0.5 * test["naive_mae"], test
    report = (tmp_path / "run" / "report.html").read_text()
    assert "Forecast vs actual (test span)" in report and 'alt="forecast vs actual"' in report
    loaded = Run.load(tmp_path / "run")
    pred = loaded.predict(str(tmp_path / "load.csv"))
    assert len(pred) == 240 - 12 + 1  # one forecast per complete window, the last beyond the data
    assert np.allclose(pred["prediction"].to_numpy()[:-1], df["load"].to_numpy()[12:], atol=2.0)
    again = loaded.evaluate(str(tmp_path / "load.csv"))  # the whole series: train, val and test windows
    assert again["rows"] == 240 - 12 and again["mae"] < again["naive_mae"]
    # generate is for generative runs only: a plain message, exit code 2
    assert cli_main(["generate", str(tmp_path / "run"), "--n", "3", "--out", str(tmp_path / "x.npz")]) == 2
    assert "generate needs" in capsys.readouterr().err


def test_language_model_beats_unigram_and_generates(tmp_path, capsys):
    rng = np.random.default_rng(0)
    words = ["the cat sat on the mat. ", "a dog ran in the fog. ", "my hat is red. "]
    text = "".join(rng.choice(words) for _ in range(300))
    (tmp_path / "corpus.txt").write_text(text, encoding="utf-8")
    cfg = tiny(str(tmp_path / "corpus.txt"), epochs=4, data={"max_length": 32},
               model={"family": "transformer", "d_model": 32, "heads": 2, "layers": 1, "dropout": 0.0},
               optimizer={"lr": 0.005}, train={"batch_size": 16})
    run = train(cfg, out=tmp_path / "run", quiet=True)
    test = run.metrics["test"]
    assert run.spec.task == "language_model"
    assert test["bits_per_char"] < 0.7 * test["unigram_bits_per_char"], test
    assert "A sample of generated text" in (tmp_path / "run" / "report.html").read_text()
    assert cli_main(["generate", str(tmp_path / "run"), "--prompt", "the ", "--length", "30", "--temperature", "0.5",
                     "--top-k", "5"]) == 0
    printed = capsys.readouterr().out.rstrip("\n")
    assert printed.startswith("the ") and len(printed) == 34
    assert set(printed) <= set(text)
    for extreme in ("1e-308", "1e308"):  # any finite temperature samples (greedy-like, uniform-like), no NaN
        assert cli_main(["generate", str(tmp_path / "run"), "--prompt", "the ", "--length", "5",
                         "--temperature", extreme]) == 0
        assert len(capsys.readouterr().out.rstrip("\n")) == 9
    with pytest.raises(DataError, match="generate"):
        Run.load(tmp_path / "run").predict(str(tmp_path / "corpus.txt"))


def test_gan_trains_and_generates_like_the_training_images(tmp_path, capsys):
    cfg = tiny("digits", epochs=2, model={"family": "gan", "channels": [16], "hidden": [32]})
    train(cfg, out=tmp_path / "run", quiet=True)
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert saved["data"]["task"] == "generation" and saved["optimizer"]["betas"] == [0.5, 0.999]
    history = pd.read_csv(tmp_path / "run" / "history.csv")
    assert {"d_loss", "g_loss"} <= set(history.columns) and len(history) == 2
    assert "GAN: losses and samples" in (tmp_path / "run" / "report.html").read_text()
    out = tmp_path / "samples.npz"
    assert cli_main(["generate", str(tmp_path / "run"), "--n", "7", "--out", str(out)]) == 0
    x = np.load(out)["x"]
    assert x.shape == (7, 8, 8) and x.min() >= 0.0 and x.max() <= 16.0  # the digits' shape and 0..16 scale


def test_text_classification_learns_from_a_text_column(tmp_path):
    rng = np.random.default_rng(1)
    pos, neg = ["great", "wonderful", "loved", "superb"], ["awful", "boring", "hated", "dull"]
    filler = ["the", "film", "was", "and", "acting", "plot", "really"]
    rows = []
    for i in range(160):
        label = "pos" if i % 2 else "neg"
        words = list(rng.choice(filler, 6)) + [rng.choice(pos if label == "pos" else neg)]
        rng.shuffle(words)
        rows.append({"review": " ".join(words), "label": label})
    df = pd.DataFrame(rows)
    cfg = tiny("reviews.csv", epochs=10, data={"target": "label", "max_length": 12},
               model={"family": "gru", "hidden_size": 16, "layers": 1, "embedding_dim": 8, "dropout": 0.0},
               optimizer={"lr": 0.02}, train={"batch_size": 16})
    run = train(cfg, source=df, quiet=True)
    # The text column is a text feature of a table, read by the family named (a GRU here).
    assert run.spec.kind == "table" and [f.type for f in run.preprocessor.features] == ["text"]
    assert type(run.model.texts[0]).__name__ == "RecurrentEncoder"
    assert run.metrics["test"]["accuracy"] >= 0.9, run.metrics["test"]
    pred = run.predict(pd.DataFrame({"review": ["a superb film", "the plot was dull"]}))
    assert pred["prediction"].tolist() == ["pos", "neg"]
