"""The command line: parses, calls the Python API, prints. Exit codes: 0 ok, 2 user error, 1 internal error.

Stages add their own commands with ``@command`` in their own modules (listed in ``COMMAND_MODULES``); those
modules import heavy dependencies inside the handler, so ``palaestra --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import sys
import time
import traceback
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from palaestra.errors import UserError, one_line, redact, redact_logs

COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]] = {}
# Modules that register further commands (tuning, deployment, doctor, ...). Missing ones are skipped.
COMMAND_MODULES = ["palaestra.tuning.commands", "palaestra.deployment.commands", "palaestra.diagnosis.commands",
                   "palaestra.generative.commands"]


def command(name: str, help: str):
    """Register ``fn(args) -> exit code`` as ``palaestra NAME``; the decorated function's ``.arguments``
    (set with ``@fn.arguments``) adds its options."""

    def deco(fn: Callable[[argparse.Namespace], int]):
        def no_args(p: argparse.ArgumentParser) -> None:
            return None

        COMMANDS[name] = (help, no_args, fn)

        def arguments(setup: Callable[[argparse.ArgumentParser], None]):
            COMMANDS[name] = (help, setup, fn)
            return setup

        fn.arguments = arguments  # type: ignore[attr-defined]
        return fn

    return deco


class Parser(argparse.ArgumentParser):
    """argparse with the CLI's error contract: a bad argument is one plain line on stderr and exit 2."""

    intermixed = False  # True: positionals may follow options (``runs export --mlflow RUN``)
    _mixing = False

    def parse_known_args(self, args=None, namespace=None):  # type: ignore[override]
        if self.intermixed and not self._mixing:  # (argparse's intermixed parser calls this one again)
            self._mixing = True
            try:
                return self.parse_known_intermixed_args(args, namespace)
            finally:
                self._mixing = False
        return super().parse_known_args(args, namespace)

    def error(self, message: str):  # type: ignore[override]
        sys.stderr.write(f"error: {self.prog}: {one_line(message)} (see {self.prog} --help)\n")
        sys.exit(2)


def finite_float(text: str) -> float:
    """An argparse type: a float that is a number (not nan, not inf)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def bounded_int(low: int, high: int, what: str = "a whole number"):
    """An argparse type: an int in [low, high], so a typo cannot ask for a billion samples or processes."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {one_line(repr(text), 80)}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"expected {what} between {low} and {high}, got {value}")
        return value

    parse.__name__ = what  # argparse names the type in its messages
    return parse


