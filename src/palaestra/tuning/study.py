"""A recorded hyperparameter study on Optuna: sampler, pruner, storage, staged search, cross-validation.

Every trial copies the config, sets the sampled values at their dotted paths and trains in memory; a
callback reports the tuned metric after each epoch (Optuna's intermediate values) so a pruner can stop poor
trials early. The storage (SQLite in the study directory by default, any SQLAlchemy URL otherwise) records
params, per-epoch values, state and duration, so several workers can share one study and an interrupted
study resumes where it stopped.

Example::

    >>> result = tune({"data": {"source": "iris"}, "tune": {"trials": 5}}, out="runs/iris-tune")  # doctest: +SKIP
    >>> result.best_value, result.best_params                                                     # doctest: +SKIP
"""

from __future__ import annotations

import json
import math
import os
import re
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import optuna

from palaestra.artifacts import claim_dir
from palaestra.config import Config, load_config, set_path
from palaestra.errors import ConfigError, UserError
from palaestra.training import callbacks as cb
from palaestra.tuning.outputs import final_value
from palaestra.tuning.results import Stage, StudyResult
from palaestra.tuning.space import Space, decode_params, grid_size, grid_space, parse_space, sample
from palaestra.tuning.storage import default_storage, display_url, open_storage

FINISHED = ("COMPLETE", "PRUNED")  # the states that count towards a study's trial budget


def metric_key(metric: str) -> str:
    """``accuracy`` -> ``val_accuracy``: trials are scored on the validation split."""
    if metric.startswith("train_"):
        raise ConfigError(f"tune.metric '{metric}' is a training metric; tune on a validation metric (val_loss, ...)")
    return metric if metric.startswith("val_") else f"val_{metric}"


def resolve_direction(config: Config) -> str:
    if config.tune.direction != "auto":
        return config.tune.direction
    return "minimize" if cb.monitor_mode(metric_key(config.tune.metric)) == "min" else "maximize"


class SeedPerTrial(optuna.samplers.BaseSampler):
    """Builds the inner sampler afresh for each trial, seeded from (seed, trial number).

    Why: the same seed then repeats the same parameters in a fresh study, a resumed study does not replay
    its first draws, and workers sharing a study (each holding different trial numbers) do not draw alike.
    """

    def __init__(self, factory: Callable[[int], optuna.samplers.BaseSampler], seed: int):
        self._factory, self._seed = factory, seed
        self._inner: dict[int, optuna.samplers.BaseSampler] = {}

    def _for(self, trial) -> optuna.samplers.BaseSampler:
        if trial.number not in self._inner:
            mixed = int(np.random.SeedSequence([self._seed, trial.number]).generate_state(1)[0])
            self._inner[trial.number] = self._factory(mixed)
        return self._inner[trial.number]

    def infer_relative_search_space(self, study, trial):
        return self._for(trial).infer_relative_search_space(study, trial)

    def sample_relative(self, study, trial, search_space):
        return self._for(trial).sample_relative(study, trial, search_space)

    def sample_independent(self, study, trial, param_name, param_distribution):
        return self._for(trial).sample_independent(study, trial, param_name, param_distribution)

    def before_trial(self, study, trial) -> None:
        self._for(trial).before_trial(study, trial)

    def after_trial(self, study, trial, state, values) -> None:
        self._for(trial).after_trial(study, trial, state, values)
        self._inner.pop(trial.number, None)


