"""Compressed weights in a run directory: int8 Linear layers and sparse (pruned) tensors, in safetensors.

No pickle: an int8 Linear is stored as its int8 tensor plus its scale and zero point (in
``compression.json``); a mostly-zero tensor is stored sparsely, as a bit mask of the kept entries and their
values. ``palaestra compress`` writes them (``compressed_state``); ``Run.load`` rebuilds the model from them
(``load_compressed``).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from palaestra.artifacts import read_json
from palaestra.errors import ArtifactError, UserError

LAYOUT = "compression.json"
SPARSE_BELOW = 0.7  # store a tensor sparsely once at least 30% of it is zero: the mask costs 1 bit an entry


def _quantized_linear_type() -> type:
    from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear

    return DynamicLinear


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


def load_compressed(layout_file: Path, model: nn.Module, tensors: dict[str, torch.Tensor]) -> tuple[nn.Module, dict]:
    """Rebuild a compressed run's model from its float skeleton: ``(model, its state dict)`` for ``Run.load``."""
    path = Path(layout_file).parent
    info = read_json(layout_file)
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
