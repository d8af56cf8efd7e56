"""barelab.built.bare (chapter 18): the framework in-process, then the demo app on sockets.

In-process tests use chapter 17's TestClient where a client's view is what matters (a
session with lifespan and cookies), and barelab.call_asgi where the ASGI messages themselves
are checked. The socket tests serve the demo app on the course's own ASGI servers (chapter
13's ASGIServer, chapter 15's WebSocketASGIServer) and read raw bytes.
"""

import asyncio
import functools
import itertools
import json
import socket
import time
import uuid
from collections import Counter, defaultdict
from contextlib import asynccontextmanager

import pytest

import barelab
from barelab.built.asgi_middleware import RequestID
from barelab.built.asgi_server import ASGIServer
from barelab.built.testing import TestClient
from barelab.built.bare import (Bare, HTMLResponse, HTTPException, JSONResponse,
                                RedirectResponse, Request, Response, State,
                                StreamingResponse, WebSocketDisconnect, error_response,
                                route_path, to_response, wants_json)
from barelab.built.websocket import WebSocketASGIServer

JSON = [("content-type", "application/json")]


def make_demo() -> Bare:
    """The chapter's demo app: notes API, cookie session counter, stream, chat room."""
    @asynccontextmanager
    async def lifespan(app):
        yield {"notes": {}, "ids": itertools.count(1), "sessions": Counter(),
               "rooms": defaultdict(set)}

    app = Bare(name="notes", lifespan=lifespan, max_body=4096)

    @app.get("/notes")
    async def list_notes(request):
        return list(request.state.notes.values())

    @app.post("/notes")
    async def create_note(request):
        data = await request.json()
        if not isinstance(data, dict) or not isinstance(data.get("text"), str):
            raise HTTPException(422, 'send an object like {"text": "..."}')
        note = {"id": next(request.state.ids), "text": data["text"]}
        request.state.notes[note["id"]] = note
        return JSONResponse(note, 201, [("location", f"/notes/{note['id']}")])

    @app.get("/notes/{id:int}")
    async def read_note(request):
        note = request.state.notes.get(request.path_params["id"])
        if note is None:
            raise HTTPException(404, f"no note {request.path_params['id']}")
        return note

    @app.route("/notes/{id:int}", methods=["DELETE"])
    async def delete_note(request):
        if request.state.notes.pop(request.path_params["id"], None) is None:
            raise HTTPException(404, f"no note {request.path_params['id']}")

    @app.get("/visits")
    async def visits(request):
        session = request.cookies.get("sid") or uuid.uuid4().hex
        request.state.sessions[session] += 1
        response = Response(f"visit number {request.state.sessions[session]}\n")
        response.set_cookie("sid", session, httponly=True)
        response.set_cookie("visits", str(request.state.sessions[session]))
        return response

    @app.get("/count")
    async def count(request):
        to = int(request.query.get("to", "3"))
        async def numbers():
            for number in range(1, to + 1):
                yield f"{number}\n"
                await asyncio.sleep(0.001)
        return StreamingResponse(numbers())

    @app.websocket("/ws/{room}")
    async def chat(websocket):
        room = websocket.path_params["room"]
        members = websocket.state.rooms[room]
        await websocket.accept()
        members.add(websocket)
        try:
            while True:
                message = await websocket.receive_message()
                for member in list(members):
                    if message.get("text") is not None:
                        await member.send_text(f"{room}: {message['text']}")
                    else:
                        await member.send_bytes(message["bytes"])
        finally:
            members.discard(websocket)

    return app


@pytest.fixture
def demo():
    """The demo app and a caller that hands each request a copy of the lifespan state."""
    app = make_demo()
    state = barelab.call_lifespan(app).scope["state"]

    def call(method="GET", path="/", **options):
        return barelab.call_asgi(app, method, path, scope={"state": dict(state)}, **options)
    return app, call


def ws_events(*messages):
    events = [{"type": "websocket.connect"}]
    for message in messages:
        key = "text" if isinstance(message, str) else "bytes"
        events.append({"type": "websocket.receive", key: message})
    return events


# -- routing -----------------------------------------------------------------------------

def test_typed_parameters_are_converted_and_a_mismatch_is_404(demo):
    _, call = demo
    call("POST", "/notes", body=b'{"text": "a"}', headers=JSON)
    assert call("GET", "/notes/1").json() == {"id": 1, "text": "a"}
    assert call("GET", "/notes/one").status == 404
    assert call("GET", "/notes/01").status == 404        # int: one canonical spelling


def test_405_lists_allowed_methods_and_404_has_no_allow(demo):
    _, call = demo
    refused = call("PUT", "/notes/1")
    assert refused.status == 405
    assert refused.header("allow") == "DELETE, GET, HEAD, OPTIONS"
    missing = call("GET", "/nowhere")
    assert missing.status == 404 and missing.header("allow") is None


def test_options_answers_204_with_allow(demo):
    _, call = demo
    answer = call("OPTIONS", "/notes")
    assert answer.status == 204 and answer.body == b""
    assert answer.header("allow") == "GET, HEAD, OPTIONS, POST"
    assert answer.header("content-length") is None


def test_route_decorators_post_put_patch_delete_and_route():
    app = Bare()
    for method in ("post", "put", "patch", "delete"):
        async def handler(request):
            return request.method
        getattr(app, method)("/thing")(handler)
    @app.route("/both", methods=["GET", "POST"])
    async def both(request):
        return request.method
    for method in ("POST", "PUT", "PATCH", "DELETE"):
        assert barelab.call_asgi(app, method, "/thing").text == method
    assert [barelab.call_asgi(app, m, "/both").text for m in ("GET", "POST")] == ["GET", "POST"]


