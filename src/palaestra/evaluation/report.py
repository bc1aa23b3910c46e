"""The human report of a run: ``report.html`` and the plots it shows under ``plots/``.

What a person looks for first comes first: the headline test metrics, the doctor's findings, then the plots
(loss curves with the best epoch marked; predicted-vs-actual and residuals for regression; the confusion
matrix), per-class metrics, the history, and the resolved config folded away at the end. With several
targets, each metric block is shown per target. The figures are drawn in ``evaluation/plots.py``.
"""

from __future__ import annotations

import html
import math
import numbers
import re
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from palaestra.artifacts import atomic_write
from palaestra.evaluation import plots as P
from palaestra.training.callbacks import history_columns

_FULL_HISTORY = 50  # longer histories show only their first and last _HISTORY_EDGE epochs
_HISTORY_EDGE = 10
_FIRST_SECTIONS = ("Doctor",)  # extra sections that belong right under the headline metrics
_MAX_POINTS = 5000  # predicted-vs-actual: more test rows than this are subsampled

CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 60em; padding: 0 1em; color: #222; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; } .sub { color: #666; margin-top: 0; }
h2 { font-size: 1.2em; margin-top: 1.6em; border-bottom: 1px solid #ddd; } h3 { font-size: 1em; }
table { border-collapse: collapse; margin: 0.5em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.2em 0.6em; text-align: right; white-space: nowrap; }
th { background: #f3f3f3; } td:first-child, th:first-child { text-align: left; }
.scroll { overflow-x: auto; max-width: 100%; }
.headline td { font-size: 1.15em; } .best td { background: #eef7ee; }
pre { background: #f7f7f7; padding: 0.8em; overflow-x: auto; font-size: 0.85em; }
img { max-width: 100%; display: block; margin: 0.5em 0; }
.plots { display: flex; flex-wrap: wrap; gap: 0.5em 1em; align-items: flex-start; }
.stop { background: #fff4d6; padding: 0.5em 0.8em; border-left: 4px solid #e0a800; }
details summary { cursor: pointer; font-size: 1.2em; font-weight: bold; margin-top: 1.6em; }
"""


def write_report(run_dir: Path, config: dict, history: list[dict], metrics: dict, info: dict,
                 notices: list[str], sections: list[tuple[str, str]] | None = None,
                 predictions: dict[str, Any] | None = None) -> list[str]:
    """Write RUN/report.html and RUN/plots/*.png; return the written paths relative to run_dir (for the manifest).

    ``sections`` are extra ``(title, html)`` parts, such as the doctor's findings (shown under the headline
    metrics) or a model's own monitors; their HTML is trusted as already safe. ``predictions`` (regression):
    ``{"actual": [...], "predicted": [...], "target": name}`` for the test rows, in the target's units.

    >>> write_report(run_dir, cfg, history, metrics, {"task": "regression"}, [])  # doctest: +SKIP
    ['plots/loss.png', 'plots/metrics.png', 'report.html']
    """
    run_dir = Path(run_dir)
    best = _best_epoch(history, metrics)
    plots = _write_plots(run_dir, history, metrics, best, predictions)
    extra = list(sections or [])
    first = [(t, f) for t, f in extra if t in _FIRST_SECTIONS]
    later = [(t, f) for t, f in extra if t not in _FIRST_SECTIONS]
    parts = [_metrics_section("Test metrics", metrics.get("test"), headline=True)]
    parts += [f"<h2>{esc(title)}</h2>\n{fragment}" for title, fragment in first]
    if metrics.get("stop_reason"):
        parts.append(f'<h2>Stop reason</h2>\n<p class="stop">{esc(metrics["stop_reason"])}</p>')
    if notices:
        items = "".join(f"<li>{esc(n)}</li>" for n in notices)
        parts.append(f"<h2>Data notices</h2>\n<ul>{items}</ul>")
    if plots:
        images = "".join(f'<img src="{esc(p)}" alt="{esc(Path(p).stem)}">' for p in plots)
        parts.append(f'<h2>Plots</h2>\n<div class="plots">{images}</div>')
    parts += [_per_class_section(metrics), _confusion_section(metrics)]
    parts += [f"<h2>{esc(title)}</h2>\n{fragment}" for title, fragment in later]
    parts.append(_metrics_section("Validation metrics", metrics.get("val")))
    parts.append(kv_section("Run", {**info, "epochs": metrics.get("epochs"), "best epoch": best,
                                    "train_seconds": metrics.get("train_seconds")}))
    parts.append(_history_section(history, best))
    parts.append(f"<details><summary>Resolved config</summary>\n"
                 f"<pre>{esc(yaml.safe_dump(config, sort_keys=False))}</pre></details>")
    sub = " · ".join(str(info[k]) for k in ("task", "model", "data") if info.get(k))
    atomic_write(run_dir / "report.html", page(f"palaestra report: {_name(config)}", parts, sub))
    return [*plots, "report.html"]


def page(title: str, parts: list[str], subtitle: str = "") -> str:
    """A whole HTML page: the title, an optional subtitle, then ``parts`` (already-safe HTML; empty ones skipped)."""
    sub = f'<p class="sub">{esc(subtitle)}</p>\n' if subtitle else ""
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head><meta charset="utf-8"><title>{esc(title)}</title>'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<style>{CSS}</style></head>\n<body>\n<h1>{esc(title)}</h1>\n{sub}" + "\n".join(p for p in parts if p)
            + "\n</body>\n</html>\n")


def _name(config: dict) -> str:
    name = config.get("name") or "run"
    data = config.get("data") or {}
    if name == "run" and data.get("source"):  # the name the run list shows
        from palaestra.data.sources import default_target

        stem = Path(str(data["source"])).stem
        target = data.get("target") or default_target(str(data["source"]))
        return f"{stem}-{target}" if target else stem
    return name


def _best_epoch(history: list[dict], metrics: dict) -> int | None:
    best = metrics.get("best_epoch")
    if isinstance(best, int) and not isinstance(best, bool) and best > 0:
        return best
    losses = [(v, row.get("epoch", i + 1)) for i, row in enumerate(history)
              if isinstance(v := row.get("val_loss", row.get("train_loss")), numbers.Real) and math.isfinite(v)]
    return int(min(losses)[1]) if losses else None


# --- plots -------------------------------------------------------------------------------------------------


def _write_plots(run_dir: Path, history: list[dict], metrics: dict, best: int | None,
                 predictions: dict[str, Any] | None) -> list[str]:
    written: list[str] = []

    def save(name: str, fig) -> None:
        atomic_write(run_dir / "plots" / name, P.png(fig))
        written.append(f"plots/{name}")

    epochs = [row.get("epoch", i + 1) for i, row in enumerate(history)]
    if history:
        save("loss.png", P.curves(epochs, history, ["train_loss", "val_loss"], "loss", best))
    metric_keys = [k for k in _keys(history) if k.startswith("val_") and k != "val_loss"]
    if metric_keys:
        save("metrics.png", P.metric_grid(epochs, history, metric_keys, best))
    lrs = {v for v in P.series(history, "lr") if math.isfinite(v)}
    if len(lrs) > 1:
        save("lr.png", P.curves(epochs, history, ["lr"], "learning rate"))
    pairs = _pairs(predictions)
    if pairs is not None:
        actual, predicted, target = pairs
        save("predicted_vs_actual.png", P.predicted_vs_actual(actual, predicted, target))
        save("residuals.png", P.residuals(actual, predicted, target))
    split, blocks = _confusion_blocks(metrics)
    for label, part in blocks:
        suffix = f"-{_slug(label)}" if label else ""
        title = f"{split}, {label}" if label else split
        save(f"confusion_matrix{suffix}.png", P.confusion(part["confusion_matrix"], _labels(part), title))
    return written


def _pairs(predictions: dict[str, Any] | None) -> tuple[np.ndarray, np.ndarray, str] | None:
    if not predictions:
        return None
    try:
        actual = np.asarray(predictions["actual"], dtype=np.float64).reshape(-1)
        predicted = np.asarray(predictions["predicted"], dtype=np.float64).reshape(-1)
    except (KeyError, TypeError, ValueError):
        return None
    keep = np.isfinite(actual) & np.isfinite(predicted)
    if len(actual) != len(predicted) or not keep.any():
        return None
    actual, predicted = actual[keep], predicted[keep]
    if len(actual) > _MAX_POINTS:
        pick = np.random.default_rng(0).choice(len(actual), _MAX_POINTS, replace=False)
        actual, predicted = actual[pick], predicted[pick]
    return actual, predicted, str(predictions.get("target") or "target")


def regression_predictions(run: Any, split: Any, limit: int = _MAX_POINTS) -> dict[str, Any] | None:
    """A regression run's test predictions and targets in the target's units (for the report's plots)."""
    import torch

    if getattr(run.spec, "task", None) != "regression" or split is None or len(split) == 0:
        return None
    try:
        *inputs, target = (t[:limit] for t in split.tensors)
        device = next(iter(run.model.parameters())).device
        with torch.inference_mode():
            out = torch.cat([run.model(*(t[i:i + 1024].to(device) for t in inputs)).float().cpu()
                             for i in range(0, len(target), 1024)]).numpy()
        if out.ndim != 2 or out.shape[1] != 1 or target.numel() != len(target):
            return None  # several outputs per row (e.g. several targets, a horizon): not one scatter
        pre = run.preprocessor  # the run's own decoding: standardised values back to the target's units
        actual = pre.decode(target.numpy().astype(np.float64).reshape(-1, 1))[0].predictions
        return {"actual": np.asarray(actual).tolist(), "predicted": np.asarray(pre.decode(out)[0].predictions).tolist(),
                "target": getattr(pre, "target", None)}
    except Exception:  # a plot is a nicety: never lose a finished run over it
        return None


def _blocks(split: dict | None) -> list[tuple[str, dict]]:
    """A split's metric blocks: ``[("", split)]``, or one per target when metrics are nested per target."""
    split = split or {}
    nested = [(str(k), v) for k, v in split.items() if isinstance(v, dict)]
    if not nested:
        return [("", split)] if split else []
    flat = {k: v for k, v in split.items() if not isinstance(v, dict)}
    return ([("", flat)] if _scalars(flat) else []) + nested


def _confusion_blocks(metrics: dict) -> tuple[str, list[tuple[str, dict]]]:
    # The test split when there is one; a run without a test split still gets its validation matrix.
    for split in ("test", "val"):
        blocks = [(label, part) for label, part in _blocks(metrics.get(split)) if part.get("confusion_matrix")]
        if blocks:
            return split, blocks
    return "", []


def _labels(part: dict) -> list[str]:
    k, classes = len(part["confusion_matrix"]), part.get("classes")
    return [str(c) for c in classes] if classes and len(classes) == k else [str(i) for i in range(k)]


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)[:60]


# --- html --------------------------------------------------------------------------------------------------


def _history_section(history: list[dict], best: int | None = None) -> str:
    if not history:
        return ""
    keys = _keys(history)
    if len(history) <= _FULL_HISTORY:
        rows: list[dict | None] = list(history)
    else:
        rows = [*history[:_HISTORY_EDGE], None, *history[-_HISTORY_EDGE:]]  # None marks the elided epochs
    head = "".join(f"<th>{esc(k)}</th>" for k in keys)
    body = []
    for row in rows:
        if row is None:
            body.append(f'<tr><td colspan="{len(keys)}">… {len(history) - 2 * _HISTORY_EDGE} epochs …</td></tr>')
        else:
            mark = ' class="best"' if best is not None and row.get("epoch") == best else ""
            body.append(f"<tr{mark}>" + "".join(f"<td>{esc(fmt(row.get(k)))}</td>" for k in keys) + "</tr>")
    # A wide history (many metrics) scrolls inside its box instead of widening the page.
    note = f"<p>The best epoch ({best}) is highlighted.</p>\n" if best is not None else ""
    return (f'<h2>History</h2>\n{note}<div class="scroll"><table><tr>{head}</tr>\n' + "\n".join(body)
            + "</table></div>")


def _confusion_section(metrics: dict) -> str:
    split, blocks = _confusion_blocks(metrics)
    out = []
    for label, part in blocks:
        labels = _labels(part)
        head = "<tr><th>true \\ predicted</th>" + "".join(f"<th>{esc(c)}</th>" for c in labels) + "</tr>"
        body = "\n".join(f"<tr><th>{esc(name)}</th>" + "".join(f"<td>{esc(n)}</td>" for n in row) + "</tr>"
                         for name, row in zip(labels, part["confusion_matrix"], strict=True))
        title = f"Confusion matrix ({split}{', ' + label if label else ''})"
        out.append(f'<h2>{esc(title)}</h2>\n<div class="scroll"><table>\n{head}\n{body}\n</table></div>')
    return "\n".join(out)


def per_class(matrix: list[list[int]]) -> list[dict[str, float]]:
    """Precision, recall, F1 and support per class from a confusion matrix (rows: true, columns: predicted)."""
    m = np.asarray(matrix, dtype=np.float64)
    tp, support, predicted = np.diag(m), m.sum(axis=1), m.sum(axis=0)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, support, out=np.zeros_like(tp), where=support > 0)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros_like(tp), where=precision + recall > 0)
    return [{"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
            for p, r, f, s in zip(precision, recall, f1, support, strict=True)]


def _per_class_section(metrics: dict) -> str:
    split, blocks = _confusion_blocks(metrics)
    out = []
    for label, part in blocks:
        rows = per_class(part["confusion_matrix"])
        head = "<tr><th>class</th><th>precision</th><th>recall</th><th>F1</th><th>support</th></tr>"
        body = "\n".join(f"<tr><td>{esc(name)}</td>" + "".join(f"<td>{esc(fmt(r[k]))}</td>" for k in r) + "</tr>"
                         for name, r in zip(_labels(part), rows, strict=True))
        title = f"Per-class metrics ({split}{', ' + label if label else ''})"
        out.append(f'<h2>{esc(title)}</h2>\n<div class="scroll"><table>\n{head}\n{body}\n</table></div>')
    return "\n".join(out)


def _metrics_section(title: str, split: dict | None, headline: bool = False) -> str:
    out = []
    for label, block in _blocks(split):
        values = _scalars(block)
        if values:
            out.append(kv_section(f"{title} ({label})" if label else title, values,
                                  "headline" if headline else ""))
    return "\n".join(out)


def kv_section(title: str, values: dict[str, Any], css_class: str = "") -> str:
    """A titled two-column table of ``name: value`` (``None`` values left out)."""
    rows = [(k, v) for k, v in values.items() if v is not None]
    if not rows:
        return ""
    body = "\n".join(f"<tr><td>{esc(k)}</td><td>{esc(fmt(v))}</td></tr>" for k, v in rows)
    cls = f' class="{css_class}"' if css_class else ""
    return f"<h2>{esc(title)}</h2>\n<table{cls}>\n{body}\n</table>"


def _scalars(split: dict | None) -> dict[str, float]:
    return {k: v for k, v in (split or {}).items() if isinstance(v, numbers.Real) and not isinstance(v, bool)}


def _keys(history: list[dict]) -> list[str]:
    """Every column that appears in any epoch (val_* may start late), in history.csv's order."""
    return history_columns(history)


def fmt(value: Any) -> str:
    if isinstance(value, numbers.Real) and not isinstance(value, numbers.Integral):
        return f"{float(value):.4g}"
    return "" if value is None else str(value)


def esc(value: Any) -> str:
    return html.escape(str(value))
