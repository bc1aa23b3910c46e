"""The numeric encodings (`data.numeric_encoding`): quantile normal scores against scikit-learn's
QuantileTransformer, the piecewise-linear bins against their definition, and the ONNX graph against both."""

from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
import pandas as pd
import pytest
from sklearn.preprocessing import QuantileTransformer

from palaestra.data.features import FitOptions, NumericFeature, input_from_dict
from palaestra.data.features.outputs import CategoryOutput
from palaestra.data.preprocess import FeaturePreprocessor
from palaestra.deployment.onnx_graph import preprocessing_graph, raw_feed

rng = np.random.default_rng(0)
SPIKED = np.concatenate([np.zeros(600), rng.lognormal(0, 1.5, 1400)])  # a spike of zeros and a long tail


def fit(values: np.ndarray, encoding: str, bins: int = 16) -> NumericFeature:
    return NumericFeature.fit("x", pd.Series(values), FitOptions(numeric_encoding=encoding, numeric_bins=bins))


def test_quantile_scores_are_scikit_learns_at_the_training_quantiles():
    values = rng.normal(5, 2, 3000) ** 3  # skewed, no ties
    feature = fit(values, "quantile")
    reference = QuantileTransformer(n_quantiles=100, output_distribution="normal").fit(values[:, None])
    knots = np.asarray(feature.knots)
    np.testing.assert_allclose(knots, reference.quantiles_[:, 0])
    inner = knots[1:-1]  # scikit-learn scores the ends +-5.2, as here
    np.testing.assert_allclose(feature.transform(pd.Series(inner))[:, 0], reference.transform(inner[:, None])[:, 0],
                               atol=1e-6)
    # Between knots the scores are interpolated (scikit-learn interpolates the level, then scores it): close in
    # the bulk, and monotone everywhere.
    bulk = np.quantile(values, np.linspace(0.05, 0.95, 400))
    np.testing.assert_allclose(feature.transform(pd.Series(bulk))[:, 0], reference.transform(bulk[:, None])[:, 0],
                               atol=0.02)
    grid = np.linspace(values.min() - 10, values.max() + 10, 5000)
    assert np.all(np.diff(feature.transform(pd.Series(grid))[:, 0]) >= 0)


def test_a_spike_of_zeros_gets_the_middle_of_its_levels_not_the_bottom_score():
    feature = fit(SPIKED, "quantile")
    zero = feature.transform(pd.Series([0.0]))[0, 0]
    # the normal score of about 0.15 (-1.04), the middle of the 30% of zeros (on a grid of 66 levels: -1.05)
    assert zero == pytest.approx(-1.04, abs=0.02)
    encoded = feature.transform(pd.Series(SPIKED))[:, 0]
    assert abs(np.median(encoded[SPIKED > 0])) < 1.0 and encoded.max() <= 5.2 and encoded.min() >= -5.2


def test_piecewise_bins_read_position_and_add_back_to_the_value():
    feature = fit(SPIKED, "piecewise", bins=8)
    knots = np.asarray(feature.knots)
    assert 2 < len(knots) <= 9 and knots[0] == 0.0  # the quantiles inside the spike are one knot
    assert feature.columns() == [f"x__bin{t}" for t in range(len(knots) - 1)]
    probe = np.array([-1.0, 0.0, knots[1] / 2, knots[3], knots[-1] * 3])
    encoded = feature.transform(pd.Series(probe))
    assert encoded.shape == (5, len(knots) - 1)
    inner = encoded[:, 1:-1]
    assert inner.min() >= 0 and inner.max() <= 1
    assert encoded[2, 0] == pytest.approx(0.5) and encoded[2, 1:].max() == 0  # half way through the first bin
    assert (encoded[3, :3] == 1).all() and (encoded[3, 3:] == 0).all()  # at a knot: the bins below it full
    # Every value is the first knot plus each bin's fill times its width, beyond the training range too.
    np.testing.assert_allclose(knots[0] + encoded @ np.diff(knots), probe, rtol=1e-12, atol=1e-12)


def test_a_constant_or_binary_column_stays_standardised():
    assert fit(np.full(50, 3.0), "piecewise").encoding == "standard"
    from palaestra.data.features import BinaryFeature
    binary = BinaryFeature.fit("b", pd.Series(["yes", "no"] * 20), FitOptions(numeric_encoding="quantile"))
    assert binary.encoding == "standard" and binary.columns() == ["b"] and binary.describe() == "binary"


@pytest.mark.parametrize("encoding", ["quantile", "piecewise"])
def test_encodings_round_trip_and_the_onnx_graph_computes_them(encoding):
    values = SPIKED.copy()
    values[::97] = np.nan
    feature = fit(values, encoding)
    assert feature.indicator and feature.describe() == {"quantile": "numeric",
                                                          "piecewise": f"numeric (piecewise, {len(feature.knots) - 1} bins)"}[encoding]
    again = input_from_dict(json.loads(json.dumps(feature.to_dict())))
    probe = pd.DataFrame({"x": np.r_[values[:300], [np.nan, -5.0, 1e4]]})
    assert np.array_equal(again.transform(probe["x"]), feature.transform(probe["x"]))
    pre = FeaturePreprocessor([feature], [CategoryOutput("y", ["a", "b"])])
    model = preprocessing_graph(pre, {"numeric"})
    model.ir_version = 10
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    got = session.run(None, raw_feed(pre, probe))[0]
    np.testing.assert_allclose(got, pre.inputs(probe)[0], atol=1e-5, rtol=1e-6)
