"""Data-parallel training on ``torch.distributed``: the launcher (with the CLI) and each worker's entry point.

The runtime helpers the pipeline and the loop use (``DistContext``, ``setup``, ``reduce_sum``) live in
``palaestra.training.parallel``.


``palaestra train CONFIG --nproc N`` calls ``launch``, which runs torchrun's elastic agent in this process
(``torch.distributed.run``, the code behind the ``torchrun`` command) to start N workers,
``python -m palaestra.distributed train CONFIG --out RUN ...``. Each worker calls ``pipeline.train`` as a
single process would; ``pipeline.train`` asks ``setup`` for a ``DistContext`` (from torchrun's ``RANK``,
``WORLD_SIZE`` and ``LOCAL_RANK``), and with one it

- shards each epoch's shuffled order across ranks (``data.batching``: rank r takes every world_size-th sample,
  so one step of all ranks together covers the same samples as one step of batch ``batch_size * world_size``),
- wraps the model in ``DistributedDataParallel`` (gradients averaged across ranks),
- averages the training loss across ranks (``reduce_sum``); every rank evaluates the full validation set, so
  validation metrics (and every decision taken from them: early stopping, best epoch, divergence) agree,
- lets only rank 0 print and write the run directory; all ranks load the same checkpoint on ``--resume``.

A rank that fails writes its error to torchrun's error file; the agent stops the other ranks, and ``launch``
prints one line naming the rank and its error (exit code 2 for a user error, 1 otherwise).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import time
import traceback
from pathlib import Path

import torch
import torch.distributed as dist

from palaestra.errors import UserError
from palaestra.training.parallel import env_int

# Messages a collective raises on a surviving rank when a peer died: a consequence, not the cause.
_PEER_FAILURE = ("Connection closed by peer", "Connection reset by peer", "Broken pipe", "NCCL communicator was aborted")


# --- launcher ---------------------------------------------------------------------------------------------


def usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _check_capacity(nproc: int, device_name: str) -> None:
    if nproc < 1:
        raise UserError(f"--nproc must be at least 1 (got {nproc})")
    wants_gpu = device_name.startswith("cuda") or (device_name == "auto" and torch.cuda.is_available())
    if wants_gpu:
        gpus = torch.cuda.device_count()
        if nproc > gpus:
            raise UserError(f"--nproc {nproc} asks for {nproc} GPU processes but this machine has {gpus} GPU(s); "
                            f"use --nproc {max(gpus, 1)} or fewer")
        return
    cpus = usable_cpus()
    if nproc > cpus:
        raise UserError(f"--nproc {nproc} asks for {nproc} processes but this machine has {cpus} CPU core(s); "
                        f"use --nproc {cpus} or fewer")


def torchrun_args(args: argparse.Namespace) -> list[str]:
    """torchrun's options for ``args`` (``--nproc``, ``--nnodes``, ``--node-rank``, ``--rdzv-endpoint``)."""
    nnodes = str(args.nnodes or "1")
    out = ["--nproc-per-node", str(args.nproc), "--nnodes", nnodes, "--max-restarts", "0"]
    if nnodes == "1" and not args.rdzv_endpoint:
        return [*out, "--standalone"]
    if not args.rdzv_endpoint:
        raise UserError(f"--nnodes {nnodes} needs --rdzv-endpoint HOST:PORT (a host every node can reach)")
    if args.node_rank is not None:
        # A fixed node rank: torchrun's static rendezvous, node 0 hosting the store at the endpoint.
        return [*out, "--rdzv-backend", "static", "--rdzv-endpoint", args.rdzv_endpoint, "--node-rank", str(args.node_rank)]
    # Dynamic rendezvous: nodes meet at the endpoint and are given ranks in arrival order.
    return [*out, "--rdzv-backend", "c10d", "--rdzv-endpoint", args.rdzv_endpoint,
            "--rdzv-id", os.environ.get("PALAESTRA_RDZV_ID", "palaestra")]


def worker_args(args: argparse.Namespace, out: Path | None) -> list[str]:
    """The ``palaestra train`` arguments each worker runs with: the user's, minus the launch options."""
    argv = ["train"] + ([args.config] if args.config else [])
    for flag, value in (("--data", args.data), ("--task", args.task)):
        if value:
            argv += [flag, value]
    for target in args.target or []:
        argv += ["--target", target]
    for item in args.overrides:
        argv += ["--set", item]
    if args.resume:
        argv += ["--resume", str(args.resume)]
    elif out is not None:
        argv += ["--out", str(out)]
    return argv


def launch(args: argparse.Namespace) -> int:
    """``palaestra train ... --nproc N``: run N data-parallel workers under torchrun's agent."""
    args.nproc = args.nproc or 1  # one per node is a valid multi-node job
    from palaestra.cli import default_out, overrides_from
    from palaestra.config import load_config
    from palaestra.pipeline import resume_config

    out = None
    # Bad input stops here, once, with the single-process message, rather than on N ranks.
    if args.resume:
        cfg = resume_config(args.config, overrides_from(args), Path(args.resume))
    else:
        cfg = load_config(args.config, overrides_from(args))
        out = Path(args.out) if args.out else default_out(cfg.name if cfg.name != "run" else Path(str(cfg.data.source)).stem)
        if out.exists() and any(out.iterdir()):
            raise UserError(f"run directory {out} already exists; choose another --out, "
                            f"or continue it with --resume {out} --nproc {args.nproc}")
    _check_capacity(args.nproc, cfg.train.device)
    # One thread per process unless the cores allow more (torchrun's default of 1 also warns).
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, usable_cpus() // args.nproc)))
    argv = [*torchrun_args(args), "--module", "palaestra.distributed", *worker_args(args, out)]
    return run_torchrun(argv, resume=f"palaestra train --resume {args.resume or out} --nproc {args.nproc}")


