"""Helpers shared by the tests (imported as `testkit`: a unique name, unlike `conftest`)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def tiny(source: str = "penguins", epochs: int = 8, **sections) -> dict:
    """A small, fast config dict: few epochs, no progress bar, fixed seed."""
    cfg = {"seed": 0, "data": {"source": source}, "model": {"hidden": [16]},
           "train": {"epochs": epochs, "progress": False, "early_stopping": None}}
    for key, value in sections.items():
        cfg.setdefault(key, {}).update(value) if isinstance(value, dict) else cfg.__setitem__(key, value)
    return cfg


def cli(*args: str, cwd: Path | None = None, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run ``palaestra ARGS`` as a user would: a subprocess, capturing exit code, stdout and stderr."""
    # One thread per process: the test workers already share the two cores.
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {}), "COLUMNS": "200", "NO_COLOR": "1"}
    return subprocess.run([sys.executable, "-m", "palaestra", *args], capture_output=True, text=True,
                          cwd=cwd, env=full_env, timeout=timeout)


def assert_one_step_lowers_loss(model, spec, inputs, target) -> None:
    """One Adam step on a batch lowers the default loss on that batch (gradients reach the weights)."""
    import torch

    from palaestra.config import LossConfig
    from palaestra.training.losses import build_loss

    loss_fn = build_loss(LossConfig(), spec, target)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    before = loss_fn(model(*inputs), target)
    optimizer.zero_grad()
    before.backward()
    optimizer.step()
    with torch.no_grad():
        after = loss_fn(model(*inputs), target)
    assert after < before, f"one step did not lower the loss ({before.item():.4f} -> {after.item():.4f})"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def running(app):
    """Serve ``app`` on 127.0.0.1 over real HTTP; yields the base URL, stops the server on exit."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 20
    while not server.started:
        if time.time() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
