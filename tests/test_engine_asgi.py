"""Tests of barelab.engines.asgi: raw bytes (and a wsproto client) against a real socket."""

from __future__ import annotations

import asyncio
import json
import socket
import struct
import threading
import time
import urllib.request

import h11
import pytest
from wsproto import ConnectionType, WSConnection
from wsproto.events import (AcceptConnection, BytesMessage, CloseConnection, Ping, Pong,
                            RejectConnection, RejectData, Request, TextMessage)

from barelab.engines.asgi import ASGIEngine
from barelab.errors import LifespanStartupFailed
from barelab.logs import ServerLog
from barelab.serving import bind_listening_socket

# ---------------------------------------------------------------------------------------
# Harness


class Running:
    """An ASGIEngine serving on 127.0.0.1:<port>, as serve() would start it."""

    def __init__(self, app, **options):
        self.sock = bind_listening_socket("127.0.0.1", 0)  # the socket serve() would make
        self.port = self.sock.getsockname()[1]
        self.log = ServerLog()
        self.engine = ASGIEngine(app, self.sock, self.log, **options)
        self.engine.start()

    def connect(self) -> "Client":
        return Client(self.port)

    def exchange(self, data: bytes, timeout: float = 2.0) -> bytes:
        """Send ``data``, return everything until the server closes (or ``timeout``)."""
        with self.connect() as client:
            client.send(data)
            return client.read_all(timeout)

    def call_soon(self, callback, *args) -> None:
        """Run ``callback`` on the engine's loop (e.g. set an asyncio.Event)."""
        self.engine.loop.call_soon_threadsafe(callback, *args)


@pytest.fixture
def serve():
    started = []

    def start(app, **options) -> Running:
        running = Running(app, **options)
        started.append(running)
        return running

    threads_before = set(threading.enumerate())
    yield start
    for running in started:
        running.engine.stop()
    leaked = [t for t in set(threading.enumerate()) - threads_before
              if t.name.startswith("barelab-asgi")]
    assert not leaked, f"engine threads still alive: {leaked}"


class Client:
    """A raw socket; responses are parsed with an h11 client told what was asked."""

    def __init__(self, port: int):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=3)
        self.h11 = h11.Connection(h11.CLIENT)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def read_all(self, timeout: float = 2.0) -> bytes:
        self.sock.settimeout(timeout)
        chunks = []
        try:
            while data := self.sock.recv(65536):
                chunks.append(data)
        except (socket.timeout, ConnectionResetError):
            pass
        return b"".join(chunks)

    def closed_by_server(self, timeout: float = 2.0) -> bool:
        self.sock.settimeout(timeout)
        try:
            while self.sock.recv(65536):
                pass
            return True
        except ConnectionResetError:
            return True
        except socket.timeout:
            return False

    def response(self, method: bytes = b"GET", http_version: bytes = b"1.1"):
        """The next response: (status, headers dict, body bytes, informational statuses)."""
        if self.h11.our_state is h11.DONE and self.h11.their_state is h11.DONE:
            self.h11.start_next_cycle()
        if self.h11.our_state is h11.IDLE:  # tell h11 what we asked, so it frames the answer
            self.h11.send(h11.Request(method=method, target="/", headers=[("host", "x")]))
            self.h11.send(h11.EndOfMessage())
        status, headers, body, informational = None, {}, b"", []
        while True:
            event = self.h11.next_event()
            if event is h11.NEED_DATA:
                self.h11.receive_data(self.sock.recv(65536))
            elif isinstance(event, h11.InformationalResponse):
                informational.append(event.status_code)
            elif isinstance(event, h11.Response):
                status = event.status_code
                headers = {n.decode(): v.decode() for n, v in event.headers}
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                return status, headers, body, informational
            else:
                raise AssertionError(f"unexpected {event!r}")


def get(path: str = "/", extra: str = "", method: str = "GET", version: str = "1.1") -> bytes:
    return f"{method} {path} HTTP/{version}\r\nHost: x\r\n{extra}\r\n".encode()


def wait_until(predicate, timeout: float = 2.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.005)
    return predicate()


async def read_body(receive) -> bytes:
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            return body


def text_app(body: bytes = b"hello", status: int = 200, headers=()):
    async def app(scope, receive, send):
        if scope["type"] != "http":
            raise RuntimeError("no lifespan here")
        await read_body(receive)
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"text/plain")] + list(headers)})
        await send({"type": "http.response.body", "body": body})
    return app


# ---------------------------------------------------------------------------------------
# HTTP


