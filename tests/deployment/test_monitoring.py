"""Drift (PSI), the environment check and the prediction log, without a server."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from palaestra.deployment.export import held_out
from palaestra.deployment.monitoring import DriftMonitor, PredictionLog, environment_warnings, psi
from palaestra.runs import Run


def test_psi_by_hand():
    assert psi(np.array([0.5, 0.5]), np.array([10, 10])) == 0.0
    # (0.8 - 0.5) ln(0.8/0.5) + (0.2 - 0.5) ln(0.2/0.5)
    expected = 0.3 * np.log(1.6) - 0.3 * np.log(0.4)
    assert abs(psi(np.array([0.5, 0.5]), np.array([8, 2])) - expected) < 1e-12
    assert psi(np.array([0.5, 0.5]), np.array([0, 0])) == 0.0


def test_drift_monitor_small_on_training_like_rows_large_on_shifted(penguins_run):
    run = Run.load(penguins_run)
    penguins_test_rows = held_out(run)
    same, shifted = DriftMonitor(run.preprocessor), DriftMonitor(run.preprocessor)
    same.observe_rows(penguins_test_rows)
    moved = penguins_test_rows.copy()
    moved["flipper_length_mm"] = moved["flipper_length_mm"] + 40
    moved["island"] = "Atlantis"  # never seen in training: the unknown bucket
    shifted.observe_rows(moved)
    a, b = same.values(), shifted.values()
    assert set(a) == {c.name for c in run.preprocessor.features}
    assert a["flipper_length_mm"] < 0.5 and b["flipper_length_mm"] > 2.0
    assert b["island"] > 5.0
    assert b["bill_length_mm"] == a["bill_length_mm"]  # untouched columns do not move


def test_environment_warnings():
    assert environment_warnings({"packages": {"numpy": "1.0.0", "torch": "1.13.0", "no-such-dist-xyz": "1.0"}}) == [
        "no-such-dist-xyz 1.0 was used in training but is not installed here",
        f"numpy {__import__('numpy').__version__} here, 1.0.0 in training",
        f"torch {__import__('torch').__version__} here, 1.13.0 in training"]
    from importlib import metadata

    same = {d: metadata.version(d) for d in ("torch", "numpy", "pandas")}
    assert environment_warnings({"packages": same}) == []


def test_prediction_log_is_sampled(tmp_path):
    log = PredictionLog(tmp_path / "p.jsonl", sample=0.5, seed=0)
    written = log.write([{"a": i} for i in range(400)], list(range(400)), None)
    lines = (tmp_path / "p.jsonl").read_text().splitlines()
    assert len(lines) == written and 150 < written < 250
    entry = json.loads(lines[0])
    assert set(entry) == {"time", "input", "prediction"} and entry["input"]["a"] == entry["prediction"]
    assert PredictionLog(tmp_path / "none.jsonl", sample=0.0).write([{"a": 1}], [1], None) == 0


def test_drift_monitor_for_images_reports_channel_shift(digits_run):
    from palaestra.deployment.export import model_inputs

    run = Run.load(digits_run)
    raw = held_out(run)
    monitor = DriftMonitor(run.preprocessor)
    x = model_inputs(run, raw)[0].numpy()
    monitor.observe_standardized(x)
    assert abs(monitor.values()["channel0"]) < 0.3
    monitor.observe_standardized(x + 3.0)
    assert monitor.values()["channel0"] > 1.2
    assert isinstance(pd.Series(monitor.values()).sum(), float)
