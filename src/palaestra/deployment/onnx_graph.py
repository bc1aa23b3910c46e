"""A self-contained ONNX model for a table run: the fitted preprocessing, the network and the decoding in one graph.

The exported network takes the encoded tensors (``numeric``, ``categorical``, ``text:NAME``); this module puts
in front of it a graph that takes the raw columns, named as in the data, and applies the fitted state:

- ``numeric``: ``DOUBLE [N]``, NaN missing -> the training median, encoded (standardised, quantile normal
  scores or piecewise-linear bins), plus the was-missing column;
- ``binary``: ``STRING [N]`` (true/false, yes/no, 1/0; case-insensitive; a missing token or anything else is
  missing) -> as a number;
- ``category``: ``STRING [N]`` -> its training level (a missing token, case-insensitive, is the missing level;
  an unseen value is all-zero one-hot / the unknown embedding row);
- ``datetime``: ``INT64 [N]``, nanoseconds since 1970-01-01 UTC (``numpy.datetime64[ns]`` as int64; NaT's value,
  the smallest int64, missing) -> standardised elapsed years and the calendar parts on circles, computed in the
  graph (ONNX has no date parser: text dates are parsed before, as ``raw_feed`` does);
- ``text``: encoded outside the graph (ONNX has no tokenizer): the input named as the column is the token ids
  ``INT64 [N, max_length]`` (``palaestra.encoded_outside`` lists such columns; ``raw_feed`` makes them).

Strings are matched as given: strip surrounding spaces before feeding them (``raw_feed`` does). Behind the
network: ``probabilities`` (``DOUBLE [N, classes]``, softmax in float64 as ``palaestra predict``) and ``label``
for a category target, ``prediction`` (``DOUBLE [N]``, in the target's units) for a number, each prefixed with
``TARGET.`` when there are several; ``logits`` is the network's own output (all prefixed ``output.`` when a raw
column has one of these names: ``output_names``). ``metadata_props`` hold the classes,
the inputs and a sha256 of the fitted preprocessing.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import numpy as np
import onnx
import pandas as pd
from onnx import TensorProto, compose, helper, numpy_helper

from palaestra.data.features import BinaryFeature, CategoryFeature, DatetimeFeature, NumericFeature
from palaestra.data.features.base import FALSE_TOKENS, MISSING, NA_TOKENS, TRUE_TOKENS
from palaestra.data.features.datetime import parse_times
from palaestra.data.preprocess import TEXT_PREFIX
from palaestra.errors import DataError

ML = "ai.onnx.ml"
OPSET = 17
ML_OPSET = 3
RAW = "raw-columns"  # metadata_props["palaestra.inputs"] of a self-contained graph (export.RAW too)


def in_graph(feature: Any) -> bool:
    """Whether the graph encodes this feature itself (numbers, true/false, categories, dates as times)."""
    return isinstance(feature, (NumericFeature, CategoryFeature, DatetimeFeature))


def preprocessing_sha256(pre: Any) -> str:
    """A fingerprint of the fitted preprocessing: sha256 of its canonical JSON."""
    text = json.dumps(pre.to_dict(), sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=True)
    return hashlib.sha256(text.encode()).hexdigest()


class _Builder:
    """Nodes and constants with unique names under a prefix."""

    def __init__(self, prefix: str):
        self.prefix, self.nodes, self.inits, self.n = prefix, [], [], 0

    def name(self, hint: str) -> str:
        self.n += 1
        return f"{self.prefix}{hint}_{self.n}"

    def const(self, value: Any, dtype: Any = None, hint: str = "c") -> str:
        name = self.name(hint)
        array = np.asarray(value, dtype=dtype) if dtype is not object else np.asarray(value, dtype=object)
        self.inits.append(numpy_helper.from_array(array, name))
        return name

    def op(self, op_type: str, inputs: list[str], hint: str = "", domain: str = "", **attrs: Any) -> str:
        out = self.name(hint or op_type.lower())
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=out, domain=domain, **attrs))
        return out


def _numeric(b: _Builder, x: str, f: NumericFeature) -> list[str]:
    """``x (N, 1) double`` -> the feature's columns (N, bins or 1, plus the was-missing column), as
    ``NumericFeature.transform``."""
    missing = b.op("IsNaN", [x], "missing")
    filled = b.op("Where", [missing, b.const([[f.fill]], np.float64), x], "filled")
    if f.encoding == "standard":
        value = b.op("Div", [b.op("Sub", [filled, b.const([[f.mean]], np.float64)]), b.const([[f.std]], np.float64)],
                     "z")
    else:
        ramps = _ramps(b, filled, np.asarray(f.knots), open_ends=f.encoding == "piecewise")
        value = ramps if f.encoding == "piecewise" else b.op(
            "Add", [b.op("MatMul", [ramps, b.const(np.diff(f.scores)[:, None], np.float64)]),
                    b.const([[f.scores[0]]], np.float64)], "quantile")
    return [value] + ([b.op("Cast", [missing], "was_missing", to=TensorProto.DOUBLE)] if f.indicator else [])


def _ramps(b: _Builder, x: str, knots: np.ndarray, open_ends: bool) -> str:
    """``x (N, 1)`` -> ``(N, len(knots) - 1)``, as ``features.numeric.ramps``."""
    r = b.op("Div", [b.op("Sub", [x, b.const(knots[None, :-1], np.float64)]), b.const(np.diff(knots)[None, :], np.float64)],
             "ramp")
    lo, hi = np.zeros((1, len(knots) - 1)), np.ones((1, len(knots) - 1))
    if open_ends:
        lo[0, 0], hi[0, -1] = -np.inf, np.inf
    return b.op("Min", [b.op("Max", [r, b.const(lo, np.float64)]), b.const(hi, np.float64)], "clipped")


def _binary_number(b: _Builder, x: str) -> str:
    """``x (N,) string`` -> 1.0 / 0.0 / NaN ``(N, 1) double``."""
    lowered = b.op("StringNormalizer", [x], "lower", case_change_action="LOWER", locale="C")
    keys = sorted(TRUE_TOKENS) + sorted(FALSE_TOKENS) + ["1", "1.0", "0", "0.0"]
    values = [1.0] * len(TRUE_TOKENS) + [0.0] * len(FALSE_TOKENS) + [1.0, 1.0, 0.0, 0.0]
    number = b.op("LabelEncoder", [lowered], "bool", domain=ML, keys_strings=keys, values_floats=values,
                  default_float=float("nan"))
    return b.op("Unsqueeze", [b.op("Cast", [number], to=TensorProto.DOUBLE), b.const([1], np.int64)], "bool2d")


def _category_codes(b: _Builder, x: str, f: CategoryFeature) -> str:
    """``x (N,) string`` -> ``(N, 1) int64`` level index, -1 where unseen (as ``CategoryFeature.codes``)."""
    levels = [str(c) for c in f.categories]
    codes = b.op("LabelEncoder", [x], "level", domain=ML, keys_strings=levels,
                 values_int64s=list(range(len(levels))), default_int64=-1)
    lowered = b.op("StringNormalizer", [x], "lower", case_change_action="LOWER", locale="C")
    tokens = sorted(NA_TOKENS)
    na = b.op("LabelEncoder", [lowered], "na", domain=ML, keys_strings=tokens, values_int64s=[1] * len(tokens),
              default_int64=0)
    missing_level = levels.index(MISSING) if MISSING in levels else -1
    is_na = b.op("Cast", [na], to=TensorProto.BOOL)
    codes = b.op("Where", [is_na, b.const(missing_level, np.int64), codes], "codes")
    return b.op("Unsqueeze", [codes, b.const([1], np.int64)], "codes2d")


NS_PER_DAY = 86_400 * 10**9
NS_PER_HOUR = 3_600 * 10**9
NAT = int(np.iinfo(np.int64).min)  # numpy's and pandas' integer value of a missing time


def _floor_div(b: _Builder, a: str, d: int) -> str:
    """``a // d`` for an int64 tensor and a positive ``d``, rounding down (ONNX's integer Div truncates; its
    Mod with fmod=0 takes the divisor's sign, so ``a - a mod d`` divides exactly)."""
    rest = b.op("Mod", [a, b.const(d, np.int64)], "mod", fmod=0)
    return b.op("Div", [b.op("Sub", [a, rest]), b.const(d, np.int64)], "floordiv")


