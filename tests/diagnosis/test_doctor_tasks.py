"""The doctor off tables: each task's own baseline, each family's own knobs, no advice already taken."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
from testkit import tiny

from palaestra.config import load_config
from palaestra.diagnosis import doctor
from palaestra.diagnosis.facts import Facts
from palaestra.pipeline import train


def _facts(train_loss, val_loss, **config):
    cfg = load_config(config)
    cols = {"train_loss": np.asarray(train_loss, float), "val_loss": np.asarray(val_loss, float)}
    return SimpleNamespace(config=cfg, col=lambda name: cols.get(name, np.zeros(0)), baseline=lambda: 1.0,
                           metrics={})


def test_language_model_is_judged_against_its_own_unigram_baseline(tmp_path):
    rng = np.random.default_rng(0)
    words = ["the cat sat on the mat. ", "a dog ran in the fog. "]
    (tmp_path / "c.txt").write_text("".join(rng.choice(words) for _ in range(200)), encoding="utf-8")
    out = tmp_path / "run"
    run = train(tiny(str(tmp_path / "c.txt"), epochs=2, data={"max_length": 16},
                     model={"family": "gru", "hidden_size": 8, "layers": 1}), out=out, quiet=True)
    facts = Facts(out)
    unigram = run.metrics["val"]["unigram_bits_per_char"]  # the split the losses it judges come from
    assert math.isclose(facts.baseline(), unigram * math.log(2), rel_tol=1e-9)  # nats, like the loss
    for finding in run.findings or []:
        assert "model.hidden " not in finding.suggestion and "model.hidden)" not in finding.suggestion


def test_each_family_is_told_about_its_own_size_knobs():
    assert doctor.size_knobs("gru") == ("model.hidden_size", "model.layers")
    assert doctor.size_knobs("transformer") == ("model.d_model", "model.layers")
    assert doctor.size_knobs("cnn") == ("model.channels", "model.hidden")
    assert doctor.size_knobs("mlp") == ("model.hidden",)
    flat = [0.95] * 12
    found = doctor._underfitting(_facts(flat, flat, model={"family": "lstm", "dropout": 0.0}))
    assert "model.hidden_size is 128" in found.suggestion and "model.hidden is" not in found.suggestion
    assert "dropout" not in found.suggestion  # there is none to lower


def test_a_loss_still_falling_slowly_is_not_called_flat():
    falling = list(np.linspace(0.99, 0.9, 15))  # steadily down, 1% per few epochs: not converged
    found = doctor._underfitting(_facts(falling, falling, model={"family": "gru"}))
    assert "still falling" in found.evidence and "train for more epochs" in found.suggestion


def test_no_dropout_advice_when_dropout_is_already_high():
    train_loss = [1.0, 0.7, 0.5, 0.35, 0.25, 0.18, 0.12, 0.08]
    val_loss = [1.0, 0.8, 0.7, 0.75, 0.85, 0.95, 1.05, 1.15]
    found = doctor._overfitting(_facts(train_loss, val_loss, model={"dropout": 0.499}))
    assert found is not None and "add dropout" not in found.suggestion and "weight decay" in found.suggestion
    found = doctor._overfitting(_facts(train_loss, val_loss, model={"dropout": 0.1}))
    assert "dropout (model.dropout is 0.1)" in found.suggestion
