"""The server's first layer, before any parsing: bearer token (401), body size (413) and time (408), request
metrics, and errors in the shape of the protocol a path belongs to.
"""

import asyncio
import hmac
import time
from typing import Any

from fastapi.responses import JSONResponse

from palaestra.deployment import invocations, oip
from palaestra.deployment.monitoring import Metrics

ENDPOINTS = ("/predict", "/invocations", "/v2/infer", "/v2/models", "/v2/health", "/health", "/ping", "/metrics",
             "/openapi.json", "/docs")
# With a token: the prediction endpoints (/predict, /invocations, /v2/models/NAME/infer) always need it; with
# protect_all, every endpoint but the health probes does (/metrics shows the prediction and input
# distributions, /docs, /openapi.json and /v2/models/NAME the input schema and the training categories).
OPEN_ENDPOINTS = ("/health", "/ping", "/v2/health/live", "/v2/health/ready")
BODY_TIMEOUT = 30.0


class Guard:
    """ASGI middleware that runs before any parsing: bearer token (401), body size (413), metrics."""

    def __init__(self, app, metrics: Metrics, token: str | None, max_body: int, protect_all: bool = False,
                 body_timeout: float = BODY_TIMEOUT):
        self.app, self.metrics, self.max_body, self.protect_all = app, metrics, max_body, protect_all
        self.token = f"Bearer {token}".encode() if token else None
        self.body_timeout = body_timeout

    def protected(self, path: str) -> bool:
        """Whether ``path`` needs the token: a prediction endpoint always; with protect_all, everything but
        the health probes."""
        return endpoint_label(path) in PREDICTING or (self.protect_all and path not in OPEN_ENDPOINTS)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path, started, status = scope["path"], time.perf_counter(), [500]

        async def send_status(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            headers = dict(scope.get("headers") or [])
            if self.token and self.protected(path):
                given = headers.get(b"authorization", b"")
                if not hmac.compare_digest(given, self.token):
                    return await reply(scope, send_status, 401, "missing or wrong bearer token (Authorization: Bearer TOKEN)",
                                        [(b"www-authenticate", b"Bearer")])
            if scope["method"] in ("POST", "PUT", "PATCH"):
                try:
                    declared = int(headers.get(b"content-length", b"0") or 0)
                except ValueError:
                    return await reply(scope, send_status, 400, "invalid Content-Length header")
                if declared > self.max_body:
                    return await reply(scope, send_status, 413, f"request body over the limit of {self.max_body} bytes")
                try:  # a trickling body does not hold a worker
                    body = await asyncio.wait_for(self._read_body(receive), self.body_timeout)
                except asyncio.TimeoutError:
                    return await reply(scope, send_status, 408, f"request body not received within "
                                                                 f"{self.body_timeout:g} s")
                if body is None:  # the client went away
                    return
                if len(body) > self.max_body:
                    return await reply(scope, send_status, 413, f"request body over the limit of {self.max_body} bytes")
                receive = replay_body(bytes(body), receive)
            await self.app(scope, receive, send_status)
        finally:
            self.metrics.observe_request(endpoint_label(path), status[0], time.perf_counter() - started)


    async def _read_body(self, receive) -> bytearray | None:
        body, more = bytearray(), True
        while more:  # chunked bodies carry no length: count as they arrive
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > self.max_body:
                break
        return body


PREDICTING = ("/predict", "/invocations", "/v2/infer")


def endpoint_label(path: str) -> str:
    """The endpoint a path is counted under: bounded label values, whatever paths clients send (the model name
    in /v2/models/NAME/... is the client's)."""
    if path.startswith("/v2/models/"):
        return "/v2/infer" if path.endswith("/infer") else "/v2/models"
    if path.startswith("/v2/health/"):
        return "/v2/health"
    return path if path in ENDPOINTS else "other"


def protocol_of(path: str) -> str | None:
    """``oip`` for the Open Inference Protocol's paths, ``mlflow`` for /invocations, None for our own."""
    if path == "/v2" or path.startswith("/v2/"):
        return "oip"
    return "mlflow" if path == "/invocations" else None


def error_body(path: str, message: str) -> dict[str, Any]:
    """An error in the shape the path's protocol gives it: the Open Inference Protocol's ``{"error"}`` under
    /v2, MLflow's ``{"error_code", "message"}`` at /invocations, FastAPI's ``{"detail"}`` elsewhere."""
    protocol = protocol_of(path)
    if protocol == "oip":
        return oip.error(message)
    if protocol == "mlflow":
        return invocations.error(message)
    return {"detail": message}


def replay_body(body: bytes, receive):
    sent = False

    async def replay():
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def reply(scope, send, status: int, detail: str, headers: list[tuple[bytes, bytes]] = ()) -> None:
    response = JSONResponse(error_body(scope["path"], detail), status_code=status,
                            headers={k.decode(): v.decode() for k, v in headers})
    await response(scope, None, send)
