"""Experiment trackers as training callbacks: MLflow and TensorBoard (``train.trackers: [mlflow, tensorboard]``).

Both are extras (``pip install 'palaestra[mlflow]'``, ``'palaestra[tensorboard]'``); asking for one that is not
installed is one plain ``ConfigError`` naming the extra, raised before training starts.

- ``MlflowTracker``: the resolved config as params (flattened, ``optimizer.lr``), every epoch's logged values
  as metrics with the epoch as their step (the same names and values as ``history.csv``), then, once the run
  directory is written, the test metrics (``test_<name>``), ``report.html``, its plots and the model files as
  artifacts, and ``palaestra.task``/``palaestra.family`` tags. ``MLFLOW_TRACKING_URI`` is honoured; without it
  the store is a file store under the runs root (``runs/mlruns``).
- ``TensorBoardTracker``: every epoch's values as scalars through ``torch.utils.tensorboard`` into
  ``RUN/tensorboard/``, named as in ``history.csv``.

>>> palaestra.train({"data": {"source": "iris"}, "train": {"trackers": ["mlflow"]}}, out="runs/iris")  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import math
import os
import re
from collections.abc import Iterable, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from palaestra.config import flatten
from palaestra.errors import ConfigError, UserError
from palaestra.hooks import Callback

EXTRAS = {"mlflow": ("mlflow", "mlflow"), "tensorboard": ("tensorboard", "tensorboard")}  # tracker: (module, extra)
# Files of a finished run logged as MLflow artifacts (those present): the model, what it needs, and the report.
ARTIFACTS = ("config.yaml", "model.safetensors", "preprocess.json", "calibration.json", "metrics.json", "history.csv",
             "report.html", "manifest.json")
EXPERIMENT = "palaestra"  # the MLflow experiment runs go to, unless MLFLOW_EXPERIMENT_NAME names another
_MLFLOW_NAME = re.compile(r"[^0-9A-Za-z_\-. /]")  # what MLflow accepts in a metric, param or tag key


class TrackerError(UserError):
    """The tracker refused what was logged, or cannot be reached (e.g. ``MLFLOW_TRACKING_URI`` points nowhere)."""


def require(tracker: str) -> None:
    """Refuse, in one line naming the extra, a tracker whose package is not installed."""
    module, extra = EXTRAS[tracker]
    try:
        __import__(module)
    except ImportError:
        raise ConfigError(f"train.trackers: {tracker} needs the '{extra}' extra, which is not installed: "
                          f"pip install 'palaestra[{extra}]'") from None


def mlflow_key(name: str) -> str:
    """A name as MLflow accepts it (other characters become ``_``)."""
    return _MLFLOW_NAME.sub("_", str(name))[:250] or "_"


def epoch_values(row: dict[str, Any]) -> dict[str, float]:
    """The numbers of one history row that a tracker logs: every finite value but the epoch itself."""
    out = {}
    for k, v in row.items():
        if k == "epoch" or isinstance(v, bool) or not isinstance(v, int | float):
            continue
        if math.isfinite(float(v)):
            out[k] = float(v)
    return out


def scalar_metrics(block: dict[str, Any], prefix: str) -> dict[str, float]:
    """``{"accuracy": 0.9, "confusion_matrix": [...]}`` -> ``{"test_accuracy": 0.9}``; one level of targets."""
    out: dict[str, float] = {}
    for k, v in (block or {}).items():
        if isinstance(v, dict):
            out.update(scalar_metrics(v, f"{prefix}{k}_"))
        elif isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(float(v)):
            out[f"{prefix}{k}"] = float(v)
    return out


def default_tracking_uri(runs_root: Path) -> str:
    """``MLFLOW_TRACKING_URI`` when set, else a file store under the runs root."""
    return os.environ.get("MLFLOW_TRACKING_URI") or (Path(runs_root).resolve() / "mlruns").as_uri()


@contextmanager
def _file_store_allowed(uri: str):
    """MLflow calls, with its errors as one plain line (exit 2) naming the store.

    MLflow 3 refuses its file store unless told it is wanted: it is, for a ``file:`` URI (our default: no server,
    no database to set up). Set only for the calls made here; a user's own setting is left as it is.
    """
    from mlflow.exceptions import MlflowException

    allow = uri.startswith("file:") and "MLFLOW_ALLOW_FILE_STORE" not in os.environ
    if allow:
        os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"
    try:
        yield
    except MlflowException as exc:
        raise TrackerError(f"MLflow tracking store {uri}: {exc.message}") from None
    finally:
        if allow:
            os.environ.pop("MLFLOW_ALLOW_FILE_STORE", None)


def run_key(run_dir: Path) -> str:
    """A run directory's identity in the tracker (tag ``palaestra.run_key``): a hash of its absolute path."""
    return hashlib.sha256(str(Path(run_dir).resolve()).encode()).hexdigest()[:32]


