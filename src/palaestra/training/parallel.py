"""Data-parallel training on ``torch.distributed``: the worker side the pipeline and the loop use.

Under torchrun (``palaestra train --nproc N``, launched by ``palaestra.distributed``), ``setup`` gives
``pipeline.train`` a ``DistContext`` (from torchrun's ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``), and with one
it shards each epoch's order across ranks, wraps the model in ``DistributedDataParallel`` (gradients averaged
across ranks), averages the training loss (``reduce_sum``), and lets only rank 0 print and write.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from palaestra.errors import UserError


@dataclass(frozen=True)
class DistContext:
    """This process's place in a data-parallel job."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        """Wait until every rank reaches this point."""
        dist.barrier()

    def local_metrics(self, metrics):
        """``metrics`` (a ``MetricSet``) computed from this rank's updates only. Every rank evaluates the whole
        validation and test sets, so torchmetrics' default gathering of all ranks' states at ``compute`` would
        count every sample ``world_size`` times (the values would survive, the confusion matrix would not)."""
        for metric in metrics.all_metrics:
            metric.sync_on_compute = False
            metric._to_sync = False  # torchmetrics copies the flag at construction
        return metrics

    def wrap(self, model: nn.Module) -> nn.Module:
        """``model`` inside ``DistributedDataParallel`` (weights are broadcast from rank 0 here)."""
        ids = [self.device.index] if self.device.type == "cuda" else None
        return _DataParallel(model, device_ids=ids)


class _DataParallel(nn.parallel.DistributedDataParallel):
    """DDP that reads like the model it wraps: the same ``state_dict`` keys and parameter names (no
    ``module.`` prefix), so checkpoints, best weights and gradient diagnostics match single-process runs.
    Evaluation runs the wrapped model directly (no collectives), after taking rank 0's buffers."""

    def state_dict(self, *args, **kwargs):
        return self.module.state_dict(*args, **kwargs)

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        return self.module.load_state_dict(state_dict, strict=strict, assign=assign)

    def named_parameters(self, prefix: str = "", recurse: bool = True, remove_duplicate: bool = True):
        return self.module.named_parameters(prefix, recurse, remove_duplicate)

    def train(self, mode: bool = True):
        super().train(mode)
        if not mode:
            # Batch-norm statistics drift per rank between the training forwards that sync them: evaluate
            # with rank 0's, so every rank computes the same validation metrics.
            for buffer in self.module.buffers():
                dist.broadcast(buffer.data, src=0)
        return self

    def forward(self, *inputs, **kwargs):
        if not self.training:
            return self.module(*inputs, **kwargs)
        return super().forward(*inputs, **kwargs)


def env_int(name: str) -> int | None:
    value = os.environ.get(name)
    return int(value) if value not in (None, "") else None


def setup(device: torch.device) -> DistContext | None:
    """Join the job torchrun started (its ``RANK``/``WORLD_SIZE`` env vars), or ``None`` in a single process.

    The process group uses gloo on CPU and NCCL on CUDA; each rank takes GPU ``LOCAL_RANK``.
    """
    if dist.is_available() and dist.is_initialized():
        rank, world = dist.get_rank(), dist.get_world_size()
    else:
        world = env_int("WORLD_SIZE")
        rank = env_int("RANK")
        if world is None or world <= 1 or rank is None:
            return None
    if world <= 1:
        return None
    local_rank = env_int("LOCAL_RANK") or 0
    if device.type == "cuda":
        if torch.cuda.device_count() <= local_rank:
            raise UserError(f"rank {rank} needs GPU {local_rank} but this machine has {torch.cuda.device_count()}")
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=rank, world_size=world)
    return DistContext(rank, world, local_rank, device)


def reduce_sum(total: torch.Tensor, count: int, model: nn.Module) -> tuple[torch.Tensor, int]:
    """(sum, count) over every rank when ``model`` trains data-parallel; unchanged otherwise."""
    if not isinstance(model, nn.parallel.DistributedDataParallel):
        return total, count
    both = torch.stack([total.detach().double(), torch.tensor(float(count), dtype=torch.float64, device=total.device)])
    dist.all_reduce(both)
    return both[0].to(total.dtype), int(both[1].item())
