"""Metric parity: Palaestra's streaming MetricSet against one-shot scikit-learn on the same seeded data."""

import math

import numpy as np
import pytest
import torch
from sklearn import metrics as skm
from torchmetrics.classification import MulticlassCalibrationError

from palaestra.evaluation.metrics import MetricSet, scalar_metrics

TOL = 1e-6


def _stream(ms: MetricSet, outputs: torch.Tensor, target: torch.Tensor, sizes=(7, 50, 1, 33)) -> dict:
    """Feed uneven batches (one of a single row), then compute once."""
    start = 0
    for size in list(sizes) + [len(target)]:
        stop = min(start + size, len(target))
        if stop > start:
            ms.update(outputs[start:stop], target[start:stop])
        start = stop
    return ms.compute()


def _classification_data(k: int, n: int = 240, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    target = torch.randint(0, k, (n,), generator=g)
    # Informative but imperfect logits: the true class gets a bump, plus noise.
    logits = torch.randn(n, k, generator=g) + 1.2 * torch.nn.functional.one_hot(target, k)
    return logits, target


@pytest.mark.parametrize("k", [3, 5])
def test_multiclass_metrics_match_sklearn(k):
    logits, target = _classification_data(k, seed=k)
    got = _stream(MetricSet("classification", k, classes=list(range(k))), logits, target)
    probs = logits.softmax(-1).numpy().astype(np.float64)
    y, pred = target.numpy(), probs.argmax(1)
    assert len(set(pred)) == k  # every class predicted at least once: no zero-division conventions involved
    want = {
        "accuracy": skm.accuracy_score(y, pred),
        "precision_macro": skm.precision_score(y, pred, average="macro"),
        "recall_macro": skm.recall_score(y, pred, average="macro"),
        "f1_macro": skm.f1_score(y, pred, average="macro"),
        "f1_weighted": skm.f1_score(y, pred, average="weighted"),
        "roc_auc": skm.roc_auc_score(y, probs, multi_class="ovr", average="macro"),
        # expected calibration error over 15 bins (tests/evaluation/test_calibration.py checks it by hand too)
        "ece": float(MulticlassCalibrationError(k, n_bins=15)(torch.tensor(probs), target)),
    }
    for name, value in want.items():
        assert got[name] == pytest.approx(value, abs=TOL), name
    assert got["confusion_matrix"] == skm.confusion_matrix(y, pred, labels=list(range(k))).tolist()
    assert got["classes"] == list(range(k))
    assert set(scalar_metrics(got)) == set(want)


def test_binary_metrics_match_sklearn():
    logits, target = _classification_data(2, n=301, seed=11)
    got = _stream(MetricSet("classification", 2, classes=["no", "yes"]), logits, target)
    probs = logits.softmax(-1).numpy().astype(np.float64)
    y, pred = target.numpy(), probs.argmax(1)
    assert got["accuracy"] == pytest.approx(skm.accuracy_score(y, pred), abs=TOL)
    assert got["f1_macro"] == pytest.approx(skm.f1_score(y, pred, average="macro"), abs=TOL)
    assert got["roc_auc"] == pytest.approx(skm.roc_auc_score(y, probs[:, 1]), abs=TOL)
    assert got["confusion_matrix"] == skm.confusion_matrix(y, pred).tolist()


@pytest.mark.parametrize("chunk_elements", [1, 100, 1 << 22])  # a torchmetrics update per batch, per few, once
def test_streaming_equals_one_batch(chunk_elements):
    logits, target = _classification_data(4, n=200, seed=3)
    streamed = _stream(MetricSet("classification", 4, chunk_elements=chunk_elements), logits, target)
    whole = MetricSet("classification", 4)
    whole.update(logits, target)
    assert streamed == whole.compute()


@pytest.mark.parametrize("chunk_elements", [1, 100, 1 << 22])
def test_regression_streaming_in_chunks_matches_sklearn(chunk_elements):
    g = torch.Generator().manual_seed(11)
    target = torch.randn(300, generator=g)
    outputs = (target + 0.5 * torch.randn(300, generator=g)).unsqueeze(1)
    got = _stream(MetricSet("regression", chunk_elements=chunk_elements), outputs, target)
    assert got["r2"] == pytest.approx(skm.r2_score(target.double().numpy(), outputs[:, 0].double().numpy()), abs=TOL)


def test_reset_forgets_earlier_batches():
    logits, target = _classification_data(3, n=90, seed=5)
    ms = MetricSet("classification", 3)
    ms.update(logits, (target + 1) % 3)  # all wrong-ish
    ms.reset()
    ms.update(logits, target)
    fresh = MetricSet("classification", 3)
    fresh.update(logits, target)
    assert ms.compute() == fresh.compute()


def test_regression_metrics_match_sklearn_in_original_units():
    g = torch.Generator().manual_seed(7)
    n, mean, std = 257, 150.0, 40.0
    target = torch.randn(n, generator=g)  # standardized, as the loop sees it
    outputs = (target + 0.4 * torch.randn(n, generator=g)).unsqueeze(1)  # (B, 1), as the model gives
    got = _stream(MetricSet("regression", target_mean=mean, target_std=std), outputs, target)
    y = target.double().numpy() * std + mean
    p = outputs[:, 0].double().numpy() * std + mean
    assert got["mse"] == pytest.approx(skm.mean_squared_error(y, p), rel=1e-5)
    assert got["rmse"] == pytest.approx(math.sqrt(skm.mean_squared_error(y, p)), rel=1e-5)
    assert got["mae"] == pytest.approx(skm.mean_absolute_error(y, p), rel=1e-5)
    assert got["r2"] == pytest.approx(skm.r2_score(y, p), abs=TOL)


def test_perfect_and_hand_worked_values():
    # Two of four right: accuracy 0.5, which a reader can check by hand.
    ms = MetricSet("classification", 2)
    ms.update(torch.tensor([[3.0, 0.0], [0.0, 3.0], [3.0, 0.0], [0.0, 3.0]]), torch.tensor([0, 0, 1, 1]))
    out = ms.compute()
    assert out["accuracy"] == 0.5
    assert out["confusion_matrix"] == [[1, 1], [1, 1]]
    reg = MetricSet("regression")
    reg.update(torch.tensor([[1.0], [2.0], [3.0]]), torch.tensor([1.0, 2.0, 3.0]))
    r = reg.compute()
    assert r["mse"] == 0.0 and r["mae"] == 0.0 and r["r2"] == 1.0
