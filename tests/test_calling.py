"""barelab.calling: WSGI and ASGI apps called in-process, every step recorded."""

import asyncio
import re
import sys
import time
import warnings
from wsgiref.validate import validator

import pytest
from flask import Flask, jsonify, request
from starlette.applications import Starlette
from starlette.responses import JSONResponse, PlainTextResponse, StreamingResponse
from starlette.routing import Route, WebSocketRoute

from barelab.calling import (ASGICall, CallTimeout, WSGICall, acall_asgi, build_environ,
                             build_scope, call_asgi, call_lifespan, call_wsgi)

ADDRESS = re.compile(r"0x[0-9a-fA-F]{4,}")


# -- WSGI ------------------------------------------------------------------------------------

def hello_app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"Hello, ", environ["PATH_INFO"].encode("latin-1")]


def test_build_environ_follows_pep3333():
    env = build_environ("POST", "/caf%C3%A9/x%2Fy?a=1&b=%20", headers=[
        ("Content-Type", "text/plain"), ("X-Forwarded-For", "1.2.3.4"),
        ("Accept", "a"), ("Accept", "b")], body=b"hi")
    assert env["REQUEST_METHOD"] == "POST"
    assert env["PATH_INFO"] == "/caf\xc3\xa9/x/y"          # bytes in a str (latin-1)
    assert env["QUERY_STRING"] == "a=1&b=%20"              # stays encoded
    assert env["CONTENT_TYPE"] == "text/plain" and "HTTP_CONTENT_TYPE" not in env
    assert env["CONTENT_LENGTH"] == "2"
    assert env["HTTP_X_FORWARDED_FOR"] == "1.2.3.4"
    assert env["HTTP_ACCEPT"] == "a, b"                   # as the servers join repeats
    cookies = build_environ(headers=[("Cookie", "a=1"), ("Cookie", "b=2"), ("X_User", "x"),
                                     ("Host", "example.org")])
    assert cookies["HTTP_COOKIE"] == "a=1; b=2"            # RFC 6265 §5.4
    assert "HTTP_X_USER" not in cookies                    # underscore names are dropped
    assert cookies["HTTP_HOST"] == "example.org"
    assert env["wsgi.input"].read() == b"hi"
    for key in ("SCRIPT_NAME", "SERVER_NAME", "SERVER_PORT", "SERVER_PROTOCOL",
                "wsgi.version", "wsgi.url_scheme", "wsgi.errors", "wsgi.multithread",
                "wsgi.multiprocess", "wsgi.run_once"):
        assert key in env
    assert "CONTENT_LENGTH" not in build_environ()
    assert build_environ("get")["REQUEST_METHOD"] == "get"  # methods are case-sensitive


def test_build_environ_query_argument_forms():
    assert build_environ(query={"q": "a b"})["QUERY_STRING"] == "q=a+b"
    assert build_environ(query=[("x", "1"), ("x", "2")])["QUERY_STRING"] == "x=1&x=2"
    assert build_environ(query=b"z=1")["QUERY_STRING"] == "z=1"


def test_call_wsgi_records_the_steps_in_order():
    call = call_wsgi(hello_app, path="/world")
    assert isinstance(call, WSGICall)
    assert call.status == "200 OK" and call.status_code == 200
    assert call.headers == [("Content-Type", "text/plain")]
    assert call.body == b"Hello, /world" and call.text == "Hello, /world"
    assert [step for step, _ in call.steps] == ["environ", "start_response()", "yield", "yield"]
    assert call.exception is None


def test_validator_wrapped_app_passes_without_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        call = call_wsgi(validator(hello_app), "POST", "/v", body=b"data",
                         headers={"Content-Type": "text/plain"})
    assert call.body == b"Hello, /v"
    assert call.steps[-1][0] == "close()"  # the validator's iterator has close(); it ran


def test_generator_close_is_recorded():
    closed = []

    def app(environ, start_response):
        start_response("200 OK", [])
        try:
            yield b"one"
            yield b"two"
        finally:
            closed.append(True)

    call = call_wsgi(app)
    assert closed == [True]
    assert [s for s, _ in call.steps][-3:] == ["yield", "yield", "close()"]


def test_write_callable_path():
    def app(environ, start_response):
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"written ")
        return [b"returned"]

    call = call_wsgi(app)
    assert call.body == b"written returned"
    assert [s for s, _ in call.steps] == ["environ", "start_response()", "write()", "yield"]


def test_exc_info_replaces_status_before_the_body():
    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        try:
            raise ValueError("boom")
        except ValueError:
            start_response("500 Internal Server Error", [("Content-Type", "text/plain")],
                           sys.exc_info())
        return [b"sorry"]

    call = call_wsgi(app)
    assert call.status == "500 Internal Server Error"
    assert call.steps[2][0] == "start_response(…, exc_info)"
    assert "ValueError" in call.steps[2][1]


