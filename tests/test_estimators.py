"""PalaestraClassifier / PalaestraRegressor inside scikit-learn: Pipeline, cross_val_score, clone, params."""

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.datasets import load_diabetes, load_iris
from sklearn.model_selection import cross_val_score, train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from palaestra import ConfigError, PalaestraClassifier, PalaestraRegressor

FAST = {"hidden": (16,), "lr": 0.02, "epochs": 40, "early_stopping_patience": None}



def test_pipeline_cross_val_score_on_iris():
    X, y = load_iris(return_X_y=True)
    pipe = Pipeline([("scale", StandardScaler()), ("net", PalaestraClassifier(**FAST))])
    scores = cross_val_score(pipe, X, y, cv=3)
    assert len(scores) == 3 and scores.min() > 0.8, scores


def test_classifier_probabilities_follow_classes_order():
    X, y = load_iris(return_X_y=True)
    names = np.array(["virginica", "setosa", "versicolor"])[y]  # label order differs from code order
    clf = PalaestraClassifier(**FAST).fit(X, names)
    assert clf.classes_.tolist() == ["setosa", "versicolor", "virginica"]
    proba = clf.predict_proba(X)
    assert proba.shape == (150, 3) and np.allclose(proba.sum(axis=1), 1.0, atol=1e-5)
    pred = clf.predict(X)
    assert np.array_equal(pred, clf.classes_[proba.argmax(axis=1)])
    assert clf.score(X, names) > 0.85
    # setosa rows (y == 0) are labelled "virginica", the last of classes_: that column must be theirs
    assert proba[y == 0, 2].mean() > 0.8
    assert clf.n_features_in_ == 4


def test_clone_and_params():
    clf = PalaestraClassifier(hidden=(8, 4), lr=0.005, config={"schedule": {"name": "cosine"}})
    params = clf.get_params()
    assert params["hidden"] == (8, 4) and params["lr"] == 0.005
    assert {"dropout", "epochs", "batch_size", "optimizer", "weight_decay", "activation",
            "early_stopping_patience", "seed", "config"} <= set(params)
    twin = clone(clf)
    assert twin is not clf and twin.get_params()["config"] == {"schedule": {"name": "cosine"}}
    assert not hasattr(twin, "run_")
    twin.set_params(epochs=3, hidden=(4,))
    assert twin.epochs == 3 and clf.epochs is None  # None: the config schema's default


def test_unset_parameters_take_the_config_schema_defaults():
    from palaestra.config import Config

    cfg = Config.model_validate(PalaestraClassifier()._config())
    default = Config()
    assert cfg.model.hidden == default.model.hidden and cfg.optimizer.lr == default.optimizer.lr
    assert cfg.train.epochs == default.train.epochs and cfg.train.early_stopping == default.train.early_stopping
    assert Config.model_validate(PalaestraClassifier(early_stopping_patience=0)._config()).train.early_stopping is None


def test_config_escape_hatch_and_params_reach_the_run():
    X, y = load_iris(return_X_y=True)
    clf = PalaestraClassifier(hidden=(8,), epochs=2, optimizer="sgd", dropout=0.0,
                              config={"schedule": {"name": "cosine"}, "model": {"init": "xavier"}})
    clf.fit(X, y)
    cfg = clf.run_.config
    assert cfg.schedule.name == "cosine" and cfg.model.init == "xavier"
    assert cfg.model.hidden == [8] and cfg.optimizer.name == "sgd" and cfg.train.epochs == 2
    assert cfg.data.split.test == 0.0
    assert clf.run_.path is None  # no files written


def test_same_seed_same_model():
    X, y = load_iris(return_X_y=True)
    a = PalaestraClassifier(hidden=(8,), epochs=3, seed=5).fit(X, y).predict_proba(X)
    b = PalaestraClassifier(hidden=(8,), epochs=3, seed=5).fit(X, y).predict_proba(X)
    assert np.array_equal(a, b)


def test_scikit_learn_api_checks():
    from sklearn.utils import estimator_checks as checks

    for est in (PalaestraClassifier(epochs=2), PalaestraRegressor(epochs=2)):
        name = type(est).__name__
        for check in (checks.check_no_attributes_set_in_init, checks.check_get_params_invariance,
                      checks.check_set_params, checks.check_parameters_default_constructible,
                      checks.check_estimators_unfitted):
            check(name, est)


def test_bad_parameter_is_a_config_error_at_fit():
    X, y = load_iris(return_X_y=True)
    with pytest.raises(ConfigError, match="optimizer.name"):
        PalaestraClassifier(optimizer="adamx").fit(X, y)


def test_dataframe_with_text_columns():
    rng = np.random.default_rng(0)
    n = 120
    frame = pd.DataFrame({"size": rng.normal(size=n), "shape": rng.choice(["round", "square"], n)})
    y = np.where((frame["shape"] == "round") ^ (frame["size"] > 0), "p", "q")
    clf = PalaestraClassifier(**FAST).fit(frame, y)
    assert clf.score(frame, y) > 0.8


def test_regressor_on_diabetes():
    X, y = load_diabetes(return_X_y=True)
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.25, random_state=0)
    reg = PalaestraRegressor(hidden=(32,), lr=0.01, epochs=60, early_stopping_patience=15).fit(Xtr, ytr)
    pred = reg.predict(Xte)
    assert pred.shape == (len(yte),)
    assert 50 < pred.mean() < 250  # in the target's units, not standardized
    assert reg.score(Xte, yte) > 0.3
