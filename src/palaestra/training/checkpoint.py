"""Resumable checkpoints in ``RUN/checkpoints/``: one ``state.safetensors`` per checkpoint (tensors, with the
JSON half of the state in its metadata) and a ``latest.json`` pointer holding its sha256, written last, so a
crash mid-save leaves the previous checkpoint.

A checkpoint is taken after every epoch, so its cost is part of every run: ``CheckpointWriter`` takes a snapshot
on the training thread (tensor copies and the encoded JSON: training goes on changing both) and serialises,
writes and ``fsync``s it on one background thread, as Lightning's ``AsyncCheckpointIO`` does. One write at most is in
flight; the next save, ``flush`` and ``close`` wait for it and raise its error, if any.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from palaestra.artifacts import atomic_write, json_default, read_json, tensors_from_bytes, tensors_to_bytes, write_json
from palaestra.errors import ArtifactError
from palaestra.training.state import TrainState

LATEST = "latest.json"
STATE = "state.safetensors"
META_KEY = "palaestra.state"


def save_checkpoint(directory: str | Path, state: TrainState, keep: int = 1) -> Path:
    """Write a checkpoint now (synchronously)."""
    name, tensors, meta = _snapshot(state)
    _write(Path(directory), name, tensors, meta, state.epoch, state.step, keep)
    return Path(directory) / name


class CheckpointWriter:
    """Checkpoints into ``directory`` with the writes on a background thread (see the module docstring)."""

    def __init__(self, directory: str | Path, keep: int = 1):
        self.directory, self.keep = Path(directory), keep
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="palaestra-checkpoint")
        self._pending: Future | None = None

    def save(self, state: TrainState) -> Path:
        name, tensors, meta = _snapshot(state)
        self.flush()
        self._pending = self._pool.submit(_write, self.directory, name, tensors, meta, state.epoch, state.step,
                                          self.keep)
        return self.directory / name

    def flush(self) -> None:
        """Wait until the last save is on disk; raise its error if it failed."""
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def close(self) -> None:
        try:
            self.flush()
        finally:
            self._pool.shutdown(wait=True)


def _snapshot(state: TrainState) -> tuple[str, dict, str]:
    """The state as it is now: tensor copies and the JSON half, already encoded (the history keeps growing).

    Compact JSON: ``json`` uses its C encoder only without indentation.
    """
    tensors, meta = state.state_dict()
    return f"ckpt-{state.step:09d}-e{state.epoch:05d}", tensors, json.dumps(meta, default=json_default,
                                                                             separators=(",", ":"))


def _write(directory: Path, name: str, tensors: dict, meta: str, epoch: int, step: int, keep: int) -> None:
    blob = tensors_to_bytes(tensors, metadata={META_KEY: meta})
    target = directory / name
    target.mkdir(parents=True, exist_ok=True)
    atomic_write(target / STATE, blob)
    write_json(directory / LATEST, {"dir": name, "epoch": epoch, "step": step,
                                    "sha256": {STATE: hashlib.sha256(blob).hexdigest()}})
    old = sorted(p for p in directory.glob("ckpt-*") if p.is_dir() and p.name != name)
    for p in old[: max(0, len(old) - (keep - 1))]:
        shutil.rmtree(p, ignore_errors=True)


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
