"""The HTTP server (DESIGN.md section 5): FastAPI + uvicorn, torch or onnxruntime backend.

``POST /predict`` takes ``{"rows": [...]}`` (tables) or ``{"inputs": [...]}`` (arrays) and applies the run's
fitted preprocessing, so answers equal ``palaestra predict``. Client mistakes are 4xx with a message
naming the field; a 500 means a bug in the server, never bad input.

>>> app = build_app(Run.load("runs/penguins"), backend="onnx")  # doctest: +SKIP
"""

# No `from __future__ import annotations`: FastAPI reads the request model from the live annotation.
import asyncio
import errno
import logging
import os
import socket
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal

import numpy as np
import pandas as pd
from fastapi import FastAPI, HTTPException, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ConfigDict, Field, create_model
from starlette.exceptions import HTTPException as StarletteHTTPException

from palaestra.artifacts import read_json
from palaestra.data.features import BinaryFeature, CategoryFeature, NumericFeature
from palaestra.data.spec import Decoded
from palaestra.deployment import routes
from palaestra.deployment.export import OnnxRunner, RawOnnxRunner, TorchRunner, export
from palaestra.deployment.guard import BODY_TIMEOUT, Guard, error_body, protocol_of
from palaestra.deployment.monitoring import Metrics, PredictionLog, environment_warnings
from palaestra.errors import ArtifactError, UserError, redact_logs
from palaestra.runs import Run, finite_outputs, run_name

log = logging.getLogger("palaestra.serve")
MAX_BODY_BYTES = 1 << 20
MAX_ROWS = 10_000
# Slow clients: a request's headers must arrive within HEADER_TIMEOUT seconds of the connection (or of the last
# response on a kept-alive one), its body within BODY_TIMEOUT; at most MAX_CONNECTIONS at once (then 503).
HEADER_TIMEOUT = 10.0
MAX_CONNECTIONS = 64
MAX_HEADER_BYTES = 16 << 10


class Message(BaseModel):
    detail: Any


class PredictResponse(BaseModel):
    predictions: list[Any] = Field(description="labels as in the training data, or values in the target's units; "
                                               "with several targets one {target: value} per row")
    probabilities: list[dict[str, Any]] | None = Field(
        None, description="classification: one {class: p} per row; with several targets {target: {class: p}}")


# --- the model behind the endpoint -----------------------------------------------------------------------------


class Predictor:
    """Raw rows or arrays -> (predictions, probabilities), with the run's preprocessing and a chosen backend."""

    def __init__(self, run: Run, backend: Literal["torch", "onnx"] = "torch"):
        self.run, self.backend = run, backend
        self.pre = run.preprocessor
        self._tmp = None
        # With the ONNX backend a table run's graph holds its preprocessing: requests feed it their raw columns
        # (a mapping of column -> values; no pandas frame is built) and it runs once per request.
        self.columns = backend == "onnx" and takes_rows(run) and run.spec.kind == "table"
        if backend == "torch":
            self.runner: Any = TorchRunner(run.model)
        elif backend == "onnx":
            # Exported (and checked against the torch model) at start-up, into a directory of our own.
            self._tmp = tempfile.TemporaryDirectory(prefix="palaestra-serve-")
            path, _ = export(run, "onnx", out=os.path.join(self._tmp.name, "model.onnx"))
            self.runner = RawOnnxRunner(path, self.pre) if self.columns else OnnxRunner(path, list(run.spec.input_names))
        else:
            raise UserError(f"unknown backend '{backend}': choose torch or onnx")

    def inputs(self, raw: Any) -> Any:
        """Raw rows (a frame, or with ``columns`` a mapping of column -> values) or arrays -> the model's inputs."""
        if self.columns:
            return self.runner.feed(raw)
        return tuple(self.pre.inputs(raw))

    def decode(self, inputs: Any, raw: Any = None) -> list[Decoded]:
        """``raw``: the request's rows, for a preprocessor that decodes with them (a forecast of several
        series: each series has its own scale)."""
        if self.columns:
            outputs = self.runner.outputs(inputs, [self.runner.logits])[self.runner.logits]
        else:
            outputs = self.runner(inputs)
        # The same decoding as Run.predict (the preprocessor's one path from outputs to answers).
        outputs = finite_outputs(np.asarray(outputs, dtype=np.float32))  # NaN/inf: 4xx
        if getattr(self.pre, "decodes_with_rows", False):
            return self.pre.decode(outputs, raw)
        return self.pre.decode(outputs)

    def predict(self, inputs: tuple[np.ndarray, ...]) -> tuple[list[Any], list[dict[str, Any]] | None]:
        return answers(self.decode(inputs))


