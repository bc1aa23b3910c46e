"""Export a run's model to ONNX, ``torch.export`` (``.pt2``) or TorchScript, checked against the original on
held-out rows.

An export is two files: the model (``model.onnx`` / ``model.pt2`` / ``model.pt``) and ``FILE.preprocess.json``
(the fitted preprocessing, so raw rows can be fed); nothing else to trust: the check runs at export time and a
mismatch past the tolerance is an error, not a warning. TorchScript (``torch.jit``) is deprecated in torch
and kept only for existing users: ``torch_export`` replaces it.

>>> from palaestra.runs import Run
>>> path = export(Run.load("runs/penguins"), "onnx")  # doctest: +SKIP
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from palaestra.artifacts import atomic_write, commit, make_dir, read_json, temp_path, write_json
from palaestra.data.registry import preprocessor_from_dict
from palaestra.data.sources import ArrayData
from palaestra.data.spec import FeatureSpec
from palaestra.errors import ArtifactError, UserError
from palaestra.runs import Run

FORMATS = {"onnx": "model.onnx", "torch_export": "model.pt2", "torchscript": "model.pt"}
DEPRECATED = {"torchscript": "TorchScript (torch.jit) is deprecated in torch: export with --format torch_export "
                             "(torch.export, a .pt2 file loaded with torch.export.load) instead"}
TOLERANCE = 1e-4
RAW = "raw-columns"  # preprocess.json "inputs" of a self-contained ONNX file (as onnx_graph.RAW)
INT8_TOLERANCE = 0.05  # relative to the largest output magnitude: int8 weights move logits by a few percent


# --- inputs ------------------------------------------------------------------------------------------------


def held_out(run: Run, max_rows: int | None = 512) -> pd.DataFrame | ArrayData | None:
    """Raw, labelled test-split rows (a frame, or ``ArrayData``) of a run; None when the source is unavailable.

    ``max_rows`` caps the rows (the first of the split); None keeps the whole split.

    The split indices saved in ``preprocess.json`` point into the source as the data stage read it, so
    the source is read again the same way (``prepare_data``) and indexed; only the saved, fitted
    preprocessing is applied to the rows afterwards.
    """
    from palaestra.data.prepare import prepare_data
    from palaestra.models import resolve_layout

    data = getattr(run, "data", None)  # a run still in memory keeps its prepared data
    try:
        if data is None:
            if run.path is None:
                return None
            splits = read_json(run.path / "preprocess.json").get("splits") or {}
            data = prepare_data(resolve_layout(run.config), run.config.seed)  # the data as training read it
            index = np.asarray(splits.get("test") or splits.get("val") or [], dtype=np.int64)
        else:
            index = data.test.index if len(data.test) else data.val.index
    except UserError:
        return None  # e.g. trained from an in-memory frame: the config's source is not the data
    index = index[:max_rows]
    if not len(index):
        return None
    if run.spec.task == "forecast":  # a forecast's window reads the rows before its targets
        pre = run.preprocessor
        rows = np.unique((index[:, None] + np.arange(-pre.window, pre.horizon)[None, :]).ravel())
        return data.raw.iloc[rows[(rows >= 0) & (rows < len(data.raw))]].reset_index(drop=True)
    if isinstance(data.raw, ArrayData):
        y = data.raw.y[index] if data.raw.y is not None else None
        return ArrayData(x=data.raw.x[index], y=y, name=data.raw.name)
    return data.raw.iloc[index].reset_index(drop=True)


def synthetic_inputs(spec: FeatureSpec, n: int = 64, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """Random inputs of the right shapes and dtypes: used when no held-out rows can be read."""
    g = torch.Generator().manual_seed(seed)
    shape = list(spec.input_shape or [spec.n_numeric])
    if spec.kind == "table":
        cat = [torch.randint(0, card, (n, 1), generator=g) for card, _ in spec.embeddings]
        texts = [torch.randint(0, t["vocab_size"], (n, t["max_length"]), generator=g) for t in spec.texts]
        return (torch.randn(n, spec.n_numeric, generator=g),
                torch.cat(cat, 1) if cat else torch.zeros(n, 0, dtype=torch.int64), *texts)
    if spec.kind == "tokens":  # (x ids (B, L), lengths (B,))
        x = torch.randint(2, int(spec.extra.get("vocab_size", 3)), (n, *shape), generator=g)
    else:
        x = torch.randn(n, *shape, generator=g)
    if list(spec.input_names) == ["x", "lengths"]:  # sequences: full-length here
        return x, torch.full((n,), shape[0], dtype=torch.int64)
    return (x,)


def model_inputs(run: Run, raw: pd.DataFrame | ArrayData | np.ndarray) -> tuple[torch.Tensor, ...]:
    """Raw rows -> the model's input tensors, in ``run.spec.input_names`` order, via the fitted preprocessing."""
    arrays = run.preprocessor.inputs(raw)
    return tuple(torch.from_numpy(np.ascontiguousarray(a)) for a in arrays)


