"""Tuning comparison on a cheap problem: TPE vs random at equal trials, hyperband vs no pruning.

For each seed, four studies of the same size on the same search space (digits, an MLP, a few epochs):
  random + no pruning, tpe + no pruning, tpe + hyperband (and random + hyperband for the pruning pair).
It reports the mean best val_loss over seeds, the total epochs trained, and the ratios.

    .venv/bin/python benchmarks/tuning_compare.py            # ~2 CPU-minutes (single-threaded trials)
    .venv/bin/python benchmarks/tuning_compare.py --seeds 3 --trials 12 --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch

from palaestra.tuning.study import tune

SPACE = {"optimizer.lr": {"log_uniform": [1e-4, 3e-1]}, "model.dropout": {"uniform": [0.0, 0.5]},
         "model.hidden": {"choice": [[16], [64], [64, 64]]}, "train.batch_size": {"choice": [32, 128]}}


def config(seed: int, sampler: str, pruner: str, trials: int, epochs: int) -> dict:
    return {"seed": seed, "data": {"source": "digits"}, "model": {"family": "mlp", "hidden": [64]},
            "train": {"epochs": epochs, "progress": False, "early_stopping": None, "threads": 1},
            "tune": {"sampler": sampler, "pruner": pruner, "trials": trials, "metric": "val_loss", "space": SPACE}}


def one(seed: int, sampler: str, pruner: str, trials: int, epochs: int, root: Path) -> dict:
    started = time.perf_counter()
    result = tune(config(seed, sampler, pruner, trials, epochs), out=root / f"{sampler}-{pruner}-{seed}",
                  quiet=True, best_run=False, plots=False)
    ts = result.stages[0].study.get_trials()
    return {"best": result.best_value, "epochs": sum(len(t.intermediate_values) for t in ts),
            "pruned": sum(t.state.name == "PRUNED" for t in ts), "seconds": time.perf_counter() - started}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--json", default=None, help="write the results here")
    args = ap.parse_args()
    os.environ.setdefault("PALAESTRA_RUNS", tempfile.mkdtemp(prefix="palaestra-bench-runs-"))
    arms = [("random", "none"), ("tpe", "none"), ("random", "hyperband"), ("tpe", "hyperband")]
    results: dict[str, list[dict]] = {f"{s}+{p}": [] for s, p in arms}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(args.seeds):
            for s, p in arms:
                r = one(seed, s, p, args.trials, args.epochs, Path(tmp))
                results[f"{s}+{p}"].append(r)
                print(f"seed {seed} {s:>6}+{p:<9} best val_loss {r['best']:.4f}  epochs {r['epochs']:3d}  "
                      f"pruned {r['pruned']:2d}  {r['seconds']:.1f}s", flush=True)

    def mean(arm: str, key: str) -> float:
        return statistics.mean(r[key] for r in results[arm])

    summary = {arm: {k: mean(arm, k) for k in ("best", "epochs", "pruned", "seconds")} for arm in results}
    ratios = {
        "tpe/random best val_loss (no pruning)": mean("tpe+none", "best") / mean("random+none", "best"),
        "hyperband/none epochs (tpe)": mean("tpe+hyperband", "epochs") / mean("tpe+none", "epochs"),
        "hyperband/none best val_loss (tpe)": mean("tpe+hyperband", "best") / mean("tpe+none", "best"),
        "hyperband/none epochs (random)": mean("random+hyperband", "epochs") / mean("random+none", "epochs"),
        "hyperband/none best val_loss (random)": mean("random+hyperband", "best") / mean("random+none", "best"),
    }
    print(f"\n{args.seeds} seeds x {args.trials} trials x up to {args.epochs} epochs, digits MLP "
          f"({time.perf_counter() - started:.0f}s, {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs, torch {torch.__version__})")
    print(f"{'arm':<18}{'mean best val_loss':>20}{'mean epochs':>13}{'mean pruned':>13}{'mean s':>9}")
    for arm, m in summary.items():
        print(f"{arm:<18}{m['best']:>20.4f}{m['epochs']:>13.1f}{m['pruned']:>13.1f}{m['seconds']:>9.1f}")
    for name, value in ratios.items():
        print(f"{name}: {value:.3f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "runs": results, "summary": summary,
                                               "ratios": ratios}, indent=2))


if __name__ == "__main__":
    main()
