"""Report sections that fit the task: the forecast against what happened (with the baselines), and text sampled
from a language model. Each returns ``(title, html)`` for ``write_report(sections=...)``, or None."""

from __future__ import annotations

import base64
import html
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure

from palaestra.evaluation.plots import png

MAX_POINTS = 2000


def _image(fig: Figure, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(png(fig)).decode("ascii")}">'


def forecast_section(run: Any, data: Any) -> tuple[str, str] | None:
    """The test span: actual values, the model's forecasts and the persistence forecast, in the target's units."""
    split = data.test
    if run.spec.task != "forecast" or split is None or len(split) == 0:
        return None
    pre, model = run.preprocessor, run.model
    inputs = tuple(t[-MAX_POINTS:] for t in split.inputs)
    device = next(iter(model.parameters())).device
    with torch.inference_mode():
        out = model(*(t.to(device) for t in inputs)).float().cpu().numpy()
    predicted = pre.decode(out)[0].predictions
    actual = pre.decode_target(split.target[-MAX_POINTS:].double().numpy())
    naive = pre.decode_target(inputs[0][:, -1, 0].double().numpy())
    rows = np.asarray(split.index[-MAX_POINTS:])
    time_col = getattr(pre, "time_column", None)
    x = data.raw[time_col].iloc[rows].to_numpy() if time_col and time_col in data.raw.columns else rows
    fig = Figure(figsize=(9, 3.6), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    ax.plot(x, actual, color="black", linewidth=1.4, label="actual")
    ax.plot(x, predicted, linewidth=1.2, label=f"forecast (mae {np.mean(np.abs(predicted - actual)):.4g})")
    ax.plot(x, naive, linewidth=0.9, linestyle="--", alpha=0.7,
            label=f"persistence (mae {np.mean(np.abs(naive - actual)):.4g})")
    ax.set_xlabel(time_col or "row")
    ax.set_ylabel(str(pre.target))
    ax.set_title(f"test span: {pre.horizon}-step-ahead forecasts")
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
