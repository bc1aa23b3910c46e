"""Forecasting real series with each window seen at the training scale (`none`) or relative to its own level
(`last`: the model predicts the change; `mean`: each window standardised, RevIN), zero-config otherwise, with
the persistence and seasonal-naive baselines on the same test points. Accuracy only (no timing).

    .venv/bin/python -m benchmarks.forecast_window_norm              # none, last, mean on co2 and sunspots
    .venv/bin/python -m benchmarks.forecast_window_norm last         # one setting
"""

from __future__ import annotations

import sys


def series():
    """statsmodels' weekly CO2 at Mauna Loa (a trend and a yearly season) and yearly sunspots (stationary)."""
    from statsmodels.datasets import co2, sunspots

    return {"co2": (co2.load_pandas().data.reset_index().rename(columns={"index": "date"}), "co2", 52),
            "sunspots": (sunspots.load_pandas().data, "SUNACTIVITY", 24)}


def main(argv: list[str] | None = None) -> None:
    import palaestra

    settings = (argv or sys.argv[1:]) or ["none", "last", "mean"]
    for name, (frame, target, window) in series().items():
        for norm in settings:
            cfg = {"data": {"source": f"{name}.csv", "target": target, "task": "forecast", "window": window},
                   "model": {"window_norm": norm}, "train": {"progress": False}}
            run = palaestra.train(cfg, source=frame, quiet=True)
            t = run.metrics["test"]
            print(f"{name:9s} window_norm={norm:5s} family={run.config.model.family} test mae={t['mae']:.4f} "
                  f"mase={t['mase']:.3f}  persistence mae={t['naive_mae']:.4f}  "
                  f"seasonal naive mae={t.get('seasonal_naive_mae', float('nan')):.4f} (season {t.get('season')})",
                  flush=True)


if __name__ == "__main__":
    main()