def make_sampler(config: Config, space: Space, budget: int):

    name, seed = config.tune.sampler, config.seed
    if name == "grid":
        return optuna.samplers.GridSampler(grid_space(space), seed=seed)
    if name == "random":
        return SeedPerTrial(lambda s: optuna.samplers.RandomSampler(seed=s), seed)
    if name == "tpe":
        # Optuna's default of 10 random start-up trials would leave a 12-trial study almost all random.
        startup = max(3, min(10, budget // 3))
        return SeedPerTrial(lambda s: optuna.samplers.TPESampler(seed=s, n_startup_trials=startup,
                                                                  constant_liar=True), seed)
    import importlib.util

    if importlib.util.find_spec("cmaes") is None:
        raise ConfigError("tune.sampler 'cmaes' needs the 'cmaes' package (pip install cmaes); "
                          "or use sampler tpe, random or grid")
    # CMA-ES keeps its state in the study: one seeded sampler, not one per trial.
    return optuna.samplers.CmaEsSampler(seed=seed, n_startup_trials=max(1, min(5, budget // 4)))


def make_pruner(config: Config, budget: int):

    name = config.tune.pruner
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=max(1, min(5, budget // 4)), n_warmup_steps=1)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=config.train.epochs, reduction_factor=3)
    return optuna.pruners.NopPruner()


class ReportToTrial(cb.Callback):
    """Reports the tuned metric to the Optuna trial after each epoch; raises ``TrialPruned`` when told to."""

    def __init__(self, trial: Any, metric: str, prune: bool = True):
        self.trial, self.metric, self.prune = trial, metric, prune
        self.epochs = 0

    def on_epoch_end(self, state, logs: dict[str, float]) -> None:
    
        if self.metric not in logs:
            names = ", ".join(k for k in logs if k.startswith("val_")) or "none (is there a validation split?)"
            raise ConfigError(f"tune.metric '{self.metric}' is not measured for this task; choose one of: {names}")
        self.epochs = int(logs["epoch"])
        if not self.prune:
            return
        self.trial.report(float(logs[self.metric]), self.epochs)
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"pruned after epoch {self.epochs}")


def _scalar_vals(run) -> dict[str, float]:
    return {f"val_{k}": float(v) for k, v in run.metrics.get("val", {}).items()
            if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)}


class Objective:
    """Trains one trial (or K folds) and returns its score."""

    def __init__(self, base: dict[str, Any], space: Space, metric: str, cv: int | None, runs_dir: Path | None = None):
        # runs_dir: each trial trains into a run directory there (``NNNN``, or ``NNNN-foldK`` with tune.cv) and
        # records its path as the trial's ``run`` user attr, so the study's tools (optuna-dashboard) link to it.
        self.base, self.space, self.metric, self.cv, self.runs_dir = base, space, metric, cv, runs_dir
        self._folds: list[tuple[np.ndarray, np.ndarray, np.ndarray]] | None = None
        self._raw = None

    def config_for(self, params: dict[str, Any]) -> Config:
        return load_config(self.base, params)

    def __call__(self, trial) -> float:
        from palaestra.pipeline import TrainingInterrupted, train

        # First: who runs it, so a trial whose worker is killed can be told from one still running.
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
        params = sample(trial, self.space)
        cfg = self.config_for(params)
        started = time.perf_counter()
        try:
            if self.cv:
                value = self._cross_validate(trial, cfg)
            else:
                report = ReportToTrial(trial, self.metric)
                out = self._run_dir(trial, "")
                try:
                    run = train(cfg, quiet=True, extra_callbacks=[report], out=out)
                finally:
                    trial.set_user_attr("epochs", report.epochs)
                value = final_value(run, self.metric)
                trial.set_user_attr("val", _scalar_vals(run))  # one attribute: each is a storage write
        except TrainingInterrupted:
            trial.set_user_attr("interrupted", True)  # retried when the study resumes
            raise
        finally:
            trial.set_user_attr("seconds", round(time.perf_counter() - started, 3))
        return value

    def _run_dir(self, trial, suffix: str) -> Path | None:
        """Where this trial (or fold) trains, recorded on the trial before it starts (a running trial shows it)."""
        if self.runs_dir is None:
            return None
        out = (self.runs_dir / f"{trial.number:04d}{suffix}").resolve()
        if suffix:
            trial.set_user_attr("runs", [*trial.user_attrs.get("runs", []), str(out)])
        else:
            trial.set_user_attr("run", str(out))
        return out

    def folds(self, cfg: Config) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """K (train, val, test) position triples: k-fold over train+val; the test split stays held out."""
        if self._folds is None:
            from palaestra.data.prepare import prepare_data
            from palaestra.data.splits import kfold_indices

            data = prepare_data(cfg.data, cfg.seed, embedding_dim=cfg.model.embedding_dim)
            if data.spec.task not in ("classification", "regression", "multi_target"):
                raise ConfigError(f"tune.cv works on tables and arrays, not on {data.spec.task} data")
            pool = np.concatenate([data.train.index, data.val.index])
            y = None
            if data.spec.task == "classification":
                y = np.concatenate([data.train.target.numpy(), data.val.target.numpy()])
            k = self.cv or 2
            if len(pool) < 2 * k:
                raise ConfigError(f"tune.cv {k} needs at least {2 * k} train+val rows, found {len(pool)}")
            self._folds = [(np.sort(pool[a]), np.sort(pool[b]), data.test.index)
                           for a, b in kfold_indices(len(pool), y, k, cfg.seed, stratify=cfg.data.split.stratify)]
            self._raw = data.raw  # positions refer to these rows
        return self._folds

    def _cross_validate(self, trial, cfg: Config) -> float:
        from palaestra.pipeline import train

        values, epochs = [], 0
        for i, split in enumerate(self.folds(cfg)):
            # Only the first fold reports per-epoch values: the pruner compares like with like.
            report = ReportToTrial(trial, self.metric, prune=i == 0)
            run = train(cfg, source=self._raw, quiet=True, extra_callbacks=[report], split_override=split,
                        out=self._run_dir(trial, f"-fold{i + 1}"))
            epochs += report.epochs
            values.append(final_value(run, self.metric))
        mean, std = float(np.mean(values)), float(np.std(values))
        trial.set_user_attr("epochs", epochs)
        trial.set_user_attr("cv_values", values)
        trial.set_user_attr("cv_mean", mean)
        trial.set_user_attr("cv_std", std)
        return mean


def _fingerprint(config: Config, stage: Stage) -> str:
    """What must match for a worker to join (or resume) a study: everything but the budget."""
    tree = config.to_dict()
    tree["tune"].pop("trials", None)
    tree["tune"].pop("timeout", None)
    tree["train"].pop("progress", None)
    tree["tune"]["stage_space"] = {k: [p.kind, list(p.args)] for k, p in stage.space.items()}
    return json.dumps(tree, sort_keys=True, default=str)


def _check_same_study(study, config: Config, stage: Stage) -> None:
    mine = _fingerprint(config, stage)
    theirs = study.user_attrs.get("palaestra_config")
    if theirs is None:
        study.set_user_attr("palaestra_config", mine)
        return
    if theirs != mine and finished(study) == 0:
        study.set_user_attr("palaestra_config", mine)  # only failed attempts so far (a typo?): start afresh
        return
    if theirs != mine:
        a, b = json.loads(theirs), json.loads(mine)
        diff = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
        raise UserError(f"study '{stage.name}' already exists in this storage with a different config "
                        f"(differs in: {', '.join(diff)}); choose another --study or --out")


def finished(study) -> int:
    return sum(t.state.name in FINISHED for t in study.get_trials(deepcopy=False))


def _fail_dead_trials(study) -> None:
    """Trials left RUNNING by a worker on this machine that no longer exists (SIGKILL, OOM killer, power loss)
    are marked failed and interrupted, so they are retried once, at once, instead of waiting for the storage's
    heartbeat grace period (which still covers workers on other machines)."""
    from palaestra.index import alive

    me = socket.gethostname()
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        host, _, pid = str(t.user_attrs.get("worker", "")).rpartition(":")
        if host != me or not pid.isdigit() or alive(int(pid), host):
            continue
        storage = study._storage
        try:
            storage.set_trial_user_attr(t._trial_id, "interrupted", True)
            storage.set_trial_state_values(t._trial_id, optuna.trial.TrialState.FAIL)
        except (RuntimeError, optuna.exceptions.UpdateFinishedTrialError):
            continue  # another worker got there first


def _retry_interrupted(study) -> None:
    """Re-queue the parameters of trials cut short by Ctrl-C/SIGTERM, once each."""
    trials = study.get_trials(deepcopy=False)
    retried = {t.user_attrs.get("retry_of") for t in trials}
    for t in trials:
        if t.state.name == "FAIL" and t.user_attrs.get("interrupted") and t.number not in retried:
            study.enqueue_trial(t.params, user_attrs={"retry_of": t.number})


def stages_of(config: Config, study_name: str) -> list[Stage]:
    if config.tune.stages:
        return [Stage(f"{study_name}.stage{i + 1}", parse_space(s.space, config), s.trials)
                for i, s in enumerate(config.tune.stages)]
    return [Stage(study_name, parse_space(config.tune.space, config), config.tune.trials)]


def run_stage(config: Config, base: dict[str, Any], stage: Stage, storage, direction: str,
              ran: list[int] | None = None, runs_dir: Path | None = None) -> None:
    """Run (or resume, or join) one stage's study until its budget of finished trials is reached.

    With ``runs_dir``, every trial writes its run directory under ``runs_dir/<stage>/``."""

    if config.tune.sampler == "grid":
        # Grid: the trial count is the grid size.
        stage.trials = grid_size(stage.space)
    study = optuna.create_study(study_name=stage.name, storage=storage, direction=direction, load_if_exists=True,
                                sampler=make_sampler(config, stage.space, stage.trials),
                                pruner=make_pruner(config, stage.trials))
    stage.study = study
    _check_same_study(study, config, stage)
    if study.metric_names is None:  # what the value is, for optuna-dashboard and other readers of the storage
        study.set_metric_names([metric_key(config.tune.metric)])
    if study.direction.name.lower() != direction:
        raise UserError(f"study '{stage.name}' exists with direction {study.direction.name.lower()}, not {direction}")
    _fail_dead_trials(study)
    _retry_interrupted(study)
    remaining = stage.trials - finished(study)
    if remaining <= 0:
        return
    trial_runs = runs_dir / re.sub(r"[^0-9A-Za-z_.-]", "_", stage.name) if runs_dir is not None else None
    objective = Objective(base, stage.space, metric_key(config.tune.metric), config.tune.cv, trial_runs)
    stop = optuna.study.MaxTrialsCallback(stage.trials, states=(optuna.trial.TrialState.COMPLETE,
                                                                optuna.trial.TrialState.PRUNED))
    callbacks = [stop] if ran is None else [stop, lambda _study, t: ran.append(t.number)]
    study.optimize(objective, n_trials=remaining, timeout=config.tune.timeout, callbacks=callbacks)


def best_of(stage: Stage) -> Any:
    try:
        return stage.study.best_trial
    except ValueError:
        raise UserError(f"study '{stage.name}': no trial completed (all pruned or failed); "
                        f"widen the space, add trials or use --pruner none") from None


def tune(config: Config | dict | str | Path | None, *, out: str | Path, storage: str | None = None,
         study_name: str | None = None, overrides: list[str] | dict | None = None, console=None,
         best_run: bool = True, plots: bool = True, quiet: bool = False,
         on_start: Callable[[], None] | None = None) -> StudyResult:
    """Run a study (all its stages), write the outputs to ``out`` and return the result.

    ``on_start`` is called once the settings, the directory and the storage have been checked, before trials run.
    """
    import warnings

    from palaestra.pipeline import TrainingInterrupted
    from palaestra.tuning.outputs import write_outputs

    config = load_config(config, overrides)
    # Resumable: a directory this command made (its marker, or the study.db of an older version) is reused.
    study_dir = claim_dir(out, "tune", legacy=("study.db",))
    url = storage or default_storage(study_dir)
    study_name = study_name or config.name
    direction = resolve_direction(config)
    stages = stages_of(config, study_name)
    if config.tune.sampler == "grid":
        for s in stages:
            grid_size(s.space)  # a continuous range or a huge grid fails here, before anything runs
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # failures reach the user as errors
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    rdb = open_storage(url)
    if on_start is not None:
        on_start()
    base = config.explicit()  # what the user set: family defaults still apply to what they left alone
    base.setdefault("train", {})["progress"] = False
    best_params: dict[str, Any] = {}
    ran: list[int] = []
    for stage in stages:
        try:
            run_stage(config, base, stage, rdb, direction, ran, runs_dir=study_dir / "trials")
        except TrainingInterrupted:
            done = finished(stage.study) if stage.study is not None else 0
            raise UserError(f"study '{stage.name}' interrupted after {done} of {stage.trials} trials; "
                            f"run the same command again to resume it") from None
        best = best_of(stage)
        params = decode_params(stage.space, best.params)
        best_params.update(params)
        for path, value in params.items():  # the next stage starts from these values
            set_path(base, path.split("."), value)
    last = best_of(stages[-1])
    result = StudyResult(study_dir, display_url(url), metric_key(config.tune.metric), direction, stages, best_params,
                         float(last.value), last,
                         load_config(base, {"train.progress": config.train.progress}))
    result.ran = ran
    write_outputs(result, console=console, best_run=best_run, plots=plots, quiet=quiet)
    return result
