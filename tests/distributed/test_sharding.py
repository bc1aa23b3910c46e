"""Sharding: at every step, the ranks' batches together are the single process's batch of world_size times the size."""

from __future__ import annotations

import pytest
import torch

from palaestra.data.batching import LoaderBatcher, TensorBatcher


@pytest.mark.parametrize("cls", [TensorBatcher, LoaderBatcher])
@pytest.mark.parametrize("n,world,per_rank", [(40, 2, 6), (36, 3, 4), (8, 2, 4)])
def test_each_global_step_holds_the_single_process_batch(cls, n, world, per_rank):
    data = (torch.arange(n),)
    single = [b[0] for _ in range(2) for b in TensorBatcher(data, per_rank * world, seed=5)]  # two epochs
    ranks = [[b[0] for _ in range(2) for b in cls(data, per_rank, seed=5, rank=r, world_size=world)]
             for r in range(world)]
    assert all(len(r) == len(single) for r in ranks)  # every rank takes the same number of steps
    for step, expected in enumerate(single):
        together = torch.cat([r[step] for r in ranks])
        assert sorted(together.tolist()) == sorted(expected.tolist()), step
        assert len({len(r[step]) for r in ranks}) == 1  # equal shares: DDP's mean of means is the global mean


def test_a_remainder_is_padded_so_ranks_stay_in_step():
    data = (torch.arange(7),)
    ranks = [list(TensorBatcher(data, 2, seed=0, rank=r, world_size=2)) for r in range(2)]
    assert [len(r) for r in ranks] == [2, 2]
    seen = torch.cat([b[0] for r in ranks for b in r])
    assert len(seen) == 8 and set(seen.tolist()) == set(range(7))  # one sample repeated, none dropped
