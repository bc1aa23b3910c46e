"""A table run's ONNX export holds its preprocessing: onnxruntime alone, given the raw columns, gives `palaestra
predict`'s labels and probabilities; the ONNX server backend runs one graph call per request and builds no frame."""

from __future__ import annotations

import json

import httpx
import numpy as np
import onnx
import onnxruntime as ort
import pandas as pd
import pytest
from deploy_helpers import running

from palaestra.artifacts import read_json
from palaestra.cli import main
from palaestra.deployment import export as ex
from palaestra.deployment.onnx_graph import preprocessing_sha256, raw_feed
from palaestra.deployment.server import build_app
from palaestra.runs import Run


@pytest.fixture(scope="module")
def exported(penguins_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("onnx") / "penguins.onnx"
    assert main(["export", str(penguins_run), "--format", "onnx", "--out", str(out)]) == 0
    return out


def birds(run: Run) -> pd.DataFrame:
    """Held-out rows with missing numbers, missing and unseen categories, and NA tokens."""
    frame = ex.held_out(run).drop(columns=["species"]).reset_index(drop=True)
    frame.loc[0, "bill_length_mm"] = np.nan
    frame.loc[1, "island"] = "Atlantis"
    frame.loc[2, "sex"] = None
    frame.loc[3, ["flipper_length_mm", "body_mass_g"]] = np.nan
    frame.loc[4, "sex"] = "NA"
    frame.loc[5, "island"] = "biscoe"  # case matters for levels, as in predict
    return frame


def test_onnxruntime_alone_on_raw_columns_gives_palaestra_predicts_answers(penguins_run, exported, tmp_path):
    run = Run.load(penguins_run)
    data, out = tmp_path / "birds.csv", tmp_path / "predictions.csv"
    birds(run).to_csv(data, index=False)
    assert main(["predict", str(penguins_run), "--data", str(data), "--out", str(out)]) == 0
    want = pd.read_csv(out)
    rows = pd.read_csv(data)  # the rows exactly as predict read them

    session = ort.InferenceSession(str(exported), providers=["CPUExecutionProvider"])
    inputs = {i.name: i.type for i in session.get_inputs()}
    assert list(inputs) == ["island", "bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g", "sex"]
    assert inputs["island"] == "tensor(string)" and inputs["body_mass_g"] == "tensor(double)"
    # A plain onnxruntime feed: numbers as float64 (NaN missing), text as strings ("" missing).
    feed = {name: (rows[name].to_numpy(np.float64) if kind == "tensor(double)"
                   else np.array(["" if pd.isna(v) else str(v) for v in rows[name]], dtype=object))
            for name, kind in inputs.items()}
    got = dict(zip([o.name for o in session.get_outputs()], session.run(None, feed), strict=True))
    assert got["label"].tolist() == want["prediction"].tolist()
    classes = run.spec.classes
    np.testing.assert_allclose(got["probabilities"], want[[f"prob_{c}" for c in classes]].to_numpy(), atol=1e-5, rtol=0)

    props = {p.key: p.value for p in onnx.load(str(exported)).metadata_props}
    assert json.loads(props["palaestra.classes"]) == classes
    assert props["palaestra.preprocessing_sha256"] == preprocessing_sha256(run.preprocessor)
    assert json.loads(props["palaestra.encoded_outside"]) == []
    meta = read_json(ex.preprocess_path(exported))
    assert meta["inputs"] == ex.RAW and meta["check"]["raw_columns"]["max_abs_diff"] <= 1e-5


def test_the_preprocessing_hash_follows_the_fitted_state(penguins_run):
    run = Run.load(penguins_run)
    before = preprocessing_sha256(run.preprocessor)
    run.preprocessor.features[1].mean += 1.0
    assert preprocessing_sha256(run.preprocessor) != before


def test_every_column_type_and_several_targets(tmp_path):
    """Numbers with gaps, true/false, a one-hot and an embedded category and a date in the graph; text encoded
    outside it (raw_feed); a category and a number target."""
    from benchmarks.mixed_table import mixed_table
    from palaestra.pipeline import train

    frame = mixed_table(240, seed=5)
    frame["vip"] = np.where(np.arange(len(frame)) % 3 == 0, "yes", "no")
    frame.loc[frame.index % 7 == 0, "vip"] = ""
    frame.loc[frame.index % 11 == 0, "income"] = np.nan
    frame["city"] = [f"c{i % 25}" for i in range(len(frame))]  # past the embedding threshold
    frame.to_csv(tmp_path / "mixed.csv", index=False)
    run = train({"seed": 0, "data": {"source": str(tmp_path / "mixed.csv"), "target": ["churned", "spend"]},
                 "model": {"hidden": [8]}, "train": {"epochs": 2, "progress": False, "early_stopping": None}},
                out=tmp_path / "run", quiet=True)
    path, _ = ex.export(run, "onnx", tmp_path / "mixed.onnx")
    props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert json.loads(props["palaestra.encoded_outside"]) == ["note"]  # the text; dates are times in the graph
    assert {i.name: i.type for i in ort.InferenceSession(str(path)).get_inputs()}["signup"] == "tensor(int64)"
    rows = ex.held_out(run).drop(columns=["churned", "spend"]).head(20).reset_index(drop=True)
    rows.loc[0, "plan"] = "enterprise"
    rows.loc[1, "city"] = "Atlantis"
    rows.loc[2, "vip"] = None
    rows.loc[3, "income"] = np.nan
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = dict(zip([o.name for o in session.get_outputs()], session.run(None, raw_feed(run.preprocessor, rows)),
                   strict=True))
    want = run.predict(rows)
    assert got["churned.label"].tolist() == want["churned_prediction"].tolist()
    np.testing.assert_allclose(got["churned.probabilities"], want[["churned_prob_no", "churned_prob_yes"]], atol=1e-5)
    np.testing.assert_allclose(got["spend.prediction"], want["spend_prediction"], rtol=1e-5)


def test_the_onnx_backend_runs_the_graph_once_per_request_without_a_frame(penguins_run, monkeypatch):
    run = Run.load(penguins_run)
    app = build_app(run, backend="onnx")
    session = app.state.predictor.runner.runner.session
    calls = []
    real_run = session.run

    class Counting:
        def __getattr__(self, name):
            return getattr(session, name)

        def run(self, *args, **kwargs):
            calls.append(1)
            return real_run(*args, **kwargs)

    app.state.predictor.runner.runner.session = Counting()
    frames = []
    real_init = pd.DataFrame.__init__

    def counting_init(self, *args, **kwargs):
        frames.append(1)
        real_init(self, *args, **kwargs)

    rows = birds(run).head(6)
    body = {"rows": json.loads(rows.to_json(orient="records"))}
    want = run.predict(rows)["prediction"].tolist()
    meta_inputs = [{"name": c, "shape": [len(rows)], "datatype": "FP32" if rows[c].dtype.kind == "f" else "BYTES",
                    "data": [None if pd.isna(v) else v for v in rows[c].tolist()]} for c in rows.columns]
    with running(app) as url:
        monkeypatch.setattr(pd.DataFrame, "__init__", counting_init)
        r = httpx.post(f"{url}/predict", json=body)
        v2 = httpx.post(f"{url}/v2/models/penguins-species/infer", json={"inputs": meta_inputs})
        monkeypatch.setattr(pd.DataFrame, "__init__", real_init)
    assert r.status_code == 200 and r.json()["predictions"] == want
    assert v2.status_code == 200 and v2.json()["outputs"][0]["data"] == want
    assert len(calls) == 2 and not frames


def test_a_column_named_like_an_output_moves_the_outputs_aside(tmp_path):
    from palaestra.pipeline import train

    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"label": rng.choice(["a", "b", "c"], 120), "logits": rng.normal(size=120)})
    frame["kind"] = np.where(frame["logits"] > 0, "up", "down")
    run = train({"seed": 0, "data": {"target": "kind"}, "model": {"hidden": [4]},
                 "train": {"epochs": 1, "progress": False, "early_stopping": None}}, source=frame, quiet=True)
    path, _ = ex.export(run, "onnx", tmp_path / "m.onnx")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["label", "logits"]
    assert {o.name for o in session.get_outputs()} == {"output.logits", "output.label", "output.probabilities"}
    rows = frame.drop(columns=["kind"]).head(5)
    got = session.run(["output.label"], raw_feed(run.preprocessor, rows))[0]
    assert got.tolist() == run.predict(rows)["prediction"].tolist()


