"""Tests of barelab.built.asgi_middleware, the middleware of chapter 16.

Every stack that sends an HTTP response runs with ``SpecCheck`` at each boundary
(``compose(..., between=SpecCheck)``), so each test also checks that the layer keeps the ASGI
HTTP message rules towards its server. Apps run in-process with ``barelab.call_asgi`` and over
a socket with ``barelab.serve`` (barelab's engine and the course server of chapter 13). gzip
output is checked by decompressing it, incrementally where streaming is the point.
"""

from __future__ import annotations

import asyncio
import gzip
import socket
import time
import zlib
from functools import partial

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import barelab
from barelab.built.asgi_middleware import (
    AccessLog, AddHeaders, BodyLimit, BodyTooLarge, GZip, RequestID, ServerTiming, SpecCheck,
    TokenAuth, accepts_gzip, add_vary, compose, could_compress, deny_websocket, header_value,
    is_compressible, parse_accept_encoding, tokens_in, with_state, without)
from barelab.built.asgi_server import ASGIServer
from barelab.built.asgi_types import ASGIMessageError

TEXT = b"<p>" + b"All work and no play makes Jack a dull boy. " * 40 + b"</p>\n"
GZIP = {"accept-encoding": "gzip"}


# -- apps ------------------------------------------------------------------------------------

def respond(status=200, headers=((b"content-type", b"text/html; charset=utf-8"),),
            chunks=(TEXT,), delay=0.0):
    """An app that answers with these headers and body chunks (``delay`` s between them)."""
    async def app(scope, receive, send):
        if scope["type"] != "http":
            return await lifespan_app(scope, receive, send)
        await send({"type": "http.response.start", "status": status, "headers": list(headers)})
        for i, chunk in enumerate(chunks):
            if i and delay:
                await asyncio.sleep(delay)
            await send({"type": "http.response.body", "body": chunk,
                        "more_body": i < len(chunks) - 1})
        if not chunks:
            await send({"type": "http.response.body", "body": b""})
    return app


async def lifespan_app(scope, receive, send):
    """Answers lifespan, echoes scope state for http, accepts and reports for websocket."""
    if scope["type"] == "lifespan":
        await receive()
        scope["state"]["started"] = True
        await send({"type": "lifespan.startup.complete"})
        await receive()
        await send({"type": "lifespan.shutdown.complete"})
    elif scope["type"] == "websocket":
        await receive()
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.send", "text": f"state={sorted(scope.get('state', {}))}"})
        await send({"type": "websocket.close", "code": 1000})
    else:
        body = repr(sorted(scope.get("state", {}).items())).encode()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": body})


async def upload(scope, receive, send):
    if scope["type"] != "http":
        return await lifespan_app(scope, receive, send)
    size, more = 0, True
    while more:
        message = await receive()
        size, more = size + len(message.get("body", b"")), message.get("more_body", False)
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": f"stored {size}".encode()})


def checked(app, *layers):
    return compose(app, *layers, between=SpecCheck)


ALL_LAYERS = [AccessLog, RequestID, ServerTiming, GZip, partial(AddHeaders, headers={"a": "b"}),
              partial(TokenAuth, tokens={"t": "u"}), partial(BodyLimit, max_bytes=10)]


@pytest.fixture
def serve():
    started = []

    def _serve(app, **kwargs):
        server = barelab.serve(app, name=f"t16-{len(started)}", **kwargs)
        started.append(server)
        return server

    yield _serve
    for server in started:
        server.stop()


# -- helpers ---------------------------------------------------------------------------------

def test_header_helpers():
    headers = [(b"Vary", b"Origin"), (b"vary", b"Cookie"), (b"content-type", b"text/plain")]
    assert header_value(headers, b"vary") == b"Origin, Cookie"
    assert header_value(headers, b"etag") is None
    assert without(headers, b"VARY") == [(b"content-type", b"text/plain")]
    assert len(headers) == 3


