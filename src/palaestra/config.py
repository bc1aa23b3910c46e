"""The one schema that names and defaults every knob.

Every field has a default, so an empty file is a valid config. Unknown keys are errors with a
did-you-mean suggestion. A config is data: it is parsed with ``yaml.safe_load`` and never executes code.

Example::

    >>> from palaestra.config import load_config
    >>> cfg = load_config(None, overrides=["optimizer.lr=0.01", "model.hidden=[32]"])
    >>> cfg.optimizer.lr, cfg.model.hidden
    (0.01, [32])
"""

from __future__ import annotations

import copy
import difflib
import math
import reprlib
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from palaestra.errors import ConfigError

Task = Literal["auto", "classification", "regression", "multi_target", "forecast", "language_model", "generation"]
# A column's type in data.features: the input feature types, plus what a target may be declared as.
FeatureType = Literal["numeric", "binary", "category", "text", "datetime", "image", "vector", "sequence", "number"]


# Bounds on what a config file may ask of the parser: a config is a page of settings, not a data set. They
# stop "billion laughs" (aliases of aliases: a few lines that expand to billions of values) and deep nesting.
MAX_CONFIG_BYTES = 1 << 20  # 1 MiB
MAX_VALUE_BYTES = 64 << 10  # one --set or --space value
MAX_NODES = 100_000  # values after alias expansion
MAX_DEPTH = 64  # nesting of mappings and lists
# Counts that drive Python loops when a model is built (so they are bounded here, before any memory check).
MAX_LAYERS = 1024
# Widths, lengths and counts: int32 is the most torch's kernels index; `resources.py` then checks the memory.
MAX_SIZE = 2**31 - 1
MAX_INIT = 1e6  # initial weights beyond this are no initialisation (and beyond float32, torch refuses them)


class _Section(BaseModel):
    # allow_inf_nan=False: `lr: .inf` or `nan` anywhere in the config is refused, never trained on.
    model_config = ConfigDict(extra="forbid", validate_assignment=True, populate_by_name=True, allow_inf_nan=False)


class SplitConfig(_Section):
    train: float = Field(0.7, gt=0, lt=1)
    val: float = Field(0.15, ge=0, lt=1)
    test: float = Field(0.15, ge=0, lt=1)
    stratify: bool = True

    @model_validator(mode="after")
    def _sums_to_one(self) -> SplitConfig:
        total = self.train + self.val + self.test
        if not math.isclose(total, 1.0, abs_tol=1e-6):
            raise ValueError(f"split ratios train+val+test must sum to 1, got {total:g}")
        return self


class FeatureConfig(_Section):
    """How to read one column: its type, overriding what inference would say."""

    type: FeatureType