def _civil(b: _Builder, days: str) -> tuple[str, str, str]:
    """Days since 1970-01-01 -> (year, month, day) in the proleptic Gregorian calendar (H. Hinnant's
    ``civil_from_days``), in int64 operations."""
    def c(v: int) -> str:
        return b.const(v, np.int64)

    z = b.op("Add", [days, c(719468)])
    era = _floor_div(b, z, 146097)
    doe = b.op("Sub", [z, b.op("Mul", [era, c(146097)])], "doe")  # [0, 146096]
    yoe = b.op("Div", [b.op("Sub", [b.op("Add", [b.op("Sub", [doe, b.op("Div", [doe, c(1460)])]),
                                                 b.op("Div", [doe, c(36524)])]),
                                    b.op("Div", [doe, c(146096)])]), c(365)], "yoe")  # [0, 399]
    year = b.op("Add", [yoe, b.op("Mul", [era, c(400)])], "year")
    doy = b.op("Sub", [doe, b.op("Sub", [b.op("Add", [b.op("Mul", [yoe, c(365)]), b.op("Div", [yoe, c(4)])]),
                                         b.op("Div", [yoe, c(100)])])], "doy")  # [0, 365], from March 1
    mp = b.op("Div", [b.op("Add", [b.op("Mul", [doy, c(5)]), c(2)]), c(153)], "mp")  # [0, 11]
    day = b.op("Add", [b.op("Sub", [doy, b.op("Div", [b.op("Add", [b.op("Mul", [mp, c(153)]), c(2)]), c(5)])]), c(1)],
               "day")
    month = b.op("Where", [b.op("Less", [mp, c(10)]), b.op("Add", [mp, c(3)]), b.op("Sub", [mp, c(9)])], "month")
    year = b.op("Add", [year, b.op("Cast", [b.op("LessOrEqual", [month, c(2)])], to=TensorProto.INT64)], "year")
    return year, month, day