def test_scope_and_a_simple_response(serve):
    scopes = []

    async def app(scope, receive, send):
        if scope["type"] == "http":
            scopes.append(scope)
        await text_app()(scope, receive, send)

    server = serve(app)
    with server.connect() as client:
        client.send(b"GET /caf%C3%A9/x%2Fy?q=1&r=%20 HTTP/1.1\r\nHost: x\r\n"
                    b"X-Twice: a\r\nx-twice: b\r\n\r\n")
        status, headers, body, _ = client.response()
    assert (status, body) == (200, b"hello")
    assert headers["content-length"] == "5" and headers["server"] == "barelab"
    assert "date" in headers and "transfer-encoding" not in headers
    scope = scopes[0]
    assert scope["type"] == "http" and scope["method"] == "GET" and scope["scheme"] == "http"
    assert scope["asgi"] == {"version": "3.0", "spec_version": "2.4"}
    assert scope["http_version"] == "1.1" and scope["root_path"] == ""
    assert scope["path"] == "/café/x/y" and scope["raw_path"] == b"/caf%C3%A9/x%2Fy"
    assert scope["query_string"] == b"q=1&r=%20"
    assert scope["headers"] == [(b"host", b"x"), (b"x-twice", b"a"), (b"x-twice", b"b")]
    assert scope["client"][0] == "127.0.0.1" and scope["server"] == ("127.0.0.1", server.port)
    assert scope["state"] == {}
    assert server.log.requests and server.log.requests[0].status == 200, str(server.log)
    assert '"GET /caf%C3%A9/x%2Fy?q=1&r=%20 HTTP/1.1" 200 5B' in server.log.requests[0].message


def test_keep_alive_and_pipelining_one_request_at_a_time(serve):
    active, seen = [0], []

    async def app(scope, receive, send):
        if scope["type"] != "http":
            raise RuntimeError
        active[0] += 1
        seen.append((scope["path"], active[0]))
        await asyncio.sleep(0.01)
        body = await read_body(receive)
        active[0] -= 1
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": scope["path"].encode() + body})

    server = serve(app)
    with server.connect() as client:
        client.send(get("/1") + b"POST /2 HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"
                    + b"\r\n" + get("/3"))  # a stray CRLF between requests is ignored
        assert client.response()[2] == b"/1"
        assert client.response()[2] == b"/2abc"
        assert client.response()[2] == b"/3"
        client.send(get("/4"))  # and the connection is still open afterwards
        assert client.response()[2] == b"/4"
    assert [depth for _, depth in seen] == [1, 1, 1, 1]


def test_head_sends_the_get_headers_but_no_body(serve):
    server = serve(text_app(b"twelve bytes"))
    with server.connect() as client:
        client.send(get(method="HEAD") + get("/after"))
        status, headers, body, _ = client.response(method=b"HEAD")
        assert (status, headers["content-length"], body) == (200, "12", b"")
        assert client.response()[2] == b"twelve bytes"  # nothing leaked into the stream


def test_chunked_request_body_arrives_as_several_events(serve):
    events, first = [], threading.Event()

    async def app(scope, receive, send):
        if scope["type"] != "http":
            raise RuntimeError
        while True:
            message = await receive()
            events.append(message)
            first.set()
            if not message["more_body"]:
                break
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body",
                    "body": b"".join(m["body"] for m in events)})

    server = serve(app)
    with server.connect() as client:
        client.send(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                    b"5\r\nhello\r\n")
        assert first.wait(2)
        client.send(b"1\r\n \r\n5\r\nworld\r\n0\r\n\r\n")
        assert client.response()[2] == b"hello world"
    assert events[0] == {"type": "http.request", "body": b"hello", "more_body": True}
    assert len(events) >= 2 and events[-1]["more_body"] is False


def test_streaming_response_arrives_before_the_app_finishes(serve):
    release = threading.Event()

    async def app(scope, receive, send):
        if scope["type"] != "http":
            raise RuntimeError
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"first", "more_body": True})
        await asyncio.to_thread(release.wait, 5)
        await send({"type": "http.response.body", "body": b"second"})

    server = serve(app)
    with server.connect() as client:
        client.send(get())
        client.sock.settimeout(2)
        head = client.sock.recv(65536)
        while b"first" not in head:
            head += client.sock.recv(65536)
        assert b"transfer-encoding: chunked" in head.lower()
        release.set()
        rest = client.sock.recv(65536)
        while not rest.endswith(b"0\r\n\r\n"):
            rest += client.sock.recv(65536)
        assert b"second" in rest


def test_app_set_transfer_encoding_is_not_chunked_twice(serve):
    async def app(scope, receive, send):
        if scope["type"] != "http":
            raise RuntimeError
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"transfer-encoding", b"chunked")]})
        await send({"type": "http.response.body", "body": b"hello", "more_body": True})
        await send({"type": "http.response.body", "body": b" world"})

    server = serve(app)
    with server.connect() as client:
        client.send(get())
        status, headers, body, _ = client.response()
    assert headers["transfer-encoding"] == "chunked" and body == b"hello world"
    raw = server.exchange(get(version="1.0"))  # HTTP/1.0 has no chunking: close-delimited
    assert b"transfer-encoding" not in raw.lower() and raw.endswith(b"\r\n\r\nhello world")