def answers(decoded: list[Decoded]) -> tuple[list[Any], list[dict[str, Any]] | None]:
    """Decoded targets -> /predict's JSON: predictions, and {class: p} per row (None for regression)."""
    per_target = [([_plain(v) for v in d.predictions],
                   None if d.probabilities is None else
                   [dict(zip([str(c) for c in d.classes or []], map(float, p), strict=True)) for p in d.probabilities])
                  for d in decoded]
    if len(decoded) == 1:
        return per_target[0]
    n = len(per_target[0][0])
    predictions = [{d.name: a[0][i] for d, a in zip(decoded, per_target, strict=True)} for i in range(n)]
    probabilities = [{d.name: a[1][i] for d, a in zip(decoded, per_target, strict=True) if a[1] is not None}
                     for i in range(n)]
    return predictions, probabilities if any(probabilities) else None


def records(raw: Any) -> list[dict[str, Any]]:
    """Rows (a frame, or a mapping of column -> values) as one {column: value} per row."""
    if isinstance(raw, pd.DataFrame):
        return raw.to_dict("records")
    names = list(raw)
    return [dict(zip(names, row, strict=True)) for row in zip(*(list(raw[c]) for c in names), strict=True)]


def _plain(v: Any) -> Any:
    v = v.item() if hasattr(v, "item") else v
    return float(v) if isinstance(v, float) else v


# --- request schema from the training schema --------------------------------------------------------------------


def takes_rows(run: Run) -> bool:
    """Whether the model reads raw table rows (``{"rows": ...}``) rather than arrays (``{"inputs": ...}``)."""
    pre = run.preprocessor
    return hasattr(pre, "features") and getattr(pre, "array", None) is None


def request_model(run: Run, max_rows: int) -> type[BaseModel]:
    """``{"rows": [...]}`` with one required field per training column, or ``{"inputs": [...]}`` for arrays."""
    pre = run.preprocessor
    if run.spec.task == "forecast":
        return _series_request(pre, max_rows)
    if takes_rows(run):
        fields: dict[str, Any] = {}
        for i, col in enumerate(pre.features):
            if isinstance(col, BinaryFeature):
                kind: Any = bool | float | str | None
                doc = "true/false (missing: null)"
            elif isinstance(col, NumericFeature):
                kind = float | None
                doc = f"number (missing: null, imputed with {col.fill:g})"
            elif isinstance(col, CategoryFeature):
                kind = str | int | float | bool | None
                doc = "one of: " + ", ".join(map(str, col.categories[:20])) + " (unseen or null: handled as unknown)"
            else:
                kind = str | None
                doc = f"{col.type} (missing: null)"
            # Columns may not be Python identifiers: the alias carries the real name.
            fields[f"f{i}"] = (kind, Field(..., alias=col.name, description=doc))
        row = create_model("Row", __config__=ConfigDict(extra="allow", populate_by_name=False), **fields)
        return create_model("PredictRequest", __config__=ConfigDict(extra="forbid"),
                            rows=(list[row], Field(..., min_length=1, max_length=max_rows,  # type: ignore[valid-type]
                                                   description="raw rows with the training columns")))
    shape = getattr(getattr(pre, "array", None), "shape", None)
    each = f"a nested list of shape {'x'.join(map(str, shape))}" if shape else "one input array"
    return create_model("PredictRequest", __config__=ConfigDict(extra="forbid"),
                        inputs=(list[Any], Field(..., min_length=1, max_length=max_rows,
                                                 description=f"a list of samples, each {each}")))


