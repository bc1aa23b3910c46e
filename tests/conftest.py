"""Shared fixtures. Every test gets its own run index (PALAESTRA_RUNS); tiny configs keep `make test` fast."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _isolated_runs(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("PALAESTRA_RUNS", str(tmp_path_factory.mktemp("runs")))


def tiny(source: str = "penguins", epochs: int = 8, **sections) -> dict:
    """A small, fast config dict: few epochs, no progress bar, fixed seed."""
    cfg = {"seed": 0, "data": {"source": source}, "model": {"hidden": [16]},
           "train": {"epochs": epochs, "progress": False, "early_stopping": None}}
    for key, value in sections.items():
        cfg.setdefault(key, {}).update(value) if isinstance(value, dict) else cfg.__setitem__(key, value)
    return cfg


@pytest.fixture(scope="session")
def penguins_run(tmp_path_factory):
    """A finished penguins run directory (MLP, 15 epochs), shared read-only by many tests."""
    from palaestra.pipeline import train

    out = tmp_path_factory.mktemp("penguins") / "run"
    os.environ.setdefault("PALAESTRA_RUNS", str(tmp_path_factory.mktemp("session-runs")))
    train(tiny("penguins", epochs=15), out=out, quiet=True)
    return out


@pytest.fixture(scope="session")
def digits_run(tmp_path_factory):
    """A finished digits run directory (small CNN, 3 epochs)."""
    from palaestra.pipeline import train

    out = tmp_path_factory.mktemp("digits") / "run"
    train(tiny("digits", epochs=3, model={"channels": [8, 16], "hidden": [32]}), out=out, quiet=True)
    return out


def cli(*args: str, cwd: Path | None = None, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run ``palaestra ARGS`` as a user would: a subprocess, capturing exit code, stdout and stderr."""
    full_env = {**os.environ, **(env or {}), "COLUMNS": "200", "NO_COLOR": "1"}
    return subprocess.run([sys.executable, "-m", "palaestra", *args], capture_output=True, text=True,
                          cwd=cwd, env=full_env, timeout=timeout)
