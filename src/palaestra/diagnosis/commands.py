"""``palaestra doctor RUN [--json]``: diagnose a finished run."""

from __future__ import annotations

import argparse
from pathlib import Path

from palaestra.cli import command, console, json_line


@command("doctor", help="diagnose a finished run: overfitting, learning rate, gradients, leakage, ...")
def cmd_doctor(args: argparse.Namespace) -> int:
    from palaestra.diagnosis import diagnose, print_findings

    run_dir = Path(args.run)  # diagnose() verifies every file against the run's manifest
    notes: list[str] = []
    findings = diagnose(run_dir, notes=notes)
    err = console(stderr=True)
    for note in notes:
        err.print(f"note: {note}", markup=False, soft_wrap=True)
    if args.json:
        print(json_line([f.to_dict() for f in findings]))
    else:
        print_findings(findings, console())
    return 0


@cmd_doctor.arguments
def _doctor_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", help="run directory")
    p.add_argument("--json", action="store_true", help="print the findings as a JSON list")


@command("explain", help="which columns a table model relies on: permutation importance, per-row attributions")
def cmd_explain(args: argparse.Namespace) -> int:
    from rich.table import Table

    from palaestra.diagnosis.explain import integrated_gradients, permutation_importance
    from palaestra.runs import Run

    run = Run.load(args.run)
    result = permutation_importance(run, args.data, metric=args.metric, repeats=args.repeats, max_rows=args.max_rows,
                                    seed=args.seed, columns=args.column or None)
    if args.rows:
        result["attributions"] = integrated_gradients(run, args.data, rows=args.rows)
    if args.json:
        print(json_line(result))
        return 0
    out = console()
    table = Table(title=f"permutation importance: {result['metric']} ({result['direction']}) "
                        f"{result['baseline']:.4g} on {result['rows']} rows, {result['repeats']} repeats")
    for col in ("column", "importance", "95 % interval"):
        table.add_column(col, justify="left" if col == "column" else "right")
    for c in result["columns"]:
        table.add_row(str(c["column"]), f"{c['importance']:.4g}", f"[{c['ci_low']:.4g}, {c['ci_high']:.4g}]")
    out.print(table)
    for row in result.get("attributions", []):
        shown = sorted(((k, v) for k, v in row["attributions"].items() if v is not None), key=lambda kv: -abs(kv[1]))
        parts = ", ".join(f"{k} {v:+.3g}" for k, v in shown[:8])
        out.print(f"row {row['row']}: {row['prediction']} ({row['explained']} {row['output']:.3g}, baseline "
                  f"{row['baseline_output']:.3g}): {parts}", markup=False, soft_wrap=True)
    return 0


@cmd_explain.arguments
def _explain_args(p: argparse.ArgumentParser) -> None:
    from palaestra.cli import bounded_int

    p.add_argument("run", help="run directory")
    p.add_argument("--data", required=True, help="labelled rows with the training columns")
    p.add_argument("--metric", default="loss", help="the score shuffling worsens: loss (default), accuracy, r2, ...")
    p.add_argument("--repeats", type=bounded_int(2, 1000, "a repeat count"), default=10,
                   help="shuffles per column (the confidence interval comes from their spread)")
    p.add_argument("--max-rows", type=bounded_int(10, 10_000_000, "a row count"), default=2000,
                   help="a random subset of at most this many rows")
    p.add_argument("--column", action="append", help="explain only this column (repeatable)")
    p.add_argument("--rows", type=bounded_int(0, 1000, "a row count"), default=0,
                   help="also attribute the first N rows by integrated gradients (Captum: the 'explain' extra)")
    p.add_argument("--seed", type=bounded_int(0, 2**32 - 1, "a seed"), default=0)
    p.add_argument("--json", action="store_true", help="print one JSON object")
