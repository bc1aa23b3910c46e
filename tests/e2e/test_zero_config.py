"""Whole journeys a new user takes: a CSV they made themselves, images in .npz, a reload that changes nothing.

Zero-config means no config file: only the data, the target and (for test time) fewer epochs. The bar is
the scikit-learn baseline a careful user would fit on the same split.
"""

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from testkit import cli as _cli
from testkit import tiny

from palaestra.artifacts import read_json
from palaestra.runs import Run


def cli(*args: str):
    return _cli(*args, env={"OMP_NUM_THREADS": "1"})  # one torch thread: the test workers share two cores



def _mixed_csv(path, n=700, seed=0):
    """Numbers, a small and a large categorical, yes/no, an id column, and missing values everywhere."""
    rng = np.random.default_rng(seed)
    income = rng.normal(50, 15, n)
    age = rng.integers(18, 80, n).astype(float)
    plan = rng.choice(["basic", "plus", "pro"], n)
    city = rng.choice([f"town_{i:02d}" for i in range(40)], n)
    member = rng.choice(["yes", "no"], n)
    city_effect = dict(zip(sorted(set(city)), rng.normal(0, 1.0, 40), strict=True))
    logit = (0.08 * (income - 50) - 0.03 * (age - 50) + np.select([plan == "plus", plan == "pro"], [0.8, 1.6], 0)
             + np.vectorize(city_effect.get)(city) + 0.9 * (member == "yes") - 1.0 + rng.normal(0, 0.5, n))
    frame = pd.DataFrame({"customer_id": [f"CU-{i:06d}" for i in rng.permutation(n)], "income": income.round(2),
                          "age": age, "plan": plan, "city": city, "member": member,
                          "churned": np.where(logit > 0, "yes", "no")})
    for col, share in (("income", 0.1), ("age", 0.05), ("plan", 0.08), ("city", 0.05), ("member", 0.1)):
        frame.loc[rng.random(n) < share, col] = np.nan
    frame.to_csv(path, index=False)
    return frame


def _baseline_accuracy(frame: pd.DataFrame, train_idx, test_idx, target: str) -> float:
    X = frame.drop(columns=[target, "customer_id"])
    y = frame[target].astype(str)
    numeric = [c for c in X.columns if pd.api.types.is_numeric_dtype(X[c])]
    categorical = [c for c in X.columns if c not in numeric]
    prep = ColumnTransformer([
        ("num", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), numeric),
        ("cat", make_pipeline(SimpleImputer(strategy="most_frequent"), OneHotEncoder(handle_unknown="ignore")),
         categorical),
    ])
    model = make_pipeline(prep, LogisticRegression(max_iter=2000))
    model.fit(X.iloc[train_idx], y.iloc[train_idx])
    return float(model.score(X.iloc[test_idx], y.iloc[test_idx]))


def test_zero_config_csv_with_mixed_types_is_competitive_with_logistic_regression(tmp_path):
    data = tmp_path / "customers.csv"
    frame = _mixed_csv(data)
    out = tmp_path / "run"
    r = cli("train", "--data", str(data), "--target", "churned", "--out", str(out), "--set", "train.epochs=60",
            "--set", "train.progress=false")
    assert r.returncode == 0, r.stderr
    assert "customer_id" in r.stderr and "identifier" in r.stderr  # dropped, and the user is told

    pre = read_json(out / "preprocess.json")
    kinds = {c["name"]: (c["type"], c.get("embed", False)) for c in pre["preprocessor"]["inputs"]}
    assert kinds == {"income": ("numeric", False), "age": ("numeric", False), "plan": ("category", False),
                     "city": ("category", True), "member": ("binary", False)}
    ours = read_json(out / "metrics.json")["test"]["accuracy"]
    splits = pre["splits"]
    baseline = _baseline_accuracy(frame, splits["train"], splits["test"], "churned")
    assert baseline > 0.7  # the data is learnable, so the comparison means something
    assert ours >= baseline - 0.03, (ours, baseline)

    # New rows with a town never seen in training and missing values: predictions, not a crash.
    new = frame.drop(columns=["churned"]).head(5).copy()
    new.loc[0, "city"] = "brand_new_town"
    new.loc[1, "plan"] = "enterprise"
    new.loc[2, ["income", "member"]] = np.nan
    preds = Run.load(out).predict(new)
    assert len(preds) == 5 and set(preds["prediction"]) <= {"yes", "no"}


def _bars(n=600, size=12, seed=0):
    """Three classes of grey images: a horizontal bar, a vertical bar, or a diagonal, at random places."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 0.3, (n, size, size)).astype(np.float32)
    y = rng.integers(0, 3, n)
    for i in range(n):
        p = rng.integers(2, size - 2)
        if y[i] == 0:
            x[i, p, :] += 1.5
        elif y[i] == 1:
            x[i, :, p] += 1.5
        else:
            k = rng.integers(-3, 4)
            x[i][np.eye(size, k=k, dtype=bool)] += 1.5
    return x, y


def test_images_in_npz_train_with_the_cnn_and_beat_a_linear_baseline(tmp_path):
    from palaestra.pipeline import train

    x, y = _bars()
    path = tmp_path / "bars.npz"
    np.savez(path, x=x, y=y)
    run = train(tiny(str(path), epochs=8, model={"hidden": [32], "channels": [8, 16]}), out=tmp_path / "run",
                quiet=True)
    assert run.config.model.family == "cnn" and run.spec.kind == "image" and run.spec.input_shape == [1, 12, 12]
    splits = read_json(tmp_path / "run" / "preprocess.json")["splits"]
    flat = x.reshape(len(x), -1)
    logistic = LogisticRegression(max_iter=2000).fit(flat[splits["train"]], y[splits["train"]])
    baseline = logistic.score(flat[splits["test"]], y[splits["test"]])
    ours = run.metrics["test"]["accuracy"]
    assert ours >= 0.9 and ours >= baseline - 0.03, (ours, baseline)

    # The saved run reads new arrays of the same (N, H, W) layout.
    reloaded = Run.load(tmp_path / "run")
    assert np.array_equal(reloaded.outputs(x[:20]), run.outputs(x[:20]))


def test_digits_run_evaluates_its_own_test_split_to_the_recorded_metrics(digits_run, tmp_path):
    from palaestra.data.sources import read_source

    digits = read_source("digits")
    test = read_json(digits_run / "preprocess.json")["splits"]["test"]
    path = tmp_path / "digits_test.npz"
    np.savez(path, x=digits.x[test], y=digits.y[test])
    run = Run.load(digits_run)
    assert run.config.model.family == "cnn"
    evaluated = run.evaluate(str(path))
    recorded = read_json(digits_run / "metrics.json")["test"]
    assert evaluated["rows"] == len(test)
    for name in ("accuracy", "f1_macro", "roc_auc"):
        assert evaluated[name] == pytest.approx(recorded[name], abs=1e-6)
    preds = run.predict(str(path))
    assert float((preds["prediction"].astype(int).to_numpy() == digits.y[test]).mean()) == pytest.approx(
        recorded["accuracy"], abs=1e-6)


def test_reloaded_run_gives_identical_outputs(tmp_path):
    from palaestra.pipeline import train

    run = train(tiny("penguins", epochs=2), out=tmp_path / "run", quiet=True)
    frame = run.data.raw.iloc[run.data.test.index]
    reloaded = Run.load(tmp_path / "run")
    assert np.array_equal(run.outputs(frame), reloaded.outputs(frame))
    assert run.predict(frame).equals(reloaded.predict(frame))
    assert reloaded.config == run.config and reloaded.spec == run.spec