def test_route_mistakes_fail_when_added():
    app = Bare()
    def not_async(request):
        return "x"
    with pytest.raises(TypeError, match="async def"):
        app.add_route("/x", not_async)
    async def handler(request):
        return "x"
    with pytest.raises(ValueError, match="unknown converter"):
        app.get("/x/{id:float}")(handler)
    app.get("/x/{id:int}")(handler)
    with pytest.raises(ValueError, match="can never be reached"):
        app.get("/x/7")(handler)
    with pytest.raises(TypeError, match="async def"):
        app.websocket("/ws")(not_async)


def test_mount_moves_the_prefix_into_root_path_on_a_segment_boundary():
    seen = []
    async def inner(scope, receive, send):
        seen.append((scope["root_path"], scope["path"], route_path(scope)))
        await Response("inner")(scope, receive, send)
    app = Bare()
    app.mount("/legacy", inner)
    assert barelab.call_asgi(app, "GET", "/legacy/a/b").text == "inner"
    assert barelab.call_asgi(app, "GET", "/legacy").text == "inner"
    assert barelab.call_asgi(app, "GET", "/legacyx").status == 404
    assert seen == [("/legacy", "/legacy/a/b", "/a/b"), ("/legacy", "/legacy", "/")]


def test_a_mounted_bare_app_matches_below_its_root_path():
    admin = Bare()
    @admin.get("/users/{id:int}")
    async def user(request):
        return {"id": request.path_params["id"], "path": request.path}
    app = Bare()
    app.mount("/admin", admin)
    assert barelab.call_asgi(app, "GET", "/admin/users/3").json() == {
        "id": 3, "path": "/admin/users/3"}


def test_route_path_only_strips_a_whole_segment():
    assert route_path({"path": "/api/x", "root_path": "/api"}) == "/x"
    assert route_path({"path": "/apix", "root_path": "/api"}) == "/apix"
    assert route_path({"path": "/x", "root_path": ""}) == "/x"


# -- HEAD, 204, cookies -------------------------------------------------------------------

def test_head_is_served_by_get_and_sends_no_body(demo):
    _, call = demo
    get, head = call("GET", "/notes"), call("HEAD", "/notes")
    assert head.status == 200 and head.body == b""
    assert head.header("content-length") == get.header("content-length") == "2"


def test_head_drops_the_body_of_a_mounted_app_and_never_starts_a_stream():
    started = []
    async def loud(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"body bytes"})
    async def forever():
        started.append(True)
        while True:
            yield b"x"
    app = Bare()
    app.mount("/loud", loud)
    @app.get("/stream")
    async def stream(request):
        return StreamingResponse(forever())
    assert barelab.call_asgi(app, "HEAD", "/loud").body == b""
    call = barelab.call_asgi(app, "HEAD", "/stream")
    assert call.status == 200 and call.body == b"" and started == []


def test_none_is_204_without_content_length_or_content_type(demo):
    _, call = demo
    call("POST", "/notes", body=b'{"text": "a"}', headers=JSON)
    deleted = call("DELETE", "/notes/1")
    assert deleted.status == 204 and deleted.body == b""
    assert deleted.header("content-length") is None and deleted.header("content-type") is None


def test_304_has_no_body_and_no_length():
    call = barelab.call_asgi(Response(status=304, headers=[("etag", '"v1"')]))
    assert call.status == 304 and call.body == b"" and call.header("content-length") is None


def test_each_cookie_gets_its_own_set_cookie_line(demo):
    _, call = demo
    first = call("GET", "/visits")
    cookies = [value for name, value in first.headers if name == "set-cookie"]
    assert len(cookies) == 2
    assert cookies[0].endswith("; Path=/; SameSite=Lax; HttpOnly")
    assert cookies[1] == "visits=1; Path=/; SameSite=Lax"
    sid = cookies[0].split(";")[0]
    again = call("GET", "/visits", headers=[("cookie", sid)])
    assert again.text == "visit number 2\n"


def test_delete_cookie_expires_it():
    response = Response("bye")
    response.delete_cookie("sid")
    response.delete_cookie("visits")
    lines = [v for n, v in response.headers if n.lower() == "set-cookie"]
    assert len(lines) == 2 and all("Max-Age=0" in line for line in lines)


def test_cookie_value_is_checked():
    with pytest.raises(ValueError, match="RFC 6265"):
        Response("x").set_cookie("sid", "a b;c")


# -- Request -------------------------------------------------------------------------------

def request_for(*, method="POST", headers=(), body=b"", query=b"", max_body=1024):
    scope = {"type": "http", "method": method, "path": "/p", "raw_path": b"/p",
             "query_string": query, "root_path": "", "scheme": "http",
             "headers": [(n.lower().encode(), v.encode()) for n, v in headers]}
    messages = [{"type": "http.request", "body": body}]
    async def receive():
        return messages.pop(0) if messages else {"type": "http.disconnect"}
    return Request(scope, receive, max_body=max_body)


def run(coroutine):
    return asyncio.run(coroutine)


def test_request_reads_method_url_query_headers_cookies():
    request = request_for(method="GET", query=b"a=1&a=2&b=%C3%A9",
                          headers=[("Host", "example.org"), ("Cookie", "x=1; y=2"),
                                   ("cookie", "z=3")])
    assert request.method == "GET"
    assert request.url == "http://example.org/p?a=1&a=2&b=%C3%A9"
    assert request.query.getall("a") == ["1", "2"] and request.query["b"] == "é"
    assert request.headers["HOST"] == "example.org"
    assert dict(request.cookies) == {"x": "1", "y": "2", "z": "3"}


def test_a_query_that_is_not_utf8_is_400():
    with pytest.raises(HTTPException) as raised:
        request_for(query=b"a=%FF").query
    assert raised.value.status == 400


def test_body_is_read_once_and_limited():
    request = request_for(body=b"hello")
    assert run(request.body()) == b"hello"
    assert run(request.body()) == b"hello"
    with pytest.raises(HTTPException) as raised:
        run(request_for(body=b"x" * 2000).body())
    assert raised.value.status == 413
    with pytest.raises(HTTPException) as raised:       # refused before reading
        run(request_for(headers=[("content-length", "99999")]).body())
    assert raised.value.status == 413
    with pytest.raises(HTTPException) as raised:
        run(request_for(headers=[("content-length", "12x")]).body())
    assert raised.value.status == 400


