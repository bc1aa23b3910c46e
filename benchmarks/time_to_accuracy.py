"""Time to accuracy: seconds (and epochs) until the test split reaches a target accuracy, with Palaestra's
default config, beside a plain PyTorch loop training the same model in the same batch order.

    python -m benchmarks.time_to_accuracy [--quick]

After every epoch a probe measures test accuracy with the clock paused; the run stops at the first epoch that
reaches the target. Palaestra runs as a user would (run directory, checkpoints, progress bar, early stopping).
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import torch

from benchmarks import common as c

TARGETS = {"penguins": 0.97, "digits": 0.97, "mnist1d": 0.90}


def _accuracy(model: torch.nn.Module, tensors: tuple[torch.Tensor, ...]) -> float:
    *xs, y = tensors
    was = model.training
    model.eval()
    with torch.inference_mode():
        acc = float((model(*xs).argmax(1) == y).float().mean())
    model.train(was)
    return acc


def _probe(tensors: tuple[torch.Tensor, ...], target: float):
    """A Palaestra callback: after each epoch, test accuracy off the clock; stops at the target."""
    from palaestra.training.callbacks import Callback

    class Probe(Callback):
        reached: tuple[int, float] | None = None

        def on_train_begin(self, state) -> None:
            self.started, self.paused = time.perf_counter(), 0.0

        def on_epoch_end(self, state, logs) -> None:
            t = time.perf_counter()
            acc = _accuracy(state.model, tensors)
            if acc >= target and self.reached is None:
                self.reached = (state.epoch, t - self.started - self.paused)
                state.stop_reason = f"benchmark: test accuracy {acc:.3f} reached {target}"
            self.paused += time.perf_counter() - t

    return Probe()


def measure(source: str, target: float, epochs: int | None = None) -> dict[str, Any]:
    config: dict[str, Any] = {"data": {"source": source}}
    if epochs:
        config["train"] = {"epochs": epochs}
    raw = c.raw_source(source)
    prepared = c.prepare(config, raw)
    test = prepared.data.test.tensors
    plain_hit: list[int] = []

    def stop(model, epoch):
        if _accuracy(model, test) >= target:
            plain_hit.append(epoch)
            return True
        return False

    plain = c.run_plain(prepared, stop=stop)  # its clock is paused while `stop` measures
    probe = _probe(test, target)
    from palaestra.pipeline import train

    with c.isolated_runs() as tmp:
        run = train(config, source=raw, out=tmp / "run", console=c.null_console(), extra_callbacks=[probe])
    return {"source": source, "target": target, "family": prepared.config.model.family,
            "plain": {"reached": bool(plain_hit), "epochs": len(plain["history"]), "seconds": plain["seconds"]},
            "palaestra": {"reached": probe.reached is not None, "epochs": probe.reached[0] if probe.reached else
                          run.metrics["epochs"], "seconds": probe.reached[1] if probe.reached else
                          run.metrics["train_seconds"], "stop_reason": run.metrics.get("stop_reason")}}


def run(quick: bool = False, threads: int = 1) -> dict[str, Any]:
    torch.set_num_threads(threads)
    sources = ["penguins"] if quick else list(TARGETS)
    results, rows = [], []
    for source in sources:
        r = measure(source, TARGETS[source])
        results.append(r)
        for name in ("plain", "palaestra"):
            x = r[name]
            epochs = x["epochs"] if x["reached"] else f"not reached in {x['epochs']}"
            rows.append([source, r["family"], f"{r['target']:.2f}", name, epochs, f"{x['seconds']:.2f}"])
    md = c.markdown_table(["data", "model (default)", "test accuracy target", "loop", "epochs to target",
                           "seconds to target"], rows)
    return {"results": results, "markdown": md}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args(argv)
    print(run(args.quick)["markdown"])


if __name__ == "__main__":
    main()
