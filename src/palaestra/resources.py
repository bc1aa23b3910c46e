"""What this machine can give a run: CPUs and memory, checked before anything large is allocated.

The config schema bounds every size by what any machine could hold (``config.py``); this module bounds it by
what *this* machine has, so ``--set model.hidden=[100000000000]`` or ``--set train.threads=100000000`` is a
plain ``ConfigError`` (exit 2) instead of an allocator traceback or the kernel's OOM killer.

>>> from palaestra.resources import machine_cpus
>>> machine_cpus() >= 1
True
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from palaestra.config import Config, ModelConfig
from palaestra.errors import ConfigError

# Training holds each parameter about four times: the weights, their gradients and two optimizer moments (Adam).
TRAINING_COPIES = 4
SIZE_KNOBS = "model.hidden, model.channels, model.hidden_size, model.d_model, model.ff_dim, model.embedding_dim"


def machine_cpus() -> int:
    """CPUs this process may run on (its affinity mask, e.g. under a container's cpuset), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def machine_memory() -> int | None:
    """Bytes of memory this machine can give a process: physical memory, capped by a cgroup (container) limit;
    None if unknown. The capacity, not what happens to be free now: a model that needs more can never train
    here, while one that fits the machine but not the moment is the operating system's to page, not ours to refuse.
    """
    found: list[int] = []
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                found.append(int(line.split()[1]) * 1024)
    except (OSError, ValueError, IndexError):
        pass
    try:  # cgroup v2: the container's own limit, when it has one ("max" when it has none)
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit.isdigit():
            found.append(int(limit))
    except OSError:
        pass
    if not found:
        try:
            found.append(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
        except (AttributeError, ValueError, OSError):
            return None
    return min(found)


def check_machine(config: Config) -> None:
    """Refuse thread and worker counts this machine cannot run (ConfigError, naming the knob)."""
    cpus = machine_cpus()
    if config.train.threads is not None and config.train.threads > cpus:
        raise ConfigError(f"train.threads is {config.train.threads} but this machine gives this process {cpus} "
                          f"CPU{'s' if cpus > 1 else ''}: use at most {cpus} (or leave it unset)")
    if config.data.num_workers > 4 * cpus:
        raise ConfigError(f"data.num_workers is {config.data.num_workers}: this machine has {cpus} CPUs, so use at "
                          f"most {4 * cpus} loader processes")


def parameter_count(build, spec, cfg: ModelConfig) -> int | None:
    """Parameters the model would have, counted on the ``meta`` device (shapes only, no memory); None when the
    family cannot be built there (e.g. it loads pretrained weights)."""
    try:  # forked RNG: the real build that follows draws exactly the weights it would have drawn anyway
        with torch.random.fork_rng(devices=[]), torch.device("meta"):
            model = build(spec, cfg)
    except ConfigError:
        raise
    except Exception:  # noqa: BLE001 - only an estimate: the real build below still runs and is guarded
        return None
    return sum(p.numel() for p in model.parameters()) + sum(b.numel() for b in model.buffers())


def build_within_memory(build, spec, cfg: ModelConfig, device: torch.device | None = None) -> nn.Module:
    """``build(spec, cfg)``, refused with a ConfigError when training it would not fit in this machine's memory.

    ``build`` is the model registry's ``build_model``; it is passed in so this module imports no model code.
    """
    n = parameter_count(build, spec, cfg)
    memory = _device_memory(device) if device is not None and device.type == "cuda" else machine_memory()
    if n is not None and memory is not None and n * 4 * TRAINING_COPIES > memory:
        need = n * 4 * TRAINING_COPIES
        raise ConfigError(f"the model would have {n:,} parameters: training it needs about {_gib(need)} "
                          f"(weights, gradients, optimizer state) but this machine has {_gib(memory)} of memory; "
                          f"make it smaller ({SIZE_KNOBS})")
    try:
        return build(spec, cfg)
    except (torch.OutOfMemoryError, MemoryError):
        raise ConfigError(f"the model does not fit in this machine's memory; make it smaller ({SIZE_KNOBS})") from None
    except RuntimeError as exc:
        if "allocate" not in str(exc):
            raise
        raise ConfigError(f"the model does not fit in this machine's memory; make it smaller ({SIZE_KNOBS})") from None


def _device_memory(device: torch.device) -> int | None:
    try:
        return int(torch.cuda.mem_get_info(device)[1])  # the device's total memory
    except (RuntimeError, AssertionError):
        return None


def _gib(n: int) -> str:
    return f"{n / 2**30:,.1f} GiB" if n >= 2**28 else f"{n / 2**20:,.0f} MiB"
