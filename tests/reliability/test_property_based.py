"""Property-based tests (hypothesis): preprocessing round trips through JSON, config parsing, and a fuzz test of
the data readers (whatever the bytes: a frame, arrays, or a ``DataError``, never another exception)."""

from __future__ import annotations

import io
import json
import math
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from palaestra.artifacts import json_default
from palaestra.config import Config, load_config
from palaestra.data.features import FitOptions
from palaestra.data.preprocess import FeaturePreprocessor
from palaestra.data.registry import preprocessor_from_dict
from palaestra.data.sources import ArrayData, read_source
from palaestra.errors import ConfigError, DataError

SETTINGS = settings(max_examples=50, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
FEW = settings(max_examples=25, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])

# --- preprocessing round trip -----------------------------------------------------------------------------------

MISSING_TOKENS = [None, np.nan, "", "?", "NA"]


@st.composite
def frames(draw) -> tuple[pd.DataFrame, str]:
    """Frames with numeric, categorical, boolean-text and missing values, and a classification or regression target."""
    n = draw(st.integers(12, 40))
    num = draw(st.lists(st.one_of(st.floats(-1e6, 1e6, allow_nan=False), st.sampled_from([np.nan])), min_size=n, max_size=n))
    assume(sum(1 for v in num if not math.isnan(v)) >= 2)
    cat = draw(st.lists(st.one_of(st.sampled_from(["red", "green", "blue", "Ünïcode", "a,b"]), st.sampled_from(MISSING_TOKENS)),
                        min_size=n, max_size=n))
    assume(any(isinstance(c, str) and c not in ("", "?", "NA") for c in cat))
    flag = draw(st.lists(st.sampled_from(["yes", "no", None]), min_size=n, max_size=n))
    assume(any(f is not None for f in flag))
    task = draw(st.sampled_from(["classification", "regression"]))
    if task == "classification":
        y = draw(st.lists(st.sampled_from(["cat", "dog", "emu"]), min_size=n, max_size=n))
        assume(len(set(y)) >= 2)
    else:
        y = draw(st.lists(st.floats(-1e3, 1e3, allow_nan=False), min_size=n, max_size=n))
    return pd.DataFrame({"num": num, "cat": cat, "flag": flag, "y": y}), task


def _through_json(obj):
    return json.loads(json.dumps(obj, default=json_default))


def _fit(df: pd.DataFrame, task: str, threshold: int = 16) -> FeaturePreprocessor:
    """Types as the data stage infers them, fitted on every row."""
    from palaestra.data.features import infer_column

    types = {c: infer_column(c, df[c]) for c in df.columns if c != "y"}
    types = {c: t for c, t in types.items() if t is not None}
    return FeaturePreprocessor.fit(df, types, {"y": "category" if task == "classification" else "number"},
                                   FitOptions(embedding_threshold=threshold))


@SETTINGS
@given(frames(), st.integers(2, 20))
def test_table_preprocessor_json_round_trip_transforms_identically(frame_task, threshold):
    df, task = frame_task
    pre = _fit(df, task, threshold)
    again = preprocessor_from_dict(_through_json(pre.to_dict()))
    a, b = pre.inputs(df), again.inputs(df)
    for x, y in zip(a, b, strict=True):
        assert x.dtype == y.dtype and np.array_equal(x, y)
        assert np.isfinite(x).all()
    # New rows (a shuffled subset with unseen categories) transform the same way too.
    other = df.sample(frac=0.5, random_state=0).assign(cat="never-seen")
    for x, y in zip(pre.inputs(other), again.inputs(other), strict=True):
        assert np.array_equal(x, y)
    assert again.spec().to_dict() == pre.spec().to_dict()


@SETTINGS
@given(frames())
def test_target_encode_decode_round_trip(frame_task):
    df, task = frame_task
    pre = preprocessor_from_dict(_through_json(_fit(df, task).to_dict()))
    codes = pre.encode_targets(df)
    outputs = np.eye(len(pre.classes))[codes] * 10.0 if task == "classification" else codes[:, None]
    decoded = pre.decode(outputs)[0].predictions
    if task == "classification":
        assert list(map(str, decoded)) == list(df["y"].astype(str))
    else:
        np.testing.assert_allclose(decoded.astype(np.float64), df["y"].to_numpy(), rtol=1e-5, atol=1e-3)


# --- config parsing ----------------------------------------------------------------------------------------------

