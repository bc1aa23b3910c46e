"""``palaestra explain``: on a table where only two of six columns carry signal, permutation importance ranks
those two first with intervals that do not overlap the others'; integrated gradients add up to the output's
change from the baseline; report.html shows the importances."""

from __future__ import annotations

import json
import sys

import numpy as np
import pandas as pd
import pytest
from testkit import cli, tiny

SIGNAL = ("c1", "c4")


def _table(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 6))
    logit = 2.5 * x[:, 1] - 2.5 * x[:, 4]  # only c1 and c4 matter
    y = rng.uniform(size=n) < 1 / (1 + np.exp(-logit))
    frame = pd.DataFrame(x, columns=[f"c{i}" for i in range(6)])
    frame["c5"] = np.where(x[:, 5] > 0, "left", "right")  # a category column: explained as one raw column
    frame["label"] = np.where(y, "yes", "no")
    return frame


@pytest.fixture(scope="module")
def explained(tmp_path_factory):
    from palaestra.pipeline import train

    root = tmp_path_factory.mktemp("explain")
    _table(1200, seed=0).to_csv(root / "train.csv", index=False)
    _table(600, seed=1).to_csv(root / "fresh.csv", index=False)  # rows the model has never seen
    run = train(tiny(str(root / "train.csv"), epochs=25, data={"target": "label"}), out=root / "run", quiet=True)
    return run, root


def test_explain_ranks_the_two_signal_columns_first_with_separate_intervals(explained):
    run, root = explained
    res = cli("explain", str(run.path), "--data", str(root / "fresh.csv"), "--json", "--repeats", "8")
    assert res.returncode == 0, res.stderr
    result = json.loads(res.stdout)
    columns = result["columns"]
    assert {c["column"] for c in columns} == {f"c{i}" for i in range(6)}  # raw columns, not one-hot parts
    assert {c["column"] for c in columns[:2]} == set(SIGNAL)
    weakest_signal = min(c["ci_low"] for c in columns[:2])
    strongest_noise = max(c["ci_high"] for c in columns[2:])
    assert weakest_signal > strongest_noise
    for c in columns:
        drops = np.array(c["drops"])
        assert len(drops) == 8 and c["importance"] == pytest.approx(drops.mean())
        assert c["ci_low"] < c["importance"] < c["ci_high"] or c["std"] == 0
    assert result["metric"] == "loss" and result["rows"] == 600


def test_explain_by_accuracy_and_with_integrated_gradients(explained):
    pytest.importorskip("captum")
    from palaestra.diagnosis.explain import integrated_gradients, permutation_importance
    from palaestra.runs import Run

    run, root = explained
    loaded = Run.load(run.path)
    by_accuracy = permutation_importance(loaded, root / "fresh.csv", metric="accuracy", repeats=4)
    assert {c["column"] for c in by_accuracy["columns"][:2]} == set(SIGNAL)
    rows = integrated_gradients(loaded, root / "fresh.csv", rows=4, steps=128)
    assert len(rows) == 4
    for row in rows:
        total = sum(v for v in row["attributions"].values() if v is not None)
        # completeness: the attributions add up to the output's change from the all-zero baseline
        assert total == pytest.approx(row["output"] - row["baseline_output"], abs=2e-2)
        assert set(row["attributions"]) == {f"c{i}" for i in range(6)}
    signal = np.mean([abs(r["attributions"][c]) for r in rows for c in SIGNAL])
    noise = np.mean([abs(r["attributions"][c]) for r in rows for c in ("c0", "c2", "c3")])
    assert signal > 3 * noise


def test_report_shows_permutation_importance(explained):
    run, _ = explained
    report = (run.path / "report.html").read_text()
    assert "permutation importance" in report and 'alt="permutation importance"' in report


def test_explain_refuses_plainly(explained, monkeypatch, capsys):
    from palaestra.cli import main

    run, root = explained
    assert main(["explain", str(run.path), "--data", str(root / "fresh.csv"), "--metric", "acuracy"]) == 2
    assert "choose one of" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "captum", None)  # as if the extra were not installed
    monkeypatch.setitem(sys.modules, "captum.attr", None)
    code = main(["explain", str(run.path), "--data", str(root / "fresh.csv"), "--rows", "2", "--repeats", "2"])
    err = capsys.readouterr().err
    assert code == 2 and "palaestra[explain]" in err and "Traceback" not in err
    pd.DataFrame({"c0": [1.0]}).to_csv(root / "narrow.csv", index=False)
    assert main(["explain", str(run.path), "--data", str(root / "narrow.csv")]) == 2
    assert "missing column" in capsys.readouterr().err
