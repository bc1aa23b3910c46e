"""Load on ``palaestra serve`` over loopback: batch-1 latency (p50, p99), requests/s and errors, per backend and
protocol, against a bare onnxruntime call on the same row in the same run (the floor the server adds to).

    .venv/bin/python benchmarks/serve_load.py [--run RUN] [--backends torch onnx] [--protocols predict v2]
                                              [--requests 2000] [--concurrency 1 8] [--write]

The server is the real command (``palaestra serve RUN --backend B``) in its own process; this process is the
client: *concurrency* threads, each with one kept-alive ``http.client`` connection, sending one request at a
time, each one raw row of the run's test split (cycled), as ``POST /predict``, a KServe v2 ``infer`` request
(JSON tensors) or an MLflow ``/invocations`` request. The floor: the run's self-contained ONNX file under
onnxruntime in this process, fed the same rows one at a time (``session.run`` alone, and with ``raw_feed``
turning the row into its inputs). Without ``--run``, a penguins MLP (hidden [64, 64]) is trained first.
``--write`` replaces the "Serving" section of BENCHMARKS.md (appending it if missing).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import machine, machine_line, markdown_table  # noqa: E402

SECTION = "## Serving"
PATHS = {"predict": "/predict", "v2": "/v2/models/{name}/infer", "invocations": "/invocations"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def trained_run(root: Path) -> Path:
    from palaestra.pipeline import train

    out = root / "penguins"
    train({"seed": 0, "data": {"source": "penguins"}, "model": {"hidden": [64, 64]},
           "train": {"epochs": 30, "progress": False}}, out=out, quiet=True)
    return out


def test_rows(run_dir: Path) -> list[dict]:
    """The run's raw test-split rows as JSON records (null for missing), or {"x": array} for an array run."""
    from palaestra.deployment.export import held_out
    from palaestra.runs import Run

    run = Run.load(run_dir)
    raw = held_out(run)
    if hasattr(raw, "columns"):
        raw = raw.drop(columns=[c for c in run.preprocessor.targets if c in raw.columns])
        return json.loads(raw.to_json(orient="records"))
    return [{"x": x} for x in raw.x.tolist()]


def bodies_for(protocol: str, rows: list[dict], meta: dict | None) -> list[bytes]:
    """One request body per row, in the protocol's shape."""
    out = []
    for row in rows:
        if protocol == "predict":
            body = {"rows": [row]} if "x" not in row else {"inputs": [row["x"]]}
        elif protocol == "invocations":
            body = {"dataframe_records": [row]} if "x" not in row else {"instances": [row["x"]]}
        else:
            inputs = []
            for m in meta["inputs"]:
                value = row.get(m["name"], row.get("x"))
                if m["datatype"] == "BYTES":
                    value = None if value is None else str(value)
                shape = [1, *(np.shape(value) if isinstance(value, list) else ())]
                inputs.append({"name": m["name"], "shape": shape, "datatype": m["datatype"],
                               "data": value if isinstance(value, list) else [value]})
            body = {"inputs": inputs}
        out.append(json.dumps(body).encode())
    return out


def start_server(run_dir: Path, backend: str, port: int, cpus: set[int] | None = None) -> subprocess.Popen:
    """``palaestra serve`` in a subprocess (on ``cpus`` only, when given), once it answers /health."""
    pin = (lambda: os.sched_setaffinity(0, cpus)) if cpus else None
    proc = subprocess.Popen([sys.executable, "-m", "palaestra", "serve", str(run_dir), "--port", str(port),
                             "--backend", backend], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=ROOT,
                            preexec_fn=pin)
    deadline = time.time() + 180
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited: {proc.stderr.read().decode()[-2000:]}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            conn.request("GET", "/health")
            if conn.getresponse().status == 200:
                conn.close()
                return proc
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("server did not start in 180 s")