@pytest.mark.parametrize("headers, expected", [
    ([], b"accept-encoding"),
    ([(b"vary", b"Origin")], b"Origin, accept-encoding"),
    ([(b"vary", b"Accept-Encoding")], b"Accept-Encoding"),
    ([(b"vary", b"*")], b"*"),
    ([(b"vary", b"Origin"), (b"Vary", b"Cookie")], b"Origin, Cookie, accept-encoding"),
])
def test_add_vary_merges_into_one_field(headers, expected):
    result = add_vary(headers, b"accept-encoding")
    assert header_value(result, b"vary") == expected
    assert sum(1 for name, _ in result if name.lower() == b"vary") == 1


def test_with_state_copies_scope_and_state():
    scope = {"type": "http", "state": {"db": 1}}
    inner = with_state(scope, request_id="x")
    assert inner["state"] == {"db": 1, "request_id": "x"}
    assert scope == {"type": "http", "state": {"db": 1}}
    assert with_state({"type": "http"}, a=1)["state"] == {"a": 1}


def test_spec_check_refuses_uppercase_header_names():
    app = respond(headers=[(b"Content-Type", b"text/plain")])
    call = barelab.call_asgi(SpecCheck(app), raise_errors=False)
    assert isinstance(call.exception, ASGIMessageError)


# -- every layer passes lifespan (and what it does not handle) through -----------------------

@pytest.mark.parametrize("layer", ALL_LAYERS + [SpecCheck], ids=lambda l: getattr(
    l, "__name__", getattr(getattr(l, "func", None), "__name__", "?")))
def test_every_layer_passes_lifespan_through(layer):
    call = barelab.call_lifespan(layer(lifespan_app))
    assert [m["type"] for m in call.sent] == ["lifespan.startup.complete",
                                              "lifespan.shutdown.complete"]
    assert call.scope["state"] == {"started": True}, "the lifespan state dict must be the same"


def test_whole_stack_passes_lifespan_through_on_a_server(serve):
    server = serve(checked(lifespan_app, *ALL_LAYERS[:-2]))
    reply = barelab.http_request(server, "GET", "/")
    assert b"('started', True)" in reply.body
    assert any("startup complete" in e.message for e in server.log.entries)


# -- AddHeaders ------------------------------------------------------------------------------

def test_add_headers_adds_missing_and_keeps_apps_own():
    app = respond(headers=[(b"content-type", b"text/plain"), (b"x-frame-options", b"SAMEORIGIN")])
    stack = checked(app, partial(AddHeaders, headers={"X-Frame-Options": "DENY",
                                                      "X-Content-Type-Options": "nosniff"}))
    call = barelab.call_asgi(stack)
    assert call.header("x-frame-options") == "SAMEORIGIN"
    assert call.header("x-content-type-options") == "nosniff"


def test_add_headers_never_edits_the_apps_message():
    start = {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"x/y")]}

    async def constant(scope, receive, send):
        await send(start)
        await send({"type": "http.response.body", "body": b"hi"})

    stack = AddHeaders(constant, [(b"x-a", b"1")])
    for _ in range(3):
        assert barelab.call_asgi(stack).header("x-a") == "1"
    assert start["headers"] == [(b"content-type", b"x/y")]


# -- BodyLimit -------------------------------------------------------------------------------

def test_body_limit_refuses_by_declared_length_without_calling_the_app():
    called = []

    async def app(scope, receive, send):
        called.append(1)

    call = barelab.call_asgi(BodyLimit(app, max_bytes=10), "POST", body=b"x" * 11)
    assert call.status == 413 and not called
    assert call.header("connection") == "close"


def test_body_limit_stops_counting_mid_stream_before_the_app_sees_the_chunk():
    seen = []

    async def app(scope, receive, send):
        while True:
            message = await receive()
            seen.append(len(message["body"]))
            if not message.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    events = [{"type": "http.request", "body": b"x" * 4, "more_body": m} for m in (1, 1, 1, 0)]
    call = barelab.call_asgi(checked(app, partial(BodyLimit, max_bytes=10)), "POST",
                             receive_events=events)
    assert call.status == 413
    assert seen == [4, 4], "the chunk that passes the limit must never reach the app"


def test_body_limit_lets_an_app_that_catches_the_error_keep_failing():
    async def stubborn(scope, receive, send):
        for _ in range(2):
            try:
                await receive()
            except BodyTooLarge:
                pass
        await receive()  # still raising

    events = [{"type": "http.request", "body": b"x" * 20, "more_body": False}]
    call = barelab.call_asgi(BodyLimit(stubborn, max_bytes=10), "POST", receive_events=events)
    assert call.status == 413