def test_body_over_the_app_limit_is_413_end_to_end(demo):
    _, call = demo
    answer = call("POST", "/notes", body=b"[" + b"1," * 3000 + b"1]", headers=JSON)
    assert answer.status == 413 and b"4096" in answer.body


def test_invalid_json_is_400_with_the_reason_and_no_traceback(demo):
    _, call = demo
    answer = call("POST", "/notes", body=b'{"text": "x",}', headers=JSON)
    assert answer.status == 400
    assert answer.text.startswith("400 Bad Request: invalid JSON")
    assert "line 1" in answer.text and "Traceback" not in answer.text


def test_json_needs_a_json_content_type_and_a_valid_shape(demo):
    _, call = demo
    assert call("POST", "/notes", body=b'{"text": "x"}').status == 415
    assert call("POST", "/notes", body=b'{"text": 5}', headers=JSON).status == 422
    assert call("POST", "/notes", body=b"", headers=JSON).status == 400
    assert call("POST", "/notes", body=b'{"text": NaN}', headers=JSON).status == 400
    assert call("POST", "/notes", body=b'"\xff"', headers=JSON).status == 400


def test_form_urlencoded_and_multipart():
    form = run(request_for(headers=[("content-type", "application/x-www-form-urlencoded")],
                           body=b"a=1&b=x+y&a=2").form())
    assert form.getall("a") == ["1", "2"] and form["b"] == "x y"
    body = (b"--B\r\nContent-Disposition: form-data; name=\"t\"\r\n\r\nhi\r\n"
            b"--B\r\nContent-Disposition: form-data; name=\"f\"; filename=\"a.bin\"\r\n"
            b"Content-Type: application/octet-stream\r\n\r\n\x00\x01\r\n--B--\r\n")
    form = run(request_for(headers=[("content-type", "multipart/form-data; boundary=B")],
                           body=body).form())
    assert form["t"] == "hi" and form["f"].filename == "a.bin" and form["f"].data == b"\x00\x01"


def test_bad_forms_are_4xx():
    with pytest.raises(HTTPException) as raised:
        run(request_for(headers=[("content-type", "multipart/form-data; boundary=B")],
                        body=b"garbage").form())
    assert raised.value.status == 400
    with pytest.raises(HTTPException) as raised:
        run(request_for(headers=[("content-type", "text/plain")], body=b"x").form())
    assert raised.value.status == 415


def test_client_leaving_while_the_body_is_read_sends_nothing():
    app = Bare()
    @app.post("/")
    async def read(request):
        await request.body()
        return "never"
    events = [{"type": "http.request", "body": b"par", "more_body": True},
              {"type": "http.disconnect"}]
    call = barelab.call_asgi(app, "POST", "/", receive_events=events)
    assert call.sent == []


# -- Responses and return values -------------------------------------------------------

@pytest.mark.parametrize("value, status, media", [
    ("text", 200, "text/plain; charset=utf-8"), (b"\x00", 200, "application/octet-stream"),
    ({"a": 1}, 200, "application/json"), ([1], 200, "application/json"), (None, 204, None)])
def test_returned_values_become_responses(value, status, media):
    response = to_response(value)
    assert response.status == status and response.header("content-type") == media


def test_a_bad_return_value_is_500_and_names_the_handler():
    app = Bare()
    @app.get("/")
    async def answer(request):
        return 42
    call = barelab.call_asgi(app, raise_errors=False)
    assert call.status == 500 and call.body == b"500 Internal Server Error\n"
    assert isinstance(call.exception, TypeError) and "answer returned int" in str(call.exception)


def test_response_refuses_unsafe_headers_and_bad_statuses():
    for name, value in (("X-A", "a\r\nb"), ("Connection", "close"), ("Content-Length", "3"),
                        ("Bad Name", "x")):
        with pytest.raises(ValueError):
            Response("x").add_header(name, value)
    with pytest.raises(ValueError):
        Response("x", status=204)
    with pytest.raises(ValueError):
        Response("x", status=101)
    with pytest.raises(TypeError):
        Response(42)


def test_json_html_and_redirect_responses():
    assert JSONResponse({"é": 1}).body == '{"é": 1}'.encode()
    with pytest.raises(ValueError):
        JSONResponse(float("nan"))
    assert HTMLResponse("<p>").header("content-type") == "text/html; charset=utf-8"
    redirect = RedirectResponse("/there", 303)
    assert redirect.status == 303 and redirect.header("location") == "/there"
    with pytest.raises(ValueError):
        RedirectResponse("/x", 200)
    with pytest.raises(ValueError):
        RedirectResponse("/x\r\nSet-Cookie: a=1")


def test_streaming_response_streams_and_stops_when_the_client_leaves(demo):
    _, call = demo
    streamed = call("GET", "/count", query="to=3")
    assert streamed.body == b"1\n2\n3\n"
    assert [m.get("more_body") for m in streamed.sent[1:]] == [True, True, True, False]
    closed = []
    async def forever():
        try:
            while True:
                yield "tick\n"
                await asyncio.sleep(0.001)
        finally:
            closed.append(True)
    events = [{"type": "http.request"}, {"type": "http.disconnect"}]
    call = barelab.call_asgi(StreamingResponse(forever()), receive_events=events)
    assert closed == [True] and call.sent[-1].get("more_body") is True


def test_streaming_response_needs_an_async_iterable():
    with pytest.raises(TypeError, match="async iterable"):
        StreamingResponse(["a", "b"])


# -- Errors ---------------------------------------------------------------------------------

def test_http_exception_is_text_or_json_by_accept(demo):
    _, call = demo
    text = call("GET", "/notes/9")
    assert text.status == 404 and text.text == "404 Not Found: no note 9\n"
    as_json = call("GET", "/notes/9", headers=[("accept", "application/json")])
    assert as_json.header("content-type") == "application/json"
    assert as_json.json() == {"status": 404, "error": "Not Found", "detail": "no note 9"}
    refused = call("PUT", "/notes/9", headers=[("accept", "application/json")])
    assert refused.status == 405 and refused.header("allow")


