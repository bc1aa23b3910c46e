"""Load on ``palaestra serve`` over loopback: batch-1 latency (median, p99), requests/s and errors, per backend.

    .venv/bin/python benchmarks/serve_load.py [--run RUN] [--backends torch onnx] [--requests 2000]
                                              [--concurrency 1 8] [--write]

The server is the real command (``palaestra serve RUN --backend B``) in its own process; this process is the
client: an asyncio loop with ``httpx.AsyncClient`` and at most ``concurrency`` requests in flight, each one
row of the run's test split (cycled). Without ``--run``, a penguins MLP (hidden [64, 64]) is trained first.
``--write`` replaces the "Serving" section of BENCHMARKS.md (appending it if missing).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import machine, machine_line, markdown_table  # noqa: E402

SECTION = "## Serving"


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
    from palaestra.deployment.export import held_out
    from palaestra.runs import Run

    raw = held_out(Run.load(run_dir))
    if hasattr(raw, "columns"):
        return [{"rows": [r]} for r in json.loads(raw.to_json(orient="records"))]
    return [{"inputs": [x]} for x in raw.x.tolist()]


def start_server(run_dir: Path, backend: str, port: int) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "palaestra", "serve", str(run_dir), "--port", str(port),
                             "--backend", backend], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=ROOT)
    import httpx

    deadline = time.time() + 180
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited: {proc.stderr.read().decode()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return proc
        except httpx.TransportError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("server did not start in 180 s")


async def load(url: str, bodies: list[dict], requests: int, concurrency: int) -> dict:
    """``requests`` POSTs, at most ``concurrency`` in flight; latency per request, errors, requests/s."""
    import httpx

    latencies: list[float] = []
    errors = 0
    next_i = 0
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30) as client:
        for body in bodies[:20]:  # warm-up: connections, first calls
            await client.post("/predict", json=body)

        async def worker() -> None:
            nonlocal next_i, errors
            while next_i < requests:
                body = bodies[next_i % len(bodies)]
                next_i += 1
                started = time.perf_counter()
                try:
                    r = await client.post("/predict", json=body)
                    ok = r.status_code == 200
                except httpx.HTTPError:
                    ok = False
                latencies.append(time.perf_counter() - started)
                errors += not ok

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - started
    latencies.sort()
    return {"requests": len(latencies), "errors": errors, "rps": len(latencies) / wall,
            "median_ms": statistics.median(latencies) * 1e3,
            "p99_ms": latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))] * 1e3}


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
    p.add_argument("--requests", type=int, default=2000)
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 8])
    p.add_argument("--compress", action="store_true", help="also compress a wide MLP and report the table")
    p.add_argument("--write", action="store_true", help="write the Serving section of BENCHMARKS.md")
    args = p.parse_args()
    info = machine()
    load_avg = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="palaestra-serve-bench-") as tmp:
        os.environ.setdefault("PALAESTRA_RUNS", str(Path(tmp) / "index"))
        run_dir = Path(args.run) if args.run else trained_run(Path(tmp))
        bodies = test_rows(run_dir)
        rows = []
        for backend in args.backends:
            port = free_port()
            proc = start_server(run_dir, backend, port)
            try:
                for c in args.concurrency:
                    r = asyncio.run(load(f"http://127.0.0.1:{port}", bodies, args.requests, c))
                    print(f"{backend:5s} concurrency {c}: {r}", flush=True)
                    rows.append([backend, c, r["requests"], r["errors"], f"{r['median_ms']:.2f}", f"{r['p99_ms']:.2f}",
                                 f"{r['rps']:.0f}"])
            finally:
                proc.send_signal(signal.SIGTERM)
                proc.wait(60)
        compressed = compression_table(Path(tmp), repeats=200) if args.compress else ""
    table = markdown_table(["backend", "concurrency", "requests", "errors", "median ms", "p99 ms", "requests/s"], rows)
    command = "python benchmarks/serve_load.py " + " ".join(sys.argv[1:])
    what = f"`{args.run}`" if args.run else "a penguins MLP (hidden [64, 64], 30 epochs)"
    text = (f"{SECTION}\n\n`palaestra serve` under load from a second process on loopback: batch-1 `POST /predict`"
            f" requests (one raw test-split row each) for {what}, from an asyncio `httpx` client with at most"
            f" *concurrency* requests in flight. Latency is per request as the client sees it (JSON, HTTP,"
            f" preprocessing, model, metrics).\n\n{machine_line(info)}; 1-minute load average at start"
            f" {load_avg:.1f} (other work was running on this machine).\n\nCommand: `{command.strip()}`\n\n"
            f"{table}\n")
    if compressed:
        text += ("\n`palaestra compress` on a penguins MLP with wide layers (hidden [512, 512], 20 epochs), the same"
                 " machine and command; latency is the model's forward pass alone, on one thread (median of 200"
                 " calls at batch 1, 50 at batch 256), accuracy on the run's whole test split.\n\n" + compressed + "\n")
    print(text)
    if args.write:
        write_section(text)


if __name__ == "__main__":
    main()
