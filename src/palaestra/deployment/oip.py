"""The Open Inference Protocol (KServe v2, also spoken by Triton and Seldon MLServer), REST side.

Pure functions from request bytes to raw model inputs and from predictions to response bodies; the routes
that call them live in ``server.py``. The model a run serves:

- **inputs**: a table run takes one tensor per raw training column, named as the column, of shape ``[N]``
  (or ``[N, 1]``): ``BYTES`` for category, text and datetime columns, ``FP32`` for numbers, ``BOOL`` for
  true/false columns. Any other numeric datatype is read too, and missing values are JSON ``null`` (or NaN
  in binary FP data, or an empty string). An array run takes one ``FP32`` tensor ``x`` of shape
  ``[N, ...]`` (a sequence: ``[N, T, F]``, shorter ones padded with NaN).
- **outputs**: classification ``label`` (``[N]``, the label as in the training data) and ``probabilities``
  (``[N, classes]``, columns in the order of the model metadata's ``classes`` parameter); regression
  ``prediction`` (``[N]``). With several targets each name is prefixed with ``TARGET.``.

Triton's binary tensor data extension (``Inference-Header-Content-Length``) is read and written, so
``tritonclient.http`` works with its defaults. Errors are ``{"error": "..."}`` with a 4xx status. The
endpoints themselves are in ``routes.py``.
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np

from palaestra.data.features import ArrayFeature, BinaryFeature, NumericFeature
from palaestra.data.spec import Decoded

# Numpy types of the protocol's fixed-size datatypes (little-endian on the wire, as Triton sends them).
FIXED = {"BOOL": "<?", "UINT8": "<u1", "UINT16": "<u2", "UINT32": "<u4", "UINT64": "<u8", "INT8": "<i1",
         "INT16": "<i2", "INT32": "<i4", "INT64": "<i8", "FP16": "<f2", "FP32": "<f4", "FP64": "<f8"}
DATATYPES = (*FIXED, "BYTES")
HEADER = "inference-header-content-length"


class ProtocolError(Exception):
    """A request the protocol refuses: ``{"error": message}`` with ``status`` (400 unless said otherwise)."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.message, self.status = message, status


@dataclass
class Tensor:
    """One decoded input tensor: its name, datatype, shape and values (flat, row-major)."""

    name: str
    datatype: str
    shape: list[int]
    values: list[Any] | np.ndarray


# --- metadata -------------------------------------------------------------------------------------------


def input_datatype(feature: Any) -> str:
    """The datatype a table column is advertised with."""
    if isinstance(feature, BinaryFeature):
        return "BOOL"
    if isinstance(feature, NumericFeature):
        return "FP32"
    return "BYTES"


def label_datatype(classes: list[Any] | None) -> str:
    """Labels keep their training type: whole numbers as INT64, booleans as BOOL, anything else as BYTES."""
    values = list(classes or [])
    if values and all(isinstance(c, bool) for c in values):
        return "BOOL"
    if values and all(isinstance(c, int) and not isinstance(c, bool) for c in values):
        return "INT64"
    if values and all(isinstance(c, (int, float)) and not isinstance(c, bool) for c in values):
        return "FP64"
    return "BYTES"


def input_metadata(pre: Any) -> list[dict[str, Any]]:
    """``$metadata_tensor`` of every input the model takes."""
    array = getattr(pre, "array", None)
    if array is not None:
        shape = list(array.shape)
        if array.layout == "image" and array.channels_last:
            shape = shape[1:] + shape[:1]  # trained on (N, H, W, C): sent the same way
        if array.layout == "sequence":
            shape = [-1, shape[1]]  # up to the trained number of steps
        return [{"name": array.name, "datatype": "FP32", "shape": [-1, *shape]}]
    return [{"name": f.name, "datatype": input_datatype(f), "shape": [-1]} for f in pre.features]


def output_metadata(pre: Any) -> list[dict[str, Any]]:
    """``$metadata_tensor`` of every output, in the order responses list them."""
    several = len(pre.outputs) > 1
    out = []
    for o in pre.outputs:
        prefix = f"{o.name}." if several else ""
        classes = getattr(o, "classes", None)
        if classes is not None:
            out += [{"name": f"{prefix}label", "datatype": label_datatype(classes), "shape": [-1]},
                    {"name": f"{prefix}probabilities", "datatype": "FP64", "shape": [-1, len(classes)]}]
        else:
            out.append({"name": f"{prefix}prediction", "datatype": "FP64", "shape": [-1]})
    return out