def check_inputs(run: Run, raw: pd.DataFrame | ArrayData | None = None) -> tuple[tuple[torch.Tensor, ...], str]:
    """The inputs an export is checked on, and where they came from (``raw``: the held-out rows, if read
    already)."""
    raw = held_out(run) if raw is None else raw
    if raw is not None:
        inputs = model_inputs(run, raw)
        return inputs, f"{len(inputs[0])} held-out test rows"
    return synthetic_inputs(run.spec), "64 synthetic rows (the training source could not be read)"


# --- runners: the same call for the original and the exported model -----------------------------------------


class TorchRunner:
    """Runs a ``torch.nn.Module`` (or a TorchScript module) on numpy/tensor inputs -> numpy outputs."""

    def __init__(self, model: torch.nn.Module, set_eval: bool = True):
        # A torch.export program was captured in eval mode and refuses a call to its .eval().
        self.model = model.eval() if set_eval else model

    def __call__(self, inputs: tuple[Any, ...]) -> np.ndarray:
        tensors = [torch.as_tensor(np.ascontiguousarray(a)) for a in inputs]
        with torch.inference_mode():
            return self.model(*tensors).float().cpu().numpy()


class OnnxRunner:
    """Runs an ONNX file with onnxruntime. Inputs the graph pruned (an empty categorical block) are skipped."""

    def __init__(self, path: str | Path, input_names: list[str], threads: int | None = None):
        import onnxruntime as ort

        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types for damaged files
            raise ArtifactError(f"{path} is not a loadable ONNX model: {str(exc).splitlines()[0][:200]}") from None
        self.input_names = input_names
        self.graph_inputs = {i.name for i in self.session.get_inputs()}

    def __call__(self, inputs: tuple[Any, ...]) -> np.ndarray:
        feed = {name: np.ascontiguousarray(a.numpy() if isinstance(a, torch.Tensor) else a)
                for name, a in zip(self.input_names, inputs, strict=True) if name in self.graph_inputs}
        return np.asarray(self.session.run(None, feed)[0], dtype=np.float32)


@dataclass
class Check:
    """The outcome of comparing an export with the original model."""

    rows: int
    source: str
    max_abs_diff: float
    tolerance: float

    @property
    def ok(self) -> bool:
        return self.max_abs_diff <= self.tolerance


def compare(reference, candidate, inputs: tuple[torch.Tensor, ...], source: str, tolerance: float) -> Check:
    """Run both on the whole batch and on a batch of one (so a fixed batch size is caught too)."""
    diffs = []
    for batch in (inputs, tuple(t[:1] for t in inputs)):
        want, got = reference(batch), candidate(batch)
        if want.shape != got.shape:
            raise UserError(f"exported model gives outputs of shape {got.shape}, the original {want.shape}")
        diffs.append(float(np.max(np.abs(want - got))) if want.size else 0.0)
    return Check(len(inputs[0]), source, max(diffs), tolerance)


# --- export ------------------------------------------------------------------------------------------------


