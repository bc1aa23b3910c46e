"""The server against slow, numerous or hostile clients, and what its token protects (issue 16)."""

from __future__ import annotations

import socket
import threading
import time

import httpx
import numpy as np
import pytest
from deploy_helpers import free_port, running
from testkit import cli

from palaestra.deployment.export import held_out
from palaestra.deployment.server import build_app, listen, server_config
from palaestra.errors import UserError
from palaestra.runs import Run

TOKEN = "s3cret"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def run(penguins_run):
    return Run.load(penguins_run)


def rows(run: Run, n: int = 2) -> list[dict]:
    frame = held_out(run).head(n).drop(columns=["species"])
    return [{k: (None if isinstance(v, float) and v != v else v) for k, v in r.items()}
            for r in frame.astype(object).to_dict("records")]


def test_with_protect_all_only_health_is_open(run):
    with running(build_app(run, token=TOKEN, protect_all=True)) as url:
        for path in ("/metrics", "/docs", "/openapi.json"):
            assert httpx.get(url + path).status_code == 401, path
            assert httpx.get(url + path, headers=AUTH).status_code == 200, path
        assert httpx.post(url + "/predict", json={"rows": rows(run)}).status_code == 401
        health = httpx.get(url + "/health")
        assert health.status_code == 200


def test_without_protect_all_the_token_guards_predict_only_and_health_shows_no_path(run, penguins_run):
    with running(build_app(run, token=TOKEN)) as url:
        assert httpx.get(url + "/metrics").status_code == 200
        assert httpx.post(url + "/predict", json={"rows": rows(run)}).status_code == 401
        health = httpx.get(url + "/health").text
    assert str(penguins_run.parent) not in health and "/" not in httpx.Response(200, text=health).json()["run"]


def test_protect_all_needs_a_token(penguins_run):
    r = cli("serve", str(penguins_run), "--protect-all")
    assert r.returncode == 2 and "--token-env" in r.stderr


def test_non_finite_model_outputs_are_a_422_not_a_label(run):
    app = build_app(run)
    real = app.state.predictor.runner
    app.state.predictor.runner = lambda inputs: real(inputs) * np.float32("nan")  # e.g. overflowing logits
    with running(app) as url:
        r = httpx.post(url + "/predict", json={"rows": rows(run)})
    assert r.status_code == 422 and "not finite" in r.text


def test_a_client_sending_headers_slowly_is_disconnected(run):
    port = free_port()
    config = server_config(build_app(run), "127.0.0.1", port, header_timeout=0.5, log_level="warning")
    import uvicorn

    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    try:
        with socket.create_connection(("127.0.0.1", port)) as slow:
            slow.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")  # and never the blank line that ends the head
            slow.settimeout(30)
            assert slow.recv(100) == b""  # closed by the server, without a response
        assert httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200  # and still serving others
    finally:
        server.should_exit = True
        thread.join(10)


def test_a_slow_body_gets_408(run):
    app = build_app(run, body_timeout=0.5)
    with running(app) as url:
        def trickle():
            yield b'{"rows": '
            time.sleep(3)
            yield b"[]}"

        r = httpx.post(url + "/predict", content=trickle(), headers={"Content-Type": "application/json"})
    assert r.status_code == 408


def test_a_busy_port_is_a_plain_error(penguins_run):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(UserError, match="in use"):
            listen("127.0.0.1", port)
        r = cli("serve", str(penguins_run), "--port", str(port))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith("error: cannot listen on")


def test_served_connections_send_without_nagles_delay():
    """Responses go out as written (TCP_NODELAY): with Nagle's algorithm, a response's body waits for the
    client's delayed ACK of its head, 40 ms on every kept-alive request."""
    import asyncio
    import socket as socket_module

    from palaestra.deployment.server import no_delay

    sock = listen("127.0.0.1", free_port())
    assert sock.proto == socket_module.IPPROTO_TCP
    seen = []

    async def main():
        async def handle(reader, writer):
            conn = writer.get_extra_info("socket")
            seen.append(conn.getsockopt(socket_module.IPPROTO_TCP, socket_module.TCP_NODELAY))
            no_delay(conn)  # what the server's protocol does on every connection, whatever asyncio did
            seen.append(conn.getsockopt(socket_module.IPPROTO_TCP, socket_module.TCP_NODELAY))
            writer.close()

        server = await asyncio.start_server(handle, sock=sock)
        _, writer = await asyncio.open_connection(*sock.getsockname()[:2])
        for _ in range(100):
            if seen:
                break
            await asyncio.sleep(0.01)
        writer.close()
        server.close()
        await server.wait_closed()

    asyncio.run(main())
    assert seen and all(seen)
