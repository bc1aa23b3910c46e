"""Watchable training: one plain line per epoch off a terminal, an ETA on the bar, history.csv every epoch."""

import io
import re

import pandas as pd
import pytest
from rich.console import Console
from testkit import cli, tiny

from palaestra.pipeline import train
from palaestra.training import callbacks as cb


def _watched(epochs: int = 3, **train_cfg) -> dict:
    return tiny("iris", epochs=epochs, train={"progress": True, **train_cfg})


def test_off_a_terminal_each_epoch_prints_one_plain_line():
    buf = io.StringIO()
    train(_watched(3), console=Console(file=buf, width=80))
    lines = [line for line in buf.getvalue().splitlines() if line.startswith("epoch ")]
    assert [line.split()[1] for line in lines] == ["1/3", "2/3", "3/3"]
    for line in lines:
        for name in ("train_loss", "val_loss", "val_accuracy", "val_f1_macro"):
            assert re.search(rf"\b{name} \d+\.\d{{4}}\b", line), (name, line)
        assert re.search(r"\b\d+\.\ds\b", line), line  # the epoch's seconds
        assert len(line) > 80  # never cut at the console's width
    assert "ETA" in lines[0] and "ETA" in lines[1] and "ETA" not in lines[2]  # nothing left after the last


def test_plain_lines_keep_the_per_step_path_free():
    progress = cb.Progress(5, console=Console(file=io.StringIO()))
    assert not progress.live
    assert progress not in cb.CallbackList([progress])._batch
    live = cb.Progress(5, console=Console(file=io.StringIO(), force_terminal=True))
    assert live.live and live in cb.CallbackList([live])._batch


def test_on_a_terminal_the_bar_shows_an_eta():
    import torch
    from torch import nn

    from palaestra.config import OptimizerConfig, ScheduleConfig
    from palaestra.data.batching import TensorBatcher
    from palaestra.training.loop import fit
    from palaestra.training.optim import Schedule, build_optimizer
    from palaestra.training.state import TrainState

    torch.manual_seed(0)
    model = nn.Linear(4, 2)
    batcher = TensorBatcher((torch.randn(32, 4), torch.randint(0, 2, (32,))), 8, shuffle=True, seed=1)
    opt = build_optimizer(model.parameters(), OptimizerConfig(lr=1e-2))
    state = TrainState(model, opt, Schedule(ScheduleConfig(), opt, 1e-2, 3, len(batcher)), batcher,
                       monitor="train_loss", mode="min")
    buf = io.StringIO()
    bar = cb.Progress(3, console=Console(file=buf, force_terminal=True, width=200, color_system=None),
                      refresh_per_second=1e6)  # draw at every chance
    fit(state, 3, nn.CrossEntropyLoss(), None, None, cb.CallbackList([bar]), torch.device("cpu"))
    frames = buf.getvalue()
    assert re.search(r"epoch 2/3 .*ETA \d+s", frames), frames
    assert "epoch 3/3" in frames


def test_train_piped_prints_its_epochs_as_they_finish(tmp_path):
    r = cli("train", "--data", "iris", "--out", str(tmp_path / "run"), "--set", "train.epochs=2",
            "--set", "model.hidden=[8]")
    assert r.returncode == 0, r.stderr
    assert re.search(r"^epoch 1/2  train_loss \d", r.stderr, re.M), r.stderr
    assert re.search(r"^epoch 2/2  train_loss \d", r.stderr, re.M), r.stderr
    assert "━" not in r.stderr  # no progress-bar frame in a log


class _StopAfter(cb.Callback):
    """Reads history.csv as another process would, then interrupts training after ``epochs``."""

    def __init__(self, path, epochs: int):
        self.path, self.epochs, self.rows = path, epochs, []

    def on_epoch_end(self, state, logs):
        self.rows.append(len(pd.read_csv(self.path)))
        if state.epoch == self.epochs:
            raise KeyboardInterrupt


def test_history_csv_grows_every_epoch_and_survives_an_interruption(tmp_path):
    out = tmp_path / "run"
    watcher = _StopAfter(out / "history.csv", 3)
    with pytest.raises(KeyboardInterrupt):
        train(tiny("iris", epochs=10), out=out, quiet=True, extra_callbacks=[watcher])
    assert watcher.rows == [1, 2, 3]
    history = pd.read_csv(out / "history.csv")
    assert list(history["epoch"]) == [1, 2, 3]
    assert list(history.columns[:3]) == ["epoch", "train_loss", "val_loss"]
    assert list(history.columns[-3:]) == ["grad_norm", "lr", "seconds"]
    assert {"val_accuracy", "val_roc_auc"} <= set(history.columns)


def test_history_csv_reads_back_exactly():
    history = [{"epoch": 1, "train_loss": 0.1 + 0.2, "val_loss": float("nan"), "lr": 1e-3, "seconds": 0.5},
               {"epoch": 2, "train_loss": 1 / 3, "d_loss": 2.0, "lr": 1e-3, "seconds": 0.25}]
    frame = pd.read_csv(io.StringIO(cb.history_csv(history)))
    assert list(frame.columns) == ["epoch", "train_loss", "val_loss", "lr", "seconds", "d_loss"]
    assert frame["train_loss"].tolist() == [0.1 + 0.2, 1 / 3]
    assert frame["val_loss"].isna().all() and frame["d_loss"].isna().tolist() == [True, False]
