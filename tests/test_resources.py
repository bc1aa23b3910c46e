"""Machine limits (issue 16): sizes bounded by what this machine has, checked before anything is allocated."""

from __future__ import annotations

import pytest
import torch

from palaestra import resources
from palaestra.config import load_config
from palaestra.errors import ConfigError
from palaestra.models.registry import build_model


@pytest.fixture(scope="module")
def spec():
    from palaestra.data.prepare import prepare_data

    return prepare_data(load_config(None).data, 0).spec


def test_parameters_are_counted_without_allocating_or_drawing_random_numbers(spec):
    cfg = load_config(None, ["model.hidden=[16, 8]"]).model
    torch.manual_seed(0)
    counted = resources.parameter_count(build_model, spec, cfg)
    after = torch.rand(1)
    torch.manual_seed(0)
    model = build_model(spec, cfg)
    assert counted == sum(p.numel() for p in model.parameters()) + sum(b.numel() for b in model.buffers())
    torch.manual_seed(0)
    assert torch.equal(after, torch.rand(1))  # the real build draws the same weights as without the count


def test_a_model_beyond_the_available_memory_is_refused_before_it_is_built(spec, monkeypatch):
    monkeypatch.setattr(resources, "machine_memory", lambda: 1 << 20)  # a machine with 1 MiB of memory
    built = []
    with pytest.raises(ConfigError, match="parameters"):
        resources.build_within_memory(lambda s, c: built.append(1) or build_model(s, c), spec,
                                      load_config(None, ["model.hidden=[4096, 4096]"]).model)
    assert built == [1]  # only the shape-only count on the meta device ran
    small = resources.build_within_memory(build_model, spec, load_config(None, ["model.hidden=[8]"]).model)
    assert sum(p.numel() for p in small.parameters()) < 1000


def test_threads_and_workers_are_bounded_by_the_cpus(monkeypatch):
    monkeypatch.setattr(resources, "machine_cpus", lambda: 2)
    resources.check_machine(load_config(None, ["train.threads=2", "data.num_workers=8"]))
    with pytest.raises(ConfigError, match="train.threads is 3"):
        resources.check_machine(load_config(None, ["train.threads=3"]))
    with pytest.raises(ConfigError, match="data.num_workers"):
        resources.check_machine(load_config(None, ["data.num_workers=9"]))