def model_metadata(pre: Any, name: str, platform: str) -> dict[str, Any]:
    """``$metadata_model_response``; ``parameters.classes`` (a JSON list in a string, as parameter values
    are scalars) gives the order of the probabilities' columns."""
    meta: dict[str, Any] = {"name": name, "versions": ["1"], "platform": platform,
                            "inputs": input_metadata(pre), "outputs": output_metadata(pre)}
    classes = {o.name: o.classes for o in pre.outputs if getattr(o, "classes", None) is not None}
    if classes:
        one = len(pre.outputs) == 1
        meta["parameters"] = {"classes": json.dumps(next(iter(classes.values())) if one else classes)}
    return meta


# --- requests -------------------------------------------------------------------------------------------


def parse_request(body: bytes, header_length: str | None) -> tuple[dict[str, Any], list[Tensor]]:
    """Request bytes -> (the JSON object, its input tensors decoded). ``header_length``: the
    ``Inference-Header-Content-Length`` header, when the binary extension carries tensor data."""
    binary = b""
    if header_length is not None:
        try:
            size = int(header_length)
        except ValueError:
            raise ProtocolError(f"Inference-Header-Content-Length must be a whole number, got {header_length!r}") from None
        if not 0 <= size <= len(body):
            raise ProtocolError(f"Inference-Header-Content-Length {size} is beyond the body's {len(body)} bytes")
        body, binary = body[:size], body[size:]
    try:
        request = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ProtocolError(f"the request body is not valid JSON ({exc})") from None
    if not isinstance(request, dict):
        raise ProtocolError("the request must be a JSON object with an 'inputs' list")
    inputs = request.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise ProtocolError("the request needs 'inputs': a non-empty list of tensors")
    if "id" in request and not isinstance(request["id"], str):
        raise ProtocolError("'id' must be a string")
    tensors, offset = [], 0
    for i, spec in enumerate(inputs):
        tensor, used = _tensor(spec, i, binary, offset)
        tensors.append(tensor)
        offset += used
    if offset != len(binary):
        raise ProtocolError(f"the body holds {len(binary) - offset} bytes of binary data no input claims")
    names = [t.name for t in tensors]
    if len(set(names)) != len(names):
        raise ProtocolError(f"an input is given twice: {sorted({n for n in names if names.count(n) > 1})}")
    return request, tensors


def _tensor(spec: Any, i: int, binary: bytes, offset: int) -> tuple[Tensor, int]:
    """One ``$request_input``; returns it and the bytes of binary data it used."""
    if not isinstance(spec, dict):
        raise ProtocolError(f"inputs[{i}] must be an object with name, shape, datatype and data")
    name, datatype, shape = spec.get("name"), spec.get("datatype"), spec.get("shape")
    where = f"input '{name}'" if isinstance(name, str) else f"inputs[{i}]"
    if not isinstance(name, str) or not name:
        raise ProtocolError(f"{where}: 'name' must be a non-empty string")
    if datatype not in DATATYPES:
        raise ProtocolError(f"{where}: 'datatype' must be one of {', '.join(DATATYPES)} (got {datatype!r})")
    if (not isinstance(shape, list) or not shape
            or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)):
        raise ProtocolError(f"{where}: 'shape' must be a list of non-negative whole numbers (got {shape!r})")
    count = math.prod(shape)
    parameters = spec.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise ProtocolError(f"{where}: 'parameters' must be an object")
    size = parameters.get("binary_data_size")
    if size is not None:
        if "data" in spec:
            raise ProtocolError(f"{where}: give either 'data' or parameters.binary_data_size, not both")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0 or offset + size > len(binary):
            raise ProtocolError(f"{where}: binary_data_size {size!r} does not fit the binary data sent")
        values = _from_binary(binary[offset:offset + size], datatype, count, where)
        return Tensor(name, datatype, shape, values), size
    if "data" not in spec:
        raise ProtocolError(f"{where}: 'data' is missing")
    values = _flatten(spec["data"])
    if len(values) != count:
        raise ProtocolError(f"{where}: shape {shape} holds {count} values, 'data' has {len(values)}")
    _check_json_values(values, datatype, where)
    return Tensor(name, datatype, shape, values), 0


def _flatten(data: Any) -> list[Any]:
    """Row-major contents of nested lists (the protocol allows both flat and nested ``data``)."""
    if not isinstance(data, list):
        return [data]
    out: list[Any] = []
    stack = [iter(data)]
    while stack:
        for item in stack[-1]:
            if isinstance(item, list):
                stack.append(iter(item))
                break
            out.append(item)
        else:
            stack.pop()
    return out


