"""The HTTP server over real HTTP on 127.0.0.1: parity with `predict`, 401/413/422, metrics, drift, logs."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import httpx
import numpy as np
import pytest
from deploy_helpers import free_port, lazy_servers, running
from prometheus_client.parser import text_string_to_metric_families
from testkit import ROOT

from palaestra.artifacts import read_json, write_json, write_manifest
from palaestra.cli import main
from palaestra.deployment.export import held_out
from palaestra.deployment.monitoring import PredictionLog
from palaestra.deployment.server import build_app
from palaestra.runs import Run

TOKEN = "s3cret"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
LIMIT = 64 * 1024


@pytest.fixture(scope="module")
def server(penguins_run, digits_run):
    """``server(name) -> (base_url, run)``; each server starts once per module, on first use."""
    specs = {"penguins-torch": (penguins_run, {"backend": "torch", "token": TOKEN, "max_body_bytes": LIMIT}),
             "penguins-onnx": (penguins_run, {"backend": "onnx"}),
             "digits-torch": (digits_run, {"backend": "torch"}),
             "digits-onnx": (digits_run, {"backend": "onnx"})}
    with lazy_servers(specs) as get:
        yield get


def records(frame) -> list[dict]:
    return json.loads(frame.to_json(orient="records"))  # NaN -> null, as a client sends it


def body_for(run: Run, raw) -> dict:
    if hasattr(raw, "columns"):
        return {"rows": records(raw)}
    return {"inputs": raw.x.tolist()}


def metric(url: str, name: str, **labels) -> float:
    text = httpx.get(f"{url}/metrics").text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return 0.0


@pytest.mark.parametrize("name", ["penguins-torch", "penguins-onnx", "digits-torch", "digits-onnx"])
def test_predictions_equal_run_predict(server, name):
    url, run = server(name)
    raw = held_out(run)
    r = httpx.post(f"{url}/predict", json=body_for(run, raw), headers=AUTH, timeout=30)
    assert r.status_code == 200, r.text
    got = r.json()
    want = run.predict(raw if hasattr(raw, "columns") else raw.x)
    assert got["predictions"] == want["prediction"].tolist()
    probs = np.array([[p[str(c)] for c in run.spec.classes] for p in got["probabilities"]])
    np.testing.assert_allclose(probs, want[[f"prob_{c}" for c in run.spec.classes]].to_numpy(), atol=1e-5)


def test_missing_values_and_unseen_categories_are_handled_as_in_predict(server):
    url, run = server("penguins-torch")
    frame = held_out(run).head(4).copy()
    frame.loc[0, "bill_length_mm"] = np.nan
    frame.loc[1, "island"] = "Atlantis"
    frame.loc[2, "sex"] = None
    r = httpx.post(f"{url}/predict", json={"rows": records(frame)}, headers=AUTH)
    assert r.status_code == 200, r.text
    assert r.json()["predictions"] == run.predict(frame)["prediction"].tolist()


def test_bearer_token(server):
    url, run = server("penguins-torch")
    body = {"rows": records(held_out(run).head(1))}
    assert httpx.post(f"{url}/predict", json=body).status_code == 401
    wrong = httpx.post(f"{url}/predict", json=body, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and wrong.headers["www-authenticate"] == "Bearer"
    assert httpx.post(f"{url}/predict", json=body, headers=AUTH).status_code == 200
    assert httpx.get(f"{url}/health").status_code == 200


def test_oversized_bodies_get_413(server):
    url, run = server("penguins-torch")
    rows = records(held_out(run)) * 20  # well over 64 KiB of JSON
    big = json.dumps({"rows": rows}).encode()
    assert len(big) > LIMIT
    assert httpx.post(f"{url}/predict", content=big, headers={**AUTH, "content-type": "application/json"}).status_code == 413
    # Chunked upload: no Content-Length to check up front; counted as it arrives.
    chunks = (big[i:i + 8192] for i in range(0, len(big), 8192))
    assert httpx.post(f"{url}/predict", content=chunks, headers={**AUTH, "content-type": "application/json"}).status_code == 413
    assert httpx.get(f"{url}/health").json()["status"] == "ok"


def test_schema_violations_get_422_naming_the_field(server):
    url, run = server("penguins-torch")
    row = records(held_out(run).head(1))[0]
    no_island = {k: v for k, v in row.items() if k != "island"}
    cases = [({"rows": [no_island]}, "rows[0].island"),
             ({"rows": [{**row, "bill_length_mm": "long"}]}, "rows[0].bill_length_mm"),
             ({"rows": [{**row, "body_mass_g": [1, 2]}]}, "rows[0].body_mass_g"),
             ({"rows": "all of them"}, "rows"),
             ({"rows": []}, "rows"),
             ({"row": [row]}, "rows")]
    for body, field in cases:
        r = httpx.post(f"{url}/predict", json=body, headers=AUTH)
        assert r.status_code == 422, (body, r.text)
        assert r.json()["message"].startswith(field), r.json()
    bad_json = httpx.post(f"{url}/predict", content=b'{"rows": [', headers={**AUTH, "content-type": "application/json"})
    assert bad_json.status_code == 422
    infinite = httpx.post(f"{url}/predict", content=json.dumps({"rows": [{**row, "bill_depth_mm": float("inf")}]}),
                          headers={**AUTH, "content-type": "application/json"})
    assert infinite.status_code == 422 and "bill_depth_mm" in infinite.text


def test_array_shape_and_type_errors_get_422(server):
    url, _ = server("digits-torch")
    cases = [({"inputs": np.zeros((2, 7, 7)).tolist()}, "8, 8)"),
             ({"inputs": [[[0.0] * 8] * 8, [[0.0] * 8] * 7]}, "inputs"),
             ({"inputs": [[["a"] * 8] * 8]}, "inputs"),
             ({"inputs": 3}, "inputs")]
    for body, mention in cases:
        r = httpx.post(f"{url}/predict", json=body)
        assert r.status_code == 422, (body, r.text)
        assert mention in r.text


def test_metrics_count_the_requests_just_made(server):
    url, run = server("penguins-onnx")
    body = {"rows": records(held_out(run).head(5))}
    ok_before = metric(url, "palaestra_requests_total", endpoint="/predict", status="200")
    bad_before = metric(url, "palaestra_requests_total", endpoint="/predict", status="422")
    rows_before = metric(url, "palaestra_predicted_rows_total")
    predictions = [httpx.post(f"{url}/predict", json=body).json()["predictions"] for _ in range(3)]
    httpx.post(f"{url}/predict", json={"rows": []})
    assert metric(url, "palaestra_requests_total", endpoint="/predict", status="200") == ok_before + 3
    assert metric(url, "palaestra_requests_total", endpoint="/predict", status="422") == bad_before + 1
    assert metric(url, "palaestra_predicted_rows_total") == rows_before + 15
    assert metric(url, "palaestra_request_latency_seconds_count", endpoint="/predict") >= 4
    first = predictions[0][0]
    assert metric(url, "palaestra_predictions_total", **{"class": first}) >= 3


def test_drift_rises_when_shifted_inputs_arrive(penguins_run):
    run = Run.load(penguins_run)
    rows = held_out(run)
    with running(build_app(run)) as url:
        assert httpx.post(f"{url}/predict", json={"rows": records(rows)}).status_code == 200
        calm = metric(url, "palaestra_feature_drift_psi", feature="flipper_length_mm")
        steady = metric(url, "palaestra_feature_drift_psi", feature="bill_length_mm")
        moved = rows.copy()
        moved["flipper_length_mm"] = moved["flipper_length_mm"] + 40
        for _ in range(3):
            assert httpx.post(f"{url}/predict", json={"rows": records(moved)}).status_code == 200
        shifted = metric(url, "palaestra_feature_drift_psi", feature="flipper_length_mm")
        assert calm < 0.5 and shifted > 1.0 and shifted > 4 * calm
        # A feature that did not move stays where it was (the same rows were sent again).
        assert metric(url, "palaestra_feature_drift_psi", feature="bill_length_mm") == pytest.approx(steady, abs=1e-9)
        assert metric(url, "palaestra_drift_rows") == 4 * len(rows)


def test_health_warns_about_environment_mismatch_and_prediction_log_is_opt_in(penguins_run, tmp_path, caplog):
    copy = tmp_path / "run"
    shutil.copytree(penguins_run, copy)
    env = read_json(copy / "env.json")
    env["packages"]["torch"] = "1.0.0"
    write_json(copy / "env.json", env)
    # Every file a manifest lists is verified: re-sign, as for a run trained on a machine with other versions.
    write_manifest(copy, list(read_json(copy / "manifest.json")["files"]))
    run = Run.load(copy)
    log = PredictionLog(tmp_path / "predictions.jsonl", sample=1.0)
    with caplog.at_level("WARNING", logger="palaestra.serve"), running(build_app(run, prediction_log=log)) as url:
        health = httpx.get(f"{url}/health").json()
        assert any("torch" in w and "1.0.0" in w for w in health["environment_warnings"])
        rows = records(held_out(run).head(3))
        assert httpx.post(f"{url}/predict", json={"rows": rows}).status_code == 200
    assert any("environment differs" in r.getMessage() for r in caplog.records)
    logged = [json.loads(line) for line in (tmp_path / "predictions.jsonl").read_text().splitlines()]
    assert [e["input"]["island"] for e in logged] == [r["island"] for r in rows]


def test_a_slow_prediction_times_out_with_503(penguins_run, monkeypatch):
    from palaestra.deployment import server as server_module

    answers = server_module.answers

    def slow(decoded):  # in the worker thread: a prediction that takes 1 s (a near-zero timeout alone races a
        time.sleep(1.0)  # two-row prediction that finishes before the event loop looks at the clock)
        return answers(decoded)

    monkeypatch.setattr(server_module, "answers", slow)
    run = Run.load(penguins_run)
    with running(build_app(run, timeout=0.2)) as url:
        r = httpx.post(f"{url}/predict", json={"rows": records(held_out(run).head(2))})
        assert r.status_code == 503 and "longer than 0.2 s" in r.text


def test_openapi_fuzz_finds_no_server_errors(server):
    import schemathesis
    from hypothesis import HealthCheck, given, settings

    url, _ = server("penguins-torch")
    assert httpx.get(f"{url}/openapi.json").status_code == 200
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
    statuses = []

    predict = schema["/predict"]["POST"]
    mode = schemathesis.GenerationMode

    # Valid requests and schema-violating ones (negative mode), mixed.
    @given(case=predict.as_strategy(mode.POSITIVE) | predict.as_strategy(mode.NEGATIVE))
    @settings(max_examples=50, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    def fuzz(case):
        response = case.call(base_url=url, headers=AUTH)
        statuses.append(response.status_code)
        assert response.status_code < 500, response.text

    fuzz()
    assert len(statuses) >= 20 and any(s == 200 for s in statuses) and any(s == 422 for s in statuses)


def test_serve_command_finishes_in_flight_requests_on_sigterm(penguins_run):
    port = free_port()
    env = {**os.environ, "PALAESTRA_TEST_TOKEN": TOKEN}
    proc = subprocess.Popen([sys.executable, "-m", "palaestra", "serve", str(penguins_run), "--port", str(port),
                             "--token-env", "PALAESTRA_TEST_TOKEN"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 120
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None and time.time() < deadline, proc.stdout.read().decode()
            time.sleep(0.2)
        run = Run.load(penguins_run)
        body = json.dumps({"rows": records(held_out(run).head(3))}).encode()
        head = (f"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                f"Authorization: Bearer {TOKEN}\r\nContent-Length: {len(body)}\r\n\r\n").encode()
        with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
            s.sendall(head + body[:10])  # the request is now in flight: half its body has arrived
            time.sleep(0.5)
            proc.send_signal(signal.SIGTERM)
            time.sleep(0.5)
            assert proc.poll() is None  # still running: waiting for the in-flight request
            s.sendall(body[10:])
            reply = b""
            while chunk := s.recv(65536):
                reply += chunk
        assert reply.startswith(b"HTTP/1.1 200"), reply[:300]
        assert json.loads(reply.split(b"\r\n\r\n", 1)[1])["predictions"] == run.predict(held_out(run).head(3))["prediction"].tolist()
        # uvicorn re-raises the captured SIGTERM after its graceful shutdown
        assert proc.wait(60) in (0, -signal.SIGTERM)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_serve_refuses_a_tampered_run(penguins_run, tmp_path, capsys, monkeypatch):
    copy = tmp_path / "run"
    shutil.copytree(penguins_run, copy)
    weights = copy / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])
    assert main(["serve", str(copy), "--port", str(free_port())]) == 2  # refused before it listens
    err = capsys.readouterr().err
    assert "truncated or altered" in err and "Traceback" not in err
    monkeypatch.delenv("NO_SUCH_TOKEN_VAR", raising=False)
    assert main(["serve", str(penguins_run), "--token-env", "NO_SUCH_TOKEN_VAR"]) == 2
    assert "NO_SUCH_TOKEN_VAR" in capsys.readouterr().err
