"""`bare` passes chapter 19's battery when served by the course's ASGI server and barelab's.

The battery's probes expect an echo app (chapter 19's `echo_asgi`). Here the same app is
written with `bare`: routes for every path and method, 204 and 304 routes, a WebSocket echo
on every path. The framework adds its own layers (routing, Request, Response, HEAD, error
handling), and none of them may cost a MUST, nor fail a rule the plain echo app passes.
"""

from __future__ import annotations

import pytest

from battery import battery_table

from barelab.built.bare import Bare, Response, WebSocketDisconnect
from barelab.built.conformance import BATTERY, MUST, echo_asgi, echo_text
from barelab.built.websocket import WebSocketASGIServer

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def bare_echo() -> Bare:
    app = Bare(name="bare-echo")

    @app.route("/204", methods=METHODS)
    async def no_content(request):
        return Response(b"", 204)

    @app.route("/304", methods=METHODS)
    async def not_modified(request):
        return Response(b"", 304)

    async def echo(request):
        body = await request.body()
        probe = request.headers.get("x-probe")
        return Response(body or echo_text(request.scope["path"],
                                          request.scope["query_string"].decode("latin-1"),
                                          probe), headers=[("content-type", "text/plain")])

    async def echo_socket(websocket):
        await websocket.accept()
        try:
            while True:
                message = await websocket.receive_message()
                if message.get("text") is not None:
                    await websocket.send_text(message["text"])
                else:
                    await websocket.send_bytes(message["bytes"])
        except WebSocketDisconnect:
            pass

    for path in ("/", "/{rest:path}"):
        app.add_route(path, echo, methods=METHODS)
        app.websocket(path)(echo_socket)
    return app


SERVERS = {                      # name -> (app, engine class or None for barelab's own)
    "echo on course ASGI": (echo_asgi, WebSocketASGIServer),
    "bare on course ASGI": (bare_echo(), WebSocketASGIServer),
    "echo on barelab ASGI": (echo_asgi, None),
    "bare on barelab ASGI": (bare_echo(), None),
}


@pytest.fixture(scope="module")
def tables():
    with battery_table(SERVERS, BATTERY) as table:
        yield table


@pytest.mark.parametrize("server", ["course ASGI", "barelab ASGI"])
def test_bare_fails_no_must(tables, server):
    failures = tables.columns[f"bare on {server}"].failures(MUST)
    assert failures == [], tables.failure_report(names=[f"bare on {server}"])


@pytest.mark.parametrize("server", ["course ASGI", "barelab ASGI"])
def test_bare_fails_nothing_the_plain_echo_app_passes(tables, server):
    def failed(name):
        return {result.probe.name for result in tables.columns[name].failures()}
    assert failed(f"bare on {server}") <= failed(f"echo on {server}"), \
        tables.failure_report(names=[f"bare on {server}", f"echo on {server}"])


def test_the_battery_covers_http_and_websocket():
    assert sum(p.needs == "websocket" for p in BATTERY) >= 6
    assert sum(p.level == MUST for p in BATTERY) >= 20
