"""Data path: Palaestra's in-memory index batching vs ``DataLoader(TensorDataset)`` on the same tensors.

    python -m benchmarks.data_path [--quick] [--repeats N]

One epoch of batches is drawn and touched (no model); the time is per epoch, interleaved across contenders.
"""

from __future__ import annotations

import time
from typing import Any

import torch
from torch.utils.data import DataLoader, TensorDataset

from benchmarks import common as c


def _epoch(batches) -> float:
    started = time.perf_counter()
    n = 0
    for batch in batches:
        n += len(batch[-1])
    return time.perf_counter() - started


def run(quick: bool = False, repeats: int = 5, threads: int = 1) -> dict[str, Any]:
    from palaestra.data.batching import LoaderBatcher, TensorBatcher

    torch.set_num_threads(threads)
    case = c.cases(quick)[0]  # the synthetic table: (numeric, categorical, target) tensors
    tensors = c.prepare(case.config(), case.raw()).data.train.tensors
    n = len(tensors[-1])
    rows, results = [], []
    for bs in (32, 256):
        makers = {
            "TensorBatcher (index slicing)": lambda bs=bs: TensorBatcher(tensors, bs, shuffle=True, seed=1),
            "LoaderBatcher (DataLoader, same order)": lambda bs=bs: LoaderBatcher(tensors, bs, shuffle=True, seed=1),
            "DataLoader(TensorDataset, shuffle=True)": lambda bs=bs: DataLoader(TensorDataset(*tensors), batch_size=bs,
                                                                                shuffle=True),
        }
        times: dict[str, list[float]] = {k: [] for k in makers}
        for make in makers.values():
            _epoch(make())  # warm-up
        for _ in range(repeats):
            for name, make in makers.items():
                times[name].append(_epoch(make()))
        base = c.summary(times["DataLoader(TensorDataset, shuffle=True)"])["median"]
        for name, t in times.items():
            s = c.summary(t)
            results.append({"batch_size": bs, "contender": name, "seconds": s})
            rows.append([bs, name, c.fmt_time(s), f"{n / s['median']:,.0f}", f"{base / s['median']:.1f}×"])
    md = c.markdown_table(["batch", "batching", "s per epoch, median (min–max)", "samples/s",
                           "speed-up vs DataLoader"], rows)
    return {"results": results, "rows": n, "markdown": md}


def main(argv: list[str] | None = None) -> None:
    c.section_main(run, __doc__, 5, argv)


if __name__ == "__main__":
    main()