def _example(inputs: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    # Trace with a batch of 2: a batch of 1 can let the tracer specialise a dimension to a constant.
    return tuple(t[:2].clone() for t in inputs)


def to_onnx(model: torch.nn.Module, example: tuple[torch.Tensor, ...], input_names: list[str], path: Path,
            opset: int = 17) -> None:
    """``torch.onnx.export`` with a dynamic batch dimension on every input and the output."""
    axes = {name: {0: "batch"} for name in input_names}
    axes["output"] = {0: "batch"}
    buffer = io.BytesIO()
    # The TorchScript-based exporter (dynamo=False) handles these plain feed-forward graphs in a fraction of a
    # second; the torch.export-based one takes 1-4 s a model here (serve --backend onnx exports at start-up).
    # torch marks the former deprecated: its DeprecationWarning is left to Python's filters, not hidden.
    torch.onnx.export(model, example, buffer, input_names=input_names, output_names=["output"],
                      dynamic_axes=axes, opset_version=opset, dynamo=False)
    atomic_write(path, buffer.getvalue())


def to_torch_export(model: torch.nn.Module, example: tuple[torch.Tensor, ...], path: Path) -> None:
    """``torch.export.export`` with a dynamic batch dimension on every input, saved as a ``.pt2`` archive."""
    batch = torch.export.Dim("batch", min=1)
    shapes = torch.export.ShapesCollection()  # by tensor, whatever the signature (forward(x, *texts) too)
    for t in example:
        shapes[t] = {0: batch}
    program = torch.export.export(model, example, dynamic_shapes=shapes, strict=False)
    buffer = io.BytesIO()
    torch.export.save(program, buffer)
    atomic_write(path, buffer.getvalue())


def to_torchscript(model: torch.nn.Module, example: tuple[torch.Tensor, ...], path: Path) -> None:
    """``torch.jit.trace`` (deprecated in torch; kept for existing users): the models are feed-forward with no
    data-dependent control flow."""
    traced = torch.jit.trace(model, example, check_trace=False)
    buffer = io.BytesIO()
    torch.jit.save(traced, buffer)
    atomic_write(path, buffer.getvalue())


def load_exported(path: str | Path, fmt: str, input_names: list[str]):
    """A runner for an exported file (``onnx``, ``torch_export`` or ``torchscript``)."""
    if fmt == "onnx":
        return OnnxRunner(path, input_names)
    if fmt == "torch_export":
        try:
            return TorchRunner(torch.export.load(str(path)).module(), set_eval=False)
        except (RuntimeError, ValueError, KeyError, OSError) as exc:
            raise ArtifactError(f"{path} is not a loadable torch.export program: "
                                f"{str(exc).splitlines()[0][:200]}") from None
    try:
        return TorchRunner(torch.jit.load(str(path), map_location="cpu"))
    except RuntimeError as exc:
        raise ArtifactError(f"{path} is not a loadable TorchScript model: {str(exc).splitlines()[0][:200]}") from None


def quantize_onnx(source: Path, target: Path) -> None:
    """Dynamic int8 quantization of the ONNX file ``source`` into ``target``, with onnxruntime's quantizer."""
    import logging

    from onnxruntime.quantization import QuantType, quantize_dynamic

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # the quantizer suggests optional pre-processing on the root logger
    try:
        quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8)
    finally:
        root.setLevel(level)