def load(port: int, path: str, bodies: list[bytes], requests: int, concurrency: int) -> dict:
    """``requests`` POSTs from ``concurrency`` threads, each on its own kept-alive connection, one request in
    flight per thread; latency per request as the client sees it, errors, requests/s."""
    latencies: list[float] = []
    errors = [0]
    counter = iter(range(requests))
    lock = threading.Lock()
    headers = {"Content-Type": "application/json", "Connection": "keep-alive"}

    def worker(warm: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        for body in bodies[:warm]:  # warm-up: the connection, first calls
            conn.request("POST", path, body, headers)
            conn.getresponse().read()
        mine = []
        while True:
            with lock:
                i = next(counter, None)
            if i is None:
                break
            started = time.perf_counter()
            try:
                conn.request("POST", path, bodies[i % len(bodies)], headers)
                response = conn.getresponse()
                response.read()
                ok = response.status == 200
            except (OSError, http.client.HTTPException):
                ok = False
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            mine.append(time.perf_counter() - started)
            if not ok:
                with lock:
                    errors[0] += 1
        conn.close()
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=worker, args=(10,)) for _ in range(concurrency)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    return {"requests": len(latencies), "errors": errors[0], "rps": len(latencies) / wall, **percentiles(latencies)}


def percentiles(seconds: list[float]) -> dict:
    ordered = sorted(seconds)
    return {"p50_ms": statistics.median(ordered) * 1e3,
            "p99_ms": ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))] * 1e3}


def bare_onnxruntime(run_dir: Path, rows: list[dict], calls: int, root: Path) -> dict[str, dict]:
    """The floor: the run's self-contained ONNX file under onnxruntime in this process, batch 1 (one thread)."""
    from palaestra.deployment.export import RawOnnxRunner, export, raw_columns
    from palaestra.runs import Run

    run = Run.load(run_dir)
    if not raw_columns(run):
        return {}
    path, _ = export(run, "onnx", root / "bare.onnx")
    runner = RawOnnxRunner(path, run.preprocessor, threads=1)
    columns = [{k: [v] for k, v in row.items()} for row in rows]
    feeds = [runner.feed(c) for c in columns]
    out: dict[str, dict] = {}
    for what, step in (("session.run", lambda i: runner.runner.session.run([runner.logits], feeds[i % len(feeds)])),
                       ("raw_feed + session.run",
                        lambda i: runner.runner.session.run([runner.logits], runner.feed(columns[i % len(columns)])))):
        for i in range(20):
            step(i)
        times = []
        for i in range(calls):
            started = time.perf_counter()
            step(i)
            times.append(time.perf_counter() - started)
        out[what] = percentiles(times)
    return out


def compression_table(root: Path, repeats: int) -> str:
    """``palaestra compress`` on a wide MLP (hidden [512, 512]): size, latency and accuracy before and after."""
    from palaestra.deployment.compress import compress
    from palaestra.pipeline import train
    from palaestra.runs import Run

    wide = root / "wide"
    train({"seed": 0, "data": {"source": "penguins"}, "model": {"hidden": [512, 512]},
           "train": {"epochs": 20, "progress": False}}, out=wide, quiet=True)
    rows = []
    for name, options in (("int8", {"quantize": "int8"}), ("prune 0.5 + int8", {"prune": 0.5, "quantize": "int8"}),
                          ("prune 0.5, fine-tune 2 epochs, int8",
                           {"prune": 0.5, "quantize": "int8", "finetune_epochs": 2})):
        _, r = compress(Run.load(wide), root / name.replace(" ", "_").replace(",", ""), repeats=repeats, **options)
        b, a = r["before"], r["after"]
        rows.append([name, f"{b['file_bytes'] / 1024:.0f} → {a['file_bytes'] / 1024:.0f} KiB ({r['size_ratio']:.2f}x)",
                     f"{b['latency_ms_batch1']:.3f} → {a['latency_ms_batch1']:.3f}",
                     f"{b['latency_ms_batch256']:.3f} → {a['latency_ms_batch256']:.3f}",
                     f"{b['accuracy']:.4f} → {a['accuracy']:.4f} ({b['test_rows']} rows)"])
    return markdown_table(["compression", "model.safetensors", "latency batch 1, ms (median)",
                           "latency batch 256, ms (median)", "test accuracy"], rows)


