"""Inference: rows per second of ``run.predict`` (raw rows in, labels and probabilities out) vs calling the
bare model on already-preprocessed tensors, at batch 1 and 1024.

    python -m benchmarks.inference [--quick] [--repeats N]
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

from benchmarks import common as c


def _rate(fn, rows: int, min_seconds: float) -> float:
    """Rows per second of ``fn`` called until ``min_seconds`` have passed (at least 3 calls)."""
    fn()  # warm-up
    calls, started = 0, time.perf_counter()
    while calls < 3 or time.perf_counter() - started < min_seconds:
        fn()
        calls += 1
    return rows * calls / (time.perf_counter() - started)


def run(quick: bool = False, repeats: int = 5, threads: int = 1) -> dict[str, Any]:
    torch.set_num_threads(threads)
    case = c.cases(quick)[0]
    frame = case.raw()
    with c.isolated_runs() as tmp:
        run_ = c.run_palaestra(case.config(epochs=1), frame, tmp)["run"]
    model = run_.model.eval()
    features = frame.drop(columns=["label"])
    # Preprocessed once, outside the timing: the bare model's input.
    tensors = tuple(torch.from_numpy(np.ascontiguousarray(a)) for a in run_.preprocessor.inputs(features.iloc[:1024]))
    min_seconds = 0.2 if quick else 0.5
    rows, results = [], []
    for bs in (1, 1024):
        part = features.iloc[:bs]
        inputs = tuple(t[:bs] for t in tensors)

        def bare(inputs=inputs):
            with torch.inference_mode():
                return model(*inputs)

        contenders = {"run.predict (DataFrame rows)": lambda part=part: run_.predict(part),
                      "bare model (tensors, inference_mode)": bare}
        rates: dict[str, list[float]] = {k: [] for k in contenders}
        for _ in range(repeats):
            for name, fn in contenders.items():
                rates[name].append(_rate(fn, bs, min_seconds))
        bare_rate = c.summary(rates["bare model (tensors, inference_mode)"])["median"]
        for name, r in rates.items():
            s = c.summary(r)
            results.append({"batch": bs, "contender": name, "rows_per_s": s})
            rows.append([bs, name, f"{s['median']:,.0f} ({s['min']:,.0f}–{s['max']:,.0f})",
                         f"{1e3 * bs / s['median']:.3f}", f"{s['median'] / bare_rate:.3f}"])
    md = c.markdown_table(["batch", "path", "rows/s, median (min–max)", "ms per call", "÷ bare model"], rows)
    return {"results": results, "markdown": md}


def main(argv: list[str] | None = None) -> None:
    c.section_main(run, __doc__, 5, argv)


if __name__ == "__main__":
    main()
