"""Every family x exporter x server backend: the exported model and each server backend give the run's answers.

Tiny in-memory runs (one epoch) of every family on each kind of data it takes, including a table with a text
column (bag, GRU and transformer text encoders) and the transformer combiner.
"""

from __future__ import annotations

import json

import httpx
import numpy as np
import pandas as pd
import pytest
from testkit import running

from palaestra.deployment.export import export, predict_exported
from palaestra.deployment.server import build_app
from palaestra.pipeline import train

SMALL = {"hidden_size": 8, "layers": 1, "d_model": 8, "heads": 2, "channels": [4], "hidden": [8], "embedding_dim": 4}


def _sequences(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 10)).astype(np.float32)
    x[::4, 7:] = np.nan  # shorter sequences: trailing padding
    path = tmp_path / "seq.npz"
    np.savez(path, x=x, y=np.arange(60) % 2)
    return str(path), x[1:3]  # two full-length rows for the request (JSON has no NaN)


def _notes(n=80):
    rng = np.random.default_rng(1)
    words = ["good", "bad", "fine", "late", "early", "kind", "slow"]
    return pd.DataFrame({"amount": rng.normal(size=n).round(3), "note": [" ".join(rng.choice(words, 5)) for _ in range(n)],
                         "label": np.where(np.arange(n) % 2, "a", "b")})


CASES = {
    "mlp-table": ({"data": {"source": "penguins"}}, None),
    "mlp-table-ensemble": ({"data": {"source": "penguins"}, "model": {"ensemble": 4}}, None),
    "mlp-table-text": ({"data": {"source": "notes.csv", "target": "label"}}, "notes"),
    "transformer-combiner": ({"data": {"source": "notes.csv", "target": "label"}, "model": {"combiner": "transformer"}},
                             "notes"),
    "gru-table-text": ({"data": {"source": "notes.csv", "target": "label"}, "model": {"family": "gru"}}, "notes"),
    "transformer-table-text": ({"data": {"source": "notes.csv", "target": "label"}, "model": {"family": "transformer"}},
                               "notes"),
    "cnn-image": ({"data": {"source": "digits"}, "model": {"family": "cnn"}}, None),
    "mlp-vector": ({"data": {"source": "digits"}, "model": {"family": "mlp"}}, None),
    **{f"{fam}-sequence": ({"data": {"sequence": True}, "model": {"family": fam}}, "sequence")
       for fam in ("gru", "lstm", "rnn", "transformer", "cnn")},
}


@pytest.fixture(params=sorted(CASES))
def tiny_run(request, tmp_path):
    cfg, source = CASES[request.param]
    cfg = json.loads(json.dumps(cfg))
    cfg.setdefault("model", {}).update(SMALL)
    cfg["train"] = {"epochs": 1, "progress": False}
    frame = None
    if source == "sequence":
        path, rows = _sequences(tmp_path)
        cfg["data"]["source"] = path
        request_rows = rows
    elif source == "notes":
        frame = _notes()
        request_rows = frame.drop(columns=["label"]).head(3)
    run = train(cfg, source=frame, quiet=True)
    if source is None:
        if run.spec.kind == "table":
            request_rows = run.data.raw.drop(columns=[run.preprocessor.target]).head(3)
        else:
            request_rows = run.data.raw.x[:3]
    return run, request_rows


@pytest.mark.parametrize("fmt", ["onnx", "torch_export", "torchscript"])
def test_every_family_exports_with_the_runs_outputs(tiny_run, fmt, tmp_path):
    run, rows = tiny_run
    path, check = export(run, fmt, tmp_path / f"model.{fmt}")
    assert check.ok, check
    assert np.allclose(predict_exported(path, rows), run.outputs(rows), atol=1e-4)


@pytest.mark.parametrize("backend", ["torch", "onnx"])
def test_every_family_is_served_with_the_runs_answers(tiny_run, backend):
    run, rows = tiny_run
    body = ({"rows": json.loads(rows.to_json(orient="records"))} if isinstance(rows, pd.DataFrame)
            else {"inputs": np.asarray(rows).tolist()})
    with running(build_app(run, backend=backend)) as base:
        answer = httpx.post(f"{base}/predict", json=body, timeout=60)
    assert answer.status_code == 200, answer.text
    expected = run.predict(rows)
    assert [str(p) for p in answer.json()["predictions"]] == [str(p) for p in expected["prediction"]]
