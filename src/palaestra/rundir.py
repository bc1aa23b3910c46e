"""Verified readers of a finished run directory: every command that reads a run goes through these.

A run directory is trusted only as far as ``manifest.json`` vouches for it: ``verify_run`` checks the sha256 of
*every* file the manifest lists (not only the model), and the readers check that each file has the shape the
code relies on. Damage of any kind is an ``ArtifactError`` naming the file (exit 2, one line), never a
traceback from deep inside pandas or a dict lookup.

>>> from palaestra.rundir import read_metrics, verify_run
>>> verify_run("runs/penguins")                # doctest: +SKIP
>>> read_metrics("runs/penguins")["test"]      # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from palaestra.artifacts import MANIFEST, read_json, verify_manifest
from palaestra.errors import ArtifactError
from palaestra.index import read_state

CORE_FILES = ("config.yaml", "model.safetensors", "preprocess.json", "metrics.json")


def verify_run(path: str | Path, required: tuple[str, ...] = CORE_FILES) -> dict[str, Any]:
    """Check a finished run: ``required`` files are listed, and every listed file matches its checksum."""
    path = Path(path)
    if not path.is_dir():
        raise ArtifactError(f"run directory {path} does not exist" if not path.exists()
                            else f"{path} is not a run directory (it is a file)")
    if not (path / MANIFEST).is_file():
        if (path / "checkpoints").is_dir() and (path / "config.yaml").is_file():
            raise ArtifactError(f"{path} is not a finished run (state: {read_state(path)}); "
                                f"resume it with: palaestra train --resume {path}")
        raise ArtifactError(f"{path} is not a finished run directory (no {MANIFEST})")
    verify_manifest(path, list(required))
    return verify_manifest(path)


def _shape_error(path: Path, what: str) -> ArtifactError:
    return ArtifactError(f"{path} is damaged: {what}")


def read_mapping(path: str | Path) -> dict[str, Any]:
    """A JSON file that must hold an object (``{...}``)."""
    path = Path(path)
    data = read_json(path)
    if not isinstance(data, dict):
        raise _shape_error(path, f"expected a JSON object, found {type(data).__name__}")
    return data


def read_metrics(run_dir: str | Path) -> dict[str, Any]:
    """``metrics.json``: an object whose ``val`` and ``test`` blocks are objects (per target, or flat)."""
    path = Path(run_dir) / "metrics.json"
    metrics = read_mapping(path)
    for split in ("val", "test"):
        block = metrics.get(split, {})
        if not isinstance(block, dict):
            raise _shape_error(path, f"'{split}' should be an object of metrics, found {type(block).__name__}")
    if not isinstance(metrics.get("epochs", 0), int | type(None)):
        raise _shape_error(path, "'epochs' should be a whole number")
    return metrics


def read_preprocess(run_dir: str | Path) -> dict[str, Any]:
    """``preprocess.json``: an object with the fitted ``preprocessor``, the ``spec`` and the ``splits``."""
    path = Path(run_dir) / "preprocess.json"
    data = read_mapping(path)
    for key in ("preprocessor", "spec"):
        if not isinstance(data.get(key), dict):
            raise _shape_error(path, f"'{key}' should be an object")
    if not isinstance(data.get("splits", {}), dict):
        raise _shape_error(path, "'splits' should be an object")
    return data


def read_history(run_dir: str | Path) -> pd.DataFrame:
    """``history.csv``: one numeric row per epoch (an empty frame when the run has none)."""
    path = Path(run_dir) / "history.csv"
    if not path.is_file():
        return pd.DataFrame()
    try:
        frame = pd.read_csv(path)
    except pd.errors.EmptyDataError:
        return pd.DataFrame()
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError, OSError) as exc:
        raise _shape_error(path, f"not a readable CSV ({type(exc).__name__})") from None
    for column in frame.columns:
        try:
            frame[column] = pd.to_numeric(frame[column])
        except (ValueError, TypeError):
            raise _shape_error(path, f"column '{str(column)[:80]}' holds non-numeric values") from None
    return frame


def read_diagnostics(run_dir: str | Path) -> list[dict[str, float]]:
    """``diagnostics.json``'s per-epoch gradient norms (``[]`` when the run has none)."""
    path = Path(run_dir) / "diagnostics.json"
    if not path.is_file():
        return []
    norms = read_mapping(path).get("grad_norms", [])
    if not isinstance(norms, list) or not all(isinstance(n, dict) for n in norms):
        raise _shape_error(path, "'grad_norms' should be a list of objects")
    for entry in norms:
        if not all(isinstance(v, int | float | type(None)) for v in entry.values()):
            raise _shape_error(path, "'grad_norms' should hold numbers")
    return norms