def test_body_limit_after_response_started_re_raises():
    async def late_reader(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await receive()

    events = [{"type": "http.request", "body": b"x" * 20, "more_body": False}]
    call = barelab.call_asgi(BodyLimit(late_reader, max_bytes=10), "POST",
                             receive_events=events, raise_errors=False)
    assert isinstance(call.exception, BodyTooLarge)
    assert call.status == 200


def test_body_limit_ignores_a_malformed_content_length_and_counts():
    events = [{"type": "http.request", "body": b"x" * 5, "more_body": False}]
    call = barelab.call_asgi(BodyLimit(upload, max_bytes=10), "POST",
                             headers={"content-length": "abc"}, receive_events=events)
    assert call.body == b"stored 5"


@pytest.mark.parametrize("engine", [None, ASGIServer], ids=["barelab", "course"])
def test_body_limit_over_a_socket(serve, engine):
    server = serve(BodyLimit(upload, max_bytes=16), server=engine)
    chunked = (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"8\r\nchunk-01\r\n8\r\nchunk-02\r\n8\r\nchunk-03\r\n0\r\n\r\n")
    exchange = barelab.raw_exchange(server, chunked)
    assert exchange.status == 413
    assert barelab.http_request(server, "POST", "/", body=b"x" * 16).body == b"stored 16"
    assert barelab.http_request(server, "POST", "/", body=b"x" * 17).status == 413


# -- timing ----------------------------------------------------------------------------------

def test_server_timing_is_time_to_headers_and_access_log_time_to_last_byte():
    records = []
    app = respond(chunks=(b"a", b"b", b"c"), delay=0.1)
    call = barelab.call_asgi(checked(app, partial(AccessLog, records=records), ServerTiming))
    metric, _, duration = call.header("server-timing").partition(";dur=")
    assert metric == "app" and float(duration) < 50
    assert len(records) == 1
    record = records[0]
    assert record.duration >= 0.19 and record.status == 200 and record.bytes == 3


def test_server_timing_keeps_apps_metric_and_checks_its_name():
    app = respond(headers=[(b"server-timing", b"db;dur=4")])
    values = [v for n, v in barelab.call_asgi(ServerTiming(app)).headers if n == "server-timing"]
    assert values[0] == "db;dur=4" and values[1].startswith("app;dur=")
    with pytest.raises(ValueError):
        ServerTiming(app, metric="bad metric")


def test_access_log_records_errors_and_query_once():
    records = []

    async def broken(scope, receive, send):
        raise KeyError("boom")

    barelab.call_asgi(AccessLog(broken, records), path="/x?y=1", raise_errors=False)
    assert len(records) == 1
    assert records[0].path == "/x?y=1" and records[0].error == "KeyError"
    assert records[0].status is None


# -- RequestID -------------------------------------------------------------------------------

@pytest.mark.parametrize("sent, kept", [
    ("checkout-7f3a", True), ("x" * 128, True), ("x" * 129, False),
    ("a\r\nset-cookie: x=1", False), ("a b", False), ("", False),
])
def test_request_id_keeps_only_sane_incoming_ids(sent, kept):
    async def app(scope, receive, send):
        body = scope["state"]["request_id"].encode()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})

    call = barelab.call_asgi(checked(app, RequestID), headers={"x-request-id": sent} if sent else {})
    rid = call.header("x-request-id")
    assert call.text == rid
    assert (rid == sent) is kept
    if not kept:
        assert len(rid) == 32 and int(rid, 16) >= 0


def test_request_id_does_not_leak_into_the_outer_scope_and_replaces_apps_id():
    scope = barelab.build_scope("http")
    scope["state"] = {"db": "pool"}
    app = respond(headers=[(b"x-request-id", b"from-app")])
    sent = []

    async def send(message):
        sent.append(message)

    asyncio.run(RequestID(app)(scope, None, send))
    assert scope["state"] == {"db": "pool"}
    values = [v for n, v in sent[0]["headers"] if n == b"x-request-id"]
    assert len(values) == 1 and values[0] != b"from-app"


