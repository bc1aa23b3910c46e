"""Loop overhead: plain PyTorch vs Palaestra vs Lightning, interleaved in one process; peak memory of each
in its own subprocess.

    python -m benchmarks.loop_overhead [--quick] [--repeats N]
    python -m benchmarks.loop_overhead --memory CASE CONTENDER   # one contender, prints JSON (used internally)
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch

from benchmarks import common as c

CONTENDERS = ("plain", "palaestra", "lightning")


def _one(name: str, case: c.Case, prepared: c.Prepared, workdir: Path, epochs: int | None = None) -> dict:
    if name == "plain":
        return c.run_plain(prepared, epochs)
    if name == "palaestra":
        return c.run_palaestra(case.config(epochs), case.raw(), workdir)
    return c.run_lightning(prepared, epochs, workdir)


def measure(case: c.Case, repeats: int, workdir: Path, contenders=CONTENDERS, warmup: bool = True) -> dict[str, Any]:
    """Interleaved rounds (plain, palaestra, lightning, plain, ...) after one unmeasured warm-up round."""
    prepared = c.prepare(case.config(), case.raw())
    for name in contenders if warmup else ():  # warm-up: imports, allocator, first-call paths
        _one(name, case, prepared, workdir, epochs=1)
    runs: dict[str, list[dict]] = {n: [] for n in contenders}
    for _ in range(repeats):
        for name in contenders:
            r = _one(name, case, prepared, workdir)
            runs[name].append(r)
    same = {n: c.max_weight_diff(runs["plain"][0]["model"], runs[n][0]["model"]) for n in contenders}
    result: dict[str, Any] = {"case": case.name, "description": case.description, "epochs": case.epochs,
                              "steps_per_epoch": -(-len(prepared.data.train) // case.batch_size),
                              "repeats": repeats, "max_weight_diff_vs_plain": same}
    for n in contenders:
        result[n] = {"wall": c.summary([r["seconds"] for r in runs[n]]),
                     "cpu": c.summary([r["cpu"] for r in runs[n]]),
                     "total": c.summary([r["total"] for r in runs[n]])}
        if n != "plain":
            # Paired per-round ratios: each round's contenders ran back to back under the same machine load.
            result[n]["ratio_wall"] = c.summary([r["seconds"] / p["seconds"] for r, p in zip(runs[n], runs["plain"], strict=True)])
            result[n]["ratio_cpu"] = c.summary([r["cpu"] / p["cpu"] for r, p in zip(runs[n], runs["plain"], strict=True)])
    return result


def memory(case_name: str, quick: bool, threads: int) -> dict[str, float]:
    """Run each contender once in a fresh interpreter and read its peak RSS."""
    out = {}
    for name in CONTENDERS:
        cmd = [sys.executable, "-m", "benchmarks.loop_overhead", "--memory", case_name, name,
               "--threads", str(threads)] + (["--quick"] if quick else [])
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900,
                              cwd=Path(__file__).resolve().parents[1])
        if proc.returncode != 0:
            raise RuntimeError(f"memory run {case_name}/{name} failed:\n{proc.stderr[-2000:]}")
        out[name] = json.loads(proc.stdout.strip().splitlines()[-1])
    return out


def _memory_child(case_name: str, name: str, quick: bool) -> None:
    case = next(k for k in c.cases(quick) if k.name == case_name)
    with c.isolated_runs() as tmp:
        # Everything a contender shares (imports, the data in memory) is loaded before the baseline reading.
        import lightning  # noqa: F401

        import palaestra.pipeline  # noqa: F401

        prepared = c.prepare(case.config(), case.raw())
        before = c.current_rss_mb()
        exact = c.reset_peak_rss()
        _one(name, case, prepared, tmp)
        peak = c.peak_rss_mb()
        print(json.dumps({"peak_rss_mb": peak, "baseline_rss_mb": before, "peak_minus_baseline_mb": peak - before,
                          "peak_reset": exact}))


def table(results: list[dict], mem: dict[str, dict] | None) -> str:
    rows = []
    for r in results:
        for n in (k for k in CONTENDERS if k in r):
            s = r[n]
            ratio = "1" if n == "plain" else (f"{s['ratio_wall']['median']:.3f} "
                                              f"({s['ratio_wall']['min']:.2f}–{s['ratio_wall']['max']:.2f})")
            ratio_cpu = "1" if n == "plain" else (f"{s['ratio_cpu']['median']:.3f} "
                                                  f"({s['ratio_cpu']['min']:.2f}–{s['ratio_cpu']['max']:.2f})")
            m = (mem or {}).get(r["case"], {}).get(n)
            mem_cell = f"{m['peak_rss_mb']:.0f} (+{m['peak_minus_baseline_mb']:.0f})" if m else "–"
            total = f"{s['total']['median']:.2f}" if n == "palaestra" else "–"
            rows.append([r["case"], n, c.fmt_time(s["wall"]), ratio, c.fmt_time(s["cpu"]), ratio_cpu, total,
                         mem_cell, f"{r['max_weight_diff_vs_plain'][n]:.1g}"])
    return c.markdown_table(["case", "contender", "loop wall s, median (min–max)", "÷ plain (wall, paired)",
                             "loop CPU s, median (min–max)", "÷ plain (CPU, paired)", "Palaestra total s",
                             "peak RSS MB (+ over baseline)", "max abs Δw vs plain"], rows)


def run(quick: bool = False, repeats: int = 5, threads: int = 1, with_memory: bool = True,
        only: list[str] | None = None) -> dict[str, Any]:
    torch.set_num_threads(threads)
    results = []
    with c.isolated_runs() as tmp:
        for case in c.cases(quick):
            if only and case.name not in only:
                continue
            print(f"loop overhead: {case.name} ...", file=sys.stderr, flush=True)
            results.append(measure(case, repeats, tmp))
    mem = {}
    if with_memory:
        for r in results:
            print(f"memory: {r['case']} ...", file=sys.stderr, flush=True)
            mem[r["case"]] = memory(r["case"], quick, threads)
    return {"results": results, "memory": mem, "markdown": table(results, mem), "threads": threads}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--no-memory", action="store_true")
    ap.add_argument("--only", nargs="*")
    ap.add_argument("--memory", nargs=2, metavar=("CASE", "CONTENDER"))
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.memory:
        _memory_child(*args.memory, args.quick)
        return
    out = run(args.quick, args.repeats, args.threads, not args.no_memory, args.only)
    print(out["markdown"])


if __name__ == "__main__":
    main()
