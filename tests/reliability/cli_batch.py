"""Run many ``palaestra`` command lines in ONE fresh process, each through the real entry point ``cli.main``.

Usage: ``python cli_batch.py`` with a JSON list of ``{"id", "argv", "cwd"}`` on stdin; prints a JSON object
``{id: {"rc", "stdout", "stderr"}}``. Importing torch takes seconds; paying it once for the whole
malformed-input corpus keeps the corpus inside the test budget, while every case still goes through
argument parsing, the command handler and the error-to-exit-code mapping exactly as ``python -m palaestra``.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys


def run_case(argv: list[str], cwd: str) -> dict:
    from palaestra.cli import main

    out, err = io.StringIO(), io.StringIO()
    here = os.getcwd()
    os.chdir(cwd)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                rc = main(argv)
            except SystemExit as exc:  # argparse errors
                rc = exc.code if isinstance(exc.code, int) else 1
            except BaseException as exc:  # what would escape `python -m palaestra` as a traceback
                import traceback

                traceback.print_exc(file=err)
                rc = f"escaped: {type(exc).__name__}"
    finally:
        os.chdir(here)
    return {"rc": rc, "stdout": out.getvalue(), "stderr": err.getvalue()}


def main() -> int:
    cases = json.load(sys.stdin)
    results = {c["id"]: run_case(c["argv"], c["cwd"]) for c in cases}
    sys.stdout.write(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
