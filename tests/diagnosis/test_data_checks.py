"""The doctor's data checks on hand-made columns: no training, numbers worked out by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd

from palaestra.diagnosis import data_checks as dc


def test_a_label_copy_scores_one_and_an_identifier_scores_nothing():
    y = np.array([0, 1, 2] * 20)
    copy = pd.Series(np.array(["a", "b", "c"])[y])
    assert dc.loo_balanced_accuracy(copy, y, 3) == 1.0
    ids = pd.Series([f"row{i}" for i in range(60)])  # unique per row: leaving the row out leaves nothing to match
    assert dc.loo_balanced_accuracy(ids, y, 3) <= 1 / 3


def test_a_numeric_threshold_feature_is_found_by_its_neighbours():
    x = np.linspace(-1, 1, 101)
    y = (x > 0.1).astype(int)
    assert dc.loo_balanced_accuracy(pd.Series(x), y, 2) >= 0.98
    noise = np.random.default_rng(0).normal(size=101)
    assert dc.loo_balanced_accuracy(pd.Series(noise), y, 2) < 0.8


def test_leaked_features_names_only_the_leak():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    frame = pd.DataFrame({"noise": rng.normal(size=200), "leak": np.where(y == 1, "yes", "no")})
    assert [n for n, _ in dc.leaked_features(frame, y, "classification", 2)] == ["leak"]
    target = rng.normal(size=200)
    frame = pd.DataFrame({"noise": rng.normal(size=200), "scaled": -2 * target + 1})
    (name, r), = dc.leaked_features(frame, target, "regression", 0)
    assert name == "scaled" and np.isclose(r, -1.0)


def test_duplicate_overlap_counts_copies_and_their_labels():
    train = pd.DataFrame({"a": [1.0, 2.0, 3.0, np.nan], "b": ["x", "y", "z", "w"]})
    test = pd.DataFrame({"a": [2.0, np.nan, 5.0], "b": ["y", "w", "x"]})
    assert dc.duplicate_overlap(train, test, np.array([0, 1, 0, 1]), np.array([1, 0, 0])) == (2, 1)


def test_worst_recall_reads_true_classes_from_rows():
    cm = [[10, 0], [4, 1]]  # rows: true class
    assert dc.worst_recall(cm, ["a", "b"]) == ("b", 0.2)
