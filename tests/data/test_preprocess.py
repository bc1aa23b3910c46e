"""Column type inference, imputation, encoding, unseen categories, and the preprocess.json round trip."""

import json

import numpy as np
import pandas as pd
import pytest

from palaestra.config import DataConfig
from palaestra.data.features import infer_task
from palaestra.data.prepare import prepare_data
from palaestra.data.preprocess import FeaturePreprocessor
from palaestra.data.registry import preprocessor_from_dict
from palaestra.errors import DataError


def _frame(n: int = 60, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "customer_id": [f"C{i:05d}" for i in range(n)],  # a distinct value per row
        "row": np.arange(n),  # consecutive integers
        "age": rng.normal(40, 10, n).round(1),
        "colour": rng.choice(["red", "green", "blue"], n),
        "member": rng.choice(["yes", "no"], n),
        "city": [f"city{i % 25}" for i in range(n)],  # 25 categories: above the embedding threshold below
        "label": rng.choice(["a", "b"], n),
    })


def _fit(df: pd.DataFrame, threshold: int = 16, drop=(), numeric_encoding: str = "quantile"
         ) -> tuple[FeaturePreprocessor, list[str]]:
    data = prepare_data(DataConfig(source="t.csv", target="label", drop=list(drop), embedding_threshold=threshold,
                                   split={"train": 0.98, "val": 0.01, "test": 0.01, "stratify": False}), 0, source=df)
    # Refit on every row, so the tests below can reason about the whole frame.
    types = {f.name: f.type for f in data.preprocessor.features}
    pre = FeaturePreprocessor.fit(df, types, {"label": "category"}, _options(threshold, numeric_encoding),
                                  data.preprocessor.dropped)
    return pre, data.notices


def _options(threshold: int, numeric_encoding: str = "quantile"):
    from palaestra.data.features import FitOptions

    return FitOptions(embedding_threshold=threshold, numeric_encoding=numeric_encoding)


def _col(pre, name):
    return next(c for c in pre.features if c.name == name)


def test_column_kinds_are_inferred_and_identifiers_dropped_with_a_notice():
    pre, notices = _fit(_frame())
    kinds = {c.name: c.type for c in pre.features}
    assert kinds == {"age": "numeric", "colour": "category", "member": "binary", "city": "category"}
    assert set(pre.dropped) == {"customer_id", "row"}
    assert any("customer_id" in n and "identifier" in n for n in notices)
    assert any("'row'" in n for n in notices)


