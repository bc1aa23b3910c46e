"""Shared fixtures. Every test gets its own run index (PALAESTRA_RUNS); tiny configs keep `make test` fast."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch
from testkit import tiny

# The repository root, so tests can share the benchmarks' data generators (``benchmarks.mixed_table``).
ROOT = str(Path(__file__).resolve().parents[1])
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

# pytest-xdist runs two workers on two cores: one torch thread each (and in their subprocesses).
os.environ.setdefault("OMP_NUM_THREADS", "1")
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _isolated_runs(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("PALAESTRA_RUNS", str(tmp_path_factory.mktemp("runs")))


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
