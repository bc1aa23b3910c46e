"""What a study leaves behind: a leaderboard, ``trials.csv``, plots, ``best.yaml`` and the best trial's run.

Layout of the study directory::

    study.db        the Optuna storage (default; any SQLAlchemy URL with --storage)
    trials.csv      one row per trial: stage, number, state, value, params, epochs, seconds, per-epoch values
    plots/          optimisation history, parameter importances, parallel coordinates (per stage)
    best.yaml       the full resolved config with the best values: `palaestra train best.yaml` retrains it
    best.json       study, trial number, value (and cv mean/std), params, the retrained run's value
    study.html      the human report: best value and params, the trials best first, the plots
    best-run/       the best config retrained into a run directory
    trials/STAGE/NNNN  each trial's run directory (NNNN-foldK with tune.cv); its path is the trial's `run` attr
"""

from __future__ import annotations

import contextlib
import json
import shutil
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from palaestra.artifacts import OWNER, atomic_write, finite_json, write_json
from palaestra.errors import ConfigError, UserError
from palaestra.tuning.report import write_study_report
from palaestra.tuning.space import decode_params

if TYPE_CHECKING:
    from palaestra.tuning.results import Stage, StudyResult


@contextlib.contextmanager
def _locked(path: Path):
    """Workers sharing a study directory write its outputs one at a time."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock (workers on one directory are a POSIX setup)
        yield
        return
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def final_value(run, metric: str) -> float:
    """The tuned validation metric of a finished trial's run."""
    value = run.metrics.get("val", {}).get(metric.removeprefix("val_"))
    if value is None:
        raise ConfigError(f"tune.metric '{metric}' needs a validation split: set data.split.val above 0 or use tune.cv")
    return float(value)


def trial_rows(stage: Stage, label: str | None = None) -> list[dict[str, Any]]:
    rows = []
    for t in stage.study.get_trials(deepcopy=False):
        row: dict[str, Any] = {"stage": label or stage.name, "number": t.number, "state": t.state.name,
                               "value": t.value}
        for k, v in decode_params(stage.space, t.params).items():
            row[f"params.{k}"] = json.dumps(v) if isinstance(v, list | dict) else v
        attrs = t.user_attrs
        for k in ("epochs", "seconds", "cv_mean", "cv_std"):
            if k in attrs:
                row[k] = attrs[k]
        row.update(attrs.get("val", {}))
        if "run" in attrs or "runs" in attrs:  # the trial's run directory (its folds' with tune.cv)
            row["run"] = attrs.get("run") or json.dumps(attrs["runs"])
        row["duration_s"] = t.duration.total_seconds() if t.duration is not None else None
        row["datetime_start"] = t.datetime_start.isoformat() if t.datetime_start else None
        row["epoch_values"] = json.dumps({int(k): v for k, v in sorted(t.intermediate_values.items())})
        rows.append(row)
    return rows


def write_trials_csv(result: StudyResult, rows: list[dict[str, Any]]) -> Path:
    path = result.study_dir / "trials.csv"
    atomic_write(path, pd.DataFrame(rows).to_csv(index=False))
    return path


def write_plots(result: StudyResult) -> tuple[list[Path], list[str]]:
    """Optuna's matplotlib plots per stage; a plot that cannot be drawn (too few trials) is skipped with a note."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import optuna.visualization.matplotlib as ovm
    except ImportError:
        return [], ["plots skipped: matplotlib is not installed"]
    plots = result.study_dir / "plots"
    plots.mkdir(exist_ok=True)
    files, notes = [], []
    kinds = {"history": ovm.plot_optimization_history, "importances": ovm.plot_param_importances,
             "parallel": ovm.plot_parallel_coordinate}
    for i, stage in enumerate(result.stages):
        prefix = f"stage{i + 1}-" if len(result.stages) > 1 else ""
        complete = sum(t.state.name == "COMPLETE" for t in stage.study.get_trials(deepcopy=False))
        for name, plot in kinds.items():
            if name != "history" and complete < 2:
                notes.append(f"{prefix}{name} plot skipped: needs at least 2 completed trials")
                continue
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    ax = plot(stage.study, target_name=result.metric)  # not "Objective Value"
                fig = (ax.flat[0] if hasattr(ax, "flat") else ax).figure
                path = plots / f"{prefix}{name}.png"
                fig.savefig(path, dpi=100, bbox_inches="tight")
                plt.close(fig)
                files.append(path)
            except Exception as exc:  # a plot is a nicety: never lose a finished study over it
                notes.append(f"{prefix}{name} plot skipped: {type(exc).__name__}: {exc}")
    plt.close("all")
    return files, notes


def _same_best(prev: dict[str, Any], info: dict[str, Any], run_dir: Path) -> bool:
    from palaestra.index import read_state

    keys = ("study", "trial", "params")
    return all(prev.get(k) == info.get(k) for k in keys) and read_state(run_dir) == "complete"


def _own_best_run(study_dir: Path, run_dir: Path, prev: dict[str, Any]) -> bool:
    """Whether this study wrote ``run_dir``: its marker says so (set before the retraining starts, so a killed
    retraining is still recognised), or best.json names it (studies from before the marker)."""
    try:
        marker = json.loads((study_dir / OWNER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        marker = {}
    named = isinstance(marker, dict) and marker.get("best_run") == run_dir.name
    return named or Path(str(prev.get("best_run", ""))).name == run_dir.name


def _remove_own_best_run(study_dir: Path, run_dir: Path, prev: dict[str, Any]) -> None:
    """Delete an earlier best-run/ only when this study wrote it; never a user's files."""
    if not _own_best_run(study_dir, run_dir, prev):
        raise UserError(f"{run_dir} exists but this study did not write it: move it away, or run with --no-best-run")
    shutil.rmtree(run_dir)