def export(run: Run, fmt: str, out: str | Path | None = None, tolerance: float | None = None,
           quantize: str | None = None) -> tuple[Path, Check]:
    """Export ``run.model`` as ``fmt`` (``onnx`` | ``torch_export`` | ``torchscript``), check it, and write the
    preprocessing beside it.

    ``quantize="int8"`` (ONNX only) applies onnxruntime's dynamic int8 quantizer. Returns the exported file
    and the check; raises ``UserError`` if outputs differ by more than ``tolerance`` (default 1e-4; for int8,
    5% of the largest output magnitude, at least 0.05).
    """
    if fmt not in FORMATS:
        raise UserError(f"unknown export format '{fmt}': choose onnx, torch_export or torchscript")
    if quantize not in (None, "int8"):
        raise UserError(f"unknown quantization '{quantize}': only int8 is available")
    if quantize and fmt != "onnx":
        raise UserError(f"int8 export is for ONNX (onnxruntime's quantizer); for a smaller {fmt} model "
                        "compress the run first: palaestra compress RUN --quantize int8")
    if out is None:
        if run.path is None:
            raise UserError("give an output file: this run has no directory")
        out = run.path / "export" / FORMATS[fmt]
    out = Path(out)
    if out.is_dir():
        out = out / FORMATS[fmt]
    model = run.model.eval()
    names = list(run.spec.input_names)
    held = held_out(run)  # read once: the network and the self-contained graph are checked on the same rows
    inputs, source = check_inputs(run, held)
    make_dir(out.parent)
    # A table run's ONNX file takes the raw columns: the network is wrapped in its preprocessing and decoding.
    wrap = fmt == "onnx" and raw_columns(run)
    # Everything is written and checked under hidden temporary names beside `out`; only a checked model is
    # renamed (atomically) to `out`, so a kill at any point leaves the old file or none, never an unchecked one.
    temps = [temp_path(out) for _ in range(1 + bool(quantize) + bool(wrap))]
    try:
        network = temps[:len(temps) - bool(wrap)]
        check = _write_checked(model, fmt, network, names, inputs, source, tolerance, quantize)
        wrapped = _wrap_checked(run, network[-1], temps[-1], held) if wrap else None
        write_json(preprocess_path(out), {
            "version": 1, "format": fmt, "preprocessor": run.preprocessor.to_dict(), "spec": run.spec.to_dict(),
            "input_names": list(run.preprocessor.feature_columns) if wrap else names, "quantize": quantize,
            "inputs": RAW if wrap else "encoded",
            "output": "logits" if run.spec.task == "classification" else "values (training scale)",
            "check": {"rows": check.rows, "source": check.source, "max_abs_diff": check.max_abs_diff,
                      "tolerance": check.tolerance, **({"raw_columns": wrapped} if wrapped else {})}})
        commit(temps[-1], out)
    finally:
        for tmp in temps:
            tmp.unlink(missing_ok=True)
    return out, check


def _write_checked(model: torch.nn.Module, fmt: str, temps: list[Path], names: list[str],
                   inputs: tuple[torch.Tensor, ...], source: str, tolerance: float | None,
                   quantize: str | None) -> Check:
    """Export into ``temps[0]`` (quantized into ``temps[1]``) and check the last one against ``model``."""
    example = _example(inputs)
    try:
        if fmt == "onnx":
            to_onnx(model, example, names, temps[0])
            if quantize:
                quantize_onnx(temps[0], temps[1])
        elif fmt == "torch_export":
            to_torch_export(model, example, temps[0])
        else:
            to_torchscript(model, example, temps[0])
    except (RuntimeError, TypeError, ValueError, NotImplementedError) as exc:
        # e.g. an operator the exporter does not know: one plain line, not the exporter's graph dump
        kind = type(model).__name__
        raise UserError(f"cannot export this {kind} to {fmt}: {str(exc).strip().splitlines()[0][:300]}") from None
    reference = TorchRunner(model)
    if tolerance is None:
        tolerance = TOLERANCE if not quantize else INT8_TOLERANCE * max(1.0, float(np.abs(reference(inputs)).max()))
    check = compare(reference, load_exported(temps[-1], fmt, names), inputs, source, tolerance)
    if not check.ok:
        raise UserError(f"the {fmt} export differs from the original model by {check.max_abs_diff:.3g} "
                        f"(tolerance {tolerance:g}) on {source}: nothing written")
    return check


def raw_columns(run: Run) -> bool:
    """Whether the run reads table rows, so that its ONNX export can take the raw columns (a forecast's windows
    are cut from whole series outside the graph: its file takes the windows)."""
    pre = run.preprocessor
    return run.spec.kind == "table" and hasattr(pre, "features") and getattr(pre, "array", None) is None


