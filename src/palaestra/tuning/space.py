"""Search spaces: ``{config.path: {uniform|log_uniform|int|choice: ...}}`` checked, then sampled by Optuna.

A space is data, like the rest of the config::

    optimizer.lr: {log_uniform: [1.0e-4, 1.0e-1]}
    model.dropout: {uniform: [0.0, 0.5]}
    train.batch_size: {choice: [16, 32, 64]}
    model.hidden: {choice: [[32], [64, 64]]}
    train.epochs: {int: [5, 50]}           # [low, high] or [low, high, step]

Example::

    >>> space = parse_space({"optimizer.lr": {"log_uniform": ["1e-4", 0.1]}})
    >>> space["optimizer.lr"].kind, space["optimizer.lr"].args
    ('log_uniform', (0.0001, 0.1))
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import yaml

from palaestra.config import MAX_VALUE_BYTES, Config, load_config, safe_yaml, shown
from palaestra.errors import ConfigError

KINDS = ("uniform", "log_uniform", "int", "choice")
MAX_GRID = 100_000  # points of a grid search: Optuna's grid sampler holds them all in memory
_SCALARS = (bool, int, float, str, type(None))


@dataclass(frozen=True)
class Param:
    """One dimension of a search space, named by its dotted config path."""

    path: str
    kind: str
    args: tuple[Any, ...]  # (low, high) / (low, high, step) / the choices

    @property
    def encoded(self) -> bool:
        """Choices Optuna cannot store as they are (lists, mappings) travel as JSON strings."""
        return self.kind == "choice" and not all(isinstance(c, _SCALARS) for c in self.args)

    def optuna_choices(self) -> list[Any]:
        return [json.dumps(c) for c in self.args] if self.encoded else list(self.args)

    def decode(self, value: Any) -> Any:
        return json.loads(value) if self.encoded and isinstance(value, str) else value

    def suggest(self, trial: Any) -> Any:
        """Ask an Optuna trial for this parameter's value (decoded back to config data)."""
        if self.kind == "uniform":
            return trial.suggest_float(self.path, self.args[0], self.args[1])
        if self.kind == "log_uniform":
            return trial.suggest_float(self.path, self.args[0], self.args[1], log=True)
        if self.kind == "int":
            return trial.suggest_int(self.path, self.args[0], self.args[1], step=self.args[2])
        return self.decode(trial.suggest_categorical(self.path, self.optuna_choices()))

    def grid(self) -> list[Any]:
        """The values a grid search visits: the choices, or every step of an ``int`` range."""
        if self.kind == "choice":
            return self.optuna_choices()
        if self.kind == "int":
            low, high, step = self.args
            if (high - low) // step + 1 > MAX_GRID:
                raise ConfigError(f"tune.space.{self.path}: the 'int' range has {(high - low) // step + 1:,} grid "
                                  f"points; a grid search takes at most {MAX_GRID:,}")
            return list(range(low, high + 1, step))
        raise ConfigError(f"tune.space.{self.path}: the grid sampler needs 'choice' values or an 'int' range, "
                          f"not '{self.kind}' (use sampler random, tpe or cmaes for continuous ranges)")


Space = dict[str, Param]


def _number(path: str, value: Any, integer: bool = False) -> float | int:
    # PyYAML reads `1e-4` (no dot) as a string: accept it, since that is how people write learning rates.
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise ConfigError(f"tune.space.{path}: {shown(value)} is not a number") from None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"tune.space.{path}: {shown(value)} is not a number")
    if not math.isfinite(value):
        raise ConfigError(f"tune.space.{path}: bounds must be finite numbers, got {value!r}")
    if integer:
        if float(value) != int(value):
            raise ConfigError(f"tune.space.{path}: 'int' bounds must be whole numbers, got {value!r}")
        return int(value)
    return float(value)