def _january_first(b: _Builder, year: str) -> str:
    """Days since 1970-01-01 of 1 January of ``year`` (``days_from_civil(year, 1, 1)``)."""
    def c(v: int) -> str:
        return b.const(v, np.int64)

    y = b.op("Sub", [year, c(1)])  # January counts in the year before, from March
    era = _floor_div(b, y, 400)
    yoe = b.op("Sub", [y, b.op("Mul", [era, c(400)])])
    doe = b.op("Add", [b.op("Sub", [b.op("Add", [b.op("Mul", [yoe, c(365)]), b.op("Div", [yoe, c(4)])]),
                                    b.op("Div", [yoe, c(100)])]), c(306)])
    return b.op("Sub", [b.op("Add", [b.op("Mul", [era, c(146097)]), doe]), c(719468)], "jan1")


def _datetime(b: _Builder, x: str, f: Any) -> list[str]:
    """``x (N,) int64`` nanoseconds since 1970 (UTC; ``NAT`` missing) -> the feature's columns, as
    ``DatetimeFeature.transform``: standardised elapsed years, sin/cos of the calendar parts, was-missing."""
    from palaestra.data.features.datetime import CYCLES, DAYS_PER_YEAR, TIME_CYCLES

    def column(v: str) -> str:
        return b.op("Unsqueeze", [v, b.const([1], np.int64)], "col")

    missing = b.op("Equal", [x, b.const(NAT, np.int64)], "nat")
    years = b.op("Div", [b.op("Cast", [x], to=TensorProto.DOUBLE), b.const(1e9 * 86400 * DAYS_PER_YEAR, np.float64)])
    years = b.op("Where", [missing, b.const(f.fill, np.float64), years], "years")
    cols = [b.op("Div", [b.op("Sub", [years, b.const(f.mean, np.float64)]), b.const(f.std, np.float64)], "z")]
    fill_ns = int(f.fill * 1e9 * 86400 * DAYS_PER_YEAR)  # the time missing values take, as in transform
    t = b.op("Where", [missing, b.const(fill_ns, np.int64), x], "t")
    days = _floor_div(b, t, NS_PER_DAY)
    year, month, day = _civil(b, days)
    parts = {"month": month, "day": day,
             "day_of_week": b.op("Mod", [b.op("Add", [days, b.const(3, np.int64)]), b.const(7, np.int64)], fmod=0),
             "day_of_year": b.op("Add", [b.op("Sub", [days, _january_first(b, year)]), b.const(1, np.int64)]),
             "hour": b.op("Div", [b.op("Sub", [t, b.op("Mul", [days, b.const(NS_PER_DAY, np.int64)])]),
                                  b.const(NS_PER_HOUR, np.int64)], "hour")}
    for part, period in CYCLES + (TIME_CYCLES if f.time_of_day else ()):
        value = b.op("Cast", [parts[part]], to=TensorProto.DOUBLE)
        angle = b.op("Div", [b.op("Mul", [b.const(2 * np.pi, np.float64), value]), b.const(float(period), np.float64)])
        cols += [b.op("Sin", [angle]), b.op("Cos", [angle])]
    if f.indicator:
        cols.append(b.op("Cast", [missing], to=TensorProto.DOUBLE))
    return [column(c) for c in cols]