def test_app_set_content_length_is_honoured(serve):
    async def app(scope, receive, send):
        if scope["type"] != "http":
            raise RuntimeError
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", b"10")]})
        await send({"type": "http.response.body", "body": b"hello", "more_body": True})
        await send({"type": "http.response.body", "body": b"world"})

    server = serve(app)
    with server.connect() as client:
        client.send(get())
        status, headers, body, _ = client.response()
    assert headers["content-length"] == "10" and "transfer-encoding" not in headers
    assert body == b"helloworld"


def test_streamed_body_without_length_is_chunked_on_11_and_close_delimited_on_10(serve):
    async def app(scope, receive, send):
        if scope["type"] != "http":
            raise RuntimeError
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ab", "more_body": True})
        await send({"type": "http.response.body", "body": b"cd"})

    server = serve(app)
    raw11 = server.exchange(get(extra="Connection: close\r\n"))
    assert b"transfer-encoding: chunked" in raw11.lower() and raw11.endswith(b"0\r\n\r\n")
    raw10 = server.exchange(get(version="1.0"))
    assert raw10.startswith(b"HTTP/1.1 200") and raw10.endswith(b"\r\n\r\nabcd")
    assert b"connection: close" in raw10.lower()


@pytest.mark.parametrize("status", [204, 304])
def test_no_body_statuses(serve, status):
    server = serve(text_app(b"should not be sent", status=status,
                            headers=[(b"content-length", b"18")] if status == 204 else []))
    with server.connect() as client:
        client.send(get() + get())
        for _ in range(2):
            got, headers, body, _ = client.response()
            assert (got, body) == (status, b"")
            if status == 204:
                assert "content-length" not in headers  # RFC 9110 §8.6


def test_exception_before_start_is_a_plain_500(serve):
    async def app(scope, receive, send):
        if scope["type"] != "http":
            raise RuntimeError
        if scope["path"] == "/boom":
            raise ValueError("secret detail")
        await text_app(b"ok")(scope, receive, send)

    server = serve(app)
    with server.connect() as client:
        client.send(get("/boom"))
        status, headers, body, _ = client.response()
    assert status == 500 and b"secret" not in body and b"Traceback" not in body
    assert "secret detail" in server.log.errors[0].details
    assert server.exchange(get("/fine", "Connection: close\r\n")).endswith(b"ok")


def test_exception_after_start_closes_the_connection(serve):
    async def app(scope, receive, send):
        if scope["type"] != "http":
            raise RuntimeError
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"partial", "more_body": True})
        raise ValueError("mid-stream")

    server = serve(app)
    raw = server.exchange(get())
    assert raw.startswith(b"HTTP/1.1 200") and b"partial" in raw
    assert not raw.endswith(b"0\r\n\r\n")  # no terminating chunk: visibly incomplete
    assert "mid-stream" in server.log.errors[0].details


def test_returning_without_a_response_is_a_500(serve):
    async def app(scope, receive, send):
        if scope["type"] != "http":
            raise RuntimeError

    server = serve(app)
    assert server.exchange(get()).startswith(b"HTTP/1.1 500 Internal Server Error")
    assert "without starting the response" in server.log.errors[0].message


@pytest.mark.parametrize("messages, error", [
    ([{"type": "http.response.body", "body": b"x"}], "before 'http.response.start'"),
    ([{"type": "http.response.start", "status": 200},
      {"type": "http.response.start", "status": 200}], "sent once per response"),
    ([{"type": "http.response.start", "status": 200},
      {"type": "http.response.body", "body": "text"}], "must be a byte string"),
    ([{"type": "http.response.start", "status": "200"}], "'status' must be an int"),
    ([{"type": "http.response.start", "status": 200, "headers": [("a", "b")]}],
     "pair of byte strings"),
    ([{"type": "http.response.start", "status": 200, "headers": [(b"a", b"b\r\nc")]}],
     "invalid 'http.response.start' headers"),
    ([{"type": "websocket.send"}], "got 'websocket.send'"),
])
def test_send_checks_message_order_and_types(serve, messages, error):
    raised = []

    async def app(scope, receive, send):
        if scope["type"] != "http":
            raise RuntimeError
        try:
            for message in messages:
                await send(message)
        except (TypeError, ValueError, RuntimeError) as exc:
            raised.append(str(exc))
            raise

    server = serve(app)
    assert server.exchange(get()).startswith(b"HTTP/1.1 500")
    assert error in raised[0] and "ASGI" in raised[0]


