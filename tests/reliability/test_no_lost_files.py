"""No lost or unchecked files: a command writes only under names it owns, and a kill at any point leaves either
the old file or a checked new one under the final name (issue 16)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from testkit import cli, tiny

from palaestra.artifacts import OWNER, claim_dir, write_json
from palaestra.deployment import compress as compress_module
from palaestra.deployment import export as export_module
from palaestra.errors import OutputError, UserError
from palaestra.runs import Run


class Killed(BaseException):
    """Stands for SIGKILL at a chosen point: nothing after it runs (a BaseException, as KeyboardInterrupt is)."""


def _fail(*_args, **_kwargs):
    raise Killed


def _listing(d: Path) -> list[str]:
    return sorted(p.name for p in d.iterdir())


# --- export ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("where,quantize", [("to_onnx", None), ("quantize_onnx", "int8"), ("load_exported", None),
                                            ("load_exported", "int8"), ("write_json", None)])
def test_a_killed_export_leaves_the_old_model_and_no_unchecked_file(penguins_run, tmp_path, monkeypatch, where,
                                                                     quantize):
    out = tmp_path / "model.onnx"
    out.write_bytes(b"the previous, checked export")
    monkeypatch.setattr(export_module, where, _fail)
    with pytest.raises(Killed):
        export_module.export(Run.load(penguins_run), "onnx", out, quantize=quantize)
    assert out.read_bytes() == b"the previous, checked export"
    assert _listing(tmp_path) == ["model.onnx"]  # temporary files cleaned up where the process survives


def test_a_failed_check_writes_nothing_under_the_final_name(penguins_run, tmp_path, monkeypatch):
    monkeypatch.setattr(export_module, "compare", lambda *a: export_module.Check(3, "rows", 1.0, 1e-4))
    with pytest.raises(UserError, match="nothing written"):
        export_module.export(Run.load(penguins_run), "onnx", tmp_path / "model.onnx", quantize="int8")
    assert _listing(tmp_path) == []


def test_export_int8_still_checks_and_renames(penguins_run, tmp_path):
    path, check = export_module.export(Run.load(penguins_run), "onnx", tmp_path / "m.onnx", quantize="int8")
    assert path == tmp_path / "m.onnx" and check.ok
    assert _listing(tmp_path) == ["m.onnx", "m.onnx.preprocess.json"]


# --- compress ----------------------------------------------------------------------------------------------------


def test_a_killed_compress_leaves_no_run_and_the_same_command_works_again(penguins_run, tmp_path, monkeypatch):
    out = tmp_path / "small"
    with monkeypatch.context() as m:
        m.setattr(compress_module, "write_manifest", _fail)  # killed with every other file already written
        with pytest.raises(Killed):
            compress_module.compress(Run.load(penguins_run), out, prune=0.5, repeats=1)
    assert not out.exists() and _listing(tmp_path) == []
    new, _ = compress_module.compress(Run.load(penguins_run), out, prune=0.5, repeats=1)
    assert new.path == out and (out / "manifest.json").is_file()


def test_a_partial_directory_is_not_mistaken_for_an_interrupted_training(penguins_run, tmp_path):
    """What SIGKILL leaves of a compress (a hidden partial directory) is neither the run nor a resumable one."""
    partial = tmp_path / ".small.partial-x"
    partial.mkdir()
    shutil.copyfile(penguins_run / "config.yaml", partial / "config.yaml")
    r = cli("predict", str(partial), "--data", "penguins", "--out", str(tmp_path / "p.csv"))
    assert r.returncode == 2 and "not a finished run directory" in r.stderr and "--resume" not in r.stderr
    new, _ = compress_module.compress(Run.load(penguins_run), tmp_path / "small", prune=0.5, repeats=1)
    assert (new.path / "manifest.json").is_file()


# --- tune: only its own directory, only its own best-run/, no trial left RUNNING -------------------------------------


def test_claim_dir_reuses_only_its_own_directory(tmp_path):
    own = claim_dir(tmp_path / "study", "tune")
    (own / "trials.csv").write_text("x")
    assert claim_dir(own, "tune") == own  # its own, non-empty: resumable
    with pytest.raises(OutputError, match="did not create"):
        claim_dir(own, "lr-find")  # another command's directory
    legacy = tmp_path / "old-study"
    legacy.mkdir()
    (legacy / "study.db").write_text("")
    assert claim_dir(legacy, "tune", legacy=("study.db",)) == legacy  # made before markers existed


def test_claim_dir_waits_for_a_marker_another_process_is_writing(tmp_path):
    """Two tune workers start on one --out: the second may find only the first's marker under its temporary name.
    It waits for the rename and joins, rather than calling the directory someone else's."""
    import threading

    study = tmp_path / "study"
    study.mkdir()
    tmp = study / f".{OWNER}.abc123.tmp"
    tmp.write_text(json.dumps({"made_by": "tune"}))
    threading.Timer(0.3, os.replace, (tmp, study / OWNER)).start()
    assert claim_dir(study, "tune") == study
    assert sorted(p.name for p in study.iterdir()) == [OWNER]


def test_best_run_is_removed_only_when_the_study_wrote_it(tmp_path):
    from palaestra.tuning.outputs import _remove_own_best_run

    study = claim_dir(tmp_path / "study", "tune")
    best = study / "best-run"
    best.mkdir()
    (best / "mine.txt").write_text("mine")
    with pytest.raises(UserError, match="did not write it"):
        _remove_own_best_run(study, best, prev={})
    assert (best / "mine.txt").read_text() == "mine"
    write_json(study / OWNER, {"made_by": "tune", "best_run": "best-run"})  # set before it retrains one
    _remove_own_best_run(study, best, prev={})
    assert not best.exists()


def test_tune_resumes_its_own_study_directory(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(json.dumps(tiny(epochs=2)))
    out = tmp_path / "study"
    first = cli("tune", str(cfg), "--trials", "1", "--out", str(out), "--no-best-run")
    assert first.returncode == 0, first.stderr
    again = cli("tune", str(cfg), "--trials", "2", "--out", str(out), "--no-best-run")
    assert again.returncode == 0, again.stderr
    assert "ran 1 trials: 1" in again.stderr


def test_a_trial_whose_worker_died_is_failed_and_retried(tmp_path):
    import socket

    from palaestra.tuning.study import _fail_dead_trials, _retry_interrupted

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # a process id that no longer exists
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'study.db'}", study_name="s")
    trial = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
    trial.set_user_attr("worker", f"{socket.gethostname()}:{dead.pid}")
    alive = study.ask()
    alive.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")  # this process: running
    _fail_dead_trials(study)
    states = {t.number: t.state.name for t in study.get_trials()}
    assert states == {0: "FAIL", 1: "RUNNING"}
    _retry_interrupted(study)
    assert study.get_trials()[-1].state.name == "WAITING"  # its parameters are queued again, once
