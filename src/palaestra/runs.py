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

from palaestra.artifacts import make_dir, read_json, read_tensors, verify_manifest, write_json
from palaestra.config import Config, build_config, read_yaml
from palaestra.data.arrays import ArrayPreprocessor
from palaestra.data.preprocess import TablePreprocessor, preprocessor_from_dict
from palaestra.data.sources import ArrayData, read_source
from palaestra.data.spec import FeatureSpec
from palaestra.errors import ArtifactError, DataError
from palaestra.rundir import CORE_FILES, read_history, read_metrics, read_preprocess, verify_run

STATE_FILE = "state.json"
STATES = ("running", "complete", "failed", "interrupted")


def read_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    """The weights of a finished run, verified against its manifest."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ArtifactError(f"run directory {run_dir} does not exist")
    verify_manifest(run_dir, ["model.safetensors"])
    return read_tensors(run_dir / "model.safetensors")


def set_state(run_dir: Path, state: str, **extra: Any) -> None:
    assert state in STATES
    if state == "running":
        # Who runs it: a run whose process has died (SIGKILL, OOM killer, power loss) then reads as interrupted.
        extra = {"pid": os.getpid(), "host": socket.gethostname(), **extra}
    write_json(Path(run_dir) / STATE_FILE, {"state": state, "updated": time.time(), **extra})
    RunIndex.default().record(Path(run_dir), state=state)


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


def finite_outputs(out: np.ndarray) -> np.ndarray:
    """Model outputs, refused (DataError) where any is NaN or infinite: a label or a number decoded from them
    would look like an answer and be none (e.g. inputs far outside the training range overflow the logits)."""
    bad = ~np.isfinite(out).reshape(len(out), -1).all(axis=1)
    if bad.any():
        rows = np.nonzero(bad)[0]
        shown = ", ".join(map(str, rows[:5])) + (f" and {len(rows) - 5} more" if len(rows) > 5 else "")
        raise DataError(f"the model's outputs are not finite numbers for row{'s' if len(rows) > 1 else ''} {shown} "
                        f"(inputs far outside the training range?): no prediction")
    return out


def _state_error(run_dir: Path) -> str:
    try:
        data = read_json(Path(run_dir) / STATE_FILE)
    except ArtifactError:
        return "no reason recorded"
    return str(data.get("error") or "no reason recorded")[:300] if isinstance(data, dict) else "no reason recorded"


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

    def __init__(self, config: Config, preprocessor: TablePreprocessor | ArrayPreprocessor, spec: FeatureSpec,
                 model: nn.Module, metrics: dict[str, Any] | None = None, history: list[dict] | None = None,
                 path: Path | None = None):
        self.config, self.preprocessor, self.spec, self.model = config, preprocessor, spec, model
        self.metrics = metrics or {}
        self.history = history or []
        self.path = Path(path) if path else None
        self.model.eval()

    def __repr__(self) -> str:
        where = f" at {self.path}" if self.path else ""
        return f"Run({self.config.name!r}, {self.spec.task}, {type(self.model).__name__}{where})"

    # -- loading -------------------------------------------------------------------------------------------

    @classmethod
    def load(cls, path: str | Path) -> Run:
        """Load a finished run directory, refusing truncated or altered files."""
        from palaestra.models.registry import build_model

        path = Path(path)
        verify_run(path, CORE_FILES)  # every file the manifest lists, not only these
        if read_state(path) == "failed":  # e.g. the loss diverged: its weights are no model to use
            raise ArtifactError(f"{path} is a failed run ({_state_error(path)}): retrain it")
        config = build_config(read_yaml(path / "config.yaml"))
        pre_json = read_preprocess(path)
        try:
            pre = preprocessor_from_dict(pre_json["preprocessor"])
            spec = FeatureSpec.from_dict(pre_json["spec"])
        except (KeyError, TypeError) as exc:
            raise ArtifactError(f"{path / 'preprocess.json'} is incomplete ({exc})") from None
        cfg = config.model.model_copy(update={"init": "default"})  # weights come from the file, not an init
        model = build_model(spec, cfg)
        weights = read_tensors(path / "model.safetensors")
        if (path / "compression.json").is_file():  # written by `palaestra compress`: int8 and/or sparse weights
            from palaestra.deployment.compress import load_compressed

            model, weights = load_compressed(path, model, weights)
        try:
            model.load_state_dict(weights)
        except RuntimeError as exc:
            raise ArtifactError(f"{path / 'model.safetensors'} does not fit the model in config.yaml: {str(exc).splitlines()[0]}") from None
        metrics = read_metrics(path)
        history = read_history(path).to_dict("records")
        return cls(config, pre, spec, model, metrics, history, path)

    # -- using ---------------------------------------------------------------------------------------------

    def _frame_or_arrays(self, data: Any) -> pd.DataFrame | ArrayData:
        if isinstance(data, (str, Path)):
            return read_source(str(data))
        if isinstance(data, np.ndarray):
            if isinstance(self.preprocessor, TablePreprocessor):
                return pd.DataFrame(data, columns=self.preprocessor.feature_columns[: data.shape[1]])
            return ArrayData(x=data, y=None)
        if isinstance(data, dict):
            return pd.DataFrame(data)
        return data

    def _inputs(self, data: pd.DataFrame | ArrayData) -> tuple[torch.Tensor, ...]:
        if isinstance(self.preprocessor, TablePreprocessor):
            if not isinstance(data, pd.DataFrame):
                raise DataError("this model was trained on a table: give rows with the training columns")
            arrays = self.preprocessor.transform(data)
        else:
            if isinstance(data, pd.DataFrame) and not getattr(self.preprocessor, "accepts_frames", False):
                raise DataError("this model was trained on arrays: give an .npz file or an array")
            arrays = self.preprocessor.inputs(data)
        return tuple(torch.from_numpy(np.ascontiguousarray(a)) for a in arrays)

    def outputs(self, data: Any, batch_size: int = 4096) -> np.ndarray:
        """Raw model outputs (logits, or values on the training scale) for raw rows or arrays."""
        inputs = self._inputs(self._frame_or_arrays(data))
        device = next(iter(self.model.parameters()), torch.empty(0)).device  # an int8 model may have no parameters
        outs = []
        with torch.inference_mode():
            for start in range(0, len(inputs[0]), batch_size):
                outs.append(self.model(*(t[start:start + batch_size].to(device) for t in inputs)).float().cpu())
        return finite_outputs(torch.cat(outs).numpy()) if outs else np.zeros((0, self.spec.n_outputs), np.float32)

    def predict_proba(self, data: Any) -> np.ndarray:
        if self.spec.task != "classification":
            raise DataError("predict_proba needs a classification run")
        return torch.from_numpy(self.outputs(data)).softmax(-1).numpy()

    def predict(self, data: Any) -> pd.DataFrame:
        """A frame with ``prediction`` (labels as in the training data) and, for classification, ``prob_<class>``."""
        out = self.outputs(data)
        if self.spec.task == "classification":
            probs = torch.from_numpy(out).softmax(-1).numpy()
            frame = pd.DataFrame({"prediction": self.preprocessor.decode_target(probs.argmax(1))})
            for i, c in enumerate(self.spec.classes or []):
                frame[f"prob_{c}"] = probs[:, i]
            return frame
        return pd.DataFrame({"prediction": self.preprocessor.decode_target(out[:, 0].astype(np.float64))})

    def evaluate(self, data: Any) -> dict[str, Any]:
        """Metrics (DESIGN.md section 4 names) on new labelled data with the training columns."""
        from palaestra.evaluation.metrics import MetricSet

        raw = self._frame_or_arrays(data)
        pre = self.preprocessor
        own = getattr(pre, "evaluate_frame", None)  # e.g. forecasting: each window against its later value
        if own is not None:
            return own(self.model, raw)
        if isinstance(raw, ArrayData):
            if raw.y is None:
                raise DataError("the data has no 'y' array to evaluate against")
            y = pre.encode_target(raw.y)
        else:
            if pre.target not in raw.columns:
                raise DataError(f"target column '{pre.target}' not found in the data")
            raw = raw.loc[raw[pre.target].notna().to_numpy()]
            y = pre.encode_target(raw[pre.target])
        out = torch.from_numpy(self.outputs(raw))
        ms = MetricSet(self.spec.task, self.spec.n_outputs, getattr(pre, "target_mean", 0.0),
                       getattr(pre, "target_std", 1.0), self.spec.classes)
        ms.update(out, torch.from_numpy(y))
        result = ms.compute()
        result["rows"] = int(len(y))
        return result

    def export(self, format: str = "onnx", out: str | Path | None = None, tolerance: float | None = None) -> Path:
        """Export the model (``onnx`` | ``torchscript``), checked against this run's outputs; returns the file."""
        from palaestra.deployment.export import export

        return export(self, format, out, tolerance)[0]


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
        make_dir(self.db.parent)
        try:
            con = sqlite3.connect(self.db, timeout=30)
            con.execute("""CREATE TABLE IF NOT EXISTS runs (path TEXT PRIMARY KEY, name TEXT, task TEXT, state TEXT,
                           created REAL, updated REAL, metrics TEXT)""")
        except sqlite3.DatabaseError as exc:  # e.g. "file is not a database": damaged, or not ours
            raise ArtifactError(f"the run index {self.db} cannot be used ({exc}): move it away "
                                f"(or set PALAESTRA_RUNS to another directory)") from None
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
            rows = con.execute("SELECT path, name, task, state, created, metrics FROM runs ORDER BY created").fetchall()
        con.close()
        out = []
        for path, name, task, state, created, metrics in rows:
            live = read_state(Path(path)) if Path(path).is_dir() else "missing"
            out.append({"path": path, "name": name, "task": task, "state": live if live != "unknown" else state,
                        "created": created, "metrics": json.loads(metrics) if metrics else {}})
        return out
