"""Compression: magnitude pruning (``torch.nn.utils.prune``) and dynamic int8 quantization of Linear layers
(``torch.ao.quantization.quantize_dynamic``), written as a new run directory.

Weights stay in safetensors, with no pickle: an int8 Linear is stored as its int8 tensor plus its scale and
zero point (in ``compression.json``); a pruned weight is stored sparsely, as a bit mask of the kept entries
and their values. ``Run.load`` rebuilds the model from these through ``load_compressed``.
"""

from __future__ import annotations

import copy
import os
import shutil
import tempfile
import time
import warnings
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
    read_json,
    tensors_to_bytes,
    verify_manifest,
    write_json,
    write_manifest,
)
from palaestra.errors import ArtifactError, UserError
from palaestra.runs import Run, RunIndex, set_state

LAYOUT = "compression.json"
SPARSE_BELOW = 0.7  # store a tensor sparsely once at least 30% of it is zero: the mask costs 1 bit an entry
PRUNABLE = (nn.Linear, nn.Conv1d, nn.Conv2d)


def _quantized_linear_type() -> type:
    from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear

    return DynamicLinear


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
    """A short fine-tune on the training split, while the pruning masks hold the pruned weights at zero."""
    from palaestra.data.prepare import prepare_data
    from palaestra.data.sequence import resolve_layout
    from palaestra.training.losses import build_loss
    from palaestra.training.optim import build_optimizer

    data = prepare_data(resolve_layout(run.config), run.config.seed, embedding_dim=run.config.model.embedding_dim)
    loss_fn = build_loss(run.config.loss, run.spec, data.train.target)
    optimizer = build_optimizer(model.parameters(), run.config.optimizer)
    g = torch.Generator().manual_seed(run.config.seed)
    bs = run.config.train.batch_size
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(data.train), generator=g)
        for start in range(0, len(order), bs):
            idx = order[start:start + bs]
            optimizer.zero_grad()
            loss = loss_fn(model(*(t[idx] for t in data.train.inputs)), data.train.target[idx])
            loss.backward()
            optimizer.step()
    model.eval()


def quantize_model(model: nn.Module) -> nn.Module:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao.quantization's deprecation notice
        return torch.ao.quantization.quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8)


# --- storing and loading --------------------------------------------------------------------------------------


def _store(key: str, t: torch.Tensor, tensors: dict[str, torch.Tensor], layout: dict[str, Any], **info: Any) -> None:
    """Store ``t`` (float or int8) densely, or as mask + kept values when it is mostly zeros."""
    t = t.detach().cpu().contiguous()
    nonzero = t != 0
    entry = {"shape": list(t.shape), "dtype": str(t.dtype).removeprefix("torch."), **info}
    if t.numel() >= 64 and float(nonzero.float().mean()) < SPARSE_BELOW:
        bits = np.packbits(nonzero.flatten().numpy().astype(np.uint8))
        tensors[f"{key}.mask"] = torch.from_numpy(bits)
        tensors[f"{key}.values"] = t.flatten()[nonzero.flatten()]
        entry["format"] = "sparse"
    else:
        tensors[key] = t
        entry["format"] = "dense"
    layout[key] = entry


def _restore(key: str, entry: dict[str, Any], tensors: dict[str, torch.Tensor]) -> torch.Tensor:
    shape = entry["shape"]
    if entry["format"] == "dense":
        return tensors[key]
    n = int(np.prod(shape)) if shape else 1
    mask = np.unpackbits(tensors[f"{key}.mask"].numpy())[:n].astype(bool)
    values = tensors[f"{key}.values"]
    out = torch.zeros(n, dtype=values.dtype)
    if int(mask.sum()) != len(values):
        raise ArtifactError(f"sparse tensor {key}: mask and values disagree")
    out[torch.from_numpy(mask)] = values
    return out.reshape(shape)


def compressed_state(model: nn.Module) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(tensors for safetensors, layout for ``compression.json``) of a pruned and/or quantized model."""
    qlinear = _quantized_linear_type()
    tensors: dict[str, torch.Tensor] = {}
    layout: dict[str, Any] = {}
    quantized = {name for name, m in model.named_modules() if isinstance(m, qlinear)}
    for name in sorted(quantized):
        module = model.get_submodule(name)
        w = module.weight()
        if w.qscheme() not in (torch.per_tensor_affine, torch.per_tensor_symmetric):
            raise UserError(f"layer {name}: only per-tensor int8 quantization is stored")
        _store(f"{name}.weight", w.int_repr(), tensors, layout, quantized=True, scale=float(w.q_scale()),
               zero_point=int(w.q_zero_point()))
        if module.bias() is not None:
            _store(f"{name}.bias", module.bias(), tensors, layout)
    for key, value in model.state_dict().items():
        if any(key.startswith(q + ".") for q in quantized) or not isinstance(value, torch.Tensor):
            continue
        _store(key, value, tensors, layout)
    return tensors, layout


def load_compressed(path: Path, model: nn.Module, tensors: dict[str, torch.Tensor]) -> tuple[nn.Module, dict]:
    """Rebuild a compressed run's model from its float skeleton: ``(model, its state dict)`` for ``Run.load``."""
    verify_manifest(path, [LAYOUT])
    info = read_json(Path(path) / LAYOUT)
    try:
        layout = info["tensors"]
        dense = {k: _restore(k, e, tensors) for k, e in layout.items()}
        float_state, int8 = {}, {}
        for key, entry in layout.items():
            if entry.get("quantized"):
                int8[key] = (dense[key], entry["scale"], entry["zero_point"])
                # Load a dequantized copy first so the float skeleton's strict load checks every shape.
                float_state[key] = (dense[key].float() - entry["zero_point"]) * entry["scale"]
            else:
                float_state[key] = dense[key]
    except (KeyError, TypeError, ValueError) as exc:
        raise ArtifactError(f"{Path(path) / LAYOUT} does not describe {Path(path) / 'model.safetensors'} ({exc})") from None
    try:
        model.load_state_dict(float_state)
    except RuntimeError as exc:
        raise ArtifactError(f"{Path(path) / 'model.safetensors'} does not fit the model: {str(exc).splitlines()[0]}") from None
    if int8:
        model = quantize_model(model.eval())
        for key, (q, scale, zero_point) in int8.items():
            module = model.get_submodule(key.removesuffix(".weight"))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                qweight = torch._make_per_tensor_quantized_tensor(q.to(torch.int8), scale, zero_point)
            module.set_weight_bias(qweight, module.bias())  # the exact stored int8 values
    return model.eval(), model.state_dict()


# --- measuring ------------------------------------------------------------------------------------------------


def latency_ms(model: nn.Module, inputs: tuple[torch.Tensor, ...], batch: int, repeats: int) -> float:
    """Median wall time of ``repeats`` forward passes on a batch of ``batch`` rows (inputs tiled to fill it).

    Timed on one thread: float kernels would otherwise use torch's thread pool and int8 kernels not, and on a
    busy machine the pool's synchronisation, not the arithmetic, would decide the comparison.
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
    RunIndex.default().record(out, name=f"{run.config.name}-compressed", task=run.spec.task,
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
