"""What ``palaestra runs`` prints: the run list, one run (``show``), and runs side by side (``compare``).

Paths are shortened from the left, so the end that tells runs apart stays visible; configs are compared as
flattened dotted keys (``optimizer.lr``), the same spelling ``--set`` takes.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from pathlib import Path
from typing import Any

from palaestra.artifacts import read_json
from palaestra.config import build_config, flatten
from palaestra.errors import ArtifactError, UserError
from palaestra.formatting import format_duration
from palaestra.index import RunIndex, read_state, run_name, runs_root

KEY_METRICS = ("accuracy", "r2", "mae", "bits_per_char", "perplexity", "loss")
SUMMARY_KEYS = ("name", "seed", "data.source", "data.target", "data.task", "model.family", "loss.name",
                "optimizer.name", "optimizer.lr", "train.epochs", "train.batch_size")


def short_path(path: str | Path, width: int = 48, relative: bool = True) -> str:
    """``path`` relative to the working directory (or ``~``) and, if still long, cut from the left: ``…/end``."""
    path = Path(path)
    text = str(path)
    try:
        if not relative:
            raise ValueError
        text = str(path.relative_to(Path.cwd()))
    except ValueError:
        home = str(Path.home())
        if home not in ("/", "") and text.startswith(home + os.sep):
            text = "~" + text[len(home):]
    return text if len(text) <= width else "…" + text[-(width - 1):]


def key_metric(metrics: dict[str, Any]) -> str:
    return next((f"{k} {metrics[k]:.4f}" for k in KEY_METRICS if isinstance(metrics.get(k), float)), "")


def _when(stamp: float | None) -> str:
    if not stamp:
        return ""
    this_year = time.localtime(stamp).tm_year == time.localtime().tm_year
    return time.strftime("%m-%d %H:%M" if this_year else "%Y-%m-%d %H:%M", time.localtime(stamp))


def list_table(runs: list[dict[str, Any]], db: Path):
    """The run list; a run under the index's own directory is shown by its path there (``runs show`` takes it)."""
    from rich import box
    from rich.table import Table

    root = db.resolve().parent
    table = Table(title=f"runs in {short_path(root, 70, relative=False)}", box=box.SIMPLE_HEAD, show_edge=False, collapse_padding=True)
    names = max((len(r["name"] or "") for r in runs), default=4)
    for col in ("name", "task", "state", "created", "duration", "key metric"):  # only the path folds
        table.add_column(col, no_wrap=True, min_width=min(names, 32) if col == "name" else None)
    table.add_column("run", overflow="fold")  # never cut: the end of the path is what tells runs apart
    for r in runs:
        duration = format_duration(r["duration"]) if r.get("duration") is not None else ""
        path = Path(r["path"])
        shown = str(path.relative_to(root)) if path.is_relative_to(root) else short_path(path)
        table.add_row(r["name"] or "", r["task"] or "", r["state"] or "", _when(r["created"]), duration,
                      key_metric(r["metrics"]), shown)
    return table


def empty_hint(db: Path) -> str:
    where = db.resolve()
    env = os.environ.get("PALAESTRA_RUNS")
    source = (f"PALAESTRA_RUNS={env}" if env else
              "PALAESTRA_RUNS is not set, so the index is ./runs/index.sqlite under the current directory")
    return (f"no runs recorded in {where} ({source}).\n"
            f"Runs are indexed where they were trained from: run this in that directory, or point to its index "
            f"with PALAESTRA_RUNS=/path/to/runs palaestra runs")


def resolve_run(arg: str) -> Path:
    """A run directory from a path, or from a name (or path ending) in the run index: the latest that fits."""
    path = Path(arg)
    if path.is_dir():
        if not any((path / name).exists() for name in ("config.yaml", "manifest.json", "state.json")):
            raise UserError(f"{path} is not a finished run directory (no config.yaml, state.json or manifest.json)")
        return path
    fits = [r for r in RunIndex.default().list()
            if r["name"] == arg or r["path"].endswith(os.sep + arg.strip(os.sep))]
    if fits:
        return Path(fits[-1]["path"])
    what = "a file" if path.exists() else "neither a directory"
    raise UserError(f"{arg} is not a run directory ({what}) nor a run in the index {RunIndex.default().db.resolve()} "
                    f"(palaestra runs lists them)")


def _config(run: Path) -> dict[str, Any]:
    from palaestra.config import read_yaml

    return read_yaml(run / "config.yaml") if (run / "config.yaml").is_file() else {}


def _metrics(run: Path) -> dict[str, Any]:
    """A finished run's metrics, verified against its manifest; {} for a run still running (no manifest)."""
    from palaestra.artifacts import MANIFEST
    from palaestra.rundir import read_metrics, verify_run

    if not (run / MANIFEST).is_file():
        return {}
    verify_run(run)
    return read_metrics(run)