def test_exc_info_after_body_sent_reraises():
    def app(environ, start_response):
        write = start_response("200 OK", [])
        write(b"partial")
        try:
            raise ValueError("late")
        except ValueError:
            start_response("500 Internal Server Error", [], sys.exc_info())
        return []

    with pytest.raises(ValueError, match="late"):
        call_wsgi(app)
    call = call_wsgi(app, raise_errors=False)
    assert isinstance(call.exception, ValueError)
    assert call.status == "200 OK" and call.body == b"partial"
    assert call.steps[-1] == ("exception", "ValueError: late")


def test_app_exception_recorded_and_reraised_with_a_note():
    def app(environ, start_response):
        raise KeyError("missing")

    with pytest.raises(KeyError) as info:
        call_wsgi(app)
    assert any("raise_errors=False" in n for n in getattr(info.value, "__notes__", [""]))
    call = call_wsgi(app, raise_errors=False)
    assert call.status is None and call.status_code is None
    assert "the app raised KeyError: 'missing'" in repr(call)
    assert "traceback" in call._repr_html_()


def test_pep3333_rules_are_enforced():
    def str_body(environ, start_response):
        start_response("200 OK", [])
        return ["not bytes"]

    with pytest.raises(TypeError, match="PEP 3333: the app must yield bytes"):
        call_wsgi(str_body)

    def twice(environ, start_response):
        start_response("200 OK", [])
        start_response("404 Not Found", [])
        return []

    with pytest.raises(AssertionError, match="second time"):
        call_wsgi(twice)

    def bad_headers(environ, start_response):
        start_response("200 OK", {"X": "y"})
        return []

    with pytest.raises(TypeError, match="list of"):
        call_wsgi(bad_headers)


def test_wsgi_errors_are_captured():
    def app(environ, start_response):
        environ["wsgi.errors"].write("something odd\n")
        start_response("204 No Content", [])
        return []

    call = call_wsgi(app)
    assert call.errors_output == "something odd\n"
    assert "wsgi.errors:\n  something odd" in repr(call)


def test_flask_app_called_directly():
    app = Flask("demo")

    @app.post("/items/<name>")
    def item(name):
        return jsonify(name=name, got=request.get_json(), q=request.args["q"],
                       agent=request.headers.get("User-Agent"))

    call = call_wsgi(app, "POST", "/items/pen", query="q=1", body=b'{"n": 2}',
                     headers={"Content-Type": "application/json", "User-Agent": "cell"})
    assert call.status_code == 200
    assert call.json() == {"name": "pen", "got": {"n": 2}, "q": "1", "agent": "cell"}
    assert call.header("content-type") == "application/json"
    assert call.steps[-1][0] == "close()"
    assert call_wsgi(app, "GET", "/nope").status_code == 404


def test_wsgi_reprs_are_grouped_and_stable():
    call = call_wsgi(hello_app, path="/r", headers={"X-A": "<b>"})
    text = repr(call)
    for heading in ("CGI variables:", "HTTP_ headers:", "wsgi.* keys:", "transcript:",
                    "response: 200 OK"):
        assert heading in text
    assert "<BytesIO: 0 bytes>" in text and not ADDRESS.search(text)
    html = call._repr_html_()
    assert "&#x27;&lt;b&gt;&#x27;" in html and "'<b>'" not in html
    assert "<details>" in html and "HTTP_X_A" in html and not ADDRESS.search(html)
    assert repr(call) == repr(call_wsgi(hello_app, path="/r", headers={"X-A": "<b>"}))


def test_environ_overrides():
    call = call_wsgi(hello_app, environ={"SCRIPT_NAME": "/app", "wsgi.url_scheme": "https"})
    assert call.environ["SCRIPT_NAME"] == "/app"
    assert call.environ["wsgi.url_scheme"] == "https"


# -- ASGI ------------------------------------------------------------------------------------

async def echo_body_app(scope, receive, send):
    """Reads the body chunk by chunk, answers with how it arrived."""
    assert scope["type"] == "http"
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            break
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"|".join(chunks)})


def test_build_scope_http():
    scope = build_scope("http", "post", "/a%20b?x=1", headers={"X-Y": "z"})
    assert scope["type"] == "http" and scope["method"] == "POST"
    assert scope["path"] == "/a b" and scope["raw_path"] == b"/a%20b"
    assert scope["query_string"] == b"x=1"
    assert (b"x-y", b"z") in scope["headers"] and (b"host", b"127.0.0.1") in scope["headers"]
    assert scope["asgi"]["version"] == "3.0"
    ws_scope = build_scope("websocket", headers=[("Sec-WebSocket-Protocol", "a, b")])
    assert ws_scope["scheme"] == "ws" and ws_scope["subprotocols"] == ["a", "b"]
    assert build_scope("lifespan")["type"] == "lifespan"  # its version: see the test below
    with pytest.raises(ValueError):
        build_scope("smtp")


