"""``model.text_encoder: minilm``: the pretrained all-MiniLM-L6-v2 sentence encoder reading a text feature.

The encoder is a 6-layer BERT (``transformers.BertModel``) built from the configuration and weights the
``text`` extra ships, checked against the sha256 the run recorded. A text's embedding is the model card's:
the mean of the last layer's token states over its real tokens, L2-normalised; the model reads it times
sqrt(384), so that each component has about unit scale, like the standardised numbers beside it.

``frozen`` (``model.text_mode``): the weights never change, so each distinct text is encoded once and its
embedding cached (keyed by its token ids): after the first epoch a step costs what an MLP's does. The frozen
weights are not part of the run's state (they are the installed files, checked by hash), so a run directory
stays small. ``finetune``: the top ``model.text_finetune_layers`` layers train at the learning rate times
``model.text_lr_scale`` (the optimizer reads ``lr_scale``); the whole encoder is then part of the weights.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from palaestra import pretrained
from palaestra.errors import ConfigError

CACHE_LIMIT = 100_000  # cached texts (about 150 MB of embeddings); texts beyond it are encoded every time


def _exporting() -> bool:
    """True while the model is traced or exported: the graph must hold the encoder, not the cache."""
    return torch.jit.is_tracing() or torch.compiler.is_compiling() or torch.onnx.is_in_onnx_export()


def load_minilm(weights_sha256: str | None) -> nn.Module:
    """The shipped MiniLM as a ``BertModel`` in eval mode, its weights checked against ``weights_sha256``."""
    from safetensors.torch import load_file
    from transformers import BertConfig, BertModel

    path = pretrained.verified("model.safetensors", weights_sha256)
    bert = BertModel(BertConfig(**pretrained.bert_config()), add_pooling_layer=False)
    if any(p.is_meta for p in bert.parameters()):  # built to be measured (resources.py), not run
        return bert.eval()
    # The file also holds the pooler (unused: sentence embeddings are mean-pooled) and, from older
    # transformers, the position-ids buffer.
    weights = {k: v for k, v in load_file(str(path)).items()
               if not k.startswith("pooler.") and not k.endswith("position_ids")}
    missing, unexpected = bert.load_state_dict(weights, strict=False)
    if unexpected or missing:
        raise ConfigError(f"the installed MiniLM weights do not fit its configuration ({path})")
    return bert.eval()


class MiniLMEncoder(nn.Module):
    """WordPiece ids ``(B, L)`` (0 = padding) -> ``(B, 384)`` sentence embeddings (times sqrt(384))."""

    pretrained = True  # model.init leaves its weights as they are

    def __init__(self, text: dict, mode: str = "frozen", finetune_layers: int = 2, lr_scale: float = 0.01):
        super().__init__()
        if text.get("tokenizer") != pretrained.MINILM:
            raise ConfigError(f"text column '{text.get('name')}' was cut into {text.get('tokenizer', 'words')} tokens, "
                              f"and model.text_encoder minilm reads its own WordPiece ids: leave data.tokenizer unset "
                              f"(or set it to minilm)")
        bert = load_minilm(text.get("weights_sha256"))
        self.width = bert.config.hidden_size
        self.scale = math.sqrt(self.width)
        self.frozen = mode == "frozen"
        if self.frozen:
            bert.requires_grad_(False)
            self._frozen = (bert,)  # in a tuple: not a submodule, so not in the state dict or the parameters
            self._cache: dict[bytes, torch.Tensor] = {}
        else:
            layers = bert.encoder.layer
            if not 1 <= finetune_layers <= len(layers):
                raise ConfigError(f"model.text_finetune_layers must be between 1 and {len(layers)} (MiniLM's layers); "
                                  f"got {finetune_layers}")
            bert.embeddings.requires_grad_(False)
            for layer in layers[: len(layers) - finetune_layers]:
                layer.requires_grad_(False)
            self.bert = bert
            self.lr_scale = lr_scale

    @property
    def encoder(self) -> nn.Module:
        return self._frozen[0] if self.frozen else self.bert

    def _apply(self, fn, recurse: bool = True):
        if self.frozen:  # .to(device), .half() and the like reach the unregistered frozen encoder too
            self._frozen[0]._apply(fn, recurse)
        return super()._apply(fn, recurse)

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        """The model card's sentence embedding: masked mean of the last layer, L2-normalised."""
        mask = ids != 0
        if not _exporting():  # run only as many positions as the longest text of the batch holds
            length = max(1, int(mask.sum(1).max()))
            ids, mask = ids[:, :length], mask[:, :length]
        states = self.encoder(input_ids=ids, attention_mask=mask.long()).last_hidden_state
        weight = mask.unsqueeze(-1).to(states.dtype)
        pooled = (states * weight).sum(1) / weight.sum(1).clamp(min=1e-9)
        return F.normalize(pooled, p=2, dim=-1)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        if self.frozen and not _exporting():
            return self._cached(ids) * self.scale
        return self.embed(ids) * self.scale

    def _cached(self, ids: torch.Tensor) -> torch.Tensor:
        keys = [row.tobytes() for row in ids.detach().cpu().numpy()]
        fresh: dict[bytes, torch.Tensor] = {}
        todo = [i for i, k in enumerate(keys) if k not in self._cache]
        if todo:
            with torch.no_grad():
                new = self.embed(ids[todo]).float()
            for i, vector in zip(todo, new, strict=True):
                fresh[keys[i]] = vector
                if len(self._cache) < CACHE_LIMIT:
                    self._cache[keys[i]] = vector
        return torch.stack([self._cache.get(k, fresh.get(k)) for k in keys])
