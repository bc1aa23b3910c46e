"""Compressed weights in a run directory: int8 Linear layers and sparse (pruned) tensors, in safetensors.

No pickle: an int8 Linear is stored as its int8 tensor plus its scale and zero point (in
``compression.json``); a mostly-zero tensor is stored sparsely, as a bit mask of the kept entries and their
values. ``palaestra compress`` writes them (``compressed_state``); ``Run.load`` rebuilds the model from them
(``load_compressed``).

int8 here is weight-only: ``Int8Linear`` keeps its weight as int8 (4x smaller than float32) and computes in
float on the dequantized weight, with plain torch operations, so a compressed model exports to ONNX and
``torch.export`` like any other. (It replaced ``torch.ao.quantization.quantize_dynamic``, deprecated in torch;
the file layout is unchanged, so runs compressed before load as they are.)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from palaestra.artifacts import read_json
from palaestra.errors import ArtifactError

LAYOUT = "compression.json"
SPARSE_BELOW = 0.7  # store a tensor sparsely once at least 30% of it is zero: the mask costs 1 bit an entry


class Int8Linear(nn.Module):
    """A Linear layer with an int8 weight: ``weight_float = (weight - zero_point) * scale`` (per tensor).

    >>> layer = Int8Linear.from_float(nn.Linear(4, 2))
    >>> layer.weight.dtype
    torch.int8
    """

    def __init__(self, weight: torch.Tensor, scale: float, zero_point: int, bias: torch.Tensor | None):
        super().__init__()
        self.register_buffer("weight", weight.to(torch.int8))
        self.register_buffer("bias", None if bias is None else bias.detach().float().clone())
        self.scale, self.zero_point = float(scale), int(zero_point)

    @classmethod
    def from_float(cls, linear: nn.Linear) -> Int8Linear:
        """Symmetric per-tensor int8 (as torch's default weight observer): scale = max|w| / 127.5, zero point 0."""
        w = linear.weight.detach().float()
        scale = float(w.abs().max()) / 127.5 or 1.0
        q = torch.clamp(torch.round(w / scale), -128, 127)
        return cls(q, scale, 0, linear.bias)

    def float_weight(self) -> torch.Tensor:
        return (self.weight.float() - self.zero_point) * self.scale  # (out, in)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.float_weight(), self.bias)

    def extra_repr(self) -> str:
        return f"in_features={self.weight.shape[1]}, out_features={self.weight.shape[0]}, int8 weight"


def quantize_model(model: nn.Module) -> nn.Module:
    """Every ``nn.Linear`` of ``model`` replaced (in place) by an ``Int8Linear``; returns the model."""
    for module in list(model.modules()):
        for child_name, child in list(module.named_children()):
            if type(child) is nn.Linear:
                setattr(module, child_name, Int8Linear.from_float(child))
    return model


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
    tensors: dict[str, torch.Tensor] = {}
    layout: dict[str, Any] = {}
    quantized = {name for name, m in model.named_modules() if isinstance(m, Int8Linear)}
    for name in sorted(quantized):
        module = model.get_submodule(name)
        _store(f"{name}.weight", module.weight, tensors, layout, quantized=True, scale=module.scale,
               zero_point=module.zero_point)
        if module.bias is not None:
            _store(f"{name}.bias", module.bias, tensors, layout)
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
    for key, (q, scale, zero_point) in int8.items():  # the exact stored int8 values
        parent, _, child = key.removesuffix(".weight").rpartition(".")
        owner = model.get_submodule(parent) if parent else model
        linear = getattr(owner, child)
        setattr(owner, child, Int8Linear(q, scale, zero_point, linear.bias))
    return model.eval(), model.state_dict()