@pytest.mark.parametrize("request_bytes, status", [
    (b"GARBAGE\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\n\r\n", 400),  # no Host
    (b"GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505),
    (b"GET /a#frag HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    (b"GET no-slash HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
     b"3\r\nabc\r\n0\r\n\r\n", 400),  # RFC 9112 §6.1
    (b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 5000 + b"\r\n\r\n", 431),
    (b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 5000, 431),  # incomplete head
    (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2000\r\n\r\n", 413),
    (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
     b"800\r\n" + b"a" * 2048 + b"\r\n0\r\n\r\n", 413),
    (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400),
    (b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", 400),  # §6.1
    (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501),
    (b"GET / HTTP/1.1\r\nHost: a b/c\r\n\r\n", 400),  # RFC 9112 §3.2: invalid Host
    (b"GET /" + b"a" * 3000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
    (b"GET /" + b"a" * 5000, 414),  # still inside the request-line
    (b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n", 501),
])
def test_malformed_requests_are_refused_and_the_server_lives_on(serve, request_bytes, status):
    server = serve(text_app(b"ok"), max_header_bytes=4096, max_body_bytes=1024)
    raw = server.exchange(request_bytes)
    assert raw.startswith(b"HTTP/1.1 %d" % status), raw[:80]
    assert b"connection: close" in raw.lower()
    assert server.exchange(get(extra="Connection: close\r\n")).endswith(b"ok")


def test_absolute_form_and_options_star(serve):
    paths = []

    async def app(scope, receive, send):
        if scope["type"] == "http":
            paths.append((scope["path"], scope["query_string"], dict(scope["headers"])[b"host"]))
        await text_app()(scope, receive, send)

    server = serve(app)
    with server.connect() as client:
        client.send(get("http://example.com:8080/a%20b?x=1") + get("*", method="OPTIONS"))
        client.response()
        client.response()
    # RFC 9112 §3.2.2: for absolute-form the target's authority wins over the Host field
    assert paths == [("/a b", b"x=1", b"example.com:8080"), ("*", b"", b"x")]


def test_expect_100_continue_is_sent_when_the_app_reads(serve):
    server = serve(text_app())
    with server.connect() as client:
        client.send(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n"
                    b"Expect: 100-continue\r\n\r\n")
        client.sock.settimeout(2)
        assert client.sock.recv(100).startswith(b"HTTP/1.1 100 Continue\r\n")
        client.send(b"data")
        client.h11.send(h11.Request(method="POST", target="/",
                                    headers=[("host", "x"), ("content-length", "4")]))
        client.h11.send(h11.Data(data=b"data"))
        client.h11.send(h11.EndOfMessage())
        assert client.response()[:1] == (200,)


def test_expect_100_continue_unread_closes_the_connection(serve):
    async def app(scope, receive, send):
        if scope["type"] != "http":
            raise RuntimeError
        await send({"type": "http.response.start", "status": 401, "headers": []})
        await send({"type": "http.response.body", "body": b"no"})

    server = serve(app)
    raw = server.exchange(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n"
                          b"Expect: 100-continue\r\n\r\n")
    assert raw.startswith(b"HTTP/1.1 401") and b"100 Continue" not in raw
    assert b"connection: close" in raw.lower()  # RFC 9110 §10.1.1: the body never comes


def test_unread_body_is_drained_for_keep_alive(serve):
    async def app(scope, receive, send):
        if scope["type"] != "http":
            raise RuntimeError
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ignored your body"})

    server = serve(app)
    with server.connect() as client:
        client.send(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello" + get())
        assert client.response()[0] == 200
        assert client.response()[0] == 200


def test_http_disconnect_when_the_client_goes_away(serve):
    got, sent = [], threading.Event()

    async def app(scope, receive, send):
        if scope["type"] != "http":
            raise RuntimeError
        if scope["path"] == "/ok":
            return await text_app()(scope, receive, send)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"tick", "more_body": True})
        got.append(await receive())  # the (empty) request body
        got.append(await receive())  # blocks until the client leaves
        try:
            for _ in range(50):
                await send({"type": "http.response.body", "body": b"x" * 65536,
                            "more_body": True})
        except OSError as exc:  # ASGI 2.4: send() on a closed connection raises OSError
            got.append(exc)
        sent.set()

    server = serve(app)
    client = server.connect()
    client.send(get())
    client.sock.recv(100)
    client.sock.close()
    assert sent.wait(3)
    assert got[0] == {"type": "http.request", "body": b"", "more_body": False}
    assert got[1] == {"type": "http.disconnect"}
    assert isinstance(got[2], OSError)
    assert not server.log.errors
    assert server.exchange(get("/ok", "Connection: close\r\n")).startswith(b"HTTP/1.1 200")


def test_receive_after_the_response_returns_disconnect(serve):
    got = []

    async def app(scope, receive, send):
        if scope["type"] != "http":
            raise RuntimeError
        await read_body(receive)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"done"})
        got.append(await asyncio.wait_for(receive(), 2))

    server = serve(app)
    assert server.exchange(get(extra="Connection: close\r\n")).endswith(b"done")
    assert wait_until(lambda: got == [{"type": "http.disconnect"}])


@pytest.mark.skipif(not hasattr(ServerLog, "settle"), reason="ServerLog without in_flight()")
def test_an_exchange_is_in_flight_until_its_log_line_is_written(serve):
    release = threading.Event()

    async def app(scope, receive, send):
        if scope["type"] != "http":
            raise RuntimeError
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"a", "more_body": True})
        await asyncio.to_thread(release.wait, 5)
        await send({"type": "http.response.body", "body": b"b"})

    server = serve(app)
    with server.connect() as client:
        client.send(get())
        client.sock.recv(1000)
        assert not server.log.settle(0.05)  # the response is still streaming
        release.set()
        rest = client.sock.recv(1000)
        while not rest.endswith(b"0\r\n\r\n"):
            rest += client.sock.recv(1000)
        assert server.log.settle(0.5) and len(server.log.requests) == 1