def find_tracked(uri: str, run_dir: Path) -> str | None:
    """The id of the MLflow run that holds this run directory, if the store has one."""
    from mlflow.tracking import MlflowClient

    with _file_store_allowed(uri):
        client = MlflowClient(tracking_uri=uri)
        experiment = client.get_experiment_by_name(os.environ.get("MLFLOW_EXPERIMENT_NAME") or EXPERIMENT)
        if experiment is None:
            return None
        found = client.search_runs([experiment.experiment_id],
                                   filter_string=f"tags.`palaestra.run_key` = '{run_key(run_dir)}'", max_results=1)
    return found[0].info.run_id if found else None


class MlflowWriter:
    """One MLflow run, written through ``MlflowClient`` (no global active run: threads and tests stay apart)."""

    def __init__(self, uri: str, run_dir: Path, name: str, tags: dict[str, str], run_id: str | None = None):
        from mlflow.tracking import MlflowClient

        self.uri = uri
        with _file_store_allowed(uri):
            self.client = MlflowClient(tracking_uri=uri)
            if run_id is None:
                experiment = os.environ.get("MLFLOW_EXPERIMENT_NAME") or EXPERIMENT
                found = self.client.get_experiment_by_name(experiment)
                eid = found.experiment_id if found else self.client.create_experiment(experiment)
                all_tags = {"mlflow.runName": name, "palaestra.run_dir": str(Path(run_dir).resolve()),
                            "palaestra.run_key": run_key(run_dir), **tags}
                run_id = self.client.create_run(eid, tags={mlflow_key(k): str(v) for k, v in all_tags.items()},
                                                run_name=name).info.run_id
        self.run_id = run_id

    def _call(self, fn: str, *args, **kwargs):
        with _file_store_allowed(self.uri):
            return getattr(self.client, fn)(*args, **kwargs)

    def params(self, config: dict[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(mlflow_key(k), str(v)[:6000]) for k, v in flatten(config).items()]
        for i in range(0, len(items), 100):  # MLflow takes at most 100 params per batch
            self._call("log_batch", self.run_id, params=items[i:i + 100])

    def metrics(self, values: dict[str, float], step: int) -> None:
        import time

        from mlflow.entities import Metric

        stamp = int(time.time() * 1000)
        items = [Metric(mlflow_key(k), v, stamp, int(step)) for k, v in values.items()]
        for i in range(0, len(items), 1000):
            self._call("log_batch", self.run_id, metrics=items[i:i + 1000])

    def artifacts(self, run_dir: Path, names: Iterable[str] = ARTIFACTS) -> None:
        run_dir = Path(run_dir)
        for name in names:
            if (run_dir / name).is_file():
                self._call("log_artifact", self.run_id, str(run_dir / name))
        if (run_dir / "plots").is_dir():
            self._call("log_artifacts", self.run_id, str(run_dir / "plots"), "plots")

    def tags(self, tags: dict[str, str]) -> None:
        for k, v in tags.items():
            self._call("set_tag", self.run_id, mlflow_key(k), str(v))

    def end(self, status: str = "FINISHED") -> None:
        self._call("set_terminated", self.run_id, status)

    def reopen(self) -> None:
        self._call("update_run", self.run_id, status="RUNNING")


class MlflowTracker(Callback):
    """Logs a run to MLflow as it trains (see the module docstring). Its run id is kept in ``RUN/mlflow.json``, so
    a resumed run goes on logging into the same MLflow run."""

    per_batch = False
    ID_FILE = "mlflow.json"

    def __init__(self, uri: str, run_dir: Path, name: str, config: dict[str, Any], tags: dict[str, str]):
        self.uri, self.run_dir, self.name, self.config, self.tags = uri, Path(run_dir), name, config, tags
        self.writer: MlflowWriter | None = None

    def on_train_begin(self, state: Any) -> None:
        from palaestra.artifacts import read_json, write_json

        id_file = self.run_dir / self.ID_FILE
        previous = read_json(id_file).get("run_id") if id_file.is_file() else None
        if previous is not None and state.epoch > 0:  # a resumed run: the same MLflow run, params already there
            self.writer = MlflowWriter(self.uri, self.run_dir, self.name, self.tags, run_id=previous)
            self.writer.reopen()
            self.writer.tags({"palaestra.resumed_at_epoch": str(state.epoch)})
            return
        self.writer = MlflowWriter(self.uri, self.run_dir, self.name, self.tags)
        write_json(id_file, {"run_id": self.writer.run_id, "tracking_uri": self.uri})
        self.writer.params(self.config)

    def on_epoch_end(self, state: Any, logs: dict[str, float]) -> None:
        self.writer.metrics(epoch_values(logs), state.epoch)

    def finish(self, run_dir: Path, metrics: dict[str, Any], failed: bool = False) -> None:
        """After the run directory is written: test metrics, artifacts, and the MLflow run marked ended."""
        if self.writer is None:
            return
        self.writer.metrics(scalar_metrics(metrics.get("test", {}), "test_"), int(metrics.get("epochs") or 0))
        self.writer.artifacts(run_dir)
        self.writer.end("FAILED" if failed else "FINISHED")

    def close(self, status: str) -> None:
        """Training stopped early (``KILLED``: interrupted, resumable; ``FAILED``: an error)."""
        if self.writer is not None:
            self.writer.end(status)


class TensorBoardTracker(Callback):
    """Writes every epoch's values as TensorBoard scalars into ``RUN/tensorboard/``, and the test metrics at the end
    (``test_<name>``, at the last epoch's step)."""

    per_batch = False

    def __init__(self, log_dir: Path):
        self.log_dir = Path(log_dir)
        self.writer = None

    def on_train_begin(self, state: Any) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(self.log_dir))

    def on_epoch_end(self, state: Any, logs: dict[str, float]) -> None:
        for k, v in epoch_values(logs).items():
            self.writer.add_scalar(k, v, state.epoch)
        self.writer.flush()  # a running run shows its epochs

    def on_train_end(self, state: Any) -> None:
        if self.writer is not None:
            self.writer.flush()

    def finish(self, run_dir: Path, metrics: dict[str, Any], failed: bool = False) -> None:
        if self.writer is None:
            return
        step = int(metrics.get("epochs") or 0)
        for k, v in scalar_metrics(metrics.get("test", {}), "test_").items():
            self.writer.add_scalar(k, v, step)
        self.writer.close()

    def close(self, status: str) -> None:
        if self.writer is not None:
            self.writer.close()


def build_trackers(names: Sequence[str], run_dir: Path | None, runs_root: Path, name: str, config: dict[str, Any],
                   tags: dict[str, str]) -> list[Callback]:
    """The trackers a config asks for, each checked to be installed. None without a run directory (a tuning trial,
    ``train()`` without ``out``): what they log points at the run's files."""
    for tracker in names:
        require(tracker)
    if run_dir is None:
        return []
    out: list[Callback] = []
    for tracker in dict.fromkeys(names):
        if tracker == "mlflow":
            out.append(MlflowTracker(default_tracking_uri(runs_root), run_dir, name, config, tags))
        elif tracker == "tensorboard":
            out.append(TensorBoardTracker(Path(run_dir) / "tensorboard"))
    return out
