"""Calibration and decisions: ECE against a plain reference, temperature scaling recovers a known temperature, the
threshold search against brute force, and a trained binary run whose predict/evaluate/export apply both."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from testkit import tiny

from palaestra.data.features.outputs import CategoryOutput, softmax
from palaestra.evaluation.calibration import (
    binary_scores,
    choose_threshold,
    ece,
    fit_temperature,
    objective_score,
    reliability_table,
    scaled,
)


def reference_ece(probs: np.ndarray, y: np.ndarray, bins: int = 15) -> float:
    """ECE as the textbook writes it: for each bin (lo, hi] of the top-class confidence, |accuracy - confidence|
    weighted by the bin's share of the rows."""
    conf, pred = probs.max(1), probs.argmax(1)
    total = 0.0
    for k in range(bins):
        lo, hi = k / bins, (k + 1) / bins
        inside = (conf > lo) & (conf <= hi) if k else (conf >= 0) & (conf <= hi)
        if inside.any():
            total += inside.mean() * abs((pred[inside] == y[inside]).mean() - conf[inside].mean())
    return total


@pytest.mark.parametrize("classes", [2, 5])
def test_ece_equals_the_reference_and_torchmetrics(classes):
    from torchmetrics.classification import MulticlassCalibrationError

    rng = np.random.default_rng(classes)
    probs = softmax(rng.normal(size=(2000, classes)) * 3)
    y = rng.integers(0, classes, 2000)
    assert ece(probs, y) == pytest.approx(reference_ece(probs, y), abs=1e-12)
    tm = MulticlassCalibrationError(classes, n_bins=15, norm="l1")(torch.tensor(probs), torch.tensor(y))
    assert ece(probs, y) == pytest.approx(float(tm), abs=1e-6)
    value, table = reliability_table(probs, y)
    assert sum(row[2] for row in table) == 2000
    for lo, hi, n, conf, acc in table:
        inside = (probs.max(1) > lo) & (probs.max(1) <= hi)
        assert n == inside.sum() and conf == pytest.approx(probs.max(1)[inside].mean())
        assert acc == pytest.approx((probs.argmax(1)[inside] == y[inside]).mean())


def test_perfectly_calibrated_probabilities_have_small_ece():
    rng = np.random.default_rng(0)
    p = rng.uniform(0.5, 1.0, 200_000)
    y = (rng.uniform(size=p.size) < p).astype(int)  # the label is 1 with probability p: calibrated by construction
    probs = np.stack([1 - p, p], axis=1)
    assert ece(probs, np.where(y == 1, 1, 0)) < 0.01
    assert ece(np.stack([p * 0 + 0.01, p * 0 + 0.99], 1), y) > 0.2  # 99 % sure, right ~75 % of the time


def test_temperature_scaling_recovers_a_known_temperature():
    g = torch.Generator().manual_seed(0)
    true_logits = torch.randn(20_000, 4, generator=g) * 1.5
    y = torch.multinomial(torch.softmax(true_logits, 1), 1, generator=g).squeeze(1)
    t = fit_temperature(true_logits * 3.0, y)  # an overconfident model: logits three times too large
    assert t == pytest.approx(3.0, rel=0.05)
    nll = [float(torch.nn.functional.cross_entropy(true_logits * 3.0 / s, y)) for s in (t * 0.9, t, t * 1.1)]
    assert nll[1] < nll[0] and nll[1] < nll[2]
    assert ece(torch.softmax(true_logits * 3 / t, 1), y) < ece(torch.softmax(true_logits * 3, 1), y)


@pytest.mark.parametrize("objective", ["f1", "balanced_accuracy", 5.0, 0.2])
def test_threshold_is_as_good_as_brute_force(objective):
    rng = np.random.default_rng(1)
    y = rng.uniform(size=400) < 0.15
    p = np.clip(0.3 * y + rng.normal(0.25, 0.15, 400), 0, 1)
    t = choose_threshold(p, y, objective)
    best = max(objective_score(binary_scores(p, y, s), objective) for s in np.linspace(0, 1, 2001))
    assert objective_score(binary_scores(p, y, t), objective) >= best - 1e-12


def test_a_dearer_miss_lowers_the_threshold():
    rng = np.random.default_rng(2)
    y = rng.uniform(size=500) < 0.2
    p = np.clip(0.35 * y + rng.normal(0.3, 0.15, 500), 0, 1)
    assert choose_threshold(p, y, 10.0) < choose_threshold(p, y, 1.0) < choose_threshold(p, y, 0.1)


def test_category_output_applies_temperature_and_threshold_and_round_trips():
    out = CategoryOutput("y", ["no", "yes"], temperature=2.0, threshold=0.2, positive=1)
    logits = np.array([[1.0, 0.0], [0.0, 1.0], [2.0, 0.0]])
    labels, probs = out.decode(logits)
    assert probs == pytest.approx(softmax(logits / 2.0))
    assert list(labels) == ["yes", "yes", "yes"]  # P(yes) = 0.38, 0.62, 0.27: all at least 0.2
    again = CategoryOutput.from_dict(json.loads(json.dumps(out.to_dict())))
    assert (again.temperature, again.threshold, again.positive) == (2.0, 0.2, 1)
    plain = CategoryOutput.from_dict({"type": "category", "name": "y", "classes": ["no", "yes"]})  # an older run
    assert plain.temperature == 1.0 and plain.threshold is None
    assert plain.to_dict() == {"type": "category", "name": "y", "classes": ["no", "yes"]}


