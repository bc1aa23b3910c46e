"""Serving-time monitoring: Prometheus metrics, input drift against the training statistics, the opt-in
prediction log, and the training-vs-serving environment check.

Drift is the population stability index (PSI) of each feature's incoming values against the histogram the
data stage saved from the training split (``preprocess.json``: ``bins``/``freqs`` for numeric columns,
``categories``/``freqs`` for categorical ones). It accumulates over every row served since start-up.
Common reading: PSI < 0.1 stable, 0.1-0.25 moderate shift, > 0.25 a large shift.
"""

from __future__ import annotations

import collections
import json
import random
import threading
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Histogram, ProcessCollector
from prometheus_client.core import GaugeMetricFamily

from palaestra.artifacts import cannot_write, finite_json, make_dir
from palaestra.data.features import CategoryFeature, NumericFeature
from palaestra.data.features.base import FALSE_TOKENS, MISSING, NA_TOKENS, TRUE_TOKENS

EPS = 1e-4  # floor for empty buckets: PSI is infinite when a bucket is empty on one side
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def psi(expected: np.ndarray, actual_counts: np.ndarray) -> float:
    """Population stability index of observed bucket counts against expected bucket frequencies.

    >>> round(psi(np.array([0.5, 0.5]), np.array([50, 50])), 6)
    0.0
    """
    total = actual_counts.sum()
    if total == 0:
        return 0.0
    e = np.clip(np.asarray(expected, np.float64), EPS, None)
    a = np.clip(actual_counts / total, EPS, None)
    return float(np.sum((a - e) * np.log(a / e)))


class _Feature:
    """Bucket counts of one feature's incoming values, aligned with its training frequencies."""

    def __init__(self, name: str, kind: str, expected: list[float], edges: list[float] | None = None,
                 categories: list[Any] | None = None):
        self.name, self.kind = name, kind
        self.edges = np.asarray(edges or [], np.float64)
        self.lookup = {str(c): i for i, c in enumerate(categories or [])}
        # Categorical features get one more bucket: values never seen in training (expected share 0).
        self.expected = np.asarray(list(expected) + ([0.0] if kind == "categorical" else []), np.float64)
        self.counts = np.zeros(len(self.expected), np.int64)

    def update(self, series: Any) -> None:
        """``series``: the feature's incoming values (a Series, an array or a list)."""
        # Plain Python over the values: a request holds few rows, and pandas' per-call overhead would
        # cost more than the prediction itself.
        values = [_normalise(v) for v in (series.tolist() if hasattr(series, "tolist") else list(series))]
        if self.kind == "categorical":
            unknown = len(self.counts) - 1
            codes = [self.lookup.get(MISSING if v is None else str(v), unknown) for v in values]
            self.counts += np.bincount(np.asarray(codes, np.int64), minlength=len(self.counts))
            return
        numbers = np.asarray([x for x in map(_number, values) if x is not None], np.float64)
        numbers = numbers[np.isfinite(numbers)]  # missing values are imputed, not binned (as in training)
        if len(numbers):
            # Same histogram as at training time: values outside the training range land in the end bins.
            counts, _ = np.histogram(np.clip(numbers, self.edges[0], self.edges[-1]), bins=self.edges)
            self.counts += counts

    def psi(self) -> float:
        return psi(self.expected, self.counts)


def _normalise(v: Any) -> Any:
    """None for a missing value (None, NaN, or an NA token such as '' or 'n/a'); stripped text otherwise."""
    if v is None or (isinstance(v, float) and v != v):
        return None
    if isinstance(v, str):
        v = v.strip()
        return None if v.lower() in NA_TOKENS else v
    return v


def _number(v: Any) -> float | None:
    if v is None:
        return None
    if isinstance(v, str):
        low = v.lower()
        if low in TRUE_TOKENS or low in FALSE_TOKENS:
            return 1.0 if low in TRUE_TOKENS else 0.0
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


class DriftMonitor:
    """Per-feature PSI for tables; for arrays, the mean of the standardized inputs per channel (0 in training)."""

    def __init__(self, preprocessor: Any):
        self.lock = threading.Lock()
        self.features: list[_Feature] = []
        self.channel_sum: np.ndarray | None = None
        self.channel_n = 0
        self.rows = 0
        for col in getattr(preprocessor, "features", []):
            if isinstance(col, CategoryFeature) and col.freqs:
                self.features.append(_Feature(col.name, "categorical", col.freqs, categories=col.categories))
            elif isinstance(col, NumericFeature) and len(col.bins) > 1 and col.freqs:
                self.features.append(_Feature(col.name, "numeric", col.freqs, edges=col.bins))

    def observe_rows(self, frame: Any, n: int | None = None) -> None:
        """``frame``: incoming raw rows, a frame or a mapping of column -> values (of ``n`` rows)."""
        with self.lock:
            self.rows += len(frame) if n is None else n
            for f in self.features:
                if f.name in frame:
                    f.update(frame[f.name])

    def observe_standardized(self, x: np.ndarray) -> None:
        """``x``: model inputs after standardization, ``(N, C, ...)``; a shift shows as a mean away from 0."""
        per_channel = x.reshape(x.shape[0], x.shape[1], -1).astype(np.float64)
        with self.lock:
            self.rows += len(x)
            sums = per_channel.mean(axis=2).sum(axis=0)
            self.channel_sum = sums if self.channel_sum is None else self.channel_sum + sums
            self.channel_n += len(x)

    def values(self) -> dict[str, float]:
        """Current drift per feature (PSI) or per channel (mean shift in training standard deviations)."""
        with self.lock:
            if self.features:
                return {f.name: f.psi() for f in self.features}
            if self.channel_sum is not None and self.channel_n:
                return {f"channel{i}": float(v) for i, v in enumerate(self.channel_sum / self.channel_n)}
            return {}