def _empty(b: _Builder, like: str, dtype: Any, elem: int) -> str:
    """An ``(N, 0)`` tensor, N taken from the input ``like``."""
    batch = b.op("Slice", [b.op("Shape", [like]), b.const([0], np.int64), b.const([1], np.int64)], "batch")
    shape = b.op("Concat", [batch, b.const([0], np.int64)], "shape0", axis=0)
    value = numpy_helper.from_array(np.zeros(1, dtype=dtype), "value")
    return b.op("ConstantOfShape", [shape], "empty", value=value)


def preprocessing_graph(pre: Any, needed: set[str]) -> onnx.ModelProto:
    """Raw columns -> the network's input tensors (those named in ``needed``)."""
    b = _Builder("pre/")
    inputs, dense, embedded, texts = [], [], [], []
    for f in pre.features:
        if isinstance(f, NumericFeature):
            if isinstance(f, BinaryFeature):
                inputs.append(helper.make_tensor_value_info(f.name, TensorProto.STRING, ["N"]))
                dense += _numeric(b, _binary_number(b, f.name), f)
            else:
                inputs.append(helper.make_tensor_value_info(f.name, TensorProto.DOUBLE, ["N"]))
                dense += _numeric(b, b.op("Unsqueeze", [f.name, b.const([1], np.int64)], "x2d"), f)
        elif isinstance(f, CategoryFeature):
            inputs.append(helper.make_tensor_value_info(f.name, TensorProto.STRING, ["N"]))
            codes = _category_codes(b, f.name, f)
            if f.embed:
                embedded.append(b.op("Add", [codes, b.const([[1]], np.int64)], "embed_index"))
            else:
                k = len(f.categories)
                hot = b.op("Equal", [codes, b.const(np.arange(k, dtype=np.int64)[None, :])], "onehot")
                dense.append(b.op("Cast", [hot], "onehot_d", to=TensorProto.DOUBLE))
        elif isinstance(f, DatetimeFeature):  # nanoseconds since 1970 (parsing dates stays outside)
            inputs.append(helper.make_tensor_value_info(f.name, TensorProto.INT64, ["N"]))
            dense += _datetime(b, f.name, f)
        elif f.slot == "own":  # text: token ids, made outside
            width = f.max_length
            inputs.append(helper.make_tensor_value_info(f.name, TensorProto.INT64, ["N", width]))
            texts.append((f, f.name))
        else:
            raise DataError(f"a {f.type} feature cannot be part of an ONNX graph")
    first = inputs[0].name
    outputs, nodes_out = [], {}
    if "numeric" in needed:
        block = b.op("Concat", dense, "dense", axis=1) if dense else _empty(b, first, np.float64, TensorProto.DOUBLE)
        nodes_out["numeric"] = b.op("Cast", [block], "numeric", to=TensorProto.FLOAT)
    if "categorical" in needed:
        nodes_out["categorical"] = (b.op("Concat", embedded, "categorical", axis=1) if embedded
                                    else _empty(b, first, np.int64, TensorProto.INT64))
    for f, name in texts:
        if TEXT_PREFIX + f.name in needed:
            nodes_out[TEXT_PREFIX + f.name] = b.op("Identity", [name], "text")
    for model_name, value in nodes_out.items():
        b.nodes.append(helper.make_node("Identity", [value], [f"pre:{model_name}"], name=f"pre/out/{model_name}"))
        elem = TensorProto.FLOAT if model_name == "numeric" else TensorProto.INT64
        outputs.append(helper.make_tensor_value_info(f"pre:{model_name}", elem, None))
    graph = helper.make_graph(b.nodes, "preprocessing", inputs, outputs, b.inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET), helper.make_opsetid(ML, ML_OPSET)])


