"""Report sections that fit the task: the forecast against what happened (with the baselines), and text sampled
from a language model. Each returns ``(title, html)`` for ``write_report(sections=...)``, or None."""

from __future__ import annotations

import base64
import html
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from palaestra.evaluation.plots import png

MAX_POINTS = 2000


def _image(fig: Figure, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(png(fig)).decode("ascii")}">'


def forecast_section(run: Any, data: Any) -> tuple[str, str] | None:
    """The test span of the first series: actual values, the model's one-step-ahead forecasts and the baselines
    on the same points (persistence, seasonal naive, ETS), in the target's units."""
    split = data.test
    if run.spec.task != "forecast" or split is None or len(split) == 0:
        return None
    from palaestra.training.loop import split_outputs

    pre = run.preprocessor
    device = next(iter(run.model.parameters())).device
    parts = pre.split_forecasts(data.raw, split, split_outputs(run.model, split, device))
    series = parts.pop("series")
    parts.pop("scale")
    first = series == series[0]
    rows = np.asarray(split.index)[first][-MAX_POINTS:]
    time_col = getattr(pre, "time_column", None)
    x = data.raw[time_col].iloc[rows].to_numpy() if time_col and time_col in data.raw.columns else rows
    actual = parts.pop("actual")[first][-MAX_POINTS:, 0]
    fig = Figure(figsize=(9, 3.6), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    ax.plot(x, actual, color="black", linewidth=1.4, label="actual")
    labels = {"model": "forecast", "naive": "persistence", "seasonal_naive": "seasonal naive", "ets": "ETS"}
    for name, values in parts.items():
        predicted = values[first][-MAX_POINTS:, 0]
        style = {"linewidth": 1.2} if name == "model" else {"linewidth": 0.9, "linestyle": "--", "alpha": 0.7}
        ax.plot(x, predicted, label=f"{labels[name]} (mae {np.mean(np.abs(predicted - actual)):.4g})", **style)
    ax.set_xlabel(time_col or "row")
    ax.set_ylabel(str(pre.target))
    where = f" of {pre.series_id} {series[0]}" if getattr(pre, "series_id", None) else ""
    ax.set_title(f"test span{where}: one-step-ahead forecasts from each origin")
    ax.grid(alpha=0.3)
    ax.legend()
    return "Forecast vs actual (test span)", _image(fig, "forecast vs actual")


def text_sample_section(run: Any, length: int = 300) -> tuple[str, str] | None:
    """A sample from a language model (temperature 0.8, fixed seed), to read beside its bits per character."""
    if run.spec.task != "language_model":
        return None
    from palaestra.models.text_sampling import generate_text

    text = generate_text(run, "", length=length, temperature=0.8, top_k=20, seed=0)
    note = "300 characters sampled at temperature 0.8 (top 20), seed 0: <code>palaestra generate RUN</code> draws more."
    return "A sample of generated text", f"<p>{note}</p><pre>{html.escape(text)}</pre>"


def _reliability_figure(before: list | None, after: list | None) -> Figure:
    fig = Figure(figsize=(4.6, 4.2), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1, label="perfect calibration")
    for table, label, style in ((before, "before", "--"), (after, "after", "-")):
        if table:
            conf, acc, rows = (np.array([r[i] for r in table], dtype=float) for i in (3, 4, 2))
            line = ax.plot(conf, acc, linestyle=style, label=label)[0]
            ax.scatter(conf, acc, s=10 + 60 * rows / rows.max(), color=line.get_color())  # area: rows in the bin
    ax.set_xlabel("confidence (mean top-class probability in the bin)")
    ax.set_ylabel("accuracy in the bin")
    lowest = min((r[0] for t in (before, after) if t for r in t), default=0.0)  # binary: confidence >= 0.5
    ax.set_xlim(max(0.0, lowest - 0.05), 1.0)
    ax.set_ylim(0, 1.02)
    ax.set_title("reliability diagram (test split)")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left")
    return fig


def _table(header: list[str], rows: list[list[Any]]) -> str:
    def cell(v: Any) -> str:
        return f"{v:.4f}" if isinstance(v, float) else html.escape(str(v))

    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{cell(v)}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def decisions_section(metrics: dict[str, Any]) -> tuple[str, str] | None:
    """Calibration (ECE before/after temperature scaling, the reliability diagram), the binary decision threshold
    beside 0.5, and the loss's class weights: whichever of them the run has (classification)."""
    cal, decision, weights = metrics.get("calibration"), metrics.get("decision"), metrics.get("class_weights")
    test = metrics.get("test") or {}
    if not (cal or decision or weights or "reliability" in test):
        return None
    parts = []
    if cal and cal.get("method") == "temperature":
        verdict = "applied" if cal.get("applied") else "not applied (it did not lower the validation ECE)"
        parts.append(f"<p>Temperature scaling fitted on the validation split: T = {cal['temperature']:.4g}, {verdict}. "
                     f"Expected calibration error over 15 confidence bins (lower is better):</p>")
        rows = [["validation", cal.get("val_ece_before"), cal.get("val_ece_after")]]
        if "test_ece_before" in cal:
            rows.append(["test", cal["test_ece_before"], cal["test_ece_after"]])
        parts.append(_table(["split", "ECE before", "ECE after"], rows))
    elif cal:
        parts.append(f"<p>Calibration: {html.escape(str(cal.get('reason', cal.get('method'))))}.</p>")
    if "reliability" in test:
        before = cal.get("reliability_before") if cal and cal.get("applied") else None
        parts.append(_image(_reliability_figure(before, test["reliability"]), "reliability diagram"))
    if decision:
        objective = decision["objective"]
        what = f"cost ratio {objective:g} (a missed positive costs {objective:g} false alarms)" \
            if isinstance(objective, int | float) else str(objective)
        parts.append(f"<p>Decision threshold for the positive class <b>{html.escape(str(decision['positive_class']))}</b>, "
                     f"chosen on the validation split for {html.escape(what)}: "
                     f"<b>{decision['threshold']:.4g}</b> (predict applies it), beside 0.5:</p>")
        names = ["precision", "recall", "f1", "balanced_accuracy", "accuracy"]
        splits = [s for s in ("val", "test") if s in decision]
        header = ["metric"] + [f"{s} @ {t}" for s in splits for t in ("0.5", f"{decision['threshold']:.3g}")]
        rows = [[n] + [decision[s][k][n] for s in splits for k in ("at_0.5", "at_threshold")] for n in names]
        parts.append(_table(header, rows))
    if weights:
        parts.append("<p>Class weights in the loss (<code>loss.class_weights</code>):</p>")
        parts.append(_table(["class", "weight"], [[c, float(w)] for c, w in weights.items()]))
    return "Calibration and decisions", "\n".join(parts)
