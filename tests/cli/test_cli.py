"""The command line as a user runs it: a subprocess, its exit code, what it prints and the files it writes."""

import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from testkit import cli as _cli

from palaestra.artifacts import read_json
from palaestra.data.sources import read_source


def cli(*args: str, **kwargs):
    return _cli(*args, env={"OMP_NUM_THREADS": "1"}, **kwargs)  # one torch thread: the workers share two cores

RUN_FILES = ["config.yaml", "model.safetensors", "preprocess.json", "metrics.json", "history.csv", "env.json",
             "manifest.json", "report.html"]


def test_train_writes_a_run_prints_metrics_and_is_listed(tmp_path):
    out = tmp_path / "iris-run"
    r = cli("train", "--data", "iris", "--out", str(out), "--set", "train.epochs=3", "--set", "train.progress=false")
    assert r.returncode == 0, r.stderr
    assert f"run: {out}" in r.stdout
    assert "test metrics" in r.stdout and "(classification, 3 epochs)" in r.stdout
    for name in ("accuracy", "f1_macro", "roc_auc"):
        assert name in r.stdout
    for name in RUN_FILES:
        assert (out / name).is_file(), name
    assert len(pd.read_csv(out / "history.csv")) == 3
    metrics = read_json(out / "metrics.json")
    assert metrics["epochs"] == 3 and 0.0 <= metrics["test"]["accuracy"] <= 1.0
    assert f"{metrics['test']['accuracy']:.4f}" in r.stdout

    listed = cli("runs", "--json")
    assert listed.returncode == 0, listed.stderr
    runs = json.loads(listed.stdout)
    mine = [x for x in runs if x["path"] == str(out.resolve())]
    assert len(mine) == 1 and mine[0]["state"] == "complete" and mine[0]["task"] == "classification"
    assert mine[0]["metrics"]["accuracy"] == pytest.approx(metrics["test"]["accuracy"])


def _test_rows_csv(run_dir, path):
    """The run's own test rows, as raw CSV a user would hold (missing values left empty)."""
    splits = read_json(run_dir / "preprocess.json")["splits"]
    frame = read_source("penguins").iloc[splits["test"]]
    frame.to_csv(path, index=False)
    return frame.reset_index(drop=True)


def test_predict_and_evaluate_agree_with_each_other_and_metrics_json(penguins_run, tmp_path):
    from palaestra.runs import Run

    data = tmp_path / "test_rows.csv"
    frame = _test_rows_csv(penguins_run, data)
    preds_path = tmp_path / "preds.csv"
    r = cli("predict", str(penguins_run), "--data", str(data), "--out", str(preds_path))
    assert r.returncode == 0, r.stderr
    assert f"{len(frame)} predictions written" in r.stderr
    preds = pd.read_csv(preds_path)
    classes = ["Adelie", "Chinstrap", "Gentoo"]
    assert list(preds.columns) == ["prediction"] + [f"prob_{c}" for c in classes]
    assert len(preds) == len(frame)
    probs = preds[[f"prob_{c}" for c in classes]].to_numpy()
    assert np.allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    assert (preds["prediction"].to_numpy() == np.array(classes)[probs.argmax(axis=1)]).all()

    e = cli("evaluate", str(penguins_run), "--data", str(data), "--json")
    assert e.returncode == 0, e.stderr
    evaluated = json.loads(e.stdout)
    recorded = read_json(penguins_run / "metrics.json")["test"]
    accuracy_from_preds = float((preds["prediction"] == frame["species"]).mean())
    assert evaluated["rows"] == len(frame)
    assert evaluated["accuracy"] == pytest.approx(accuracy_from_preds, abs=1e-6)  # float32 inside torchmetrics
    for name in ("accuracy", "precision_macro", "recall_macro", "f1_macro", "f1_weighted", "roc_auc"):
        assert evaluated[name] == pytest.approx(recorded[name], abs=1e-6), name
    assert evaluated["confusion_matrix"] == recorded["confusion_matrix"]
    assert evaluated["classes"] == recorded["classes"] == classes

    # The Python API on the same rows gives the same numbers as the CLI's CSV.
    api = Run.load(penguins_run).predict(frame)
    assert (api["prediction"] == preds["prediction"]).all()
    assert np.allclose(api[[f"prob_{c}" for c in classes]].to_numpy(), probs, atol=1e-6)


def test_evaluate_without_json_prints_a_table(penguins_run, tmp_path):
    data = tmp_path / "rows.csv"
    _test_rows_csv(penguins_run, data)
    r = cli("evaluate", str(penguins_run), "--data", str(data))
    assert r.returncode == 0, r.stderr
    assert "accuracy" in r.stdout and "rows" in r.stdout


def test_datasets_lists_the_built_ins():
    r = cli("datasets")
    assert r.returncode == 0, r.stderr
    for name in ("penguins", "iris", "digits", "diabetes", "mnist1d", "sunspots", "pydocs"):  # one registry lists them all
        assert name in r.stdout


@pytest.mark.parametrize(("args", "message"), [
    (["train", "--data", "iris", "--set", "optimizer.lrr=0.1"], "did you mean 'optimizer.lr'?"),
    (["train", "--data", "no_such_file.csv"], "neither a file nor a built-in dataset"),
    (["predict", "no_such_run", "--data", "iris", "--out", "x.csv"], "does not exist"),
])
def test_user_errors_exit_2_with_one_plain_line(args, message, tmp_path):
    r = cli(*args, cwd=tmp_path)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert message in r.stderr
    assert "Traceback" not in r.stderr and r.stderr.startswith("error: ")


def test_bad_key_in_a_config_file(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("data:\n  source: iris\ntrain:\n  epoch: 3\n")
    r = cli("train", str(cfg), cwd=tmp_path)
    assert r.returncode == 2
    assert "unknown config key 'train.epoch' (did you mean 'train.epochs'?)" in r.stderr
    assert "Traceback" not in r.stderr


@pytest.mark.parametrize("args", [["--help"], ["datasets"], ["runs"], ["runs", "--json"]])
def test_commands_that_do_not_train_do_not_import_torch(args, tmp_path):
    """They answer at once, even on a loaded machine: importing torch alone takes seconds there."""
    code = ("import sys, contextlib, io\nfrom palaestra.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            f"    try: main({args!r})\n    except SystemExit: pass\n"
            "print('torch' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=120,
                       env={**os.environ, "PALAESTRA_RUNS": str(tmp_path / "runs")})
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "False", r.stdout
