"""Exact resume: a run stopped at any step and resumed ends with weights bit-identical to an uninterrupted run.

In-process tests stop training at exact steps (a callback raises SIGTERM in this process), one run stopped and
resumed several times: the first batch, an epoch's last batch, an epoch boundary, mid-epoch. Subprocess tests
stop ``palaestra train`` as a user's machine would: SIGKILL at random steps, and SIGTERM/SIGINT.
"""

from __future__ import annotations

import json
import os
import random
import signal
from pathlib import Path

import pytest
import torch
from reliability_helpers import (
    assert_same_weights,
    history_without_time,
    latest_step,
    resume_config,
    scratch_dir,
    signal_at_step,
    write_config,
)
from testkit import cli

from palaestra.errors import ArtifactError
from palaestra.pipeline import TrainingInterrupted, train
from palaestra.runs import Run, RunIndex, read_state
from palaestra.training.callbacks import Callback

ONECYCLE = {"name": "onecycle"}  # per-batch schedule: its step count must survive the resume
PLATEAU = {"name": "plateau", "patience": 0, "factor": 0.5}  # per-epoch, driven by the monitored metric


def plateau(**kw) -> dict:
    # lr high enough that the plateau rule fires within 6 epochs, with and without a validation split (checked below).
    cfg = resume_config(PLATEAU, **kw)
    return {**cfg, "optimizer": {**cfg["optimizer"], "lr": 0.3}}


# No validation split: the monitor falls back to train_loss, which must count the batches before the stop.
NO_VAL = {"source": "penguins", "split": {"train": 0.85, "val": 0.0, "test": 0.15, "stratify": True}}

CNN = {**resume_config(epochs=3), "data": {"source": "digits"}, "model": {"channels": [8, 16], "dropout": 0.2}}
CNN["train"] = {**CNN["train"], "batch_size": 128}

CHAINS = {
    # name: (config, the steps at which SIGTERM arrives, one resume after each); 15 steps per epoch
    "onecycle-first-batch-last-batch-mid-epoch": (resume_config(ONECYCLE), [1, 15, 37]),
    "plateau-epoch-boundary-then-mid-epoch": (plateau(), [30, 44]),
    "plateau-train-loss-monitor-mid-epoch": ({**plateau(), "data": NO_VAL}, [37]),
    # A CNN on digits (10 steps per epoch): channels_last weights (the default for CNNs) with fused AdamW, whose
    # moments must come back from the checkpoint in their weights' layout.
    "cnn-channels-last-mid-epoch": (CNN, [4, 15]),
    # Epoch checkpoints only: resumes from the epoch-5 boundary with early stopping's best value restored.
    "early-stopping-epoch-checkpoints": (resume_config(epochs=8, checkpoint_every_steps=None,
                                                       early_stopping={"patience": 1, "min_delta": 0.1}), [80]),
}


class SignalAt(Callback):
    """Sends SIGTERM to this process after optimizer step ``step`` (as a user's Ctrl-C or kill would)."""

    def __init__(self, step: int):
        self.step = step

    def on_batch_end(self, state, loss) -> None:
        if state.step == self.step:
            os.kill(os.getpid(), signal.SIGTERM)


@pytest.fixture(autouse=True)
def _restore_threads():
    # The configs set train.threads=1, which is process-wide in torch: give other tests their threads back.
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def scratch():
    with scratch_dir() as d:
        yield d


@pytest.fixture(scope="module")
def baselines():
    """Uninterrupted in-process runs, one per distinct config, trained on first use."""
    done: dict[str, Path] = {}
    threads = torch.get_num_threads()
    with scratch_dir() as root:

        def get(cfg: dict) -> Path:
            key = json.dumps(cfg, sort_keys=True)
            if key not in done:
                done[key] = root / f"baseline-{len(done)}"
                train(cfg, out=done[key], quiet=True)
                torch.set_num_threads(threads)
            return done[key]

        yield get


@pytest.mark.parametrize("chain", list(CHAINS))
def test_sigterm_at_exact_steps_then_resume_is_bit_identical(chain, scratch, baselines):
    cfg, steps = CHAINS[chain]
    base = baselines(cfg)
    run = scratch / "run"
    for i, step in enumerate(steps):
        with pytest.raises(TrainingInterrupted, match=f"step {step};.*--resume"):
            if i == 0:
                train(cfg, out=run, quiet=True, extra_callbacks=[SignalAt(step)])
            else:
                train(None, resume=run, quiet=True, extra_callbacks=[SignalAt(step)])
        assert read_state(run) == "interrupted"
        with pytest.raises(ArtifactError, match="resume"):
            Run.load(run)
    resumed = train(None, resume=run, quiet=True)
    assert resumed.metrics["epochs"] == Run.load(base).metrics["epochs"]
    assert_same_weights(base, run, note=f"stopped at steps {steps}")
    assert history_without_time(run) == history_without_time(base)


