"""Chapter 13's ASGIServer, probed with raw bytes through barelab.serve(app, server=...).

Every probe opens real sockets. Where the course server and barelab's own h11-based
ASGIEngine must behave alike, the test runs against both (the ``either`` fixture), which shows
they agree; the rest is about the course server alone. No probe waits on a fixed sleep for
its verdict: each waits for an event (bytes, a close, a log line), with a timeout.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time

import pytest

from rawclient import RawClient

import barelab
from barelab.built.asgi_server import ASGIServer, ClientDisconnected, Connection, one_length
from barelab.engines.asgi import ASGIEngine
from barelab.errors import LifespanStartupFailed

GET = b"GET / HTTP/1.1\r\nHost: t\r\n\r\n"


# ---------------------------------------------------------------------------------------
# Harness


Client = RawClient  # tests/rawclient.py


class Served:
    def __init__(self, server):
        self.server = server
        self.host, self.port = server.host, server.port

    @property
    def log(self):
        return self.server.log

    def connect(self, timeout: float = 3.0) -> Client:
        return Client(self.server, timeout)

    def get(self, data: bytes = GET, method: str = "GET"):
        with self.connect() as client:
            client.send(data)
            return client.response(method)

    def works(self) -> bool:
        """After any probe, a fresh good request still gets its answer."""
        status, _, body = self.get(b"GET /after HTTP/1.1\r\nHost: t\r\n\r\n")
        return status == 200


_names = iter(range(10**6))


@pytest.fixture
def serve():
    servers = []

    def start(app, engine=ASGIServer, **options):
        server = barelab.serve(app, name=f"asgi-conformance-{next(_names)}", server=engine,
                               **options)
        servers.append(server)
        return Served(server)

    yield start
    for server in servers:
        server.stop()


@pytest.fixture(params=[ASGIServer, ASGIEngine], ids=["course", "barelab"])
def either(request, serve):
    return lambda app, **options: serve(app, engine=request.param, **options)


def wait_for(condition, timeout: float = 3.0):
    deadline = time.monotonic() + timeout
    while not (result := condition()) and time.monotonic() < deadline:
        time.sleep(0.005)
    return result


async def read_body(receive) -> tuple[bytes, int]:
    body, events = b"", 0
    while True:
        message = await receive()
        assert message["type"] == "http.request", message
        body += message.get("body", b"")
        events += 1
        if not message.get("more_body", False):
            return body, events


async def respond(send, status=200, body=b"", headers=None):
    if headers is None:
        headers = [(b"content-type", b"text/plain")]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def hello(scope, receive, send):
    if scope["type"] != "http":
        raise RuntimeError("this app has no lifespan")
    await read_body(receive)
    await respond(send, body=b"hello")


async def echo(scope, receive, send):
    if scope["type"] != "http":
        raise RuntimeError("this app has no lifespan")
    body, events = await read_body(receive)
    await respond(send, body=body, headers=[(b"x-events", b"%d" % events)])


# ---------------------------------------------------------------------------------------
# Keep-alive, HTTP/1.0, pipelining


def test_keep_alive_serves_several_requests_on_one_connection(either):
    served = either(hello)
    with served.connect() as client:
        for _ in range(3):
            client.send(GET)
            status, headers, body = client.response()
            assert (status, body) == (200, b"hello") and "connection" not in headers
    assert served.works()


def test_keep_alive_then_connection_close(either):
    served = either(hello)
    with served.connect() as client:
        client.send(GET)
        assert client.response()[2] == b"hello"
        client.send(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        status, headers, body = client.response()
        assert (status, body) == (200, b"hello")
        assert headers.get("connection") == "close"
        assert client.closed_by_server()


def test_http_10_closes_by_default(either):
    served = either(hello)
    with served.connect() as client:
        client.send(b"GET / HTTP/1.0\r\n\r\n")
        assert client.response()[2] == b"hello"
        assert client.closed_by_server()


def test_http_10_keep_alive_is_honoured(serve):
    # barelab's engine (h11) closes HTTP/1.0 connections always, which RFC 9112 allows;
    # the course server keeps one open when the client asks for it.
    served = serve(hello)
    with served.connect() as client:
        client.send(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        status, headers, body = client.response()
        assert body == b"hello" and headers["connection"].lower() == "keep-alive"
        client.send(b"GET / HTTP/1.0\r\n\r\n")
        assert client.response()[2] == b"hello"
        assert client.closed_by_server()


def test_pipelined_requests_are_answered_in_order(either):
    async def path_app(scope, receive, send):
        if scope["type"] != "http":
            raise RuntimeError("no lifespan")
        await read_body(receive)
        await respond(send, body=scope["path"].encode())

    served = either(path_app)
    with served.connect() as client:
        client.send(b"".join(b"GET /%d HTTP/1.1\r\nHost: t\r\n\r\n" % i for i in range(5))
                    + b"POST /p HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc"
                    + b"GET /last HTTP/1.1\r\nHost: t\r\n\r\n")
        bodies = [client.response()[2] for _ in range(7)]
    assert bodies == [b"/0", b"/1", b"/2", b"/3", b"/4", b"/p", b"/last"]


def test_fifty_concurrent_clients(either):
    served = either(echo)
    results = [None] * 50

    def one(i):
        body = b"client %d" % i
        with served.connect(timeout=10) as client:
            client.send(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n%s"
                        % (len(body), body))
            results[i] = client.response()[2]

    threads = [threading.Thread(target=one, args=(i,)) for i in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(15)
    assert results == [b"client %d" % i for i in range(50)]


# ---------------------------------------------------------------------------------------
# Request bodies


def test_chunked_request_body_arrives_as_several_events(serve):
    seen = []

    async def app(scope, receive, send):
        if scope["type"] != "http":
            raise RuntimeError("no lifespan")
        while True:
            message = await receive()
            seen.append((message["body"], message["more_body"]))
            if not message["more_body"]:
                break
        await respond(send, body=b"ok")

    served = serve(app)
    with served.connect() as client:
        client.send(b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                    b"3\r\nabc\r\n")
        assert wait_for(lambda: seen)
        client.send(b"4;ext=1\r\ndefg\r\n")
        assert wait_for(lambda: len(seen) >= 2)
        client.send(b"0\r\nX-Trailer: 1\r\n\r\n")
        assert client.response()[2] == b"ok"
    assert b"".join(b for b, _ in seen) == b"abcdefg"
    assert seen[0] == (b"abc", True) and seen[-1][1] is False and len(seen) >= 3


def test_content_length_body_is_read_as_the_app_asks(serve):
    seen = []
    release = threading.Event()

    async def app(scope, receive, send):
        if scope["type"] != "http":
            raise RuntimeError("no lifespan")
        first = await receive()
        seen.append(len(first["body"]))
        await asyncio.get_running_loop().run_in_executor(None, release.wait, 5)
        rest, _ = await read_body(receive)
        await respond(send, body=b"%d" % (len(first["body"]) + len(rest)))

    served = serve(app)
    with served.connect() as client:
        client.send(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 100000\r\n\r\n" + b"x" * 10)
        assert wait_for(lambda: seen)
        client.send(b"y" * 99990)
        release.set()
        assert client.response()[2] == b"100000"
    assert seen == [10]


@pytest.mark.parametrize("body_request", [
    b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello",
    b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhe\r\n3\r\nllo\r\n0\r\n\r\n",
], ids=["content-length", "chunked"])
def test_request_body_is_delivered_whole(either, body_request):
    served = either(echo)
    assert served.get(body_request)[2] == b"hello"


def test_expect_100_continue(either):
    served = either(echo)
    with served.connect() as client:
        client.send(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n"
                    b"Expect: 100-continue\r\n\r\n")
        assert client.until(b"\r\n\r\n").startswith(b"HTTP/1.1 100 ")
        client.send(b"hello")
        assert client.response()[2] == b"hello"


def test_expect_100_continue_not_sent_when_app_answers_without_reading(serve):
    async def app(scope, receive, send):
        if scope["type"] != "http":
            raise RuntimeError("no lifespan")
        await respond(send, status=413, body=b"too big for me")

    served = serve(app)
    with served.connect() as client:
        client.send(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n"
                    b"Expect: 100-continue\r\n\r\n")
        status, headers, body = client.response()
        assert status == 413 and headers.get("connection") == "close"
        assert b"100 Continue" not in body
        assert client.closed_by_server()


def test_unread_small_body_is_skipped_and_connection_reused(serve):
    async def app(scope, receive, send):
        if scope["type"] != "http":
            raise RuntimeError("no lifespan")
        await respond(send, body=b"ignored your body")

    served = serve(app)
    with served.connect() as client:
        client.send(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello" + GET)
        assert client.response()[2] == b"ignored your body"
        assert client.response()[2] == b"ignored your body"


# ---------------------------------------------------------------------------------------
# Response framing


async def streamer(scope, receive, send):
    if scope["type"] != "http":
        raise RuntimeError("no lifespan")
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain")]})
    for part in (b"one ", b"two ", b"three"):
        await send({"type": "http.response.body", "body": part, "more_body": True})
    await send({"type": "http.response.body", "body": b""})


def test_streamed_response_without_length_is_chunked(either):
    served = either(streamer)
    status, headers, body = served.get()
    assert headers["transfer-encoding"] == "chunked" and body == b"one two three"
    assert served.works()


def test_streamed_response_to_http_10_is_close_delimited(either):
    served = either(streamer)
    with served.connect() as client:
        client.send(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        status, headers, body = client.response()
    assert "transfer-encoding" not in headers and "content-length" not in headers
    assert body == b"one two three"


def test_single_body_message_gets_content_length(either):
    served = either(hello)
    status, headers, body = served.get()
    assert headers["content-length"] == "5" and "transfer-encoding" not in headers
    assert "date" in headers


def test_app_content_length_is_kept_across_several_messages(either):
    async def app(scope, receive, send):
        if scope["type"] != "http":
            raise RuntimeError("no lifespan")
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", b"6")]})
        await send({"type": "http.response.body", "body": b"abc", "more_body": True})
        await send({"type": "http.response.body", "body": b"def"})

    served = either(app)
    with served.connect() as client:
        for _ in range(2):
            client.send(GET)
            status, headers, body = client.response()
            assert body == b"abcdef" and "transfer-encoding" not in headers


def test_app_transfer_encoding_chunked_is_not_doubled(either):
    async def app(scope, receive, send):
        if scope["type"] != "http":
            raise RuntimeError("no lifespan")
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"transfer-encoding", b"chunked")]})
        await send({"type": "http.response.body", "body": b"abc", "more_body": True})
        await send({"type": "http.response.body", "body": b"def"})

    served = either(app)
    with served.connect() as client:
        client.send(GET)
        status, headers, body = client.response()
        assert body == b"abcdef"
        client.send(GET)
        assert client.response()[2] == b"abcdef"


def test_body_longer_than_app_content_length_closes_the_connection(serve):
    async def app(scope, receive, send):
        if scope["type"] != "http":
            raise RuntimeError("no lifespan")
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", b"3")]})
        await send({"type": "http.response.body", "body": b"abc", "more_body": True})
        await send({"type": "http.response.body", "body": b"too much"})

    served = serve(app)
    with served.connect() as client:
        client.send(GET + GET)
        assert client.response()[2] == b"abc"
        assert client.closed_by_server()
    assert wait_for(lambda: served.log.errors)
    assert served.works()


def test_head_gets_headers_but_no_body(either):
    served = either(hello)
    with served.connect() as client:
        client.send(b"HEAD / HTTP/1.1\r\nHost: t\r\n\r\n")
        status, headers, _ = client.response("HEAD")
        assert status == 200 and headers["content-length"] == "5"
        client.send(GET)                    # had a body leaked, this would be garbage
        assert client.response()[2] == b"hello"


@pytest.mark.parametrize("status", [204, 304])
def test_204_and_304_carry_no_body(either, status):
    async def app(scope, receive, send):
        if scope["type"] != "http":
            raise RuntimeError("no lifespan")
        await respond(send, status=status, body=b"should not be sent")

    served = either(app)
    with served.connect() as client:
        client.send(GET + GET)
        for _ in range(2):
            got, headers, _ = client.response()
            assert got == status and "transfer-encoding" not in headers
            if status == 204:
                assert "content-length" not in headers
        client.sock.settimeout(0.2)
        with pytest.raises(TimeoutError):
            client._more()                  # nothing else came: the body was not sent


def test_streaming_arrives_before_the_app_finishes(either):
    release = threading.Event()

    async def app(scope, receive, send):
        if scope["type"] != "http":
            raise RuntimeError("no lifespan")
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"first", "more_body": True})
        await asyncio.get_running_loop().run_in_executor(None, release.wait, 5)
        await send({"type": "http.response.body", "body": b"second"})

    served = either(app)
    with served.connect() as client:
        client.send(GET)
        client.head()
        assert client.until(b"first\r\n").endswith(b"\r\n")     # chunk of "first" arrived
        release.set()
        assert b"second" in client.until(b"0\r\n\r\n")


# ---------------------------------------------------------------------------------------
# Errors


async def raises_before_start(scope, receive, send):
    if scope["type"] != "http":
        raise RuntimeError("no lifespan")
    raise ValueError("boom")


def test_exception_before_start_is_a_500_and_server_keeps_serving(either):
    served = either(raises_before_start)
    status, headers, body = served.get()
    assert status == 500 and b"boom" not in body and b"Traceback" not in body
    assert wait_for(lambda: served.log.errors)


def test_exception_after_body_started_closes_without_a_second_response(either):
    async def app(scope, receive, send):
        if scope["type"] != "http":
            raise RuntimeError("no lifespan")
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"partial", "more_body": True})
        raise ValueError("boom")

    served = either(app)
    with served.connect() as client:
        client.send(GET)
        status, headers = client.head()
        assert status == 200
        rest = client.read_all()
        assert b"partial" in rest and b"500" not in rest and not rest.endswith(b"0\r\n\r\n")


def test_returning_without_a_response_is_a_500(either):
    async def app(scope, receive, send):
        if scope["type"] != "http":
            raise RuntimeError("no lifespan")

    served = either(app)
    assert served.get()[0] == 500
    assert wait_for(lambda: any("without" in e.message for e in served.log.errors))


@pytest.mark.parametrize("messages, words", [
    ([{"type": "http.response.body", "body": b"x"}], "before 'http.response.start'"),
    ([{"type": "http.response.start", "status": 200, "headers": []}] * 2, "once"),
    ([{"type": "http.response.start", "status": 200, "headers": []},
      {"type": "http.response.body", "body": b"x"},
      {"type": "http.response.body", "body": b"y"}], "after the response"),
    ([{"type": "websocket.accept"}], "websocket.accept"),
    ([{"type": "http.response.start", "status": "200", "headers": []}], "status"),
    ([{"type": "http.response.start", "status": 200, "headers": [("a", "b")]}], "byte"),
], ids=["body-first", "start-twice", "body-after-end", "wrong-type", "str-status", "str-header"])
def test_message_order_and_shape_errors_quote_the_spec(serve, messages, words):
    errors = []

    async def app(scope, receive, send):
        if scope["type"] != "http":
            raise RuntimeError("no lifespan")
        if scope["path"] == "/after":
            return await respond(send, body=b"fine")
        try:
            for message in messages:
                await send(message)
        except (RuntimeError, TypeError, ValueError) as exc:
            errors.append(str(exc))
            raise

    served = serve(app)
    served.get()
    assert wait_for(lambda: errors), "the app's send() raised nothing"
    assert "ASGI" in errors[0] and words in errors[0], errors
    assert served.works()


def test_client_loss_gives_http_disconnect(either):
    seen = []

    async def app(scope, receive, send):
        if scope["type"] != "http":
            raise RuntimeError("no lifespan")
        seen.append(await receive())
        seen.append(await receive())        # blocks until the client goes away

    served = either(app)
    with served.connect() as client:
        client.send(GET)
        assert wait_for(lambda: seen)
    assert wait_for(lambda: len(seen) == 2)
    assert seen[1] == {"type": "http.disconnect"}


def test_receive_after_response_complete_is_disconnect(either):
    seen = []

    async def app(scope, receive, send):
        if scope["type"] != "http":
            raise RuntimeError("no lifespan")
        await read_body(receive)
        await respond(send, body=b"done")
        seen.append(await asyncio.wait_for(receive(), 2))

    served = either(app)
    assert served.get()[2] == b"done"
    assert wait_for(lambda: seen) and seen[0]["type"] == "http.disconnect"


def test_send_after_disconnect_raises_oserror(serve):
    outcome = []

    async def app(scope, receive, send):
        if scope["type"] != "http":
            raise RuntimeError("no lifespan")
        await read_body(receive)
        assert (await receive())["type"] == "http.disconnect"
        try:
            await respond(send, body=b"too late")
        except OSError as exc:
            outcome.append(exc)
            raise

    served = serve(app)
    with served.connect() as client:
        client.send(GET)
        time.sleep(0.05)
    assert wait_for(lambda: outcome)
    assert isinstance(outcome[0], ClientDisconnected) and isinstance(outcome[0], OSError)
    assert not served.log.errors, "a client that leaves is not an app error"


# ---------------------------------------------------------------------------------------
# Malformed requests: a 4xx or 5xx, the connection closed, the server still serving


@pytest.mark.parametrize("data, status", [
    (b"GET / HTTP/1.1\r\nHost: t\r\nContent-Length: abc\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: t\r\nContent-Length: -1\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: t\r\nContent-Length: 1, 2\r\n\r\nab", 400),
    (b"GET / HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", 400),
    (b"GET / HTTP/1.1\r\nHost: t\r\nContent-Length: +5\r\n\r\nhello", 400),
    (b"GET / HTTP/1.1\r\nHost: t\r\nContent-Length: 0x5\r\n\r\nhello", 400),
    (b"GET / HTTP/1.1\r\nHost: t\r\nX-Folded: a\r\n b\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost : t\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
     b"0\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 501),
    (b"GET / HTTP/2.0\r\nHost: t\r\n\r\n", 505),
    (b"GET / HTTP/1.1\nHost: t\n\n", 400),
    (b"GET  / HTTP/1.1\r\nHost: t\r\n\r\n", 400),
    (b"G(T / HTTP/1.1\r\nHost: t\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: t\r\nX-Bad: a\x00b\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: t\r\nContent-Length: 99999999999\r\n\r\n", 413),
    (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: t\r\n\r\n", 414),
    (b"GET / HTTP/1.1\r\nHost: t\r\n" + b"X-Big: " + b"a" * 20000 + b"\r\n\r\n", 431),
    (b"GET / HTTP/1.1\r\nHost: t\r\nExpect: tea\r\n\r\n", 417),
], ids=["cl-letters", "cl-negative", "cl-list", "cl-twice", "cl-plus", "cl-hex", "obs-fold",
        "space-before-colon", "no-host", "two-hosts", "cl-and-te", "te-not-chunked",
        "te-unknown", "http2", "bare-lf", "double-space", "bad-method", "nul-in-value",
        "huge-body", "long-target", "huge-header", "unknown-expect"])
def test_malformed_request_is_refused_and_server_keeps_serving(serve, data, status):
    served = serve(echo)
    with served.connect() as client:
        client.send(data)
        got, headers, _ = client.response()
        assert got == status
        assert headers.get("connection") == "close"
        assert client.closed_by_server()
    assert served.works()


@pytest.mark.parametrize("data, status", [
    (b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400),
    (b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX\r\n", 400),
    (b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
     b"fffffff\r\n", 413),
], ids=["bad-size", "no-crlf-after-data", "chunk-too-big"])
def test_malformed_chunked_body_is_refused(serve, data, status):
    served = serve(echo)
    with served.connect() as client:
        client.send(data)
        assert client.response()[0] == status
        assert client.closed_by_server()
    assert served.works()


def test_body_over_the_limit_is_413(serve):
    served = serve(echo, max_body_bytes=1000)
    status, _, _ = served.get(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 1001\r\n\r\n"
                              + b"x" * 1001)
    assert status == 413
    assert served.works()


def test_websocket_upgrade_is_answered_as_plain_http(serve):
    served = serve(hello)
    status, headers, body = served.get(
        b"GET /chat HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
        b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
    assert status == 200 and body == b"hello" and "upgrade" not in headers


# ---------------------------------------------------------------------------------------
# Scope


def test_scope_fields(serve):
    scopes = []

    async def app(scope, receive, send):
        if scope["type"] != "http":
            raise RuntimeError("no lifespan")
        scopes.append(scope)
        await respond(send, body=b"ok")

    served = serve(app)
    served.get(b"GET /caf%C3%A9/a%2Fb?x=1&y=%20 HTTP/1.1\r\nHost: t\r\nX-A: 1\r\nx-a: 2\r\n\r\n")
    served.get(b"GET http://example.org/abs?q HTTP/1.1\r\nHost: t\r\n\r\n")
    scope = scopes[0]
    assert scope["asgi"]["version"] == "3.0" and scope["http_version"] == "1.1"
    assert scope["path"] == "/café/a/b" and scope["raw_path"] == b"/caf%C3%A9/a%2Fb"
    assert scope["query_string"] == b"x=1&y=%20" and scope["method"] == "GET"
    assert scope["headers"] == [(b"host", b"t"), (b"x-a", b"1"), (b"x-a", b"2")]
    assert scope["client"][0] == "127.0.0.1" and scope["server"][1] == served.port
    assert scopes[1]["path"] == "/abs" and scopes[1]["query_string"] == b"q"


# ---------------------------------------------------------------------------------------
# Lifespan


def make_lifespan_app(events, *, fail=None, state_value="db"):
    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            message = await receive()
            events.append(message["type"])
            if fail is not None:
                await send({"type": "lifespan.startup.failed", "message": fail})
                return
            scope["state"]["db"] = state_value
            scope["state"]["hits"] = []
            await send({"type": "lifespan.startup.complete"})
            message = await receive()
            events.append(message["type"])
            await send({"type": "lifespan.shutdown.complete"})
            return
        scope["state"]["hits"].append(1)        # shared object: visible to every request
        scope["state"]["mine"] = True           # copy: not visible to the next request
        await respond(send, body=f"{scope['state']['db']} {len(scope['state'])}".encode())
    return app


def test_lifespan_startup_state_and_shutdown(either):
    events = []
    served = either(make_lifespan_app(events))
    assert events == ["lifespan.startup"]
    assert served.get()[2] == b"db 3"
    assert served.get()[2] == b"db 3", "scope['state'] is a copy per request"
    served.server.stop()
    assert events == ["lifespan.startup", "lifespan.shutdown"]


def test_lifespan_startup_failed_raises_with_the_message(serve):
    events = []
    with pytest.raises(LifespanStartupFailed, match="no database"):
        serve(make_lifespan_app(events, fail="no database"))
    assert events == ["lifespan.startup"]


def test_app_without_lifespan_starts_at_once(serve):
    started = time.perf_counter()
    served = serve(hello)
    assert time.perf_counter() - started < 1.0
    assert served.get()[2] == b"hello"


def test_lifespan_off_never_calls_the_app_with_lifespan(serve):
    calls = []

    async def app(scope, receive, send):
        calls.append(scope["type"])
        if scope["type"] == "http":
            await respond(send, body=b"ok")

    served = serve(app, lifespan="off")
    served.get()
    assert calls == ["http"]


# ---------------------------------------------------------------------------------------
# Stopping


def course_threads():
    return [t for t in threading.enumerate() if t.name.startswith("course-asgi")]


def test_stop_is_prompt_with_idle_keep_alive_connections_and_leaks_no_thread(serve):
    before = set(threading.enumerate())
    served = serve(hello)
    clients = [served.connect() for _ in range(5)]
    for client in clients:
        client.send(GET)
        assert client.response()[2] == b"hello"
    started = time.perf_counter()
    served.server.stop()
    assert time.perf_counter() - started < 0.5
    for client in clients:
        assert client.closed_by_server(1.0)
        client.sock.close()
    assert wait_for(lambda: not (set(threading.enumerate()) - before))
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((served.host, served.port), timeout=1).close()


def test_stop_tells_a_waiting_app_the_client_is_gone(serve):
    seen = []

    async def app(scope, receive, send):
        if scope["type"] != "http":
            raise RuntimeError("no lifespan")
        seen.append(await receive())
        seen.append(await receive())          # the server is stopping: http.disconnect

    served = serve(app)
    with served.connect() as client:
        client.send(GET)
        assert wait_for(lambda: seen)
        started = time.perf_counter()
        served.server.stop()
        assert time.perf_counter() - started < 1.5
    assert seen[-1] == {"type": "http.disconnect"}


def test_rerunning_serve_replaces_the_server_on_the_same_port():
    first = barelab.serve(hello, name="asgi-conformance-rerun", server=ASGIServer)
    try:
        second = barelab.serve(hello, name="asgi-conformance-rerun", server=ASGIServer)
        assert second.port == first.port and not first.running
        assert barelab.http_request(second).body == b"hello"
    finally:
        barelab.serve(hello, name="asgi-conformance-rerun", server=ASGIServer).stop()


def test_log_is_complete_when_asked(serve):
    served = serve(hello)
    for i in range(5):
        barelab.http_request(served.server, path=f"/{i}")
        assert len(served.log.requests) == i + 1
    assert '"GET /4 HTTP/1.1" 200' in served.log.requests[-1].message


def test_connection_class_is_the_hook_for_each_accepted_connection(serve):
    made = []

    class CountingConnection(Connection):
        def __init__(self, server, reader, writer):
            super().__init__(server, reader, writer)
            made.append(self)

    class CountingServer(ASGIServer):
        connection_class = CountingConnection

    assert ASGIServer.connection_class is Connection
    served = serve(hello, engine=CountingServer)
    assert barelab.http_request(served.server).body == b"hello"
    assert len(made) == 1 and isinstance(made[0].server, CountingServer)


def test_a_content_length_list_reaches_the_app_as_one_number():
    """RFC 9110 §8.6 lets the server take `2, 2` as 2; the app must then see 2 as well."""
    headers = [(b"host", b"x"), (b"content-length", b"2, 2"), (b"x-a", b"1"),
               (b"content-length", b"2")]
    assert one_length(headers, 2) == [(b"host", b"x"), (b"content-length", b"2"), (b"x-a", b"1")]

    seen = []

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        seen.append([v for n, v in scope["headers"] if n == b"content-length"])
        body = (await receive())["body"]
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", b"%d" % len(body))]})
        await send({"type": "http.response.body", "body": body})

    with barelab.serve(app, name="cl-list", server=ASGIServer) as server:
        with socket.create_connection((server.host, server.port), timeout=5) as sock:
            sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2, 2\r\n"
                         b"Connection: close\r\n\r\nab")
            answer = b""
            while chunk := sock.recv(4096):
                answer += chunk
    assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b"\r\n\r\nab")
    assert seen == [[b"2"]]
