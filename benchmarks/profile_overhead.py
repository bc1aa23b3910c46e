"""Where Palaestra's loop overhead goes: each per-step and per-epoch extra timed on its own (CPU time, best of
several), plus a cProfile of one ``fit`` sorted by cumulative time.

    python -m benchmarks.profile_overhead [--quick]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import tempfile
import time
from typing import Any

import torch

from benchmarks import common as c


def _best(fn, repeats: int = 5) -> tuple[float, float]:
    """(CPU ms, wall ms) of one call, best of ``repeats``."""
    cpu, wall = [], []
    for _ in range(repeats):
        w, t = time.perf_counter(), time.process_time()
        fn()
        cpu.append(time.process_time() - t)
        wall.append(time.perf_counter() - w)
    return 1e3 * min(cpu), 1e3 * min(wall)


def _per_call_us(fn, n: int = 5000) -> float:
    started = time.process_time()
    for _ in range(n):
        fn()
    return 1e6 * (time.process_time() - started) / n


def run(quick: bool = True, threads: int = 1) -> dict[str, Any]:
    import palaestra.pipeline as pipeline
    from palaestra.data.batching import TensorBatcher
    from palaestra.evaluation.metrics import MetricSet
    from palaestra.training import callbacks as cb
    from palaestra.training.checkpoint import save_checkpoint
    from palaestra.training.loop import autocast, evaluate, grad_norms

    torch.set_num_threads(threads)
    case = c.cases(quick)[0]
    cfg = case.config(epochs=2)
    profile = cProfile.Profile()
    original = pipeline.fit

    def profiled_fit(*args, **kwargs):
        profile.enable()
        try:
            return original(*args, **kwargs)
        finally:
            profile.disable()

    with c.isolated_runs() as tmp:
        pipeline.fit = profiled_fit
        try:
            result = c.run_palaestra(cfg, case.raw(), tmp)
        finally:
            pipeline.fit = original
    run_, cpu = result["run"], torch.device("cpu")
    state, data = run_.state, run_.data
    val = TensorBatcher(data.val.tensors, 1024, shuffle=False)
    metrics = MetricSet(data.spec.task, data.spec.n_outputs, classes=data.spec.classes)
    loss_fn = torch.nn.CrossEntropyLoss()
    ckpt = tempfile.mkdtemp(prefix="palaestra-bench-ckpt-")
    rows = []
    for name, fn in {
        "validation pass, loss only": lambda: evaluate(run_.model, val, loss_fn, None, cpu),
        "validation pass + 7 torchmetrics": lambda: evaluate(run_.model, val, loss_fn, metrics, cpu),
        "per-parameter grad norms": lambda: grad_norms(run_.model),
        "best-weights snapshot": state.snapshot_best,
        "checkpoint (safetensors + JSON, fsync'd)": lambda: save_checkpoint(ckpt, state),
    }.items():
        cpu_ms, wall_ms = _best(fn)
        rows.append([f"per epoch: {name}", f"{cpu_ms:.2f} ms", f"{wall_ms:.2f} ms"])
    loss, total = torch.tensor(0.5), torch.zeros(())

    def autocast_fp32():
        with autocast(cpu, "fp32"):
            pass

    progress = cb.Progress(10, console=c.null_console())
    progress.on_train_begin(state)
    per_step = {
        "loss accumulation: sum.add_(loss, alpha=n) (now)": lambda: total.add_(loss.detach(), alpha=32),
        "loss accumulation: sum += loss.float() * n (before)": lambda: total.__iadd__(loss.detach().float() * 32),
        "loss.item() (what a plain loop does)": loss.item,
        "autocast context (fp32: nullcontext)": autocast_fp32,
        "Progress.on_batch_end": lambda: progress.on_batch_end(state, loss),
        "LRSchedule.on_batch_end": lambda: cb.LRSchedule.on_batch_end(cb.LRSchedule(), state, loss),
    }
    timed = {name: _per_call_us(fn) for name, fn in per_step.items()}
    progress.on_train_end(state)  # the live display captures stdout while it runs
    rows += [[f"per step: {name}", f"{us:.2f} µs", "–"] for name, us in timed.items()]
    text = io.StringIO()
    pstats.Stats(profile, stream=text).sort_stats("cumulative").print_stats(25)
    md = c.markdown_table(["piece", "CPU", "wall"], rows)
    return {"markdown": md, "cprofile": text.getvalue(), "steps_per_epoch": len(state.batcher)}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--full", action="store_true", help="the full-size table case (default: the quick one)")
    args = ap.parse_args(argv)
    out = run(quick=not args.full)
    print(out["markdown"])
    print()
    print(out["cprofile"])


if __name__ == "__main__":
    main()