def test_the_cases_exercise_what_they_claim(baselines):
    # Otherwise the chains above would prove nothing about scheduler state or early stopping.
    for cfg in (CHAINS["onecycle-first-batch-last-batch-mid-epoch"][0], plateau(),
                CHAINS["plateau-train-loss-monitor-mid-epoch"][0]):
        assert len({row["lr"] for row in history_without_time(baselines(cfg))}) > 1
    assert "val_loss" not in history_without_time(baselines(CHAINS["plateau-train-loss-monitor-mid-epoch"][0]))[0]
    cnn = Run.load(baselines(CNN))
    assert cnn.config.model.family == "cnn" and cnn.config.train.channels_last is None  # the default: on
    assert cnn.config.optimizer.fused is None  # the default: fused
    metrics = Run.load(baselines(CHAINS["early-stopping-epoch-checkpoints"][0])).metrics
    assert metrics["stop_reason"].startswith("early stopping") and 80 / 15 < metrics["epochs"] < 8


# --- as a user's machine would: the training subprocess killed at random steps -----------------------------------


def _state_in_index(run: Path) -> str:
    return {r["path"]: r["state"] for r in RunIndex.default().list()}[str(run.resolve())]


# Three seeded random steps here (the SIGTERM test below resumes a fourth stop); epoch-only checkpoints are
# resumed in-process above, at exact steps.
@pytest.mark.parametrize("seed,cfg", [(0, resume_config(ONECYCLE)), (1, resume_config(ONECYCLE)),
                                      (2, resume_config(PLATEAU))],
                         ids=["onecycle-seed0", "onecycle-seed1", "plateau-seed2"])
def test_sigkill_at_random_step_then_resume_is_bit_identical(seed, cfg, scratch, baselines):
    base = baselines(cfg)
    config = write_config(scratch / "config.yaml", cfg)
    run = scratch / "run"
    at = random.Random(seed).randrange(2, 80)
    killed = signal_at_step(["train", str(config), "--out", str(run)], run, at, signal.SIGKILL)
    assert killed.returncode == -signal.SIGKILL
    stopped = latest_step(run)
    # A run killed mid-training is never presented as complete (its process is gone: interrupted), and cannot be
    # loaded as if it were.
    assert json.loads((run / "state.json").read_text())["state"] == "running"
    assert _state_in_index(run) == "interrupted" and read_state(run) == "interrupted"
    assert not (run / "manifest.json").exists()
    with pytest.raises(ArtifactError, match=r"not a finished run \(state: interrupted\)"):
        Run.load(run)
    resumed = cli("train", "--resume", str(run))
    assert resumed.returncode == 0, resumed.stderr
    assert "Traceback" not in resumed.stderr
    assert read_state(run) == "complete" and _state_in_index(run) == "complete"
    assert_same_weights(base, run, note=f"killed at step {at}, after the checkpoint at step {stopped}")
    assert history_without_time(run) == history_without_time(base)


def test_sigterm_saves_checkpoint_and_says_how_to_resume(scratch, baselines):
    cfg = resume_config(ONECYCLE)
    base = baselines(cfg)
    run = scratch / "run"
    stopped = signal_at_step(["train", str(write_config(scratch / "config.yaml", cfg)), "--out", str(run)], run, 23,
                             signal.SIGTERM)
    assert stopped.returncode == 128 + signal.SIGTERM, stopped.stderr  # the shell's code for the signal
    assert "\ninterrupted: training interrupted by SIGTERM" in stopped.stderr
    assert "SIGTERM" in stopped.stderr and f"palaestra train --resume {run}" in stopped.stderr
    assert "Traceback" not in stopped.stderr
    listed = json.loads(cli("runs", "--json").stdout)
    assert [r["state"] for r in listed if r["path"] == str(run.resolve())] == ["interrupted"]
    resumed = cli("train", "--resume", str(run))
    assert resumed.returncode == 0, resumed.stderr
    assert_same_weights(base, run)


def test_sigint_saves_checkpoint_and_says_how_to_resume(scratch):
    run = scratch / "run"
    config = write_config(scratch / "config.yaml", resume_config(ONECYCLE))
    stopped = signal_at_step(["train", str(config), "--out", str(run)], run, 8, signal.SIGINT)
    assert stopped.returncode == 130, stopped.stderr  # Ctrl-C: 130, as shells report it; not 2 (bad input)
    assert "SIGINT" in stopped.stderr and "--resume" in stopped.stderr and "Traceback" not in stopped.stderr
    assert read_state(run) == "interrupted" and latest_step(run) >= 8
