"""Resumable checkpoints in ``RUN/checkpoints/``: ``state.safetensors`` + ``state.json`` per checkpoint, and a
``latest.json`` pointer (with their sha256) written last, so a crash mid-save leaves the previous checkpoint."""

from __future__ import annotations

import shutil
from pathlib import Path

from palaestra.artifacts import atomic_write, read_json, read_tensors, sha256, tensors_to_bytes, write_json
from palaestra.errors import ArtifactError
from palaestra.training.state import TrainState

LATEST = "latest.json"


def save_checkpoint(directory: str | Path, state: TrainState, keep: int = 1) -> Path:
    directory = Path(directory)
    tensors, meta = state.state_dict()
    name = f"ckpt-{state.step:09d}-e{state.epoch:05d}"
    target = directory / name
    target.mkdir(parents=True, exist_ok=True)
    atomic_write(target / "state.safetensors", tensors_to_bytes(tensors))
    write_json(target / "state.json", meta)
    write_json(directory / LATEST, {"dir": name, "epoch": state.epoch, "step": state.step,
                                    "sha256": {f: sha256(target / f) for f in ("state.safetensors", "state.json")}})
    old = sorted(p for p in directory.glob("ckpt-*") if p.is_dir() and p.name != name)
    for p in old[: max(0, len(old) - (keep - 1))]:
        shutil.rmtree(p, ignore_errors=True)
    return target


def has_checkpoint(directory: str | Path) -> bool:
    return (Path(directory) / LATEST).is_file()


def load_checkpoint(directory: str | Path, state: TrainState) -> None:
    directory = Path(directory)
    pointer = read_json(directory / LATEST)
    target = directory / pointer["dir"]
    for f, digest in pointer.get("sha256", {}).items():
        if not (target / f).is_file():
            raise ArtifactError(f"checkpoint file {target / f} is missing")
        if sha256(target / f) != digest:
            raise ArtifactError(f"checkpoint file {target / f} has been altered or truncated")
    state.load_state_dict(read_tensors(target / "state.safetensors"), read_json(target / "state.json"))
