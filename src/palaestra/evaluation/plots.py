"""The report's figures, drawn on ``matplotlib.figure.Figure`` with the Agg canvas, never through pyplot, so
drawing touches no global matplotlib state (backend, open-figure registry) in the caller's process."""

from __future__ import annotations

import io
import math
import numbers

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

_DPI = 100
_MAX_ANNOTATED_CLASSES = 20  # beyond this the counts no longer fit in the confusion-matrix cells
_BEST = dict(color="#d62728", linestyle="--", linewidth=1, alpha=0.8)


def png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    FigureCanvasAgg(fig).print_png(buf)
    return buf.getvalue()


def series(history: list[dict], key: str) -> list[float]:
    # Missing and non-finite values become NaN, which matplotlib draws as a gap instead of failing.
    out = []
    for row in history:
        v = row.get(key)
        out.append(float(v) if isinstance(v, numbers.Real) and math.isfinite(v) else math.nan)
    return out


def _mark_best(ax, best_epoch: int | None) -> None:
    if best_epoch:
        ax.axvline(best_epoch, **_BEST, label=f"best epoch ({best_epoch})")


def curves(epochs: list, history: list[dict], keys: list[str], ylabel: str, best_epoch: int | None = None) -> Figure:
    fig = Figure(figsize=(6, 3.5), dpi=_DPI, layout="constrained")
    ax = fig.add_subplot()
    for key in keys:
        values = series(history, key)
        if any(math.isfinite(v) for v in values):
            ax.plot(epochs, values, marker="o" if len(epochs) < 30 else None, markersize=3, label=key)
    _mark_best(ax, best_epoch)
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    if ax.lines:
        ax.legend()
    return fig


def metric_grid(epochs: list, history: list[dict], keys: list[str], best_epoch: int | None = None) -> Figure:
    # One small panel per metric: rmse and r2 (or accuracy and loss-like values) do not share a scale.
    cols = min(3, len(keys))
    rows = math.ceil(len(keys) / cols)
    fig = Figure(figsize=(3.2 * cols, 2.4 * rows), dpi=_DPI, layout="constrained")
    for i, key in enumerate(keys):
        ax = fig.add_subplot(rows, cols, i + 1)
        ax.plot(epochs, series(history, key), marker="o" if len(epochs) < 30 else None, markersize=3)
        _mark_best(ax, best_epoch)
        ax.set_title(key, fontsize=9)
        ax.set_xlabel("epoch", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    return fig


def confusion(matrix: list[list[int]], labels: list[str], split: str) -> Figure:
    k = len(matrix)
    side = min(3 + 0.45 * k, 12)
    fig = Figure(figsize=(side, side), dpi=_DPI, layout="constrained")
    ax = fig.add_subplot()
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(k), labels, rotation=45 if k > 4 else 0, ha="right" if k > 4 else "center")
    ax.set_yticks(range(k), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"confusion matrix ({split})")
    if k <= _MAX_ANNOTATED_CLASSES:
        peak = max((max(row) for row in matrix), default=0)
        for i, row in enumerate(matrix):
            for j, count in enumerate(row):
                ax.text(j, i, str(count), ha="center", va="center", fontsize=8,
                        color="white" if count > peak / 2 else "black")
    return fig


def predicted_vs_actual(actual: np.ndarray, predicted: np.ndarray, target: str) -> Figure:
    """Each test row as a point; on the diagonal the prediction is exact."""
    fig = Figure(figsize=(4.6, 4.2), dpi=_DPI, layout="constrained")
    ax = fig.add_subplot()
    ax.scatter(actual, predicted, s=10, alpha=0.6)
    lo, hi = float(min(actual.min(), predicted.min())), float(max(actual.max(), predicted.max()))
    ax.plot([lo, hi], [lo, hi], color="#888", linewidth=1, label="exact")
    ax.set_xlabel(f"actual {target}")
    ax.set_ylabel(f"predicted {target}")
    ax.set_title("predicted vs actual (test)")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left")
    return fig


def residuals(actual: np.ndarray, predicted: np.ndarray, target: str) -> Figure:
    """Residual (actual - predicted) against the prediction: a trend or a funnel means a systematic error."""
    fig = Figure(figsize=(4.6, 4.2), dpi=_DPI, layout="constrained")
    ax = fig.add_subplot()
    ax.scatter(predicted, actual - predicted, s=10, alpha=0.6)
    ax.axhline(0.0, color="#888", linewidth=1)
    ax.set_xlabel(f"predicted {target}")
    ax.set_ylabel("residual (actual - predicted)")
    ax.set_title("residuals (test)")
    ax.grid(alpha=0.3)
    return fig
