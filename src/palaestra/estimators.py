"""scikit-learn estimators: a Palaestra model inside a ``Pipeline``, ``cross_val_score`` or ``GridSearchCV``.

The estimators are thin: ``fit`` turns ``(X, y)`` into a frame and calls ``palaestra.pipeline.train`` with no
run directory; every knob is a constructor argument stored as given (``get_params``/``set_params`` come from
``BaseEstimator``), and ``config`` is an escape hatch for anything else in the config schema.

>>> from sklearn.pipeline import make_pipeline
>>> from sklearn.preprocessing import StandardScaler
>>> model = make_pipeline(StandardScaler(), PalaestraClassifier(epochs=20))  # doctest: +SKIP
>>> model.fit(X, y).score(X, y)                                              # doctest: +SKIP
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.utils.validation import check_is_fitted

from palaestra.runs import Run

TARGET = "__target__"
# Without a test split every row either trains or validates (early stopping, best weights).
SPLIT = {"train": 0.85, "val": 0.15, "test": 0.0}


class _PalaestraEstimator(BaseEstimator):
    _task = "classification"

    def __init__(self, hidden: tuple[int, ...] | None = None, dropout: float | None = None, lr: float | None = None,
                 epochs: int | None = None, batch_size: int | None = None, optimizer: str | None = None,
                 weight_decay: float | None = None, activation: str | None = None,
                 early_stopping_patience: int | None = None, seed: int = 0, config: dict | None = None):
        # Stored as given (scikit-learn's contract): validation happens in the config schema at fit time.
        # None means the config schema's default, so the CLI, the API and the estimators share one set of
        # defaults; early_stopping_patience=0 switches early stopping off.
        self.hidden = hidden
        self.dropout = dropout
        self.lr = lr
        self.epochs = epochs
        self.batch_size = batch_size
        self.optimizer = optimizer
        self.weight_decay = weight_decay
        self.activation = activation
        self.early_stopping_patience = early_stopping_patience
        self.seed = seed
        self.config = config

    def _config(self) -> dict[str, Any]:
        """The Palaestra config these parameters stand for; ``config`` entries are merged section by section."""
        def given(**values: Any) -> dict[str, Any]:
            return {k: v for k, v in values.items() if v is not None}

        patience = self.early_stopping_patience
        train = given(epochs=self.epochs, batch_size=self.batch_size)
        if patience is not None:
            train["early_stopping"] = {"patience": patience} if patience else None
        cfg: dict[str, Any] = {
            "seed": self.seed,
            "data": {"source": "sklearn", "target": TARGET, "task": self._task,
                     "split": {**SPLIT, "stratify": self._task == "classification"}},
            "model": given(hidden=None if self.hidden is None else [int(h) for h in self.hidden],
                           dropout=self.dropout, activation=self.activation),
            "optimizer": given(name=self.optimizer, lr=self.lr, weight_decay=self.weight_decay),
            "train": {**train, "progress": False},
        }
        for key, value in copy.deepcopy(self.config or {}).items():
            if isinstance(value, dict) and isinstance(cfg.get(key), dict):
                cfg[key].update(value)
            else:
                cfg[key] = value
        return cfg

    def _frame(self, X: Any) -> pd.DataFrame:
        if isinstance(X, pd.DataFrame):
            frame = X.copy()
            frame.columns = [str(c) for c in frame.columns]
            return frame
        arr = np.asarray(X)
        if arr.ndim == 1:
            arr = arr.reshape(-1, 1)
        if arr.ndim != 2:
            raise ValueError(f"X must be 2-D (n_samples, n_features), got shape {arr.shape}")
        return pd.DataFrame(arr, columns=[f"x{i}" for i in range(arr.shape[1])])

    def _fit_run(self, X: Any, y: Any) -> Run:
        from palaestra.pipeline import train

        frame = self._frame(X).reset_index(drop=True)
        y = np.asarray(y)
        if len(y) != len(frame):
            raise ValueError(f"X has {len(frame)} rows but y has {len(y)}")
        frame[TARGET] = y
        self.n_features_in_ = frame.shape[1] - 1
        self.run_ = train(self._config(), source=frame, quiet=True)
        return self.run_

    def _decoded(self, X: Any):
        """The run's own decoding of its outputs (the path ``Run.predict`` and the server take)."""
        check_is_fitted(self, "run_")
        return self.run_.decode(self._frame(X))[0]


class PalaestraClassifier(ClassifierMixin, _PalaestraEstimator):
    """A Palaestra classifier with the scikit-learn interface (``classes_`` in sorted order)."""

    _task = "classification"

    def fit(self, X: Any, y: Any) -> PalaestraClassifier:
        y = np.asarray(y)
        # sklearn orders classes_ with np.unique; Palaestra keeps labels as they came (sorted the same way
        # for one dtype), so map the model's columns to classes_ explicitly by label text.
        self.classes_ = np.unique(y)
        run = self._fit_run(X, y)
        by_text = {str(c): i for i, c in enumerate(run.spec.classes or [])}
        # -1: a class too rare to reach the training split gets probability 0.
        self._columns = np.array([by_text.get(str(c), -1) for c in self.classes_])
        return self

    def predict_proba(self, X: Any) -> np.ndarray:
        p = self._decoded(X).probabilities
        out = np.zeros((len(p), len(self.classes_)), dtype=p.dtype)
        known = self._columns >= 0
        out[:, known] = p[:, self._columns[known]]
        return out

    def predict(self, X: Any) -> np.ndarray:
        proba = self.predict_proba(X)  # first: raises NotFittedError before classes_ is looked up
        return self.classes_[proba.argmax(axis=1)]


class PalaestraRegressor(RegressorMixin, _PalaestraEstimator):
    """A Palaestra regressor with the scikit-learn interface; predictions are in the target's units."""

    _task = "regression"

    def fit(self, X: Any, y: Any) -> PalaestraRegressor:
        self._fit_run(X, np.asarray(y, dtype=np.float64))
        return self

    def predict(self, X: Any) -> np.ndarray:
        return np.asarray(self._decoded(X).predictions, dtype=np.float64)
