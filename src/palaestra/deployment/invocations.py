"""MLflow's scoring protocol: ``POST /invocations`` as MLflow's model server (``mlflow models serve``) takes it.

The JSON body holds exactly one of ``dataframe_split`` (``{"columns": [...], "data": [[...], ...]}``),
``dataframe_records`` (``[{column: value}, ...]``), ``instances`` (records, or a list of arrays for an array
run) or ``inputs`` (``{column: [values]}``, records, or arrays), and optionally ``params`` (this model takes
none: ignored). The answer is ``{"predictions": [...]}``: one record per row, the columns of ``palaestra
predict`` (``prediction`` and, for classification, ``prob_<class>``), as MLflow answers for a model whose
``predict`` returns a frame. Errors: ``{"error_code": "BAD_REQUEST", "message": "..."}`` with 400.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np

from palaestra.runs import prediction_columns

FORMATS = ("dataframe_split", "dataframe_records", "instances", "inputs")
REQUIRED = f"The input must be a JSON object with exactly one of the input fields {', '.join(FORMATS)}"


class ScoringError(Exception):
    """A request MLflow's server would refuse: ``{"error_code": code, "message": message}`` with ``status``."""

    def __init__(self, message: str, status: int = 400, code: str = "BAD_REQUEST"):
        super().__init__(message)
        self.message, self.status, self.code = message, status, code


def error(message: str, code: str = "BAD_REQUEST") -> dict[str, str]:
    return {"error_code": code, "message": message}


def parse(body: bytes, content_type: str | None, tables: bool) -> dict[str, list[Any]] | np.ndarray:
    """Request bytes -> raw columns (column -> values, for a table run: no pandas frame on the request path) or
    an array (an array run)."""
    mime = (content_type or "application/json").split(";")[0].strip().lower()
    if mime != "application/json":
        raise ScoringError(f"this server takes application/json (got '{mime}')", status=415)
    try:
        request = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ScoringError(f"Ensure that input is a valid JSON formatted string. Error: {exc}") from None
    if not isinstance(request, dict):
        raise ScoringError(f"{REQUIRED}. Received {type(request).__name__}.")
    keys = [k for k in FORMATS if k in request]
    if len(keys) != 1:
        raise ScoringError(f"{REQUIRED}. Received dictionary with input fields: {list(request)}")
    unknown = [k for k in request if k not in (*FORMATS, "params")]
    if unknown:
        raise ScoringError(f"unknown field{'s' if len(unknown) > 1 else ''} {unknown}: {REQUIRED}, and 'params'")
    key, data = keys[0], request[keys[0]]
    if not tables:
        if key not in ("instances", "inputs"):
            raise ScoringError(f"this model takes arrays: send them as 'instances' or 'inputs', not '{key}'")
        return _array(data, key)
    if key == "dataframe_split":
        return _split(data)
    if key == "dataframe_records":
        return _records(data, key)
    if isinstance(data, dict):  # columnar: {column: [values]}
        return _columns(data, key)
    return _records(data, key)


def rows_in(raw: dict[str, list[Any]] | np.ndarray) -> int:
    """How many rows ``parse``'s result holds."""
    if isinstance(raw, dict):
        return len(next(iter(raw.values()), []))
    return len(raw)


def _split(data: Any) -> dict[str, list[Any]]:
    if not isinstance(data, dict) or not isinstance(data.get("columns"), list) or not isinstance(data.get("data"), list):
        raise ScoringError("'dataframe_split' must be {\"columns\": [...], \"data\": [[...], ...]}")
    columns, rows = data["columns"], data["data"]
    unknown = [k for k in data if k not in ("columns", "data", "index")]
    if unknown:
        raise ScoringError(f"'dataframe_split' has unknown field{'s' if len(unknown) > 1 else ''} {unknown}")
    for i, row in enumerate(rows):
        if not isinstance(row, list) or len(row) != len(columns):
            raise ScoringError(f"dataframe_split.data[{i}] must be a list of {len(columns)} values, one per column")
    _check_scalars(rows, "dataframe_split.data")
    names = [str(c) for c in columns]
    if len(set(names)) < len(names):
        raise ScoringError("'dataframe_split' names a column more than once")
    return {name: [row[j] for row in rows] for j, name in enumerate(names)}


def _records(data: Any, key: str) -> dict[str, list[Any]]:
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        raise ScoringError(f"'{key}' must be a list of records ({{column: value}} objects)")
    _check_scalars([list(r.values()) for r in data], key)
    names = list(dict.fromkeys(str(k) for r in data for k in r))  # every column any record names, in order
    return {name: [r.get(name) for r in data] for name in names}  # a column a record leaves out: missing there


def _columns(data: dict[str, Any], key: str) -> dict[str, list[Any]]:
    lengths = {len(v) if isinstance(v, list) else -1 for v in data.values()}
    if -1 in lengths or len(lengths) > 1:
        raise ScoringError(f"'{key}' as columns must map each column to a list, all of one length")
    _check_scalars([list(v) for v in data.values()], key)
    return {str(k): v for k, v in data.items()}


def _check_scalars(rows: list[list[Any]], where: str) -> None:
    for i, row in enumerate(rows):
        for v in row:
            if isinstance(v, (list, dict)):
                raise ScoringError(f"{where}[{i}]: values must be numbers, text, true/false or null, "
                                   f"not {type(v).__name__}s")


def _array(data: Any, key: str) -> np.ndarray:
    try:
        x = np.asarray(data, dtype=np.float64)
    except (ValueError, TypeError) as exc:
        raise ScoringError(f"'{key}' must be a list of numeric arrays of one shape ({exc})") from None
    if x.ndim < 2:
        raise ScoringError(f"'{key}' must be a list of samples, each an array")
    return x


def predictions(decoded: list[Any]) -> list[dict[str, Any]]:
    """Decoded targets as MLflow's records of ``palaestra predict``'s columns, with plain Python values."""
    columns = prediction_columns(decoded)
    n = len(decoded[0].predictions) if decoded else 0
    return [{name: _plain(values[i]) for name, values in columns} for i in range(n)]


def _plain(v: Any) -> Any:
    v = v.item() if isinstance(v, np.generic) else v
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v