def test_keep_alive_timeout_closes_an_idle_connection(serve):
    server = serve(text_app(), keep_alive_timeout=0.2)
    with server.connect() as client:
        client.send(get())
        client.response()
        assert client.closed_by_server(timeout=2)


def test_unknown_option_is_a_type_error():
    with socket.socket() as sock:
        with pytest.raises(TypeError, match="max_headers"):
            ASGIEngine(text_app(), sock, ServerLog(), max_headers=1)


# ---------------------------------------------------------------------------------------
# Lifespan


def test_app_without_lifespan_starts_at_once(serve):
    started = time.perf_counter()
    server = serve(text_app())
    assert time.perf_counter() - started < 0.5
    assert any("lifespan unsupported" in e.message for e in server.log.entries)
    assert server.exchange(get(extra="Connection: close\r\n")).endswith(b"hello")


def test_startup_failed_raises_with_the_message_and_frees_the_port():
    async def app(scope, receive, send):
        assert scope["type"] == "lifespan"
        await receive()
        await send({"type": "lifespan.startup.failed", "message": "no database"})

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    port = sock.getsockname()[1]
    before = set(threading.enumerate())
    engine = ASGIEngine(app, sock, ServerLog())
    with pytest.raises(LifespanStartupFailed, match="no database"):
        engine.start()
    assert sock.fileno() == -1
    assert not (set(threading.enumerate()) - before)
    with socket.socket() as again:
        again.bind(("127.0.0.1", port))


def test_lifespan_on_makes_an_exception_a_startup_failure():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        with pytest.raises(LifespanStartupFailed, match="RuntimeError"):
            ASGIEngine(text_app(), sock, ServerLog(), lifespan="on").start()


def test_lifespan_state_startup_and_shutdown(serve):
    events, scopes = [], []

    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            message = await receive()
            events.append(message["type"])
            scope["state"]["db"] = {"connected": True}
            await send({"type": "lifespan.startup.complete"})
            message = await receive()
            events.append(message["type"])
            await send({"type": "lifespan.shutdown.complete"})
            return
        scopes.append(dict(scope["state"]))
        scope["state"]["mine"] = scope["path"]  # a per-request copy: must not leak
        await text_app()(scope, receive, send)

    server = serve(app)
    assert events == ["lifespan.startup"]
    with server.connect() as client:
        client.send(get("/a") + get("/b"))
        client.response()
        client.response()
    assert scopes == [{"db": {"connected": True}}] * 2
    server.engine.stop()
    assert events == ["lifespan.startup", "lifespan.shutdown"]
    assert any("lifespan shutdown complete" in e.message for e in server.log.entries)


def test_lifespan_off_never_calls_the_app_for_it(serve):
    types = []

    async def app(scope, receive, send):
        types.append(scope["type"])
        await text_app()(scope, receive, send)

    server = serve(app, lifespan="off")
    server.exchange(get(extra="Connection: close\r\n"))
    assert types == ["http"]


# ---------------------------------------------------------------------------------------
# WebSocket


