"""Why a table model predicts what it does: ``palaestra explain RUN --data FILE``.

- **Permutation importance per raw column** (the user's columns, never one-hot parts or missing-value flags):
  each column's values are shuffled across the rows, ``repeats`` times, and the model is scored again through
  ``Run.evaluate`` (the one evaluation path). A column's importance is how much the score gets worse: the mean
  over the repeats, with a 95 % confidence interval from Student's t on the repeats' spread. The score is the
  run's loss by default (any scalar metric it reports may be named instead: ``accuracy``, ``r2``, ...).
- **Integrated gradients** (Captum, the ``explain`` extra) for a few rows: each numeric-block input's share of
  the predicted class's logit (or of the predicted value, regression) against an all-zero baseline (about
  the training median of a number read through its quantiles, the mean of a z-scored one, the smallest value
  of one in piecewise bins; no category set), summed back onto the raw column it came from.
  Columns read through an embedding or a text encoder are not differentiable inputs and get no attribution.

>>> result = permutation_importance(Run.load("runs/churn"), "labelled.csv")  # doctest: +SKIP
>>> [c["column"] for c in result["columns"]][:2]                               # doctest: +SKIP
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from palaestra.data.sources import read_source
from palaestra.data.targets import labelled_rows
from palaestra.errors import ConfigError, DataError
from palaestra.runs import Run
from palaestra.training.callbacks import monitor_mode
from palaestra.training.loop import scalar_metrics

MAX_COLUMNS = 256  # a permutation pass per column and repeat: beyond this, name fewer columns


def _table(run: Run, data: Any) -> pd.DataFrame:
    pre = run.preprocessor
    if run.spec.kind != "table" or not hasattr(pre, "feature_columns") or not hasattr(pre, "labelled"):
        raise DataError(f"explain works on table runs (rows with named columns); this is a {run.spec.kind} "
                        f"{run.spec.task} run")
    frame = read_source(str(data)) if isinstance(data, str | Path) else data
    if not isinstance(frame, pd.DataFrame):
        raise DataError("explain needs rows with the training columns (a CSV or Parquet file, or a DataFrame)")
    pre.check_columns(frame)
    return frame


def _scores(run: Run, rows: pd.DataFrame) -> dict[str, float]:
    result = run.evaluate(rows, with_loss=True)
    return {**scalar_metrics(result), "loss": float(result["loss"])}


class _LossOnly:
    """The mean loss of shuffled copies of ``rows``: targets encoded and the loss built once, then only the inputs
    are transformed again, through the loop's own ``evaluate`` (no metric set: the loss is all it needs)."""

    def __init__(self, run: Run, rows: pd.DataFrame):
        import torch

        from palaestra.evaluation.calibration import scaled
        from palaestra.training.losses import build_loss

        pre = run.preprocessor
        self.run, self.target = run, torch.from_numpy(np.ascontiguousarray(pre.encode_targets(rows)))
        self.loss_fn = build_loss(run.config.loss, run.spec, self.target)
        self.model = scaled(run.model, getattr(pre, "temperature", 1.0))
        self.device = next(iter(run.model.parameters()), torch.empty(0)).device

    def __call__(self, rows: pd.DataFrame) -> float:
        import torch

        from palaestra.training.loop import evaluate

        inputs = [torch.from_numpy(np.ascontiguousarray(a)) for a in self.run.preprocessor.inputs(rows)]
        tensors = [*inputs, self.target]
        batches = [tuple(t[i:i + 4096].to(self.device) for t in tensors) for i in range(0, len(self.target), 4096)]
        return float(evaluate(self.model, batches, self.loss_fn, None, self.device)["loss"])


# Student's t, 97.5 % quantile, for 1-30 degrees of freedom (a table: scipy.stats costs a second to import).
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
         2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)


def t_quantile(df: int) -> float:
    """The two-sided 95 % critical value of Student's t with ``df`` degrees of freedom (Cornish-Fisher past 30)."""
    if df <= len(_T975):
        return _T975[df - 1]
    z = 1.959964
    return z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)


def permutation_importance(run: Run, data: Any, metric: str = "loss", repeats: int = 10, max_rows: int = 2000,
                           seed: int = 0, columns: list[str] | None = None) -> dict[str, Any]:
    """Permutation importance of each raw input column on labelled ``data`` (see the module docstring).

    Returns ``{"metric", "direction", "baseline", "rows", "repeats", "columns": [{"column", "importance",
    "std", "ci_low", "ci_high", "drops"}, ...]}``, most important first."""
    if repeats < 2:
        raise ConfigError("explain needs at least 2 repeats for a confidence interval")
    pre = run.preprocessor
    rows = labelled_rows(_table(run, data), pre.targets)
    if len(rows) < 10:
        raise DataError(f"explain needs at least 10 labelled rows, found {len(rows)}")
    if len(rows) > max_rows:  # a random subset: the importance is a mean over rows, its spread is in the interval
        rows = rows.sample(max_rows, random_state=seed)
    rows = rows.reset_index(drop=True)
    names = columns or list(pre.feature_columns)
    unknown = [c for c in names if c not in pre.feature_columns]
    if unknown:
        raise DataError(f"not an input column of this run: {', '.join(map(repr, unknown[:5]))}; "
                        f"the inputs are {', '.join(map(repr, pre.feature_columns[:20]))}")
    if len(names) > MAX_COLUMNS:
        raise DataError(f"{len(names)} input columns: explain at most {MAX_COLUMNS} at a time (--column)")
    scores = _scores(run, rows)
    if metric not in scores:
        raise DataError(f"metric '{metric}' is not reported for this run; choose one of: {', '.join(sorted(scores))}")
    higher_is_better = monitor_mode(metric) == "max"
    base = scores[metric]
    score = _LossOnly(run, rows) if metric == "loss" else (lambda frame: _scores(run, frame)[metric])
    rng = np.random.default_rng(seed)
    t = t_quantile(repeats - 1)
    out = []
    for name in names:
        original = rows[name].to_numpy()
        drops = []
        for _ in range(repeats):
            shuffled = rows.copy()
            shuffled[name] = original[rng.permutation(len(rows))]
            value = score(shuffled)
            drops.append(base - value if higher_is_better else value - base)  # > 0: the column matters
        mean, std = float(np.mean(drops)), float(np.std(drops, ddof=1))
        half = t * std / math.sqrt(repeats)
        out.append({"column": name, "importance": mean, "std": std, "ci_low": mean - half, "ci_high": mean + half,
                    "drops": drops})
    out.sort(key=lambda c: c["importance"], reverse=True)
    return {"metric": metric, "direction": "higher is better" if higher_is_better else "lower is better",
            "baseline": base, "rows": len(rows), "repeats": repeats, "columns": out}