def _series_request(pre: Any, max_rows: int) -> type[BaseModel]:
    """A forecast's request: the series' latest rows (at least a window of them per series), in any order, each
    with its time, its series and the numeric columns; the target may be null in rows that only bring the
    horizon's known covariates."""
    fields: dict[str, Any] = {}
    named = [c for c in (pre.time_column, pre.series_id) if c]
    for i, name in enumerate([*named, *pre.features]):
        if name in named:
            kind: Any = str | int | float
            doc = "the time of the row" if name == pre.time_column else "the series the row belongs to"
        else:
            kind = float | None
            doc = "the target (null: a future row)" if name == pre.target else "a numeric column (null: the last value)"
        fields[f"f{i}"] = (kind, Field(..., alias=name, description=doc))
    row = create_model("SeriesRow", __config__=ConfigDict(extra="allow", populate_by_name=False), **fields)
    return create_model("PredictRequest", __config__=ConfigDict(extra="forbid"),
                        rows=(list[row], Field(..., min_length=1, max_length=max_rows,  # type: ignore[valid-type]
                                               description=f"at least data.window={pre.window} rows per series; "
                                                           "one forecast per origin")))


def _field_name(loc: tuple | list) -> str:
    parts = [str(p) for p in loc if p != "body"]
    out = ""
    for p in parts:
        out += f"[{p}]" if p.isdigit() else (f".{p}" if out else p)
    return out or "body"


# --- the app ---------------------------------------------------------------------------------------------------


class Serving:
    """What every protocol's endpoint shares: raw rows (a frame) or arrays -> decoded predictions, computed in
    the worker pool under the time limit, counted in the metrics and drift, and written to the prediction log.

    Raises ``UserError`` for values the preprocessing or the model cannot use, and ``TimeoutError`` past the
    limit; each protocol turns them into its own 4xx/503 shape.
    """

    def __init__(self, run: Run, predictor: Predictor, metrics: Metrics, timeout: float, max_rows: int,
                 prediction_log: PredictionLog | None, name: str, backend: str):
        self.run, self.predictor, self.metrics, self.timeout = run, predictor, metrics, timeout
        self.max_rows, self.prediction_log, self.name, self.backend = max_rows, prediction_log, name, backend
        self.pre = run.preprocessor
        self.tables = takes_rows(run)
        self.executor = ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2), thread_name_prefix="predict")

    def table(self, columns: dict[str, Any]) -> Any:
        """Raw columns (column -> values) as the predictor reads them: as they are for a graph that holds its
        preprocessing (no pandas on the request path), else a frame."""
        return columns if self.predictor.columns else pd.DataFrame(columns)

    def work(self, build: Any, logged: Any = None) -> tuple[list[Decoded], tuple[list, Any]]:
        """Synchronously: (decoded targets, /predict's (predictions, probabilities)). ``build``: a function
        returning the raw rows (a frame, or ``table``'s columns) or arrays, called here, in the worker, not on
        the event loop. ``logged``: the rows as the prediction log records them (default: the rows as
        records, or the arrays as lists)."""
        raw = build()
        inputs = self.predictor.inputs(raw)
        decoded = self.predictor.decode(inputs, raw)
        predictions, probabilities = answers(decoded)
        self.metrics.observe_predictions(predictions)
        if self.tables:
            self.metrics.drift.observe_rows(raw, len(predictions))
        elif inputs[0].ndim >= 2 and np.issubdtype(inputs[0].dtype, np.floating):
            self.metrics.drift.observe_standardized(inputs[0])
        if self.prediction_log is not None:
            if logged is None:
                logged = records(raw) if self.tables else np.asarray(raw).tolist()
            self.prediction_log.write(logged, predictions, probabilities)
        return decoded, (predictions, probabilities)

    async def __call__(self, build: Any, logged: Any = None) -> tuple[list[Decoded], tuple[list, Any]]:
        loop = asyncio.get_running_loop()
        try:
            return await asyncio.wait_for(loop.run_in_executor(self.executor, self.work, build, logged), self.timeout)
        except asyncio.TimeoutError:  # (an alias of TimeoutError only from Python 3.11)
            raise TimeoutError(f"prediction took longer than {self.timeout:g} s") from None


