"""``palaestra train --nproc N`` as a user runs it: torchrun's agent, N workers, one run directory, plain errors."""

from __future__ import annotations

import argparse
import json
import signal
import sys
from pathlib import Path

import pytest
from testkit import cli
from torch.distributed.elastic.multiprocessing.errors import ProcessFailure

from palaestra.distributed import record_failure, root_cause, run_torchrun, torchrun_args, worker_args
from palaestra.errors import DataError, UserError


def test_train_with_two_processes_writes_one_complete_run(tmp_path):
    out = tmp_path / "run"
    result = cli("train", "--data", "penguins", "--nproc", "2", "--out", str(out), "--set", "train.epochs=3",
                 "--set", "train.progress=false", env={"PALAESTRA_RUNS": str(tmp_path / "index")})
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("run: ") == 1  # only rank 0 prints
    assert "Traceback" not in result.stderr
    assert json.loads((out / "state.json").read_text())["state"] == "complete"
    for name in ("config.yaml", "model.safetensors", "metrics.json", "history.csv", "manifest.json", "report.html"):
        assert (out / name).is_file(), name
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["epochs"] == 3 and metrics["world_size"] == 2 and 0.0 <= metrics["test"]["accuracy"] <= 1.0
    assert len((out / "history.csv").read_text().strip().splitlines()) == 1 + 3
    assert [p.name for p in tmp_path.iterdir() if p.name != "index"] == ["run"]  # rank 1 wrote nowhere


def test_more_processes_than_cores_is_a_user_error(tmp_path, capsys):
    from palaestra.cli import main

    assert main(["train", "--data", "penguins", "--nproc", "64", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "--nproc 64" in err and "CPU core" in err
    assert "Traceback" not in err
    assert not (tmp_path / "run").exists()


_RANK_1_FAILS = """
import os, sys, time
if os.environ["RANK"] == "0":
    time.sleep(10**6)  # stands for a rank blocked in a collective: unless the agent stops it, the test times out
from palaestra.distributed import run_worker
from palaestra.errors import DataError
def job():
    raise DataError("column 'y' is missing")
sys.exit(run_worker(job))
"""


def test_a_failing_rank_stops_the_job_with_its_error(tmp_path, capsys):
    script = tmp_path / "job.py"
    script.write_text(_RANK_1_FAILS)
    code = run_torchrun(["--standalone", "--nproc-per-node", "2", "--monitor-interval", "0.1", "--no-python",
                         sys.executable, str(script)])
    err = capsys.readouterr().err
    assert code == 2  # a user error on any rank is a user error of the job
    assert "error: rank 1 failed: column 'y' is missing" in err
    assert "Traceback" not in err


def _failure(tmp_path: Path, rank: int, exc: BaseException | None, code: int, exitcode: int, monkeypatch) -> ProcessFailure:
    path = tmp_path / f"error{rank}.json"
    if exc is not None:
        monkeypatch.setenv("TORCHELASTIC_ERROR_FILE", str(path))
        record_failure(exc, code)
    return ProcessFailure(local_rank=rank, pid=100 + rank, exitcode=exitcode, error_file=str(path))


def test_root_cause_is_the_rank_that_failed_first_not_its_peers(tmp_path, monkeypatch):
    peer = RuntimeError("[gloo/pair.cc:553] Connection closed by peer [127.0.0.1]:1234")
    failures = {0: _failure(tmp_path, 0, peer, 1, 1, monkeypatch),
                1: _failure(tmp_path, 1, DataError("bad rows"), 2, 2, monkeypatch),
                2: _failure(tmp_path, 2, None, 0, -signal.SIGTERM, monkeypatch)}
    assert root_cause(failures) == (1, "bad rows", 2)
    # A rank killed from outside (no error file) is the cause when the others only lost their peer.
    failures[1] = _failure(tmp_path, 1, None, 0, -signal.SIGKILL, monkeypatch)
    rank, message, code = root_cause(failures)
    assert (rank, code) == (1, 1) and "SIGKILL" in message
    # An internal error names its type.
    failures[1] = _failure(tmp_path, 1, ValueError("boom"), 1, 1, monkeypatch)
    assert root_cause(failures) == (1, "ValueError: boom", 1)


def _args(**kw) -> argparse.Namespace:
    base = {"config": "cfg.yaml", "data": None, "target": None, "task": None, "overrides": ["train.epochs=3"],
            "out": None, "resume": None, "nproc": 2, "nnodes": None, "node_rank": None, "rdzv_endpoint": None}
    return argparse.Namespace(**{**base, **kw})


def test_launch_options_map_to_torchrun():
    assert torchrun_args(_args())[-1] == "--standalone"
    static = torchrun_args(_args(nnodes="2", node_rank="1", rdzv_endpoint="head:29400"))
    assert static[static.index("--rdzv-backend") + 1] == "static" and static[static.index("--node-rank") + 1] == "1"
    dynamic = torchrun_args(_args(nnodes="2", rdzv_endpoint="head:29400"))
    assert dynamic[dynamic.index("--rdzv-backend") + 1] == "c10d" and "head:29400" in dynamic
    with pytest.raises(UserError, match="--rdzv-endpoint"):
        torchrun_args(_args(nnodes="2"))
    assert worker_args(_args(data="x.csv"), Path("RUN")) == ["train", "cfg.yaml", "--data", "x.csv", "--set",
                                                            "train.epochs=3", "--out", "RUN"]
    assert worker_args(_args(config=None, overrides=[], resume="RUN"), None) == ["train", "--resume", "RUN"]