class WSClient:
    """A blocking WebSocket client: wsproto over a raw socket."""

    def __init__(self, port: int, path: str = "/ws", subprotocols=()):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=3)
        self.ws = WSConnection(ConnectionType.CLIENT)
        self.sock.sendall(self.ws.send(Request(host="x", target=path,
                                               subprotocols=list(subprotocols))))
        self.pending: list = []
        self.handshake = self.next_event()

    def next_event(self):
        while not self.pending:
            for event in self.ws.events():
                self.pending.append(event)
            if self.pending:
                break
            data = self.sock.recv(65536)
            self.ws.receive_data(data or None)
        return self.pending.pop(0)

    def send(self, event) -> None:
        self.sock.sendall(self.ws.send(event))

    def message(self):
        parts = []
        while True:
            event = self.next_event()
            if not isinstance(event, (TextMessage, BytesMessage)):
                return event
            parts.append(event.data)
            if event.message_finished:
                return type(parts[0])().join(parts)

    def close(self) -> None:
        self.sock.close()


def echo_app(accept_subprotocol=None):
    async def app(scope, receive, send):
        if scope["type"] != "websocket":
            raise RuntimeError
        assert (await receive())["type"] == "websocket.connect"
        await send({"type": "websocket.accept", "subprotocol": accept_subprotocol})
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                return
            if message.get("text") == "close please":
                await send({"type": "websocket.close", "code": 4002, "reason": "as asked"})
                continue
            await send({"type": "websocket.send", **{k: v for k, v in message.items()
                                                    if k in ("text", "bytes") and v is not None}})
    return app


def test_websocket_accept_echo_text_and_binary_with_subprotocol(serve):
    scopes = []
    inner = echo_app("chat.v2")

    async def app(scope, receive, send):
        scopes.append(scope)
        await inner(scope, receive, send)

    server = serve(app, lifespan="off")
    client = WSClient(server.port, "/ws/caf%C3%A9?room=1", subprotocols=["chat.v1", "chat.v2"])
    assert isinstance(client.handshake, AcceptConnection)
    assert client.handshake.subprotocol == "chat.v2"
    client.send(TextMessage(data="héllo"))
    assert client.message() == "héllo"
    client.send(BytesMessage(data=b"\x00\xff"))
    assert client.message() == b"\x00\xff"
    client.close()
    scope = scopes[0]
    assert scope["type"] == "websocket" and scope["path"] == "/ws/café"
    assert scope["query_string"] == b"room=1" and scope["subprotocols"] == ["chat.v1", "chat.v2"]
    assert scope["asgi"]["spec_version"] == "2.4" and scope["scheme"] == "ws"
    assert "websocket.http.response" in scope["extensions"]
    assert server.log.requests[0].status == 101


def test_websocket_fragmented_message_is_reassembled(serve):
    server = serve(echo_app(), lifespan="off")
    client = WSClient(server.port)
    client.send(TextMessage(data="frag", message_finished=False))
    client.send(TextMessage(data="mented", message_finished=False))
    client.send(Ping(payload=b"in between"))  # control frames may interleave (RFC 6455 §5.4)
    client.send(TextMessage(data="!", message_finished=True))
    assert client.next_event() == Pong(payload=b"in between")
    assert client.message() == "fragmented!"
    client.close()


def test_websocket_ping_is_answered_while_the_app_is_busy(serve):
    release = threading.Event()

    async def app(scope, receive, send):
        await receive()
        await send({"type": "websocket.accept"})
        await asyncio.to_thread(release.wait, 5)  # not receiving at all

    server = serve(app, lifespan="off")
    client = WSClient(server.port)
    client.send(Ping(payload=b"are you there"))
    assert client.next_event() == Pong(payload=b"are you there")
    release.set()
    assert client.next_event().code == 1000  # the app returned: normal closure
    client.close()


def test_websocket_close_codes_travel_both_ways(serve):
    disconnects = []
    inner = echo_app()

    async def app(scope, receive, send):
        async def recording_receive():
            message = await receive()
            if message["type"] == "websocket.disconnect":
                disconnects.append(message)
            return message
        await inner(scope, recording_receive, send)

    server = serve(app, lifespan="off")
    client = WSClient(server.port)
    client.send(CloseConnection(code=4001, reason="bye"))
    reply = client.next_event()
    assert (reply.code, reply.reason) == (4001, "bye")
    assert wait_until(lambda: disconnects)
    assert disconnects[0] == {"type": "websocket.disconnect", "code": 4001, "reason": "bye"}
    client.close()

    client = WSClient(server.port)
    client.send(TextMessage(data="close please"))
    closing = client.next_event()
    assert (closing.code, closing.reason) == (4002, "as asked")
    client.send(closing.response())
    client.close()


def _masked_frame(opcode: int, payload: bytes, fin: bool = True) -> bytes:
    mask = b"\x01\x02\x03\x04"
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return struct.pack("!BB", (0x80 if fin else 0) | opcode, 0x80 | len(payload)) + mask + masked


