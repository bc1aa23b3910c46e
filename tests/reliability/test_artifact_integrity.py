"""Crash-safe artifacts: a truncated, altered or missing file in a run directory is refused, naming the file,
by ``Run.load`` and by every command that starts from a run (``predict``, ``evaluate``, ``export``, ``serve``)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from reliability_helpers import run_cli_batch
from testkit import cli

from palaestra.artifacts import atomic_write, read_json, verify_manifest
from palaestra.errors import ArtifactError
from palaestra.runs import Run

FILES = ["model.safetensors", "preprocess.json", "config.yaml", "metrics.json"]


def tamper(path: Path, how: str) -> None:
    data = path.read_bytes()
    if how == "altered":  # one bit in the middle: the file still parses, only its checksum tells
        mid = len(data) // 2
        path.write_bytes(data[:mid] + bytes([data[mid] ^ 0x01]) + data[mid + 1:])
    elif how == "truncated":  # as a crash during a non-atomic write would leave it
        path.write_bytes(data[: len(data) // 2])
    elif how == "missing":
        path.unlink()


VARIANTS = [(f, how) for f in FILES for how in ("altered", "truncated")] + [("model.safetensors", "missing")]


@pytest.fixture(scope="module")
def damaged(tmp_path_factory, penguins_run) -> dict[str, Path]:
    """One copy of the finished penguins run per (file, damage) variant, plus a data file to use it on."""
    root = tmp_path_factory.mktemp("damaged")
    from palaestra.data.sources import read_source

    read_source("penguins").head(30).to_csv(root / "rows.csv", index=False)
    runs = {}
    for name, how in VARIANTS:
        run = root / f"{name}-{how}"
        shutil.copytree(penguins_run, run)
        tamper(run / name, how)
        runs[f"{name}-{how}"] = run
    return runs


@pytest.mark.parametrize("name,how", VARIANTS)
def test_run_load_refuses_damaged_file(name, how, damaged):
    with pytest.raises(ArtifactError, match=name.replace(".", r"\.")):
        Run.load(damaged[f"{name}-{how}"])


def test_undamaged_copy_loads(penguins_run, tmp_path):
    from palaestra.data.sources import read_source

    run = tmp_path / "copy"
    shutil.copytree(penguins_run, run)
    assert len(Run.load(run).predict(read_source("penguins").head(3))) == 3


@pytest.fixture(scope="module")
def command_results(damaged) -> dict[str, dict]:
    rows = str(next(iter(damaged.values())).parent / "rows.csv")
    cases = []
    for key, run in damaged.items():
        for command in (["predict", str(run), "--data", rows, "--out", str(run.parent / f"{key}.pred.csv")],
                        ["evaluate", str(run), "--data", rows, "--json"],
                        ["export", str(run), "--format", "onnx", "--out", str(run.parent / f"{key}.onnx")]):
            cases.append({"id": f"{command[0]}:{key}", "argv": command, "cwd": str(run.parent)})
    return run_cli_batch(cases)


@pytest.mark.parametrize("command", ["predict", "evaluate", "export"])
@pytest.mark.parametrize("name,how", VARIANTS)
def test_commands_refuse_damaged_file(command, name, how, command_results):
    result = command_results[f"{command}:{name}-{how}"]
    assert result["rc"] == 2, result["stderr"]
    assert "Traceback" not in result["stderr"]
    assert name in result["stderr"], result["stderr"]


@pytest.mark.parametrize("name,how", [("preprocess.json", "altered")])
def test_serve_refuses_damaged_file(name, how, damaged):
    # If the damage went unnoticed the server would start and this would time out instead.
    r = cli("serve", str(damaged[f"{name}-{how}"]), "--port", "0", timeout=120)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert name in r.stderr


def test_manifest_itself_damaged_is_refused(penguins_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(penguins_run, run)
    tamper(run / "manifest.json", "truncated")
    with pytest.raises(ArtifactError, match="manifest.json"):
        Run.load(run)
    (run / "manifest.json").unlink()
    with pytest.raises(ArtifactError, match="not a finished run"):
        Run.load(run)


def test_manifest_lists_every_artifact_with_its_checksum(penguins_run):
    files = read_json(penguins_run / "manifest.json")["files"]
    assert set(FILES) <= set(files)
    verify_manifest(penguins_run)  # every listed file matches


def test_atomic_write_leaves_old_file_when_the_write_fails(tmp_path):
    path = tmp_path / "metrics.json"
    atomic_write(path, "old")

    with pytest.raises(TypeError):
        atomic_write(path, 12345)  # type: ignore[arg-type]  # fails mid-write
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]  # no temporary file left behind
