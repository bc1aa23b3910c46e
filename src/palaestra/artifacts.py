"""Crash-safe artifact files: atomic writes (temp file, fsync, rename), sha256 manifests, safetensors.

No pickle anywhere: tensors go to safetensors, everything else to JSON, YAML or CSV.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from palaestra.errors import ArtifactError, OutputError

if TYPE_CHECKING:  # torch is imported where tensors are read or written: commands that only read JSON stay fast
    import torch

MANIFEST = "manifest.json"


def cannot_write(path: str | Path, exc: OSError) -> OutputError:
    """The plain error for an output that cannot be written (exit 2): where, and the system's reason."""
    reason = exc.strerror or type(exc).__name__
    return OutputError(f"cannot write {path}: {reason}")


def make_dir(path: str | Path) -> Path:
    """``mkdir -p`` that turns a place the user cannot write to into an ``OutputError`` (exit 2)."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise OutputError(f"cannot write {path}: it exists and is not a directory") from None
    except OSError as exc:
        raise cannot_write(path, exc) from None
    return path


OWNER = ".palaestra-owner.json"  # the marker of a directory a command created for its outputs


def claim_dir(path: str | Path, made_by: str, legacy: tuple[str, ...] = ()) -> Path:
    """Create ``path`` for the outputs of ``palaestra MADE_BY``, or reuse it only if that command made it.

    A command never overwrites or deletes what it did not create: an existing non-empty directory without
    the command's marker (or, for directories made before markers, one of its ``legacy`` files) is refused.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputError(f"cannot write {path}: it exists and is not a directory")
    if path.is_dir() and any(path.iterdir()):
        mine = _marked_by(path, made_by)
        if not mine and _being_claimed(path):  # another process is writing the marker (tune workers start together)
            deadline = time.monotonic() + 10.0
            while not (mine := _marked_by(path, made_by)) and _being_claimed(path) and time.monotonic() < deadline:
                time.sleep(0.05)
        if not mine and not any((path / name).exists() for name in legacy):
            found = sorted(p.name for p in path.iterdir())
            shown = ", ".join(found[:5]) + (f" and {len(found) - 5} more" if len(found) > 5 else "")
            raise OutputError(f"{path} already holds files that palaestra {made_by} did not create ({shown}); "
                              f"choose another --out (a new or empty directory)")
    make_dir(path)
    if not (path / OWNER).is_file():
        write_json(path / OWNER, {"made_by": made_by})
    return path


def _marked_by(path: Path, made_by: str) -> bool:
    """Whether ``claim_dir(path, made_by)`` created (or adopted) this directory."""
    try:
        return json.loads((path / OWNER).read_text(encoding="utf-8")).get("made_by") == made_by
    except (OSError, ValueError, AttributeError):
        return False


def _being_claimed(path: Path) -> bool:
    """Whether everything in ``path`` is a marker still being written (its temporary name, before the rename)."""
    try:
        names = [p.name for p in path.iterdir()]
    except OSError:
        return False
    return bool(names) and all(n.startswith(f".{OWNER}.") and n.endswith(".tmp") for n in names)


def temp_path(path: str | Path) -> Path:
    """A fresh hidden name beside ``path`` (same directory, so ``os.replace`` onto ``path`` is atomic)."""
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise cannot_write(path, exc) from None
    os.close(fd)
    return Path(tmp)


def commit(tmp: str | Path, path: str | Path) -> None:
    """Atomically move a finished temporary file onto its final name, and make the rename durable."""
    path = Path(path)
    try:
        # mkstemp creates 0600; an artifact gets the mode any new file gets here (a teammate, a web server
        # may read report.html): 0666 less the process umask.
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise cannot_write(path, exc) from None
    _fsync_dir(path.parent)


def atomic_write(path: str | Path, data: bytes | str) -> None:
    """Write ``data`` to ``path`` so a crash leaves either the old file or the whole new one.

    A destination that cannot be written (not a directory, no permission, disk full) is an ``OutputError``.
    """
    path = Path(path)
    make_dir(path.parent)
    if path.is_dir():
        raise OutputError(f"cannot write {path}: it is a directory")
    raw = data.encode("utf-8") if isinstance(data, str) else data
    tmp = temp_path(path)
    try:
        with open(tmp, "wb") as f:
            f.write(raw)
            f.flush()
            os.fsync(f.fileno())
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise cannot_write(path, exc) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    commit(tmp, path)