def write_section(text: str) -> None:
    """Replace our section of BENCHMARKS.md (from '## Serving' to the next '## '), or append it."""
    path = ROOT / "BENCHMARKS.md"
    doc = path.read_text() if path.is_file() else "# Benchmarks\n"
    start = doc.find(SECTION + "\n")
    if start == -1:
        doc = doc.rstrip("\n") + "\n\n" + text
    else:
        end = doc.find("\n## ", start + len(SECTION))
        doc = doc[:start] + text + (doc[end + 1:] if end != -1 else "")
    path.write_text(doc)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", help="run directory to serve (default: train a penguins MLP first)")
    p.add_argument("--backends", nargs="+", default=["torch", "onnx"])
    p.add_argument("--protocols", nargs="+", default=["predict", "v2"], choices=sorted(PATHS))
    p.add_argument("--requests", type=int, default=2000)
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 8])
    p.add_argument("--compress", action="store_true", help="also compress a wide MLP and report the table")
    p.add_argument("--write", action="store_true", help="write the Serving section of BENCHMARKS.md")
    p.add_argument("--pin", action="store_true", help="the server on the last CPU, this client on the others "
                   "(so the two do not take turns on one core)")
    args = p.parse_args()
    server_cpus = None
    if args.pin:
        cpus = sorted(os.sched_getaffinity(0))
        if len(cpus) < 2:
            raise SystemExit("--pin needs at least 2 CPUs")
        server_cpus = {cpus[-1]}
        os.sched_setaffinity(0, set(cpus[:-1]))
    info = machine()
    load_avg = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="palaestra-serve-bench-") as tmp:
        os.environ.setdefault("PALAESTRA_RUNS", str(Path(tmp) / "index"))
        run_dir = Path(args.run) if args.run else trained_run(Path(tmp))
        records = test_rows(run_dir)
        floor = bare_onnxruntime(run_dir, records, args.requests, Path(tmp))
        for what, r in floor.items():
            print(f"bare onnxruntime, {what}: {r}", flush=True)
        rows = [[f"bare onnxruntime ({what})", "-", 1, args.requests, 0, f"{r['p50_ms']:.3f}", f"{r['p99_ms']:.3f}", "-"]
                for what, r in floor.items()]
        for backend in args.backends:
            port = free_port()
            proc = start_server(run_dir, backend, port, server_cpus)
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                conn.request("GET", "/health")
                name = json.loads(conn.getresponse().read())["model_name"]
                conn.request("GET", f"/v2/models/{name}")
                meta = json.loads(conn.getresponse().read())
                conn.close()
                for protocol in args.protocols:
                    bodies = bodies_for(protocol, records, meta)
                    path = PATHS[protocol].format(name=name)
                    for c in args.concurrency:
                        r = load(port, path, bodies, args.requests, c)
                        print(f"{backend:5s} {protocol:11s} concurrency {c}: {r}", flush=True)
                        rows.append([backend, path, c, r["requests"], r["errors"], f"{r['p50_ms']:.3f}",
                                     f"{r['p99_ms']:.3f}", f"{r['rps']:.0f}"])
            finally:
                proc.send_signal(signal.SIGTERM)
                proc.wait(60)
        compressed = compression_table(Path(tmp), repeats=200) if args.compress else ""
    table = markdown_table(["backend", "endpoint", "concurrency", "requests", "errors", "p50 ms", "p99 ms",
                            "requests/s"], rows)
    command = "python benchmarks/serve_load.py " + " ".join(sys.argv[1:])
    pinned = (f" With `--pin`: the server on CPU {min(server_cpus)}, the client and the floor on the others."
              if server_cpus else "")
    what = f"`{args.run}`" if args.run else "a penguins MLP (hidden [64, 64], 30 epochs)"
    text = (f"{SECTION}\n\n`palaestra serve` under load from a second process on loopback: batch-1 requests (one raw"
            f" test-split row each) for {what}, from *concurrency* client threads, each with one kept-alive"
            f" connection and one request in flight. Latency is per request as the client sees it (JSON, HTTP,"
            f" preprocessing, model, metrics). The floor, in the same run: the run's self-contained ONNX file under"
            f" onnxruntime in the client process (one thread), batch 1, with and without turning the row into its"
            f" inputs.{pinned}\n\n{machine_line(info)}; 1-minute load average at start {load_avg:.1f}.\n\n"
            f"Command: `{command.strip()}`\n\n{table}\n")
    if compressed:
        text += ("\n`palaestra compress` on a penguins MLP with wide layers (hidden [512, 512], 20 epochs), the same"
                 " machine and command; latency is the model's forward pass alone, on one thread (median of 200"
                 " calls at batch 1, 50 at batch 256), accuracy on the run's whole test split.\n\n" + compressed + "\n")
    print(text)
    if args.write:
        write_section(text)


if __name__ == "__main__":
    main()
