"""`palaestra tune` as users run it: two workers on one SQLite study, then `palaestra train best.yaml`."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import optuna
import pytest
import yaml
from testkit import cli

CONFIG = {"seed": 0, "data": {"source": "iris"}, "model": {"hidden": [8]},
          "train": {"epochs": 3, "progress": False, "early_stopping": None, "threads": 1},
          "tune": {"sampler": "random", "pruner": "none", "trials": 6,
                   "space": {"optimizer.lr": {"log_uniform": [1e-3, 1e-1]}, "model.dropout": {"uniform": [0, 0.3]}}}}


def _ran(stderr: str) -> set[int]:
    m = re.search(r"this worker ran \d+ trials: ([\d, ]+|none)", stderr)
    assert m, stderr
    return set() if m.group(1) == "none" else {int(x) for x in m.group(1).split(",")}


def test_two_workers_share_one_study_and_best_yaml_retrains_the_best_trial(tmp_path):
    config = tmp_path / "iris.yaml"
    config.write_text(yaml.safe_dump(CONFIG))
    out = tmp_path / "study"
    cmd = [sys.executable, "-m", "palaestra", "tune", str(config), "--study", "shared", "--out", str(out)]
    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "200"}
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for _ in range(2)]
    results = [p.communicate(timeout=240) for p in procs]
    for p, (stdout, stderr) in zip(procs, results, strict=True):
        assert p.returncode == 0, stderr
        assert "best val_loss" in stdout
    ran = [_ran(stderr) for _, stderr in results]

    study = optuna.load_study(study_name="shared", storage=f"sqlite:///{out / 'study.db'}")
    trials = study.get_trials()
    numbers = [t.number for t in trials]
    # The study holds exactly the union of what the two workers ran: nothing lost, nothing twice.
    assert sorted(numbers) == list(range(len(trials)))
    assert ran[0].isdisjoint(ran[1]) and ran[0] | ran[1] == set(numbers)
    assert 6 <= len(trials) <= 7  # the budget; a worker may finish one trial already under way
    assert all(t.state.name == "COMPLETE" for t in trials)
    by_worker = [{trials[n].user_attrs["worker"] for n in r} for r in ran]
    assert all(len(w) <= 1 for w in by_worker) and not (by_worker[0] & by_worker[1])
    assert len({json.dumps(t.params, sort_keys=True) for t in trials}) == len(trials)  # workers drew apart
    assert (out / "trials.csv").is_file() and (out / "plots" / "history.png").is_file()

    best = json.loads((out / "best.json").read_text())
    assert best["trial"] == study.best_trial.number and best["value"] == pytest.approx(study.best_value, abs=0)
    assert best["retrain_value"] == pytest.approx(best["value"], abs=1e-6)
    retrained = cli("train", str(out / "best.yaml"), "--out", str(tmp_path / "retrain"))
    assert retrained.returncode == 0, retrained.stderr
    metrics = json.loads((tmp_path / "retrain" / "metrics.json").read_text())
    assert metrics["val"]["loss"] == pytest.approx(best["value"], abs=1e-6)
