"""Trackers, read back through each tool's own reader: MLflow's ``MlflowClient`` and TensorBoard's
``EventAccumulator`` see every epoch of ``history.csv`` with the same values; a tracker that is not installed is one
plain message naming its extra; ``palaestra runs export --mlflow`` backfills a finished run once."""

from __future__ import annotations

import json
import math
import os
import signal
import sys

import pandas as pd
import pytest
from testkit import cli, tiny

from palaestra.errors import ConfigError
from palaestra.hooks import Callback

mlflow = pytest.importorskip("mlflow")
pytest.importorskip("tensorboard")

from mlflow.tracking import MlflowClient  # noqa: E402


def _history(run_dir) -> pd.DataFrame:
    return pd.read_csv(run_dir / "history.csv")


def _mlflow_history(client: MlflowClient, run_id: str, name: str) -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in client.get_metric_history(run_id, name))


def _csv_history(frame: pd.DataFrame, name: str) -> list[tuple[int, float]]:
    return [(int(e), float(v)) for e, v in zip(frame["epoch"], frame[name], strict=True) if not math.isnan(v)]


@pytest.fixture(scope="module")
def tracked_run(tmp_path_factory):
    from palaestra.pipeline import train

    root = tmp_path_factory.mktemp("tracked")
    uri = (root / "store").as_uri()
    mp = pytest.MonkeyPatch()
    mp.setenv("MLFLOW_TRACKING_URI", uri)
    mp.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    try:
        run = train(tiny("iris", epochs=4, train={"trackers": ["mlflow", "tensorboard"]}), out=root / "run", quiet=True)
    finally:
        mp.undo()
    return run, uri


def test_mlflow_metric_history_equals_history_csv(tracked_run):
    run, uri = tracked_run
    client = MlflowClient(tracking_uri=uri)
    run_id = json.loads((run.path / "mlflow.json").read_text())["run_id"]
    frame = _history(run.path)
    logged = [c for c in frame.columns if c != "epoch"]
    assert {"train_loss", "val_loss", "val_accuracy", "lr", "seconds"} <= set(logged)
    for name in logged:
        assert _mlflow_history(client, run_id, name) == _csv_history(frame, name), name
    data = client.get_run(run_id).data
    assert data.params["optimizer.lr"] == str(run.config.optimizer.lr)
    assert data.params["model.family"] == "mlp" and data.params["train.epochs"] == "4"
    assert data.tags["palaestra.task"] == "classification" and data.tags["palaestra.family"] == "mlp"
    assert data.metrics["test_accuracy"] == pytest.approx(run.metrics["test"]["accuracy"], abs=0)
    assert client.get_run(run_id).info.status == "FINISHED"
    names = {a.path for a in client.list_artifacts(run_id)}
    assert {"report.html", "model.safetensors", "preprocess.json", "config.yaml", "plots"} <= names


def test_tensorboard_event_reader_finds_every_scalar(tracked_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run, _ = tracked_run
    events = EventAccumulator(str(run.path / "tensorboard"))
    events.Reload()
    frame = _history(run.path)
    tags = set(events.Tags()["scalars"])
    for name in (c for c in frame.columns if c != "epoch"):
        assert name in tags, name
        got = [(e.step, e.value) for e in events.Scalars(name)]
        want = _csv_history(frame, name)
        assert [s for s, _ in got] == [s for s, _ in want]
        assert [v for _, v in got] == pytest.approx([v for _, v in want], rel=1e-6)  # stored as float32
    assert events.Scalars("test_accuracy")[0].value == pytest.approx(run.metrics["test"]["accuracy"], rel=1e-6)


def test_missing_tracker_is_one_plain_message_and_writes_nothing(tmp_path, monkeypatch, capsys):
    from palaestra.cli import main
    from palaestra.pipeline import train

    monkeypatch.setitem(sys.modules, "mlflow", None)  # as if the extra were not installed
    with pytest.raises(ConfigError, match=r"palaestra\[mlflow\]"):
        train(tiny("iris", epochs=1, train={"trackers": ["mlflow"]}), out=tmp_path / "run", quiet=True)
    assert not (tmp_path / "run").exists()
    code = main(["train", "--data", "iris", "--set", "train.trackers=[mlflow]", "--out", str(tmp_path / "cli")])
    err = capsys.readouterr().err
    assert code == 2 and "'mlflow' extra" in err and "Traceback" not in err
    assert not (tmp_path / "cli").exists()


def test_runs_export_mlflow_backfills_a_finished_run_once(tmp_path, monkeypatch):
    from palaestra.pipeline import train

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # this test's own reader

    run = train(tiny("iris", epochs=3), out=tmp_path / "run", quiet=True)
    uri = (tmp_path / "store").as_uri()
    env = {"MLFLOW_TRACKING_URI": uri, "MLFLOW_ALLOW_FILE_STORE": "true"}
    first = cli("runs", "export", "--mlflow", str(run.path), env=env)
    assert first.returncode == 0, first.stderr
    assert "exported to MLflow" in first.stdout
    client = MlflowClient(tracking_uri=uri)
    [found] = client.search_runs([client.get_experiment_by_name("palaestra").experiment_id])
    frame = _history(run.path)
    for name in ("train_loss", "val_loss", "val_accuracy", "val_f1_macro"):
        assert _mlflow_history(client, found.info.run_id, name) == _csv_history(frame, name)
    assert found.data.params["data.source"] == "iris"
    again = cli("runs", "export", "--mlflow", str(run.path), env=env)
    assert again.returncode == 0 and "already in MLflow" in again.stdout
    assert len(client.search_runs([found.info.experiment_id])) == 1
    bad = cli("runs", "export", str(run.path), env=env)
    assert bad.returncode == 2 and "--mlflow" in bad.stderr and "Traceback" not in bad.stderr


class _SigtermAfterEpoch(Callback):
    def __init__(self, epoch: int):
        self.epoch = epoch

    def on_epoch_end(self, state, logs) -> None:
        if state.epoch == self.epoch:
            os.kill(os.getpid(), signal.SIGTERM)  # as a user's kill would; the run checkpoints and stops


def test_a_resumed_run_goes_on_in_the_same_mlflow_run(tmp_path, monkeypatch):
    from palaestra.pipeline import TrainingInterrupted, train

    uri = (tmp_path / "store").as_uri()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    cfg = tiny("iris", epochs=4, train={"trackers": ["mlflow"]})
    with pytest.raises(TrainingInterrupted):
        train(cfg, out=tmp_path / "run", quiet=True, extra_callbacks=[_SigtermAfterEpoch(2)])
    client = MlflowClient(tracking_uri=uri)
    run_id = json.loads((tmp_path / "run" / "mlflow.json").read_text())["run_id"]
    assert client.get_run(run_id).info.status == "KILLED"
    assert [m.step for m in client.get_metric_history(run_id, "train_loss")] == [1, 2]
    run = train(None, resume=tmp_path / "run", quiet=True)
    assert json.loads((run.path / "mlflow.json").read_text())["run_id"] == run_id
    assert client.get_run(run_id).info.status == "FINISHED"
    assert len(client.search_runs([client.get_run(run_id).info.experiment_id])) == 1
    frame = _history(run.path)
    for name in ("train_loss", "val_loss", "val_accuracy"):
        assert _mlflow_history(client, run_id, name) == _csv_history(frame, name)
