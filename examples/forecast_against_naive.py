"""A forecast against the naive ones: monthly CO2 at Mauna Loa, a rising trend with a yearly season.

A forecast is worth what it beats. Persistence (next month = this month), seasonal naive (next month = the same
month last year) and exponential smoothing cost nothing to fit; a model must beat them on the same points. The
script trains the same model twice: once on windows scaled with the training years' statistics (the test years
lie above every training value), once on windows seen relative to their own last value; both without the
combination with classical seasonal forecasts that forecasts get by default (``model.blend``), to show the windows
alone.

Run: ``python examples/forecast_against_naive.py [--quick] [--out DIR]``
"""

from __future__ import annotations

import sys

import numpy as np

import palaestra

try:
    from examples._common import figure, parse, save
except ImportError:
    from _common import figure, parse, save


def co2_monthly():
    """statsmodels' weekly CO2 readings averaged per month (gaps filled from the previous month)."""
    from statsmodels.datasets import co2

    weekly = co2.load_pandas().data
    monthly = weekly["co2"].resample("MS").mean().ffill()
    return monthly.rename_axis("month").reset_index()


def main(argv: list[str] | None = None) -> int:
    args = parse(__doc__.splitlines()[0], argv)
    frame = co2_monthly()
    runs = {}
    for norm in ("none", "last"):
        config = {"seed": 0, "data": {"source": "co2.csv", "target": "co2", "task": "forecast", "horizon": 12,
                                      "backtest": 3},
                  "model": {"window_norm": norm, "blend": "none"}, "train": {"progress": False, "epochs": 15 if args.quick else 200}}
        runs[norm] = palaestra.train(config, source=frame, quiet=True)
    test = runs["last"].metrics["test"]
    print(f"{len(frame)} months, forecast 12 months ahead from 3 origins a year apart (season {test['season']})")
    print(f"{'persistence':38s} MASE {test['naive_mase']:.3f}")
    print(f"{'seasonal naive':38s} MASE {test['seasonal_naive_mase']:.3f}")
    print(f"{'exponential smoothing (ETS)':38s} MASE {test['ets_mase']:.3f}")
    for norm, label in (("none", "dlinear, windows at the training scale"), ("last", "dlinear, windows from their last value")):
        print(f"{label:38s} MASE {runs[norm].metrics['test']['mase']:.3f}")

    run = runs["last"]
    pred = run.predict(frame)
    last = pred.tail(12)  # the last origin: the 12 months after the data
    print(f"next 12 months: {last['month'].iloc[0]:%Y-%m} .. {last['month'].iloc[-1]:%Y-%m}, "
          f"{last['prediction'].min():.1f} .. {last['prediction'].max():.1f} ppm")
    fig, ax = figure(1, width=8)
    tail = frame.tail(72)
    ax.plot(tail["month"], tail["co2"], color="black", label="observed")
    ax.plot(last["month"], last["prediction"], marker=".", label="forecast past the data")
    ax.set(ylabel="CO2 (ppm)", title="monthly CO2: the last six years and the next one")
    ax.legend()
    save(fig, args.out / "forecast_against_naive.png")
    return 0 if np.isfinite(last["prediction"]).all() else 1


if __name__ == "__main__":
    sys.exit(main())