class DataConfig(_Section):
    source: str = "penguins"
    target: str | list[str] | None = None  # one column, or a list for several targets trained together
    task: Task = "auto"
    split: SplitConfig = SplitConfig()
    drop: list[str] = []
    # Per-column overrides: {column: {type: numeric | binary | category | text | datetime}}; for the .npz array
    # `x`: image | vector | sequence; for a target: category | number.
    features: dict[str, FeatureConfig] = {}
    # Categorical columns with more distinct values than this get a learned embedding instead of one-hot.
    embedding_threshold: int = Field(16, ge=2, le=MAX_SIZE)
    # Numeric columns: `quantile` (normal scores of the training quantiles), `standard` (z-scores) or `piecewise`
    # (one column per bin between training quantiles, `numeric_bins` at most; Gorishniy et al. 2022).
    numeric_encoding: Literal["quantile", "standard", "piecewise"] = "quantile"
    numeric_bins: int = Field(16, ge=2, le=1024)
    # `memory` slices tensors by index (fast); `loader` goes through torch's DataLoader.
    batching: Literal["auto", "memory", "loader"] = "auto"
    num_workers: int = Field(0, ge=0, le=MAX_SIZE)
    # Sequences, series and text (issue 3).
    sequence: bool | None = None  # .npz x as (N, T[, F]) sequences; None: decided by data and model family
    window: int = Field(24, ge=1, le=MAX_SIZE)  # forecast: input steps per window
    horizon: int = Field(1, ge=1, le=MAX_SIZE)  # forecast: predict the next 1..horizon steps at once
    season: int | None = Field(None, ge=2, le=MAX_SIZE)  # forecast: steps per season (None: from the training autocorrelation)
    time_column: str | None = None  # forecast: sort rows by this column (None: a date-like column, else row order)
    series_id: str | None = None  # forecast: the column naming each series of a table of several (one global model)
    # forecast: rolling-origin backtest: the test span is the last `backtest` x `horizon` steps of each series,
    # forecast from `backtest` origins `horizon` steps apart (None: the test split's every origin)
    backtest: int | None = Field(None, ge=1, le=MAX_SIZE)
    # forecast: numeric columns whose future values are known when forecasting (a price plan, a holiday flag):
    # the model reads them over the horizon too; other numeric columns are read up to the forecast origin only
    known_covariates: list[str] = []
    max_length: int = Field(128, ge=2, le=MAX_SIZE)  # text: tokens per text (classification) or context length (language model)
    text_column: str | None = None  # shorthand for features: {COLUMN: {type: text}}
    max_vocab: int = Field(20000, ge=2, le=MAX_SIZE)  # text features: most frequent training words kept
    # How text features are cut into tokens: `words` (our own vocabulary, fitted on train) or `minilm` (the
    # pretrained encoder's WordPiece tokenizer). None: `minilm` when model.text_encoder is minilm, else `words`.
    tokenizer: Literal["words", "minilm"] | None = None

    @field_validator("features", mode="before")
    @classmethod
    def _type_shorthand(cls, v: Any) -> Any:
        # `features: {notes: text}` is shorthand for `features: {notes: {type: text}}`.
        if isinstance(v, dict):
            return {k: {"type": t} if isinstance(t, str) else t for k, t in v.items()}
        return v

    @field_validator("target")
    @classmethod
    def _targets(cls, v: Any) -> Any:
        if isinstance(v, list):
            if not v:
                raise ValueError("give at least one target column")
            if len(v) == 1:
                return v[0]
        return v

    @property
    def targets(self) -> list[str]:
        return [] if self.target is None else [self.target] if isinstance(self.target, str) else list(self.target)


class PretrainedInit(_Section):
    from_: str = Field(alias="from")
    freeze: list[str] = []


InitName = Literal["kaiming", "xavier", "normal", "uniform", "default"]


