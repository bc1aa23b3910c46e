"""What a study is made of and what it returns: plain data, shared by the study, its outputs and its report."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from palaestra.config import Config
from palaestra.tuning.space import Space


@dataclass
class Stage:
    name: str  # the Optuna study name
    space: Space
    trials: int  # budget: finished (complete or pruned) trials
    study: Any = None


@dataclass
class StudyResult:
    study_dir: Path
    storage: str
    metric: str
    direction: str
    stages: list[Stage]
    best_params: dict[str, Any]  # decoded, every stage merged
    best_value: float
    best_trial: Any  # optuna FrozenTrial of the last stage
    best_config: Config
    files: list[Path] = field(default_factory=list)
    best_run: Any = None
    ran: list[int] = field(default_factory=list)  # numbers of the trials this process ran
