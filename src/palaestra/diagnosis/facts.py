"""What the doctor reads from a run directory, loaded once; the data and the model only when a check asks."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd


class Facts:
    """Everything the checks read, loaded once; the data and the model only when a check asks for them."""

    def __init__(self, run_dir: Path, run: Any = None, raw: Any = None, notes: list[str] | None = None):
        from palaestra.config import read_saved_config
        from palaestra.rundir import read_diagnostics, read_history, read_metrics, read_preprocess, verify_run

        self.run_dir, self._run, self._raw = run_dir, run, raw
        self.notes = notes if notes is not None else []
        if run is None:  # read from disk: trusted only as far as its manifest vouches (in-process: just written)
            verify_run(run_dir)
        self.config = run.config if run is not None else read_saved_config(run_dir / "config.yaml")
        self.metrics = read_metrics(run_dir)
        self.history = read_history(run_dir)
        self.grad_norms: list[dict[str, float]] = read_diagnostics(run_dir)
        pre = read_preprocess(run_dir)
        self.pre, self.splits = pre["preprocessor"], pre.get("splits", {})
        outputs = self.pre.get("outputs") or []
        # The doctor reads one target: the run's only one, or the first of several.
        first = outputs[0] if outputs else {}
        self.target = first.get("name") or self.pre.get("target")
        self.task = ({"category": "classification", "number": "regression"}.get(first.get("type"))
                     or self.pre.get("task") or self.config.data.task)
        if len(outputs) > 1:
            self.task = "multi_target"
        self.classes = first.get("classes") or self.pre.get("classes") or []
        self._data_tried = False
        self._data: tuple | None = None

    # -- lazily loaded --------------------------------------------------------------------------------------

    def data(self) -> tuple[Any, np.ndarray] | None:
        """``(features, encoded target)`` for the whole source in split-index order, or None if unreadable."""
        if self._data_tried:
            return self._data
        self._data_tried = True
        try:
            self._data = self._load_data()
        except Exception as exc:  # the doctor reports what it can; a missing source only skips data checks
            self.notes.append(f"data checks skipped: could not re-read {self.config.data.source!r} ({exc})")
        return self._data

    def _load_data(self) -> tuple[Any, np.ndarray]:
        from palaestra.data.features.base import is_missing
        from palaestra.data.raw import ArrayData
        from palaestra.data.sources import read_source

        raw = self._raw if self._raw is not None else read_source(self.config.data.source)
        n = max((max(v) for v in self.splits.values() if v), default=-1) + 1
        if isinstance(raw, ArrayData):
            y = np.asarray(raw.y)
            features: Any = raw.x
        else:
            target = self.target
            # the same rows the data stage kept: those with a target value, renumbered from 0
            raw = raw.loc[~is_missing(raw[target]).to_numpy()].reset_index(drop=True)
            y = raw[target].to_numpy()
            features = raw[[c["name"] for c in self.pre.get("inputs", [])]]
            if features.shape[1] == 0:
                raise ValueError("the run uses none of the source's columns")
        if len(y) < n:
            raise ValueError("the source has fewer rows than the run's splits: it changed since training")
        if self.task == "classification":
            lookup = {str(c): i for i, c in enumerate(self.classes)}
            y = np.array([lookup.get(str(v.item() if hasattr(v, "item") else v), -1) for v in y])
        else:
            y = np.asarray(y, dtype=np.float64)
        return features, y

    def split(self, name: str) -> tuple[Any, np.ndarray] | None:
        """One split's ``(raw features, encoded target)``; None where the data checks do not apply."""
        # Rows of a table or an array are independent examples; windows of a series or a text are not.
        if self.pre.get("kind") != "features" or self.task not in ("classification", "regression"):
            return None
        data = self.data()
        idx = np.asarray(self.splits.get(name, []), dtype=np.int64)
        if data is None or not len(idx):
            return None
        features, y = data
        rows = features.iloc[idx] if isinstance(features, pd.DataFrame) else features[idx]
        return rows, y[idx]

    @property
    def run_loaded(self) -> bool:
        return self._run is not None

    def run(self) -> Any:
        if self._run is None:
            from palaestra.runs import Run

            self._run = Run.load(self.run_dir)
        return self._run

    # -- derived numbers ------------------------------------------------------------------------------------

    def baseline(self) -> float:
        """The loss of the best constant prediction: the yardstick for 'high' and 'big'.

        Per task: the class prior's entropy (classification); the spread of the standardised target
        (regression); the training text's unigram model (a language model: its bits per character, in nats
        like the loss); the persistence forecast's error (forecasting: the model predicts from the last value).
        """
        if self.task == "language_model":
            bits = next((m["unigram_bits_per_char"] for m in (self.metrics.get("val") or {},
                         self.metrics.get("test") or {}) if "unigram_bits_per_char" in m), None)
            return float(bits) * math.log(2) if bits else math.log(max(len(self.pre.get("vocab", [])) + 1, 2))
        if self.task == "forecast":
            naive = next((m["naive_mae"] for m in (self.metrics.get("val") or {}, self.metrics.get("test") or {})
                          if m.get("naive_mae")), None)
            std = (self.pre.get("std") or [1.0])[0] or 1.0
            if naive:
                z = float(naive) / std  # persistence error on the standardised scale the loss is measured on
                return z if self.config.loss.name == "mae" else z * z
        train = self.split("train")
        if self.task == "classification":
            k = max(len(self.classes), 2)
            if train is not None:
                counts = np.bincount(train[1][train[1] >= 0], minlength=k)
            else:  # no data: the class mix of the evaluated splits (rows of the confusion matrices)
                cms = [np.asarray(m["confusion_matrix"]) for m in (self.metrics.get("val") or {},
                       self.metrics.get("test") or {}) if "confusion_matrix" in m]
                counts = sum(cm.sum(1) for cm in cms) if cms else np.ones(k)
            p = np.asarray(counts, dtype=np.float64) / max(np.sum(counts), 1)
            return float(-(p[p > 0] * np.log(p[p > 0])).sum()) or math.log(k)
        loss = self.config.loss.name
        if loss == "mae":
            return math.sqrt(2 / math.pi)  # E|z| of a standard normal: the target is standardised on train
        if loss == "huber":
            return 0.4  # E huber_1(z) of a standard normal, to one digit
        return 1.0  # mse of predicting the mean of a standardised target

    def weight_change(self) -> float | None:
        """||w_final - w_init|| / ||w_init||: how far training moved the weights from where they started.

        The initial weights are rebuilt exactly as the pipeline built them (the run's seed, then
        ``build_model``), under a forked RNG so the caller's random state is untouched.
        """
        import torch

        from palaestra.config import PretrainedInit
        from palaestra.models.registry import build_model

        if isinstance(self.config.model.init, PretrainedInit):
            return None
        run = self.run()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.config.seed)
            start = build_model(run.spec, self.config.model).state_dict()
        final = {k: v.detach().cpu() for k, v in run.model.state_dict().items()}
        names = [k for k, v in start.items() if v.is_floating_point() and k in final and final[k].shape == v.shape]
        if not names:
            return None
        moved = sum(float((final[k].float() - start[k].float()).pow(2).sum()) for k in names)
        size = sum(float(start[k].float().pow(2).sum()) for k in names)
        return math.sqrt(moved / size) if size > 0 else None

    def col(self, name: str) -> np.ndarray:
        if name not in self.history:
            return np.zeros(0)
        return self.history[name].to_numpy(dtype=np.float64)