def test_request_id_on_websocket_accept():
    call = barelab.call_asgi(RequestID(lifespan_app), scope={"type": "websocket"},
                             headers={"x-request-id": "ws-1"})
    accept = call.sent[0]
    assert accept["type"] == "websocket.accept"
    assert (b"x-request-id", b"ws-1") in accept["headers"]


def test_access_log_outside_request_id_logs_the_id():
    records = []
    barelab.call_asgi(checked(respond(), partial(AccessLog, records=records), RequestID),
                      headers={"x-request-id": "abc"})
    assert records[0].request_id == "abc"


# -- TokenAuth -------------------------------------------------------------------------------

def test_tokens_in_reads_header_query_and_cookie():
    scope = barelab.build_scope("http", path="/?token=q1&token=&other=x",
                                headers={"authorization": "BEARER  h1 ",
                                         "cookie": "a=1; token=c1;junk"})
    assert tokens_in(scope) == ["h1", "q1", "c1"]
    assert tokens_in(barelab.build_scope("http", headers={"authorization": "Basic abc"})) == []


AUTH = partial(TokenAuth, tokens={"s3cret": "ada"})


@pytest.mark.parametrize("headers, path, status", [
    ({"authorization": "Bearer s3cret"}, "/", 200),
    ({"authorization": "bearer s3cret"}, "/", 200),
    ({}, "/?token=s3cret", 200),
    ({"cookie": "token=s3cret"}, "/", 200),
    ({}, "/", 401),
    ({"authorization": "Bearer wrong"}, "/", 401),
    ({"authorization": "Basic s3cret"}, "/", 401),
    ({}, "/?token=s3cre", 401),
])
def test_token_auth_http(headers, path, status):
    call = barelab.call_asgi(checked(lifespan_app, AUTH), path=path, headers=headers)
    assert call.status == status
    if status == 401:
        assert call.header("www-authenticate") == 'Bearer realm="api"'
    else:
        assert "('user', 'ada')" in call.text


def test_token_auth_websocket_without_extension_closes_before_accept():
    call = barelab.call_asgi(AUTH(lifespan_app), path="/ws", scope={"type": "websocket"})
    assert [m["type"] for m in call.sent] == ["websocket.close"]
    assert call.received[0]["type"] == "websocket.connect"


def test_token_auth_websocket_with_extension_sends_a_401():
    call = barelab.call_asgi(AUTH(lifespan_app), path="/ws", scope={
        "type": "websocket", "extensions": {"websocket.http.response": {}}})
    start, body = call.sent
    assert start["type"] == "websocket.http.response.start" and start["status"] == 401
    assert (b"www-authenticate", b'Bearer realm="api"') in start["headers"]
    assert body["type"] == "websocket.http.response.body" and b"401" in body["body"]


def test_token_auth_websocket_with_token_reaches_app_with_user():
    call = barelab.call_asgi(AUTH(lifespan_app), path="/ws?token=s3cret",
                             scope={"type": "websocket"})
    assert call.sent[0]["type"] == "websocket.accept"
    assert "user" in call.sent[1]["text"]


def test_deny_websocket_when_client_already_left():
    async def app(scope, receive, send):
        await deny_websocket(scope, receive, send, 403, "no")

    call = barelab.call_asgi(app, receive_events=[{"type": "websocket.disconnect", "code": 1001}])
    assert call.sent == []


def test_http_only_auth_trap_is_closed_over_a_socket(serve):
    server = serve(AUTH(lifespan_app))
    with pytest.raises(barelab.WebSocketRejected) as refused:
        barelab.websocket_connect(server, "/ws")
    assert refused.value.status == 401
    assert dict(refused.value.headers)["www-authenticate"] == 'Bearer realm="api"'
    with barelab.websocket_connect(server, "/ws?token=s3cret") as ws:
        assert "user" in ws.receive()
    with barelab.websocket_connect(server, "/ws", headers={"Authorization": "Bearer s3cret"}) as ws:
        assert "user" in ws.receive()


# -- Accept-Encoding -------------------------------------------------------------------------

