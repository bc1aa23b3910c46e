"""How a forecast's combination weights are chosen (``model.blend``), compared on the same trained networks.

Each series of ``benchmarks.forecast`` is trained once per seed, zero-config, on both spans (the test span, and the
``--earlier`` span before it, on which defaults are chosen). For every run the validation and test forecasts of
each member (the network alone, seasonal naive, the window's mean seasonal profile, seasonal naive with drift)
are taken from the trained model, and each rule below picks weights on the validation forecasts and is scored on
the test ones: the median over series of MASE / ETS's MASE, and on how many series it beats seasonal naive.

    .venv/bin/python -m benchmarks.forecast_blend_rules                  # every series, seeds 0 1 2
    .venv/bin/python -m benchmarks.forecast_blend_rules --series a10 --seeds 0
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import numpy as np

from benchmarks.forecast import SERIES, beats, series_csv

NAMES = ("network", "seasonal_naive", "seasonal_mean", "seasonal_drift")


def members(name: str, seed: int, earlier: bool, backtest: int = 4) -> dict:
    """Per split (val, test): each member's ``split_forecasts`` alone (the product's own ``member_forecasts``);
    ``baselines``: the run's test MASE of seasonal naive and ETS."""
    import torch

    import palaestra
    from palaestra.pipeline import member_forecasts

    _, _, target, time, series, season = SERIES[name]
    data = {"source": str(series_csv(name, cut=backtest * season if earlier else 0)), "target": target,
            "task": "forecast", "time_column": time, "horizon": season, "backtest": backtest}
    if series:
        data["series_id"] = series
    run = palaestra.train({"seed": seed, "data": data, "train": {"progress": False}}, quiet=True)
    out = {split: member_forecasts(run.model, run.preprocessor, run.data.raw, getattr(run.data, split),
                                   torch.device("cpu")) for split in ("val", "test")}
    test = run.metrics["test"]
    out["baselines"] = {"seasonal_naive": test["seasonal_naive_mase"], "ets": test["ets_mase"]}
    return out


def score(forecast: np.ndarray, members: dict) -> float:
    from palaestra.data.forecast import mase

    d = members["network"]
    return mase(forecast, d["actual"], d["series"], d["scale"])


def rules() -> dict:
    from palaestra.models.seasonal_blend import choose_weights

    def greedy(v: dict, names=NAMES, **kw) -> list[float]:
        return choose_weights([v[n]["model"] for n in names], lambda f: score(f, v), **kw)

    def grid_sn(v: dict) -> list[float]:  # the default before: one weight on a 0.05 grid, ties to the network
        grid = np.linspace(0.0, 1.0, 21)
        scores = [score(w * v["network"]["model"] + (1 - w) * v["seasonal_naive"]["model"], v) for w in grid]
        w = float(grid[min(range(len(grid)), key=lambda i: (scores[i], -grid[i]))])
        return [w, 1 - w, 0.0, 0.0]

    return {
        "network alone": lambda v: [1.0, 0.0, 0.0, 0.0],
        "network + seasonal naive, one weight on a grid (default before)": grid_sn,
        "network + seasonal naive, greedy, shrunk, trimmed (blend: seasonal_naive)":
            lambda v: [*greedy(v, NAMES[:2]), 0.0, 0.0],
        "all four, equal weights": lambda v: [0.25] * 4,
        "all four, greedy (fitted weights alone)": lambda v: greedy(v, shrink=1.0),
        "all four, greedy shrunk half-way to equal, no trim": lambda v: greedy(v, trim=float("inf")),
        "all four, greedy shrunk half-way to equal within 1.5x the best (default)": greedy,
        "... trimmed within 1.2x": lambda v: greedy(v, trim=1.2),
        "... trimmed within 2x": lambda v: greedy(v, trim=2.0),
        "... shrunk a quarter of the way (0.75 fitted)": lambda v: greedy(v, shrink=0.75),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", nargs="+", choices=list(SERIES), default=list(SERIES))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--json", type=Path, default=None, help="write the summary here")
    args = parser.parse_args(argv)
    chosen = rules()
    summary = {}
    for earlier in (True, False):
        span = "earlier span" if earlier else "test span"
        mase = {rule: {} for rule in chosen}
        baseline = {}
        for name in args.series:
            runs = [members(name, seed, earlier) for seed in args.seeds]
            baseline[name] = runs[0]["baselines"]
            for rule, pick in chosen.items():
                per_seed = []
                for run in runs:
                    weights = pick(run["val"])
                    combined = sum(w * run["test"][n]["model"] for w, n in zip(weights, NAMES, strict=True))
                    per_seed.append(score(combined, run["test"]))
                mase[rule][name] = statistics.mean(per_seed)
            print(f"{span}: {name} done", flush=True)
        summary[span] = {}
        for rule in chosen:
            got = mase[rule]
            ratio = statistics.median(got[n] / baseline[n]["ets"] for n in args.series)
            wins = [n for n in args.series if beats(got[n], baseline[n]["seasonal_naive"])]
            summary[span][rule] = {"median_ratio_to_ets": ratio, "beats_seasonal_naive": len(wins),
                                   "behind_or_tied": [n for n in args.series if n not in wins], "mase": got}
    print("\n| rule | earlier span: ratio to ETS | beats seasonal naive | test span: ratio to ETS | beats seasonal naive |")
    print("|---|---:|---:|---:|---:|")
    n = len(args.series)
    for rule in chosen:
        e, t = summary["earlier span"][rule], summary["test span"][rule]
        print(f"| {rule} | {e['median_ratio_to_ets']:.3f} | {e['beats_seasonal_naive']}/{n} "
              f"({', '.join(e['behind_or_tied']) or '-'}) | {t['median_ratio_to_ets']:.3f} | "
              f"{t['beats_seasonal_naive']}/{n} ({', '.join(t['behind_or_tied']) or '-'}) |")
    if args.json:
        args.json.write_text(json.dumps({"args": vars(args) | {"json": str(args.json)}, "summary": summary}, indent=1))


if __name__ == "__main__":
    main()
