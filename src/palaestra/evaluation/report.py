"""The human report of a run: ``report.html`` and the plots it shows under ``plots/``.

Plots are drawn on ``matplotlib.figure.Figure`` with the Agg canvas, never through pyplot, so writing a
report touches no global matplotlib state (backend, open-figure registry) in the caller's process.
"""

from __future__ import annotations

import html
import io
import math
import numbers
from pathlib import Path
from typing import Any

import yaml
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from palaestra.artifacts import atomic_write

_DPI = 100
_FULL_HISTORY = 50  # longer histories show only their first and last _HISTORY_EDGE epochs
_HISTORY_EDGE = 10
_MAX_ANNOTATED_CLASSES = 20  # beyond this the counts no longer fit in the confusion-matrix cells

_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 60em; color: #222; }
h1 { font-size: 1.6em; } h2 { font-size: 1.2em; margin-top: 1.6em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 0.5em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.2em 0.6em; text-align: right; }
th { background: #f3f3f3; } td:first-child, th:first-child { text-align: left; }
pre { background: #f7f7f7; padding: 0.8em; overflow-x: auto; font-size: 0.85em; }
img { max-width: 100%; display: block; margin: 0.5em 0; }
.stop { background: #fff4d6; padding: 0.5em 0.8em; border-left: 4px solid #e0a800; }
"""


def write_report(run_dir: Path, config: dict, history: list[dict], metrics: dict, info: dict,
                 notices: list[str], sections: list[tuple[str, str]] | None = None) -> list[str]:
    """Write RUN/report.html and RUN/plots/*.png; return the written paths relative to run_dir (for the manifest).

    ``sections`` are extra ``(title, html)`` parts appended to the report, such as the doctor's findings;
    their HTML is trusted as already safe.

    >>> write_report(run_dir, cfg, history, metrics, {"task": "regression"}, [])  # doctest: +SKIP
    ['plots/loss.png', 'plots/metrics.png', 'report.html']
    """
    run_dir = Path(run_dir)
    plots = _write_plots(run_dir, history, metrics)
    parts = [
        _table_section("Test metrics", _scalars(metrics.get("test"))),
        _table_section("Validation metrics", _scalars(metrics.get("val"))),
        _table_section("Run", {**info, "epochs": metrics.get("epochs"), "train_seconds": metrics.get("train_seconds")}),
    ]
    parts.append(_confusion_section(metrics))
    if metrics.get("stop_reason"):
        parts.append(f'<h2>Stop reason</h2>\n<p class="stop">{_esc(metrics["stop_reason"])}</p>')
    if notices:
        items = "".join(f"<li>{_esc(n)}</li>" for n in notices)
        parts.append(f"<h2>Data notices</h2>\n<ul>{items}</ul>")
    if plots:
        images = "".join(f'<img src="{_esc(p)}" alt="{_esc(Path(p).stem)}">' for p in plots)
        parts.append(f"<h2>Plots</h2>\n{images}")
    parts.append(_history_section(history))
    parts.append(f"<h2>Resolved config</h2>\n<pre>{_esc(yaml.safe_dump(config, sort_keys=False))}</pre>")
    parts += [f"<h2>{_esc(title)}</h2>\n{fragment}" for title, fragment in sections or []]

    title = _esc(f"palaestra report: {config.get('name', 'run')}")
    page = (f'<!DOCTYPE html>\n<html lang="en">\n<head><meta charset="utf-8"><title>{title}</title>'
            f"<style>{_CSS}</style></head>\n<body>\n<h1>{title}</h1>\n" + "\n".join(p for p in parts if p)
            + "\n</body>\n</html>\n")
    atomic_write(run_dir / "report.html", page)
    return [*plots, "report.html"]


# --- plots -------------------------------------------------------------------------------------------------


def _write_plots(run_dir: Path, history: list[dict], metrics: dict) -> list[str]:
    written: list[str] = []

    def save(name: str, fig: Figure) -> None:
        buf = io.BytesIO()
        FigureCanvasAgg(fig).print_png(buf)
        atomic_write(run_dir / "plots" / name, buf.getvalue())
        written.append(f"plots/{name}")

    epochs = [row.get("epoch", i + 1) for i, row in enumerate(history)]
    if history:
        save("loss.png", _curves(epochs, history, ["train_loss", "val_loss"], "loss"))
    metric_keys = [k for k in _keys(history) if k.startswith("val_") and k != "val_loss"]
    if metric_keys:
        save("metrics.png", _metric_grid(epochs, history, metric_keys))
    lrs = {v for v in _series(history, "lr") if math.isfinite(v)}
    if len(lrs) > 1:
        save("lr.png", _curves(epochs, history, ["lr"], "learning rate"))
    split, part = _confusion_split(metrics)
    if part:
        save("confusion_matrix.png", _confusion(part["confusion_matrix"], _labels(part), split))
    return written


def _confusion_split(metrics: dict) -> tuple[str, dict]:
    # The test split when there is one; a run without a test split still gets its validation matrix.
    for split in ("test", "val"):
        part = metrics.get(split) or {}
        if part.get("confusion_matrix"):
            return split, part
    return "", {}


def _labels(part: dict) -> list[str]:
    k, classes = len(part["confusion_matrix"]), part.get("classes")
    return [str(c) for c in classes] if classes and len(classes) == k else [str(i) for i in range(k)]


def _curves(epochs: list, history: list[dict], keys: list[str], ylabel: str) -> Figure:
    fig = Figure(figsize=(6, 3.5), dpi=_DPI, layout="constrained")
    ax = fig.add_subplot()
    for key in keys:
        values = _series(history, key)
        if any(math.isfinite(v) for v in values):
            ax.plot(epochs, values, marker="o" if len(epochs) < 30 else None, markersize=3, label=key)
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    if ax.lines:
        ax.legend()
    return fig


def _metric_grid(epochs: list, history: list[dict], keys: list[str]) -> Figure:
    # One small panel per metric: rmse and r2 (or accuracy and loss-like values) do not share a scale.
    cols = min(3, len(keys))
    rows = math.ceil(len(keys) / cols)
    fig = Figure(figsize=(3.2 * cols, 2.4 * rows), dpi=_DPI, layout="constrained")
    for i, key in enumerate(keys):
        ax = fig.add_subplot(rows, cols, i + 1)
        ax.plot(epochs, _series(history, key), marker="o" if len(epochs) < 30 else None, markersize=3)
        ax.set_title(key, fontsize=9)
        ax.set_xlabel("epoch", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    return fig


def _confusion(matrix: list[list[int]], labels: list[str], split: str) -> Figure:
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


# --- html --------------------------------------------------------------------------------------------------


def _history_section(history: list[dict]) -> str:
    if not history:
        return ""
    keys = _keys(history)
    if len(history) <= _FULL_HISTORY:
        rows: list[dict | None] = list(history)
    else:
        rows = [*history[:_HISTORY_EDGE], None, *history[-_HISTORY_EDGE:]]  # None marks the elided epochs
    head = "".join(f"<th>{_esc(k)}</th>" for k in keys)
    body = []
    for row in rows:
        if row is None:
            body.append(f'<tr><td colspan="{len(keys)}">… {len(history) - 2 * _HISTORY_EDGE} epochs …</td></tr>')
        else:
            body.append("<tr>" + "".join(f"<td>{_esc(_fmt(row.get(k)))}</td>" for k in keys) + "</tr>")
    return f"<h2>History</h2>\n<table><tr>{head}</tr>\n" + "\n".join(body) + "</table>"


def _confusion_section(metrics: dict) -> str:
    split, part = _confusion_split(metrics)
    if not part:
        return ""
    labels = _labels(part)
    head = "<tr><th>true \\ predicted</th>" + "".join(f"<th>{_esc(c)}</th>" for c in labels) + "</tr>"
    body = "\n".join(f"<tr><th>{_esc(label)}</th>" + "".join(f"<td>{_esc(n)}</td>" for n in row) + "</tr>"
                     for label, row in zip(labels, part["confusion_matrix"], strict=True))
    return f"<h2>Confusion matrix ({_esc(split)})</h2>\n<table>\n{head}\n{body}\n</table>"


def _table_section(title: str, values: dict[str, Any]) -> str:
    rows = [(k, v) for k, v in values.items() if v is not None]
    if not rows:
        return ""
    body = "\n".join(f"<tr><td>{_esc(k)}</td><td>{_esc(_fmt(v))}</td></tr>" for k, v in rows)
    return f"<h2>{_esc(title)}</h2>\n<table>\n{body}\n</table>"


def _scalars(split: dict | None) -> dict[str, float]:
    return {k: v for k, v in (split or {}).items() if isinstance(v, numbers.Real) and not isinstance(v, bool)}


def _keys(history: list[dict]) -> list[str]:
    """Every column that appears in any epoch, in first-seen order (val_* may start late)."""
    return list(dict.fromkeys(k for row in history for k in row))


def _series(history: list[dict], key: str) -> list[float]:
    # Missing and non-finite values become NaN, which matplotlib draws as a gap instead of failing.
    out = []
    for row in history:
        v = row.get(key)
        out.append(float(v) if isinstance(v, numbers.Real) and math.isfinite(v) else math.nan)
    return out


def _fmt(value: Any) -> str:
    if isinstance(value, numbers.Real) and not isinstance(value, numbers.Integral):
        return f"{float(value):.4g}"
    return "" if value is None else str(value)


def _esc(value: Any) -> str:
    return html.escape(str(value))