def test_asgi_body_in_chunks_and_events_recorded():
    call = call_asgi(echo_body_app, "POST", "/", body=[b"ab", b"cd", b"ef"])
    assert isinstance(call, ASGICall)
    assert call.body == b"ab|cd|ef"
    assert [m["more_body"] for m in call.received] == [True, True, False]
    assert [(d, m["type"]) for d, m in call.events] == [
        ("receive", "http.request"), ("receive", "http.request"), ("receive", "http.request"),
        ("send", "http.response.start"), ("send", "http.response.body")]
    assert call.status == 200 and call.headers == [("content-type", "text/plain")]
    assert ("content-length", "6") in [(n.decode(), v.decode()) for n, v in
                                       call.scope["headers"]]


def test_asgi_streaming_response_with_more_body():
    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for part in (b"a", b"b"):
            await send({"type": "http.response.body", "body": part, "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    call = call_asgi(app)
    assert call.body == b"ab"
    assert [m.get("more_body", False) for m in call.sent[1:]] == [True, True, False]
    assert call.received == []  # the app never asked for the request body


def test_disconnect_only_after_the_response_is_complete():
    async def app(scope, receive, send):
        await receive()
        watcher = asyncio.ensure_future(receive())   # like a "client gone?" watcher
        await asyncio.sleep(0.05)
        assert not watcher.done()                    # still connected: the response is open
        await send({"type": "http.response.start", "status": 200})
        await send({"type": "http.response.body", "body": b"done"})
        assert (await watcher) == {"type": "http.disconnect"}

    call = call_asgi(app)
    assert [m["type"] for d, m in call.events][-1] == "http.disconnect"


def test_starlette_routes_and_json():
    async def home(request):
        return JSONResponse({"path": request.url.path, "q": request.query_params.get("q"),
                             "data": await request.json()})

    async def stream(request):
        async def parts():
            yield "one\n"
            yield "two\n"
        return StreamingResponse(parts(), media_type="text/plain")

    app = Starlette(routes=[Route("/api", home, methods=["POST"]), Route("/stream", stream)])
    call = call_asgi(app, "POST", "/api", query=b"q=7", body=b'{"k": true}',
                     headers=[("content-type", "application/json")])
    assert call.status == 200
    assert call.json() == {"path": "/api", "q": "7", "data": {"k": True}}
    assert call.header("Content-Type") == "application/json"
    streamed = call_asgi(app, "GET", "/stream")
    assert streamed.text == "one\ntwo\n"
    assert len([m for m in streamed.sent if m["type"] == "http.response.body"]) >= 3
    assert call_asgi(app, "GET", "/missing").status == 404


def test_asgi_reprs_are_compact_and_stable():
    call = call_asgi(echo_body_app, "POST", "/p?x=1", body=b"x" * 200)
    text = repr(call)
    assert text.startswith("scope: http POST /p?x=1\n")
    assert "→ app  http.request" in text and "app →  http.response.start" in text
    assert "…" in text                                  # long bytes are cut
    assert "response: 200 OK" in text and not ADDRESS.search(text)
    html = call._repr_html_()
    assert "<table>" in html and not ADDRESS.search(html)
    assert text == repr(call_asgi(echo_body_app, "POST", "/p?x=1", body=b"x" * 200))


def test_websocket_echo_via_receive_events():
    async def echo(scope, receive, send):
        assert scope["type"] == "websocket"
        while True:
            message = await receive()
            if message["type"] == "websocket.connect":
                await send({"type": "websocket.accept"})
            elif message["type"] == "websocket.receive":
                await send({"type": "websocket.send", "text": message["text"].upper()})
            else:
                return

    call = call_asgi(echo, "GET", "/ws", receive_events=[
        {"type": "websocket.connect"},
        {"type": "websocket.receive", "text": "hi"},
        {"type": "websocket.disconnect", "code": 1000}])
    assert call.scope["type"] == "websocket" and call.scope["path"] == "/ws"
    assert call.sent == [{"type": "websocket.accept"}, {"type": "websocket.send", "text": "HI"}]
    assert call.status is None
    assert "the app sent websocket.accept, websocket.send" in repr(call)


def test_starlette_websocket_and_automatic_disconnect():
    async def ws_endpoint(websocket):
        await websocket.accept()
        async for text in websocket.iter_text():
            await websocket.send_text(f"echo {text}")

    app = Starlette(routes=[WebSocketRoute("/ws", ws_endpoint)])
    call = call_asgi(app, path="/ws", scope={"type": "websocket"}, receive_events=[
        {"type": "websocket.connect"}, {"type": "websocket.receive", "text": "a"}])
    # After the listed events, the app is told the client went away.
    assert call.received[-1] == {"type": "websocket.disconnect", "code": 1000}
    assert {"type": "websocket.send", "text": "echo a"} in call.sent


def test_lifespan_startup_then_shutdown():
    seen = []

    async def app(scope, receive, send):
        assert scope["type"] == "lifespan"
        while True:
            message = await receive()
            seen.append(message["type"])
            if message["type"] == "lifespan.startup":
                await asyncio.sleep(0.01)
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return

    call = call_lifespan(app)
    assert [(d, m["type"]) for d, m in call.events] == [
        ("receive", "lifespan.startup"), ("send", "lifespan.startup.complete"),
        ("receive", "lifespan.shutdown"), ("send", "lifespan.shutdown.complete")]
    assert "scope: lifespan" in repr(call)


def test_lifespan_of_starlette_app():
    from contextlib import asynccontextmanager

    state = []

    @asynccontextmanager
    async def lifespan(app):
        state.append("up")
        yield
        state.append("down")

    call = call_lifespan(Starlette(lifespan=lifespan))
    assert state == ["up", "down"]
    assert [m["type"] for m in call.sent] == ["lifespan.startup.complete",
                                              "lifespan.shutdown.complete"]


def test_lifespan_unsupported_app_raises():
    async def app(scope, receive, send):
        if scope["type"] != "http":
            raise RuntimeError("http only")

    with pytest.raises(RuntimeError, match="http only"):
        call_lifespan(app)
    call = call_lifespan(app, raise_errors=False)
    assert isinstance(call.exception, RuntimeError)
    assert "the app raised RuntimeError: http only" in repr(call)


def test_call_asgi_inside_a_running_event_loop():
    async def cell():  # what a Jupyter cell is: code running while the kernel's loop runs
        assert asyncio.get_running_loop().is_running()
        return call_asgi(echo_body_app, "POST", body=b"in-loop")

    assert asyncio.run(cell()).body == b"in-loop"


def test_acall_asgi_top_level_await():
    async def cell():
        return await acall_asgi(echo_body_app, "POST", body=[b"a", b"b"])

    assert asyncio.run(cell()).body == b"a|b"


def test_hanging_app_times_out_clearly():
    async def app(scope, receive, send):
        await receive()
        await receive()  # waits for a disconnect that only comes after a response

    start = time.monotonic()
    with pytest.raises(TimeoutError, match=r"did not return within 0.2s; the last event was "
                                           r"receive http.request") as info:
        call_asgi(app, timeout=0.2)
    assert time.monotonic() - start < 1.0
    assert isinstance(info.value, CallTimeout)
    assert info.value.call.received == [{"type": "http.request", "body": b"",
                                         "more_body": False}]


def test_app_blocking_the_loop_still_times_out():
    async def app(scope, receive, send):
        time.sleep(1.5)  # never yields to the loop, so wait_for cannot cancel it

    start = time.monotonic()
    with pytest.raises(CallTimeout, match="never called receive"):
        call_asgi(app, timeout=0.05)
    assert time.monotonic() - start < 1.0


def test_asgi_exception_recorded_and_reraised():
    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200})
        raise ValueError("mid-response")

    with pytest.raises(ValueError, match="mid-response"):
        call_asgi(app)
    call = call_asgi(app, raise_errors=False)
    assert isinstance(call.exception, ValueError) and call.status == 200
    assert "the app raised ValueError: mid-response" in repr(call)
    assert "traceback" in call._repr_html_()


def test_asgi_spec_violations_are_errors():
    async def body_first(scope, receive, send):
        await send({"type": "http.response.body", "body": b"x"})

    with pytest.raises(RuntimeError, match="before http.response.start"):
        call_asgi(body_first)

    async def after_end(scope, receive, send):
        await send({"type": "http.response.start", "status": 200})
        await send({"type": "http.response.body", "body": b"x"})
        await send({"type": "http.response.body", "body": b"y"})

    with pytest.raises(RuntimeError, match="after the response was complete"):
        call_asgi(after_end)

    async def not_a_dict(scope, receive, send):
        await send("http.response.start")

    with pytest.raises(TypeError, match="'type' key"):
        call_asgi(not_a_dict)


def test_plain_text_response_and_header_helper():
    call = call_asgi(PlainTextResponse("hi there"))
    assert call.text == "hi there" and call.header("content-length") == "8"


def test_lifespan_scopes_carry_the_lifespan_spec_version():
    scope = build_scope("lifespan")
    assert scope["asgi"] == {"version": "3.0", "spec_version": "2.0"}
    assert scope["state"] == {}
