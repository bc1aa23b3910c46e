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