class ModelConfig(_Section):
    family: str = "auto"  # auto | mlp | cnn | ... (checked against the model registry)
    hidden: list[int] = Field([32], max_length=MAX_LAYERS)  # small + regularised: measured best on the small built-in tables
    activation: Literal["relu", "gelu", "tanh", "sigmoid", "leaky_relu"] = "relu"
    dropout: float = Field(0.2, ge=0, lt=1)
    init: InitName | PretrainedInit = "kaiming"
    init_range: tuple[float, float] = (-0.05, 0.05)  # for `uniform`; `normal` uses init_std
    init_std: float = Field(0.02, gt=0, le=MAX_INIT)
    # CNN: one conv block (conv, batch norm, activation, max-pool) per entry.
    channels: list[int] = Field([32, 64], max_length=MAX_LAYERS)
    kernel_size: int = Field(3, ge=1, le=MAX_SIZE)
    batch_norm: bool = True
    embedding_dim: int | None = Field(None, ge=1, le=MAX_SIZE)  # None: min(16, (cardinality + 1) // 2)
    # Tables: how the input features are merged (concat -> MLP, or a transformer over one token per feature)
    # and how text columns are read (auto: the family when it is a sequence family, else bag).
    combiner: Literal["concat", "transformer"] = "concat"
    # `concat` tables: k members that share the dense layers' weights, each with its own input and output scaling
    # and its own head (BatchEnsemble as TabM uses it, Gorishniy et al. 2024); each member learns from its own
    # loss, and the prediction is the members' mean. 1: one plain network.
    ensemble: int = Field(1, ge=1, le=256)
    text_encoder: Literal["auto", "bag", "gru", "lstm", "rnn", "transformer", "minilm"] = "auto"
    # `minilm` (the pretrained sentence encoder of the `text` extra): `frozen` (its embedding of each text is
    # computed once and cached) or `finetune` (its top `text_finetune_layers` layers train too, at the learning
    # rate times `text_lr_scale`).
    text_mode: Literal["frozen", "finetune"] = "frozen"
    text_finetune_layers: int = Field(2, ge=1, le=MAX_LAYERS)
    text_lr_scale: float = Field(0.01, gt=0, le=1)
    # Recurrent and attention families (rnn, lstm, gru, transformer) and the GAN.
    layers: int = Field(2, ge=1, le=MAX_LAYERS)  # stacked recurrent layers / transformer blocks
    hidden_size: int = Field(128, ge=1, le=MAX_SIZE)  # recurrent state width
    bidirectional: bool = False
    d_model: int = Field(64, ge=1, le=MAX_SIZE)  # transformer width
    heads: int = Field(4, ge=1, le=MAX_LAYERS)  # attention heads (d_model must be divisible by heads)
    ff_dim: int | None = Field(None, ge=1, le=MAX_SIZE)  # transformer feed-forward width; None: 4 * d_model
    latent_dim: int = Field(64, ge=1, le=MAX_SIZE)  # GAN: noise vector size
    # Forecasting: each window is seen relative to its own level, which is added back to the forecast (reversible
    # instance normalisation): `last` (its last value: the model predicts the change), `mean` (its mean and
    # spread, RevIN), or `none` (the training scale only).
    window_norm: Literal["last", "mean", "none"] = "last"
    # Forecasting: the forecast is a weighted sum of the network's and classical forecasts of the same window, the
    # weights fitted on the validation span after training (metrics.json's `blend`). `seasonal`: seasonal naive,
    # the window's mean seasonal profile, seasonal naive with drift; `seasonal_naive`: that one alone; `none`: the
    # network alone. Needs a season within data.window (two seasons for the profile and the drift).
    blend: Literal["seasonal", "seasonal_naive", "none"] = "seasonal"

    @field_validator("init_range")
    @classmethod
    def _init_range(cls, v: tuple[float, float]) -> tuple[float, float]:
        if not -MAX_INIT <= v[0] < v[1] <= MAX_INIT:
            raise ValueError(f"needs low < high, both within ±{MAX_INIT:g}")
        return v

    @field_validator("hidden", "channels")
    @classmethod
    def _positive(cls, v: list[int]) -> list[int]:
        if any(h <= 0 or h > MAX_SIZE for h in v):
            raise ValueError(f"layer sizes must be positive integers up to {MAX_SIZE}")
        return v


class LossConfig(_Section):
    name: Literal["auto", "cross_entropy", "bce", "mse", "mae", "huber"] = "auto"
    class_weights: Literal["balanced"] | list[float] | None = None
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    huber_delta: float = Field(1.0, gt=0)
    weights: dict[str, float] = {}  # several targets: each target's weight in the summed loss (default 1)


class OptimizerConfig(_Section):
    name: Literal["sgd", "adam", "adamw", "rmsprop"] = "adamw"
    lr: float = Field(0.003, gt=0)
    weight_decay: float = Field(0.1, ge=0)
    momentum: float = Field(0.9, ge=0, lt=1)  # SGD and RMSprop
    nesterov: bool = False
    betas: tuple[float, float] = (0.9, 0.999)
    # One fused kernel per step for SGD/Adam/AdamW (2-3x faster optimizer steps on CPU, see BENCHMARKS.md).
    # null (default): fused where torch has it (sgd, adam, adamw on CPU/CUDA); false: torch's default
    # for-loop/foreach kernels, which round differently in the last bit.
    fused: bool | None = None


class ScheduleConfig(_Section):
    name: Literal["none", "step", "cosine", "onecycle", "plateau"] = "none"
    step_size: int = Field(30, ge=1, le=MAX_SIZE)  # step: epochs between decays
    gamma: float = Field(0.1, gt=0, le=1)  # step: decay factor
    factor: float = Field(0.5, gt=0, lt=1)  # plateau: decay factor
    patience: int = Field(5, ge=0, le=MAX_SIZE)  # plateau
    min_lr: float = Field(0.0, ge=0)
    max_lr: float | None = Field(None, gt=0)  # onecycle: defaults to 10 x optimizer.lr


class EarlyStoppingConfig(_Section):
    monitor: str = "val_loss"
    patience: int = Field(20, ge=1, le=MAX_SIZE)
    min_delta: float = Field(0.0, ge=0)
    mode: Literal["auto", "min", "max"] = "auto"


