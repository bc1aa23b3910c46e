"""`palaestra runs` as a user reads it: names that say something, dates, durations, paths that keep their
distinguishing end, a hint when the index is empty, config differences in `compare`, JSON from `show --json`."""

import json
import re

import pytest
from testkit import cli, tiny

from palaestra.pipeline import train


def test_a_run_is_named_after_its_data_and_target(tmp_path):
    r = cli("train", "--data", "iris", "--set", "train.epochs=1", "--set", "train.progress=false")
    assert r.returncode == 0, r.stderr
    run_dir = re.search(r"^run: (.+)$", r.stdout, re.M).group(1)
    assert "iris-species-" in run_dir
    listed = json.loads(cli("runs", "--json").stdout)
    assert [x["name"] for x in listed] == ["iris-species"]


def test_the_list_shows_name_task_state_date_duration_metric_and_the_end_of_each_path(tmp_path):
    deep = tmp_path / ("a-long-experiment-folder-name-" * 3) / "sweep"
    for lr in ("0.1", "0.01"):
        train(tiny("iris", epochs=2, optimizer={"lr": float(lr)}), out=deep / f"lr-{lr}", quiet=True)
    r = cli("runs")
    assert r.returncode == 0, r.stderr
    header = next(line for line in r.stdout.splitlines() if "name" in line and "task" in line)
    for col in ("name", "task", "state", "created", "duration", "key metric", "run"):
        assert col in header
    rows = [line for line in r.stdout.splitlines() if "iris-species" in line]
    assert len(rows) == 2
    for row, lr in zip(rows, ("0.1", "0.01"), strict=True):
        assert "classification" in row and "complete" in row
        assert re.search(r"\d\d-\d\d \d\d:\d\d", row), row  # created
        assert re.search(r"\b\d+s\b", row), row  # duration
        assert re.search(r"accuracy \d\.\d{4}", row), row
        assert "…" in row and row.rstrip().endswith(f"sweep/lr-{lr}"), row  # cut from the left, not the right
    shown = cli("runs", "show", "sweep/lr-0.01")  # a run in the index by the end of its path
    assert shown.returncode == 0, shown.stderr
    assert "sweep/lr-0.01: complete" in shown.stdout and "accuracy" in shown.stdout


def test_an_empty_index_says_where_it_looked_and_how_to_look_elsewhere(tmp_path, monkeypatch):
    monkeypatch.delenv("PALAESTRA_RUNS")
    r = cli("runs", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert f"no runs recorded in {tmp_path / 'runs' / 'index.sqlite'}" in r.stdout
    assert "PALAESTRA_RUNS" in r.stdout and "current directory" in r.stdout
    elsewhere = tmp_path / "team-runs"
    r = cli("runs", cwd=tmp_path, env={"PALAESTRA_RUNS": str(elsewhere)})
    assert f"PALAESTRA_RUNS={elsewhere}" in r.stdout


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("compare")
    a = train(tiny("iris", epochs=2), out=root / "a", quiet=True).path
    b = train(tiny("iris", epochs=3, optimizer={"lr": 0.01}, model={"hidden": [8]}), out=root / "b", quiet=True).path
    return a, b


def test_compare_shows_what_differed_in_the_configs_and_the_test_metrics(two_runs):
    a, b = two_runs
    r = cli("runs", "compare", str(a), str(b))
    assert r.returncode == 0, r.stderr
    assert "config differences" in r.stdout
    text = r.stdout
    assert re.search(r"optimizer\.lr\s*│\s*0\.003\s*│\s*0\.01\b", text), text
    assert re.search(r"model\.hidden\s*│\s*\[16\]\s*│\s*\[8\]", text), text
    assert re.search(r"train\.epochs\s*│\s*2\s*│\s*3\b", text), text
    assert "data.source" not in text and "seed" not in text  # only what differed
    assert re.search(r"accuracy\s*│\s*\d\.\d{4}\s*│\s*\d\.\d{4}", text), text

    j = json.loads(cli("runs", "compare", str(a), str(b), "--json").stdout)
    assert j["config_differences"]["optimizer.lr"] == [0.003, 0.01]
    assert set(j["config_differences"]) == {"optimizer.lr", "model.hidden", "train.epochs"}
    assert 0 <= j["test"][0]["accuracy"] <= 1


def test_show_json_is_one_object_with_state_config_and_metrics(two_runs):
    a, _ = two_runs
    r = cli("runs", "show", str(a), "--json")
    assert r.returncode == 0, r.stderr
    shown = json.loads(r.stdout)
    assert shown["state"] == "complete"
    assert shown["config"]["name"] == "iris-species"
    assert shown["config"]["data.target"] == "species" and shown["config"]["model.family"] == "mlp"
    assert shown["metrics"]["epochs"] == 2 and "accuracy" in shown["metrics"]["test"]


def test_show_of_an_unknown_run_is_a_user_error(tmp_path):
    r = cli("runs", "show", "no-such-run", cwd=tmp_path)
    assert r.returncode == 2 and r.stderr.startswith("error: ") and "palaestra runs" in r.stderr