def output_names(pre: Any) -> dict[str, str]:
    """The graph's output names: ``logits`` and ``[TARGET.]label``/``probabilities``/``prediction``, all
    prefixed with ``output.`` if a raw column already has one of these names (inputs and outputs share a
    namespace)."""
    several = len(pre.outputs) > 1
    names = ["logits"]
    for o in pre.outputs:
        prefix = f"{o.name}." if several else ""
        kinds = ("label", "probabilities") if getattr(o, "classes", None) is not None else ("prediction",)
        names += [prefix + k for k in kinds]
    clash = bool(set(names) & {f.name for f in pre.features})
    return {n: ("output." + n if clash else n) for n in names}


def decoding_graph(pre: Any, n_outputs: int) -> onnx.ModelProto:
    """The network's ``(N, n_outputs)`` float output -> labels and probabilities, or values, per target."""
    b = _Builder("post/")
    x = "post:output"
    name = output_names(pre)
    outputs = [helper.make_tensor_value_info(name["logits"], TensorProto.FLOAT, ["N", n_outputs])]
    b.nodes.append(helper.make_node("Identity", [x], [name["logits"]], name="post/logits"))
    several = len(pre.outputs) > 1
    for o, cols in pre.spans():
        prefix = f"{o.name}." if several else ""
        part = b.op("Slice", [x, b.const([cols.start], np.int64), b.const([cols.stop], np.int64),
                              b.const([1], np.int64)], "part")
        values = b.op("Cast", [part], "part_d", to=TensorProto.DOUBLE)
        classes = getattr(o, "classes", None)
        if classes is not None:
            probabilities, label = name[f"{prefix}probabilities"], name[f"{prefix}label"]
            # Calibration, as CategoryOutput.decode applies it: logits divided by the fitted temperature, and
            # a binary target's decision threshold on the positive class's probability.
            if o.temperature != 1.0:
                values = b.op("Div", [values, b.const(o.temperature, np.float64)], "tempered")
            b.nodes.append(helper.make_node("Softmax", [values], [probabilities], axis=1, name=f"post/{probabilities}"))
            if o.threshold is None:
                index = b.op("ArgMax", [probabilities], "argmax", axis=1, keepdims=0)
            else:
                p = b.op("Gather", [probabilities, b.const(o.positive, np.int64)], "positive_p", axis=1)
                called = b.op("GreaterOrEqual", [p, b.const(o.threshold, np.float64)], "called")
                index = b.op("Where", [called, b.const(o.positive, np.int64), b.const(1 - o.positive, np.int64)],
                             "thresholded")
            table, elem = _labels(classes)
            table_name = b.const(table, table.dtype if elem != TensorProto.STRING else object)
            b.nodes.append(helper.make_node("Gather", [table_name, index], [label], axis=0, name=f"post/{label}"))
            outputs += [helper.make_tensor_value_info(probabilities, TensorProto.DOUBLE, ["N", len(classes)]),
                        helper.make_tensor_value_info(label, elem, ["N"])]
        else:
            prediction = name[f"{prefix}prediction"]
            flat = b.op("Squeeze", [values, b.const([1], np.int64)], "flat")
            scaled = b.op("Mul", [flat, b.const(o.std, np.float64)], "scaled")
            b.nodes.append(helper.make_node("Add", [scaled, b.const(o.mean, np.float64)], [prediction],
                                            name=f"post/{prediction}"))
            outputs.append(helper.make_tensor_value_info(prediction, TensorProto.DOUBLE, ["N"]))
    inputs = [helper.make_tensor_value_info(x, TensorProto.FLOAT, ["N", n_outputs])]
    graph = helper.make_graph(b.nodes, "decoding", inputs, outputs, b.inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])


