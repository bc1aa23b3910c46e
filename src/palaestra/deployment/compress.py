"""Compression: magnitude pruning (``torch.nn.utils.prune``) and int8 weights for Linear layers
(``palaestra.models.compressed.Int8Linear``: weight-only, per-tensor symmetric), written as a new run directory
whose weights are stored as ``palaestra.models.compressed`` describes. For int8 arithmetic at inference time,
export the original run with ``palaestra export RUN --format onnx --quantize int8`` (onnxruntime's quantizer).
"""

from __future__ import annotations

import copy
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.utils import prune as torch_prune

from palaestra.artifacts import (
    atomic_write,
    cannot_write,
    finite_json,
    make_dir,
    tensors_to_bytes,
    write_json,
    write_manifest,
)
from palaestra.errors import UserError
from palaestra.models.compressed import LAYOUT, compressed_state, quantize_model
from palaestra.runs import Run, RunIndex, run_name, set_state

PRUNABLE = (nn.Linear, nn.Conv1d, nn.Conv2d)


# --- transforming the model ------------------------------------------------------------------------------------


def prune_model(model: nn.Module, fraction: float) -> list[tuple[nn.Module, str]]:
    """Zero the ``fraction`` smallest-magnitude weights of every Linear/Conv layer (reparametrized, masks kept)."""
    targets = [(m, "weight") for m in model.modules() if isinstance(m, PRUNABLE)]
    if not targets:
        raise UserError("this model has no Linear or Conv layers to prune")
    for module, name in targets:
        torch_prune.l1_unstructured(module, name, amount=fraction)
    return targets


def finetune(run: Run, model: nn.Module, epochs: int) -> None:
    """A short fine-tune on the training split, while the pruning masks hold the pruned weights at zero.

    It is the training loop itself (``training.loop.fit``) with the run's loss, optimizer, batch size and
    gradient clipping, for ``epochs`` epochs, with no validation, checkpoints or early stopping.
    """
    from palaestra.config import FeatureConfig, ScheduleConfig
    from palaestra.data.batching import TensorBatcher
    from palaestra.data.prepare import prepare_data
    from palaestra.models import resolve_layout
    from palaestra.training.callbacks import CallbackList
    from palaestra.training.loop import fit
    from palaestra.training.losses import build_loss
    from palaestra.training.optim import Schedule, build_optimizer
    from palaestra.training.state import TrainState

    cfg = run.config
    layout = resolve_layout(cfg)
    if run.spec.kind == "table":  # the columns read as the run read them, whatever inference says today
        kept = {f.name: FeatureConfig(type=f.type) for f in run.preprocessor.features}
        layout = layout.model_copy(update={"features": {**kept, **layout.features}})
    data = prepare_data(layout, cfg.seed, embedding_dim=cfg.model.embedding_dim)
    loss_fn = build_loss(cfg.loss, run.spec, data.train.target, cfg.model.ensemble)
    optimizer = build_optimizer(model, cfg.optimizer)
    batcher = TensorBatcher(data.train.tensors, cfg.train.batch_size, shuffle=True, seed=cfg.seed)
    schedule = Schedule(ScheduleConfig(), optimizer, cfg.optimizer.lr, epochs, len(batcher))
    state = TrainState(model, optimizer, schedule, batcher, monitor="train_loss")
    fit(state, epochs, loss_fn, None, None, CallbackList([]), torch.device("cpu"), grad_clip=cfg.train.grad_clip)
    model.eval()


# --- measuring ------------------------------------------------------------------------------------------------


def latency_ms(model: nn.Module, inputs: tuple[torch.Tensor, ...], batch: int, repeats: int) -> float:
    """Median wall time of ``repeats`` forward passes on a batch of ``batch`` rows (inputs tiled to fill it).

    Timed on one thread: on a busy machine the thread pool's synchronisation, not the arithmetic, would
    otherwise decide the comparison.
    """
    n = len(inputs[0])
    idx = torch.arange(batch) % n
    x = tuple(t[idx] for t in inputs)
    times = []
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.inference_mode():
            for _ in range(3):
                model(*x)  # warm-up: first calls allocate
            for _ in range(repeats):
                start = time.perf_counter()
                model(*x)
                times.append(time.perf_counter() - start)
    finally:
        torch.set_num_threads(threads)
    return float(np.median(times) * 1e3)


