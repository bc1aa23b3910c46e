"""Weight initialization: random schemes, and pretrained weights from an earlier run (with frozen layers)."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from palaestra.artifacts import read_weights
from palaestra.config import ModelConfig, PretrainedInit
from palaestra.errors import ConfigError

_GAINS = {"relu": "relu", "leaky_relu": "leaky_relu", "tanh": "tanh", "sigmoid": "sigmoid", "gelu": "relu"}


def initialize(model: nn.Module, cfg: ModelConfig) -> None:
    """Initialise weights in place; ``init: {from: RUN_DIR}`` loads matching tensors from that run."""
    if isinstance(cfg.init, PretrainedInit):
        load_pretrained(model, cfg.init)
        return
    if cfg.init == "default":
        return  # PyTorch's own per-layer defaults
    # A pretrained part (a module with ``pretrained = True``), or one whose construction is its initialisation
    # (``keeps_init = True``: e.g. dlinear starts from the persistence forecast), keeps the weights it was built with.
    pretrained = {id(m) for part in model.modules()
                  if getattr(part, "pretrained", False) or getattr(part, "keeps_init", False) for m in part.modules()}
    for module in model.modules():
        if id(module) in pretrained:
            continue
        if isinstance(module, (nn.Linear, nn.Conv1d, nn.Conv2d)):
            w = module.weight
            if cfg.init == "kaiming":
                nonlinearity = _GAINS.get(cfg.activation, "relu")
                nn.init.kaiming_normal_(w, nonlinearity=nonlinearity if nonlinearity != "sigmoid" else "relu")
            elif cfg.init == "xavier":
                nn.init.xavier_uniform_(w)
            elif cfg.init == "normal":
                nn.init.normal_(w, 0.0, cfg.init_std)
            elif cfg.init == "uniform":
                lo, hi = cfg.init_range
                nn.init.uniform_(w, lo, hi)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, 0.0, 1.0 if cfg.init != "normal" else cfg.init_std)


def load_pretrained(model: nn.Module, init: PretrainedInit) -> list[str]:
    """Copy every tensor whose name and shape match from ``RUN_DIR/model.safetensors``; freeze by prefix.

    Returns the names that were not loaded (e.g. a head with a different number of classes).
    """
    weights = read_weights(Path(init.from_))
    own = model.state_dict()
    loaded, skipped = {}, []
    for name, tensor in own.items():
        src = weights.get(name)
        if src is not None and src.shape == tensor.shape:
            loaded[name] = src
        else:
            skipped.append(name)
    if not loaded:
        raise ConfigError(f"model.init.from: no tensor in {init.from_} matches this model's layers")
    model.load_state_dict(loaded, strict=False)
    names = [n for n, _ in model.named_parameters()]
    for prefix in init.freeze:
        hits = [n for n in names if n == prefix or n.startswith(prefix + ".")]
        if not hits:
            raise ConfigError(f"model.init.freeze: no layer named '{prefix}' (layers: {', '.join(sorted({n.rsplit('.', 1)[0] for n in names}))})")
        for n, p in model.named_parameters():
            if n in hits:
                p.requires_grad_(False)
    return skipped