def _check_json_values(values: list[Any], datatype: str, where: str) -> None:
    """Each element has the datatype's JSON type; ``null`` is a missing value (a Palaestra extension)."""
    if datatype == "BYTES":
        ok = lambda v: isinstance(v, str)  # noqa: E731
        kind = "strings"
    elif datatype == "BOOL":
        ok = lambda v: isinstance(v, bool)  # noqa: E731
        kind = "true/false"
    elif datatype.startswith(("INT", "UINT")):
        ok = lambda v: isinstance(v, int) and not isinstance(v, bool)  # noqa: E731
        kind = "whole numbers"
    else:
        ok = lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)  # noqa: E731
        kind = "numbers"
    for j, v in enumerate(values):
        if v is not None and not ok(v):
            raise ProtocolError(f"{where}: {datatype} data must be {kind} (or null for missing); "
                                f"element {j} is {json.dumps(v)[:60]}")


def _from_binary(raw: bytes, datatype: str, count: int, where: str) -> list[Any] | np.ndarray:
    if datatype == "BYTES":  # each element: a 4-byte little-endian length, then that many bytes
        out, pos = [], 0
        while pos < len(raw):
            if pos + 4 > len(raw):
                raise ProtocolError(f"{where}: BYTES binary data ends inside an element's length")
            (n,) = struct.unpack_from("<I", raw, pos)
            pos += 4
            if pos + n > len(raw):
                raise ProtocolError(f"{where}: BYTES binary data ends inside an element")
            try:
                out.append(raw[pos:pos + n].decode("utf-8"))
            except UnicodeDecodeError:
                raise ProtocolError(f"{where}: BYTES element {len(out)} is not UTF-8 text") from None
            pos += n
        if len(out) != count:
            raise ProtocolError(f"{where}: the shape holds {count} values, the binary data {len(out)}")
        return out
    dtype = np.dtype(FIXED[datatype])
    if len(raw) != count * dtype.itemsize:
        raise ProtocolError(f"{where}: the shape holds {count} {datatype} values ({count * dtype.itemsize} bytes), "
                            f"the binary data is {len(raw)} bytes")
    return np.frombuffer(raw, dtype=dtype)


def rows_of(tensor: Tensor) -> int:
    return tensor.shape[0]


def table_columns(tensors: list[Tensor], pre: Any, max_rows: int) -> tuple[dict[str, Any], int]:
    """Input tensors of a table run -> {column: values} with one value per row, and the row count."""
    wanted = {f.name: f for f in pre.features}
    given = {t.name: t for t in tensors}
    missing = [n for n in wanted if n not in given]
    if missing:
        raise ProtocolError(f"missing input{'s' if len(missing) > 1 else ''}: {', '.join(missing)} "
                            f"(one tensor per training column; see GET /v2/models/NAME)")
    extra = [n for n in given if n not in wanted]
    if extra:
        raise ProtocolError(f"unknown input{'s' if len(extra) > 1 else ''}: {', '.join(extra)}; "
                            f"the model takes {', '.join(wanted)}")
    n = None
    columns: dict[str, Any] = {}
    for name, feature in wanted.items():
        t = given[name]
        if len(t.shape) > 2 or (len(t.shape) == 2 and t.shape[1] != 1):
            raise ProtocolError(f"input '{name}': shape must be [N] or [N, 1] (one value per row), got {t.shape}")
        if n is None:
            n = t.shape[0]
        elif t.shape[0] != n:
            raise ProtocolError(f"input '{name}' has {t.shape[0]} rows, input '{next(iter(wanted))}' {n}: "
                                f"every input needs one value per row")
        columns[name] = _column(t, isinstance(feature, NumericFeature) and not isinstance(feature, BinaryFeature))
    _check_rows(n or 0, max_rows)
    return columns, n or 0


def _column(t: Tensor, numeric: bool) -> Any:
    """A tensor's values as one column: float64 with NaN for missing numbers, objects (None missing) else."""
    values = t.values
    if numeric and t.datatype != "BYTES":
        if isinstance(values, np.ndarray):
            return values.astype(np.float64)
        return np.array([np.nan if v is None else v for v in values], dtype=np.float64)
    if isinstance(values, np.ndarray):
        return values.astype(object) if t.datatype == "BOOL" else values.astype(np.float64)
    return np.array(values, dtype=object)


