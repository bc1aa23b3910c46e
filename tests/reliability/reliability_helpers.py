"""Reliability helpers (not a conftest: tests import it by name): a training subprocess stopped at a chosen step, weight comparison."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
import yaml
from safetensors.torch import load_file


def resume_config(schedule: dict | None = None, checkpoint_every_steps: int | None = 1, epochs: int = 6,
                  **train) -> dict:
    """Tiny penguins MLP with dropout (so the torch RNG matters), batch 16: 15 steps per epoch."""
    # One thread: the same kernels, so the same floating-point sums, in pytest's process and in a subprocess.
    return {"seed": 3, "data": {"source": "penguins"}, "model": {"hidden": [16], "dropout": 0.2},
            "schedule": schedule or {"name": "none"},
            # Pinned, so a change of the library's defaults does not move the stopping points chosen in the tests.
            "optimizer": {"name": "adamw", "lr": 0.001, "weight_decay": 0.01},
            "train": {"epochs": epochs, "batch_size": 16, "progress": False, "early_stopping": None,
                      "checkpoint_every_steps": checkpoint_every_steps, "threads": 1, **train}}


@contextmanager
def scratch_dir() -> Iterator[Path]:
    """A temporary directory on tmpfs where there is one: checkpointing every step fsyncs each file, and on a
    busy disk that alone would take most of the test time. Atomic-rename semantics are the same."""
    shm = Path("/dev/shm")
    base = str(shm) if shm.is_dir() and os.access(shm, os.W_OK) else None
    d = Path(tempfile.mkdtemp(prefix="palaestra-reliability-", dir=base))
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def write_config(path: Path, cfg: dict) -> Path:
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    return path


def _env() -> dict:
    return {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}


def latest_step(run: Path) -> int:
    """The step of the newest complete checkpoint (-1 if none yet). ``latest.json`` is replaced atomically."""
    try:
        return int(json.loads((run / "checkpoints" / "latest.json").read_text())["step"])
    except (FileNotFoundError, json.JSONDecodeError, KeyError):
        return -1


def signal_at_step(argv: list[str], run: Path, at_step: int, sig: int, timeout: float = 240) -> subprocess.CompletedProcess:
    """Start ``palaestra ARGV`` (a training of RUN); send ``sig`` once a checkpoint at ``at_step`` or later exists."""
    proc = subprocess.Popen([sys.executable, "-m", "palaestra", *argv], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=_env())
    deadline = time.monotonic() + timeout
    sent = False
    while proc.poll() is None and time.monotonic() < deadline:
        if latest_step(run) >= at_step:
            os.kill(proc.pid, sig)
            sent = True
            break
        time.sleep(0.002)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
    assert sent, f"the run finished before step {at_step}; rc={proc.returncode}\n{err[-2000:]}"
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def assert_same_weights(a: Path, b: Path, note: str = "") -> None:
    """Bit-identical tensors (``torch.equal``) and byte-identical ``model.safetensors`` files."""
    wa, wb = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    assert wa.keys() == wb.keys(), note
    for name in wa:
        assert torch.equal(wa[name], wb[name]), f"tensor {name} differs {note}"
    assert (a / "model.safetensors").read_bytes() == (b / "model.safetensors").read_bytes(), note


def history_without_time(run: Path) -> list[dict]:
    import pandas as pd

    return pd.read_csv(run / "history.csv").drop(columns=["seconds"]).to_dict("records")


SIGNALS = {"SIGTERM": signal.SIGTERM, "SIGINT": signal.SIGINT, "SIGKILL": signal.SIGKILL}


def run_cli_batch(cases: list[dict], timeout: float = 600) -> dict[str, dict]:
    """Run ``[{"id", "argv", "cwd"}, ...]`` through ``palaestra.cli.main`` in one fresh process (``cli_batch.py``)."""
    proc = subprocess.run([sys.executable, str(Path(__file__).with_name("cli_batch.py"))], input=json.dumps(cases),
                          capture_output=True, text=True, timeout=timeout, env=_env())
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)
