"""Reading data: CSV, Parquet, NumPy ``.npz``, text files and the built-in datasets.

A source is read into a ``pandas.DataFrame`` (tables), ``ArrayData`` (arrays: images, sequences or plain
feature matrices from ``.npz``) or a ``TextCorpus`` (a ``.txt`` file). Nothing is fitted here.
"""

from __future__ import annotations

import csv
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pandas as pd

from palaestra.data.datasets import BUILTINS, default_target
from palaestra.data.raw import ArrayData, SequenceArrays, TextCorpus
from palaestra.errors import DataError

__all__ = ["ArrayData", "SequenceArrays", "TextCorpus", "default_target", "read_source", "read_text"]


def read_source(source: str | pd.DataFrame | ArrayData) -> pd.DataFrame | ArrayData:
    """Read a built-in name or a file path into a DataFrame or ArrayData."""
    if isinstance(source, (pd.DataFrame, ArrayData, TextCorpus)):
        return source
    if source in BUILTINS:
        return BUILTINS[source].load()
    path = Path(source)
    if not path.exists():
        names = ", ".join(sorted(BUILTINS))
        raise DataError(f"data source '{source}' is neither a file nor a built-in dataset ({names})")
    if path.is_dir():
        raise DataError(f"data source '{source}' is a directory; give a .csv, .parquet or .npz file")
    if path.stat().st_size == 0:
        raise DataError(f"data file {path} is empty")
    suffix = path.suffix.lower()
    readers = {".csv": _read_csv, ".tsv": _read_csv, ".parquet": _read_parquet, ".pq": _read_parquet, ".npz": _read_npz}
    if suffix == ".txt":
        return read_text(path)
    if suffix not in readers:
        raise DataError(f"unsupported data file type '{suffix}' for {path}: use .csv, .parquet or .npz")
    return readers[suffix](path)


def _read_csv(path: Path) -> pd.DataFrame:
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise DataError(f"{path} is not UTF-8 text (re-save it as UTF-8 CSV)") from None
    if "\x00" in text:
        raise DataError(f"{path} contains NUL bytes: it looks like a binary file, not CSV")
    sample = "\n".join(text.splitlines()[:50])
    sep = "\t" if path.suffix.lower() == ".tsv" else ","
    try:
        sniffed = csv.Sniffer().sniff(sample, delimiters=",;\t|")
        sep = sniffed.delimiter
    except csv.Error:
        pass
    try:
        df = pd.read_csv(path, sep=sep, encoding="utf-8-sig", skipinitialspace=True)
    except pd.errors.EmptyDataError:
        raise DataError(f"data file {path} has no rows or columns") from None
    except (pd.errors.ParserError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0]
        raise DataError(f"cannot parse {path} as CSV: {first}") from None
    if df.shape[1] == 1 and len(df) > 0:
        found = _split_evenly(sample) or ("';', tab or '|'" if any(ch in sample for ch in ";\t|") else None)
        if found:
            raise DataError(f"{path} was read as a single column named {str(df.columns[0])[:60]!r}: check the "
                            f"delimiter (every line holds {found}; Palaestra reads ',', ';', tab or '|')")
    if len(df) == 0:
        raise DataError(f"data file {path} has a header but no rows")
    df.columns = [str(c).strip() for c in df.columns]
    return df


def _split_evenly(sample: str) -> str | None:
    """The delimiter-like character that every line of a one-column read holds equally often, if any."""
    lines = [ln for ln in sample.splitlines() if ln.strip()]
    for ch, name in ((";", "';'"), ("\t", "tabs"), ("|", "'|'"), (":", "':'"), (" ", "spaces")):
        counts = {ln.strip().count(ch) for ln in lines}
        if len(counts) == 1 and counts != {0}:
            return name
    return None


def _read_parquet(path: Path) -> pd.DataFrame:
    try:
        df = pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises many types for corrupt files
        raise DataError(f"cannot read {path} as Parquet: {str(exc).splitlines()[0]}") from None
    if len(df) == 0:
        raise DataError(f"data file {path} has no rows")
    return df


def _read_npz(path: Path) -> ArrayData:
    try:
        with np.load(path, allow_pickle=False) as npz:
            keys = set(npz.files)
            if "x" not in keys:
                raise DataError(f"{path} must hold an array named 'x' (found: {', '.join(sorted(keys)) or 'none'})")
            x = npz["x"]
            y = npz["y"] if "y" in keys else None
    except DataError:
        raise
    except ValueError as exc:
        if "allow_pickle" in str(exc):
            # An object array is stored as a pickle: refused unread, since unpickling can run code.
            raise DataError(f"{path}: an array is stored as Python objects (e.g. images of mismatched shapes); "
                            f"save numeric arrays of one shape (it is not unpickled: that could run code)") from None
        raise DataError(f"cannot read {path} as .npz: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
    except (OSError, zipfile.BadZipFile, EOFError, zlib.error, KeyError, IndexError, TypeError) as exc:
        # A damaged archive fails in zipfile, zlib or numpy's header parser, each with its own error type.
        raise DataError(f"cannot read {path} as .npz: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
    if y is not None and y.ndim == 0:
        raise DataError(f"{path}: 'y' must hold one label per sample, got a single value")
    if x.dtype == object:
        raise DataError(f"{path}: 'x' must be a numeric array (images of mismatched shapes cannot be stacked)")
    if x.ndim < 2:
        raise DataError(f"{path}: 'x' must have a sample axis and features, got shape {x.shape}")
    if y is not None and len(y) != len(x):
        raise DataError(f"{path}: 'x' has {len(x)} samples but 'y' has {len(y)}")
    if (not np.issubdtype(x.dtype, np.number) and x.dtype != bool) or np.issubdtype(x.dtype, np.complexfloating):
        raise DataError(f"{path}: 'x' must be numeric, got dtype {x.dtype}")
    if len(x) == 0:
        raise DataError(f"{path}: 'x' has no samples")
    return ArrayData(x=x, y=y, name=path.stem)



def read_text(path: Path) -> TextCorpus:
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError:
        raise DataError(f"{path} is not UTF-8 text (re-save it as UTF-8)") from None
    if "\x00" in text:
        raise DataError(f"{path} contains NUL bytes: it looks like a binary file, not text")
    if not text.strip():
        raise DataError(f"{path} holds no text")
    return TextCorpus(text, path.stem)