@pytest.mark.parametrize("value, accepted", [
    (None, False), ("", False), ("gzip", True), ("GZIP", True), ("x-gzip", True),
    ("gzip;q=0", False), ("gzip; q=0.000", False), ("gzip;Q=0", False), ("gzip ; q = 0", False),
    ("gzip;q=0.001", True), ("gzip;q=1.000", True), ("gzip;q=1.0001", False),
    ("gzip;q=2", False), ("gzip;q=-1", False), ("gzip;q=abc", False), ("gzip;q=", False),
    ("*", True), ("*;q=0", False), ("br, *;q=0.5", True), ("br;q=0, *", True),
    ("*, gzip;q=0", False), ("gzip;q=0, *", False), ("gzip, gzip;q=0", False),
    ("x-gzip;q=0, gzip", False), ("identity", False), ("identity;q=0", False),
    ("deflate, br", False), (",, gzip ,", True), ("\tgzip\t", True), ("gzip;level=9", True),
    ("gzip;q=0.5;foo=bar", True), ("gzi p", False), ("gzip;q=0.5, gzip;q=0.8", True),
])
def test_accepts_gzip_table(value, accepted):
    assert accepts_gzip(value) is accepted


def test_parse_accept_encoding_keeps_lowest_weight_and_aliases():
    assert parse_accept_encoding("br;q=1, GZIP ;Q=0.5,, *;q=0, x-gzip;q=0.8") == {
        "br": 1.0, "gzip": 0.5, "*": 0.0}


HEADER_ALPHABET = st.sampled_from(
    ["gzip", "GZip", "x-gzip", "br", "*", "identity", "deflate", ";", ",", " ", "\t", "q", "Q",
     "=", "0", "1", ".", "5", "000", "é", "\x00", "\"", "ab"])
weights = st.sampled_from(["", ";q=1", ";q=0.5", ";Q=0.001", " ; q=1.0", ";q=0", ";q=junk"])
members = st.tuples(st.sampled_from(["gzip", "br", "*", "identity", "GZIP", "x-gzip", "zstd"]),
                    weights).map("".join)


@settings(max_examples=300, deadline=None)
@given(st.lists(HEADER_ALPHABET, max_size=30).map("".join))
def test_accept_encoding_parsing_never_raises(value):
    weights = parse_accept_encoding(value)
    assert all(0.0 <= w <= 1.0 for w in weights.values())
    assert isinstance(accepts_gzip(value), bool)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=40))
def test_accept_encoding_parsing_never_raises_on_any_text(value):
    assert isinstance(accepts_gzip(value), bool)


@settings(max_examples=300, deadline=None)
@given(st.lists(members, max_size=5), st.lists(members, max_size=5),
       st.sampled_from(["gzip;q=0", "GZIP; Q=0.000", "x-gzip;q=0", "gzip ;q=0.0"]))
def test_gzip_q0_is_always_respected(before, after, refusal):
    value = ", ".join([*before, refusal, *after])
    assert accepts_gzip(value) is False
    call = barelab.call_asgi(GZip(respond()), headers={"accept-encoding": value})
    assert call.header("content-encoding") is None and call.body == TEXT


@settings(max_examples=200, deadline=None)
@given(st.lists(members, max_size=6))
def test_star_refusal_without_gzip_listed_means_no(members_list):
    listed = [m for m in members_list if not m.lower().startswith(("gzip", "x-gzip", "*"))]
    assert accepts_gzip(", ".join([*listed, "*;q=0"])) is False


# -- GZip ------------------------------------------------------------------------------------

def test_is_compressible_and_could_compress():
    assert is_compressible(b"text/html; charset=utf-8")
    assert is_compressible(b"Application/JSON")
    assert is_compressible(b"application/problem+json")
    assert is_compressible(b"image/svg+xml")
    assert not is_compressible(b"image/png") and not is_compressible(None)
    assert not is_compressible(b"application/zip")
    html = [(b"content-type", b"text/html")]
    assert could_compress({"status": 200, "headers": html}, "GET")
    assert not could_compress({"status": 200, "headers": html}, "HEAD")
    for status in (204, 206, 304):
        assert not could_compress({"status": status, "headers": html}, "GET")
    assert not could_compress({"status": 200, "headers": html + [(b"content-encoding", b"br")]},
                              "GET")
    assert not could_compress({"status": 200, "headers": html + [
        (b"cache-control", b"public, No-Transform")]}, "GET")


