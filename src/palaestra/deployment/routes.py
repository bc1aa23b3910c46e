"""The standard protocols' endpoints on the server: the Open Inference Protocol (KServe v2) under /v2 and
MLflow's scoring protocol at /invocations (with its /ping). The protocols' request and response shapes are in
``oip.py`` and ``invocations.py``; every endpoint answers through the app's one ``Serving`` path.
"""

from __future__ import annotations

from importlib.metadata import version as package_version
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse, Response

from palaestra.deployment import invocations, oip
from palaestra.errors import UserError


def open_inference_protocol(app: Any, serving: Any) -> None:
    """The protocol's endpoints on ``app`` for the model ``serving`` answers for (``server.Serving``)."""
    pre, name = serving.pre, serving.name
    platform = "onnxruntime_onnx" if serving.backend == "onnx" else "pytorch"
    metadata = oip.model_metadata(pre, name, platform)

    def fail(exc: oip.ProtocolError) -> JSONResponse:
        return JSONResponse(oip.error(exc.message), status_code=exc.status)

    def check(model: str, version: str | None) -> None:
        if model != name:
            raise oip.ProtocolError(f"unknown model '{model}': this server serves '{name}'", status=404)
        if version not in (None, "1"):
            raise oip.ProtocolError(f"unknown version '{version}' of model '{name}': it has version 1", status=404)

    @app.get("/v2", tags=["Open Inference Protocol"])
    async def server_metadata() -> dict[str, Any]:
        return {"name": "palaestra", "version": package_version("palaestra"), "extensions": ["binary_tensor_data"]}

    @app.get("/v2/health/live", tags=["Open Inference Protocol"])
    async def live() -> dict[str, bool]:
        return {"live": True}

    @app.get("/v2/health/ready", tags=["Open Inference Protocol"])
    async def ready() -> dict[str, bool]:
        return {"ready": True}  # the model is loaded (and checked) before the server listens

    async def model_ready(model: str, version: str | None = None) -> Any:
        try:
            check(model, version)
        except oip.ProtocolError as exc:
            return fail(exc)
        return {"name": name, "ready": True}

    async def model_meta(model: str, version: str | None = None) -> Any:
        try:
            check(model, version)
        except oip.ProtocolError as exc:
            return fail(exc)
        return metadata

    async def infer(model: str, request: Request, version: str | None = None) -> Any:
        try:
            check(model, version)
            body, tensors = oip.parse_request(await request.body(), request.headers.get(oip.HEADER))
            if serving.tables:
                columns, _ = oip.table_columns(tensors, pre, serving.max_rows)
                build: Any = lambda: serving.table(columns)  # noqa: E731
            else:
                x = oip.array_input(tensors, pre.array, serving.max_rows)
                build = lambda: x  # noqa: E731
            decoded, _ = await serving(build)
            content, headers = oip.encode_response(body, name, oip.outputs(decoded, pre))
        except oip.ProtocolError as exc:
            return fail(exc)
        except UserError as exc:  # a value the preprocessing or the model cannot use
            return JSONResponse(oip.error(str(exc)), status_code=400)
        except (ValueError, TypeError) as exc:
            return JSONResponse(oip.error(f"inputs cannot be read as the model's inputs ({exc})"), status_code=400)
        except TimeoutError as exc:
            return JSONResponse(oip.error(str(exc)), status_code=503)
        return Response(content, headers={k: v for k, v in headers.items() if k != "content-type"},
                        media_type=headers["content-type"])

    tags = ["Open Inference Protocol"]
    for prefix in ("/v2/models/{model}", "/v2/models/{model}/versions/{version}"):
        app.add_api_route(prefix, model_meta, methods=["GET"], tags=tags, summary="model metadata")
        app.add_api_route(prefix + "/ready", model_ready, methods=["GET"], tags=tags, summary="model ready")
        app.add_api_route(prefix + "/infer", infer, methods=["POST"], tags=tags, summary="inference")


def mlflow_scoring(app: Any, serving: Any) -> None:
    """``POST /invocations`` and ``GET /ping`` (MLflow's health probe) on ``app`` (``server.Serving``)."""

    @app.get("/ping", tags=["MLflow scoring"])
    async def ping() -> Response:
        return Response("\n", media_type="application/json")

    @app.post("/invocations", tags=["MLflow scoring"], summary="MLflow-style scoring")
    async def invoke(request: Request) -> Any:
        try:
            raw = invocations.parse(await request.body(), request.headers.get("content-type"), serving.tables)
            n = invocations.rows_in(raw)
            if n < 1:
                raise invocations.ScoringError("the request holds no rows")
            if n > serving.max_rows:
                raise invocations.ScoringError(f"{n} rows is over the limit of {serving.max_rows} per request",
                                               status=413)
            decoded, _ = await serving(lambda: serving.table(raw) if serving.tables else raw)
            return {"predictions": invocations.predictions(decoded)}
        except invocations.ScoringError as exc:
            return JSONResponse(invocations.error(exc.message, exc.code), status_code=exc.status)
        except UserError as exc:
            return JSONResponse(invocations.error(str(exc)), status_code=400)
        except (ValueError, TypeError) as exc:
            return JSONResponse(invocations.error(f"the input cannot be read as the model's input ({exc})"),
                                status_code=400)
        except TimeoutError as exc:
            return JSONResponse(invocations.error(str(exc), "TEMPORARILY_UNAVAILABLE"), status_code=503)