def test_websocket_invalid_utf8_closes_with_1007_and_protocol_error_with_1002(serve):
    server = serve(echo_app(), lifespan="off")
    client = WSClient(server.port)
    client.sock.sendall(_masked_frame(0x1, b"\xff\xfe"))
    assert client.next_event().code == 1007
    client.close()
    client = WSClient(server.port)
    client.sock.sendall(b"\x81\x02hi")  # unmasked client frame: RFC 6455 §5.1
    assert client.next_event().code == 1002
    client.close()


def test_websocket_message_too_big_closes_with_1009(serve):
    server = serve(echo_app(), lifespan="off", ws_max_message_bytes=1000)
    client = WSClient(server.port)
    client.send(BytesMessage(data=b"x" * 600, message_finished=False))
    client.send(BytesMessage(data=b"x" * 600))
    assert client.next_event().code == 1009
    client.close()


def test_websocket_close_before_accept_is_403_and_denial_response(serve):
    async def app(scope, receive, send):
        await receive()
        if scope["path"] == "/forbidden":
            await send({"type": "websocket.close"})
        else:
            await send({"type": "websocket.http.response.start", "status": 401,
                        "headers": [(b"content-type", b"text/plain")]})
            await send({"type": "websocket.http.response.body", "body": b"log in first"})

    server = serve(app, lifespan="off")
    client = WSClient(server.port, "/forbidden")
    assert isinstance(client.handshake, RejectConnection)
    assert client.handshake.status_code == 403
    client.close()
    client = WSClient(server.port, "/denied")
    assert client.handshake.status_code == 401
    body = client.next_event()
    assert isinstance(body, RejectData) and body.data == b"log in first"
    client.close()