def _labels(classes: list[Any]) -> tuple[np.ndarray, int]:
    if all(isinstance(c, bool) for c in classes):
        return np.asarray(classes, dtype=bool), TensorProto.BOOL
    if all(isinstance(c, int) and not isinstance(c, bool) for c in classes):
        return np.asarray(classes, dtype=np.int64), TensorProto.INT64
    if all(isinstance(c, (int, float)) and not isinstance(c, bool) for c in classes):
        return np.asarray(classes, dtype=np.float64), TensorProto.DOUBLE
    return np.asarray([str(c) for c in classes], dtype=object), TensorProto.STRING


def self_contained(network: onnx.ModelProto, pre: Any, n_outputs: int) -> onnx.ModelProto:
    """``network`` (encoded tensors -> ``output``) wrapped into raw columns -> labels/probabilities/predictions."""
    needed = {i.name for i in network.graph.input} - {init.name for init in network.graph.initializer}
    front = preprocessing_graph(pre, needed)
    network = compose.add_prefix(network, "net/")
    if network.ir_version != front.ir_version:
        front.ir_version = network.ir_version
    joined = compose.merge_models(front, network, io_map=[(f"pre:{n}", f"net/{n}") for n in needed])
    back = decoding_graph(pre, n_outputs)
    back.ir_version = joined.ir_version
    model = compose.merge_models(joined, back, io_map=[("net/output", "post:output")])
    model.graph.name = "palaestra"
    classes = {o.name: o.classes for o in pre.outputs if getattr(o, "classes", None) is not None}
    props = {
        "palaestra.inputs": RAW,
        "palaestra.preprocessing_sha256": preprocessing_sha256(pre),
        "palaestra.classes": json.dumps(next(iter(classes.values())) if len(pre.outputs) == 1 and classes
                                        else classes),
        "palaestra.columns": json.dumps([{"name": f.name, "type": f.type} for f in pre.features]),
        "palaestra.encoded_outside": json.dumps([f.name for f in pre.features if not in_graph(f)]),
    }
    helper.set_model_props(model, props)
    onnx.checker.check_model(model)
    return model


# --- feeding it ------------------------------------------------------------------------------------------------


