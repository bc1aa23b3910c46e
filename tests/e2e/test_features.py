"""One model for any mix of columns: numbers, categories, free text and timestamps, and several targets."""

from __future__ import annotations

import json

import httpx
import numpy as np
import pandas as pd
import pytest
from testkit import cli, running

from benchmarks.mixed_table import mixed_table, tfidf_baseline
from palaestra.artifacts import read_json
from palaestra.deployment.export import export, predict_exported
from palaestra.pipeline import train
from palaestra.runs import Run


def test_zero_config_uses_text_and_time_and_beats_dropping_them(tmp_path):
    frame = mixed_table().drop(columns=["spend"])
    frame.to_csv(tmp_path / "customers.csv", index=False)
    r = cli("train", "--data", str(tmp_path / "customers.csv"), "--target", "churned", "--out", str(tmp_path / "all"),
            "--set", "train.progress=false")
    assert r.returncode == 0, r.stderr
    # The notice says how each column was typed.
    for says in ("'income': numeric", "'plan': category", "'note': text", "'signup': datetime"):
        assert says in " ".join(r.stderr.split()), r.stderr
    pre = read_json(tmp_path / "all" / "preprocess.json")
    assert {f["name"]: f["type"] for f in pre["preprocessor"]["inputs"]} == {
        "income": "numeric", "plan": "category", "note": "text", "signup": "datetime"}
    r = cli("train", "--data", str(tmp_path / "customers.csv"), "--target", "churned", "--out", str(tmp_path / "less"),
            "--set", "train.progress=false", "--set", "data.drop=[note, signup]")
    assert r.returncode == 0, r.stderr
    full = read_json(tmp_path / "all" / "metrics.json")["test"]["accuracy"]
    dropped = read_json(tmp_path / "less" / "metrics.json")["test"]["accuracy"]
    assert full > dropped + 0.04, (full, dropped)
    splits = pre["splits"]
    baseline = tfidf_baseline(frame, splits["train"], splits["test"])
    assert full >= baseline - 0.025, (full, baseline)  # 3 of 120 test rows: within a split's noise

    # Predicting on new rows: an unseen word, a missing note and an unparseable date are handled.
    new = frame.drop(columns=["churned"]).head(4).copy()
    new.loc[0, "note"] = "zyxxy quux never seen words"
    new.loc[1, "note"] = None
    new.loc[2, "signup"] = "not a date"
    preds = Run.load(tmp_path / "all").predict(new)
    assert len(preds) == 4 and set(preds["prediction"]) <= {"yes", "no"}


@pytest.fixture(scope="module")
def two_targets(tmp_path_factory):
    out = tmp_path_factory.mktemp("multi") / "run"
    frame = mixed_table(600, seed=1)
    cfg = {"seed": 0, "data": {"source": "customers.csv", "target": ["churned", "spend"]},
           "train": {"progress": False, "epochs": 80}}
    run = train(cfg, source=frame, out=out, quiet=True)
    return run, frame, out


def test_two_targets_train_in_one_run_with_a_block_of_metrics_each(two_targets):
    run, frame, out = two_targets
    test = read_json(out / "metrics.json")["test"]
    assert set(test) >= {"churned", "spend", "loss"}
    assert {"accuracy", "f1_macro", "roc_auc"} <= set(test["churned"]) and {"mae", "rmse", "r2"} <= set(test["spend"])
    assert run.spec.task == "multi_target" and [o["name"] for o in run.spec.outputs] == ["churned", "spend"]
    history = pd.read_csv(out / "history.csv")
    assert {"val_churned_accuracy", "val_spend_mae"} <= set(history.columns)
    # Each target's metrics are within noise of a run that learns that target alone.
    for target, metric, worse in (("churned", "accuracy", -0.06), ("spend", "r2", -0.05)):
        alone = train({"seed": 0, "data": {"source": "customers.csv", "target": target},
                       "train": {"progress": False, "epochs": 80}}, source=frame.drop(
            columns=["spend" if target == "churned" else "churned"]), quiet=True)
        assert test[target][metric] >= alone.metrics["test"][metric] + worse, (target, test[target], alone.metrics["test"])


def test_two_targets_predict_evaluate_export_and_serve(two_targets, tmp_path):
    run, frame, out = two_targets
    rows = frame.drop(columns=["churned", "spend"]).head(6)
    loaded = Run.load(out)
    preds = loaded.predict(rows)
    assert list(preds.columns) == ["churned_prediction", "churned_prob_no", "churned_prob_yes", "spend_prediction"]
    assert np.allclose(preds["churned_prob_no"] + preds["churned_prob_yes"], 1.0)
    metrics = loaded.evaluate(frame.head(100))
    assert metrics["rows"] == 100 and {"churned", "spend"} <= set(metrics)
    assert metrics["churned"]["accuracy"] > 0.6 and metrics["spend"]["r2"] > 0.5

    csv = tmp_path / "rows.csv"
    rows.to_csv(csv, index=False)
    r = cli("predict", str(out), "--data", str(csv), "--out", str(tmp_path / "p.csv"))
    assert r.returncode == 0, r.stderr
    assert list(pd.read_csv(tmp_path / "p.csv").columns) == list(preds.columns)
    frame.head(50).to_csv(tmp_path / "labelled.csv", index=False)
    r = cli("evaluate", str(out), "--data", str(tmp_path / "labelled.csv"), "--json")
    assert r.returncode == 0, r.stderr
    assert set(json.loads(r.stdout)) >= {"churned", "spend", "rows"}

    path, check = export(loaded, "onnx", tmp_path / "model.onnx")
    assert check.ok
    assert np.allclose(predict_exported(path, rows), loaded.outputs(rows), atol=1e-5)

    from palaestra.deployment.server import build_app

    app = build_app(loaded)
    body = {"rows": json.loads(rows.to_json(orient="records"))}
    with running(app) as base:
        answer = httpx.post(f"{base}/predict", json=body, timeout=30).json()
    assert [p["churned"] for p in answer["predictions"]] == preds["churned_prediction"].tolist()
    assert np.allclose([p["spend"] for p in answer["predictions"]], preds["spend_prediction"], atol=1e-4)
    assert set(answer["probabilities"][0]["churned"]) == {"no", "yes"}
