"""Checks that look at the data a run was trained on: class balance, duplicated rows, leaked features.

Pure functions over numpy/pandas, so the doctor stays cheap (milliseconds on tables of a few thousand rows).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

# A single feature whose leave-one-out prediction of the class is at least this good (balanced accuracy,
# so a majority class cannot fake it) is almost certainly a copy of the label, not a measurement.
LEAK_ACCURACY = 0.99
LEAK_CORRELATION = 0.99  # regression: |Pearson r| between one feature and the target
DUPLICATE_SHARE = 0.05  # share of test rows that also appear, identically, in the training split
IMBALANCE_RATIO = 3.0  # largest / smallest class count in the training split
METRIC_GAP = 0.10  # accuracy - macro F1: the headline metric hides the minority classes


def row_hashes(features: pd.DataFrame | np.ndarray) -> np.ndarray:
    """One uint64 per row; identical feature rows (NaN included) hash alike."""
    if isinstance(features, np.ndarray):
        features = pd.DataFrame(features.reshape(len(features), -1))
    return pd.util.hash_pandas_object(features.reset_index(drop=True), index=False).to_numpy()


def duplicate_overlap(train: pd.DataFrame | np.ndarray, test: pd.DataFrame | np.ndarray,
                      y_train: np.ndarray, y_test: np.ndarray) -> tuple[int, int]:
    """(test rows with an identical training row, of those how many carry the same label)."""
    h_train, h_test = row_hashes(train), row_hashes(test)
    label_of = dict(zip(h_train.tolist(), np.asarray(y_train).tolist(), strict=True))
    hits = [i for i, h in enumerate(h_test.tolist()) if h in label_of]
    same = sum(1 for i in hits if label_of[h_test[i].item()] == np.asarray(y_test)[i])
    return len(hits), same


def loo_balanced_accuracy(values: pd.Series, y: np.ndarray, n_classes: int) -> float:
    """How well one feature alone predicts the class, leave-one-out.

    Each row is predicted by the majority class of the *other* rows with the same value; a numeric value seen
    only once borrows the class counts of its nearest distinct value (a 1-D nearest neighbour). Leaving the row
    out is what stops an identifier-like column from scoring 1.0 by memorising itself.
    """
    y = np.asarray(y, dtype=np.int64)
    numeric = pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)
    keys = values.to_numpy(dtype=np.float64) if numeric else values.astype("string").fillna("\x00nan").to_numpy()
    codes, uniques = pd.factorize(keys, sort=numeric, use_na_sentinel=False)
    counts = np.zeros((len(uniques), n_classes))
    np.add.at(counts, (codes, y), 1)
    loo = counts[codes] - np.eye(n_classes)[y]  # (n, K): class counts of the other rows with this value
    pred = loo.argmax(1)
    alone = loo.sum(1) == 0
    if alone.any():
        if numeric:
            u = np.asarray(uniques, dtype=np.float64)
            finite = np.isfinite(u)  # NaN sorts last; never a neighbour
            pos = codes[alone]
            lo, hi = np.clip(pos - 1, 0, None), np.clip(pos + 1, None, int(finite.sum()) - 1)
            d_lo = np.where(pos > 0, np.abs(u[pos] - u[lo]), np.inf)
            d_hi = np.where(pos < finite.sum() - 1, np.abs(u[hi] - u[pos]), np.inf)
            neighbour = np.where(d_lo <= d_hi, lo, hi)
            pred[alone] = counts[neighbour].argmax(1)
        else:
            pred[alone] = np.bincount(y, minlength=n_classes).argmax()
    recalls = [float((pred[y == k] == k).mean()) for k in range(n_classes) if (y == k).any()]
    return float(np.mean(recalls)) if recalls else 0.0


def leaked_features(frame: pd.DataFrame, y: np.ndarray, task: str, n_classes: int) -> list[tuple[str, float]]:
    """Feature columns that alone predict the target (near-)perfectly: ``[(column, score), ...]``."""
    found = []
    for name in frame.columns:
        col = frame[name]
        if task == "classification":
            score = loo_balanced_accuracy(col, y, n_classes)
            if score >= LEAK_ACCURACY:
                found.append((str(name), score))
        elif pd.api.types.is_numeric_dtype(col):
            x = col.to_numpy(dtype=np.float64)
            ok = np.isfinite(x) & np.isfinite(y)
            if ok.sum() < 3 or np.std(x[ok]) == 0 or np.std(y[ok]) == 0:
                continue
            r = float(np.corrcoef(x[ok], y[ok])[0, 1])
            if abs(r) >= LEAK_CORRELATION:
                found.append((str(name), r))
    return found


def worst_recall(confusion: list[list[int]], classes: list) -> tuple[str, float] | None:
    """The class the model finds least often (rows of the confusion matrix are the true classes)."""
    cm = np.asarray(confusion, dtype=np.float64)
    if cm.ndim != 2 or cm.shape[0] == 0:
        return None
    support = cm.sum(1)
    recall = np.divide(np.diag(cm), support, out=np.full(len(cm), np.nan), where=support > 0)
    if np.isnan(recall).all():
        return None
    k = int(np.nanargmin(recall))
    return str(classes[k]) if k < len(classes) else str(k), float(recall[k])
