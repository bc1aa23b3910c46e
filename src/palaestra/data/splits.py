"""Train/val/test and k-fold splits: seeded, stratified for classification where the counts allow."""

from __future__ import annotations

import numpy as np
from sklearn.model_selection import KFold, StratifiedKFold, train_test_split


def _can_stratify(y: np.ndarray | None, n_parts: int) -> bool:
    if y is None:
        return False
    _, counts = np.unique(y, return_counts=True)
    return bool(counts.min() >= n_parts)


def split_indices(n: int, y: np.ndarray | None, train: float, val: float, test: float, seed: int,
                  stratify: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices of the train, val and test rows. ``y`` (class codes) stratifies when given and feasible."""
    idx = np.arange(n)
    strat = stratify and _can_stratify(y, 3)
    rest = val + test
    if rest <= 0:
        return idx, idx[:0], idx[:0]
    tr, other = train_test_split(idx, test_size=rest, random_state=seed, stratify=y if strat else None)
    if val <= 0:
        return np.sort(tr), other[:0], np.sort(other)
    if test <= 0:
        return np.sort(tr), np.sort(other), other[:0]
    strat2 = strat and _can_stratify(y[other], 2)
    va, te = train_test_split(other, test_size=test / rest, random_state=seed,
                              stratify=y[other] if strat2 else None)
    return np.sort(tr), np.sort(va), np.sort(te)


def kfold_indices(n: int, y: np.ndarray | None, k: int, seed: int, stratify: bool = True) -> list[tuple[np.ndarray, np.ndarray]]:
    """K (train, val) index pairs for cross-validation; each row is in exactly one val fold."""
    idx = np.arange(n)
    if stratify and _can_stratify(y, k):
        folds = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed).split(idx, y)
    else:
        folds = KFold(n_splits=k, shuffle=True, random_state=seed).split(idx)
    return [(np.asarray(a), np.asarray(b)) for a, b in folds]
