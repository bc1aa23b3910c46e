"""The standard protocols on `palaestra serve`, over real HTTP on 127.0.0.1: the Open Inference Protocol (KServe
v2, through tritonclient and through requests built as the protocol's examples show) and MLflow's /invocations
give `palaestra predict`'s answers for the same rows; malformed requests get 4xx in the protocol's shape."""

from __future__ import annotations

import json

import httpx
import numpy as np
import pandas as pd
import pytest
from deploy_helpers import lazy_servers

from benchmarks.mixed_table import mixed_table
from palaestra.cli import main
from palaestra.deployment.export import held_out
from palaestra.runs import Run

http = pytest.importorskip("tritonclient.http")

TOKEN = "s3cret"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def mixed_run(tmp_path_factory):
    """A regression run on a table with every column type: numbers, a category, text, a date, true/false."""
    from palaestra.pipeline import train

    root = tmp_path_factory.mktemp("mixed")
    frame = mixed_table(300, seed=3).drop(columns=["churned"])
    frame["vip"] = np.where(np.arange(len(frame)) % 3 == 0, "true", "false")
    frame.loc[frame.index % 7 == 0, "vip"] = ""
    frame.loc[frame.index % 11 == 0, "income"] = np.nan
    frame.to_csv(root / "mixed.csv", index=False)
    out = root / "run"
    train({"seed": 0, "data": {"source": str(root / "mixed.csv"), "target": "spend"}, "model": {"hidden": [16]},
           "train": {"epochs": 3, "progress": False, "early_stopping": None}}, out=out, quiet=True)
    return out


@pytest.fixture(scope="module")
def server(penguins_run, digits_run, mixed_run):
    """``server(name) -> (base_url, run)``; each starts once per module, on first use."""
    specs = {"penguins-torch": (penguins_run, {"backend": "torch", "token": TOKEN}),
             "penguins-onnx": (penguins_run, {"backend": "onnx", "token": TOKEN}),
             "digits": (digits_run, {"backend": "torch"}),
             "mixed": (mixed_run, {"backend": "torch", "model_name": "spend"})}
    with lazy_servers(specs) as get:
        yield get


def model_name(url: str) -> str:
    return httpx.get(f"{url}/health").json()["model_name"]


