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
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_array, check_is_fitted, column_or_1d, validate_data

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

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True  # missing values are imputed (median, with a was-missing column), by design
        tags.input_tags.sparse = False
        tags.non_deterministic = False  # seeded: the same data and seed give the same model
        return tags

    def _frame(self, X: Any, reset: bool) -> pd.DataFrame:
        """X as a frame of named columns, checked the way scikit-learn checks its own estimators' input.

        A DataFrame keeps its columns as they are (text, categories, missing values); anything else must be a
        2-D numeric array (NaN allowed: it is imputed). ``reset``: fitting records the columns, predicting
        checks them (their number and names).
        """
        if isinstance(X, pd.DataFrame):
            validate_data(self, X, reset=reset, skip_check_array=True)  # n_features_in_, feature_names_in_
            if len(X) == 0:
                raise ValueError("Found array with 0 sample(s) (shape=(0, ...)) while a minimum of 1 is required.")
            frame = X.copy()
            frame.columns = [str(c) for c in frame.columns]
            return frame.reset_index(drop=True)
        arr = check_array(X, dtype="numeric", ensure_all_finite="allow-nan", accept_sparse=False)
        validate_data(self, arr, reset=reset, skip_check_array=True)
        return pd.DataFrame(arr, columns=[f"x{i}" for i in range(arr.shape[1])])

    def _target(self, y: Any) -> np.ndarray:
        raise NotImplementedError

    def _checked_target(self, y: Any) -> np.ndarray:
        if y is None:
            raise ValueError(f"{type(self).__name__} requires y to be passed, but the target y is None")
        return self._target(y)

    def _fit_run(self, X: Any, y: np.ndarray) -> Run:
        """Train on ``X`` and a target already checked by ``_checked_target``."""
        from palaestra.pipeline import train

        frame = self._frame(X, reset=True)
        if len(y) != len(frame):
            raise ValueError(f"X has {len(frame)} rows but y has {len(y)}")
        cfg = self._config()
        # Every numeric column is a feature: never dropped as an identifier, never re-typed behind the user's back.
        declared = {c: "numeric" for c in frame.columns if pd.api.types.is_numeric_dtype(frame[c])
                    and not pd.api.types.is_bool_dtype(frame[c])}
        cfg["data"].setdefault("features", {}).update({k: v for k, v in declared.items()
                                                       if k not in cfg["data"]["features"]})
        frame[TARGET] = y
        self.run_ = train(cfg, source=frame, quiet=True)
        return self.run_

    def _decoded(self, X: Any):
        """The run's own decoding of its outputs (the path ``Run.predict`` and the server take)."""
        check_is_fitted(self, "run_")
        return self.run_.decode(self._frame(X, reset=False))[0]


class PalaestraClassifier(ClassifierMixin, _PalaestraEstimator):
    """A Palaestra classifier with the scikit-learn interface (``classes_`` in sorted order)."""

    _task = "classification"

    def _target(self, y: Any) -> np.ndarray:
        y = column_or_1d(y, warn=True)
        if np.issubdtype(y.dtype, np.number):
            check_array(y, ensure_2d=False, dtype=None, input_name="y")  # NaN or infinity is no label
        check_classification_targets(y)  # a continuous target is refused: "Unknown label type: continuous"
        return y

    def fit(self, X: Any, y: Any = None) -> PalaestraClassifier:
        y = self._checked_target(y)
        run = self._fit_run(X, y)
        # sklearn orders classes_ with np.unique; Palaestra keeps labels as they came (sorted the same way
        # for one dtype), so map the model's columns to classes_ explicitly by label text.
        self.classes_ = np.unique(y)
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

    def _target(self, y: Any) -> np.ndarray:
        y = column_or_1d(y, warn=True)
        return check_array(y, ensure_2d=False, dtype=np.float64, input_name="y")  # NaN and inf refused

    def fit(self, X: Any, y: Any = None) -> PalaestraRegressor:
        self._fit_run(X, self._checked_target(y))
        return self

    def predict(self, X: Any) -> np.ndarray:
        return np.asarray(self._decoded(X).predictions, dtype=np.float64)
