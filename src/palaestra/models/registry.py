"""Model families by name. A family is a function ``(spec, model_config) -> nn.Module`` plus what it declares.

Each family declares the data kinds it accepts (so ``family: auto`` picks by the data and a mismatch is a
plain error rather than a shape crash deep in ``forward``) and its capabilities, which shared code reads
instead of testing the family's name:

- ``defaults``: config values the family needs unless the user set them (``{"train.grad_clip": 1.0}``);
- ``recipes``: defaults that depend on the data and on what the user set, ``(spec, training rows, set_by_user)
  -> {path: value}`` (e.g. a network described by hand is built as described, without the recipe's parts);
- ``training``: its own training step and monitors, if any: ``(model, run_dir) -> (step_fn, callbacks)`` (the
  GAN's alternating step and its sample monitor);
- ``channels_last``: whether its 2-D convolutions train faster in the NHWC memory layout;
- ``arrays_as``: how it reads an ``(N, T[, F])`` array when the data config does not say (``sequence`` for the
  recurrent and attention families, ``vector`` for the MLP), and ``task``: a task it implies (the GAN's
  ``generation``).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from palaestra.config import Config, DataConfig, ModelConfig
from palaestra.data.spec import FeatureSpec
from palaestra.errors import ConfigError
from palaestra.models.init import initialize
from palaestra.models.seasonal_blend import MEMBERS as BLEND_MEMBERS
from palaestra.models.seasonal_blend import SeasonalBlend
from palaestra.models.window_norm import WindowNorm


@dataclass(frozen=True)
class Family:
    name: str
    build: Callable[[FeatureSpec, ModelConfig], nn.Module]
    kinds: tuple[str, ...]  # data kinds it accepts (FeatureSpec.kind)
    default_for: tuple[str, ...] = ()  # tasks or data kinds for which `auto` picks it (a task's default first)
    # () -> (FeatureSpec, inputs, target): a tiny example for the shared contract test, for kinds it cannot make
    example: Callable[[], tuple] | None = None
    defaults: dict[str, Any] = field(default_factory=dict)  # dotted config path -> value, unless the user set it
    channels_last: bool = False
    training: Callable[[nn.Module, Any], tuple[Callable | None, list]] | None = None
    arrays_as: str | None = None
    task: str | None = None
    size_knobs: tuple[str, ...] = ("model.hidden",)  # the config keys that set its size (for the doctor's advice)
    recipes: Callable[[FeatureSpec, int, Callable[[str], bool]], dict[str, Any]] | None = None  # data-dependent defaults


FAMILIES: dict[str, Family] = {}


def register(name: str, kinds: tuple[str, ...], default_for: tuple[str, ...] = (), example: Callable[[], tuple] | None = None,
             defaults: dict[str, Any] | None = None, channels_last: bool = False, training: Callable | None = None,
             arrays_as: str | None = None, task: str | None = None, size_knobs: tuple[str, ...] = ("model.hidden",),
             recipes: Callable[[FeatureSpec, int, Callable[[str], bool]], dict[str, Any]] | None = None):
    """Decorator: ``@register("mlp", kinds=("table", "vector"), default_for=("table", "vector"))``."""

    def deco(fn: Callable[[FeatureSpec, ModelConfig], nn.Module]):
        FAMILIES[name] = Family(name, fn, kinds, default_for, example, dict(defaults or {}), channels_last, training,
                                arrays_as, task, size_knobs, recipes)
        return fn

    return deco


def resolve_layout(config: Config) -> DataConfig:
    """The data config as the chosen family declares it needs (``arrays_as``, ``task``) and the text encoder
    reads (its own tokenizer); explicit settings win."""
    data, family = config.data, FAMILIES.get(config.model.family)
    if data.tokenizer is None:
        data = data.model_copy(update={"tokenizer": "minilm" if config.model.text_encoder == "minilm" else "words"})
    if family is None:
        return data
    if data.sequence is None and family.arrays_as is not None:
        data = data.model_copy(update={"sequence": family.arrays_as == "sequence"})
    if data.task == "auto" and family.task is not None:
        data = data.model_copy(update={"task": family.task})
    return data


def resolve_family(spec: FeatureSpec, cfg: ModelConfig) -> str:
    if cfg.family == "auto":
        for wanted in (spec.task, spec.kind):  # e.g. forecasting's own default before the sequence default
            for fam in FAMILIES.values():
                if wanted in fam.default_for and spec.kind in fam.kinds:
                    return fam.name
        raise ConfigError(f"no model family is registered for {spec.kind} data")
    if cfg.family not in FAMILIES:
        close = difflib.get_close_matches(cfg.family, list(FAMILIES), n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise ConfigError(f"unknown model.family '{cfg.family}'{hint}; choose from auto, {', '.join(FAMILIES)}")
    fam = FAMILIES[cfg.family]
    if spec.kind not in fam.kinds:
        raise ConfigError(f"model.family '{fam.name}' does not take {spec.kind} data (it takes {', '.join(fam.kinds)})")
    return fam.name


def build_model(spec: FeatureSpec, cfg: ModelConfig) -> nn.Module:
    """Build (untrained, initialised) the model for a feature spec.

    >>> from palaestra.config import Config, DataConfig, ModelConfig
    >>> spec = FeatureSpec(kind="table", task="classification", input_names=["numeric", "categorical"], n_outputs=3, n_numeric=4)
    >>> sum(p.numel() for p in build_model(spec, ModelConfig(hidden=[8], dropout=0.0)).parameters())
    67
    """
    model = FAMILIES[resolve_family(spec, cfg)].build(spec, cfg)
    initialize(model, cfg)
    if spec.task == "forecast" and cfg.window_norm != "none":
        model = WindowNorm(model, cfg.window_norm, int(spec.extra.get("window") or 0) or None)
    if spec.task == "forecast" and cfg.blend != "none":
        season, window = int(spec.extra.get("season") or 0), int(spec.extra.get("window") or 0)
        if 2 <= season <= window:  # else no seasonal forecast to combine with
            members = 1 if cfg.blend == "seasonal_naive" else len(BLEND_MEMBERS)
            model = SeasonalBlend(model, season, window, spec.n_outputs, members)
    return model
