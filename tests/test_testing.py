"""Tests of barelab.built.testing, chapter 17's in-process test client and test runner.

The client against Flask (WSGI), Starlette (HTTP, streaming, lifespan, WebSocket) and the
course's own apps; its cookie jar against RFC 6265's rules; the runner's fixtures and
reports; and SocketClient against the course's WSGI and ASGI servers, with the same tests
(HTTP and WebSocket) run in-process and over a socket.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from contextlib import asynccontextmanager

import pytest
from flask import Flask, make_response, request
from starlette.applications import Starlette
from starlette.responses import JSONResponse, PlainTextResponse, StreamingResponse
from starlette.routing import Route, WebSocketRoute

import barelab
from barelab.built.app_lifespan import with_lifespan
from barelab.built.asgi_basics import send_json, send_text
from barelab.built.asgi_server import ASGIServer
from barelab.built.http_objects import JSONResponse as CourseJSON
from barelab.built.http_objects import Response as CourseResponse
from barelab.built.http_objects import wsgi_app
from barelab.built.routing import Router
from barelab.built.testing import (CookieJar, LifespanFailed, SocketClient, TestClient,
                                   WebSocketDenied, WebSocketDisconnect, default_path,
                                   parse_set_cookie, path_matches, run_tests)
from barelab.built.websocket import WebSocketASGIServer
from barelab.built.wsgi_server import WSGIServer


def loop_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name == "testclient-loop"]


# -- Flask -----------------------------------------------------------------------------------

def make_flask():
    app = Flask("flask_under_test")

    @app.get("/")
    def index():
        return {"q": request.args.getlist("q"), "host": request.host,
                "scheme": request.scheme}

    @app.post("/form")
    def form():
        return {"form": request.form.to_dict(flat=False), "type": request.content_type}

    @app.post("/json")
    def echo_json():
        return {"got": request.get_json()}

    @app.put("/raw")
    def raw():
        return request.get_data()

    @app.post("/login")
    def login():
        response = make_response("ok")
        response.set_cookie("session", "s1")
        response.set_cookie("pref", "p1", path="/prefs")
        response.set_cookie("token", "t1", secure=True)
        return response

    @app.get("/cookies")
    @app.get("/prefs/cookies")
    def cookies():
        return dict(request.cookies)

    @app.post("/logout")
    def logout():
        response = make_response("bye")
        response.delete_cookie("session")
        return response

    @app.get("/stream")
    def stream():
        def lines():
            for n in range(3):
                yield f"{n}\n"
        return app.response_class(lines(), mimetype="text/plain")

    @app.get("/boom")
    def boom():
        raise ZeroDivisionError("boom")

    return app


@pytest.fixture
def flask_client():
    return TestClient(make_flask(), validate=True)


def test_flask_query_params_and_origin(flask_client):
    response = flask_client.get("/?q=1", params={"q": ["2", "3"]})
    assert response.status_code == 200
    assert response.json() == {"q": ["1", "2", "3"], "host": "testserver", "scheme": "http"}
    assert response.headers["content-type"] == "application/json"
    assert response.headers["CONTENT-TYPE"] == response.headers.get_list("Content-Type")[0]


def test_flask_form_json_and_raw_bodies(flask_client):
    form = flask_client.post("/form", data={"a": ["1", "2"], "b": "x y"}).json()
    assert form == {"form": {"a": ["1", "2"], "b": ["x y"]},
                    "type": "application/x-www-form-urlencoded"}
    assert flask_client.post("/json", json={"n": None}).json() == {"got": {"n": None}}
    assert flask_client.put("/raw", content=b"\x00\xff").content == b"\x00\xff"
    with pytest.raises(TypeError, match="give one body"):
        flask_client.post("/json", json={}, data={"a": "b"})


def test_flask_cookies_persist_by_path_and_are_deleted(flask_client):
    login = flask_client.post("/login")
    assert len(login.headers.get_list("set-cookie")) == 3
    assert flask_client.get("/cookies").json() == {"session": "s1"}   # no Secure over http
    assert flask_client.get("/prefs/cookies").json() == {"session": "s1", "pref": "p1"}
    flask_client.post("/logout")
    assert flask_client.get("/cookies").json() == {}
    assert "session" not in flask_client.cookies and "pref" in flask_client.cookies


def test_secure_cookies_go_back_over_https_only():
    client = TestClient(make_flask(), base_url="https://example.test")
    client.post("/login")
    assert client.get("/cookies").json() == {"session": "s1", "token": "t1"}
    assert client.get("/").json()["scheme"] == "https"


def test_per_request_cookies_are_sent_but_not_kept(flask_client):
    assert flask_client.get("/cookies", cookies={"a": "1"}).json() == {"a": "1"}
    assert len(flask_client.cookies) == 0


def test_flask_head_and_streaming(flask_client):
    head = flask_client.head("/")
    assert head.status_code == 200 and head.content == b""
    assert flask_client.get("/stream").text == "0\n1\n2\n"
    with flask_client.stream("GET", "/stream") as response:
        assert next(response.iter_bytes()) == b"0\n"
    assert response.closed


def test_flask_exceptions_reach_the_test_in_testing_mode():
    app = make_flask()
    assert TestClient(app).get("/boom").status_code == 500   # Flask answers 500 itself...
    app.testing = True                                      # ...unless it propagates errors
    with pytest.raises(ZeroDivisionError):
        TestClient(app).get("/boom")
    assert TestClient(app, raise_app_exceptions=False).get("/boom").status_code == 500


# -- plain WSGI apps and the checks ----------------------------------------------------------

def test_wsgi_validate_catches_tuple_headers_and_str_bodies_always_fail():
    def tuple_headers(environ, start_response):
        start_response("200 OK", (("Content-Type", "text/plain"),))
        return [b"x"]

    def text_body(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return ["x"]

    assert TestClient(tuple_headers).get("/").content == b"x"
    with pytest.raises(AssertionError, match="must be of type list"):
        TestClient(tuple_headers, validate=True).get("/")
    with pytest.raises(TypeError, match="PEP 3333"):
        TestClient(text_body).get("/")


def test_wsgi_late_start_response_write_and_close_are_honoured():
    closed = []

    def app(environ, start_response):
        write = start_response("201 Created", [("X-A", "1"), ("x-a", "2")])
        write(b"written ")

        class Body:
            def __iter__(self):
                yield b"iterated"

            def close(self):
                closed.append(True)
        return Body()

    def generator(environ, start_response):
        start_response("200 OK", [])
        yield b"late"

    response = TestClient(app).get("/")
    assert (response.status_code, response.content) == (201, b"written iterated")
    assert response.headers.get_list("x-a") == ["1", "2"] and closed == [True]
    assert TestClient(generator).get("/").content == b"late"


def test_websocket_on_wsgi_is_refused():
    with pytest.raises(TypeError, match="WebSockets need ASGI"):
        TestClient(make_flask()).websocket_connect("/ws")


# -- Starlette: HTTP, streaming, lifespan ----------------------------------------------------

def make_starlette(events=None, fail=False):
    events = events if events is not None else []

    @asynccontextmanager
    async def lifespan(app):
        events.append("startup")
        if fail:
            raise RuntimeError("no database")
        yield {"db": "connected"}
        events.append("shutdown")

    async def state(req):
        return JSONResponse({"db": getattr(req.state, "db", None)})

    async def echo(req):
        return JSONResponse({"body": (await req.body()).decode(), "method": req.method})

    async def ticks(req):
        async def produce():
            for n in range(int(req.query_params.get("n", 3))):
                events.append(f"tick {n}")
                yield f"tick {n}\n"
                await asyncio.sleep(0.02)
        return StreamingResponse(produce(), media_type="text/plain")

    async def boom(req):
        raise ValueError("starlette boom")

    return Starlette(routes=[Route("/state", state), Route("/echo", echo, methods=["POST"]),
                             Route("/ticks", ticks), Route("/boom", boom),
                             Route("/plain", lambda r: PlainTextResponse("plain"))],
                     lifespan=lifespan)


def test_starlette_requests_outside_a_session_have_no_lifespan():
    client = TestClient(make_starlette(), validate=True)
    assert client.kind == "asgi"
    assert client.get("/state").json() == {"db": None}
    assert client.post("/echo", content="hé").json() == {"body": "hé", "method": "POST"}
    assert client.head("/plain").content == b""
    assert loop_threads() == []


def test_starlette_session_runs_lifespan_and_shares_state():
    events = []
    with TestClient(make_starlette(events)) as client:
        assert events == ["startup"]
        assert client.get("/state").json() == {"db": "connected"}
        assert client.get("/state").json() == {"db": "connected"}
    assert events == ["startup", "shutdown"]
    assert loop_threads() == []


def test_starlette_startup_failure_raises_with_the_message_and_leaves_no_thread():
    with pytest.raises(LifespanFailed, match="no database"):
        with TestClient(make_starlette(fail=True)):
            pass
    assert loop_threads() == []


def test_course_lifespan_helper_and_an_app_without_lifespan():
    @asynccontextmanager
    async def give(app):
        yield {"n": 1}

    async def http_only(scope, receive, send):
        if scope["type"] != "http":
            raise RuntimeError("http only")
        await send_json(send, {"state": scope["state"]})

    with TestClient(with_lifespan(http_only, give)) as client:
        assert client.get("/").json() == {"state": {"n": 1}}
    with TestClient(http_only) as client:
        assert client.lifespan.supported is False
        assert client.get("/").json() == {"state": {}}


def test_starlette_streaming_is_incremental_and_early_close_disconnects():
    events = []
    client = TestClient(make_starlette(events))
    with client.stream("GET", "/ticks", params={"n": 50}) as response:
        chunks = response.iter_bytes()
        assert next(chunks) == b"tick 0\n"
        assert events == ["tick 0"]
        assert next(chunks) == b"tick 1\n"
    # Starlette (spec 2.4) learns of the disconnect from its next send(), which raises
    assert events == ["tick 0", "tick 1", "tick 2"]
    assert client.get("/ticks").text == "tick 0\ntick 1\ntick 2\n"
    assert loop_threads() == []


def test_starlette_exception_is_raised_or_500():
    with pytest.raises(ValueError, match="starlette boom"):
        TestClient(make_starlette()).get("/boom")
    assert TestClient(make_starlette(), raise_app_exceptions=False).get("/boom").status_code == 500


def test_asgi_validate_and_timeouts():
    async def uppercase(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": [(b"X-Up", b"1")]})
        await send({"type": "http.response.body", "body": b""})

    async def hangs(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await asyncio.sleep(3600)

    async def never_starts(scope, receive, send):
        await asyncio.sleep(3600)

    assert TestClient(uppercase).get("/").status_code == 200
    with pytest.raises(Exception, match="lowercased"):
        TestClient(uppercase, validate=True).get("/")
    with pytest.raises(TimeoutError, match="http.response.body"):
        TestClient(hangs, timeout=0.2).get("/")
    with pytest.raises(TimeoutError, match="http.response.start"):
        TestClient(never_starts, timeout=0.2).get("/")
    assert loop_threads() == []


def test_asgi_app_that_returns_without_a_response_is_a_500():
    async def silent_return(scope, receive, send):
        return None

    assert TestClient(silent_return).get("/").status_code == 500


# -- Starlette WebSockets --------------------------------------------------------------------

async def ws_echo(websocket):
    await websocket.accept(subprotocol="v1" if "v1" in websocket.scope["subprotocols"] else None)
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return
        if message.get("text") == "close":
            await websocket.close(4001, "asked to")
            return
        if message.get("text") == "raise":
            raise KeyError("ws boom")
        if message.get("text") is not None:
            await websocket.send_text(message["text"][::-1])
        else:
            await websocket.send_bytes(message["bytes"] * 2)


async def ws_deny(websocket):
    await websocket.close(code=4403)


async def ws_cookie(websocket):
    await websocket.accept()
    await websocket.send_json({"cookie": websocket.cookies.get("session"),
                               "q": websocket.query_params.get("q")})
    await websocket.close()


@pytest.fixture
def ws_client():
    app = Starlette(routes=[WebSocketRoute("/ws", ws_echo), WebSocketRoute("/deny", ws_deny),
                            WebSocketRoute("/cookie", ws_cookie)])
    return TestClient(app)


def test_websocket_text_bytes_json_and_subprotocol(ws_client):
    with ws_client.websocket_connect("/ws", subprotocols=["v0", "v1"]) as ws:
        assert ws.accepted_subprotocol == "v1"
        ws.send_text("abc")
        assert ws.receive_text() == "cba"
        ws.send_bytes(b"\x00\x01")
        assert ws.receive_bytes() == b"\x00\x01\x00\x01"
        ws.send_json({"a": 1})
        assert ws.receive_text() == '}1 :"a"{'
        ws.send_bytes(b"x")
        with pytest.raises(TypeError, match="expected a text message"):
            ws.receive_text()
    assert loop_threads() == []


def test_websocket_app_close_is_a_disconnect_with_code(ws_client):
    with ws_client.websocket_connect("/ws") as ws:
        ws.send_text("close")
        with pytest.raises(WebSocketDisconnect) as caught:
            ws.receive_text()
    assert (caught.value.code, caught.value.reason) == (4001, "asked to")


def test_websocket_app_close_is_echoed_to_the_app_once():
    """RFC 6455 §5.5.1: the client answers the app's Close; ASGI: the app's next receive()
    is websocket.disconnect with that code, at once, and only one disconnect arrives."""
    heard = []

    async def closer(scope, receive, send):
        await receive()
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.close", "code": 4001, "reason": "done"})
        heard.append(await receive())
        try:
            heard.append(await asyncio.wait_for(receive(), 0.2))
        except asyncio.TimeoutError:
            heard.append("nothing more")

    started = time.monotonic()
    with TestClient(closer, timeout=5).websocket_connect("/") as ws:
        with pytest.raises(WebSocketDisconnect) as caught:
            ws.receive_text()
        with pytest.raises(RuntimeError, match="closed"):
            ws.close(1000)
    assert (caught.value.code, caught.value.reason) == (4001, "done")
    assert heard[0]["type"] == "websocket.disconnect" and heard[0]["code"] == 4001
    assert heard[1] == "nothing more"
    assert time.monotonic() - started < 2
    assert loop_threads() == []


def test_websocket_app_close_unread_by_the_test_is_not_told_twice():
    heard = []

    async def closer(scope, receive, send):
        await receive()
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.close", "code": 4002})
        heard.append(await receive())
        try:
            heard.append(await asyncio.wait_for(receive(), 0.2))
        except asyncio.TimeoutError:
            heard.append("nothing more")

    with TestClient(closer).websocket_connect("/"):
        pass                                 # leaving would close with 1000: already told
    assert heard[0]["code"] == 4002 and heard[1] == "nothing more"


def test_websocket_close_before_accept_is_denied_403(ws_client):
    with pytest.raises(WebSocketDenied) as caught:
        with ws_client.websocket_connect("/deny"):
            pass
    assert caught.value.status == 403 and caught.value.code == 4403


def test_websocket_app_error_reaches_the_test(ws_client):
    with pytest.raises(KeyError, match="ws boom"):
        with ws_client.websocket_connect("/ws") as ws:
            ws.send_text("raise")
            ws.receive_text()


def test_websocket_sends_cookies_and_query(ws_client):
    ws_client.cookies.set("session", "abc")
    with ws_client.websocket_connect("/cookie", params={"q": "x"}) as ws:
        assert ws.receive_json() == {"cookie": "abc", "q": "x"}
        with pytest.raises(WebSocketDisconnect) as caught:
            ws.receive()
    assert caught.value.code == 1000


def test_websocket_in_a_session_shares_the_loop_and_state():
    @asynccontextmanager
    async def lifespan(app):
        yield {"greeting": "hi"}

    async def greet(websocket):
        await websocket.accept()
        await websocket.send_text(websocket.state.greeting)
        await websocket.close()

    app = Starlette(routes=[WebSocketRoute("/ws", greet)], lifespan=lifespan)
    with TestClient(app) as client:
        with client.websocket_connect("/ws") as ws:
            assert ws.receive_text() == "hi"


def test_websocket_subprotocol_not_offered_and_silent_app():
    async def picks_unoffered(scope, receive, send):
        await receive()
        await send({"type": "websocket.accept", "subprotocol": "other"})

    async def silent(scope, receive, send):
        await asyncio.sleep(3600)

    with pytest.raises(WebSocketDenied, match="did not offer"):
        with TestClient(picks_unoffered).websocket_connect("/", subprotocols=["mine"]):
            pass
    with pytest.raises(TimeoutError):
        with TestClient(silent, timeout=0.2).websocket_connect("/"):
            pass
    assert loop_threads() == []


# -- the same WebSocket tests in-process and over a socket -----------------------------------

async def ws_course(scope, receive, send):
    """A raw ASGI WebSocket app: echo (text upper-cased, bytes reversed), subprotocol "v1",
    refuse /deny with 4403, close with 4001 on "close", report cookie and query on /info."""
    assert (await receive())["type"] == "websocket.connect"
    if scope["path"] == "/deny":
        return await send({"type": "websocket.close", "code": 4403})
    chosen = "v1" if "v1" in scope["subprotocols"] else None
    await send({"type": "websocket.accept", "subprotocol": chosen})
    if scope["path"] == "/info":
        headers = dict(scope["headers"])
        return await send({"type": "websocket.send", "text": json.dumps({
            "cookie": headers.get(b"cookie", b"").decode(), "query": scope["query_string"].decode(),
            "x-test": headers.get(b"x-test", b"").decode()})})
    while (message := await receive())["type"] == "websocket.receive":
        if message.get("text") == "close":
            return await send({"type": "websocket.close", "code": 4001, "reason": "asked to"})
        if message.get("text") is not None:
            await send({"type": "websocket.send", "text": message["text"].upper()})
        else:
            await send({"type": "websocket.send", "bytes": message["bytes"][::-1]})


@pytest.fixture(scope="module")
def ws_server():
    with barelab.serve(ws_course, server=WebSocketASGIServer, name="test-testing-ws",
                       lifespan="off") as server:
        yield server


@pytest.fixture(params=["in-process", "socket"])
def any_ws_client(request, ws_server):
    return TestClient(ws_course) if request.param == "in-process" else SocketClient(ws_server)


def test_websocket_echo_both_ways(any_ws_client):
    with any_ws_client.websocket_connect("/ws") as ws:
        assert ws.accepted_subprotocol is None
        ws.send_text("abc")
        assert ws.receive_text() == "ABC"
        ws.send_bytes(b"\x00\x01\x02")
        assert ws.receive_bytes() == b"\x02\x01\x00"
        ws.send_json({"a": 1})
        assert ws.receive_text() == '{"A": 1}'
        ws.send_bytes(b"x")
        with pytest.raises(TypeError, match="expected a text message"):
            ws.receive_text()
        ws.send_text("y")
        with pytest.raises(TypeError, match="expected a binary message"):
            ws.receive_bytes()
    assert ws.closed


def test_websocket_subprotocol_both_ways(any_ws_client):
    with any_ws_client.websocket_connect("/ws", subprotocols=["v0", "v1"]) as ws:
        assert ws.accepted_subprotocol == "v1"
        ws.send_text("ok")
        assert ws.receive_text() == "OK"


def test_websocket_denial_is_403_both_ways(any_ws_client):
    with pytest.raises(WebSocketDenied) as caught:
        with any_ws_client.websocket_connect("/deny"):
            pytest.fail("the handshake should have been refused")
    assert caught.value.status == 403
    # The close code is the app's message; over a socket only the HTTP 403 crosses.
    expected_code = 4403 if isinstance(any_ws_client, TestClient) else None
    assert caught.value.code == expected_code


def test_websocket_close_code_and_reason_both_ways(any_ws_client):
    with any_ws_client.websocket_connect("/ws") as ws:
        ws.send_text("close")
        with pytest.raises(WebSocketDisconnect) as caught:
            ws.receive_text()
        assert ws.closed
    assert (caught.value.code, caught.value.reason) == (4001, "asked to")


def test_websocket_client_close_reaches_the_app_over_a_socket(ws_server):
    with SocketClient(ws_server).websocket_connect("/ws") as ws:
        ws.close(4000, "done")
        with pytest.raises(WebSocketDisconnect) as caught:
            ws.receive()                 # closed: the code the client sent
    assert caught.value.code == 4000


def test_websocket_headers_cookies_and_params_both_ways(any_ws_client):
    any_ws_client.cookies.set("session", "abc")
    with any_ws_client.websocket_connect("/info", params={"q": "x"}, headers={"X-Test": "yes"},
                                         cookies={"extra": "1"}) as ws:
        assert ws.receive_json() == {"cookie": "session=abc; extra=1", "query": "q=x",
                                     "x-test": "yes"}
        with pytest.raises(WebSocketDisconnect) as caught:
            ws.receive()
    assert caught.value.code == 1000      # the app returned: a normal closure


def test_socket_websocket_on_a_starlette_app():
    app = Starlette(routes=[WebSocketRoute("/ws", ws_echo), WebSocketRoute("/deny", ws_deny)])
    with barelab.serve(app, server=WebSocketASGIServer, name="test-testing-ws-starlette",
                       lifespan="off") as server:
        client = SocketClient(server)
        with client.websocket_connect("/ws", subprotocols=["v1"]) as ws:
            assert ws.accepted_subprotocol == "v1"
            ws.send_text("abc")
            assert ws.receive_text() == "cba"
        with pytest.raises(WebSocketDenied) as caught:
            with client.websocket_connect("/deny"):
                pass
        assert caught.value.status == 403


def test_socket_websocket_handshake_timeout():
    import socket as socketlib
    listener = socketlib.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    try:
        class Silent:          # a "server" that accepts connections and never answers
            host, port = listener.getsockname()
            url = f"http://{host}:{port}"
        with pytest.raises(TimeoutError):
            with SocketClient(Silent(), timeout=0.3).websocket_connect("/"):
                pass
    finally:
        listener.close()


# -- cookies, RFC 6265 -----------------------------------------------------------------------

def test_default_path_and_path_match():
    assert [default_path(p) for p in ("", "/", "/a", "/a/b", "/a/b/")] == \
        ["/", "/", "/", "/a", "/a/b"]
    assert path_matches("/docs", "/docs") and path_matches("/docs/a", "/docs")
    assert path_matches("/docs/a", "/docs/") and not path_matches("/docsearch", "/docs")
    assert not path_matches("/", "/docs")


def test_parse_set_cookie_follows_section_5_2():
    cookie = parse_set_cookie(" a = b ; PATH=/x; secure; Max-Age=10; Expires=junk", "/y/z", 100)
    assert (cookie.name, cookie.value, cookie.path, cookie.secure, cookie.expires) == \
        ("a", "b", "/x", True, 110)
    assert parse_set_cookie("noequals", "/", 0) is None
    assert parse_set_cookie("=v", "/", 0) is None
    assert parse_set_cookie("a=b; Path=relative", "/y/z", 0).path == "/y"
    past = parse_set_cookie("a=b; Expires=Thu, 01 Jan 1970 00:00:00 GMT", "/", 100)
    assert past.expires == 0


def test_jar_orders_longer_paths_first_and_deletes_on_expiry():
    jar = CookieJar()
    jar.store(["a=1; Path=/", "b=2; Path=/x", "a=3; Path=/x/y"], "/")
    assert jar.header_for("/x/y/z", secure=False) == "a=3; b=2; a=1"
    jar.store(["a=9; Path=/"], "/")                     # update in place
    assert jar.header_for("/", secure=False) == "a=9"
    jar.store(["a=; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Path=/x/y"], "/")
    assert jar.header_for("/x/y", secure=False) == "b=2; a=9"
    assert len(jar) == 2 and jar["b"] == "2" and "zzz" not in jar


# -- the course's own apps, in-process and over a socket -------------------------------------

def make_course_wsgi():
    router = Router()

    @router.route("/hello")
    @wsgi_app
    def hello(req):
        return CourseResponse(f"Hello, {req.query.get('name', 'world')}!\n")

    @router.route("/login", methods=["POST"])
    @wsgi_app
    def login(req):
        response = CourseJSON({"user": req.form["user"]})
        response.set_cookie("user", req.form["user"])
        return response

    @router.route("/me")
    @wsgi_app
    def me(req):
        return CourseJSON({"user": req.cookies.get("user")})

    return router


async def course_asgi(scope, receive, send):
    if scope["type"] != "http":
        raise RuntimeError("http only")
    if scope["path"] == "/hello":
        await send_text(send, "Hello, world!\n")
    elif scope["path"] == "/login":
        await send_json(send, {"user": "ada"}, headers=[("set-cookie", "user=ada; Path=/")])
    elif scope["path"] == "/me":
        cookie = dict(p.strip().split("=", 1) for p in
                      dict(scope["headers"]).get(b"cookie", b"").decode().split(";") if "=" in p)
        await send_json(send, {"user": cookie.get("user")})
    else:
        await send_text(send, "Not Found\n", 404)


def t_hello(client):
    response = client.get("/hello")
    assert response.status_code == 200 and response.text == "Hello, world!\n"


def t_cookie(client):
    assert client.get("/me").json() == {"user": None}
    client.post("/login", data={"user": "ada"})
    assert client.get("/me").json() == {"user": "ada"}


def t_head(client):
    response = client.head("/hello")
    assert response.status_code == 200 and response.content == b""


def t_missing(client):
    assert client.get("/nowhere").status_code == 404


SHARED = {"test_hello": t_hello, "test_cookie": t_cookie, "test_head": t_head,
          "test_missing": t_missing}


@pytest.mark.parametrize("make_app, engine", [(make_course_wsgi, WSGIServer),
                                              (lambda: course_asgi, ASGIServer)],
                         ids=["wsgi", "asgi"])
def test_same_tests_pass_in_process_and_over_a_socket(make_app, engine):
    app = make_app()
    in_process = run_tests(SHARED, {"client": lambda: TestClient(app, validate=True)})
    assert in_process.ok, in_process
    with barelab.serve(app, server=engine, name=f"test-testing-{engine.__name__}") as server:
        over_socket = run_tests(SHARED, {"client": lambda: SocketClient(server)})
        assert over_socket.ok, over_socket
        assert "date" in SocketClient(server).get("/hello").headers
    assert "date" not in TestClient(app).get("/hello").headers   # the server's job


# -- the runner ------------------------------------------------------------------------------

def test_runner_reports_pass_fail_error_and_tears_fixtures_down():
    log = []

    def resource():
        log.append("setup")
        yield "value"
        log.append("teardown")

    def uses(resource):
        return resource.upper()

    def passes(uses):
        assert uses == "VALUE"

    def fails(resource):
        assert resource == "other"

    def fails_with_message(resource):
        assert False, "custom message"

    def errors(missing):
        pass

    report = run_tests({"test_pass": passes, "test_fail": fails,
                        "test_message": fails_with_message, "test_error": errors,
                        "not_a_test": passes, "test_not_function": 3},
                       {"resource": resource, "uses": uses})
    outcomes = [(r.name, r.outcome) for r in report.results]
    assert outcomes == [("test_pass", "passed"), ("test_fail", "failed"),
                        ("test_message", "failed"), ("test_error", "error")]
    assert report.results[1].message.startswith("assert")   # pytest rewrote this module's asserts
    assert report.results[2].message.startswith("custom message")
    assert "no fixture named 'missing'" in report.results[3].message
    assert log == ["setup", "teardown"] * 3      # once per test that used it, even failing
    assert not report.ok and report.tally() == "1 passed, 2 failed, 1 error"
    assert repr(report).endswith("== 1 passed, 2 failed, 1 error ==")
