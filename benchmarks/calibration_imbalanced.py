"""Calibration and the decision threshold on imbalanced real tables that ship offline (scikit-learn's own data).

    python -m benchmarks.calibration_imbalanced            # 2 tables x 5 seeds; prints a table, writes results/
    python -m benchmarks.calibration_imbalanced --seeds 2  # quicker
    python -m benchmarks.calibration_imbalanced --setup overfit  # one setup (the others' results are kept)

Tables: statsmodels' ``fair`` survey (Fair, 1978: did the respondent have an affair?) with the positives
subsampled to 480 of 4,793 rows (10 %), a noisy table where the decision threshold matters; and breast_cancer with
the malignant class subsampled to 40 rows (357 benign : 40 malignant, 10 %), nearly separable. Two setups (``SETUPS``), no class weights,
with ``train.calibrate: temperature`` and ``train.threshold_objective: f1``; each run's metrics.json holds the test
ECE before and after temperature scaling and the minority class's test F1 at 0.5 and at the tuned threshold.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

RESULTS = Path(__file__).resolve().parent / "results" / "calibration_imbalanced.json"


def breast_cancer(seed: int) -> pd.DataFrame:
    from sklearn.datasets import load_breast_cancer

    frame = load_breast_cancer(as_frame=True).frame
    malignant = frame[frame.target == 0].sample(40, random_state=seed)
    frame = pd.concat([frame[frame.target == 1], malignant]).sample(frac=1.0, random_state=seed)
    return frame.assign(target=np.where(frame.target == 0, "malignant", "benign"))


def fair_affairs(seed: int) -> pd.DataFrame:
    import statsmodels.api as sm  # the `sequence` extra; its data sets ship with it

    frame = sm.datasets.fair.load_pandas().data
    had = frame.affairs > 0
    frame = pd.concat([frame[~had], frame[had].sample(480, random_state=seed)]).sample(frac=1.0, random_state=seed)
    return frame.drop(columns="affairs").assign(target=np.where(frame.affairs > 0, "affair", "no_affair"))


TABLES = {"fair_affairs_10pct": fair_affairs, "breast_cancer_10pct": breast_cancer}


# "default": zero-config (early stopping on val_loss, best weights restored): usually calibrated already.
# "fixed_epochs": 100 epochs with no early stopping, the last weights kept.
# "overfit": a wide model without weight decay or dropout, trained 150 epochs: overconfident by construction.
SETUPS = {"default": {}, "fixed_epochs": {"epochs": 100, "early_stopping": None, "restore_best": False},
          "overfit": {"epochs": 150, "early_stopping": None, "restore_best": False}}
MODEL = {"overfit": {"hidden": [256, 256], "dropout": 0.0}}
OPTIMIZER = {"overfit": {"weight_decay": 0.0}}


def measure(name: str, setup: str, seed: int, workdir: Path) -> dict:
    from palaestra.pipeline import train

    path = workdir / f"{name}-{seed}.csv"
    TABLES[name](seed).to_csv(path, index=False)
    run = train({"seed": seed, "data": {"source": str(path), "target": "target"},
                 "model": MODEL.get(setup, {}), "optimizer": OPTIMIZER.get(setup, {}),
                 "train": {"progress": False, "calibrate": "temperature", "threshold_objective": "f1",
                           **SETUPS[setup]}}, quiet=True)
    cal, dec = run.metrics["calibration"], run.metrics["decision"]
    auto = cal["val_ece_after"] < cal["val_ece_before"]  # what `calibrate: auto` (the default) would have kept
    return {"table": name, "setup": setup, "seed": seed, "temperature": cal["temperature"],
            "test_ece_before": cal["test_ece_before"], "test_ece_after": cal["test_ece_after"],
            "test_ece_auto": cal["test_ece_after"] if auto else cal["test_ece_before"],
            "threshold": dec["threshold"], "minority": str(dec["positive_class"]),
            "test_f1_at_0.5": dec["test"]["at_0.5"]["f1"], "test_f1_at_threshold": dec["test"]["at_threshold"]["f1"]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--setup", action="append", choices=list(SETUPS), help="only these setups (repeatable)")
    args = parser.parse_args()
    setups = args.setup or list(SETUPS)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for setup in setups:
            for name in TABLES:
                for seed in range(args.seeds):
                    rows.append(measure(name, setup, seed, Path(tmp)))
                    r = rows[-1]
                    print(f"{setup:12s} {name:20s} seed {seed}  T {r['temperature']:.3f}  test ECE "
                          f"{r['test_ece_before']:.4f} -> {r['test_ece_after']:.4f} (auto {r['test_ece_auto']:.4f})  "
                          f"minority F1 @0.5 {r['test_f1_at_0.5']:.4f} -> @{r['threshold']:.3f} "
                          f"{r['test_f1_at_threshold']:.4f}", flush=True)
    summary = {}
    for setup in setups:
        for name in TABLES:
            mine = [r for r in rows if r["table"] == name and r["setup"] == setup]
            key = f"{setup}/{name}"
            summary[key] = {k: statistics.mean(r[k] for r in mine) for k in
                            ("test_ece_before", "test_ece_after", "test_ece_auto", "test_f1_at_0.5",
                             "test_f1_at_threshold")}
            summary[key]["ece_lower_in"] = sum(r["test_ece_after"] < r["test_ece_before"] for r in mine)
            summary[key]["f1_higher_in"] = sum(r["test_f1_at_threshold"] > r["test_f1_at_0.5"] for r in mine)
            summary[key]["runs"] = len(mine)
            print(key, json.dumps({k: round(v, 4) for k, v in summary[key].items()}))
    if RESULTS.is_file():  # keep the other setups' results from an earlier run
        earlier = json.loads(RESULTS.read_text())
        rows = [r for r in earlier.get("runs", []) if r.get("setup") not in setups] + rows
        summary = {**{k: v for k, v in earlier.get("summary", {}).items() if k.split("/")[0] not in setups}, **summary}
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps({"runs": rows, "summary": summary}, indent=1) + "\n")


if __name__ == "__main__":
    main()
