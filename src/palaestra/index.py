"""The run index and run states, without torch: ``palaestra runs`` and other commands that do not train stay
fast. ``state.json`` in a run directory says whether it is running, complete, failed or interrupted; the
SQLite index under ``PALAESTRA_RUNS`` (default ``./runs``) lists every run.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import time
from pathlib import Path
from typing import Any

from palaestra.artifacts import make_dir, read_json, write_json
from palaestra.config import Config
from palaestra.errors import ArtifactError

STATE_FILE = "state.json"
STATES = ("running", "complete", "failed", "interrupted")


def set_state(run_dir: Path, state: str, **extra: Any) -> None:
    assert state in STATES
    if state == "running":
        # Who runs it: a run whose process has died (SIGKILL, OOM killer, power loss) then reads as interrupted.
        extra = {"pid": os.getpid(), "host": socket.gethostname(), **extra}
    write_json(Path(run_dir) / STATE_FILE, {"state": state, "updated": time.time(), **extra})
    RunIndex.default().record(Path(run_dir), state=state)


def run_name(config: Config, target: str | None = None) -> str:
    """The name a run is listed under: ``config.name`` when set, else the data source and what it predicts.

    >>> run_name(build_config({"data": {"source": "data/houses.csv", "target": "price"}}))
    'houses-price'
    """
    if config.name != "run":
        return config.name
    from palaestra.data.datasets import default_target

    source = str(config.data.source)
    stem = Path(source).stem or source
    target = target or config.data.target or default_target(source)
    if isinstance(target, list):  # several targets
        target = "+".join(target)
    if target in (None, "x", "y"):  # arrays (.npz x and y): the task says more than "y"
        target = config.data.task if config.data.task != "auto" else None
    return f"{stem}-{target}" if target else stem


def read_state(run_dir: Path) -> str:
    try:
        data = read_json(Path(run_dir) / STATE_FILE)
    except ArtifactError:
        return "unknown"
    state = data.get("state") if isinstance(data, dict) else None
    if state not in STATES:
        return "unknown"
    if state == "running" and not alive(data.get("pid"), data.get("host")):
        return "interrupted"
    return state


def state_error(run_dir: Path) -> str:
    try:
        data = read_json(Path(run_dir) / STATE_FILE)
    except ArtifactError:
        return "no reason recorded"
    return str(data.get("error") or "no reason recorded")[:300] if isinstance(data, dict) else "no reason recorded"


def alive(pid: Any, host: Any) -> bool:
    """Whether the process that marked a run as running still exists (True when it cannot be told from here)."""
    if not isinstance(pid, int) or host != socket.gethostname():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def runs_root() -> Path:
    return Path(os.environ.get("PALAESTRA_RUNS", "runs"))


class RunIndex:
    """SQLite index of runs: path, name, task, state, key metrics. Safe for concurrent writers."""

    def __init__(self, db: Path):
        self.db = Path(db)

    @classmethod
    def default(cls) -> RunIndex:
        return cls(runs_root() / "index.sqlite")

    def _connect(self) -> sqlite3.Connection:
        make_dir(self.db.parent)
        try:
            con = sqlite3.connect(self.db, timeout=30)
            con.execute("""CREATE TABLE IF NOT EXISTS runs (path TEXT PRIMARY KEY, name TEXT, task TEXT, state TEXT,
                           created REAL, updated REAL, metrics TEXT)""")
        except sqlite3.DatabaseError as exc:  # e.g. "file is not a database": damaged, or not ours
            raise ArtifactError(f"the run index {self.db} cannot be used ({exc}): move it away "
                                f"(or set PALAESTRA_RUNS to another directory)") from None
        return con

    def record(self, run_dir: Path, state: str | None = None, name: str | None = None, task: str | None = None,
               metrics: dict[str, Any] | None = None) -> None:
        key = str(Path(run_dir).resolve())
        now = time.time()
        with self._connect() as con:
            con.execute("INSERT OR IGNORE INTO runs(path, created, updated) VALUES (?, ?, ?)", (key, now, now))
            for col, value in (("state", state), ("name", name), ("task", task),
                               ("metrics", json.dumps(metrics) if metrics is not None else None)):
                if value is not None:
                    con.execute(f"UPDATE runs SET {col} = ?, updated = ? WHERE path = ?", (value, now, key))
        con.close()

    def list(self) -> list[dict[str, Any]]:
        if not self.db.is_file():
            return []
        with self._connect() as con:
            rows = con.execute("SELECT path, name, task, state, created, updated, metrics FROM runs "
                               "ORDER BY created").fetchall()
        con.close()
        out = []
        for path, name, task, state, created, updated, metrics in rows:
            live = read_state(Path(path)) if Path(path).is_dir() else "missing"
            live = live if live != "unknown" else state
            # A finished run lasted until its last update; a running one is still going.
            end = time.time() if live == "running" else updated
            out.append({"path": path, "name": name, "task": task, "state": live, "created": created,
                        "updated": updated, "duration": max(0.0, (end or created) - created) if created else None,
                        "metrics": json.loads(metrics) if metrics else {}})
        return out
