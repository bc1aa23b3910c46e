"""Fast paths on this CPU: which of torch.compile, foreach/fused optimizers, channels_last and thread counts
beat the plain eager loop (same model, data, batch order and epochs; interleaved repeats).

    python -m benchmarks.fast_paths [--quick] [--repeats N]
"""

from __future__ import annotations

import sys
import time
from typing import Any

import torch

from benchmarks import common as c

EAGER = "eager (torch defaults: for-loop AdamW, NCHW)"


def _variants(case_name: str, threads: int) -> dict[str, dict[str, Any]]:
    # The baseline is the loop as torch's defaults give it: for-loop AdamW, NCHW convolutions, one thread.
    # Each other row changes one thing (Palaestra's defaults are fused AdamW and, for CNNs, channels_last).
    eager = {"optimizer_kw": {"fused": None}, "channels_last": False}
    v: dict[str, dict[str, Any]] = {
        EAGER: eager,
        "AdamW foreach=True": {**eager, "optimizer_kw": {"fused": None, "foreach": True}},
        "AdamW fused=True": {**eager, "optimizer_kw": {"fused": True}},
        "torch.compile (steady state)": {**eager, "compile_model": True},
        f"{2 * threads} threads": {**eager, "threads": 2 * threads},
    }
    if case_name.startswith("cnn"):
        v["channels_last"] = {**eager, "channels_last": True}
        v["fused AdamW + channels_last (Palaestra's defaults)"] = {"optimizer_kw": {"fused": True}, "channels_last": True}
    return v


def _run(prepared: c.Prepared, variant: dict[str, Any], threads: int, epochs: int | None = None) -> dict:
    torch.set_num_threads(variant.get("threads", threads))
    p = prepared
    cfg = p.config.model_copy(update={"train": p.config.train.model_copy(
        update={"channels_last": variant.get("channels_last", False)})})
    p = c.Prepared(cfg, p.data)
    try:
        return c.run_plain(p, epochs, optimizer_kw=variant.get("optimizer_kw"),
                           compile_model=variant.get("compile_model", False))
    finally:
        torch.set_num_threads(threads)


def run(quick: bool = False, repeats: int = 3, threads: int = 1) -> dict[str, Any]:
    torch.set_num_threads(threads)
    rows, results = [], []
    for case in c.cases(quick)[:2]:
        print(f"fast paths: {case.name} ...", file=sys.stderr, flush=True)
        prepared = c.prepare(case.config(), case.raw())
        variants = _variants(case.name, threads)
        compile_seconds = None
        for variant in variants.values():  # warm-up; the compiled variant's first run pays compilation
            t = time.perf_counter()
            _run(prepared, variant, threads, epochs=1)
            if variant.get("compile_model"):
                compile_seconds = time.perf_counter() - t
        eager_one = c.run_plain(prepared, 1)["seconds"]
        times: dict[str, list[dict]] = {k: [] for k in variants}
        for _ in range(repeats):
            for name, variant in variants.items():
                times[name].append(_run(prepared, variant, threads))
        base = times[EAGER]
        ref_model = base[0]["model"]
        for name, rs in times.items():
            wall, cpu = c.summary([r["seconds"] for r in rs]), c.summary([r["cpu"] for r in rs])
            ratio = c.summary([r["seconds"] / b["seconds"] for r, b in zip(rs, base, strict=True)])
            diff = c.max_weight_diff(ref_model, rs[0]["model"])
            note = ""
            if "compile" in name and compile_seconds is not None:
                note = f"first 1-epoch run {compile_seconds:.1f} s vs eager {eager_one:.2f} s (compilation)"
            results.append({"case": case.name, "variant": name, "wall": wall, "cpu": cpu, "ratio": ratio,
                            "max_weight_diff": diff, "note": note})
            rows.append([case.name, name, c.fmt_time(wall), f"{ratio['median']:.3f} ({ratio['min']:.2f}–"
                         f"{ratio['max']:.2f})", c.fmt_time(cpu), f"{diff:.1g}", note])
    md = c.markdown_table(["case", "variant", "loop wall s, median (min–max)", "÷ eager (paired)",
                           "loop CPU s", "max abs Δw vs eager", "note"], rows)
    return {"results": results, "markdown": md}


def main(argv: list[str] | None = None) -> None:
    c.section_main(run, __doc__, 3, argv)


if __name__ == "__main__":
    main()