@pytest.mark.parametrize("accept, expected", [
    (None, False), ("*/*", False), ("application/json", True), ("text/html,*/*;q=0.8", False),
    ("text/plain;q=0.5, application/json", True), ("application/json;q=0", False),
    ("application/json;q=2", False), ("application/json;q=x, text/plain", False)])
def test_wants_json(accept, expected):
    assert wants_json(accept) is expected


def test_http_exception_statuses_and_error_response_headers():
    with pytest.raises(ValueError):
        HTTPException(302)
    assert HTTPException(503).detail == "Service Unavailable"
    response = error_response(HTTPException(401, "who?", [("www-authenticate", "Bearer")]))
    assert response.status == 401 and response.header("www-authenticate") == "Bearer"


def test_any_other_exception_is_a_generic_500_and_is_reraised_for_the_log():
    app = Bare()
    @app.get("/")
    async def broken(request):
        raise RuntimeError("password=hunter2 at /srv/app/db.py")
    call = barelab.call_asgi(app, raise_errors=False)
    assert call.status == 500 and call.body == b"500 Internal Server Error\n"
    assert b"hunter2" not in call.body and b"Traceback" not in call.body
    assert isinstance(call.exception, RuntimeError)


def test_an_exception_after_the_response_started_is_reraised_without_a_second_start():
    app = Bare()
    @app.get("/")
    async def half(request):
        async def chunks():
            yield "first\n"
            raise RuntimeError("broke mid-stream")
        return StreamingResponse(chunks())
    call = barelab.call_asgi(app, raise_errors=False)
    starts = [m for m in call.sent if m["type"] == "http.response.start"]
    assert len(starts) == 1 and starts[0]["status"] == 200
    assert isinstance(call.exception, RuntimeError)


# -- Middleware ----------------------------------------------------------------------------

def test_middleware_is_applied_outermost_first():
    trace = []
    class Tracer:
        def __init__(self, app, name):
            self.app, self.name = app, name
        async def __call__(self, scope, receive, send):
            trace.append(f"{self.name} in")
            await self.app(scope, receive, send)
            trace.append(f"{self.name} out")
    app = Bare(middleware=[functools.partial(Tracer, name="A"),
                           functools.partial(Tracer, name="B")])
    @app.get("/")
    async def home(request):
        trace.append("handler")
        return "ok"
    barelab.call_asgi(app)
    assert trace == ["A in", "B in", "handler", "B out", "A out"]


def test_chapter16_middleware_sees_state_and_error_responses():
    app = Bare(middleware=[RequestID])
    @app.get("/")
    async def home(request):
        return {"id": request.state.request_id}
    call = barelab.call_asgi(app)
    assert call.json()["id"] == call.header("x-request-id")
    assert barelab.call_asgi(app, "GET", "/missing").header("x-request-id")


# -- Lifespan ------------------------------------------------------------------------------

def test_hooks_and_lifespan_context_fill_the_state_in_order():
    events = []
    @asynccontextmanager
    async def lifespan(app):
        events.append("enter")
        yield {"db": "database"}
        events.append("exit")
    app = Bare(lifespan=lifespan)
    @app.on_startup
    async def start(state):
        events.append(f"start sees {state.db}")
        state.cache = "cache"
    @app.on_shutdown
    async def stop(state):
        events.append("stop")
    call = barelab.call_lifespan(app)
    assert [m["type"] for m in call.sent] == ["lifespan.startup.complete",
                                              "lifespan.shutdown.complete"]
    assert events == ["enter", "start sees database", "stop", "exit"]
    assert call.scope["state"] == {"db": "database", "cache": "cache"}


def test_state_is_updated_not_replaced():
    app = Bare()
    @app.on_startup
    async def start(state):
        state.answer = 42
    scope_state = {"kept": True}
    sent = []
    events = iter([{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}])
    async def receive():
        return next(events)
    async def send(message):
        sent.append(message)
    scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": scope_state}
    asyncio.run(app(scope, receive, send))
    assert scope["state"] is scope_state and scope_state == {"kept": True, "answer": 42}


def test_startup_failure_is_reported_with_its_message():
    app = Bare()
    @app.on_startup
    async def start(state):
        raise RuntimeError("SECRET_KEY is not set")
    sent = barelab.call_lifespan(app).sent
    assert sent == [{"type": "lifespan.startup.failed",
                     "message": "RuntimeError: SECRET_KEY is not set"}]


def test_request_state_and_app_state():
    app = Bare()
    app.state.version = "1.0"
    @app.get("/")
    async def home(request):
        request.state.note = "per request"
        return {"version": request.app_state.version, "db": request.state.db}
    call = barelab.call_asgi(app, scope={"state": {"db": "shared"}})
    assert call.json() == {"version": "1.0", "db": "shared"}
    with pytest.raises(AttributeError, match="has no 'missing'"):
        State({}).missing


def test_unknown_scope_type_is_refused():
    async def nothing():
        raise AssertionError("never called")
    with pytest.raises(RuntimeError, match="not 'telepathy'"):
        asyncio.run(Bare()({"type": "telepathy"}, nothing, nothing))


# -- WebSocket ----------------------------------------------------------------------------

def test_websocket_text_and_binary_frames_in_a_room(demo):
    _, call = demo
    sent = call(path="/ws/lobby", receive_events=ws_events("hi", b"\xff\x00")).sent
    assert sent == [{"type": "websocket.accept", "subprotocol": None, "headers": []},
                    {"type": "websocket.send", "text": "lobby: hi"},
                    {"type": "websocket.send", "bytes": b"\xff\x00"}]


def test_websocket_without_a_route_is_closed_before_accept():
    sent = barelab.call_asgi(Bare(), path="/ws", receive_events=ws_events()).sent
    assert sent == [{"type": "websocket.close", "code": 1008, "reason": ""}]


