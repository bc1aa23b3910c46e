"""Where Palaestra's loop overhead goes, read from ``torch.profiler``.

For each loop-overhead case: the plain loop's epoch and Palaestra's epoch timed without a profiler (median of
interleaved repeats), then one Palaestra run under ``torch.profiler.profile``. The loop labels its regions
(``palaestra.train_batches`` and ``palaestra.validate`` once per epoch, and every callback hook as
``palaestra.<Callback>.<hook>``), so the profile splits each epoch into the steps and the per-epoch extras.
The profiler adds its own cost to every recorded op, so the labelled times are read as shares, beside the
unprofiled gap they have to explain.

    python -m benchmarks.profile_overhead [--quick] [--repeats N] [--out FILE]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path
from typing import Any

import torch
from torch.profiler import ProfilerActivity, profile

from benchmarks import common as c

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "profile_overhead.txt"


def _case(case: c.Case, repeats: int, workdir: Path) -> dict[str, Any]:
    prepared = c.prepare(case.config(), case.raw())
    raw = case.raw()
    c.run_plain(prepared, 1)  # warm-up
    c.run_palaestra(case.config(epochs=1), raw, workdir)
    plain, ours = [], []
    for _ in range(repeats):
        plain.append(c.run_plain(prepared)["seconds"])
        ours.append(c.run_palaestra(case.config(), raw, workdir)["seconds"])
    epochs = case.epochs
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        result = c.run_palaestra(case.config(), raw, workdir)
    events = prof.key_averages()
    labelled = sorted((e for e in events if e.key.startswith("palaestra.")), key=lambda e: -e.cpu_time_total)
    batches = next((e.cpu_time_total for e in labelled if e.key == "palaestra.train_batches"), 0.0)
    rows, rest, rest_calls = [], 0.0, 0
    for e in labelled:
        per_epoch = e.cpu_time_total / 1e3 / epochs
        if per_epoch < 0.05:
            rest, rest_calls = rest + per_epoch, rest_calls + e.count
            continue
        share = "" if e.key == "palaestra.train_batches" else f"{100 * e.cpu_time_total / batches:.1f} %"
        rows.append([e.key, e.count, f"{per_epoch:.2f}", share])
    rows.append(["every other hook (each < 0.05 ms per epoch)", rest_calls, f"{rest:.2f}", ""])
    plain_epoch = 1e3 * statistics.median(plain) / epochs
    ours_epoch = 1e3 * statistics.median(ours) / epochs
    loss_only, with_metrics = _validation_split(result["run"], case.batch_size)
    head = (f"### {case.name}: {case.description}, {epochs} epochs, "
            f"{-(-len(prepared.data.train) // case.batch_size)} steps/epoch\n\n"
            f"Unprofiled, median of {repeats} interleaved runs: plain loop {plain_epoch:.1f} ms/epoch, Palaestra "
            f"{ours_epoch:.1f} ms/epoch, gap {ours_epoch - plain_epoch:+.1f} ms/epoch "
            f"({ours_epoch / plain_epoch:.3f}x). Unprofiled validation pass (best of 5): {loss_only:.2f} ms with the "
            f"loss alone, {with_metrics:.2f} ms with the seven metrics.\n\n")
    table = c.markdown_table(["region (torch.profiler label)", "calls", "CPU ms per epoch (profiled)",
                              "÷ training steps"], rows)
    ops = events.table(sort_by="self_cpu_time_total", row_limit=15)
    return {"case": case.name, "plain_ms_per_epoch": plain_epoch, "palaestra_ms_per_epoch": ours_epoch,
            "regions": [{"label": r[0], "calls": r[1], "ms_per_epoch": float(r[2])} for r in rows],
            "markdown": head + table, "ops": ops}


def _validation_split(run, batch_size: int) -> tuple[float, float]:
    """(ms, ms): one validation pass with the loss alone and with Palaestra's metric set, unprofiled."""
    from palaestra.data.batching import TensorBatcher
    from palaestra.evaluation.metrics import MetricSet
    from palaestra.training.loop import evaluate

    cpu, spec = torch.device("cpu"), run.data.spec
    val = TensorBatcher(run.data.val.tensors, max(batch_size, 1024), shuffle=False)
    metrics = MetricSet(spec.task, spec.n_outputs, classes=spec.classes)
    loss_fn = torch.nn.CrossEntropyLoss()
    return (c.best_ms(lambda: evaluate(run.model, val, loss_fn, None, cpu)),
            c.best_ms(lambda: evaluate(run.model, val, loss_fn, metrics, cpu)))


def run(quick: bool = False, repeats: int = 5, threads: int = 1) -> dict[str, Any]:
    torch.set_num_threads(threads)
    out = []
    with c.isolated_runs() as tmp:
        for case in c.cases(quick):
            print(f"profile: {case.name} ...", file=sys.stderr, flush=True)
            out.append(_case(case, repeats, Path(tmp)))
    md = "\n\n".join(r["markdown"] for r in out)
    return {"cases": out, "markdown": md}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small data, few epochs")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", type=Path, default=None, help=f"also write the report here (e.g. {DEFAULT_OUT})")
    args = ap.parse_args(argv)
    result = run(args.quick, args.repeats)
    text = result["markdown"] + "\n\n" + "\n\n".join(
        f"#### {r['case']}: top ops by self CPU time (torch.profiler)\n\n```\n{r['ops']}\n```" for r in result["cases"])
    print(text)
    if args.out is not None:
        args.out.write_text(f"{c.machine_line(c.machine())}\n\n{text}\n", encoding="utf-8")


if __name__ == "__main__":
    main()
