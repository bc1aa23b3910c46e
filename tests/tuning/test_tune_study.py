"""Studies in process: grid size, seeded repeatability, pruning, cross-validation, stages, resume."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
import torch

from palaestra.cli import main
from palaestra.config import DataConfig
from palaestra.data.prepare import prepare_data
from palaestra.errors import UserError
from palaestra.tuning.study import tune

LR = {"optimizer.lr": {"log_uniform": [1e-4, 1e-1]}}


@pytest.fixture(autouse=True)
def _restore_threads():
    # The trials train on one thread (tiny models: threads only contend); give the worker its setting back.
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


def cfg(epochs: int = 3, **tune_cfg) -> dict:
    """A tiny iris study: one hidden layer of 8, a few epochs, no early stopping."""
    t = {"sampler": "random", "pruner": "none", "trials": 3, "space": LR}
    t.update(tune_cfg)
    return {"seed": 0, "data": {"source": "iris"}, "model": {"hidden": [8]},
            "train": {"epochs": epochs, "progress": False, "early_stopping": None, "threads": 1}, "tune": t}


def run(config: dict, out, **kw):
    return tune(config, out=out, quiet=True, best_run=kw.pop("best_run", False), plots=kw.pop("plots", False), **kw)


def trials(result, stage: int = 0):
    return result.stages[stage].study.get_trials()


def test_grid_runs_exactly_the_grid(tmp_path):
    space = {"model.hidden": {"choice": [[4], [8]]}, "optimizer.lr": {"choice": [0.01, 0.1]}}
    result = run(cfg(epochs=2, sampler="grid", trials=50, space=space), tmp_path / "s")
    ts = trials(result)
    assert len(ts) == 4 and all(t.state.name == "COMPLETE" for t in ts)
    seen = {(json.loads(t.params["model.hidden"])[0], t.params["optimizer.lr"]) for t in ts}
    assert seen == set(itertools.product([4, 8], [0.01, 0.1]))


@pytest.mark.parametrize("sampler", ["random", "tpe"])
def test_same_seed_repeats_the_same_params(tmp_path, sampler):
    space = {**LR, "model.dropout": {"uniform": [0.0, 0.5]}}
    # tpe: 3 random start-up trials, then one TPE-guided trial (its choice depends on the recorded values).
    n = 4 if sampler == "tpe" else 3
    a, b = (run(cfg(epochs=2, sampler=sampler, trials=n, space=space), tmp_path / d) for d in "ab")
    pa, pb = [t.params for t in trials(a)], [t.params for t in trials(b)]
    assert pa == pb and len(pa) == n
    assert len({p["optimizer.lr"] for p in pa}) == n
    if sampler == "random":
        other = run({**cfg(epochs=2, sampler=sampler, trials=n, space=space), "seed": 1}, tmp_path / "c")
        assert [t.params for t in trials(other)] != pa


@pytest.mark.parametrize("pruner", ["median", "hyperband"])
def test_pruners_stop_poor_trials_early(tmp_path, pruner):
    space = {"optimizer.lr": {"log_uniform": [1e-5, 1e-1]}}
    result = run(cfg(epochs=5, pruner=pruner, trials=6, space=space), tmp_path / "s")
    ts = trials(result)
    pruned = [t for t in ts if t.state.name == "PRUNED"]
    complete = [t for t in ts if t.state.name == "COMPLETE"]
    assert pruned and complete
    assert all(len(t.intermediate_values) < 5 for t in pruned)
    assert all(sorted(t.intermediate_values) == [1, 2, 3, 4, 5] for t in complete)
    # The per-epoch values are val_loss after each epoch; the score is the run's val_loss with the best
    # epoch's weights restored (train.restore_best) and its temperature fitted (train.calibrate: auto, which
    # minimises the validation loss over the temperature, 1 included): the value `palaestra train best.yaml`
    # reproduces, never above the best epoch's.
    for t in complete:
        assert t.value == pytest.approx(t.user_attrs["val"]["val_loss"], abs=1e-9)
        assert t.value <= min(t.intermediate_values.values()) + 1e-6
    plain = trials(run(cfg(epochs=5, pruner=pruner, trials=6, space=space) | {"train": {
        "epochs": 5, "progress": False, "early_stopping": None, "threads": 1, "calibrate": "none"}}, tmp_path / "n"))
    for t in (t for t in plain if t.state.name == "COMPLETE"):
        assert t.value == pytest.approx(min(t.intermediate_values.values()), abs=1e-6)


def test_split_override_uses_the_given_rows():
    rows = np.random.default_rng(0).permutation(150)  # iris is sorted by species: shuffle first
    a, b, c = np.sort(rows[:100]), np.sort(rows[100:130]), np.sort(rows[130:])
    data = prepare_data(DataConfig(source="iris"), seed=0, split_override=(a, b, c))
    assert data.train.index.tolist() == a.tolist() and data.val.index.tolist() == b.tolist()
    assert len(data.test) == 20


def test_cv_scores_the_mean_over_k_folds(tmp_path):
    result = run(cfg(epochs=2, trials=2, cv=3), tmp_path / "s")
    for t in trials(result):
        values = t.user_attrs["cv_values"]
        assert len(values) == 3 and len(set(values)) == 3  # three different validation folds
        assert t.value == pytest.approx(np.mean(values))
        assert t.user_attrs["cv_std"] == pytest.approx(np.std(values))
    from palaestra.tuning.study import Objective

    objective = Objective(result.best_config.to_dict(), result.stages[0].space, "val_loss", 3)
    folds = objective.folds(result.best_config)
    vals = np.concatenate([v for _, v, _ in folds])
    pool = np.concatenate([folds[0][0], folds[0][1]])
    assert len(vals) == len(set(vals)) == len(pool)  # each train+val row validates exactly once
    assert not set(folds[0][2]) & set(pool)  # the test split stays out of every fold
    best = json.loads((tmp_path / "s" / "best.json").read_text())
    assert best["cv_mean"] == pytest.approx(result.best_value) and len(best["cv_values"]) == 3


def test_stages_start_from_the_best_values_before_them(tmp_path):
    stages = [{"space": {"optimizer.lr": {"choice": [0.001, 0.05]}}, "trials": 2},
              {"space": {"model.hidden": {"choice": [[8], [16]]}}, "trials": 2}]
    result = run(cfg(epochs=3, sampler="grid", stages=stages), tmp_path / "s")
    first, second = trials(result, 0), trials(result, 1)
    best_lr = min(first, key=lambda t: t.value)
    assert result.best_config.optimizer.lr == best_lr.params["optimizer.lr"]
    # Stage 2's [8] trial is exactly stage 1's best config (same seed): the same value proves where it started.
    same = next(t for t in second if json.loads(t.params["model.hidden"]) == [8])
    assert same.value == pytest.approx(best_lr.value, abs=1e-7)
    assert set(result.best_params) == {"optimizer.lr", "model.hidden"}


def test_a_study_resumes_and_refuses_a_different_config(tmp_path):
    out = tmp_path / "s"
    first = [(t.number, t.params, t.value) for t in trials(run(cfg(trials=2), out))]
    resumed = trials(run(cfg(trials=3), out))
    assert [(t.number, t.params, t.value) for t in resumed[:2]] == first
    assert len(resumed) == 3 and resumed[2].params != first[0][1]
    with pytest.raises(UserError, match="different config"):
        run(cfg(trials=3, epochs=4), out)


def test_cli_errors_are_one_line_exit_2(tmp_path, capsys):
    out = str(tmp_path / "s")
    assert main(["tune", "--data", "iris", "--space", "optimizer.lrr={uniform: [0.1, 0.2]}", "--out", out]) == 2
    assert "did you mean 'optimizer.lr'" in capsys.readouterr().err
    assert main(["tune", "--data", "iris", "--sampler", "grid", "--out", out]) == 2
    assert "grid sampler needs 'choice'" in capsys.readouterr().err
    assert main(["tune", "--data", "iris", "--metric", "val_nope", "--trials", "1", "--set", "train.epochs=1",
                 "--out", str(tmp_path / "m")]) == 2
    assert "val_accuracy" in capsys.readouterr().err


def test_trials_name_their_metric_and_run_directory_for_optuna_dashboard(tmp_path):
    """The study's metric name and each trial's run directory, read back through optuna-dashboard's own API."""
    import io
    from wsgiref.util import setup_testing_defaults

    optuna_dashboard = pytest.importorskip("optuna_dashboard")
    from palaestra.rundir import read_metrics

    run(cfg(epochs=2, trials=2), tmp_path / "s")
    app = optuna_dashboard.wsgi(f"sqlite:///{tmp_path / 's' / 'study.db'}")

    def get(path: str) -> dict:
        environ = {"PATH_INFO": path, "REQUEST_METHOD": "GET", "wsgi.input": io.BytesIO()}
        setup_testing_defaults(environ)
        status = []
        body = b"".join(app(environ, lambda s, h, *a: status.append(s)))
        assert status[0].startswith("200"), status
        return json.loads(body)

    [summary] = get("/api/studies")["study_summaries"]
    detail = get(f"/api/studies/{summary['study_id']}")
    assert detail["objective_names"] == ["val_loss"]  # the dashboard names the value by study.metric_names
    assert len(detail["trials"]) == 2
    for t in detail["trials"]:
        attrs = {a["key"]: a["value"] for a in t["user_attrs"]}
        run_dir = tmp_path / "s" / "trials" / "run" / f"{t['number']:04d}"
        assert attrs["run"] == str(run_dir.resolve())
        assert read_metrics(run_dir)["val"]["loss"] == pytest.approx(t["values"][0])
