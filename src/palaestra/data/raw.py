"""The raw forms a source is read into, before anything is fitted: a ``pandas.DataFrame`` (tables), or these."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class ArrayData:
    """Arrays read from ``.npz`` or a built-in image set: ``x`` is ``(N, ...)``, ``y`` is ``(N,)`` or None."""

    x: np.ndarray
    y: np.ndarray | None
    name: str = "x"


@dataclass
class SequenceArrays(ArrayData):
    """Arrays that are sequences by construction. ``test_size``: the last rows form a fixed test set."""

    test_size: int = 0


@dataclass
class TextCorpus:
    """The contents of a ``.txt`` file."""

    text: str
    name: str = "text"