def summary(run: Path) -> dict[str, Any]:
    """One run as a plain dict: where, state, the config's key settings, the metrics (``runs show --json``)."""
    config = _config(run)
    flat = flatten(config)
    try:  # `auto` and unset values as the run resolved them
        pre = read_json(run / "preprocess.json")["preprocessor"]
        names = [o["name"] for o in pre.get("outputs", [])]  # typed features: one name per target
        target = (names[0] if len(names) == 1 else names) if names else pre.get("target")
    except (ArtifactError, KeyError, TypeError, AttributeError):
        target = None
    if target is not None and flat.get("data.target") is None:
        flat["data.target"] = target
    if config:
        with contextlib.suppress(UserError):
            flat["name"] = run_name(build_config(config), target)
    out: dict[str, Any] = {"path": str(run.resolve()), "state": read_state(run),
                           "config": {k: flat[k] for k in SUMMARY_KEYS if k in flat}, "metrics": _metrics(run)}
    if not out["metrics"] and (run / "history.csv").is_file():  # running or interrupted: how far it got
        out["epochs_done"] = max(0, len((run / "history.csv").read_text().strip().splitlines()) - 1)
    return out


def scalar_rows(split: dict[str, Any]) -> dict[str, float]:
    """A split's scalar metrics; a multi-target split (one block per target) as ``target.metric``."""
    return {k: v for k, v in flatten(split or {}).items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)}


def show(run: Path, console) -> None:
    from rich.table import Table

    info = summary(run)
    console.print(f"run {short_path(info['path'], 80)}: {info['state']}", markup=False)
    table = Table(title="config", show_header=False)
    table.add_column("key")
    table.add_column("value")
    for k, v in info["config"].items():
        table.add_row(k, str(v))
    console.print(table)
    if "epochs_done" in info:
        console.print(f"{info['epochs_done']} epochs in history.csv so far (no metrics.json yet)", markup=False)
    test = scalar_rows(info["metrics"].get("test", {}))
    if test:
        console.print(_metric_table("test metrics", ["value"], [test]))


def _metric_table(title: str, columns: list[str], metrics: list[dict[str, float]]):
    from rich.table import Table

    table = Table(title=title)
    table.add_column("metric")
    for c in columns:
        table.add_column(c, justify="right")
    for k in dict.fromkeys(k for m in metrics for k in m):
        table.add_row(k, *(_num(m.get(k)) for m in metrics))
    return table


def _num(v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return f"{v:.4f}" if isinstance(v, float) else str(v)


def _labels(runs: list[Path]) -> list[str]:
    names = [r.name for r in runs]
    return names if len(set(names)) == len(names) else [short_path(r.resolve(), 32) for r in runs]


def config_differences(runs: list[Path]) -> dict[str, list[Any]]:
    """Dotted config keys whose values differ between the runs, with each run's value (``None``: unset)."""
    flats = [flatten(_config(r)) for r in runs]
    keys = dict.fromkeys(k for f in flats for k in f)
    return {k: [f.get(k) for f in flats] for k in keys if len({repr(f.get(k)) for f in flats}) > 1}


def compare(runs: list[Path], console) -> dict[str, Any]:
    """Print what differed in the configs, then the test metrics side by side; return both (for ``--json``)."""
    from rich.table import Table

    labels = _labels(runs)
    diff = config_differences(runs)
    metrics = [scalar_rows(_metrics(r).get("test", {})) for r in runs]
    if console is not None:
        if diff:
            table = Table(title="config differences")
            table.add_column("key")
            for label in labels:
                table.add_column(label)
            for k, values in diff.items():
                table.add_row(k, *("-" if v is None else str(v) for v in values))
            console.print(table)
        else:
            console.print("configs: identical", markup=False)
        console.print(_metric_table("test metrics", labels, metrics))
    return {"runs": [str(r.resolve()) for r in runs], "config_differences": diff, "test": metrics}


def export_mlflow(run: Path) -> tuple[str, bool]:
    """Backfill one finished run into MLflow (``runs export --mlflow``): the resolved config as params, every epoch
    of ``history.csv`` with its step, the test metrics, tags, and the run's files as artifacts.

    Returns ``(mlflow run id, exported now)``; a run already in the store (tracked while it trained, or exported
    before; found by its ``palaestra.run_key`` tag) is not logged twice.
    """
    from palaestra.rundir import read_history, read_metrics, verify_run
    from palaestra.training import trackers as tracking

    tracking.require("mlflow")
    verify_run(run)
    if read_state(run) != "complete":
        raise UserError(f"{run} is not a complete run (state: {read_state(run)}); only finished runs are exported")
    config = build_config(_config(run))
    metrics, history = read_metrics(run), read_history(run)
    uri = tracking.default_tracking_uri(runs_root())
    existing = tracking.find_tracked(uri, run)
    if existing is not None:
        return existing, False
    tags = {"palaestra.task": config.data.task, "palaestra.family": config.model.family,
            "palaestra.exported": "true"}
    writer = tracking.MlflowWriter(uri, run, run_name(config), tags)
    writer.params(config.to_dict())
    for row in history.to_dict("records"):
        writer.metrics(tracking.epoch_values(row), int(row["epoch"]))
    writer.metrics(tracking.scalar_metrics(metrics.get("test", {}), "test_"), int(metrics.get("epochs") or 0))
    writer.artifacts(run)
    writer.end("FINISHED")
    return writer.run_id, True
