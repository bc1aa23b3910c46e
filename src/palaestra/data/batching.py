"""Mini-batches.

``TensorBatcher`` slices in-memory tensors by a shuffled index: no per-sample ``__getitem__``, no collate,
one gather per tensor per batch. ``LoaderBatcher`` goes through ``torch.utils.data.DataLoader`` (workers,
pinned memory) with the same order. Both draw each epoch's permutation from their own generator, so the
order is reproducible, resumable from (generator state at epoch start, batch position), and shardable
across data-parallel ranks.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import DataLoader, Sampler, TensorDataset


class _Order:
    """Each epoch's sample order for one rank: a permutation drawn from a seeded generator."""

    def __init__(self, n: int, batch_size: int, shuffle: bool, seed: int, rank: int = 0, world_size: int = 1,
                 drop_last: bool = False):
        self.n, self.batch_size, self.shuffle = n, batch_size, shuffle
        self.rank, self.world_size, self.drop_last = rank, world_size, drop_last
        self.generator = torch.Generator().manual_seed(seed)
        self.epoch_start_state = self.generator.get_state()
        self.position = 0  # batches already consumed in the current epoch

    def new_epoch(self) -> torch.Tensor:
        self.epoch_start_state = self.generator.get_state()
        return self._draw()

    def _draw(self) -> torch.Tensor:
        order = torch.randperm(self.n, generator=self.generator) if self.shuffle else torch.arange(self.n)
        if self.world_size > 1:
            # Pad to a multiple of world_size (like DistributedSampler) so every rank takes the same steps.
            per_rank = -(-self.n // self.world_size)
            total = per_rank * self.world_size
            if total > self.n:
                order = torch.cat([order, order[: total - self.n]])
            order = order[self.rank:total:self.world_size]
        return order

    def replay_epoch(self) -> torch.Tensor:
        """The current epoch's order again (after a resume), leaving the generator as after ``new_epoch``."""
        self.generator.set_state(self.epoch_start_state)
        return self._draw()

    def num_batches(self) -> int:
        n = -(-self.n // self.world_size) if self.world_size > 1 else self.n
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def state_dict(self) -> dict:
        return {"epoch_start_state": self.epoch_start_state.clone(), "position": self.position}

    def load_state_dict(self, state: dict) -> None:
        self.epoch_start_state = state["epoch_start_state"].clone()
        self.generator.set_state(self.epoch_start_state)
        self.position = int(state["position"])


class TensorBatcher:
    """Yields tuples of tensors ``(input_1, ..., target)`` sliced from in-memory tensors.

    >>> b = TensorBatcher((torch.arange(10.0), torch.arange(10)), batch_size=4, shuffle=False)
    >>> [len(batch[0]) for batch in b]
    [4, 4, 2]
    """

    def __init__(self, tensors: Sequence[torch.Tensor], batch_size: int, shuffle: bool = True, seed: int = 0,
                 rank: int = 0, world_size: int = 1, drop_last: bool = False, device: torch.device | None = None):
        self.tensors = tuple(tensors)
        self.order = _Order(len(self.tensors[0]), batch_size, shuffle, seed, rank, world_size, drop_last)
        self.device = device
        self._resumed = False

    def __len__(self) -> int:
        return self.order.num_batches()

    def __iter__(self) -> Iterator[tuple[torch.Tensor, ...]]:
        o = self.order
        if self._resumed:
            perm, start = o.replay_epoch(), o.position
            self._resumed = False
        else:
            perm, start = o.new_epoch(), 0
            o.position = 0
        bs = o.batch_size
        for b in range(start, len(self)):
            idx = perm[b * bs:(b + 1) * bs]
            o.position = b + 1
            if self.device is not None and self.device.type != "cpu":
                yield tuple(t[idx].pin_memory().to(self.device, non_blocking=True) for t in self.tensors)
            else:
                yield tuple(t[idx] for t in self.tensors)
        o.position = len(self)

    def state_dict(self) -> dict:
        return self.order.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.order.load_state_dict(state)
        self._resumed = 0 < self.order.position < len(self)
        if self.order.position >= len(self):
            # The epoch had finished: the generator must stand after that epoch's draw.
            self.order.replay_epoch()


class _OrderSampler(Sampler[int]):
    def __init__(self, batcher: LoaderBatcher):
        self.batcher = batcher

    def __iter__(self) -> Iterator[int]:
        return iter(self.batcher._current.tolist())

    def __len__(self) -> int:
        return len(self.batcher._current)


class LoaderBatcher(TensorBatcher):
    """Same order as ``TensorBatcher`` but through a ``DataLoader`` (a ``Dataset`` that need not be tensors)."""

    def __init__(self, tensors: Sequence[torch.Tensor], batch_size: int, shuffle: bool = True, seed: int = 0,
                 rank: int = 0, world_size: int = 1, drop_last: bool = False, device: torch.device | None = None,
                 num_workers: int = 0, dataset: torch.utils.data.Dataset | None = None):
        super().__init__(tensors, batch_size, shuffle, seed, rank, world_size, drop_last, device)
        self.dataset = dataset if dataset is not None else TensorDataset(*self.tensors)
        self.num_workers = num_workers
        self._current = torch.arange(0)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, ...]]:
        o = self.order
        if self._resumed:
            perm, start = o.replay_epoch(), o.position
            self._resumed = False
        else:
            perm, start = o.new_epoch(), 0
            o.position = 0
        self._current = perm[start * o.batch_size:]
        pin = self.device is not None and self.device.type == "cuda"
        loader = DataLoader(self.dataset, batch_size=o.batch_size, sampler=_OrderSampler(self),
                            num_workers=self.num_workers, pin_memory=pin, drop_last=o.drop_last)
        for b, batch in enumerate(loader, start=start):
            o.position = b + 1
            if pin:
                batch = [t.to(self.device, non_blocking=True) for t in batch]
            yield tuple(batch)
        o.position = len(self)