def array_input(tensors: list[Tensor], feature: ArrayFeature, max_rows: int) -> np.ndarray:
    """The one input tensor of an array run as an ``(N, ...)`` float array (null -> NaN padding)."""
    if len(tensors) != 1 or tensors[0].name != feature.name:
        names = ", ".join(t.name for t in tensors)
        raise ProtocolError(f"the model takes one input tensor '{feature.name}' (got {names})")
    t = tensors[0]
    if t.datatype == "BYTES":
        raise ProtocolError(f"input '{t.name}': numeric data expected, got BYTES")
    values = t.values
    if not isinstance(values, np.ndarray):
        values = np.array([np.nan if v is None else v for v in values], dtype=np.float64)
    if len(t.shape) < 2:
        raise ProtocolError(f"input '{t.name}': shape must be [N, ...] with the sample's shape after N, got {t.shape}")
    _check_rows(t.shape[0], max_rows)
    return values.astype(np.float64).reshape(t.shape)


def _check_rows(n: int, max_rows: int) -> None:
    if n < 1:
        raise ProtocolError("the inputs hold no rows")
    if n > max_rows:
        raise ProtocolError(f"{n} rows is over the limit of {max_rows} per request", status=413)


# --- responses ------------------------------------------------------------------------------------------


def outputs(decoded: list[Decoded], pre: Any) -> list[dict[str, Any]]:
    """``$response_output`` objects (data as numpy arrays, serialised by ``encode_response``)."""
    several = len(decoded) > 1
    by_name = {m["name"]: m["datatype"] for m in output_metadata(pre)}
    out = []
    for d in decoded:
        prefix = f"{d.name}." if several else ""
        n = len(d.predictions)
        if d.probabilities is not None:
            label = f"{prefix}label"
            out.append({"name": label, "datatype": by_name[label], "shape": [n], "data": np.asarray(d.predictions)})
            probs = np.asarray(d.probabilities, np.float64)
            out.append({"name": f"{prefix}probabilities", "datatype": "FP64", "shape": list(probs.shape),
                        "data": probs})
        else:
            out.append({"name": f"{prefix}prediction", "datatype": "FP64", "shape": [n],
                        "data": np.asarray(d.predictions, np.float64)})
    return out


def encode_response(request: dict[str, Any], model_name: str, produced: list[dict[str, Any]]) -> tuple[bytes, dict[str, str]]:
    """The ``$inference_response`` bytes and extra headers: only the requested outputs (all by default),
    each as JSON data or, where the request asks (``binary_data_output`` or an output's ``binary_data``),
    as binary data after the JSON header."""
    params = request.get("parameters") or {}
    if not isinstance(params, dict):
        raise ProtocolError("'parameters' must be an object")
    all_binary = bool(params.get("binary_data_output", False))
    requested = request.get("outputs")
    by_name = {o["name"]: o for o in produced}
    chosen: list[tuple[dict[str, Any], bool]] = []
    if requested is None:
        chosen = [(o, all_binary) for o in produced]
    else:
        if not isinstance(requested, list):
            raise ProtocolError("'outputs' must be a list of {\"name\": ...} objects")
        for i, r in enumerate(requested):
            name = r.get("name") if isinstance(r, dict) else None
            if name not in by_name:
                raise ProtocolError(f"outputs[{i}]: unknown output {name!r}; the model gives {', '.join(by_name)}")
            rp = r.get("parameters") or {}
            if not isinstance(rp, dict):
                raise ProtocolError(f"outputs[{i}]: 'parameters' must be an object")
            chosen.append((by_name[name], bool(rp.get("binary_data", all_binary))))
    body: dict[str, Any] = {"model_name": model_name, "model_version": "1"}
    if "id" in request:
        body["id"] = request["id"]
    body["outputs"] = []
    blobs = []
    for o, binary in chosen:
        entry = {k: o[k] for k in ("name", "datatype", "shape")}
        data = o["data"]
        if binary:
            blob = _to_binary(data, o["datatype"])
            entry["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            entry["data"] = [_plain(v) for v in np.ravel(data)]
        body["outputs"].append(entry)
    header = json.dumps(body, allow_nan=False).encode()
    if not blobs:
        return header, {"content-type": "application/json"}
    return header + b"".join(blobs), {"content-type": "application/octet-stream",
                                      "inference-header-content-length": str(len(header))}


def _to_binary(data: np.ndarray, datatype: str) -> bytes:
    if datatype == "BYTES":
        parts = []
        for v in np.ravel(data):
            text = str(_plain(v)).encode("utf-8")
            parts.append(struct.pack("<I", len(text)) + text)
        return b"".join(parts)
    return np.ascontiguousarray(np.ravel(data), dtype=np.dtype(FIXED[datatype])).tobytes()


def _plain(v: Any) -> Any:
    return v.item() if isinstance(v, np.generic) else v


def error(message: str) -> dict[str, str]:
    """The protocol's error object."""
    return {"error": message}