VALID_OVERRIDES = {
    "optimizer.lr": st.floats(1e-6, 1.0),
    "optimizer.name": st.sampled_from(["sgd", "adam", "adamw", "rmsprop"]),
    "optimizer.momentum": st.floats(0.0, 0.99),
    "model.hidden": st.lists(st.integers(1, 512), min_size=1, max_size=4),
    "model.dropout": st.floats(0.0, 0.95),
    "model.activation": st.sampled_from(["relu", "gelu", "tanh", "sigmoid", "leaky_relu"]),
    "train.epochs": st.integers(1, 10_000),
    "train.batch_size": st.integers(1, 65_536),
    "train.grad_clip": st.one_of(st.none(), st.floats(1e-3, 100.0)),
    "schedule.name": st.sampled_from(["none", "step", "cosine", "onecycle", "plateau"]),
    "seed": st.integers(0, 2**31 - 1),
    "name": st.text(st.characters(categories=["L", "N"]), min_size=1, max_size=20),
}


@SETTINGS
@given(st.dictionaries(st.sampled_from(sorted(VALID_OVERRIDES)), st.none(), min_size=1, max_size=6), st.data())
def test_valid_overrides_parse_to_the_given_values(keys, data):
    values = {k: data.draw(VALID_OVERRIDES[k], label=k) for k in keys}
    # As typed on the command line: `--set key=VALUE` with the value written as YAML (JSON is YAML).
    cfg = load_config(None, [f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in values.items()])
    for key, value in values.items():
        node = cfg
        for part in key.split("."):
            node = getattr(node, part)
        assert node == value or (isinstance(value, float) and node == pytest.approx(value))
    assert load_config(cfg.to_dict()) == cfg  # the resolved config reparses to itself


KEY_PART = st.text(st.characters(codec="utf-8", exclude_characters="=\n\r"), min_size=0, max_size=12)


@SETTINGS
@given(st.lists(KEY_PART, min_size=1, max_size=4), st.text(max_size=30))
def test_garbage_overrides_give_config_error_only(parts, value):
    try:
        cfg = load_config(None, [".".join(parts) + "=" + value])
    except ConfigError as exc:
        assert str(exc)
    else:
        assert isinstance(cfg, Config)


@SETTINGS
@given(st.text(max_size=200))
def test_garbage_yaml_files_give_config_error_only(text):
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "config.yaml"
        path.write_text(text, encoding="utf-8")
        try:
            load_config(path)
        except ConfigError as exc:
            assert str(exc)


@SETTINGS
@given(st.recursive(st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=8)),
                    lambda inner: st.one_of(st.lists(inner, max_size=3),
                                            st.dictionaries(st.text(max_size=8), inner, max_size=3)), max_leaves=12))
def test_garbage_config_trees_give_config_error_only(tree):
    for candidate in (tree, {"train": tree}, {"model": {"init": tree}}, {"tune": {"space": tree}}):
        try:
            load_config(candidate if isinstance(candidate, dict) else {"seed": candidate})
        except ConfigError as exc:
            assert str(exc)


# --- fuzzing the data readers ------------------------------------------------------------------------------------


def _valid_files() -> dict[str, bytes]:
    df = pd.DataFrame({"a": [1.5, 2.0, None], "b": ["x", "y", "z"], "y": [0, 1, 0]})
    buf = io.BytesIO()
    df.to_parquet(buf)
    arrays = io.BytesIO()
    np.savez(arrays, x=np.arange(12.0).reshape(3, 4), y=np.array([0, 1, 0]))
    return {".csv": df.to_csv(index=False).encode(), ".parquet": buf.getvalue(), ".npz": arrays.getvalue()}


VALID = _valid_files()


def _read(suffix: str, data: bytes):
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / f"data{suffix}"
        path.write_bytes(data)
        try:
            out = read_source(str(path))
        except DataError as exc:
            assert str(exc)
            return None
    assert isinstance(out, (pd.DataFrame, ArrayData))
    return out


@SETTINGS
@given(st.sampled_from([".csv", ".parquet", ".npz"]), st.binary(max_size=600))
def test_random_bytes_give_data_or_data_error(suffix, data):
    _read(suffix, data)


@SETTINGS
@given(st.sampled_from([".csv", ".parquet", ".npz"]), st.data())
def test_damaged_valid_files_give_data_or_data_error(suffix, data):
    raw = bytearray(VALID[suffix])
    # Flip a few bytes, or cut the file short: what a bad download or a full disk leaves.
    for _ in range(data.draw(st.integers(1, 4), label="flips")):
        i = data.draw(st.integers(0, len(raw) - 1), label="at")
        raw[i] = data.draw(st.integers(0, 255), label="byte")
    cut = data.draw(st.integers(1, len(raw)), label="cut")
    _read(suffix, bytes(raw[:cut]))


@FEW
@given(st.text(st.characters(codec="utf-8"), max_size=300))
def test_random_text_csv_gives_data_or_data_error(text):
    _read(".csv", text.encode("utf-8"))