def test_gzip_whole_body_gets_true_content_length_and_vary():
    app = respond(headers=[(b"content-type", b"text/html"), (b"content-length", b"1768"),
                           (b"etag", b'"v1"'), (b"accept-ranges", b"bytes")])
    call = barelab.call_asgi(checked(app, GZip), headers=GZIP)
    assert call.header("content-encoding") == "gzip"
    assert call.header("vary") == "accept-encoding"
    assert int(call.header("content-length")) == len(call.body)
    assert gzip.decompress(call.body) == TEXT
    assert call.header("etag") == 'W/"v1"' and call.header("accept-ranges") is None
    assert [n for n, _ in call.headers].count("content-length") == 1


def test_gzip_streaming_drops_content_length_and_each_chunk_decompresses_as_it_arrives():
    chunks = [f"line {n}\n".encode() * 10 for n in range(5)]
    app = respond(headers=[(b"content-type", b"text/plain"),
                           (b"content-length", str(sum(map(len, chunks))).encode())],
                  chunks=chunks)
    call = barelab.call_asgi(checked(app, GZip), headers=GZIP)
    assert call.header("content-length") is None
    bodies = [m for m in call.sent if m["type"] == "http.response.body"]
    assert len(bodies) == len(chunks)
    client = zlib.decompressobj(wbits=31)
    for sent, original in zip(bodies, chunks):
        assert client.decompress(sent["body"]) == original
    assert client.eof and client.unused_data == b""


def test_gzip_empty_chunks_in_a_stream():
    app = respond(headers=[(b"content-type", b"text/plain")], chunks=(b"a", b"", b"b", b""))
    call = barelab.call_asgi(checked(app, GZip), headers=GZIP)
    assert gzip.decompress(call.body) == b"ab"


@pytest.mark.parametrize("name, status, headers, body, method", [
    ("small", 200, [(b"content-type", b"text/html")], b"<p>hi</p>", "GET"),
    ("image", 200, [(b"content-type", b"image/png")], TEXT, "GET"),
    ("no type", 200, [], TEXT, "GET"),
    ("coded", 200, [(b"content-type", b"text/html"), (b"content-encoding", b"br")], TEXT, "GET"),
    ("no-transform", 200, [(b"content-type", b"text/html"),
                           (b"cache-control", b"no-transform")], TEXT, "GET"),
    ("204", 204, [], b"", "GET"), ("304", 304, [(b"content-type", b"text/html")], b"", "GET"),
    ("206", 206, [(b"content-type", b"text/html")], TEXT[:100], "GET"),
    ("HEAD", 200, [(b"content-type", b"text/html"), (b"content-length", b"1768")], b"", "HEAD"),
])
def test_gzip_skips(name, status, headers, body, method):
    app = respond(status=status, headers=headers, chunks=(body,))
    call = barelab.call_asgi(checked(app, GZip), method, headers=GZIP)
    assert call.header("content-encoding") == dict(
        (n.decode(), v.decode()) for n, v in headers).get("content-encoding")
    assert call.body == body
    assert call.header("vary") is None
    assert call.headers == [(n.decode(), v.decode()) for n, v in headers]


@pytest.mark.parametrize("value", [None, "", "gzip;q=0", "br", "identity", "*;q=0"])
def test_gzip_sets_vary_when_the_request_did_not_accept(value):
    headers = {"accept-encoding": value} if value is not None else {}
    for app in (respond(), respond(headers=[(b"content-type", b"text/plain")],
                                   chunks=(b"a", b"b"))):
        call = barelab.call_asgi(checked(app, GZip), headers=headers)
        assert call.header("content-encoding") is None
        assert call.header("vary") == "accept-encoding"


def test_gzip_keeps_existing_vary():
    app = respond(headers=[(b"content-type", b"text/html"), (b"vary", b"Origin")])
    call = barelab.call_asgi(checked(app, GZip), headers=GZIP)
    assert call.header("vary") == "Origin, accept-encoding"


def test_gzip_app_crash_before_body_leaves_nothing_started():
    async def crash(scope, receive, send):
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/html")]})
        raise RuntimeError("boom")

    call = barelab.call_asgi(GZip(crash), headers=GZIP, raise_errors=False)
    assert call.sent == [] and isinstance(call.exception, RuntimeError)


