"""Sequence arrays: NaN padding -> lengths, statistics from the training split, JSON round trip, layouts."""

from __future__ import annotations

import json

import numpy as np
import pytest

from palaestra.config import DataConfig, load_config
from palaestra.data.features import ArrayFeature, FitOptions, input_from_dict
from palaestra.data.prepare import prepare_data
from palaestra.data.raw import SequenceArrays
from palaestra.data.sources import ArrayData
from palaestra.errors import DataError
from palaestra.models import resolve_layout


def _sequences(x):
    return ArrayFeature.fit("x", x, FitOptions(), layout="sequence")


def test_trailing_nan_is_padding_and_statistics_skip_it():
    x = np.array([[1.0, 3.0, np.nan, np.nan], [5.0, 7.0, 9.0, 11.0]])
    pre = _sequences(x[:, :, None])
    real = np.array([1.0, 3.0, 5.0, 7.0, 9.0, 11.0])
    assert pre.mean == pytest.approx([real.mean()]) and pre.std == pytest.approx([real.std()])
    z, lengths = pre.transform(x)
    assert lengths.tolist() == [2, 4]
    assert z.shape == (2, 4, 1) and z[0, 2:].tolist() == [[0.0], [0.0]]
    assert z[1, 0, 0] == pytest.approx((5.0 - real.mean()) / real.std())
    again = input_from_dict(json.loads(json.dumps(pre.to_dict())))
    assert np.array_equal(again.transform(x)[0], z)


def test_bad_sequences_are_plain_errors():
    pre = _sequences(np.ones((2, 4, 1)) * [[[0.0]], [[1.0]]])
    with pytest.raises(DataError, match="inside"):
        pre.transform(np.array([[1.0, np.nan, 2.0, 3.0]]))
    with pytest.raises(DataError, match="features"):
        pre.transform(np.ones((1, 4, 3)))
    with pytest.raises(DataError, match="at most 4"):
        pre.transform(np.ones((1, 6)))
    assert pre.transform(np.ones((1, 3)))[1].tolist() == [3]  # shorter: padded to the trained length


def test_fixed_test_set_and_train_only_statistics():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(100, 6)).astype(np.float32)
    x[80:] += 50.0  # a shifted test set must not move the fitted statistics
    y = np.arange(100) % 2
    data = prepare_data(DataConfig(source="mnist1d"), 0, source=SequenceArrays(x=x, y=y, test_size=20))
    assert data.test.index.tolist() == list(range(80, 100))
    assert len(data.train) + len(data.val) == 80 and max(data.train.index) < 80
    assert abs(data.preprocessor.array.mean[0]) < 0.5
    assert data.spec.kind == "sequence" and data.spec.input_names == ["x", "lengths"]


def test_family_decides_how_npz_arrays_are_read():
    x = np.random.default_rng(1).normal(size=(40, 8, 8)).astype(np.float32)
    raw = ArrayData(x=x, y=np.arange(40) % 2)
    gru = load_config({"model": {"family": "gru"}, "data": {"source": "x.npz"}})
    assert prepare_data(resolve_layout(gru), 0, source=raw).spec.kind == "sequence"
    cnn = load_config({"model": {"family": "cnn"}, "data": {"source": "x.npz"}})
    assert prepare_data(resolve_layout(cnn), 0, source=raw).spec.kind == "image"  # unchanged: (N, H, W) images
    mlp = load_config({"model": {"family": "mlp"}, "data": {"source": "mnist1d"}})
    flat = SequenceArrays(x=x[:, 0], y=np.arange(40) % 2, test_size=10)
    assert prepare_data(resolve_layout(mlp), 0, source=flat).spec.kind == "vector"  # a built-in sequence set, flat
    gan = load_config({"model": {"family": "gan"}, "data": {"source": "x.npz"}})
    assert resolve_layout(gan).task == "generation"
