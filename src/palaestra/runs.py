"""Run directories and the SQLite run index.

A ``Run`` is the plain object the later stages start from: the resolved config, the fitted preprocessing,
the model with its weights, and the recorded metrics. ``Run.load(path)`` checks every file against
``manifest.json`` before trusting it.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from palaestra.artifacts import MANIFEST, read_json, read_tensors, verify_manifest, write_json
from palaestra.config import Config, build_config, read_yaml
from palaestra.data.raw import ArrayData
from palaestra.data.registry import preprocessor_from_dict
from palaestra.data.sources import read_source
from palaestra.data.spec import Decoded, FeatureSpec
from palaestra.errors import ArtifactError, DataError

STATE_FILE = "state.json"
STATES = ("running", "complete", "failed", "interrupted")
CORE_FILES = ("config.yaml", "model.safetensors", "preprocess.json", "metrics.json")


def set_state(run_dir: Path, state: str, **extra: Any) -> None:
    assert state in STATES
    if state == "running":
        # Who runs it: a run whose process has died (SIGKILL, OOM killer, power loss) then reads as interrupted.
        extra = {"pid": os.getpid(), "host": socket.gethostname(), **extra}
    write_json(Path(run_dir) / STATE_FILE, {"state": state, "updated": time.time(), **extra})
    RunIndex.default().record(Path(run_dir), state=state)


def run_name(config: Config, target: str | None = None) -> str:
    """The name a run is listed under: ``config.name`` when set, else the data source and what it predicts.

    >>> run_name(build_config({"data": {"source": "data/houses.csv", "target": "price"}}))
    'houses-price'
    """
    if config.name != "run":
        return config.name
    from palaestra.data.datasets import default_target

    source = str(config.data.source)
    stem = Path(source).stem or source
    target = target or config.data.target or default_target(source)
    if isinstance(target, list):  # several targets
        target = "+".join(target)
    if target in (None, "x", "y"):  # arrays (.npz x and y): the task says more than "y"
        target = config.data.task if config.data.task != "auto" else None
    return f"{stem}-{target}" if target else stem


def read_state(run_dir: Path) -> str:
    try:
        data = read_json(Path(run_dir) / STATE_FILE)
    except ArtifactError:
        return "unknown"
    state = data.get("state") if isinstance(data, dict) else None
    if state not in STATES:
        return "unknown"
    if state == "running" and not _alive(data.get("pid"), data.get("host")):
        return "interrupted"
    return state


def _alive(pid: Any, host: Any) -> bool:
    """Whether the process that marked a run as running still exists (True when it cannot be told from here)."""
    if not isinstance(pid, int) or host != socket.gethostname():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


class Run:
    """A trained model and everything needed to use it.

    >>> import palaestra
    >>> run = palaestra.train({"data": {"source": "iris"}, "train": {"epochs": 2, "progress": False}})  # doctest: +SKIP
    >>> run.predict(df).columns  # prediction, prob_setosa, ...                                         # doctest: +SKIP
    """

    config: Config  # the resolved config: retrains the same model
    preprocessor: Any  # fitted preprocessing (``palaestra.data.registry``): raw data <-> tensors
    spec: FeatureSpec  # what the model sees
    model: nn.Module
    metrics: dict[str, Any]  # as in metrics.json
    history: list[dict]  # one row per epoch, as in history.csv
    path: Path | None  # the run directory, if written
    notices: list[str]  # what the data stage inferred or left out
    state: Any  # the loop's TrainState, right after training (None when loaded)
    data: Any  # the PreparedData, right after training (None when loaded)
    findings: list | None  # the training doctor's findings, when the run directory was written
    report_sections: list[tuple[str, str]]  # extra (title, html) parts of report.html

    def __init__(self, config: Config, preprocessor: Any, spec: FeatureSpec, model: nn.Module,
                 metrics: dict[str, Any] | None = None, history: list[dict] | None = None, path: Path | None = None,
                 notices: list[str] | None = None, state: Any = None, data: Any = None):
        self.config, self.preprocessor, self.spec, self.model = config, preprocessor, spec, model
        self.metrics = metrics or {}
        self.history = history or []
        self.path = Path(path) if path else None
        self.notices = list(notices or [])
        self.state, self.data = state, data
        self.findings = None
        self.report_sections = []
        self.model.eval()

    def __repr__(self) -> str:
        where = f" at {self.path}" if self.path else ""
        return f"Run({self.config.name!r}, {self.spec.task}, {type(self.model).__name__}{where})"

    # -- loading -------------------------------------------------------------------------------------------

    @classmethod
    def load(cls, path: str | Path) -> Run:
        """Load a finished run directory, refusing truncated or altered files."""
        from palaestra.models import build_model
        from palaestra.models.compressed import LAYOUT, load_compressed

        path = Path(path)
        if not path.is_dir():
            raise ArtifactError(f"run directory {path} does not exist")
        state = read_state(path)
        if not (path / MANIFEST).is_file():
            raise ArtifactError(f"{path} is not a finished run (state: {state}); resume it with: palaestra train --resume {path}")
        verify_manifest(path, list(CORE_FILES))
        config = build_config(read_yaml(path / "config.yaml"))
        pre_json = read_json(path / "preprocess.json")
        try:
            pre = preprocessor_from_dict(pre_json["preprocessor"])
            spec = FeatureSpec.from_dict(pre_json["spec"])
        except (KeyError, TypeError) as exc:
            raise ArtifactError(f"{path / 'preprocess.json'} is incomplete ({exc})") from None
        cfg = config.model.model_copy(update={"init": "default"})  # weights come from the file, not an init
        model = build_model(spec, cfg)
        weights = read_tensors(path / "model.safetensors")
        if (path / LAYOUT).is_file():  # written by `palaestra compress`: int8 and/or sparse weights
            verify_manifest(path, [LAYOUT])
            model, weights = load_compressed(path / LAYOUT, model, weights)
        try:
            model.load_state_dict(weights)
        except RuntimeError as exc:
            raise ArtifactError(f"{path / 'model.safetensors'} does not fit the model in config.yaml: {str(exc).splitlines()[0]}") from None
        metrics = read_json(path / "metrics.json")
        history = []
        if (path / "history.csv").is_file():
            history = pd.read_csv(path / "history.csv").to_dict("records")
        return cls(config, pre, spec, model, metrics, history, path)

    # -- using ---------------------------------------------------------------------------------------------

    def _raw(self, data: Any) -> Any:
        """A path, an array, a dict of columns or a frame -> what the preprocessing reads."""
        if isinstance(data, (str, Path)):
            return read_source(str(data))
        if isinstance(data, np.ndarray):
            columns = getattr(self.preprocessor, "feature_columns", None)
            if getattr(self.preprocessor, "array", True) is None and columns:  # a table model given a matrix
                return pd.DataFrame(data, columns=columns[: data.shape[1]])
            return ArrayData(x=data, y=None)
        if isinstance(data, dict):
            return pd.DataFrame(data)
        return data

    def _run_model(self, inputs: tuple[np.ndarray, ...], batch_size: int = 4096) -> np.ndarray:
        tensors = tuple(torch.from_numpy(np.ascontiguousarray(a)) for a in inputs)
        device = next(iter(self.model.parameters()), torch.empty(0)).device  # an int8 model may have no parameters
        outs = []
        with torch.inference_mode():
            for start in range(0, len(tensors[0]), batch_size):
                outs.append(self.model(*(t[start:start + batch_size].to(device) for t in tensors)).float().cpu())
        return torch.cat(outs).numpy() if outs else np.zeros((0, self.spec.n_outputs), np.float32)

    def outputs(self, data: Any, batch_size: int = 4096) -> np.ndarray:
        """Raw model outputs (logits, or values on the training scale) for raw rows or arrays."""
        return self._run_model(tuple(self.preprocessor.inputs(self._raw(data))), batch_size)

    def decode(self, data: Any) -> list[Decoded]:
        """Predictions per target (labels or values, probabilities): the one path from outputs to answers."""
        decode = getattr(self.preprocessor, "decode", None)
        if decode is None:
            raise DataError(f"a {self.spec.task} run does not predict rows")
        return decode(self.outputs(data))

    def predict_proba(self, data: Any) -> np.ndarray:
        decoded = self.decode(data)
        if len(decoded) != 1 or decoded[0].probabilities is None:
            raise DataError("predict_proba needs a classification run with one target")
        return decoded[0].probabilities

    def predict(self, data: Any) -> pd.DataFrame:
        """A frame with ``prediction`` (labels as in the training data) and, for classification, ``prob_<class>``.

        Several targets: ``<target>_prediction`` per target, and ``<target>_prob_<class>`` for each class target.
        """
        return predictions_frame(self.decode(data))

    def evaluate(self, data: Any) -> dict[str, Any]:
        """Metrics (DESIGN.md section 4 names) on new labelled data with the training columns."""
        from palaestra.data.spec import to_split
        from palaestra.data.targets import labelled_rows
        from palaestra.evaluation.metrics import metric_set
        from palaestra.training.loop import evaluate
        from palaestra.training.losses import build_loss

        pre = self.preprocessor
        if not hasattr(pre, "labelled"):
            raise DataError(f"a {self.spec.task} run cannot be evaluated on new rows")
        raw = self._raw(data)
        if isinstance(raw, ArrayData) and raw.y is None:
            raise DataError("the data has no 'y' array to evaluate against")
        inputs, target = pre.labelled(labelled_rows(raw, getattr(pre, "targets", [])))
        split = to_split(inputs, target, np.arange(len(target)))
        loss_fn = build_loss(self.config.loss, self.spec, split.target)
        device = next(iter(self.model.parameters()), torch.empty(0)).device
        batches = [tuple(t[i:i + 4096].to(device) for t in split.tensors) for i in range(0, len(split), 4096)]
        ms = metric_set(self.spec, getattr(pre, "target_mean", 0.0), getattr(pre, "target_std", 1.0), device)
        result = evaluate(self.model, batches, loss_fn, ms, device)
        result.pop("loss", None)
        baseline = getattr(pre, "baseline_metrics", None)
        if baseline is not None:
            result.update(baseline(split))
        scores = getattr(pre, "model_scores", None)
        if scores is not None:
            result.update(scores(result))
        result["rows"] = int(len(split))
        return result


def predictions_frame(decoded: list[Decoded]) -> pd.DataFrame:
    """Predictions as a frame: ``prediction`` and ``prob_<class>`` for one target; prefixed by the target's
    name for several."""
    frame = pd.DataFrame()
    several = len(decoded) > 1
    for d in decoded:
        prefix = f"{d.name}_" if several else ""
        frame[f"{prefix}prediction"] = d.predictions
        if d.probabilities is not None:
            for i, c in enumerate(d.classes or []):
                frame[f"{prefix}prob_{c}"] = d.probabilities[:, i]
    return frame


# --- the run index -----------------------------------------------------------------------------------------


def runs_root() -> Path:
    return Path(os.environ.get("PALAESTRA_RUNS", "runs"))


class RunIndex:
    """SQLite index of runs: path, name, task, state, key metrics. Safe for concurrent writers."""

    def __init__(self, db: Path):
        self.db = Path(db)

    @classmethod
    def default(cls) -> RunIndex:
        return cls(runs_root() / "index.sqlite")

    def _connect(self) -> sqlite3.Connection:
        self.db.parent.mkdir(parents=True, exist_ok=True)
        con = sqlite3.connect(self.db, timeout=30)
        con.execute("""CREATE TABLE IF NOT EXISTS runs (path TEXT PRIMARY KEY, name TEXT, task TEXT, state TEXT,
                       created REAL, updated REAL, metrics TEXT)""")
        return con

    def record(self, run_dir: Path, state: str | None = None, name: str | None = None, task: str | None = None,
               metrics: dict[str, Any] | None = None) -> None:
        key = str(Path(run_dir).resolve())
        now = time.time()
        with self._connect() as con:
            con.execute("INSERT OR IGNORE INTO runs(path, created, updated) VALUES (?, ?, ?)", (key, now, now))
            for col, value in (("state", state), ("name", name), ("task", task),
                               ("metrics", json.dumps(metrics) if metrics is not None else None)):
                if value is not None:
                    con.execute(f"UPDATE runs SET {col} = ?, updated = ? WHERE path = ?", (value, now, key))
        con.close()

    def list(self) -> list[dict[str, Any]]:
        if not self.db.is_file():
            return []
        with self._connect() as con:
            rows = con.execute("SELECT path, name, task, state, created, updated, metrics FROM runs "
                               "ORDER BY created").fetchall()
        con.close()
        out = []
        for path, name, task, state, created, updated, metrics in rows:
            live = read_state(Path(path)) if Path(path).is_dir() else "missing"
            live = live if live != "unknown" else state
            # A finished run lasted until its last update; a running one is still going.
            end = time.time() if live == "running" else updated
            out.append({"path": path, "name": name, "task": task, "state": live, "created": created,
                        "updated": updated, "duration": max(0.0, (end or created) - created) if created else None,
                        "metrics": json.loads(metrics) if metrics else {}})
        return out