class RawOnnxRunner:
    """A self-contained ONNX file (raw columns in) under onnxruntime: ``outputs(columns)`` -> {name: array}."""

    def __init__(self, path: str | Path, pre: Any, threads: int | None = None):
        from palaestra.deployment.onnx_graph import output_names

        self.pre = pre
        self.runner = OnnxRunner(path, [], threads)
        self.output_names = [o.name for o in self.runner.session.get_outputs()]
        self.names = output_names(pre)  # "label" -> the graph's name for it
        self.logits = self.names["logits"]

    def feed(self, columns: Any) -> dict[str, np.ndarray]:
        """Raw columns (a frame or a mapping of column -> values) -> the graph's inputs."""
        from palaestra.deployment.onnx_graph import raw_feed

        return raw_feed(self.pre, columns)

    def outputs(self, feed: dict[str, np.ndarray], names: list[str] | None = None) -> dict[str, np.ndarray]:
        names = names or self.output_names
        return dict(zip(names, self.runner.session.run(names, feed), strict=True))

    def __call__(self, columns: Any) -> np.ndarray:
        """The network's outputs (logits, or values on the training scale) for raw columns."""
        return np.asarray(self.outputs(self.feed(columns), [self.logits])[self.logits], dtype=np.float32)


def _wrap_checked(run: Run, network_path: Path, target: Path, held: Any, tolerance: float = 1e-5) -> dict[str, Any]:
    """Wrap the checked network ONNX file into a self-contained one at ``target`` and check that, fed raw
    columns, it gives the network's own outputs on the encoded ones, and ``palaestra predict``'s labels and
    probabilities (or values) decoded from them: on held-out rows and on rows with missing and unseen values."""
    import onnx

    from palaestra.deployment import onnx_graph

    pre = run.preprocessor
    network = onnx.load(str(network_path))
    try:
        model = onnx_graph.self_contained(network, pre, run.spec.n_outputs)
    except (onnx.checker.ValidationError, ValueError) as exc:
        raise UserError(f"cannot wrap the ONNX model in its preprocessing: {str(exc).splitlines()[0][:300]}") from None
    atomic_write(target, model.SerializeToString())
    wrapped, plain = RawOnnxRunner(target, pre), OnnxRunner(network_path, list(run.spec.input_names))
    frames = [("probe rows with missing and unseen values", onnx_graph.probe_rows(pre))]
    if isinstance(held, pd.DataFrame):
        frames.insert(0, ("held-out test rows", held.drop(columns=[c for c in pre.targets if c in held.columns])))
    worst, rows = 0.0, 0
    for what, frame in frames:
        named = wrapped.outputs(wrapped.feed(frame))
        got = {short: named[full] for short, full in wrapped.names.items()}
        want_logits = plain(pre.inputs(frame))
        diffs = [float(np.max(np.abs(got["logits"] - want_logits)))]
        several = len(pre.outputs) > 1
        for d in pre.decode(want_logits):
            prefix = f"{d.name}." if several else ""
            if d.probabilities is not None:
                if [str(v) for v in got[f"{prefix}label"].tolist()] != [str(v) for v in d.predictions.tolist()]:
                    raise UserError(f"the self-contained ONNX model's labels differ from the run's on {what}: "
                                    f"nothing written")
                diffs.append(float(np.max(np.abs(got[f"{prefix}probabilities"] - d.probabilities))))
            else:
                scale = max(1.0, float(np.max(np.abs(d.predictions))))
                diffs.append(float(np.max(np.abs(got[f"{prefix}prediction"] - d.predictions))) / scale)
        worst, rows = max(worst, *diffs), rows + len(frame)
        if worst > tolerance:
            raise UserError(f"the self-contained ONNX model differs from the run by {worst:.3g} on {what} "
                            f"(tolerance {tolerance:g}): nothing written")
    return {"rows": rows, "max_abs_diff": worst, "tolerance": tolerance}


def preprocess_path(exported: str | Path) -> Path:
    """Where the fitted preprocessing of an exported model lives: ``FILE.preprocess.json``."""
    exported = Path(exported)
    return exported.with_name(exported.name + ".preprocess.json")


def predict_exported(path: str | Path, raw: pd.DataFrame | ArrayData | np.ndarray) -> np.ndarray:
    """Raw rows -> outputs with only an exported file and its preprocessing JSON (no run directory)."""
    meta = read_json(preprocess_path(path))
    pre = preprocessor_from_dict(meta["preprocessor"])
    if meta.get("inputs") == RAW:
        return RawOnnxRunner(path, pre)(raw)
    runner = load_exported(path, meta["format"], meta["input_names"])
    return runner(pre.inputs(raw))
