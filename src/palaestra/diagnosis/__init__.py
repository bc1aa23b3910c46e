"""The training doctor: plain findings about a finished run, with the evidence and a suggested change."""

from palaestra.diagnosis.doctor import Finding, diagnose
from palaestra.diagnosis.render import findings_html, print_findings

__all__ = ["Finding", "diagnose", "findings_html", "print_findings"]