def cli_predict(run: Run, frame: pd.DataFrame, tmp_path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``palaestra predict`` on ``frame`` written as CSV: (the rows as the CLI read them, its predictions)."""
    data, out = tmp_path / "rows.csv", tmp_path / "predictions.csv"
    frame.to_csv(data, index=False)
    assert main(["predict", str(run.path), "--data", str(data), "--out", str(out)]) == 0
    return pd.read_csv(data), pd.read_csv(out)


def rows_with_gaps(run: Run, n: int = 12) -> pd.DataFrame:
    """Held-out rows with a missing number, an unseen category and a missing category."""
    frame = held_out(run).head(n).drop(columns=run.preprocessor.targets).reset_index(drop=True)
    frame.loc[0, "bill_length_mm"] = np.nan
    frame.loc[1, "island"] = "Atlantis"
    frame.loc[2, "sex"] = None
    return frame


def value(v):
    """A frame value as JSON: None where missing."""
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return None
    return v.item() if isinstance(v, np.generic) else v


def v2_request(frame: pd.DataFrame, meta: dict) -> dict:
    """An inference request as the protocol's examples write one: a tensor per input, flat data, datatypes
    and shapes as the model metadata gives them (null for a missing value)."""
    inputs = []
    for m in meta["inputs"]:
        col = [value(v) for v in frame[m["name"]].tolist()]
        if m["datatype"] == "BYTES":
            col = [None if v is None else str(v) for v in col]
        elif m["datatype"] == "BOOL":
            col = [None if v is None else str(v).lower() == "true" for v in col]
        inputs.append({"name": m["name"], "shape": [len(frame)], "datatype": m["datatype"], "data": col})
    return {"id": "42", "inputs": inputs}


def triton_inputs(frame: pd.DataFrame, meta: dict, binary: bool) -> list:
    inputs = []
    for m in meta["inputs"]:
        col = frame[m["name"]]
        if m["datatype"] == "BYTES":
            arr = np.array([b"" if value(v) is None else str(v).encode() for v in col], dtype=object)
        else:
            arr = col.to_numpy(np.float32)
        tensor = http.InferInput(m["name"], [len(frame)], m["datatype"])
        tensor.set_data_from_numpy(arr, binary_data=binary)
        inputs.append(tensor)
    return inputs


def expected(want: pd.DataFrame, classes: list) -> tuple[list, np.ndarray]:
    return want["prediction"].tolist(), want[[f"prob_{c}" for c in classes]].to_numpy()


@pytest.mark.parametrize("name", ["penguins-torch", "penguins-onnx"])
def test_v2_and_invocations_give_palaestra_predicts_answers(server, name, tmp_path):
    url, run = server(name)
    rows, want = cli_predict(run, rows_with_gaps(run), tmp_path)
    labels, probs = expected(want, run.spec.classes)
    model = model_name(url)
    meta = httpx.get(f"{url}/v2/models/{model}", headers=AUTH).json()
    assert [m["name"] for m in meta["inputs"]] == run.preprocessor.feature_columns
    assert {m["name"]: m["datatype"] for m in meta["inputs"]}["island"] == "BYTES"
    assert {m["name"]: m["datatype"] for m in meta["inputs"]}["body_mass_g"] == "FP32"
    assert json.loads(meta["parameters"]["classes"]) == run.spec.classes

    # Requests as the protocol's examples show them (JSON tensors).
    r = httpx.post(f"{url}/v2/models/{model}/infer", json=v2_request(rows, meta), headers=AUTH)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["id"] == "42" and body["model_name"] == model
    out = {o["name"]: o for o in body["outputs"]}
    assert out["label"]["data"] == labels
    assert out["probabilities"]["shape"] == [len(rows), len(run.spec.classes)]
    np.testing.assert_allclose(np.reshape(out["probabilities"]["data"], (len(rows), -1)), probs, atol=1e-5)

    # tritonclient, with its binary tensor extension (its default) and with JSON tensors.
    client = http.InferenceServerClient(url.removeprefix("http://"))
    assert client.is_server_live() and client.is_server_ready() and client.is_model_ready(model, headers=dict(AUTH))
    for binary in (True, False):
        outputs = None if binary else [http.InferRequestedOutput("label", binary_data=False),
                                       http.InferRequestedOutput("probabilities", binary_data=False)]
        result = client.infer(model, triton_inputs(rows, meta, binary), outputs=outputs, headers=dict(AUTH))  # (it adds its own headers to the dict)
        got = [v.decode() if isinstance(v, bytes) else v for v in result.as_numpy("label").tolist()]
        assert got == labels
        np.testing.assert_allclose(result.as_numpy("probabilities"), probs, atol=1e-5)

    # MLflow's scoring protocol, in each of its input formats.
    split = json.loads(rows.to_json(orient="split", index=False))
    records = json.loads(rows.to_json(orient="records"))
    columns = {c: [value(v) for v in rows[c].tolist()] for c in rows.columns}
    for payload in ({"dataframe_split": split}, {"dataframe_records": records}, {"instances": records},
                    {"inputs": columns}):
        r = httpx.post(f"{url}/invocations", json=payload, headers=AUTH)
        assert r.status_code == 200, (payload.keys(), r.text)
        predictions = r.json()["predictions"]
        assert [p["prediction"] for p in predictions] == labels
        np.testing.assert_allclose([[p[f"prob_{c}"] for c in run.spec.classes] for p in predictions], probs, atol=1e-5)


def test_every_column_type_and_regression_over_both_protocols(server, tmp_path):
    url, run = server("mixed")
    frame = held_out(run).head(10).drop(columns=["spend"]).reset_index(drop=True)
    frame.loc[0, "plan"] = "enterprise"  # unseen
    frame.loc[1, "signup"] = None
    frame.loc[2, "note"] = None
    rows, want = cli_predict(run, frame, tmp_path)
    meta = httpx.get(f"{url}/v2/models/spend").json()
    types = {m["name"]: m["datatype"] for m in meta["inputs"]}
    assert types == {"income": "FP32", "plan": "BYTES", "note": "BYTES", "signup": "BYTES", "vip": "BOOL"}
    assert meta["outputs"] == [{"name": "prediction", "datatype": "FP64", "shape": [-1]}]
    r = httpx.post(f"{url}/v2/models/spend/infer", json=v2_request(rows, meta))
    assert r.status_code == 200, r.text
    np.testing.assert_allclose(r.json()["outputs"][0]["data"], want["prediction"], rtol=1e-6)
    r = httpx.post(f"{url}/invocations", json={"dataframe_split": json.loads(rows.to_json(orient="split"))})
    assert r.status_code == 200, r.text
    np.testing.assert_allclose([p["prediction"] for p in r.json()["predictions"]], want["prediction"], rtol=1e-6)


def test_an_array_model_takes_one_tensor(server):
    url, run = server("digits")
    raw = held_out(run)
    x = raw.x[:6]
    want = run.predict(x)
    model = model_name(url)
    meta = httpx.get(f"{url}/v2/models/{model}").json()
    assert len(meta["inputs"]) == 1 and meta["inputs"][0]["datatype"] == "FP32"
    assert meta["inputs"][0]["shape"][1:] == list(x.shape[1:]) or meta["inputs"][0]["shape"][1:] == [1, *x.shape[1:]]
    name = meta["inputs"][0]["name"]
    body = {"inputs": [{"name": name, "shape": list(x.shape), "datatype": "FP32", "data": x.ravel().tolist()}]}
    r = httpx.post(f"{url}/v2/models/{model}/infer", json=body)
    assert r.status_code == 200, r.text
    out = {o["name"]: o for o in r.json()["outputs"]}
    assert out["label"]["datatype"] == "INT64" and out["label"]["data"] == want["prediction"].tolist()
    client = http.InferenceServerClient(url.removeprefix("http://"))
    tensor = http.InferInput(name, list(x.shape), "FP32")
    tensor.set_data_from_numpy(x.astype(np.float32))
    assert client.infer(model, [tensor]).as_numpy("label").tolist() == want["prediction"].tolist()
    r = httpx.post(f"{url}/invocations", json={"instances": x.tolist()})
    assert r.status_code == 200 and [p["prediction"] for p in r.json()["predictions"]] == want["prediction"].tolist()


def test_malformed_v2_requests_get_4xx_in_the_protocols_shape(server):
    url, run = server("penguins-torch")
    model = model_name(url)
    meta = httpx.get(f"{url}/v2/models/{model}", headers=AUTH).json()
    good = v2_request(rows_with_gaps(run, 3), meta)
    first = good["inputs"][0]

    def with_first(**change):
        return {**good, "inputs": [{**first, **change}, *good["inputs"][1:]]}

    cases = [
        (b"{", 400, "not valid JSON"),
        (b"[1, 2]", 400, "JSON object"),
        ({"inputs": []}, 400, "inputs"),
        ({"inputs": good["inputs"][1:]}, 400, "missing input: island"),
        ({"inputs": [*good["inputs"], {**first, "name": "wings"}]}, 400, "unknown input: wings"),
        ({"inputs": [*good["inputs"], first]}, 400, "given twice"),
        (with_first(shape=[4]), 400, "holds 4 values"),
        (with_first(shape=[-3]), 400, "shape"),
        (with_first(shape=[3, 2]), 400, "holds 6 values"),
        (with_first(datatype="TEXT"), 400, "datatype"),
        (with_first(datatype="FP32"), 400, "element 0"),
        (with_first(data=[{"a": 1}, "x", "y"]), 400, "element 0"),
        ({"inputs": [{**i, "shape": [2], "data": i["data"][:2]} if i["name"] == "sex" else i
                     for i in good["inputs"]]}, 400, "rows"),
        ({**good, "outputs": [{"name": "score"}]}, 400, "unknown output"),
        ({"inputs": [{**i, "data": ["heavy"] * 3, "datatype": "BYTES"} if i["name"] == "body_mass_g" else i
                     for i in good["inputs"]]}, 400, "body_mass_g"),
        ({**good, "id": 7}, 400, "id"),
        ({"inputs": "all"}, 400, "inputs"),
    ]
    for body, status, mention in cases:
        content = body if isinstance(body, bytes) else json.dumps(body).encode()
        r = httpx.post(f"{url}/v2/models/{model}/infer", content=content,
                       headers={**AUTH, "content-type": "application/json"})
        assert r.status_code == status, (body, r.text)
        assert set(r.json()) == {"error"} and mention in r.json()["error"], (body, r.json())
    # Binary extension: a header length past the body, a tensor claiming more bytes than were sent.
    head = json.dumps({"inputs": [{**first, "data": None}]}).encode()
    r = httpx.post(f"{url}/v2/models/{model}/infer", content=head, headers={**AUTH, "inference-header-content-length": "99999"})
    assert r.status_code == 400 and "beyond" in r.json()["error"]
    claim = {"inputs": [{k: v for k, v in i.items() if k != "data"} | {"parameters": {"binary_data_size": 64}}
                        for i in good["inputs"]]}
    head = json.dumps(claim).encode()
    r = httpx.post(f"{url}/v2/models/{model}/infer", content=head + b"\0" * 8,
                   headers={**AUTH, "inference-header-content-length": str(len(head))})
    assert r.status_code == 400 and "binary_data_size" in r.json()["error"]
    # Unknown models and versions, unknown paths, wrong methods: 404/405, still {"error": ...}.
    for method, path, status in [("POST", "/v2/models/nope/infer", 404), ("GET", "/v2/models/nope", 404),
                                 ("GET", f"/v2/models/{model}/versions/7", 404), ("GET", "/v2/elsewhere", 404),
                                 ("GET", f"/v2/models/{model}/infer", 405)]:
        r = httpx.request(method, url + path, json=good, headers=AUTH)
        assert r.status_code == status and set(r.json()) == {"error"}, (path, r.text)
    # Without the token: 401 in the same shape; the health probes stay open.
    r = httpx.post(f"{url}/v2/models/{model}/infer", json=good)
    assert r.status_code == 401 and set(r.json()) == {"error"}
    assert httpx.get(f"{url}/v2/health/live").json() == {"live": True}
    assert httpx.get(f"{url}/v2/health/ready").json() == {"ready": True}


def test_malformed_invocations_get_4xx_in_mlflows_shape(server):
    url, run = server("penguins-torch")
    records = json.loads(rows_with_gaps(run, 2).to_json(orient="records"))
    cases = [
        (b"{", 400, "valid JSON"),
        ({"rows": records}, 400, "exactly one of"),
        ({"dataframe_records": records, "instances": records}, 400, "exactly one of"),
        ({"dataframe_split": {"columns": ["island"], "data": [["Biscoe", 1]]}}, 400, "dataframe_split.data[0]"),
        ({"dataframe_split": records}, 400, "dataframe_split"),
        ({"dataframe_records": [{**records[0], "island": ["a", "b"]}]}, 400, "dataframe_records[0]"),
        ({"dataframe_records": [{k: v for k, v in records[0].items() if k != "island"}]}, 400, "island"),
        ({"dataframe_records": [{**records[0], "bill_length_mm": "long"}]}, 400, "bill_length_mm"),
        ({"dataframe_records": []}, 400, "no rows"),
        ({"inputs": {"island": ["a", "b"], "sex": ["male"]}}, 400, "one length"),
    ]
    for body, status, mention in cases:
        content = body if isinstance(body, bytes) else json.dumps(body).encode()
        r = httpx.post(f"{url}/invocations", content=content, headers={**AUTH, "content-type": "application/json"})
        assert r.status_code == status, (body, r.text)
        assert r.json()["error_code"] == "BAD_REQUEST" and mention in r.json()["message"], (body, r.json())
    r = httpx.post(f"{url}/invocations", content=b"a,b\n1,2\n", headers={**AUTH, "content-type": "text/plain"})
    assert r.status_code == 415
    assert httpx.post(f"{url}/invocations", json={"dataframe_records": records}).status_code == 401
    assert httpx.get(f"{url}/ping").status_code == 200


def test_random_protocol_requests_never_get_a_server_error(server):
    """Arbitrary JSON, and requests that are nearly right, at /v2/.../infer and /invocations: always 2xx or 4xx
    in the protocol's shape."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    url, run = server("penguins-onnx")
    model = model_name(url)
    meta = httpx.get(f"{url}/v2/models/{model}", headers=AUTH).json()
    good = v2_request(rows_with_gaps(run, 2), meta)
    scalars = st.none() | st.booleans() | st.integers(-10**20, 10**20) | st.floats() | st.text(max_size=8)
    values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner,
                                                                                             max_size=4), max_leaves=12)
    names = st.sampled_from([m["name"] for m in meta["inputs"]] + ["x", ""])
    tensor = st.fixed_dictionaries({"name": names, "shape": st.lists(st.integers(-1, 3), max_size=3) | values,
                                    "datatype": st.sampled_from(["BYTES", "FP32", "INT64", "BOOL", "FP16", "nope"]),
                                    "data": values})
    nearly = st.builds(lambda i, t: {**good, "inputs": [*good["inputs"][:i], t, *good["inputs"][i + 1:]]},
                       st.integers(0, len(good["inputs"]) - 1), tensor)
    mlflow = st.dictionaries(st.sampled_from(["dataframe_split", "dataframe_records", "instances", "inputs", "params"]),
                             values, min_size=1, max_size=2)
    with httpx.Client(headers=AUTH, timeout=30) as client:

        @given(body=values | nearly | mlflow)
        @settings(max_examples=120, deadline=None, database=None, derandomize=True, suppress_health_check=list(HealthCheck))
        def fuzz(body):
            content = json.dumps(body).encode()
            for path, keys in ((f"/v2/models/{model}/infer", {"error"}), ("/invocations", {"error_code", "message"})):
                r = client.post(url + path, content=content, headers={"content-type": "application/json"})
                assert r.status_code < 500, (path, body, r.text)
                assert r.status_code == 200 or set(r.json()) == keys, (path, body, r.text)

        fuzz()
