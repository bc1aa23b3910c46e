"""scikit-learn's own estimator checks on PalaestraClassifier and PalaestraRegressor, with tiny settings.

Declared through scikit-learn's tags rather than as expected failures: missing values are accepted and
imputed by design (``allow_nan``), sparse input is refused with the standard message (``sparse = False``).
A target with one class is refused with a ValueError naming it, which the checks accept.
"""

from __future__ import annotations

import warnings

from sklearn.utils.estimator_checks import parametrize_with_checks

from palaestra import PalaestraClassifier, PalaestraRegressor

TINY = {"epochs": 40, "hidden": (16,), "lr": 0.01, "batch_size": 16, "early_stopping_patience": 0}


@parametrize_with_checks([PalaestraClassifier(**TINY), PalaestraRegressor(**TINY)])
def test_sklearn_estimator_checks(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        check(estimator)