def column_values(values: Any) -> list[Any]:
    """A column (a Series, an array or a list) as a plain list."""
    if isinstance(values, pd.Series):
        return values.tolist()
    if isinstance(values, np.ndarray):
        return values.tolist()
    return list(values)


def _text(v: Any) -> str:
    if v is None or (isinstance(v, float) and v != v):
        return ""  # missing: an NA token
    return str(v).strip()


def _number(name: str, v: Any) -> float:
    if v is None:
        return float("nan")
    if isinstance(v, str):
        text = v.strip()
        if text.lower() in NA_TOKENS:
            return float("nan")
        try:
            return float(text)
        except ValueError:
            raise DataError(f"column '{name}' must be numeric; got {v!r}") from None
    return float(v)


def raw_feed(pre: Any, columns: Any) -> dict[str, np.ndarray]:
    """Raw columns (a frame, or a mapping of column -> values) -> the self-contained graph's inputs.

    Plain Python over the values (a request holds few rows); only features encoded outside the graph (text,
    dates) go through pandas.
    """
    if isinstance(columns, pd.DataFrame):
        pre.check_columns(columns)
    else:
        missing = [f.name for f in pre.features if f.name not in columns]
        if missing:
            raise DataError(f"missing column{'s' if len(missing) > 1 else ''}: {', '.join(map(repr, missing))}")
    feed = {}
    for f in pre.features:
        values = columns[f.name]
        if isinstance(f, NumericFeature) and not isinstance(f, BinaryFeature):
            numbers = np.asarray([_number(f.name, v) for v in column_values(values)], dtype=np.float64)
            if np.isinf(numbers).any():
                raise DataError(f"column '{f.name}' holds an infinite value")
            feed[f.name] = numbers
        elif isinstance(f, DatetimeFeature):  # parsed as the data stage parses dates: NaT -> NAT
            series = values if isinstance(values, pd.Series) else pd.Series(column_values(values))
            feed[f.name] = parse_times(series).to_numpy(dtype="datetime64[ns]").astype(np.int64)
        elif in_graph(f):
            feed[f.name] = np.asarray([_text(v) for v in column_values(values)], dtype=object)
        else:
            series = values if isinstance(values, pd.Series) else pd.Series(column_values(values))
            feed[f.name] = f.transform(series)
    return feed


def probe_rows(pre: Any, n: int = 48, seed: int = 0) -> pd.DataFrame:
    """Raw rows made from the fitted state, a third of each column's values missing or unseen in training:
    what the self-contained graph is checked on besides the held-out rows."""
    from palaestra.data.features import TextFeature

    rng = np.random.default_rng(seed)
    gap = rng.random((len(pre.features), n)) < 1 / 3
    columns: dict[str, list[Any]] = {}
    for f, holes in zip(pre.features, gap, strict=True):
        if isinstance(f, BinaryFeature):
            values: list[Any] = [str(v) for v in rng.choice(["True", "false"], n)]
            fill: Any = ""
        elif isinstance(f, NumericFeature):
            values = list(f.mean + f.std * rng.normal(size=n))
            fill = None
        elif isinstance(f, CategoryFeature):
            values = [str(c) for c in rng.choice(np.asarray([str(c) for c in f.categories], dtype=object), n)]
            fill = "never seen in training"
        elif isinstance(f, TextFeature):
            words = f.vocab[:50] or ["word"]
            values = [" ".join(rng.choice(words, 3)) for _ in range(n)]
            fill = None
        elif isinstance(f, DatetimeFeature):
            years = f.mean + f.std * rng.normal(size=n)
            values = [str(pd.Timestamp(int(y * 365.2425 * 86400), unit="s")) for y in years]
            fill = None
        else:
            raise DataError(f"no probe values for a {f.type} feature")
        columns[f.name] = [fill if h else v for v, h in zip(values, holes, strict=True)]
        if isinstance(f, CategoryFeature) and n > 1:
            columns[f.name][1] = None  # missing, besides unseen
    return pd.DataFrame(columns)