def test_dates_become_their_calendar_parts_in_the_graph():
    """Two centuries of times (leap days, before 1970, missing and unparseable): the graph's encoding is the
    data stage's."""
    from palaestra.data.features import DatetimeFeature, FitOptions
    from palaestra.data.features.outputs import CategoryOutput
    from palaestra.data.preprocess import FeaturePreprocessor
    from palaestra.deployment.onnx_graph import preprocessing_graph

    rng = np.random.default_rng(0)
    ns = rng.integers(pd.Timestamp("1901-03-01").value, pd.Timestamp("2099-12-31").value, 2000)
    times = pd.Series(pd.to_datetime(ns)).dt.strftime("%Y-%m-%d %H:%M:%S")
    edges = pd.Series(["1900-01-01", "1904-02-29", "1969-12-31 23:59:59", "1970-01-01", "2000-02-29 12:00",
                       "2024-12-31 23:00", "2100-03-01", None, "not a date"])
    series = pd.concat([times, edges], ignore_index=True)
    feature = DatetimeFeature.fit("when", series, FitOptions())
    assert feature.time_of_day and feature.indicator
    pre = FeaturePreprocessor([feature], [CategoryOutput("y", ["a", "b"])])
    model = preprocessing_graph(pre, {"numeric"})
    model.ir_version = 10
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    frame = pd.DataFrame({"when": series})
    got = session.run(None, raw_feed(pre, frame))[0]
    np.testing.assert_allclose(got, pre.inputs(frame)[0], atol=1e-6, rtol=0)
