"""Findings for people: the terminal (rich) and the report (an HTML fragment)."""

from __future__ import annotations

import html
from collections.abc import Sequence

from palaestra.diagnosis.doctor import Finding


def print_findings(findings: Sequence[Finding], console=None) -> None:
    """Print findings (or one line saying there are none) to a rich console."""
    if console is None:
        from rich.console import Console

        console = Console(highlight=False)
    if not findings:
        console.print("doctor: no problems found")
        return
    console.print(f"doctor: {len(findings)} finding{'s' if len(findings) != 1 else ''}")
    for f in findings:
        console.print(f"  [bold]{f.code}[/]: {f.title}", markup=True, highlight=False)
        console.print(f"    evidence: {f.evidence}", markup=False, soft_wrap=True)
        console.print(f"    try: {f.suggestion}", markup=False, soft_wrap=True)


def findings_html(findings: Sequence[Finding]) -> str:
    """An HTML fragment for ``report.html`` (every value escaped)."""
    if not findings:
        return "<p>No problems found.</p>"
    items = "".join(
        f"<li><b>{html.escape(f.title)}</b> <code>{html.escape(f.code)}</code><br>"
        f"{html.escape(f.evidence)}<br><i>Try:</i> {html.escape(f.suggestion)}</li>" for f in findings)
    return f"<ul>{items}</ul>"
