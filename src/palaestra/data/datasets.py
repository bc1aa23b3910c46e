"""The built-in datasets: one explicit registry, each loaded on first use from a package that ships it
(nothing is downloaded). ``palaestra datasets`` lists them all."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from palaestra.data.raw import ArrayData, SequenceArrays


@dataclass(frozen=True)
class BuiltIn:
    load: Callable[[], pd.DataFrame | ArrayData]
    target: str
    task: str
    description: str


def _penguins() -> pd.DataFrame:
    from palmerpenguins import load_penguins

    df = load_penguins()
    # `year` is the survey year, not a property of the bird: keep the textbook's five features.
    return df.drop(columns=[c for c in ("year",) if c in df.columns])


def _iris() -> pd.DataFrame:
    from sklearn.datasets import load_iris

    bunch = load_iris(as_frame=True)
    df = bunch.frame.rename(columns={"target": "species"})
    df["species"] = np.asarray(bunch.target_names)[df["species"].to_numpy()]
    return df


def _diabetes() -> pd.DataFrame:
    from sklearn.datasets import load_diabetes

    return load_diabetes(as_frame=True, scaled=False).frame.rename(columns={"target": "progression"})


def _digits() -> ArrayData:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return ArrayData(x=bunch.images.astype(np.float32), y=bunch.target.astype(np.int64), name="digits")


def _mnist1d() -> SequenceArrays:
    # Generated locally from the package's templates (no download): 4,000 train + 1,000 test sequences.
    from mnist1d.data import get_dataset_args, make_dataset

    d = make_dataset(get_dataset_args())
    x = np.concatenate([d["x"], d["x_test"]]).astype(np.float32)
    y = np.concatenate([d["y"], d["y_test"]]).astype(np.int64)
    return SequenceArrays(x=x, y=y, name="mnist1d", test_size=len(d["x_test"]))


def _sunspots() -> pd.DataFrame:
    from statsmodels.datasets import sunspots

    return sunspots.load_pandas().data


def _pydocs() -> pd.DataFrame:
    from palaestra.data.pydocs import load

    return load()


BUILTINS: dict[str, BuiltIn] = {
    "penguins": BuiltIn(_penguins, "species", "classification",
                        "Palmer penguins: species from bill, flipper, mass, island, sex (344 rows)"),
    "iris": BuiltIn(_iris, "species", "classification", "Fisher's iris: species from four flower measurements (150 rows)"),
    "digits": BuiltIn(_digits, "y", "classification", "8x8 grey images of handwritten digits 0-9 (1,797 images)"),
    "diabetes": BuiltIn(_diabetes, "progression", "regression",
                        "disease progression after one year from ten baseline variables (442 rows)"),
    "mnist1d": BuiltIn(_mnist1d, "y", "classification",
                       "MNIST-1D: length-40 signals of the ten digits (4,000 train / 1,000 test; needs the sequence extra)"),
    "pydocs": BuiltIn(_pydocs, "topic", "classification",
                      "Python's standard library by topic: a docstring's first paragraph -> files, math, text, "
                      "network, time, concurrency or formats (about 1,500 texts, made from this interpreter)"),
    "sunspots": BuiltIn(_sunspots, "SUNACTIVITY", "forecast",
                        "yearly sunspot activity 1700-2008 (309 years; statsmodels, the sequence extra)"),
}


def default_target(source: str) -> str | None:
    b = BUILTINS.get(source)
    return b.target if b else None


def builtin_task(source: object) -> str | None:
    b = BUILTINS.get(source) if isinstance(source, str) else None
    return b.task if b else None
