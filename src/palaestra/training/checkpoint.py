"""Resumable checkpoints in ``RUN/checkpoints/``: one ``state.safetensors`` per checkpoint (tensors, with the
JSON half of the state in its metadata) and a ``latest.json`` pointer holding its sha256, written last, so a
crash mid-save leaves the previous checkpoint.

A checkpoint is taken after every epoch, so its cost is part of every run (BENCHMARKS.md, "Where the rest
goes": a few milliseconds per save on the benchmark machine, mostly serialisation and fsync). Writing from a
background thread, as Lightning's ``AsyncCheckpointIO`` does, was measured too and gained nothing here (the
thread's Python competes with training for the interpreter), so saves are synchronous.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

from palaestra.artifacts import (
    atomic_write,
    json_default,
    read_json,
    tensors_from_bytes,
    tensors_to_bytes,
    write_json,
)
from palaestra.errors import ArtifactError
from palaestra.training.state import TrainState

LATEST = "latest.json"
STATE = "state.safetensors"
META_KEY = "palaestra.state"


def save_checkpoint(directory: str | Path, state: TrainState, keep: int = 1) -> Path:
    directory = Path(directory)
    tensors, meta = state.state_dict()
    # Compact JSON: ``json`` uses its C encoder only without indentation, and the history grows every epoch.
    blob = tensors_to_bytes(tensors, metadata={META_KEY: json.dumps(meta, default=json_default, separators=(",", ":"))})
    name = f"ckpt-{state.step:09d}-e{state.epoch:05d}"
    target = directory / name
    target.mkdir(parents=True, exist_ok=True)
    atomic_write(target / STATE, blob)
    write_json(directory / LATEST, {"dir": name, "epoch": state.epoch, "step": state.step,
                                    "sha256": {STATE: hashlib.sha256(blob).hexdigest()}})
    old = sorted(p for p in directory.glob("ckpt-*") if p.is_dir() and p.name != name)
    for p in old[: max(0, len(old) - (keep - 1))]:
        shutil.rmtree(p, ignore_errors=True)
    return target


def has_checkpoint(directory: str | Path) -> bool:
    return (Path(directory) / LATEST).is_file()


def load_checkpoint(directory: str | Path, state: TrainState) -> None:
    directory = Path(directory)
    pointer = read_json(directory / LATEST)
    path = directory / str(pointer.get("dir", "")) / STATE
    try:
        blob = path.read_bytes()
    except OSError:
        raise ArtifactError(f"checkpoint file {path} is missing") from None
    if hashlib.sha256(blob).hexdigest() != pointer.get("sha256", {}).get(STATE):
        raise ArtifactError(f"checkpoint file {path} has been altered or truncated")
    tensors, metadata = tensors_from_bytes(blob, path)
    if META_KEY not in metadata:
        raise ArtifactError(f"checkpoint file {path} has no training state in its metadata")
    state.load_state_dict(tensors, json.loads(metadata[META_KEY]))