def _umask() -> int:
    """The process umask, read without changing it where the OS allows (``os.umask`` sets it to read it)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # not Linux: set and restore (not thread-safe, but only off Linux)
    os.umask(mask)
    return mask


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_json(path: str | Path, obj: Any) -> None:
    """Strict JSON only: a NaN or an infinity is a bug to fix where it arises (``finite_json`` for reports),
    never ``NaN``/``Infinity`` in a file that other JSON readers must parse."""
    atomic_write(path, json.dumps(obj, indent=2, default=json_default, allow_nan=False) + "\n")


def finite_json(obj: Any) -> Any:
    """Replace NaN and infinities by ``None``: strict JSON has no such numbers (for reports, not checkpoints)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite_json(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [finite_json(v) for v in obj]
    return obj


def json_default(o: Any) -> Any:
    if hasattr(o, "item"):
        return o.item()
    if hasattr(o, "tolist"):
        return o.tolist()
    if isinstance(o, (set, tuple)):
        return list(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def read_json(path: str | Path) -> Any:
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ArtifactError(f"{path} is missing") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"{path} is not valid JSON ({exc.__class__.__name__}): the file is damaged") from None


def tensors_to_bytes(tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> bytes:
    from safetensors.torch import save as st_save

    return st_save({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, metadata=metadata)


def write_tensors(path: str | Path, tensors: dict[str, torch.Tensor]) -> None:
    atomic_write(path, tensors_to_bytes(tensors))


def read_tensors(path: str | Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load as st_load

    path = Path(path)
    try:
        return st_load(path.read_bytes())
    except FileNotFoundError:
        raise ArtifactError(f"{path} is missing") from None
    except (SafetensorError, ValueError, OSError) as exc:
        raise ArtifactError(f"{path} is not a valid safetensors file ({str(exc).splitlines()[0][:120]})") from None


def tensors_from_bytes(data: bytes, source: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and the string metadata of a safetensors blob already in memory (e.g. after a checksum)."""
    from safetensors import SafetensorError
    from safetensors.torch import load as st_load

    try:
        tensors = st_load(data)
        # The format: an 8-byte little-endian header length, then the JSON header holding "__metadata__".
        # (safetensors' own ``safe_open`` reads metadata only from a file; these bytes are already checked.)
        header = json.loads(data[8:8 + int.from_bytes(data[:8], "little")])
    except (SafetensorError, ValueError, OSError) as exc:
        raise ArtifactError(f"{source} is not a valid safetensors file ({str(exc).splitlines()[0][:120]})") from None
    return tensors, header.get("__metadata__") or {}


def sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_manifest(directory: str | Path, names: list[str]) -> None:
    directory = Path(directory)
    files = {n: {"sha256": sha256(directory / n), "bytes": (directory / n).stat().st_size} for n in sorted(names)}
    write_json(directory / MANIFEST, {"version": 1, "files": files})


def verify_manifest(directory: str | Path, names: list[str] | None = None) -> dict[str, Any]:
    """Check the sha256 of ``names`` (default: every listed file); a mismatch names the file."""
    directory = Path(directory)
    if not (directory / MANIFEST).is_file():
        raise ArtifactError(f"{directory} has no {MANIFEST}: it is not a finished run directory")
    manifest = read_json(directory / MANIFEST)
    files = manifest.get("files", {}) if isinstance(manifest, dict) else {}
    for name in names if names is not None else list(files):
        entry = files.get(name)
        path = directory / name
        if entry is None:
            raise ArtifactError(f"{path} is not listed in {MANIFEST}")
        if not path.is_file():
            raise ArtifactError(f"{path} is missing")
        if path.stat().st_size != entry.get("bytes"):
            raise ArtifactError(f"{path} has been truncated or altered (size {path.stat().st_size}, expected {entry.get('bytes')})")
        if sha256(path) != entry.get("sha256"):
            raise ArtifactError(f"{path} has been altered: its sha256 does not match {MANIFEST}")
    return manifest


def read_weights(run_dir: str | Path) -> dict[str, torch.Tensor]:
    """The weights of a finished run directory, verified against its manifest."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ArtifactError(f"run directory {run_dir} does not exist")
    verify_manifest(run_dir, ["model.safetensors"])
    return read_tensors(run_dir / "model.safetensors")