@pytest.mark.parametrize("headers, status", [
    (b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n", 426),
    (b"Sec-WebSocket-Version: 13\r\n", 400),
    (b"Sec-WebSocket-Key: c2hvcnQ=\r\nSec-WebSocket-Version: 13\r\n", 400),
])
def test_websocket_malformed_handshake(serve, headers, status):
    server = serve(echo_app(), lifespan="off")
    raw = server.exchange(b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                          b"Connection: Upgrade\r\n" + headers + b"\r\n")
    assert raw.startswith(b"HTTP/1.1 %d" % status)
    if status == 426:
        assert b"sec-websocket-version: 13" in raw.lower()


def test_websocket_app_exceptions(serve):
    async def app(scope, receive, send):
        await receive()
        if scope["path"] == "/after":
            await send({"type": "websocket.accept"})
        raise ValueError("ws boom")

    server = serve(app, lifespan="off")
    client = WSClient(server.port, "/before")
    assert client.handshake.status_code == 500
    client.close()
    client = WSClient(server.port, "/after")
    assert isinstance(client.handshake, AcceptConnection)
    assert client.next_event().code == 1011
    client.close()
    assert len(server.log.errors) == 2


def test_ten_concurrent_websocket_clients(serve):
    server = serve(echo_app(), lifespan="off")
    clients = [WSClient(server.port) for _ in range(10)]
    for i, client in enumerate(clients):
        client.send(TextMessage(data=f"client {i}"))
    assert [c.message() for c in clients] == [f"client {i}" for i in range(10)]
    for client in clients:
        client.close()


# ---------------------------------------------------------------------------------------
# Threads, loops and stopping


def test_blocking_request_from_a_thread_whose_loop_is_busy(serve):
    server = serve(text_app(b"from another loop"))

    async def cell():  # like a notebook cell: the caller's own loop is blocked by urllib
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/", timeout=3) as response:
            return response.read()

    assert asyncio.run(cell()) == b"from another loop"


def test_stop_is_prompt_and_frees_the_port(serve):
    server = serve(echo_app(), lifespan="off")
    started = time.perf_counter()
    server.engine.stop()
    assert time.perf_counter() - started < 0.2
    assert not server.engine.thread.is_alive()
    with socket.socket() as again:
        again.bind(("127.0.0.1", server.port))
    server.engine.stop()  # a second stop is harmless


def test_stop_is_prompt_with_an_idle_keep_alive_and_an_open_websocket(serve):
    disconnects = []

    async def app(scope, receive, send):
        if scope["type"] == "http":
            await text_app()(scope, receive, send)
            return
        await receive()
        await send({"type": "websocket.accept"})
        disconnects.append(await receive())

    server = serve(app, lifespan="off")
    http_client = server.connect()
    http_client.send(get())
    http_client.response()
    ws_client = WSClient(server.port)
    started = time.perf_counter()
    server.engine.stop()
    assert time.perf_counter() - started < 0.2
    assert disconnects == [{"type": "websocket.disconnect", "code": 1001,
                            "reason": "server shutting down"}]
    assert ws_client.next_event().code == 1001
    assert http_client.closed_by_server(timeout=1)
    http_client.sock.close()
    ws_client.close()


def test_stop_sends_http_disconnect_and_cancels_stubborn_apps(serve):
    got, cancelled = [], []

    async def app(scope, receive, send):
        if scope["type"] != "http":
            raise RuntimeError
        await read_body(receive)
        got.append(await receive())  # woken by stop()
        try:
            await asyncio.sleep(30)  # ignores it: stop() must cancel
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    server = serve(app)
    client = server.connect()
    client.send(get())
    assert wait_until(lambda: server.engine.ctx.tasks and len(server.engine.ctx.tasks) >= 2)
    started = time.perf_counter()
    server.engine.stop(timeout=0.4)
    assert time.perf_counter() - started < 1.0
    assert got == [{"type": "http.disconnect"}] and cancelled == [True]
    client.sock.close()


# ---------------------------------------------------------------------------------------
# A real framework


def test_a_starlette_app_with_routes_websocket_and_lifespan(serve):
    from contextlib import asynccontextmanager

    from starlette.applications import Starlette
    from starlette.responses import JSONResponse, PlainTextResponse, StreamingResponse
    from starlette.routing import Route, WebSocketRoute

    lifecycle = []

    @asynccontextmanager
    async def lifespan(app):
        lifecycle.append("startup")
        yield {"greeting": "hi"}
        lifecycle.append("shutdown")

    async def home(request):
        return PlainTextResponse(f"{request.state.greeting} {request.query_params['name']}")

    async def echo(request):
        return JSONResponse({"got": await request.json()})

    async def stream(request):
        async def parts():
            for i in range(3):
                yield f"part {i};"
        return StreamingResponse(parts(), media_type="text/plain")

    async def ws_echo(websocket):
        await websocket.accept()
        text = await websocket.receive_text()
        await websocket.send_text(text.upper())
        await websocket.close(code=4000)

    app = Starlette(routes=[Route("/", home), Route("/echo", echo, methods=["POST"]),
                            Route("/stream", stream), WebSocketRoute("/ws", ws_echo)],
                    lifespan=lifespan)
    server = serve(app)
    assert lifecycle == ["startup"]
    with server.connect() as client:
        client.send(get("/?name=ada"))
        assert client.response()[2] == b"hi ada"
        payload = json.dumps({"a": 1}).encode()
        client.send(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                    b"Content-Length: %d\r\n\r\n%s" % (len(payload), payload))
        assert json.loads(client.response()[2]) == {"got": {"a": 1}}
        client.send(get("/stream"))
        assert client.response()[2] == b"part 0;part 1;part 2;"
        client.send(get("/missing"))
        assert client.response()[0] == 404
    ws = WSClient(server.port, "/ws")
    ws.send(TextMessage(data="shout"))
    assert ws.message() == "SHOUT"
    assert ws.next_event().code == 4000
    ws.close()
    missing = WSClient(server.port, "/nope")
    assert missing.handshake.status_code == 403
    missing.close()
    server.engine.stop()
    assert lifecycle == ["startup", "shutdown"]


def test_a_body_shorter_than_the_apps_content_length_is_a_500_not_a_silent_close(serve):
    async def short(scope, receive, send):
        if scope["type"] != "http":
            raise RuntimeError("no lifespan here")
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", b"1200")]})
        await send({"type": "http.response.body", "body": b"only a little"})

    server = serve(short)
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as client:
        client.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        reply = b""
        while chunk := client.recv(65536):
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 500 ")  # nothing had gone out yet
    assert not any(e.status == 200 for e in server.log.requests)


def test_closing_on_a_client_that_stopped_reading_does_not_wait_for_the_write_timeout(serve):
    closed_after = []

    async def app(scope, receive, send):
        if scope["type"] != "websocket":
            raise RuntimeError
        await receive()
        await send({"type": "websocket.accept"})

        async def flood():
            while True:  # the client never reads: this soon blocks in drain
                await send({"type": "websocket.send", "bytes": b"x" * 65536})

        flooding = asyncio.ensure_future(flood())
        await asyncio.sleep(0.5)
        started = time.perf_counter()
        await send({"type": "websocket.close", "code": 1008, "reason": "too slow"})
        closed_after.append(time.perf_counter() - started)
        flooding.cancel()

    server = serve(app)
    client = WSClient(server.port)
    assert isinstance(client.handshake, AcceptConnection)
    deadline = time.monotonic() + 10
    while not closed_after and time.monotonic() < deadline:
        time.sleep(0.05)
    client.close()
    assert closed_after and closed_after[0] < 5, closed_after  # CLOSE_TIMEOUT, not 30 s