def test_websocket_subprotocol_must_be_offered_and_is_sent():
    app = Bare()
    @app.websocket("/ws")
    async def chat(websocket):
        await websocket.accept(subprotocol="chat.v2")
    call = barelab.call_asgi(app, path="/ws", scope={"subprotocols": ["chat.v1", "chat.v2"]},
                             receive_events=ws_events())
    assert call.sent[0]["subprotocol"] == "chat.v2"
    call = barelab.call_asgi(app, path="/ws", scope={"subprotocols": []},
                             receive_events=ws_events(), raise_errors=False)
    assert isinstance(call.exception, ValueError)
    assert call.sent[-1]["type"] == "websocket.close" and call.sent[-1]["code"] == 1011


def test_websocket_typed_receives_close_with_the_rfc_codes():
    app = Bare()
    @app.websocket("/{kind}")
    async def typed(websocket):
        await websocket.accept()
        kind = websocket.path_params["kind"]
        value = await getattr(websocket, f"receive_{kind}")()
        if kind == "json":
            await websocket.send_json(value)
        elif kind == "bytes":
            await websocket.send_bytes(value)
        else:
            await websocket.send_text(value)
    def last(kind, *messages):
        return barelab.call_asgi(app, path=f"/{kind}", receive_events=ws_events(*messages)).sent
    assert last("json", '{"a": [1]}')[1] == {"type": "websocket.send", "text": '{"a": [1]}'}
    assert last("bytes", b"\x00")[1] == {"type": "websocket.send", "bytes": b"\x00"}
    assert last("text", b"\x00")[1]["code"] == 1003
    assert last("bytes", "text")[1]["code"] == 1003
    assert last("json", "{oops")[1]["code"] == 1007


def test_websocket_disconnect_is_raised_in_the_handler():
    seen = []
    app = Bare()
    @app.websocket("/ws")
    async def listen(websocket):
        await websocket.accept()
        try:
            await websocket.receive_text()
        except WebSocketDisconnect as gone:
            seen.append(gone.code)
            raise
    events = ws_events() + [{"type": "websocket.disconnect", "code": 1001}]
    call = barelab.call_asgi(app, path="/ws", receive_events=events)
    assert seen == [1001] and call.exception is None
    assert [m["type"] for m in call.sent] == ["websocket.accept"]


def test_websocket_handler_that_returns_something_is_refused_with_a_type_error():
    app = Bare()
    @app.websocket("/early", name="early")
    async def early(websocket):
        return Response("hi")                  # before accept: the client is denied (403)
    @app.websocket("/late")
    async def late(websocket):
        await websocket.accept()
        return {"done": True}                  # after accept: closed with 1011
    call = barelab.call_asgi(app, path="/early", receive_events=ws_events(), raise_errors=False)
    assert call.sent == [{"type": "websocket.close", "code": 1011, "reason": ""}]
    assert isinstance(call.exception, TypeError)
    assert "'/early' (early) returned Response" in str(call.exception)
    assert "returns None" in str(call.exception)
    call = barelab.call_asgi(app, path="/late", receive_events=ws_events(), raise_errors=False)
    assert [m["type"] for m in call.sent] == ["websocket.accept", "websocket.close"]
    assert call.sent[-1]["code"] == 1011
    assert "'/late'" in str(call.exception) and "dict {'done': True}" in str(call.exception)


def test_websocket_handler_returning_none_closes_normally():
    app = Bare()
    @app.websocket("/ws")
    async def quiet(websocket):
        await websocket.accept()
        return None
    call = barelab.call_asgi(app, path="/ws", receive_events=ws_events())
    assert call.exception is None and call.sent[-1]["code"] == 1000


def test_websocket_close_before_accept_and_after():
    app = Bare()
    @app.websocket("/deny")
    async def deny(websocket):
        await websocket.close(4003)
    @app.websocket("/bye")
    async def bye(websocket):
        await websocket.accept()
        await websocket.close(4000, "done")
    assert barelab.call_asgi(app, path="/deny", receive_events=ws_events()).sent == [
        {"type": "websocket.close", "code": 4003, "reason": ""}]
    assert barelab.call_asgi(app, path="/bye", receive_events=ws_events()).sent[-1] == {
        "type": "websocket.close", "code": 4000, "reason": "done"}


# -- the demo app through chapter 17's TestClient --------------------------------------------

def test_test_client_session_runs_the_lifespan_and_the_notes_api():
    with TestClient(make_demo()) as client:
        created = client.post("/notes", json={"text": "milk"})
        assert created.status_code == 201 and created.headers["location"] == "/notes/1"
        assert client.get("/notes/1").json() == {"id": 1, "text": "milk"}
        assert client.get("/notes").json() == [{"id": 1, "text": "milk"}]
        head = client.head("/notes")
        assert head.status_code == 200 and head.content == b""
        deleted = client.delete("/notes/1")
        assert deleted.status_code == 204 and "content-length" not in deleted.headers
        assert client.delete("/notes/1").status_code == 404
        refused = client.put("/notes/1")
        assert refused.status_code == 405
        assert refused.headers["allow"] == "DELETE, GET, HEAD, OPTIONS"
        bad = client.post("/notes", content=b"{oops", headers={"content-type": "application/json"})
        assert bad.status_code == 400 and "Traceback" not in bad.text


def test_test_client_sends_the_session_cookie_back():
    with TestClient(make_demo()) as client:
        answers = [client.get("/visits") for _ in range(3)]
    assert [a.text for a in answers] == [f"visit number {n}\n" for n in (1, 2, 3)]
    assert len(answers[0].headers.get_list("set-cookie")) == 2


def test_test_client_streams_and_passes_binary_websocket_frames():
    with TestClient(make_demo()) as client:
        assert client.get("/count", params={"to": 3}).text == "1\n2\n3\n"
        with client.websocket_connect("/ws/lobby") as websocket:
            websocket.send_bytes(b"\xff\x00")
            assert websocket.receive_bytes() == b"\xff\x00"
            websocket.send_text("hi")
            assert websocket.receive_text() == "lobby: hi"


