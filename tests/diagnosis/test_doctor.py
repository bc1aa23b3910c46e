"""The doctor finds each condition when it is provoked on purpose, and stays silent on a healthy run."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from testkit import tiny

from palaestra.cli import main
from palaestra.diagnosis import diagnose, findings_html
from palaestra.pipeline import train
from palaestra.runs import Run


def codes(run_dir, **kw) -> list[str]:
    return [f.code for f in diagnose(run_dir, **kw)]


def _csv(tmp_path, name: str, frame: pd.DataFrame) -> str:
    path = tmp_path / f"{name}.csv"
    frame.to_csv(path, index=False)
    return str(path)


def _run(tmp_path, cfg: dict, name: str = "run"):
    out = tmp_path / name
    train(cfg, out=out, quiet=True)
    return out


@pytest.fixture(scope="module")
def healthy(tmp_path_factory):
    """The penguins default config, as `palaestra train --data penguins` runs it."""
    out = tmp_path_factory.mktemp("healthy") / "run"
    train({"data": {"source": "penguins"}, "train": {"progress": False}}, out=out, quiet=True)
    return out


def test_silent_on_a_healthy_run(healthy, capsys):
    notes: list[str] = []
    assert diagnose(healthy, notes=notes) == [] and notes == []  # every check ran, none found anything
    assert "<h2>Doctor</h2>\n<p>No problems found.</p>" in (healthy / "report.html").read_text()
    assert main(["doctor", str(healthy), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []


def test_cli_refuses_a_directory_that_is_not_a_run(tmp_path, capsys):
    assert main(["doctor", str(tmp_path)]) == 2
    assert "not a finished run" in capsys.readouterr().err


def test_huge_lr_is_lr_too_high(tmp_path, capsys):
    from palaestra.pipeline import TrainingDiverged

    with pytest.raises(TrainingDiverged, match="diverged"):  # a diverged run is no model: exit 2, marked failed
        _run(tmp_path, tiny(epochs=2, optimizer={"name": "sgd", "lr": 50.0}))
    run_dir = tmp_path / "run"  # kept, with its manifest, for the doctor
    found = diagnose(run_dir)
    assert "lr_too_high" in [f.code for f in found]
    assert "underfitting" not in [f.code for f in found]
    assert main(["doctor", str(run_dir), "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert all({"code", "evidence", "suggestion"} <= set(f) for f in listed)
    assert "lr_too_high" in [f["code"] for f in listed]
    assert "lr_too_high" in (run_dir / "report.html").read_text()


def test_tiny_lr_is_lr_too_low_and_train_prints_it(tmp_path, capsys):
    run_dir = tmp_path / "run"
    sets = ["model.hidden=[16]", "optimizer.lr=1e-6", "train.epochs=3", "train.progress=false", "train.early_stopping=null"]
    assert main(["train", "--data", "penguins", "--out", str(run_dir), *(a for s in sets for a in ("--set", s))]) == 0
    printed = capsys.readouterr().out
    assert "doctor: 1 finding" in printed and "lr_too_low" in printed  # `palaestra train` runs the doctor
    found = codes(run_dir)
    assert found == ["lr_too_low"]


def test_a_line_on_circles_is_underfitting(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, size=(400, 2))
    frame = pd.DataFrame({"x1": x[:, 0], "x2": x[:, 1], "inside": (x ** 2).sum(1) < 0.5})
    cfg = tiny(_csv(tmp_path, "circles", frame), epochs=8, model={"hidden": [], "dropout": 0.0},
               optimizer={"lr": 0.1}, data={"target": "inside"})
    found = codes(_run(tmp_path, cfg))
    assert "underfitting" in found and "lr_too_low" not in found


def test_memorising_a_small_noisy_set_is_overfitting(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(80, 8))
    frame = pd.DataFrame(x, columns=[f"x{i}" for i in range(8)])
    frame["y"] = np.where(x[:, 0] + rng.normal(scale=1.5, size=80) > 0, "a", "b")
    cfg = tiny(_csv(tmp_path, "noisy", frame), epochs=8, model={"hidden": [128, 128], "dropout": 0.0},
               optimizer={"lr": 0.02, "weight_decay": 0.0}, data={"target": "y"}, train={"batch_size": 8})
    found = diagnose(_run(tmp_path, cfg))
    over = [f for f in found if f.code == "overfitting"]
    assert over and "early stopping" in over[0].suggestion


def test_duplicated_rows_are_leakage_duplicates(tmp_path):
    rng = np.random.default_rng(0)
    base = pd.DataFrame(rng.normal(size=(40, 3)), columns=["a", "b", "c"])
    base["y"] = np.where(base["a"] + rng.normal(size=40) > 0, "p", "q")
    frame = pd.concat([base] * 5, ignore_index=True)
    cfg = tiny(_csv(tmp_path, "dups", frame), epochs=1, data={"target": "y"})
    found = diagnose(_run(tmp_path, cfg))
    dups = [f for f in found if f.code == "leakage_duplicates"]
    assert dups and "identical" in dups[0].evidence
    assert "leakage_feature" not in [f.code for f in found]  # copies of a row are not a feature that leaks


def test_a_copy_of_the_label_is_leakage_feature(tmp_path):
    from palaestra.data.sources import read_source

    frame = read_source("penguins")
    frame["field_label"] = frame["species"].str.upper()
    cfg = tiny(_csv(tmp_path, "leak", frame), epochs=1, data={"target": "species"})
    found = [f for f in diagnose(_run(tmp_path, cfg)) if f.code == "leakage_feature"]
    assert found and "field_label" in found[0].evidence
    assert "bill_length_mm" not in found[0].evidence


def test_a_regression_feature_equal_to_the_target_is_leakage(tmp_path):
    rng = np.random.default_rng(1)
    frame = pd.DataFrame({"a": rng.normal(size=120), "b": rng.normal(size=120)})
    frame["y"] = frame["a"] * 3 + rng.normal(scale=0.01, size=120)
    cfg = tiny(_csv(tmp_path, "reg", frame), epochs=1, data={"target": "y"})
    run_dir = _run(tmp_path, cfg)
    found = [f for f in diagnose(run_dir) if f.code == "leakage_feature"]
    assert found and "'a'" in found[0].evidence and "'b'" not in found[0].evidence
    (tmp_path / "reg.csv").unlink()  # the source is gone: the data checks are skipped, with a note
    notes: list[str] = []
    assert "leakage_feature" not in codes(run_dir, notes=notes)
    assert notes and "could not re-read" in notes[0]


def test_95_5_classes_are_class_imbalance(tmp_path):
    rng = np.random.default_rng(0)
    n = 400
    frame = pd.DataFrame(rng.normal(size=(n, 3)), columns=["a", "b", "c"])
    frame["y"] = np.where(np.arange(n) < 20, "rare", "common")
    cfg = tiny(_csv(tmp_path, "imb", frame), epochs=3, data={"target": "y"}, optimizer={"lr": 0.05})
    run_dir = _run(tmp_path, cfg)
    test = json.loads((run_dir / "metrics.json").read_text())["test"]
    assert test["accuracy"] - test["f1_macro"] > 0.3  # the model predicts 'common' for (nearly) every row
    found = [f for f in diagnose(run_dir) if f.code == "class_imbalance"]
    assert found and "macro F1" in found[0].evidence


def test_deep_sigmoid_with_tiny_init_has_vanishing_gradients(tmp_path):
    cfg = tiny(epochs=2, model={"hidden": [32] * 5, "activation": "sigmoid", "init": "normal", "init_std": 0.02})
    assert "vanishing_gradients" in codes(_run(tmp_path, cfg))


def test_wide_init_has_exploding_gradients(tmp_path):
    cfg = tiny(epochs=1, model={"hidden": [64] * 4, "init": "normal", "init_std": 2.0, "dropout": 0.0})
    found = diagnose(_run(tmp_path, cfg))
    assert "exploding_gradients" in [f.code for f in found]


def test_negative_biases_are_dead_units(healthy):
    run = Run.load(healthy)
    assert "dead_units" not in codes(healthy, run=run)
    first = run.model.body.layers[0]  # the default table model: an ensemble of 8 members, biases (8, units)
    members, units = first.bias.shape
    with torch.no_grad():
        first.bias[:, : units * 3 // 4] = -1e3  # pre-activations far below zero on every row, in every member
    found = [f for f in diagnose(healthy, run=run) if f.code == "dead_units"]
    assert found and f"body.layers.1: {members * (units * 3 // 4)}/{members * units}" in found[0].evidence


def test_findings_render_escaped_html():
    from palaestra.diagnosis import Finding

    html = findings_html([Finding("overfitting", "<b>x</b>", "a < b", "c & d")])
    assert "&lt;b&gt;x&lt;/b&gt;" in html and "a &lt; b" in html and "overfitting" in html
