"""Search-space parsing: the kinds, their checks, grid expansion, and JSON round-trips of list choices."""

from __future__ import annotations

import optuna
import pytest

from palaestra.config import load_config
from palaestra.errors import ConfigError
from palaestra.tuning.space import (
    decode_params,
    grid_size,
    grid_space,
    parse_param,
    parse_space,
    parse_space_option,
    sample,
)


def test_kinds_parse_and_numbers_written_like_1e_4_are_read_as_floats():
    path, spec = parse_space_option("optimizer.lr={log_uniform: [1e-4, 1e-1]}")
    p = parse_param(path, spec)
    assert (p.kind, p.args) == ("log_uniform", (1e-4, 0.1))
    assert parse_param("train.epochs", {"int": [2, 10, 4]}).grid() == [2, 6, 10]
    assert parse_param("model.dropout", {"uniform": [0, 0.5]}).args == (0.0, 0.5)


@pytest.mark.parametrize("spec, message", [
    ({"log_uniform": [0, 1]}, "low > 0"),
    ({"uniform": [1, 0]}, "above high"),
    ({"normal": [0, 1]}, "unknown kind"),
    ({"int": [1.5, 3]}, "whole numbers"),
    ({"choice": []}, "needs a list"),
    ([1, 2], "must be one of"),
])
def test_bad_entries_are_config_errors(spec, message):
    with pytest.raises(ConfigError, match=message):
        parse_param("optimizer.lr", spec)


def test_paths_are_checked_against_the_config_schema():
    base = load_config({})
    with pytest.raises(ConfigError, match="did you mean 'optimizer.lr'"):
        parse_space({"optimizer.lrr": {"uniform": [0.1, 0.2]}}, base)
    with pytest.raises(ConfigError, match="dropout"):
        parse_space({"model.dropout": {"uniform": [0.0, 1.5]}}, base)  # dropout must stay below 1
    with pytest.raises(ConfigError, match="empty"):
        parse_space({}, base)


def test_grid_needs_discrete_values_and_counts_the_product():
    space = parse_space({"model.hidden": {"choice": [[8], [16, 8]]}, "optimizer.lr": {"choice": [0.01, 0.1]},
                         "train.batch_size": {"int": [16, 48, 16]}})
    assert grid_size(space) == 2 * 2 * 3
    assert grid_space(space)["model.hidden"] == ["[8]", "[16, 8]"]  # lists travel as JSON strings
    with pytest.raises(ConfigError, match="grid sampler"):
        grid_space(parse_space({"optimizer.lr": {"uniform": [0.1, 0.2]}}))


def test_list_choices_come_back_as_lists():
    space = parse_space({"model.hidden": {"choice": [[8], [16, 8]]}})
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    trial = study.ask()
    value = sample(trial, space)["model.hidden"]
    assert value in ([8], [16, 8])
    assert decode_params(space, trial.params) == {"model.hidden": value}