def test_gzip_releases_a_held_start_when_the_app_returns_without_body():
    async def forgetful(scope, receive, send):
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/html")]})

    call = barelab.call_asgi(GZip(forgetful), headers=GZIP, raise_errors=False)
    assert [m["type"] for m in call.sent] == ["http.response.start"]


def test_gzip_passes_trailers_after_releasing_the_start():
    async def with_trailers(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "trailers": True,
                    "headers": [(b"content-type", b"text/html")]})
        await send({"type": "http.response.trailers", "headers": [], "more_trailers": False})

    call = barelab.call_asgi(GZip(with_trailers), headers=GZIP, raise_errors=False)
    assert [m["type"] for m in call.sent] == ["http.response.start", "http.response.trailers"]


def _read_timed(server, headers):
    fields = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    request = f"GET / HTTP/1.1\r\nHost: x\r\n{fields}Connection: close\r\n\r\n".encode()
    reads = []
    with socket.create_connection((server.host, server.port), timeout=5) as sock:
        start = time.perf_counter()
        sock.sendall(request)
        while data := sock.recv(65536):
            reads.append((time.perf_counter() - start, data))
    return reads


def _readable(received: bytes) -> bytes:
    from barelab.built.http_wire import ChunkedDecoder
    head, _, body = received.partition(b"\r\n\r\n")
    decoder = ChunkedDecoder()
    decoder.advance(body)
    return zlib.decompressobj(wbits=31).decompress(decoder.body)


@pytest.mark.parametrize("engine", [None, ASGIServer], ids=["barelab", "course"])
def test_gzip_streams_over_a_socket(serve, engine):
    app = respond(headers=[(b"content-type", b"text/plain")],
                  chunks=(b"tick 1\n", b"tick 2\n", b"tick 3\n"), delay=0.2)
    server = serve(GZip(app), server=engine)
    reads = _read_timed(server, {"Accept-Encoding": "gzip"})
    received, readable_at = b"", {}
    for seconds, data in reads:
        received += data
        for line in _readable(received).splitlines():
            readable_at.setdefault(line, seconds)
    assert set(readable_at) == {b"tick 1", b"tick 2", b"tick 3"}
    assert readable_at[b"tick 1"] < 0.15, "the first chunk must not wait for the rest"
    assert readable_at[b"tick 3"] - readable_at[b"tick 1"] > 0.3
    assert b"content-encoding: gzip" in received.lower()
    assert b"content-length" not in received.partition(b"\r\n\r\n")[0].lower()


@pytest.mark.parametrize("engine", [None, ASGIServer], ids=["barelab", "course"])
def test_gzip_fixes_a_stale_content_length_over_a_socket(serve, engine):
    app = respond(headers=[(b"content-type", b"text/html"),
                           (b"content-length", str(2 * len(TEXT)).encode())],
                  chunks=(TEXT, TEXT))
    server = serve(GZip(app), server=engine)
    reply = barelab.http_request(server, "GET", "/", headers={"Accept-Encoding": "gzip"})
    assert reply.status == 200 and gzip.decompress(reply.body) == TEXT * 2
    plain = barelab.http_request(server, "GET", "/")
    assert plain.body == TEXT * 2 and plain.header("content-length") == str(2 * len(TEXT))
    assert plain.header("vary") == "accept-encoding"
    assert not server.log.errors


def test_gzip_with_curl_compressed(serve):
    import shutil
    import subprocess
    if shutil.which("curl") is None:
        pytest.skip("curl not installed")
    server = serve(GZip(respond()))
    out = subprocess.run(["curl", "-s", "--compressed", "-m", "5", server.url],
                         capture_output=True, timeout=10)
    assert out.stdout == TEXT


# -- the whole stack ---------------------------------------------------------------------------

async def site(scope, receive, send):
    if scope["type"] == "lifespan":
        return await lifespan_app(scope, receive, send)
    if scope["path"] == "/upload":
        return await upload(scope, receive, send)
    if scope["path"] == "/ws":
        return await lifespan_app(scope, receive, send)
    await respond()(scope, receive, send)