class TrainConfig(_Section):
    epochs: int = Field(200, ge=1, le=10_000_000)  # an upper bound: early stopping ends most runs well before
    batch_size: int = Field(32, ge=1, le=MAX_SIZE)
    early_stopping: EarlyStoppingConfig | None = EarlyStoppingConfig()
    stop_at: dict[str, float] | None = None
    # A time budget in seconds: training ends after the step that crosses it (best weights, full run directory).
    time_limit: float | None = Field(None, gt=0)
    restore_best: bool = True  # end with the weights of the best monitored epoch
    grad_clip: float | None = Field(None, gt=0)
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    device: str = Field("auto", pattern=r"^(auto|cpu|cuda(:\d+)?)$")  # auto | cpu | cuda | cuda:N
    checkpoint_every_steps: int | None = Field(None, ge=1, le=MAX_SIZE)
    compile: bool = False
    # NHWC weights for 2-D convolutions (oneDNN's fast layout on CPU, tensor cores on GPU). null (default): on
    # for the cnn family; the model returns to the standard layout after training, for evaluation and export.
    channels_last: bool | None = None
    threads: int | None = Field(None, ge=1, le=MAX_SIZE)
    progress: bool = True
    # Experiment trackers the run is logged to as it trains (extras: palaestra[mlflow], palaestra[tensorboard]).
    trackers: list[Literal["mlflow", "tensorboard"]] = Field([], max_length=2)
    # Classification: temperature scaling fitted on the validation split (auto: kept only if it lowers the
    # validation ECE; temperature: always; none: never). Saved in preprocess.json, applied wherever outputs decode.
    calibrate: Literal["auto", "temperature", "none"] = "auto"
    # Forecasting: after training, train again from scratch on the training and validation rows together for the
    # best epoch count, and keep that model (AutoGluon's refit_full). Validation metrics stay the first model's
    # (the refit one has seen those rows); the blend keeps the weights the first one was given; the test MASE is
    # then scaled by the longer history's one-step persistence error.
    refit: bool = False
    # Binary targets: the decision threshold on the positive (minority) class's probability, chosen on the
    # validation split for f1 | balanced_accuracy | a cost ratio c > 0 (a missed positive costs c false alarms).
    threshold_objective: Literal["none", "f1", "balanced_accuracy"] | float = "none"

    @field_validator("threshold_objective")
    @classmethod
    def _cost_ratio(cls, v: Any) -> Any:
        if isinstance(v, float) and not 0 < v <= 1e6:
            raise ValueError("a cost ratio is a number above 0 (and at most 1e6)")
        return v


class TuneStage(_Section):
    space: dict[str, dict[str, Any]]
    trials: int = Field(10, ge=1, le=1_000_000)


class TuneConfig(_Section):
    sampler: Literal["grid", "random", "tpe", "cmaes"] = "tpe"
    pruner: Literal["none", "median", "hyperband"] = "hyperband"
    trials: int = Field(30, ge=1, le=1_000_000)
    metric: str = "val_loss"
    direction: Literal["auto", "minimize", "maximize"] = "auto"
    space: dict[str, dict[str, Any]] = {
        "optimizer.lr": {"log_uniform": [1.0e-4, 1.0e-1]},
        "model.dropout": {"uniform": [0.0, 0.5]},
    }
    stages: list[TuneStage] = []
    cv: int | None = Field(None, ge=2, le=1000)
    timeout: float | None = Field(None, gt=0)


