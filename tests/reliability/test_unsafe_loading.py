"""Safety: no pickle anywhere. A crafted malicious file placed where weights, a checkpoint or data are expected is
refused without running its code; configs cannot execute code; the source holds no unsafe loader."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from palaestra.artifacts import sha256, write_manifest
from palaestra.config import load_config
from palaestra.errors import ArtifactError, ConfigError, DataError
from palaestra.runs import Run

SRC = Path(__file__).resolve().parents[2] / "src" / "palaestra"


class Payload:
    """Unpickling this creates ``marker``: proof that code ran."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def malicious_checkpoint(path: Path, marker: Path) -> None:
    """A ``torch.save`` file (a pickle) whose loading would create ``marker``."""
    torch.save({"weight": torch.zeros(2), "payload": Payload(marker)}, path)
    assert not marker.exists()


def test_the_payload_really_runs_code_when_unpickled(tmp_path):
    # The control: with pickle allowed, the payload does run. (Never done by Palaestra itself.)
    path, marker = tmp_path / "evil.pt", tmp_path / "pwned"
    malicious_checkpoint(path, marker)
    torch.load(path, weights_only=False)
    assert marker.exists()


def test_malicious_weights_file_is_refused(penguins_run, tmp_path):
    run, marker = tmp_path / "run", tmp_path / "pwned"
    shutil.copytree(penguins_run, run)
    malicious_checkpoint(run / "model.safetensors", marker)
    with pytest.raises(ArtifactError, match="model.safetensors"):
        Run.load(run)  # the manifest no longer matches
    # An attacker who controls the whole directory also rewrites the manifest: still refused, nothing runs.
    files = list(json.loads((run / "manifest.json").read_text())["files"])
    write_manifest(run, files)
    with pytest.raises(ArtifactError, match="safetensors"):
        Run.load(run)
    assert not marker.exists()


def test_malicious_pretrained_init_is_refused(penguins_run, tmp_path):
    from palaestra.pipeline import train

    run, marker = tmp_path / "run", tmp_path / "pwned"
    shutil.copytree(penguins_run, run)
    malicious_checkpoint(run / "model.safetensors", marker)
    write_manifest(run, list(json.loads((run / "manifest.json").read_text())["files"]))
    cfg = {"data": {"source": "penguins"}, "model": {"hidden": [16], "init": {"from": str(run)}},
           "train": {"epochs": 1, "progress": False}}
    with pytest.raises(ArtifactError):
        train(cfg, quiet=True)
    assert not marker.exists()


def test_malicious_checkpoint_is_refused_on_resume(tmp_path):
    from reliability_helpers import resume_config

    from palaestra.pipeline import TrainingInterrupted, train
    from palaestra.training.callbacks import Callback

    class StopAt(Callback):
        def on_batch_end(self, state, loss):
            if state.step == 3:
                import os
                import signal

                os.kill(os.getpid(), signal.SIGTERM)

    run, marker = tmp_path / "run", tmp_path / "pwned"
    with pytest.raises(TrainingInterrupted):
        train(resume_config(epochs=1), out=run, quiet=True, extra_callbacks=[StopAt()])
    pointer_path = run / "checkpoints" / "latest.json"
    pointer = json.loads(pointer_path.read_text())
    state_file = run / "checkpoints" / pointer["dir"] / "state.safetensors"
    malicious_checkpoint(state_file, marker)
    with pytest.raises(ArtifactError, match="altered or truncated"):
        train(None, resume=run, quiet=True)
    pointer["sha256"]["state.safetensors"] = sha256(state_file)  # the attacker fixes up the checksum too
    pointer_path.write_text(json.dumps(pointer))
    with pytest.raises(ArtifactError, match="safetensors"):
        train(None, resume=run, quiet=True)
    assert not marker.exists()


def test_npz_with_pickled_objects_is_refused_unread(tmp_path):
    from palaestra.data.sources import read_source

    path, marker = tmp_path / "evil.npz", tmp_path / "pwned"
    x = np.empty(2, dtype=object)
    x[:] = [np.zeros((8, 8)), Payload(marker)]
    np.savez(path, x=x, y=np.array([0, 1]))
    with pytest.raises(DataError, match="not unpickled"):
        read_source(str(path))
    assert not marker.exists()


@pytest.mark.parametrize("text", [
    "name: !!python/object/apply:os.system ['touch {marker}']\n",
    "!!python/object/new:os.system ['touch {marker}']\n",
    "seed: !!python/name:os.system\n",
])
def test_config_yaml_cannot_execute_code(text, tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "config.yaml"
    path.write_text(text.format(marker=marker))
    with pytest.raises(ConfigError, match="config.yaml"):
        load_config(path)
    with pytest.raises(ConfigError):
        load_config(None, [f"name=!!python/object/apply:os.system ['touch {marker}']"])
    assert not marker.exists()


# --- the source holds no unsafe loader ---------------------------------------------------------------------------

UNSAFE = {
    "pickle": re.compile(r"^\s*(import|from)\s+(c?pickle|dill|cloudpickle|joblib|shelve|marshal)\b|\bpickle\.(load|loads|dump|dumps)\b", re.M),
    "eval/exec": re.compile(r"(?<![\w.])(eval|exec)\s*\("),
    "yaml.load without SafeLoader": re.compile(r"yaml\.(unsafe_load|full_load|load)\s*\((?![^)]*SafeLoader)"),
    "allow_pickle=True": re.compile(r"allow_pickle\s*=\s*True"),
    "pandas pickle": re.compile(r"read_pickle|to_pickle"),
}


def test_source_has_no_unsafe_loading():
    offences = []
    for path in sorted(SRC.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        for what, pattern in UNSAFE.items():
            offences += [f"{path.relative_to(SRC)}: {what}: {m.group(0)!r}" for m in pattern.finditer(text)]
        for m in re.finditer(r"torch\.load\s*\(", text):
            call = text[m.start(): text.find("\n\n", m.start())]
            if not re.search(r"weights_only\s*=\s*True", call.split(")")[0] + ")"):
                offences.append(f"{path.relative_to(SRC)}: torch.load without weights_only=True")
    assert not offences, "\n".join(offences)


def test_the_scan_would_catch_offences():
    sample = "import pickle\nx = eval('1')\nyaml.load(s)\nnp.load(p, allow_pickle=True)\n"
    found = [what for what, pattern in UNSAFE.items() if pattern.search(sample)]
    assert found == ["pickle", "eval/exec", "yaml.load without SafeLoader", "allow_pickle=True"]
    assert not UNSAFE["eval/exec"].search("model.eval()")