def build_app(run: Run, backend: Literal["torch", "onnx"] = "torch", token: str | None = None,
              max_body_bytes: int = MAX_BODY_BYTES, max_rows: int = MAX_ROWS, timeout: float = 30.0,
              prediction_log: PredictionLog | None = None, protect_all: bool = False,
              body_timeout: float = BODY_TIMEOUT, model_name: str | None = None) -> FastAPI:
    """The FastAPI app serving ``run``: /predict, the Open Inference Protocol under /v2 (the model named
    ``model_name``, by default the run's name) and MLflow's /invocations. ``token``: required as
    ``Authorization: Bearer TOKEN`` on the prediction endpoints, and with ``protect_all`` on every endpoint but
    the health probes (/metrics, /docs, /openapi.json and the model metadata too)."""
    predictor = Predictor(run, backend)
    metrics = Metrics(run.preprocessor, run.spec.task)
    warnings = []
    if run.path is not None and (run.path / "env.json").is_file():
        try:
            warnings = environment_warnings(read_json(run.path / "env.json"))
        except ArtifactError as exc:
            warnings = [str(exc)]
    for w in warnings:
        log.warning("environment differs from training: %s", w)
    name = model_name or run_name(run.config, getattr(run.preprocessor, "target", None)).replace("/", "-")
    if not name or "/" in name or name.strip() != name:
        raise UserError(f"the model name {name!r} cannot be part of a URL path: give --model-name without '/' or spaces "
                        f"at its ends")
    serving = Serving(run, predictor, metrics, timeout, max_rows, prediction_log, name, backend)
    tables = serving.tables
    Request_ = request_model(run, max_rows)
    started = time.time()

    app = FastAPI(title=f"palaestra: {run.config.name}", version="1",
                  description=f"{run.spec.task} model ({run.config.model.family}, {backend} backend). "
                              + ("POST raw rows with the training columns." if tables else "POST input arrays.")
                              + f" Also the Open Inference Protocol (KServe v2) as model '{name}' under /v2, "
                                "and MLflow's scoring protocol at /invocations.")
    app.state.predictor, app.state.metrics, app.state.serving = predictor, metrics, serving

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")} for e in exc.errors()]
        first = errors[0] if errors else {"loc": ["body"], "msg": "invalid request"}
        return JSONResponse(status_code=422, content=jsonable_encoder(
            {"detail": errors, "message": f"{_field_name(first['loc'])}: {first['msg']}"}))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        # Unknown paths (404) and wrong methods (405) too: in the shape of the protocol the path belongs to.
        path = request.url.path
        body = error_body(path, str(exc.detail)) if protocol_of(path) else {"detail": exc.detail}
        return JSONResponse(body, status_code=exc.status_code, headers=getattr(exc, "headers", None))

    errors = {401: {"model": Message}, 408: {"model": Message}, 413: {"model": Message}, 503: {"model": Message}}

    @app.post("/predict", response_model=PredictResponse, response_model_exclude_none=True, responses=errors)
    async def predict(body: Request_) -> Any:  # type: ignore[valid-type]
        try:
            if tables:
                logged = [r.model_dump(by_alias=True) for r in body.rows]
                names = run.preprocessor.feature_columns
                _, (predictions, probabilities) = await serving(
                    lambda: serving.table({c: [r.get(c) for r in logged] for c in names}), logged)
            else:
                _, (predictions, probabilities) = await serving(
                    lambda: np.asarray(body.inputs, dtype=np.float32), body.inputs)
        except UserError as exc:  # DataError: a value the preprocessing or the model cannot use
            raise HTTPException(422, detail=[{"loc": ["body", "rows" if tables else "inputs"], "msg": str(exc),
                                              "type": "value_error"}]) from None
        except (ValueError, TypeError) as exc:  # e.g. ragged or non-numeric nested lists
            raise HTTPException(422, detail=[{"loc": ["body", "inputs"], "type": "value_error",
                                              "msg": f"inputs must be numeric arrays of one shape ({exc})"}]) from None
        except TimeoutError as exc:
            raise HTTPException(503, detail=str(exc)) from None
        return {"predictions": predictions, **({"probabilities": probabilities} if probabilities else {})}

    @app.get("/health")
    async def health() -> dict[str, Any]:
        # The run's name, not its path: /health is open, and filesystem paths are nobody's business.
        return {"status": "ok", "run": run.path.name if run.path else None, "name": run.config.name,
                "model_name": name, "task": run.spec.task, "model": run.config.model.family, "backend": backend,
                "classes": run.spec.classes, "inputs": "rows" if tables else "inputs",
                "environment_warnings": warnings, "uptime_seconds": round(time.time() - started, 3)}

    @app.get("/metrics", response_class=Response, responses={200: {"content": {"text/plain": {}}}})
    async def prometheus() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    if run.spec.task != "forecast":  # a forecast reads whole series of rows: /predict and /invocations take them
        routes.open_inference_protocol(app, serving)
    routes.mlflow_scoring(app, serving)
    app.add_middleware(Guard, metrics=metrics, token=token, max_body=max_body_bytes, protect_all=protect_all,
                       body_timeout=body_timeout)
    return app