def test_test_client_sees_a_generic_500():
    app = Bare()
    @app.get("/")
    async def broken(request):
        raise RuntimeError("secret")
    answer = TestClient(app, raise_app_exceptions=False).get("/")
    assert answer.status_code == 500 and answer.text == "500 Internal Server Error\n"
    with pytest.raises(RuntimeError, match="secret"):
        TestClient(app).get("/")


# -- the demo app on the course's ASGI servers, probed with raw bytes ----------------------

def exchange(server, data: bytes) -> bytes:
    return barelab.raw_exchange(server, data, timeout=3.0).received


def request_bytes(method: str, path: str, headers=(), body: bytes = b"") -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: x", "Connection: close", *headers]
    if body:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


@pytest.fixture(params=[ASGIServer, WebSocketASGIServer], ids=["ASGIServer", "WebSocketASGIServer"])
def served(request):
    server = barelab.serve(make_demo(), name=f"test_bare_{request.param.__name__}",
                           server=request.param)
    yield server
    server.stop()


def head_of(data: bytes) -> list[str]:
    return data.split(b"\r\n\r\n")[0].decode("latin-1").lower().split("\r\n")


def test_probe_invalid_json_is_400_without_traceback(served):
    data = exchange(served, request_bytes("POST", "/notes", ["Content-Type: application/json"],
                                          b'{"text": oops}'))
    assert data.startswith(b"HTTP/1.1 400 ")
    assert data.split(b"\r\n\r\n", 1)[1].startswith(b"400 Bad Request: invalid JSON")
    assert b"Traceback" not in data and b".py" not in data


def test_probe_head_has_no_body(served):
    get = exchange(served, request_bytes("GET", "/notes"))
    head = exchange(served, request_bytes("HEAD", "/notes"))
    assert head.startswith(b"HTTP/1.1 200 ") and head.endswith(b"\r\n\r\n")
    assert "content-length: 2" in head_of(head) and "content-length: 2" in head_of(get)


def test_probe_204_has_no_content_length_and_no_body(served):
    exchange(served, request_bytes("POST", "/notes", ["Content-Type: application/json"],
                                   b'{"text": "x"}'))
    data = exchange(served, request_bytes("DELETE", "/notes/1"))
    assert data.startswith(b"HTTP/1.1 204 ") and data.endswith(b"\r\n\r\n")
    assert not any(line.startswith("content-length") for line in head_of(data))
    assert not any(line.startswith("transfer-encoding") for line in head_of(data))


def test_probe_several_set_cookie_lines(served):
    data = exchange(served, request_bytes("GET", "/visits"))
    cookies = [line for line in head_of(data) if line.startswith("set-cookie:")]
    assert len(cookies) == 2 and cookies[1] == "set-cookie: visits=1; path=/; samesite=lax"


def test_probe_404_and_405_with_allow(served):
    missing = exchange(served, request_bytes("GET", "/nothing"))
    refused = exchange(served, request_bytes("PATCH", "/notes/1"))
    assert missing.startswith(b"HTTP/1.1 404 ")
    assert not any(line.startswith("allow:") for line in head_of(missing))
    assert refused.startswith(b"HTTP/1.1 405 ")
    assert "allow: delete, get, head, options" in head_of(refused)


def test_probe_stream_is_chunked(served):
    data = exchange(served, request_bytes("GET", "/count?to=2"))
    assert "transfer-encoding: chunked" in head_of(data)
    assert data.split(b"\r\n\r\n", 1)[1] == b"2\r\n1\n\r\n2\r\n2\n\r\n0\r\n\r\n"


def test_probe_binary_websocket_frames_and_rooms():
    server = barelab.serve(make_demo(), name="test_bare_ws", server=WebSocketASGIServer)
    try:
        with barelab.websocket_connect(server, "/ws/kitchen") as alice, \
                barelab.websocket_connect(server, "/ws/kitchen") as bob:
            alice.send_bytes(b"\xff\xfe\x00")
            alice.send_text("dinner")
            assert [bob.receive(), bob.receive()] == [b"\xff\xfe\x00", "kitchen: dinner"]
            assert [alice.receive(), alice.receive()] == [b"\xff\xfe\x00", "kitchen: dinner"]
        with pytest.raises(barelab.WebSocketRejected, match="403"):
            barelab.websocket_connect(server, "/ws")
    finally:
        server.stop()