def parse_param(path: str, spec: Any) -> Param:
    """Check one ``{kind: args}`` entry and normalise its numbers."""
    if not isinstance(spec, dict) or len(spec) != 1:
        raise ConfigError(f"tune.space.{path} must be one of {{uniform: [low, high]}}, {{log_uniform: [low, high]}}, "
                          f"{{int: [low, high]}}, {{choice: [a, b, ...]}}; got {shown(spec)}")
    kind, args = next(iter(spec.items()))
    if kind not in KINDS:
        raise ConfigError(f"tune.space.{path}: unknown kind {shown(kind)} (use one of: {', '.join(KINDS)})")
    if not isinstance(args, list | tuple) or not args:
        raise ConfigError(f"tune.space.{path}: '{kind}' needs a list, got {shown(args)}")
    if kind == "choice":
        return Param(path, kind, tuple(args))
    if kind == "int":
        if len(args) not in (2, 3):
            raise ConfigError(f"tune.space.{path}: 'int' needs [low, high] or [low, high, step], got {shown(list(args))}")
        low, high, *step = (_number(path, a, integer=True) for a in args)
        step_v = step[0] if step else 1
        if step_v < 1:
            raise ConfigError(f"tune.space.{path}: the 'int' step must be at least 1")
        if low > high:
            raise ConfigError(f"tune.space.{path}: low {low} is above high {high}")
        return Param(path, kind, (low, high, step_v))
    if len(args) != 2:
        raise ConfigError(f"tune.space.{path}: '{kind}' needs [low, high], got {shown(list(args))}")
    low, high = (_number(path, a) for a in args)
    if low > high:
        raise ConfigError(f"tune.space.{path}: low {low:g} is above high {high:g}")
    if kind == "log_uniform" and low <= 0:
        raise ConfigError(f"tune.space.{path}: 'log_uniform' needs low > 0, got {low:g}")
    return Param(path, kind, (low, high))


def parse_space(raw: dict[str, Any], base: Config | None = None) -> Space:
    """Check every entry; with ``base``, also check each path is a config field that accepts its values."""
    if not raw:
        raise ConfigError("the search space is empty: add tune.space entries or --space PATH={kind: [...]}")
    space = {path: parse_param(path, spec) for path, spec in raw.items()}
    if base is not None:
        for p in space.values():
            if p.path.split(".")[0] == "tune":
                raise ConfigError(f"tune.space.{p.path}: the tuning settings themselves cannot be tuned")
            for value in _probe_values(p):
                load_config(base, {p.path: value})  # unknown keys and invalid values fail here, with did-you-mean
    return space


def _probe_values(p: Param) -> list[Any]:
    if p.kind == "choice":
        return list(p.args)
    return [p.args[0], p.args[1]]


def parse_space_option(item: str) -> tuple[str, dict[str, Any]]:
    """``"optimizer.lr={log_uniform: [1e-4, 1e-1]}"`` -> ("optimizer.lr", {"log_uniform": [...]})."""
    if "=" not in item:
        raise ConfigError(f"--space expects PATH={{kind: [...]}}, got {shown(item)}")
    path, raw = item.split("=", 1)
    try:
        spec = safe_yaml(raw, f"--space {shown(path)}", MAX_VALUE_BYTES)
    except yaml.YAMLError:
        raise ConfigError(f"--space {shown(path)}: cannot parse {shown(raw)} "
                          f"(write e.g. {{log_uniform: [1e-4, 1e-1]}})") from None
    path = path.strip()
    parse_param(path, spec)
    return path, spec


def sample(trial: Any, space: Space) -> dict[str, Any]:
    """One value per parameter, in the space's order."""
    return {path: p.suggest(trial) for path, p in space.items()}


def decode_params(space: Space, params: dict[str, Any]) -> dict[str, Any]:
    """Optuna's stored params -> config values (JSON-encoded choices decoded)."""
    return {k: space[k].decode(v) if k in space else v for k, v in params.items()}


def grid_space(space: Space) -> dict[str, list[Any]]:
    return {path: p.grid() for path, p in space.items()}


def grid_size(space: Space) -> int:
    size = 1
    for path, values in grid_space(space).items():
        size *= len(values)
        if size > MAX_GRID:
            raise ConfigError(f"tune.space: the grid has more than {MAX_GRID:,} points (at {path}); "
                              f"narrow it or use sampler random or tpe")
    return size