def listen(host: str, port: int) -> socket.socket:
    """A bound listening socket, or a UserError (exit 2) saying why not: a busy port, an unknown host."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise UserError(f"cannot listen on {host}:{port}: {getattr(exc, 'strerror', None) or exc}") from None
    family = infos[0][0] if infos else socket.AF_INET
    # With the protocol named (IPPROTO_TCP), asyncio sets TCP_NODELAY on the accepted connections itself.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        why = "the port is in use (choose another --port)" if exc.errno == errno.EADDRINUSE else exc.strerror or exc
        raise UserError(f"cannot listen on {host}:{port}: {why}") from None
    sock.set_inheritable(True)
    return sock


def no_delay(sock: Any) -> None:
    """TCP_NODELAY on a connection: uvicorn writes a response's head and body separately, and with Nagle's
    algorithm the body waits for the client's delayed ACK of the head (40 ms on Linux) on every request."""
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass  # e.g. the client is already gone


def server_config(app, host: str, port: int, header_timeout: float = HEADER_TIMEOUT,
                  max_connections: int = MAX_CONNECTIONS, log_level: str = "info"):
    """uvicorn's settings for a server that slow or numerous clients cannot tie up."""
    import uvicorn

    protocol = timed_h11(header_timeout)
    config = uvicorn.Config(app, host=host, port=port, log_level=log_level, http=protocol,
                            timeout_keep_alive=5, timeout_graceful_shutdown=30, limit_concurrency=max_connections,
                            backlog=max(128, max_connections), h11_max_incomplete_event_size=MAX_HEADER_BYTES)
    redact_logs()  # a client may send ?token=... in a URL, and uvicorn logs request lines
    return config


def timed_h11(header_timeout: float) -> type:
    """uvicorn's h11 protocol with a deadline for each request's headers: uvicorn's own timeouts only close
    idle kept-alive connections, so a client sending a header byte every few seconds would hold one forever."""
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class TimedH11(H11Protocol):
        _deadline = None

        def connection_made(self, transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            no_delay(transport.get_extra_info("socket"))
            self._arm()

        def handle_events(self) -> None:
            cycle = self.cycle
            super().handle_events()
            if self.cycle is not cycle:  # a whole request head arrived
                self._disarm()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing():
                self._arm()  # the next request on this connection gets its own deadline

        def connection_lost(self, exc) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _arm(self) -> None:
            self._disarm()
            self._deadline = self.loop.call_later(header_timeout, self._too_slow)

        def _disarm(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None

        def _too_slow(self) -> None:
            self._deadline = None
            if not self.transport.is_closing():
                self.logger.info("closing a connection whose request headers took over %g s", header_timeout)
                self.transport.close()

    return TimedH11


def serve(run: Run, host: str = "127.0.0.1", port: int = 8000, header_timeout: float = HEADER_TIMEOUT,
          max_connections: int = MAX_CONNECTIONS, **options: Any) -> None:
    """Build the app and run it under uvicorn until SIGINT/SIGTERM (in-flight requests finish first)."""
    import uvicorn

    sock = listen(host, port)  # first: a busy port is a plain error before minutes of start-up
    app = build_app(run, **options)
    server = uvicorn.Server(server_config(app, host, port, header_timeout, max_connections))
    server.run(sockets=[sock])