def port(text: str) -> int:
    """An argparse type: a TCP port, 0-65535 (0: any free port)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"a port is between 0 and 65535, got {value}")
    return value


def json_line(obj: Any) -> str:
    """``--json`` output: strict JSON (NaN and infinities as null), which every JSON reader accepts."""
    from palaestra.artifacts import finite_json

    return json.dumps(finite_json(obj), allow_nan=False)


def console(stderr: bool = False):
    from rich.console import Console

    return Console(stderr=stderr, highlight=False)


def add_train_options(p: argparse.ArgumentParser) -> None:
    """Options shared by ``train`` and ``tune``."""
    p.add_argument("config", nargs="?", help="YAML config file (optional: every field has a default)")
    p.add_argument("--data", help="data file (.csv .parquet .npz) or built-in dataset name")
    p.add_argument("--target", action="append", default=None,
                   help="target column (repeat for several targets trained together)")
    p.add_argument("--task", help="classification | regression | ... (default: inferred)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set optimizer.lr=0.01 (repeatable)")


def overrides_from(args: argparse.Namespace) -> list[str]:
    items = list(args.overrides)
    if args.data:
        items.append(f"data.source={json.dumps(args.data)}")
    if args.target:
        target = args.target[0] if len(args.target) == 1 else args.target
        items.append(f"data.target={json.dumps(target)}")
    if args.task:
        items.append(f"data.task={args.task}")
    return items


def default_out(name: str) -> Path:
    from palaestra.index import runs_root

    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = runs_root() / f"{name}-{stamp}"
    out, i = base, 1
    while out.exists():
        out, i = Path(f"{base}-{i}"), i + 1
    return out


def print_metrics(metrics: dict[str, Any], title: str, out=None) -> None:
    """A metric table; with several targets, one row per target and metric (``price mae``)."""
    from rich.table import Table

    table = Table(title=title, show_header=True)
    table.add_column("metric")
    table.add_column("value", justify="right")
    rows = [(k, v) for k, v in metrics.items() if not isinstance(v, dict)]
    rows += [(f"{k} {name}", value) for k, v in metrics.items() if isinstance(v, dict) for name, value in v.items()]
    for k, v in rows:
        if isinstance(v, float):
            table.add_row(k, f"{v:.4f}")
        elif isinstance(v, int) and not isinstance(v, bool):
            table.add_row(k, str(v))
    (out or console()).print(table)


# --- train -------------------------------------------------------------------------------------------------


@command("train", help="train, evaluate on the test split, write a run directory")
def cmd_train(args: argparse.Namespace) -> int:
    from palaestra.config import load_config
    from palaestra.index import run_name
    from palaestra.pipeline import train

    if (args.nproc and args.nproc > 1) or args.nnodes not in (None, "1"):
        from palaestra.distributed import launch

        return launch(args)
    out_console = console()
    if args.resume:
        run = train(args.config, resume=args.resume, overrides=overrides_from(args), console=console(stderr=True))
    else:
        cfg = load_config(args.config, overrides_from(args))
        out = Path(args.out) if args.out else default_out(run_name(cfg))
        run = train(cfg, out=out, console=console(stderr=True))
    if run.metrics.get("stop_reason"):
        out_console.print(f"stopped: {run.metrics['stop_reason']}")
    print_metrics(run.metrics.get("test", {}), f"test metrics ({run.spec.task}, {run.metrics['epochs']} epochs)", out_console)
    try:  # the training doctor's findings (computed when the run directory was written)
        from palaestra.diagnosis import print_findings

        if getattr(run, "findings", None) is not None:
            print_findings(run.findings, out_console)
    except ImportError:
        pass
    out_console.print(f"run: {run.path}")
    if (run.path / "report.html").is_file():
        out_console.print(f"report: {run.path / 'report.html'}")
    return 0


@cmd_train.arguments
def _train_args(p: argparse.ArgumentParser) -> None:
    add_train_options(p)
    p.add_argument("--out", help="run directory to create (default: runs/NAME-TIMESTAMP)")
    p.add_argument("--resume", metavar="RUN", help="continue an interrupted run from its last checkpoint")
    p.add_argument("--nproc", type=bounded_int(1, 1024, "a process count"), default=None, help="data-parallel processes (torch.distributed)")
    p.add_argument("--nnodes", default=None, help="passed to torchrun for multi-node runs")
    p.add_argument("--node-rank", default=None, help="passed to torchrun")
    p.add_argument("--rdzv-endpoint", default=None, help="passed to torchrun (HOST:PORT)")


# --- evaluate / predict -------------------------------------------------------------------------------------


@command("evaluate", help="metrics of a trained run on new labelled data")
def cmd_evaluate(args: argparse.Namespace) -> int:
    from palaestra.runs import Run

    run = Run.load(args.run)
    metrics = run.evaluate(args.data)
    if args.json:
        print(json_line(metrics))
    else:
        print_metrics(metrics, f"{args.run} on {args.data}")
    return 0


@cmd_evaluate.arguments
def _evaluate_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", help="run directory")
    p.add_argument("--data", required=True, help="labelled data with the training columns")
    p.add_argument("--json", action="store_true", help="print one JSON object")


@command("predict", help="write predictions for new data to a CSV")
def cmd_predict(args: argparse.Namespace) -> int:
    from palaestra.artifacts import atomic_write
    from palaestra.runs import Run

    run = Run.load(args.run)
    frame = run.predict(args.data)
    atomic_write(args.out, frame.to_csv(index=False))
    console(stderr=True).print(f"{len(frame)} predictions written to {args.out}")
    return 0


@cmd_predict.arguments
def _predict_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", help="run directory")
    p.add_argument("--data", required=True, help="rows (or arrays) with the training columns")
    p.add_argument("--out", required=True, help="CSV file to write")


# --- runs / datasets -----------------------------------------------------------------------------------------


@command("runs", help="list runs from the run index (show RUN, compare RUN RUN, export --mlflow RUN)")
def cmd_runs(args: argparse.Namespace) -> int:
    from palaestra import runs_view as view
    from palaestra.index import RunIndex

    out = console()
    if args.action == "show":
        if len(args.paths) != 1:
            raise UserError("palaestra runs show RUN")
        run = view.resolve_run(args.paths[0])
        if args.json:
            print(json_line(view.summary(run)))
        else:
            view.show(run, out)
        return 0
    if args.action == "compare":
        if len(args.paths) < 2:
            raise UserError("palaestra runs compare RUN RUN [...]")
        runs = [view.resolve_run(p) for p in args.paths]
        if args.json:
            print(json_line(view.compare(runs, None)))
        else:
            view.compare(runs, out)
        return 0
    if args.action == "export":
        if not args.mlflow:
            raise UserError("palaestra runs export --mlflow RUN [RUN...]: name the tracker to export to (--mlflow)")
        if not args.paths:
            raise UserError("palaestra runs export --mlflow RUN [RUN...]")
        results = []
        for p in args.paths:
            run_id, new = view.export_mlflow(view.resolve_run(p))
            results.append({"run": p, "mlflow_run_id": run_id, "exported": new})
            if not args.json:
                out.print(f"{p}: {'exported to' if new else 'already in'} MLflow as run {run_id}", markup=False,
                          soft_wrap=True)
        if args.json:
            print(json_line(results))
        return 0
    index = RunIndex.default()
    runs = index.list()
    if args.json:
        print(json_line(runs))
    elif not runs:
        out.print(view.empty_hint(index.db), markup=False, soft_wrap=True)
    else:
        out.print(view.list_table(runs, index.db))
    return 0


@cmd_runs.arguments
def _runs_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", nargs="?", choices=["list", "show", "compare", "export"], default="list")
    p.add_argument("paths", nargs="*")
    p.add_argument("--mlflow", action="store_true",
                   help="export: backfill finished runs into MLflow ($MLFLOW_TRACKING_URI, else runs/mlruns)")
    p.intermixed = True
    p.add_argument("--json", action="store_true", help="JSON on stdout: a list of runs, or one object (show, compare)")


@command("datasets", help="the built-in datasets")
def cmd_datasets(args: argparse.Namespace) -> int:
    from rich.table import Table

    from palaestra.data.datasets import BUILTINS

    table = Table(title="built-in datasets")
    for col in ("name", "task", "target", "description"):
        table.add_column(col)
    for name, b in BUILTINS.items():
        table.add_row(name, b.task, b.target, b.description)
    console().print(table)
    return 0


# --- entry point ----------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    for module in COMMAND_MODULES:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name is None or not module.startswith(exc.name):
                raise
    parser = Parser(prog="palaestra", description="Train, evaluate, tune and deploy deep-learning models.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, (help_text, setup, _) in COMMANDS.items():
        setup(sub.add_parser(name, help=help_text, description=help_text))
    return parser


def main(argv: list[str] | None = None) -> int:
    # UserWarnings (library chatter) stay off the terminal; FutureWarning and DeprecationWarning, the
    # deprecation categories, are left to Python's default filters, not hidden.
    warnings.filterwarnings("ignore", category=UserWarning)
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = COMMANDS[args.command][2]
    err = console(stderr=True)
    redact_logs()  # log lines (optuna, sqlalchemy, uvicorn) mask URL credentials as messages do
    try:
        return handler(args) or 0
    except UserError as exc:
        code = getattr(exc, "exit_code", 2)  # an interrupted run: 130 (Ctrl-C) or 143 (SIGTERM), not bad input
        err.print(f"{'interrupted' if code != 2 else 'error'}: {one_line(str(exc))}", markup=False, soft_wrap=True)
        return code
    except KeyboardInterrupt:
        err.print("interrupted", markup=False)
        return 130
    except (MemoryError, RuntimeError) as exc:
        if not _out_of_memory(exc):
            return _internal_error(exc, err)
        # What the config asked for (sizes, lengths) exceeds this machine: the user's to change, not a bug.
        err.print(f"error: out of memory ({one_line(str(exc), 200)}): the config asks for more than this machine "
                  f"has; lower its sizes (data.max_length, train.batch_size, model widths)", markup=False, soft_wrap=True)
        return 2
    except Exception as exc:  # an internal error: a bug, reported with its traceback
        return _internal_error(exc, err)


def _out_of_memory(exc: BaseException) -> bool:
    """numpy's and Python's MemoryError, torch's OutOfMemoryError and its CPU allocator's failure."""
    return isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError" \
        or "can't allocate memory" in str(exc) or "DefaultCPUAllocator" in str(exc)


def _internal_error(exc: BaseException, err) -> int:
    if os.environ.get("PALAESTRA_DEBUG"):
        raise exc
    err.print(f"internal error: {type(exc).__name__}: {one_line(str(exc))}", markup=False, soft_wrap=True)
    sys.stderr.write(redact("".join(traceback.format_exception(exc))))
    return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
