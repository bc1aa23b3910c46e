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
    """The test span, one panel per series (the first ``MAX_SERIES``): actual values, the forecasts and the
    baselines on the same points (persistence, seasonal naive, ETS), in the target's units; each origin's whole
    horizon when the origins are a horizon or more apart (a backtest), else the one-step-ahead forecasts."""
    split = data.test
    if run.spec.task != "forecast" or split is None or len(split) == 0:
        return None
    from palaestra.training.loop import split_outputs

    pre = run.preprocessor
    device = next(iter(run.model.parameters())).device
    parts = pre.split_forecasts(data.raw, split, split_outputs(run.model, split, device))
    fig = forecast_figure(parts, np.asarray(split.index), data.raw, pre)
    blend = (run.metrics or {}).get("blend")
    text = _blend_text(blend) if blend else ""
    return "Forecast vs actual (test span)", text + _image(fig, "forecast vs actual")


def _blend_text(blend: dict[str, Any]) -> str:
    weights, alone = blend["weights"], blend["val_mase_members"]
    terms = " + ".join(f"{w:.2f} &times; {MEMBER_NAMES.get(name, name)}" for name, w in weights.items())
    scores = ", ".join(f"{MEMBER_NAMES.get(name, name)} {score:.3f}" for name, score in alone.items())
    return (f"<p>The forecast is {terms} (<code>model.blend</code>), the weights fitted on the validation span. "
            f"Validation MASE: {blend['val_mase']:.3f} combined; alone: {scores}.</p>")


MEMBER_NAMES = {"network": "the network", "seasonal_naive": "seasonal naive",
                "seasonal_mean": "the mean seasonal profile", "seasonal_drift": "seasonal naive with drift"}
MAX_SERIES = 6
LABELS = {"model": "forecast", "naive": "persistence", "seasonal_naive": "seasonal naive", "ets": "ETS"}


def forecast_figure(parts: dict[str, Any], first_rows: np.ndarray, frame: Any, pre: Any) -> Figure:
    """``parts``: ``split_forecasts``' arrays (each ``(N, H)``) with ``series``; ``first_rows``: each window's
    first target row in ``frame``."""
    parts = dict(parts)
    series, actual = parts.pop("series"), parts.pop("actual")
    parts.pop("scale", None)
    horizon = actual.shape[1]
    keys = list(dict.fromkeys(series.tolist()))
    gaps = [np.diff(first_rows[series == k]) for k in keys]
    paths = horizon > 1 and all(len(g) == 0 or g.min() >= horizon for g in gaps)
    steps = horizon if paths else 1
    time_col = getattr(pre, "time_column", None)
    times = np.arange(len(frame))
    if time_col and time_col in frame.columns:
        from palaestra.data.forecast import time_key

        key = time_key(frame, time_col)  # numbers as they are, dates and tsibble's quarters and weeks parsed
        times = key.to_numpy() if not key.isna().any() else frame[time_col].to_numpy()
    shown = keys[:MAX_SERIES]
    fig = Figure(figsize=(9, 1.0 + 2.8 * len(shown)), dpi=100, layout="constrained")
    for i, key in enumerate(shown):
        ax = fig.add_subplot(len(shown), 1, i + 1)
        mine = np.flatnonzero(series == key)[-(MAX_POINTS // steps or 1):]
        rows = first_rows[mine][:, None] + np.arange(steps)[None, :]  # (origins, steps) rows of the frame
        truth = actual[mine, :steps]
        order = np.argsort(rows, axis=None)
        ax.plot(times[rows.ravel()[order]], truth.ravel()[order], color="black", linewidth=1.4, label="actual")
        for name, values in parts.items():
            predicted = values[mine, :steps]
            style = {"linewidth": 1.2} if name == "model" else {"linewidth": 0.9, "linestyle": "--", "alpha": 0.7}
            label = f"{LABELS.get(name, name)} (mae {np.mean(np.abs(predicted - truth)):.4g})"
            if paths:  # one line per origin, one legend entry
                color = None
                for j in range(len(mine)):
                    line = ax.plot(times[rows[j]], predicted[j], color=color, label=label if j == 0 else None, **style)
                    color = line[0].get_color()
            else:
                ax.plot(times[rows[:, 0]], predicted[:, 0], label=label, **style)
        ax.set_ylabel(str(pre.target))
        where = f"{pre.series_id} {key}: " if getattr(pre, "series_id", None) else ""
        how = f"each origin's next {horizon} steps" if paths else "one-step-ahead forecasts from each origin"
        ax.set_title(f"{where}test span, {how}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    ax.set_xlabel(time_col or "row")
    if len(keys) > len(shown):
        fig.suptitle(f"the first {len(shown)} of {len(keys)} series")
    return fig


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