def run_torchrun(argv: list[str], resume: str = "palaestra train --resume RUN --nproc N") -> int:
    """Run torchrun with ``argv`` in this process; a failed rank becomes one plain line and an exit code."""
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import get_args_parser
    from torch.distributed.run import run as torchrun

    if not os.environ.get("PALAESTRA_DEBUG"):
        # The agent logs every failure as a framed report; the line below says the same, plainly.
        for name in [n for n in logging.root.manager.loggerDict if n.startswith("torch.distributed")]:
            logging.getLogger(name).setLevel(logging.CRITICAL)
    try:
        torchrun(get_args_parser().parse_args(argv))
    except ChildFailedError as exc:
        rank, message, code = root_cause(exc.failures)
        others = len(exc.failures) - 1
        also = f" ({others} other rank{'s' if others > 1 else ''} stopped with it)" if others else ""
        print(f"error: rank {rank} failed: {message}{also}", file=sys.stderr)
        return code
    except SignalException as exc:
        print(f"interrupted ({signal.Signals(exc.sigval).name}): every rank was stopped; continue from the last "
              f"checkpoint with: {resume}", file=sys.stderr)
        return 130
    return 0


def root_cause(failures: dict) -> tuple[int, str, int]:
    """(rank, message, exit code) of the failure that caused the others (``ProcessFailure`` values)."""

    def info(failure) -> dict:
        data = failure.error_file_data if isinstance(failure.error_file_data, dict) else {}
        return data.get("palaestra") or {}

    def is_consequence(failure) -> bool:
        if info(failure):
            return bool(info(failure).get("consequence"))
        return failure.exitcode == -signal.SIGTERM  # the agent stopped it after another rank failed

    rank = min(failures, key=lambda r: (is_consequence(failures[r]), failures[r].timestamp, r))
    failure = failures[rank]
    message = failure.message if isinstance(failure.message, str) else failure.message.get("message", "")
    if failure.exitcode < 0:
        message = f"killed by signal {failure.signal_name()} (out of memory?)" if failure.exitcode == -signal.SIGKILL \
            else f"killed by signal {failure.signal_name()}"
    elif not info(failure):
        message = f"exit code {failure.exitcode} (see its output above)"
    return rank, message, 2 if failure.exitcode == 2 else 1


# --- worker -----------------------------------------------------------------------------------------------


def record_failure(exc: BaseException, code: int) -> None:
    """Write ``exc`` to torchrun's per-worker error file, where the launcher reads it."""
    path = os.environ.get("TORCHELASTIC_ERROR_FILE")
    if not path:
        return
    text = str(exc) if isinstance(exc, UserError) else f"{type(exc).__name__}: {exc}"
    consequence = any(s in str(exc) for s in _PEER_FAILURE) or isinstance(exc, getattr(dist, "DistError", ()))
    data = {"message": text.strip()[:2000], "timestamp": int(time.time()),
            "palaestra": {"exitcode": code, "consequence": consequence}}
    Path(path).write_text(json.dumps(data))


def run_worker(fn) -> int:
    """Call ``fn() -> exit code`` as one rank: errors go to the error file, the process group is closed."""
    try:
        return fn() or 0
    except UserError as exc:
        record_failure(exc, 2)
        if not os.environ.get("TORCHELASTIC_ERROR_FILE"):
            print(f"error: rank {os.environ.get('RANK', '?')}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        record_failure(exc, 130)
        return 130
    except Exception as exc:  # noqa: BLE001 - every failure must reach the launcher
        record_failure(exc, 1)
        if not any(s in str(exc) for s in _PEER_FAILURE):
            traceback.print_exc(file=sys.stderr)
        return 1
    finally:
        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()


def worker_main(argv: list[str] | None = None) -> int:
    """One rank of ``palaestra train --nproc N``: rank 0 runs the ``train`` command; the others train quietly."""
    import warnings

    from palaestra import cli

    # UserWarnings (library chatter) stay off the terminal; FutureWarning and DeprecationWarning, the
    # deprecation categories, are left to Python's default filters, not hidden.
    warnings.filterwarnings("ignore", category=UserWarning)
    args = cli.build_parser().parse_args(argv)

    def train() -> int:
        if env_int("RANK") in (None, 0):
            return cli.COMMANDS["train"][2](args)
        from palaestra.pipeline import train as train_run

        train_run(args.config, resume=args.resume, out=args.out, overrides=cli.overrides_from(args), quiet=True)
        return 0

    return run_worker(train)


if __name__ == "__main__":
    from palaestra.distributed import worker_main as _main  # the imported module, not this __main__ copy

    sys.exit(_main())