def test_probe_binary_frame_bytes_on_the_wire():
    """A masked binary frame in, an unmasked binary frame (opcode 2) out (RFC 6455 §5.2)."""
    server = barelab.serve(make_demo(), name="test_bare_ws_raw", server=WebSocketASGIServer)
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=3) as sock:
            sock.sendall(b"GET /ws/raw HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                         b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                         b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
            reply = b""
            while b"\r\n\r\n" not in reply:
                reply += sock.recv(4096)
            assert reply.startswith(b"HTTP/1.1 101 ")
            mask, payload = b"\x01\x02\x03\x04", b"\x00\xff\x10"
            masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
            sock.sendall(bytes([0x82, 0x80 | len(payload)]) + mask + masked)
            frame = reply.split(b"\r\n\r\n", 1)[1]
            while len(frame) < 2 + len(payload):
                frame += sock.recv(4096)
            assert frame[:2 + len(payload)] == bytes([0x82, len(payload)]) + payload
    finally:
        server.stop()


def test_the_demo_app_runs_its_lifespan_on_the_course_server():
    server = barelab.serve(make_demo(), name="test_bare_lifespan", server=ASGIServer)
    try:
        created = barelab.http_request(server, "POST", "/notes", json={"text": "hi"})
        assert created.status == 201 and created.header("location") == "/notes/1"
        assert barelab.http_request(server, "GET", "/notes").json() == [{"id": 1, "text": "hi"}]
    finally:
        server.stop()
    assert "lifespan startup complete" in str(server.log).lower()


def test_generic_500_on_the_wire_and_traceback_in_the_log():
    app = Bare(name="test_bare_crash")
    @app.get("/")
    async def crash(request):
        raise RuntimeError("secret-token-123")
    server = barelab.serve(app, server=ASGIServer)
    try:
        data = exchange(server, request_bytes("GET", "/"))
        assert data.startswith(b"HTTP/1.1 500 ") and b"secret" not in data
        assert data.endswith(b"\r\n\r\n500 Internal Server Error\n")
        assert "secret-token-123" in server.log.errors[0].details
    finally:
        server.stop()


def test_json_module_roundtrip_of_error_body(demo):
    _, call = demo
    body = call("POST", "/notes", body=b"{", headers=JSON + [("accept", "application/json")])
    assert json.loads(body.body)["status"] == 400


# -- hooks: exception handlers, after-response work, add_middleware, refusals, closing -----

from barelab.built.bare import MethodNotAllowed, NotFound, WebSocket  # noqa: E402


def test_exception_handler_walks_the_mro_and_accepts_sync_handlers_and_plain_values():
    app = Bare()
    @app.get("/key")
    async def key(request):
        return {}["missing"]
    @app.exception_handler(LookupError)
    def lookup(request, error):                        # sync, returns a dict
        return {"missing": error.args[0]}
    call = barelab.call_asgi(app, "GET", "/key")
    assert call.status == 200 and json.loads(call.body) == {"missing": "missing"}
    assert app.handler_for(KeyError("x")) is lookup and app.handler_for(ValueError()) is None


def test_add_exception_handler_refuses_what_is_not_an_exception_class():
    with pytest.raises(TypeError, match="Exception classes"):
        Bare().add_exception_handler("KeyError", lambda request, error: None)


def test_a_catch_all_handler_does_not_swallow_http_exceptions():
    app = Bare()
    @app.get("/teapot")
    async def teapot(request):
        raise HTTPException(418, "short and stout")
    @app.exception_handler(Exception)
    async def everything(request, error):
        return Response("handled\n", 503)
    assert barelab.call_asgi(app, "GET", "/teapot").status == 418
    assert barelab.call_asgi(app, "GET", "/nowhere").status == 404
    @app.get("/bug")
    async def bug(request):
        raise RuntimeError("boom")
    call = barelab.call_asgi(app, "GET", "/bug")             # handled: nothing re-raised
    assert (call.status, call.body) == (503, b"handled\n")


def test_a_handler_for_http_exception_or_a_subclass_replaces_the_default():
    app = Bare()
    @app.exception_handler(NotFound)
    async def not_found(request, error):
        return HTMLResponse("<h1>Lost?</h1>", 404)
    call = barelab.call_asgi(app, "GET", "/nowhere")
    assert call.status == 404 and call.body == b"<h1>Lost?</h1>"


def test_defaults_unchanged_without_handlers():
    app = Bare()
    @app.get("/bug")
    async def bug(request):
        raise RuntimeError("secret")
    call = barelab.call_asgi(app, "GET", "/bug", raise_errors=False)
    assert (call.status, call.body) == (500, b"500 Internal Server Error\n")
    assert isinstance(call.exception, RuntimeError)


def test_a_failing_handler_is_a_500_and_its_error_is_re_raised():
    app = Bare()
    @app.get("/")
    async def home(request):
        raise KeyError("x")
    @app.exception_handler(KeyError)
    async def broken(request, error):
        raise ValueError("handler bug")
    call = barelab.call_asgi(app, raise_errors=False)
    assert (call.status, call.body) == (500, b"500 Internal Server Error\n")
    assert isinstance(call.exception, ValueError)
    assert isinstance(call.exception.__context__, KeyError)


def test_handlers_are_skipped_for_request_aborted_and_after_the_start():
    seen = []
    app = Bare()
    @app.exception_handler(Exception)
    async def note(request, error):
        seen.append(type(error).__name__)
        return Response("handled\n", 500)
    @app.post("/upload")
    async def upload(request):
        await request.body()
    @app.get("/stream")
    async def broken_stream(request):
        async def chunks():
            yield "one\n"
            raise RuntimeError("mid-stream")
        return StreamingResponse(chunks())
    aborted = barelab.call_asgi(app, "POST", "/upload", receive_events=[
        {"type": "http.request", "body": b"x", "more_body": True}, {"type": "http.disconnect"}])
    assert aborted.exception is None and not [m for m in aborted.sent
                                               if m["type"] == "http.response.start"]
    streamed = barelab.call_asgi(app, "GET", "/stream", raise_errors=False)
    assert isinstance(streamed.exception, RuntimeError) and streamed.status == 200
    assert seen == []


def test_call_after_response_runs_in_order_after_the_last_byte_and_logs_failures(caplog):
    events = []
    app = Bare()
    async def later(what):
        events.append(what)
    @app.get("/")
    async def home(request):
        request.call_after_response(later, "async")
        request.call_after_response(lambda: 1 / 0)
        request.call_after_response(events.append, "sync")
        return "ok"
    async def watch(scope, receive, send):
        async def noting(message):
            await send(message)
            events.append(message["type"])
        await app(scope, receive, noting)
    with caplog.at_level("ERROR", logger="bare"):
        call = barelab.call_asgi(watch)
    assert call.status == 200 and call.body == b"ok"
    assert events == ["http.response.start", "http.response.body", "async", "sync"]
    [record] = [r for r in caplog.records if r.name == "bare"]
    assert "failed" in record.getMessage() and record.exc_info[0] is ZeroDivisionError


def test_call_after_response_runs_after_an_error_response_too():
    done = []
    app = Bare()
    @app.get("/")
    async def home(request):
        request.call_after_response(done.append, "cleanup")
        raise HTTPException(409)
    @app.get("/bug")
    async def bug(request):
        request.call_after_response(done.append, "cleanup after bug")
        raise RuntimeError("bug")
    assert barelab.call_asgi(app).status == 409
    assert barelab.call_asgi(app, "GET", "/bug", raise_errors=False).status == 500
    assert done == ["cleanup", "cleanup after bug"]


def test_add_middleware_with_options_until_the_stack_is_built():
    order = []
    class Mark:
        def __init__(self, app, label):
            self.app, self.label = app, label
        async def __call__(self, scope, receive, send):
            order.append(self.label)
            await self.app(scope, receive, send)
    app = Bare(middleware=[functools.partial(Mark, label="given")])
    app.add_middleware(Mark, label="added")
    assert app.stack_built is False and isinstance(app.middleware[-1], functools.partial)
    barelab.call_asgi(app)
    assert app.stack_built is True and order == ["given", "added"]
    with pytest.raises(RuntimeError, match="built its middleware stack"):
        app.add_middleware(Mark, label="late")
    assert app.stack is not None                           # the old name still works


def test_router_refusals_are_not_found_and_method_not_allowed():
    refused = MethodNotAllowed({"POST", "GET"})
    assert refused.allowed == ["GET", "HEAD", "POST"] and refused.status == 405
    assert refused.headers == [("allow", "GET, HEAD, POST")]
    assert isinstance(NotFound(), HTTPException) and NotFound().status == 404
    caught = []
    app = Bare()
    @app.get("/thing")
    async def thing(request):
        return "thing"
    @app.exception_handler(HTTPException)
    async def keep(request, error):
        caught.append(error)
        return error_response(error)
    call = barelab.call_asgi(app, "PUT", "/thing")
    assert call.status == 405 and dict(call.headers)["allow"] == "GET, HEAD, OPTIONS"
    assert barelab.call_asgi(app, "GET", "/none").status == 404
    assert [type(e).__name__ for e in caught] == ["MethodNotAllowed", "NotFound"]
    assert caught[0].allowed == ["GET", "HEAD", "OPTIONS"]


def test_a_response_refuses_a_websocket_scope_by_name():
    for response in (Response("hi"), StreamingResponse(iter_async(["a"]))):
        with pytest.raises(TypeError, match="'websocket'"):
            barelab.call_asgi(response, scope={"type": "websocket"})


async def iter_async(items):
    for item in items:
        yield item


def looping_after_close_app(outcomes: list, code: int = 4000) -> Bare:
    app = Bare()
    @app.websocket("/ws")
    async def handler(websocket):
        await websocket.accept()
        await websocket.close(code, "enough")
        for _ in range(3):
            try:
                outcomes.append(await websocket.receive_message())
            except WebSocketDisconnect as gone:
                outcomes.append(gone.code)
    return app


def test_receive_after_our_close_waits_for_the_clients_disconnect():
    outcomes = []
    events = [{"type": "websocket.connect"}, {"type": "websocket.receive", "text": "late"},
              {"type": "websocket.disconnect", "code": 4001}]
    call = barelab.call_asgi(looping_after_close_app(outcomes), path="/ws",
                             receive_events=events)
    assert call.exception is None and outcomes == [4001, 4001, 4001]
    assert call.sent[-1] == {"type": "websocket.close", "code": 4000, "reason": "enough"}


def test_receive_after_our_close_hears_the_test_clients_echo(monkeypatch):
    monkeypatch.setattr(WebSocket, "close_timeout", 5.0)   # the echo must come long before
    outcomes = []
    started = time.monotonic()
    with TestClient(looping_after_close_app(outcomes)) as client:
        with client.websocket_connect("/ws") as ws:
            with pytest.raises(Exception, match="4000") as caught:   # testing's own class
                ws.receive_text()                                    # the app's close
    assert caught.value.code == 4000 and caught.value.reason == "enough"
    assert outcomes == [4000, 4000, 4000]                   # RFC 6455 §5.5.1: echoed
    assert time.monotonic() - started < 2


def test_receive_after_our_close_gives_up_with_1006_when_the_client_is_silent(monkeypatch):
    monkeypatch.setattr(WebSocket, "close_timeout", 0.1)
    outcomes, sent = [], []
    connected = False

    async def silent_client():                 # connects, then never answers our Close
        nonlocal connected
        if not connected:
            connected = True
            return {"type": "websocket.connect"}
        await asyncio.sleep(3600)

    async def record(message):
        sent.append(message)

    app = looping_after_close_app(outcomes)
    scope = {"type": "websocket", "path": "/ws", "headers": [], "subprotocols": []}
    asyncio.run(asyncio.wait_for(app(scope, silent_client, record), 5))
    assert outcomes == [1006, 1006, 1006]
    assert sent[-1] == {"type": "websocket.close", "code": 4000, "reason": "enough"}


def test_receive_after_our_close_on_a_real_server():
    outcomes = []
    server = barelab.serve(looping_after_close_app(outcomes), name="test_bare_ws_close",
                           server=WebSocketASGIServer)
    try:
        with barelab.websocket_connect(server, "/ws") as client:
            with pytest.raises(Exception, match="4000"):
                client.receive()
        for _ in range(50):
            if len(outcomes) == 3:
                break
            asyncio.run(asyncio.sleep(0.05))
    finally:
        server.stop()
    assert len(outcomes) == 3 and len(set(outcomes)) == 1 and outcomes[0] != 1006


def test_options_star_lists_every_http_method_the_app_routes():
    app = Bare(name="star")

    @app.get("/a")
    async def a(request):
        return "a"

    @app.route("/b", methods=["POST", "PUT"])
    async def b(request):
        return "b"

    @app.websocket("/ws")
    async def ws(websocket):
        await websocket.accept()

    sent = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": "OPTIONS", "path": "*", "raw_path": b"*",
             "query_string": b"", "headers": [], "root_path": ""}
    asyncio.run(app(scope, receive, send))
    start = sent[0]
    assert start["status"] == 204
    assert dict(start["headers"])[b"allow"] == b"GET, HEAD, OPTIONS, POST, PUT"
