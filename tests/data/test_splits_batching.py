"""Seeded, stratified splits; k-fold coverage; the two batchers agree batch for batch."""

import numpy as np
import pytest
import torch

from palaestra.data.batching import LoaderBatcher, TensorBatcher
from palaestra.data.splits import kfold_indices, split_indices

Y = np.array(["a"] * 60 + ["b"] * 30 + ["c"] * 10)


def test_same_seed_same_split_other_seed_other_split():
    a = split_indices(len(Y), Y, 0.7, 0.15, 0.15, seed=3)
    b = split_indices(len(Y), Y, 0.7, 0.15, 0.15, seed=3)
    c = split_indices(len(Y), Y, 0.7, 0.15, 0.15, seed=4)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not np.array_equal(a[0], c[0])


def test_splits_are_disjoint_and_cover_every_row():
    tr, va, te = split_indices(len(Y), Y, 0.7, 0.15, 0.15, seed=0)
    assert (len(tr), len(va), len(te)) == (70, 15, 15)
    assert np.array_equal(np.sort(np.concatenate([tr, va, te])), np.arange(len(Y)))


def test_stratified_splits_keep_class_proportions():
    for part in split_indices(len(Y), Y, 0.7, 0.15, 0.15, seed=0):
        for cls, share in (("a", 0.6), ("b", 0.3), ("c", 0.1)):
            assert abs((Y[part] == cls).sum() - share * len(part)) <= 1, (cls, len(part))


def test_zero_ratios_give_empty_splits():
    tr, va, te = split_indices(len(Y), Y, 0.85, 0.15, 0.0, seed=0)
    assert len(te) == 0 and len(tr) + len(va) == len(Y)
    tr, va, te = split_indices(len(Y), Y, 0.8, 0.0, 0.2, seed=0)
    assert len(va) == 0 and len(te) == 20


def test_regression_split_without_labels():
    tr, va, te = split_indices(50, None, 0.6, 0.2, 0.2, seed=1)
    assert (len(tr), len(va), len(te)) == (30, 10, 10)


@pytest.mark.parametrize("y", [Y, None])
def test_kfold_puts_every_row_in_exactly_one_val_fold(y):
    folds = kfold_indices(len(Y), y, k=5, seed=0)
    assert len(folds) == 5
    val = np.concatenate([v for _, v in folds])
    assert np.array_equal(np.sort(val), np.arange(len(Y)))
    for train, v in folds:
        assert not set(train) & set(v) and len(train) + len(v) == len(Y)
    if y is not None:
        assert all((Y[v] == "c").sum() == 2 for _, v in folds)  # stratified: 10 'c' rows over 5 folds


def _epochs(batcher, n_epochs=2):
    return [[tuple(t.clone() for t in batch) for batch in batcher] for _ in range(n_epochs)]


def test_tensor_and_loader_batchers_yield_identical_batches():
    x = torch.randn(37, 3)
    y = torch.arange(37)
    fast = _epochs(TensorBatcher((x, y), 8, shuffle=True, seed=5))
    loader = _epochs(LoaderBatcher((x, y), 8, shuffle=True, seed=5))
    assert [len(e) for e in fast] == [5, 5]
    for ea, eb in zip(fast, loader, strict=True):
        for ba, bb in zip(ea, eb, strict=True):
            assert all(torch.equal(a, b) for a, b in zip(ba, bb, strict=True))
    assert not torch.equal(fast[0][0][1], fast[1][0][1])  # a new order each epoch


def test_batcher_order_is_the_documented_permutation():
    y = torch.arange(20)
    got = torch.cat([b[0] for b in TensorBatcher((y,), 6, shuffle=True, seed=11)])
    g = torch.Generator().manual_seed(11)
    assert torch.equal(got, torch.randperm(20, generator=g))
    assert torch.equal(torch.cat([b[0] for b in TensorBatcher((y,), 6, shuffle=False)]), y)


def test_each_epoch_visits_every_sample_once():
    y = torch.arange(23)
    for epoch in _epochs(TensorBatcher((y,), 5, seed=0), 3):
        assert torch.equal(torch.sort(torch.cat([b[0] for b in epoch])).values, y)
