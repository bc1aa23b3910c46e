"""One process against ``--nproc 2`` (gloo, CPU) on the built-in penguins and digits data: test quality and time.

    .venv/bin/python benchmarks/distributed.py [--datasets penguins digits] [--epochs-digits 20] [--repeats 1]

Each case is the real command line (``palaestra train --data D [--nproc 2] --set ...``) in a subprocess; the
table reports its wall time (process start to exit, including torch imports and the workers' start-up), the
training time from ``metrics.json`` (``train_seconds``: the epochs loop on rank 0) and the test metrics.
Variants per dataset: one process at batch 64 (torch's default threads, one per core; and with one thread);
two processes at 32 per rank (the same global batch, so the same updates as one process); two processes at
64 per rank (global batch 128, half the steps). Each rank of ``--nproc 2`` runs one thread on a 2-core machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# (label, processes, batch per rank, threads per process; None: torch's default, one per core)
# The measured numbers in BENCHMARKS.md used these values, the defaults at the time; pinned so later changes of
# the defaults do not change what this benchmark compares.
PINNED = ["model.hidden=[64,64]", "model.dropout=0.1", "optimizer.lr=0.001", "optimizer.weight_decay=0.01",
          "train.early_stopping.patience=10"]
VARIANTS = [("1 process, batch 64", 1, 64, None), ("1 process, batch 64, 1 thread", 1, 64, 1),
            ("2 processes, 32 per rank", 2, 32, None), ("2 processes, 64 per rank", 2, 64, None)]


def run_case(data: str, nproc: int, batch: int, threads: int | None, extra: list[str], root: Path) -> dict:
    out = root / f"{data}-{nproc}-{batch}-{time.monotonic_ns()}"
    cmd = [sys.executable, "-m", "palaestra", "train", "--data", data, "--out", str(out),
           "--set", "train.progress=false", "--set", f"train.batch_size={batch}",
           *[a for o in PINNED for a in ("--set", o)], *extra]
    if threads:
        cmd += ["--set", f"train.threads={threads}"]
    if nproc > 1:
        cmd += ["--nproc", str(nproc)]
    started = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PALAESTRA_RUNS": str(root / "index")})
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")
    metrics = json.loads((out / "metrics.json").read_text())
    test = metrics["test"]
    return {"wall": wall, "train_seconds": metrics["train_seconds"], "epochs": metrics["epochs"],
            "accuracy": test.get("accuracy"), "f1_macro": test.get("f1_macro"), "loss": test.get("loss"),
            "command": " ".join(["palaestra", *cmd[3:]])}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--datasets", nargs="+", default=["penguins", "digits"])
    parser.add_argument("--epochs-digits", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--only", nargs="*", help="run only the variants with these labels")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="more config overrides")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="palaestra-dist-"))
    print(f"load average before: {os.getloadavg()}", flush=True)
    print("| data | variant | epochs | test accuracy | test f1_macro | train_seconds | wall s |")
    print("|---|---|---|---|---|---|---|")
    for data in args.datasets:
        extra = ["--set", f"train.epochs={args.epochs_digits}"] if data == "digits" else []
        extra += [a for o in args.overrides for a in ("--set", o)]
        for _ in range(args.repeats):
            for label, nproc, batch, threads in VARIANTS:
                if args.only and label not in args.only:
                    continue
                r = run_case(data, nproc, batch, threads, extra, root)
                print(f"| {data} | {label} | {r['epochs']} | {r['accuracy']:.4f} | {r['f1_macro']:.4f} | "
                      f"{r['train_seconds']:.1f} | {r['wall']:.1f} |", flush=True)
                print(f"<!-- {r['command']} | load {os.getloadavg()[0]:.1f} -->", flush=True)
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
