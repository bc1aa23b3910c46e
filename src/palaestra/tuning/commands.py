"""``palaestra tune`` and ``palaestra lr-find``. Heavy imports (optuna, torch) stay inside the handlers."""

from __future__ import annotations

import argparse
from pathlib import Path

from palaestra.cli import add_train_options, bounded_int, command, console, finite_float, overrides_from


def _study_name(cfg) -> str:
    return cfg.name if cfg.name != "run" else Path(str(cfg.data.source)).stem


@command("tune", help="a recorded hyperparameter study (Optuna); writes the best config as a runnable YAML")
def cmd_tune(args: argparse.Namespace) -> int:
    from palaestra.config import load_config
    from palaestra.errors import ConfigError
    from palaestra.index import runs_root
    from palaestra.tuning.space import parse_space_option
    from palaestra.tuning.study import tune

    items = overrides_from(args)
    for flag, key in (("trials", "tune.trials"), ("sampler", "tune.sampler"), ("pruner", "tune.pruner"),
                      ("metric", "tune.metric"), ("timeout", "tune.timeout")):
        if getattr(args, flag) is not None:
            items.append(f"{key}={getattr(args, flag)}")
    cfg = load_config(args.config, items)
    if args.space:
        if cfg.tune.stages:
            raise ConfigError("--space replaces tune.space, but this config tunes in tune.stages; "
                              "edit the stages in the config instead")
        cfg = load_config(cfg, {"tune.space": dict(parse_space_option(s) for s in args.space)})
    name = args.study or _study_name(cfg)
    # A stable default directory: the same command again resumes (or reports) the same study.
    out = Path(args.out) if args.out else runs_root() / f"{name}-tune"
    err = console(stderr=True)

    def announce() -> None:  # once the settings, directory and storage are checked: errors come alone
        err.print(f"study '{name}' in {out} ({cfg.tune.sampler} sampler, {cfg.tune.pruner} pruner, "
                  f"{'grid' if cfg.tune.sampler == 'grid' else cfg.tune.trials} trials)")

    result = tune(cfg, out=out, storage=args.storage, study_name=name, console=console(),
                  best_run=not args.no_best_run, on_start=announce)
    err.print(f"this worker ran {len(result.ran)} trials: {', '.join(map(str, result.ran)) or 'none'}")
    if not result.ran:
        err.print("the study already had its trials: raise --trials to extend it, or start another with --study")
    return 0


@cmd_tune.arguments
def _tune_args(p: argparse.ArgumentParser) -> None:
    add_train_options(p)
    p.add_argument("--trials", type=bounded_int(1, 1_000_000, "a trial count"), default=None, help="trial budget of the study (default: tune.trials)")
    p.add_argument("--sampler", choices=["grid", "random", "tpe", "cmaes"], default=None)
    p.add_argument("--pruner", choices=["none", "median", "hyperband"], default=None)
    p.add_argument("--metric", default=None, help="validation metric to tune, e.g. val_loss, val_accuracy")
    p.add_argument("--timeout", type=finite_float, default=None, help="stop starting trials after this many seconds")
    p.add_argument("--space", action="append", default=[], metavar="PATH={KIND: [...]}",
                   help="search space entry, e.g. 'optimizer.lr={log_uniform: [1e-4, 1e-1]}' "
                        "(repeatable; replaces tune.space)")
    p.add_argument("--storage", default=None, help="SQLAlchemy URL of a shared Optuna storage "
                                                   "(default: sqlite in the study directory)")
    p.add_argument("--study", default=None, help="study name: workers with the same name and storage join it")
    p.add_argument("--out", default=None, help="study directory (default: runs/NAME-tune)")
    p.add_argument("--no-best-run", action="store_true", help="skip retraining the best config into best-run/")


@command("lr-find", help="learning-rate range test: plot loss against lr and suggest an lr")
def cmd_lr_find(args: argparse.Namespace) -> int:
    from palaestra.cli import default_out
    from palaestra.config import load_config
    from palaestra.tuning.lr_find import lr_find

    cfg = load_config(args.config, overrides_from(args))
    out = Path(args.out) if args.out else default_out(f"{_study_name(cfg)}-lr-find")
    result = lr_find(cfg, out=out, start_lr=args.start_lr, end_lr=args.end_lr, steps=args.steps)
    c = console()
    c.print(f"tried {len(result.lrs)} learning rates from {result.lrs[0]:.3g} to {result.lrs[-1]:.3g} "
            f"({result.stop_reason})")
    c.print(f"lowest smoothed loss {result.min_loss:.4g} at lr {result.min_lr:.3g}; "
            f"steepest descent at lr {result.steepest_lr:.3g}")
    c.print(f"suggested lr: {result.suggested_lr:.3g}  (use it with --set optimizer.lr={result.suggested_lr:.3g})")
    for f in result.files:
        c.print(f"wrote {f}")
    return 0


@cmd_lr_find.arguments
def _lr_find_args(p: argparse.ArgumentParser) -> None:
    add_train_options(p)
    p.add_argument("--start-lr", type=finite_float, default=1e-7)
    p.add_argument("--end-lr", type=finite_float, default=10.0)
    p.add_argument("--steps", type=bounded_int(1, 100_000, "a step count"), default=100, help="optimizer steps over the lr range")
    p.add_argument("--out", default=None, help="directory for lr_find.png and lr_find.csv")