def measure(run: Run, model: nn.Module, raw: Any, size: int, repeats: int) -> dict[str, Any]:
    from palaestra.deployment.export import model_inputs

    probe = Run(run.config, run.preprocessor, run.spec, model)
    inputs = model_inputs(run, raw)
    metrics = probe.evaluate(raw)
    keys = ("accuracy", "f1_macro") if run.spec.task == "classification" else ("rmse", "mae", "r2")
    return {"file_bytes": size, "latency_ms_batch1": latency_ms(model, inputs, 1, repeats),
            "latency_ms_batch256": latency_ms(model, inputs, 256, max(5, repeats // 4)),
            **{k: metrics[k] for k in keys if k in metrics}, "test_rows": metrics.get("rows")}


# --- the whole step -------------------------------------------------------------------------------------------


def compress(run: Run, out: str | Path, prune: float | None = None, quantize: str | None = None,
             finetune_epochs: int = 0, repeats: int = 200) -> tuple[Run, dict[str, Any]]:
    """Prune and/or quantize ``run``'s model into a new run directory ``out``; returns it and the report.

    >>> new, report = compress(Run.load("runs/wide"), "runs/wide-int8", prune=0.5, quantize="int8")  # doctest: +SKIP
    >>> report["after"]["file_bytes"] < report["before"]["file_bytes"]                                # doctest: +SKIP
    True
    """
    from palaestra.deployment.export import held_out
    from palaestra.pipeline import environment

    if run.path is None:
        raise UserError("compress needs a saved run directory")
    if prune is None and quantize is None:
        raise UserError("nothing to do: give prune=FRACTION and/or quantize='int8'")
    if quantize not in (None, "int8"):
        raise UserError(f"unknown quantization '{quantize}': only int8 is available")
    if (run.path / LAYOUT).is_file():
        raise UserError(f"{run.path} is already compressed: compress the original run")
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError(f"{out} already exists and is not an empty directory: choose another --out")
    raw = held_out(run, max_rows=None)  # the whole test split: accuracy before and after on the same rows
    if raw is None:
        raise UserError("the run's test rows cannot be read again (its data source is unavailable), "
                        "so accuracy before and after cannot be compared")
    model = copy.deepcopy(run.model).eval()
    if prune:
        targets = prune_model(model, prune)
        if finetune_epochs:
            finetune(run, model, finetune_epochs)
        for module, name in targets:
            torch_prune.remove(module, name)  # make it permanent: the zeros are now the weights
    if quantize == "int8":
        model = quantize_model(model)
    tensors, layout = compressed_state(model)
    blob = tensors_to_bytes(tensors)
    before = measure(run, run.model, raw, (run.path / "model.safetensors").stat().st_size, repeats)
    after = measure(run, model, raw, len(blob), repeats)
    report = {"from": str(run.path), "prune": prune, "quantize": quantize, "finetune_epochs": finetune_epochs,
              "before": before, "after": after, "size_ratio": before["file_bytes"] / max(after["file_bytes"], 1)}
    metrics = dict(run.metrics)
    metrics["test"] = Run(run.config, run.preprocessor, run.spec, model).evaluate(raw)
    metrics["compression"] = report
    # The new run is assembled in a hidden sibling directory and renamed to `out` only once whole: a killed
    # compress leaves `out` as it was (so the same command can simply run again) and a `.NAME.partial-*`
    # directory that says what it is, never a half-written run that looks like an interrupted training.
    make_dir(out.parent)
    try:
        work = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.partial-"))
    except OSError as exc:
        raise cannot_write(out, exc) from None
    try:
        atomic_write(work / "model.safetensors", blob)
        for name in ("config.yaml", "preprocess.json", "history.csv"):
            if (run.path / name).is_file():
                shutil.copyfile(run.path / name, work / name)
        write_json(work / LAYOUT, {"version": 1, "prune": prune, "quantize": quantize, "tensors": layout})
        write_json(work / "metrics.json", finite_json(metrics))
        write_json(work / "compress_report.json", finite_json(report))
        write_json(work / "env.json", environment(torch.device("cpu"), run.config.seed))
        files = [n for n in ("config.yaml", "model.safetensors", "preprocess.json", "metrics.json", "history.csv",
                             "env.json", LAYOUT, "compress_report.json") if (work / n).is_file()]
        write_manifest(work, files)
        try:
            os.rename(work, out)  # atomic; replaces `out` only if it is an empty directory
        except OSError as exc:
            raise cannot_write(out, exc) from None
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    set_state(out, "complete")
    RunIndex.default().record(out, name=f"{run_name(run.config, getattr(run.preprocessor, 'target', None))}-compressed", task=run.spec.task,
                              metrics={k: v for k, v in metrics["test"].items() if isinstance(v, float)})
    return Run.load(out), report


def report_table(report: dict[str, Any]):
    """The before/after comparison as a rich table."""
    from rich.table import Table

    what = ", ".join(x for x in (f"prune {report['prune']:g}" if report["prune"] else "",
                                 "int8" if report["quantize"] else "") if x)
    table = Table(title=f"compression ({what}): {report['size_ratio']:.2f}x smaller file")
    for col in ("", "before", "after"):
        table.add_column(col, justify="right" if col else "left")
    b, a = report["before"], report["after"]
    table.add_row("file size", f"{b['file_bytes'] / 1024:.1f} KiB", f"{a['file_bytes'] / 1024:.1f} KiB")
    table.add_row("latency, batch 1 (median, 1 thread)", f"{b['latency_ms_batch1']:.3f} ms", f"{a['latency_ms_batch1']:.3f} ms")
    table.add_row("latency, batch 256 (median, 1 thread)", f"{b['latency_ms_batch256']:.3f} ms", f"{a['latency_ms_batch256']:.3f} ms")
    for key in ("accuracy", "f1_macro", "rmse", "mae", "r2"):
        if key in b:
            table.add_row(f"test {key} ({b['test_rows']} rows)", f"{b[key]:.4f}", f"{a[key]:.4f}")
    return table