class Config(_Section):
    name: str = "run"
    seed: int = Field(0, ge=0, lt=2**63)  # torch's generators take 64-bit seeds
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    loss: LossConfig = LossConfig()
    optimizer: OptimizerConfig = OptimizerConfig()
    schedule: ScheduleConfig = ScheduleConfig()
    train: TrainConfig = TrainConfig()
    tune: TuneConfig = TuneConfig()

    @field_validator("loss", "schedule", mode="before")
    @classmethod
    def _name_shorthand(cls, v: Any) -> Any:
        # `loss: mse` is shorthand for `loss: {name: mse}`.
        return {"name": v} if isinstance(v, str) else v

    def to_dict(self) -> dict[str, Any]:
        """The resolved config as plain data (every default filled in), as saved in ``config.yaml``."""
        return self.model_dump(mode="json", by_alias=True)

    def explicit(self) -> dict[str, Any]:
        """Only what was set (by the user, or resolved by a run): ``load_config`` of it keeps defaults as
        defaults, so a family's defaults still apply to the fields the user left alone."""
        return self.model_dump(mode="json", by_alias=True, exclude_unset=True)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """``{"optimizer": {"lr": 0.1}}`` -> ``{"optimizer.lr": 0.1}`` (lists stay values)."""
    if not isinstance(tree, dict):
        return {prefix: tree}
    out: dict[str, Any] = {}
    for k, v in tree.items():
        out.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    return out


# --- parsing ---------------------------------------------------------------------------------------------