def write_best(result: StudyResult, best_run: bool) -> list[Path]:
    """best.yaml, best.json and (optionally) best-run/: the winner as a runnable config and a run."""
    from palaestra.pipeline import train

    best = result.best_trial
    stage = result.stages[-1]
    info: dict[str, Any] = {"study": stage.name, "trial": best.number, "metric": result.metric,
                            "direction": result.direction, "value": best.value, "params": result.best_params,
                            "storage": result.storage}
    for k in ("cv_mean", "cv_std", "cv_values"):
        if k in best.user_attrs:
            info[k] = best.user_attrs[k]
    config = result.best_config
    json_path, run_dir = result.study_dir / "best.json", result.study_dir / "best-run"
    prev = json.loads(json_path.read_text()) if json_path.is_file() else {}
    if best_run:
        if run_dir.exists() and _same_best(prev, info, run_dir):
            info["retrain_value"] = prev.get("retrain_value")
        else:
            if run_dir.exists():
                _remove_own_best_run(result.study_dir, run_dir, prev)  # an earlier best, superseded
            write_json(result.study_dir / OWNER, {"made_by": "tune", "best_run": run_dir.name})
            run = train(config, out=run_dir, quiet=True)
            result.best_run = run
            config = run.config  # `auto` family and task resolved, as in any run's config.yaml
            info["retrain_value"] = final_value(run, result.metric)
        info["best_run"] = str(run_dir)
    header = [f"# best trial {best.number} of study '{stage.name}': {result.metric} = {best.value:.6g}"]
    if "cv_mean" in info:
        header.append(f"# (the mean over {len(info['cv_values'])} folds, std {info['cv_std']:.3g}; "
                      f"this config trains on the configured split)")
    header.append("# retrain: palaestra train best.yaml")
    atomic_write(result.study_dir / "best.yaml", "\n".join(header) + "\n" + config.to_yaml())
    write_json(json_path, finite_json(info))
    return [result.study_dir / "best.yaml", json_path] + ([run_dir] if best_run else [])


def leaderboard(stage: Stage, metric: str, direction: str, top: int = 10):
    """A rich table of the best completed trials, then a line counting every state."""
    from rich.table import Table

    trials = stage.study.get_trials(deepcopy=False)
    done = [t for t in trials if t.state.name == "COMPLETE"]
    done.sort(key=lambda t: t.value, reverse=direction == "maximize")
    counts = {s: sum(t.state.name == s for t in trials) for s in ("COMPLETE", "PRUNED", "FAIL", "RUNNING")}
    caption = ", ".join(f"{n} {s.lower()}" for s, n in counts.items() if n)
    table = Table(title=f"study {stage.name}: top {min(top, len(done))} of {len(trials)} trials ({metric}, "
                        f"{direction})", caption=caption)
    table.add_column("rank", justify="right")
    table.add_column("trial", justify="right")
    table.add_column(metric, justify="right")
    for path in stage.space:
        table.add_column(path)
    table.add_column("epochs", justify="right")
    table.add_column("seconds", justify="right")
    for rank, t in enumerate(done[:top], 1):
        value = f"{t.value:.4f}"
        if "cv_std" in t.user_attrs:
            value += f" ± {t.user_attrs['cv_std']:.4f}"
        params = decode_params(stage.space, t.params)
        table.add_row(str(rank), str(t.number), value, *(_short(params.get(p)) for p in stage.space),
                      str(t.user_attrs.get("epochs", "")), f"{t.user_attrs.get('seconds', 0):.1f}")
    return table


def _short(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return json.dumps(v) if isinstance(v, list | dict) else str(v)


def write_outputs(result: StudyResult, console=None, best_run: bool = True, plots: bool = True,
                  quiet: bool = False) -> None:
    with _locked(result.study_dir / ".outputs.lock"):
        rows = [r for s in result.stages for r in trial_rows(s)]
        files = [write_trials_csv(result, rows)]
        drawn, notes = write_plots(result) if plots else ([], [])
        files += drawn
        files += write_best(result, best_run)
        files.append(write_study_report(result, rows, drawn, notes))
    result.files = files
    if quiet:
        return
    if console is None:
        from rich.console import Console

        console = Console(highlight=False)
    for stage in result.stages:
        console.print(leaderboard(stage, result.metric, result.direction))
    for note in notes:
        console.print(f"note: {note}")
    console.print(f"best {result.metric}: {result.best_trial.value:.6g} with "
                  + ", ".join(f"{k}={_short(v)}" for k, v in result.best_params.items()))
    for f in files:
        console.print(f"wrote {f}")
