"""The contract every feature type keeps (Optuna's storage tests in miniature): parametrized over the registry,
so a type added later is checked automatically once it has an example column below.

Input types: fit on training values, round-trip through JSON to identical arrays, transform missing and unseen
values without error into finite arrays of the same width, and describe themselves. Output types: encode then
decode gives the values back, unseen labels are a plain error.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from palaestra.data.features import (
    INPUT_TYPES,
    OUTPUT_TYPES,
    FitOptions,
    infer_column,
    input_from_dict,
    output_from_dict,
)
from palaestra.errors import DataError

N = 40
_rng = np.random.default_rng(0)

# Per type: (training values, values with missing entries and ones never seen in training)
EXAMPLES = {
    "numeric": (pd.Series(_rng.normal(10, 3, N)), pd.Series([np.nan, 1e3, -5.0, None], dtype=object)),
    "binary": (pd.Series(["yes", "no"] * (N // 2)), pd.Series(["yes", None, "no", "?"])),
    "category": (pd.Series(_rng.choice(["red", "green", "blue"], N)), pd.Series(["purple", None, "red", ""])),
    "text": (pd.Series([" ".join(_rng.choice(["a", "quick", "brown", "fox", "jumps"], 6)) for _ in range(N)]),
             pd.Series(["zebra quagga okapi", None, "", "quick fox"])),
    "datetime": (pd.Series(pd.date_range("2021-01-01", periods=N, freq="17D").strftime("%Y-%m-%d")),
                 pd.Series(["2030-06-01", None, "not a date", "2021-02-03"])),
    "array": (_rng.normal(size=(N, 3, 4)), _rng.normal(size=(4, 3, 4))),
}
FIT = {"array": {"layout": "image"}}


def _fit(kind):
    train, _ = EXAMPLES[kind]
    return INPUT_TYPES[kind].fit("col", train, FitOptions(), **FIT.get(kind, {}))


def _arrays(out) -> tuple[np.ndarray, ...]:
    return out if isinstance(out, tuple) else (out,)


def test_every_registered_type_has_an_example():
    assert set(INPUT_TYPES) == set(EXAMPLES)


@pytest.mark.parametrize("kind", sorted(INPUT_TYPES))
def test_input_type_json_round_trip_transforms_identically(kind):
    feature = _fit(kind)
    again = input_from_dict(json.loads(json.dumps(feature.to_dict())))
    assert type(again) is type(feature) and again.to_dict() == feature.to_dict()
    for values in EXAMPLES[kind]:
        for a, b in zip(_arrays(feature.transform(values)), _arrays(again.transform(values)), strict=True):
            assert a.dtype == b.dtype and np.array_equal(a, b)


@pytest.mark.parametrize("kind", sorted(INPUT_TYPES))
def test_input_type_handles_missing_and_unseen_values(kind):
    feature = _fit(kind)
    train, new = EXAMPLES[kind]
    seen, unseen = _arrays(feature.transform(train)), _arrays(feature.transform(new))
    for a, b in zip(seen, unseen, strict=True):
        assert a.shape[1:] == b.shape[1:] and len(b) == len(new)
        assert np.isfinite(b.astype(np.float64)).all()
    assert feature.describe()


def test_inference_types_columns_and_keeps_long_text_and_dates():
    n = 60
    frame = pd.DataFrame({
        "id": [f"C{i:04d}" for i in range(n)],
        "note": [f"customer {i} wrote that the delivery was late again" for i in range(n)],
        "when": pd.date_range("2022-01-01", periods=n, freq="D").strftime("%d/%m/%Y %H:%M"),
        "flag": ["true", "false"] * (n // 2),
        "size": np.arange(n) * 1.5,
        "colour": ["red", "blue", "green"] * (n // 3),
        "title": [f"The {w} of {v}" for w, v in zip(["Night", "Dawn", "Sea", "Road"] * 15, range(n), strict=True)],
        "city": [f"New {c}" for c in ["York", "Delhi", "Haven"] * (n // 3)],
    })
    types = {c: infer_column(c, frame[c]) for c in frame.columns}
    # A distinct value per row is an identifier unless it is running text or a date.
    assert types == {"id": None, "note": "text", "when": "datetime", "flag": "binary", "size": "numeric",
                     "colour": "category", "title": "text", "city": "category"}


def test_a_coded_column_is_a_category_and_a_stray_word_in_measurements_an_error():
    grades = pd.Series(["9", "10", "11", "12"] * 60 + ["other"] * 5)  # school grades and a code for the rest
    assert infer_column("grade", grades) == "category"
    weights = pd.Series([f"{w:.1f}" for w in np.linspace(40, 120, 200)] + ["heavy"])
    with pytest.raises(DataError, match="'weight' is numeric but row 200 holds text 'heavy'"):
        infer_column("weight", weights)


@pytest.mark.parametrize("kind,values", [("category", ["b", "a", "c", "a"]), ("number", [1.5, -2.0, 3.25, 0.0])])
def test_output_type_encode_decode_round_trip(kind, values):
    out = OUTPUT_TYPES[kind].fit("y", pd.Series(values))
    out = output_from_dict(json.loads(json.dumps(out.to_dict())))
    encoded = out.encode(pd.Series(values))
    model_outputs = np.eye(out.width)[encoded] * 8.0 if kind == "category" else encoded[:, None].astype(np.float64)
    predictions, probabilities = out.decode(model_outputs)
    if kind == "category":
        assert list(predictions) == values and np.allclose(probabilities.sum(1), 1.0)
        with pytest.raises(DataError, match="not seen in training"):
            out.encode(pd.Series(["z"]))
    else:
        assert np.allclose(predictions, values) and probabilities is None
        with pytest.raises(DataError, match="numeric"):
            out.encode(pd.Series(["x"]))


def test_non_finite_model_outputs_are_a_plain_error_not_a_label():
    out = OUTPUT_TYPES["category"].fit("y", pd.Series(["a", "b"]))
    with pytest.raises(DataError, match="not finite"):
        out.decode(np.array([[np.nan, 1.0]]))