def integrated_gradients(run: Run, data: Any, rows: int = 5, steps: int = 64) -> list[dict[str, Any]]:
    """Per-row attributions by integrated gradients (Captum) for the first ``rows`` rows, per raw column."""
    try:
        from captum.attr import IntegratedGradients
    except ImportError:
        raise ConfigError("integrated gradients need the 'explain' extra (Captum), which is not installed: "
                          "pip install 'palaestra[explain]'") from None
    import torch

    from palaestra.evaluation.calibration import scaled

    pre = run.preprocessor
    frame = _table(run, data).head(rows).reset_index(drop=True)
    if len(pre.outputs) != 1:
        raise DataError("integrated gradients explain one target; this run has several")
    model = scaled(run.model, getattr(pre, "temperature", 1.0)).eval()
    device = next(iter(run.model.parameters())).device
    inputs = tuple(torch.from_numpy(np.ascontiguousarray(a)).to(device) for a in pre.inputs(frame))
    numeric, rest = inputs[0].float(), inputs[1:]
    with torch.no_grad():
        out = model(numeric, *rest).float()
    classification = pre.task == "classification"
    targets = out.argmax(1) if classification else torch.zeros(len(frame), dtype=torch.long, device=device)
    baseline = torch.zeros_like(numeric)
    with torch.no_grad():
        at_baseline = model(baseline, *rest).float()
    ig = IntegratedGradients(lambda num, *others: model(num, *others))
    attr, delta = ig.attribute(numeric, baselines=baseline, target=targets, additional_forward_args=rest,
                               n_steps=steps, return_convergence_delta=True)
    attr = attr.detach().double().cpu().numpy()
    spans, start = [], 0
    for f in pre.dense:
        width = len(f.columns())
        spans.append((f.name, start, start + width))
        start += width
    not_differentiable = [f.name for f in pre.features if f.name not in {s[0] for s in spans}]
    decoded = pre.decode(out.detach().cpu().numpy())[0]
    result = []
    for i in range(len(frame)):
        k = int(targets[i])
        attributions = {name: float(attr[i, a:b].sum()) for name, a, b in spans}
        attributions.update({name: None for name in not_differentiable})
        result.append({"row": i, "prediction": _plain(decoded.predictions[i]),
                       "explained": f"logit of class {pre.classes[k]!s}" if classification else "predicted value "
                                    "(standardised)",
                       "output": float(out[i, k]), "baseline_output": float(at_baseline[i, k]),
                       "convergence_delta": float(delta[i]), "attributions": attributions})
    return result


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


def importance_figure(result: dict[str, Any], top: int = 20):
    """A horizontal bar chart of the importances with their 95 % intervals (most important on top)."""
    from matplotlib.figure import Figure

    cols = result["columns"][:top][::-1]
    fig = Figure(figsize=(6.4, 0.45 * len(cols) + 1.2), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    y = np.arange(len(cols))
    means = np.array([c["importance"] for c in cols])
    err = np.array([[c["importance"] - c["ci_low"] for c in cols], [c["ci_high"] - c["importance"] for c in cols]])
    ax.barh(y, means, xerr=err, color="#4c72b0", ecolor="#333333", capsize=3)
    ax.set_yticks(y, [str(c["column"])[:40] for c in cols])
    ax.axvline(0, color="grey", linewidth=0.8)
    ax.set_xlabel(f"increase in {result['metric']} when shuffled" if result["direction"] == "lower is better"
                  else f"decrease in {result['metric']} when shuffled")
    ax.set_title(f"permutation importance ({result['repeats']} repeats, {result['rows']} rows, 95 % CI)")
    ax.grid(axis="x", alpha=0.3)
    return fig


def importance_section(result: dict[str, Any]) -> tuple[str, str]:
    """``(title, html)`` for report.html: the chart and the table."""
    import base64
    import html

    from palaestra.evaluation.plots import png

    image = base64.b64encode(png(importance_figure(result))).decode("ascii")
    rows = "".join(f"<tr><td>{html.escape(str(c['column']))}</td><td>{c['importance']:.4g}</td>"
                   f"<td>[{c['ci_low']:.4g}, {c['ci_high']:.4g}]</td></tr>" for c in result["columns"])
    note = (f"<p>How much the test {html.escape(result['metric'])} worsens when one column's values are shuffled "
            f"across the {result['rows']} test rows ({result['repeats']} repeats; 95 % confidence interval). "
            f"<code>palaestra explain RUN --data FILE</code> measures it on other data, with per-row attributions.</p>")
    return ("Which columns matter (permutation importance)",
            f'{note}<img alt="permutation importance" src="data:image/png;base64,{image}">'
            f"<table><tr><th>column</th><th>importance</th><th>95 % interval</th></tr>{rows}</table>")