class _DriftCollector:
    """Computes drift gauges at scrape time, so a request pays only for bucket counting."""

    def __init__(self, drift: DriftMonitor):
        self.drift = drift

    def collect(self):
        tables = bool(self.drift.features)
        name = "palaestra_feature_drift_psi" if tables else "palaestra_feature_drift_mean_shift"
        doc = ("population stability index of served inputs vs the training split" if tables else
               "mean of standardized served inputs per channel (0 on the training data)")
        gauge = GaugeMetricFamily(name, doc, labels=["feature"])
        for feature, value in self.drift.values().items():
            gauge.add_metric([feature], value)
        yield gauge
        rows = GaugeMetricFamily("palaestra_drift_rows", "rows counted into the drift statistics")
        rows.add_metric([], self.drift.rows)
        yield rows


class Metrics:
    """The server's Prometheus metrics, in a registry of its own (several apps can live in one process)."""

    def __init__(self, preprocessor: Any, task: str):
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)  # process_cpu_seconds_total, memory, open files
        self.requests = Counter("palaestra_requests", "HTTP requests by endpoint and status",
                                ["endpoint", "status"], registry=self.registry)
        self.latency = Histogram("palaestra_request_latency_seconds", "request latency by endpoint", ["endpoint"],
                                 buckets=LATENCY_BUCKETS, registry=self.registry)
        self.rows = Counter("palaestra_predicted_rows", "rows predicted", registry=self.registry)
        self.task = task
        if task == "classification":
            self.classes = Counter("palaestra_predictions", "predicted class counts", ["class"], registry=self.registry)
        elif task != "multi_target":
            self.values = Histogram("palaestra_prediction_value", "predicted values", registry=self.registry,
                                    buckets=_value_buckets(preprocessor))
        self.drift = DriftMonitor(preprocessor)
        self.registry.register(_DriftCollector(self.drift))

    def observe_request(self, endpoint: str, status: int, seconds: float) -> None:
        self.requests.labels(endpoint, str(status)).inc()
        self.latency.labels(endpoint).observe(seconds)

    def observe_predictions(self, predictions: list[Any]) -> None:
        self.rows.inc(len(predictions))
        if self.task == "multi_target":
            return
        if self.task == "classification":
            for label, n in collections.Counter(str(p) for p in predictions).items():
                self.classes.labels(label).inc(n)
        else:
            for v in predictions:  # a forecast of several steps: {"<target>+k": value} per row
                for value in (v.values() if isinstance(v, dict) else (v,)):
                    self.values.observe(float(value))


def _value_buckets(pre: Any) -> tuple[float, ...]:
    mean, std = getattr(pre, "target_mean", 0.0), getattr(pre, "target_std", 1.0) or 1.0
    return tuple(round(mean + z * std, 6) for z in (-3, -2, -1, -0.5, 0, 0.5, 1, 2, 3)) + (float("inf"),)


class PredictionLog:
    """Opt-in, sampled log of inputs and predictions (JSON lines) to a file the operator names."""

    def __init__(self, path: str | Path, sample: float, seed: int | None = None):
        self.path = Path(path)
        make_dir(self.path.parent)
        try:  # at start-up, not at the first request: a file the server cannot append to is the operator's error
            with self.path.open("a", encoding="utf-8"):
                pass
        except OSError as exc:
            raise cannot_write(self.path, exc) from None
        self.sample = sample
        self.rng = random.Random(seed)
        self.lock = threading.Lock()

    def write(self, inputs: list[Any], predictions: list[Any], probabilities: list[dict] | None) -> int:
        """Log each row with probability ``sample``; returns how many were written."""
        lines = []
        with self.lock:
            for i, row in enumerate(inputs):
                if self.rng.random() < self.sample:
                    entry = {"time": time.time(), "input": row, "prediction": predictions[i]}
                    if probabilities:
                        entry["probabilities"] = probabilities[i]
                    lines.append(json.dumps(finite_json(entry), default=str, allow_nan=False))
            if lines:
                with self.path.open("a", encoding="utf-8") as f:
                    f.write("\n".join(lines) + "\n")
        return len(lines)


def _major(version: str) -> str:
    return version.split(".")[0]


def environment_warnings(saved: dict[str, Any]) -> list[str]:
    """Differences between the training environment (``env.json``) and this one that can change results:
    torch's major.minor version, and any recorded dependency's major version."""
    warnings = []
    for dist, trained in sorted((saved.get("packages") or {}).items()):
        try:
            here = metadata.version(dist)
        except metadata.PackageNotFoundError:
            warnings.append(f"{dist} {trained} was used in training but is not installed here")
            continue
        if dist == "torch":
            differs = here.split("+")[0].split(".")[:2] != str(trained).split("+")[0].split(".")[:2]
        else:
            differs = _major(here) != _major(str(trained))
        if differs:
            warnings.append(f"{dist} {here} here, {trained} in training")
    return warnings