def test_a_repeating_integer_identifier_is_a_category_with_a_notice():
    """A panel's person id (each person on several rows) groups rows: a category, not a quantity; one that is
    distinct on every row is still dropped; `data.features` can still say numeric."""
    df = _frame().assign(person_id=np.arange(60) // 4)  # 15 people, 4 rows each
    pre, notices = _fit(df)
    assert _col(pre, "person_id").type == "category"
    assert any("'person_id'" in n and "repeats" in n for n in notices)
    gaps = _frame().assign(person_id=(np.arange(60) // 4).astype(float))
    gaps.loc[[5, 9], "person_id"] = np.nan  # read as floats with gaps: the same key
    pre, notices = _fit(gaps)
    assert _col(pre, "person_id").type == "category" and any("'person_id'" in n for n in notices)
    pre, _ = _fit(_frame().assign(person_id=np.arange(60) * 7))  # a distinct id per row: a row's name
    assert "person_id" in pre.dropped
    pre, _ = _fit(_frame().assign(visits=np.arange(60) // 4))  # the same values, not named as an id: a number
    assert _col(pre, "visits").type == "numeric"
    # Whatever its name, a balanced panel's key: over 20 values, each on as many rows (here 30 people, 2 rows
    # each, numbered as a survey does, with gaps); counts that vary are a measurement.
    people = np.sort(np.random.default_rng(3).choice(10_000, 30, replace=False))
    pre, notices = _fit(_frame().assign(nr=np.repeat(people, 2)))
    assert _col(pre, "nr").type == "category" and any("'nr'" in n and "repeats" in n for n in notices)
    pre, _ = _fit(_frame().assign(nr=np.r_[np.repeat(people[:29], 2), [20_000, 20_001]]))
    assert _col(pre, "nr").type == "numeric"
    # A panel's period and an evenly spaced grid repeat as evenly, and are evenly spaced: numbers.
    periods = _frame().assign(year=np.tile(np.arange(1990, 2020), 2), age=np.repeat(np.arange(20, 50), 2))
    pre, _ = _fit(periods)
    assert _col(pre, "year").type == "numeric" and _col(pre, "age").type == "numeric"


def test_data_drop_removes_a_column_without_a_notice():
    pre, notices = _fit(_frame(), drop=["colour"])
    assert "colour" not in pre.feature_columns
    assert pre.dropped["colour"] == "dropped by data.drop"
    assert not any("colour" in n for n in notices)


def test_task_inference():
    assert infer_task(pd.Series(["x", "y"])) == "classification"
    assert infer_task(pd.Series([0, 1, 2, 1])) == "classification"
    assert infer_task(pd.Series(np.linspace(0, 1, 50))) == "regression"
    assert infer_task(pd.Series(np.arange(100))) == "regression"  # many distinct integers: a quantity


def test_missing_numbers_are_imputed_with_the_training_median_and_flagged():
    df = _frame()
    df.loc[[3, 7, 11], "age"] = np.nan
    df["age"] = df["age"].astype(object)
    df.loc[20, "age"] = "?"  # a missing-value token in a text column of numbers
    pre, _ = _fit(df)
    age = _col(pre, "age")
    present = pd.to_numeric(df["age"], errors="coerce").dropna()
    assert age.indicator and age.fill == pytest.approx(present.median())
    assert age.mean == pytest.approx(present.mean()) and age.std == pytest.approx(present.std(ddof=0))
    numeric, _ = pre.inputs(df)
    names = pre.feature_names()
    i, m = names.index("age"), names.index("age__missing")
    missing = [3, 7, 11, 20]
    assert numeric[missing, m].tolist() == [1.0] * 4
    assert numeric[:, m].sum() == 4
    # A missing value reads as the median does: its normal score, about 0 (the default quantile encoding).
    median_score = age.transform(pd.Series([age.fill]))[0, 0]
    assert abs(median_score) < 0.1 and np.allclose(numeric[missing, i], median_score, atol=1e-6)
    # The present values keep their order.
    present_rows = np.delete(np.arange(len(df)), missing)
    order = np.argsort(present.loc[present_rows].to_numpy(), kind="stable")
    assert np.all(np.diff(numeric[present_rows, i][order]) >= 0)
    standard, _ = _fit(df, numeric_encoding="standard")  # z-scores: mean 0 over the rows that were present
    z = standard.inputs(df)[0][:, i]
    assert np.allclose(z[missing], (age.fill - age.mean) / age.std, atol=1e-6) and abs(np.delete(z, missing).mean()) < 1e-5


def test_one_hot_below_threshold_embedding_above():
    pre, _ = _fit(_frame(), threshold=16)
    colour, city = _col(pre, "colour"), _col(pre, "city")
    assert not colour.embed and city.embed
    spec = pre.spec()
    assert spec.embeddings == [(26, 13)]  # 25 cities + the unknown index; dim min(16, (card + 1) // 2)
    assert {"colour=red", "colour=green", "colour=blue"} <= set(spec.feature_names)
    numeric, categorical = pre.inputs(_frame())
    assert numeric.shape[1] == spec.n_numeric and categorical.shape == (60, 1)
    assert categorical.min() >= 1  # every training city is known: 0 is reserved for unseen
    onehot = numeric[:, [spec.feature_names.index(f"colour={v}") for v in ("red", "green", "blue")]]
    assert (onehot.sum(axis=1) == 1).all()
    pre_all_onehot, _ = _fit(_frame(), threshold=30)
    assert not any(getattr(c, "embed", False) for c in pre_all_onehot.features)


def test_unseen_categories_at_predict_time_do_not_crash():
    pre, _ = _fit(_frame())
    new = _frame(4, seed=9)
    new["colour"] = ["purple", "red", None, "?"]
    new["city"] = ["atlantis", "city1", "city2", "nowhere"]
    numeric, categorical = pre.inputs(new)
    names = pre.feature_names()
    cols = [names.index(f"colour={v}") for v in ("red", "green", "blue")]
    assert numeric[0, cols].sum() == 0  # unseen: all zeros
    assert numeric[1, names.index("colour=red")] == 1.0
    assert categorical[0, 0] == 0 and categorical[3, 0] == 0  # unseen: the unknown index
    assert categorical[1, 0] > 0


def test_missing_column_is_a_plain_data_error():
    pre, _ = _fit(_frame())
    with pytest.raises(DataError, match="missing column.*'colour'"):
        pre.inputs(_frame().drop(columns=["colour"]))


def test_text_in_a_numeric_column_names_the_row():
    pre, _ = _fit(_frame())
    bad = _frame(5)
    bad["age"] = bad["age"].astype(object)
    bad.loc[2, "age"] = "forty"
    with pytest.raises(DataError, match="age.*forty"):
        pre.inputs(bad)


def test_preprocess_json_round_trip_gives_identical_tensors():
    df = _frame()
    df.loc[[1, 2], "age"] = np.nan
    pre, _ = _fit(df)
    text = json.dumps(pre.to_dict())
    back = preprocessor_from_dict(json.loads(text))
    for a, b in zip(pre.inputs(df), back.inputs(df), strict=True):
        assert a.dtype == b.dtype and np.array_equal(a, b)
    assert back.spec() == pre.spec()
    assert back.to_dict() == pre.to_dict()


def test_labels_encode_sorted_and_decode_back():
    pre, _ = _fit(_frame())
    assert pre.classes == ["a", "b"]
    codes = pre.encode_targets(pd.DataFrame({"label": ["b", "a", "b"]}))
    assert codes.tolist() == [1, 0, 1]
    logits = np.eye(2)[codes] * 5.0
    assert pre.decode(logits)[0].predictions.tolist() == ["b", "a", "b"]
    with pytest.raises(DataError, match="not seen in training: c"):
        pre.encode_targets(pd.DataFrame({"label": ["a", "c"]}))


def test_prepare_fits_on_the_training_split_only():
    data = prepare_data(DataConfig(source="diabetes"), seed=0)
    raw = data.raw
    assert len(data.train) + len(data.val) + len(data.test) == len(raw)
    bmi = _col(data.preprocessor, "bmi")
    assert bmi.mean == pytest.approx(raw["bmi"].iloc[data.train.index].mean())
    assert bmi.mean != pytest.approx(raw["bmi"].mean(), rel=1e-9)
    target = raw["progression"].iloc[data.train.index]
    assert data.preprocessor.target_mean == pytest.approx(target.mean())
    assert float(data.train.target.mean()) == pytest.approx(0.0, abs=1e-5)  # standardized target