def _section_fields(path: tuple[Any, ...]) -> list[str]:
    """The field names allowed at a location of the schema (for did-you-mean)."""
    model: type[BaseModel] | None = Config
    for part in path[:-1]:
        if model is None or not isinstance(part, str):
            return []
        field = model.model_fields.get(part)
        if field is None:
            return []
        model = _model_in(field.annotation)
    if model is None:
        return []
    return [f.alias or name for name, f in model.model_fields.items()]


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def _explain(err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        loc = [p for p in e["loc"] if not (isinstance(p, str) and "[" in p)]
        if e["type"] == "extra_forbidden" and e["loc"]:
            # The unknown key is the user's own text: keep it even if it looks like a pydantic union tag.
            loc = [p for p in e["loc"][:-1] if not (isinstance(p, str) and "[" in p)] + [e["loc"][-1]]
        where = ".".join(str(p) for p in loc) or "config"
        if e["type"] == "extra_forbidden" and loc:
            key = str(loc[-1])
            close = difflib.get_close_matches(key, _section_fields(tuple(loc)), n=1, cutoff=0.6)
            hint = f" (did you mean '{'.'.join(map(str, loc[:-1] + [close[0]]))}'?)" if close else ""
            lines.append(f"unknown config key '{where}'{hint}")
        else:
            msg = e["msg"].removeprefix("Value error, ")
            lines.append(f"{where}: {msg} (got {shown(e.get('input'))})")
    return "invalid config: " + "; ".join(lines[:10]) + (f"; ... ({len(lines) - 10} more)" if len(lines) > 10 else "")


_REPR = reprlib.Repr()  # (keyword arguments need Python 3.12)
for _attr, _limit in (("maxlevel", 3), ("maxdict", 8), ("maxlist", 8), ("maxtuple", 8), ("maxset", 8),
                      ("maxstring", 80), ("maxother", 80), ("maxlong", 40)):
    setattr(_REPR, _attr, _limit)


def shown(value: Any) -> str:
    """A user's value as it may appear in a message: a bounded repr, whatever its size or nesting."""
    return _REPR.repr(value)


def parse_override(item: str) -> tuple[list[str], Any]:
    """``"optimizer.lr=0.01"`` -> (["optimizer", "lr"], 0.01). Values are YAML scalars or lists."""
    if "=" not in item:
        raise ConfigError(f"--set expects KEY=VALUE, got {shown(item)}")
    key, raw = item.split("=", 1)
    if key.count(".") >= MAX_DEPTH:
        raise ConfigError(f"--set {shown(key)}: a key path is at most {MAX_DEPTH} parts long")
    try:
        value = safe_yaml(raw, f"--set {shown(key)}", MAX_VALUE_BYTES) if raw.strip() else None
    except yaml.YAMLError as exc:
        raise ConfigError(f"--set {shown(key)}: cannot parse value {shown(raw)}: {exc.__class__.__name__}") from None
    return [k for k in key.strip().split(".") if k], value


class _BoundedLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses nesting deeper than ``MAX_DEPTH`` while it composes (PyYAML's
    composer recurses once per level: a 100,000-deep document would end in a RecursionError)."""

    depth = 0

    def compose_node(self, parent, index):
        self.depth += 1
        try:
            if self.depth > MAX_DEPTH:
                raise ConfigError(f"nested more than {MAX_DEPTH} levels deep")
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


def _expanded_size(node: yaml.Node, memo: dict[int, int]) -> int:
    """How many values ``node`` stands for once every alias is expanded (memoised: linear in the document)."""
    key = id(node)
    if key not in memo:
        memo[key] = 0  # a recursive alias counts once, not forever
        if isinstance(node, yaml.MappingNode):
            size = 1 + sum(_expanded_size(k, memo) + _expanded_size(v, memo) for k, v in node.value)
        elif isinstance(node, yaml.SequenceNode):
            size = 1 + sum(_expanded_size(v, memo) for v in node.value)
        else:
            size = 1
        memo[key] = size
    return memo[key]


def safe_yaml(text: str, where: str, max_bytes: int = MAX_CONFIG_BYTES) -> Any:
    """``yaml.safe_load`` with bounds: size, nesting depth and values after alias expansion (ConfigError)."""
    if len(text) > max_bytes:
        raise ConfigError(f"{where} is {len(text)} characters long; the limit is {max_bytes}")
    loader = _BoundedLoader(text)
    try:
        try:
            node = loader.get_single_node()
        except ConfigError as exc:
            raise ConfigError(f"{where} is {exc}") from None
        if node is None:
            return None
        size = _expanded_size(node, {})
        if size > MAX_NODES:
            raise ConfigError(f"{where} expands to {size:,} values (aliases of aliases?); the limit is {MAX_NODES:,}")
        return loader.construct_document(node)
    finally:
        loader.dispose()


def set_path(tree: dict[str, Any], path: list[str], value: Any) -> None:
    node = tree
    for part in path[:-1]:
        child = node.get(part)
        if isinstance(child, str) and part in ("loss", "schedule"):
            child = {"name": child}
        if not isinstance(child, dict):
            child = {}
        node[part] = child
        node = child
    node[path[-1]] = value


def read_yaml(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file not found: {p}")
    if p.stat().st_size > MAX_CONFIG_BYTES:
        raise ConfigError(f"{p} is {p.stat().st_size} bytes; a config file is at most {MAX_CONFIG_BYTES} bytes")
    try:
        data = safe_yaml(p.read_text(encoding="utf-8"), str(p))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{p} is not valid YAML{where}: {getattr(exc, 'problem', exc)}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{p} is not a UTF-8 text file") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{p} must hold a mapping of config keys, found {type(data).__name__}")
    return data


def build_config(tree: dict[str, Any]) -> Config:
    try:
        return Config.model_validate(tree)
    except ValidationError as err:
        raise ConfigError(_explain(err)) from None


# Keys added after runs were saved without them, and the value those runs were trained with (a saved
# config.yaml holds every key of its version): numbers were z-scores before data.numeric_encoding, and a
# forecast was the network alone before model.blend.
SAVED_BEFORE = {("data", "numeric_encoding"): "standard", ("model", "blend"): "none"}


def read_saved_config(path: str | Path) -> Config:
    """A run's saved ``config.yaml``: a key its version did not have takes the value the run was trained with
    (``SAVED_BEFORE``), not today's default, so resuming or fine-tuning it reads its data as it did."""
    tree = read_yaml(path)
    for (section, key), value in SAVED_BEFORE.items():
        part = tree.get(section)
        if isinstance(part, dict) and key not in part:
            tree = {**tree, section: {**part, key: value}}
    return build_config(tree)


def load_config(
    source: str | Path | dict[str, Any] | Config | None = None,
    overrides: list[str] | dict[str, Any] | None = None,
) -> Config:
    """Build a validated config from a YAML path, a dict or a Config, then apply overrides.

    ``overrides`` is a list of ``"a.b=value"`` strings (as from ``--set``) or a mapping of dotted keys.
    """
    if isinstance(source, Config):
        tree = source.explicit()
    elif isinstance(source, dict):
        tree = copy.deepcopy(source)
    elif source is None:
        tree = {}
    else:
        tree = read_yaml(source)
    items: list[tuple[list[str], Any]] = []
    if isinstance(overrides, dict):
        items = [([k for k in key.split(".") if k], v) for key, v in overrides.items()]
    elif overrides:
        items = [parse_override(o) for o in overrides]
    for path, value in items:
        if not path:
            raise ConfigError("--set needs a key before '='")
        set_path(tree, path, value)
    return build_config(tree)