def _imbalanced(n: int = 600, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3))
    logit = 2.5 * x[:, 0] - 1.5 * x[:, 1] - 2.5
    y = rng.uniform(size=n) < 1 / (1 + np.exp(-logit))
    return pd.DataFrame({"a": x[:, 0], "b": x[:, 1], "c": x[:, 2], "label": np.where(y, "rare", "common")})


@pytest.fixture(scope="module")
def calibrated_run(tmp_path_factory):
    from palaestra.pipeline import train

    root = tmp_path_factory.mktemp("calibrated")
    frame = _imbalanced()
    frame.to_csv(root / "data.csv", index=False)
    cfg = tiny(str(root / "data.csv"), epochs=30, data={"target": "label"}, model={"hidden": [16]},
               train={"calibrate": "temperature", "threshold_objective": "f1"}, loss={"class_weights": "balanced"})
    return train(cfg, out=root / "run", quiet=True), frame


def test_run_records_calibration_and_decision(calibrated_run):
    run, _ = calibrated_run
    m = json.loads((run.path / "metrics.json").read_text())
    cal, dec = m["calibration"], m["decision"]
    assert cal["applied"] and cal["temperature"] != 1.0
    assert dec["positive_class"] == "rare" and 0 < dec["threshold"] < 1
    assert set(dec["test"]) == {"at_0.5", "at_threshold"}
    assert m["test"]["ece"] == pytest.approx(cal["test_ece_after"], abs=1e-6)
    assert m["class_weights"]["rare"] > m["class_weights"]["common"]
    report = (run.path / "report.html").read_text()
    assert "Calibration and decisions" in report and "ECE before" in report and "reliability diagram" in report
    saved = json.loads((run.path / "preprocess.json").read_text())["preprocessor"]["outputs"][0]
    assert saved["temperature"] == pytest.approx(cal["temperature"]) and saved["threshold"] == dec["threshold"]


def test_loaded_run_predicts_evaluates_and_exports_calibrated(calibrated_run, tmp_path):
    from palaestra.runs import Run

    run, frame = calibrated_run
    loaded = Run.load(run.path)
    out = loaded.preprocessor.calibrated_output
    logits = loaded.outputs(frame)
    pred = loaded.predict(frame)
    assert pred["prob_rare"].to_numpy() == pytest.approx(softmax(logits / out.temperature)[:, 1])
    want = np.where(pred["prob_rare"] >= out.threshold, "rare", "common")
    assert list(pred["prediction"]) == list(want)
    assert (want != np.where(logits[:, 1] > logits[:, 0], "rare", "common")).any()  # the threshold changed some
    test_rows = frame.iloc[json.loads((run.path / "preprocess.json").read_text())["splits"]["test"]]
    assert loaded.evaluate(test_rows)["ece"] == pytest.approx(run.metrics["test"]["ece"], abs=1e-6)
    pytest.importorskip("onnxruntime")
    from palaestra.data.registry import preprocessor_from_dict
    from palaestra.deployment.export import export, predict_exported, preprocess_path
    from palaestra.runs import predictions_frame

    # An export carries the temperature and the threshold in its FILE.preprocess.json: decoding the exported
    # model's outputs with it gives the run's own calibrated answers.
    path, _check = export(loaded, "onnx", tmp_path / "model.onnx")
    pre = preprocessor_from_dict(json.loads(preprocess_path(path).read_text())["preprocessor"])
    exported = predictions_frame(pre.decode(predict_exported(path, frame)))
    assert exported["prob_rare"].to_numpy() == pytest.approx(pred["prob_rare"].to_numpy(), abs=1e-5)
    assert list(exported["prediction"]) == list(pred["prediction"])


def test_auto_keeps_temperature_only_if_it_lowers_validation_ece(tmp_path):
    from palaestra.pipeline import train

    _imbalanced(seed=3).to_csv(tmp_path / "d.csv", index=False)
    run = train(tiny(str(tmp_path / "d.csv"), epochs=15, data={"target": "label"}), quiet=True)
    cal = run.metrics["calibration"]
    assert cal["mode"] == "auto" and cal["applied"] == (cal["val_ece_after"] < cal["val_ece_before"])
    assert run.preprocessor.temperature == (cal["temperature"] if cal["applied"] else 1.0)
    assert "decision" not in run.metrics  # no threshold unless asked for
    off = train(tiny(str(tmp_path / "d.csv"), epochs=15, data={"target": "label"}, train={"calibrate": "none"}),
                quiet=True)
    assert "calibration" not in off.metrics and off.preprocessor.temperature == 1.0


def test_the_server_answers_with_the_calibrated_probabilities_and_threshold(calibrated_run):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from palaestra.deployment.server import build_app
    from palaestra.runs import Run

    run, frame = calibrated_run
    loaded = Run.load(run.path)
    rows = frame.drop(columns="label").head(40)
    want = loaded.predict(rows)
    with TestClient(build_app(loaded)) as client:
        body = client.post("/predict", json={"rows": rows.to_dict("records")}).json()
    assert body["predictions"] == list(want["prediction"])
    assert [p["rare"] for p in body["probabilities"]] == pytest.approx(list(want["prob_rare"]), abs=1e-6)


def test_scoring_through_a_temperature_leaves_the_model_in_eval_mode():
    """Evaluation restores the mode it found: wrapping an eval-mode model must not hand it back in training mode
    (dropout would then make a finished run's predictions differ call to call)."""
    from palaestra.training.loop import evaluate

    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Dropout(0.5), torch.nn.Linear(4, 2)).eval()
    batches = [(torch.randn(8, 3), torch.randint(0, 2, (8,)))]
    evaluate(scaled(model, 2.0), batches, torch.nn.CrossEntropyLoss(), None, torch.device("cpu"))
    assert not model.training
    x = torch.randn(5, 3)
    assert torch.equal(model(x), model(x))
