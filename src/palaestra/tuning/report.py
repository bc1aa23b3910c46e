"""The human report of a tuning study: ``study.html`` in the study directory.

Best value and parameters first, then the trials (best first), then Optuna's plots with the tuned metric's
name on their axes, then how to retrain the winner.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from palaestra.artifacts import atomic_write
from palaestra.evaluation.report import esc, fmt, kv_section, page

if TYPE_CHECKING:
    from palaestra.tuning.results import StudyResult

_COLUMNS_LAST = ("epochs", "seconds", "cv_mean", "cv_std")
_LEFT_OUT = {"epoch_values", "datetime_start", "duration_s", "worker"}


def _order(rows: list[dict[str, Any]], direction: str) -> list[dict[str, Any]]:
    """Completed trials best first, then the rest (pruned, failed, running) by number."""
    def score(row: dict[str, Any]) -> float:
        v = row.get("value")
        ok = isinstance(v, (int, float)) and math.isfinite(v) and row.get("state") == "COMPLETE"
        return (v if direction == "minimize" else -v) if ok else math.inf

    return sorted(rows, key=lambda r: (score(r), r.get("number", 0)))


def _trials_table(rows: list[dict[str, Any]], metric: str, best: int | None) -> str:
    if not rows:
        return "<p>No trials yet.</p>"
    keys = list(dict.fromkeys(k for r in rows for k in r if k not in _LEFT_OUT))
    keys = [k for k in keys if k not in _COLUMNS_LAST] + [k for k in _COLUMNS_LAST if k in keys]
    if len({r.get("stage") for r in rows}) == 1:
        keys.remove("stage")
    names = {"value": metric, "number": "trial"}
    head = "".join(f"<th>{esc(names.get(k, k.removeprefix('params.')))}</th>" for k in keys)
    body = []
    for r in rows:
        mark = ' class="best"' if r.get("number") == best else ""
        body.append(f"<tr{mark}>" + "".join(f"<td>{esc(fmt(r.get(k)))}</td>" for k in keys) + "</tr>")
    return f'<div class="scroll"><table><tr>{head}</tr>\n' + "\n".join(body) + "</table></div>"


def _value(v: Any) -> str:
    return json.dumps(v) if isinstance(v, list | dict) else fmt(v)


def write_study_report(result: StudyResult, rows: list[dict[str, Any]], plots: list[Path], notes: list[str]) -> Path:
    """Write ``study.html`` from the trials' rows (as in trials.csv) and the plots already drawn; return its path."""
    best = result.best_trial
    stage = result.stages[-1]
    value = f"{best.value:.6g}" if best is not None and best.value is not None else "-"
    headline = {f"best {result.metric}": value, "direction": result.direction,
                "best trial": best.number if best is not None else None}
    if best is not None and "cv_std" in best.user_attrs:
        headline["cv std"] = f"{best.user_attrs['cv_std']:.4g}"
    parts = [kv_section("Best trial", headline, "headline"),
             kv_section("Best parameters", {k: _value(v) for k, v in result.best_params.items()})]
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["state"]] = counts.get(r["state"], 0) + 1
    summary = ", ".join(f"{n} {s.lower()}" for s, n in counts.items())
    parts.append(f"<h2>Trials</h2>\n<p>{esc(summary)}; best first.</p>\n"
                 + _trials_table(_order(rows, result.direction), result.metric, best.number if best else None))
    if plots:
        images = "".join(f'<img src="{esc(p.relative_to(result.study_dir))}" alt="{esc(p.stem)}">' for p in plots)
        parts.append(f'<h2>Plots</h2>\n<div class="plots">{images}</div>')
    if notes:
        parts.append("<h2>Notes</h2>\n<ul>" + "".join(f"<li>{esc(n)}</li>" for n in notes) + "</ul>")
    parts.append("<h2>Retrain the winner</h2>\n<pre>palaestra train "
                 f"{esc(result.study_dir / 'best.yaml')}</pre>")
    path = result.study_dir / "study.html"
    atomic_write(path, page(f"palaestra study: {stage.name}", parts,
                            f"{len(rows)} trials · tuning {result.metric} ({result.direction})"))
    return path
