"""Run directories and the SQLite run index.

A ``Run`` is the plain object the later stages start from: the resolved config, the fitted preprocessing,
the model with its weights, and the recorded metrics. ``Run.load(path)`` checks every file against
``manifest.json`` before trusting it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from palaestra.artifacts import read_tensors, verify_manifest
from palaestra.config import Config, read_saved_config
from palaestra.data.raw import ArrayData
from palaestra.data.registry import preprocessor_from_dict
from palaestra.data.sources import read_source
from palaestra.data.spec import Decoded, FeatureSpec
from palaestra.errors import ArtifactError, DataError
from palaestra.index import (
    STATE_FILE,
    STATES,
    RunIndex,
    read_state,
    run_name,
    runs_root,
    set_state,
    state_error,
)
from palaestra.rundir import CORE_FILES, read_history, read_metrics, read_preprocess, verify_run

__all__ = ["CORE_FILES", "STATES", "STATE_FILE", "Run", "RunIndex", "finite_outputs", "prediction_columns", "predictions_frame", "read_state",
           "run_name", "runs_root", "set_state"]

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
        verify_run(path, CORE_FILES)  # every file the manifest lists, not only these
        if read_state(path) == "failed":  # e.g. the loss diverged: its weights are no model to use
            raise ArtifactError(f"{path} is a failed run ({state_error(path)}): retrain it")
        config = read_saved_config(path / "config.yaml")
        pre_json = read_preprocess(path)
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
        metrics = read_metrics(path)
        history = read_history(path).to_dict("records")
        return cls(config, pre, spec, model, metrics, history, path)

    # -- using ---------------------------------------------------------------------------------------------

    def _raw(self, data: Any) -> Any:
        """A path, an array, a dict of columns or a frame -> what the preprocessing reads."""
        if isinstance(data, (str, Path)):
            return read_source(str(data))
        if isinstance(data, np.ndarray):
            if self.spec.kind == "table":  # a table model given a matrix: its columns in training order
                return pd.DataFrame(data, columns=self.preprocessor.feature_columns[: data.shape[1]])
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
        return finite_outputs(torch.cat(outs).numpy()) if outs else np.zeros((0, self.spec.n_outputs), np.float32)

    def outputs(self, data: Any, batch_size: int = 4096) -> np.ndarray:
        """Raw model outputs (logits, or values on the training scale) for raw rows or arrays."""
        return self._run_model(tuple(self.preprocessor.inputs(self._raw(data))), batch_size)

    def decode(self, data: Any) -> list[Decoded]:
        """Predictions per target (labels or values, probabilities): the one path from outputs to answers."""
        decode = getattr(self.preprocessor, "decode", None)
        if decode is None:
            raise DataError(f"a {self.spec.task} run does not predict rows")
        if getattr(self.preprocessor, "decodes_with_rows", False):  # a forecast of several series
            raw = self._raw(data)
            return decode(self.outputs(raw), raw)
        return decode(self.outputs(data))

    def predict_proba(self, data: Any) -> np.ndarray:
        decoded = self.decode(data)
        if len(decoded) != 1 or decoded[0].probabilities is None:
            raise DataError("predict_proba needs a classification run with one target")
        return decoded[0].probabilities

    def predict(self, data: Any) -> pd.DataFrame:
        """A frame with ``prediction`` (labels as in the training data) and, for classification, ``prob_<class>``.

        Several targets: ``<target>_prediction`` per target, and ``<target>_prob_<class>`` for each class target.
        A forecast: one row per origin and step ahead, with its series and time (``forecast_frame``).
        """
        forecast = getattr(self.preprocessor, "forecast_frame", None)
        if forecast is not None:
            raw = self._raw(data)
            return forecast(raw, self.outputs(raw))
        return predictions_frame(self.decode(data))

    def evaluate(self, data: Any, with_loss: bool = False) -> dict[str, Any]:
        """Metrics (DESIGN.md section 4 names) on new labelled data with the training columns (``with_loss``: the
        mean training loss on it too, as ``loss``)."""
        from palaestra.data.spec import to_split
        from palaestra.data.targets import labelled_rows
        from palaestra.evaluation.calibration import scaled
        from palaestra.evaluation.metrics import metric_set
        from palaestra.training.loop import evaluate
        from palaestra.training.losses import build_loss

        pre = self.preprocessor
        if not hasattr(pre, "labelled"):
            raise DataError(f"a {self.spec.task} run cannot be evaluated on new rows")
        raw = self._raw(data)
        if isinstance(raw, ArrayData) and raw.y is None:
            raise DataError("the data has no 'y' array to evaluate against")
        if hasattr(pre, "split_metrics"):  # a forecast: the windows keep the rows they forecast
            frame = pre.ordered(raw)
            inputs, target, rows = pre.labelled_windows(frame)
        else:
            inputs, target = pre.labelled(labelled_rows(raw, getattr(pre, "targets", [])))
            rows = np.arange(len(target))
        split = to_split(inputs, target, rows)
        loss_fn = build_loss(self.config.loss, self.spec, split.target)
        device = next(iter(self.model.parameters()), torch.empty(0)).device
        batches = [tuple(t[i:i + 4096].to(device) for t in split.tensors) for i in range(0, len(split), 4096)]
        ms = metric_set(self.spec, getattr(pre, "target_mean", 0.0), getattr(pre, "target_std", 1.0), device,
                        sync=False)
        result = evaluate(scaled(self.model, getattr(pre, "temperature", 1.0)), batches, loss_fn, ms, device)
        if not with_loss:
            result.pop("loss", None)
        baseline = getattr(pre, "baseline_metrics", None)
        if baseline is not None:
            result.update(baseline(split))
        own = getattr(pre, "split_metrics", None)
        if own is not None:  # the ETS baseline needs the training history: metrics.json has it
            result.update(own(frame, split, self._run_model(tuple(t.numpy() for t in split.inputs)), ets=False))
        result["rows"] = int(len(split))
        return result


def prediction_columns(decoded: list[Decoded]) -> list[tuple[str, Any]]:
    """``palaestra predict``'s output columns as (name, values): ``prediction`` and ``prob_<class>`` for one
    target; prefixed by the target's name for several."""
    columns: list[tuple[str, Any]] = []
    several = len(decoded) > 1
    for d in decoded:
        prefix = f"{d.name}_" if several else ""
        columns.append((f"{prefix}prediction", d.predictions))
        if d.probabilities is not None:
            columns += [(f"{prefix}prob_{c}", d.probabilities[:, i]) for i, c in enumerate(d.classes or [])]
    return columns


def predictions_frame(decoded: list[Decoded]) -> pd.DataFrame:
    """Predictions as a frame of ``prediction_columns``."""
    frame = pd.DataFrame()
    for name, values in prediction_columns(decoded):
        frame[name] = values
    return frame