def full_stack(records):
    return checked(site, partial(AccessLog, records=records), RequestID, ServerTiming, GZip,
                   partial(AddHeaders, headers={"x-content-type-options": "nosniff"}),
                   partial(TokenAuth, tokens={"s3cret": "ada"}),
                   partial(BodyLimit, max_bytes=1000))


BATTERY = [
    ("GET", "/", {"Authorization": "Bearer s3cret", "Accept-Encoding": "gzip"}, b""),
    ("GET", "/", {"Authorization": "Bearer s3cret", "Accept-Encoding": "gzip;q=0"}, b""),
    ("GET", "/", {"Accept-Encoding": "gzip"}, b""),
    ("POST", "/upload", {"Authorization": "Bearer s3cret"}, b"x" * 900),
    ("POST", "/upload", {"Authorization": "Bearer s3cret"}, b"x" * 1200),
]


def _outcome(reply):
    body = reply.body
    if reply.header("content-encoding") == "gzip":
        body = gzip.decompress(body)
    return (reply.status, reply.header("content-encoding"), reply.header("vary"),
            reply.header("x-content-type-options"), bool(reply.header("x-request-id")),
            bool(reply.header("server-timing")), body)


def test_stack_agrees_on_both_servers(serve):
    records = []
    results = []
    for engine in (None, ASGIServer):
        server = serve(full_stack(records), server=engine)
        results.append([_outcome(barelab.http_request(server, m, p, headers=h, body=b))
                        for m, p, h, b in BATTERY])
    assert results[0] == results[1]
    statuses = [r[0] for r in results[0]]
    assert statuses == [200, 200, 401, 200, 413]
    assert all(r[3] == "nosniff" and r[4] and r[5] for r in results[0])
    assert results[0][0][1] == "gzip" and results[0][1][1] is None
    assert results[0][0][6] == results[0][1][6] == TEXT
    deadline = time.monotonic() + 2     # a record is written just after the last byte left
    while len(records) < 2 * len(BATTERY) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(records) == 2 * len(BATTERY)
    assert records[0].bytes < len(TEXT), "the access log counts compressed bytes"


def test_stack_guards_websockets_on_barelab(serve):
    server = serve(full_stack([]))
    with pytest.raises(barelab.WebSocketRejected) as refused:
        barelab.websocket_connect(server, "/ws")
    assert refused.value.status == 401
    assert dict(refused.value.headers).get("x-request-id")
    with barelab.websocket_connect(server, "/ws?token=s3cret") as ws:
        assert ws.receive() == "state=['request_id', 'started', 'user']"


def test_starlette_app_behind_the_middleware(serve):
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse, StreamingResponse
    from starlette.routing import Route, WebSocketRoute

    async def whoami(request):
        return JSONResponse({"user": request.state.user, "id": request.state.request_id,
                             "pad": "." * 600})

    async def stream(request):
        async def lines():
            for n in range(3):
                yield f"tick {n}\n"
        return StreamingResponse(lines(), media_type="text/plain")

    async def greet(websocket):
        await websocket.accept()
        await websocket.send_text(f"hello {websocket.state.user}")
        await websocket.close()

    app = Starlette(routes=[Route("/whoami", whoami), Route("/stream", stream),
                            WebSocketRoute("/ws", greet)])
    server = serve(compose(app, RequestID, GZip, partial(TokenAuth, tokens={"s3cret": "ada"})))
    auth = {"Authorization": "Bearer s3cret", "Accept-Encoding": "gzip", "X-Request-ID": "r1"}
    reply = barelab.http_request(server, "GET", "/whoami", headers=auth)
    assert reply.header("content-encoding") == "gzip"
    assert b'"user":"ada","id":"r1"' in gzip.decompress(reply.body)
    streamed = barelab.http_request(server, "GET", "/stream", headers=auth)
    assert gzip.decompress(streamed.body) == b"tick 0\ntick 1\ntick 2\n"
    assert barelab.http_request(server, "GET", "/whoami").status == 401
    with pytest.raises(barelab.WebSocketRejected):
        barelab.websocket_connect(server, "/ws")
    with barelab.websocket_connect(server, "/ws", headers={"Authorization": "Bearer s3cret"}) as ws:
        assert ws.receive() == "hello ada"
