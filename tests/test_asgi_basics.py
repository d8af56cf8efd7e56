"""Tests of barelab.built.asgi_basics, the helpers for hand-written ASGI apps of chapter 12.

Each helper is called the way an app calls it: through barelab.call_asgi (in-process, with
the body in as many chunks as the test likes) or through a server and a real socket where
the behaviour depends on one (a client that hangs up in the middle of a stream).
"""

from __future__ import annotations

import asyncio
import json
import socket
import time

import pytest

import barelab
from barelab.built.asgi_basics import (
    BadRequest, ContentTooLarge, HTTPError, RequestAborted, UnsupportedMediaType,
    encode_headers, header, media_type, parse_json, read_body, read_json, send_error,
    send_json, send_response, send_text, sse_event, stream, wait_for_disconnect)


def receive_from(*messages):
    """A receive() handing out these messages, then http.disconnect forever."""
    queue = list(messages)

    async def receive():
        return queue.pop(0) if queue else {"type": "http.disconnect"}
    return receive


def chunks(*bodies):
    return [{"type": "http.request", "body": b, "more_body": i < len(bodies) - 1}
            for i, b in enumerate(bodies)]


def run(coroutine):
    return asyncio.run(coroutine)


# -- read_body ---------------------------------------------------------------------------------

def test_read_body_joins_every_chunk():
    assert run(read_body(receive_from(*chunks(b"ab", b"", b"cd", b"e")))) == b"abcde"


def test_read_body_defaults_missing_keys():
    assert run(read_body(receive_from({"type": "http.request"}))) == b""


def test_read_body_stops_reading_as_soon_as_the_limit_is_passed():
    asked = []
    base = receive_from(*chunks(b"x" * 6, b"y" * 6, b"z" * 6))

    async def receive():
        asked.append(1)
        return await base()

    with pytest.raises(ContentTooLarge) as info:
        run(read_body(receive, limit=10))
    assert info.value.status == 413 and len(asked) == 2


def test_read_body_accepts_exactly_the_limit():
    assert run(read_body(receive_from(*chunks(b"x" * 5, b"y" * 5)), limit=10)) == b"x" * 5 + b"y" * 5


def test_read_body_raises_request_aborted_on_disconnect():
    with pytest.raises(RequestAborted):
        run(read_body(receive_from(*chunks(b"a", b"b")[:1])))


# -- headers and JSON --------------------------------------------------------------------------

def test_header_is_case_insensitive_and_joins_repeats():
    scope = barelab.build_scope("http", headers=[("Accept", "a"), ("accept", "b")])
    assert header(scope, "ACCEPT") == "a, b"
    assert header(scope, "x-missing") is None


def test_media_type_drops_parameters_and_lowercases():
    scope = barelab.build_scope("http", headers=[("Content-Type", "Application/JSON ; charset=utf-8")])
    assert media_type(scope) == "application/json"
    assert media_type(barelab.build_scope("http")) == ""


@pytest.mark.parametrize("body, message", [
    (b"", "empty"), (b"   ", "empty"), (b'{"a": 1,}', "line 1, column 9"), (b"[NaN]", "NaN"),
    (b"[Infinity]", "Infinity"), (b'"caf\xe9"', "UTF-8"), (b"[" * 100_000, "nested"),
])
def test_parse_json_refuses_with_a_400_and_a_reason(body, message):
    with pytest.raises(BadRequest) as info:
        parse_json(body)
    assert info.value.status == 400 and message in info.value.message


def test_parse_json_accepts_documents_of_any_type():
    assert parse_json(b' {"a": [1, 2.5, null, true]} ') == {"a": [1, 2.5, None, True]}
    assert parse_json(b'"text"') == "text"


@pytest.mark.parametrize("content_type", ["application/json", "application/problem+json",
                                          "APPLICATION/JSON; charset=utf-8"])
def test_read_json_accepts_json_media_types(content_type):
    scope = barelab.build_scope("http", "POST", headers=[("content-type", content_type)])
    assert run(read_json(scope, receive_from(*chunks(b'{"a"', b": 1}")))) == {"a": 1}


def test_read_json_refuses_other_types_before_reading():
    scope = barelab.build_scope("http", "POST", headers=[("content-type", "text/plain")])
    asked = []

    async def receive():
        asked.append(1)
        return {"type": "http.request", "body": b"{}"}

    with pytest.raises(UnsupportedMediaType) as info:
        run(read_json(scope, receive))
    assert info.value.status == 415 and not asked


# -- responses ---------------------------------------------------------------------------------

def test_encode_headers_lowercases_names_and_encodes_latin1():
    assert encode_headers([("X-Name", "café")]) == [(b"x-name", "café".encode("latin-1"))]


async def _json_app(scope, receive, send):
    await send_json(send, {"name": "Zoë"}, 201, headers=[("Location", "/things/1")])


def test_send_json_sets_type_length_and_extra_headers():
    call = barelab.call_asgi(_json_app)
    assert call.status == 201
    assert call.header("content-type") == "application/json"
    assert call.header("location") == "/things/1"
    assert int(call.header("content-length")) == len(call.body)
    assert json.loads(call.body) == {"name": "Zoë"}
    assert all(name == name.lower() for name, _ in call.headers)


async def _text_and_error_app(scope, receive, send):
    if scope["path"] == "/text":
        await send_text(send, "héllo")
    elif scope["path"] == "/error":
        await send_error(send, BadRequest("nope"), headers=[("x-why", "test")])
    else:
        await send_response(send, 204, b"")


def test_send_text_and_send_error():
    text = barelab.call_asgi(_text_and_error_app, path="/text")
    assert (text.status, text.body) == (200, "héllo".encode())
    assert text.header("content-type") == "text/plain; charset=utf-8"
    error = barelab.call_asgi(_text_and_error_app, path="/error")
    assert (error.status, error.body, error.header("x-why")) == (400, b"nope\n", "test")


# -- server-sent events ------------------------------------------------------------------------

def test_sse_event_fields_and_terminator():
    assert sse_event("x", event="tick", id="7") == b"event: tick\nid: 7\ndata: x\n\n"
    assert sse_event("") == b"data: \n\n"


@pytest.mark.parametrize("data", ["a\nb", "a\rb", "a\r\nb"])
def test_sse_event_splits_every_kind_of_line_break(data):
    assert sse_event(data) == b"data: a\ndata: b\n\n"


@pytest.mark.parametrize("field", ["event", "id"])
def test_sse_event_refuses_line_breaks_in_event_and_id(field):
    with pytest.raises(ValueError):
        sse_event("x", **{field: "a\nretry: 1"})


# -- stream ------------------------------------------------------------------------------------

async def _numbers(n, closed):
    try:
        for i in range(n):
            yield str(i).encode()
    finally:
        closed.append(True)


def test_stream_sends_each_chunk_then_an_empty_last_message():
    closed, results = [], []

    async def app(scope, receive, send):
        results.append(await stream(send, receive, _numbers(3, closed),
                                    content_type="text/event-stream"))

    call = barelab.call_asgi(app)
    bodies = [(m["body"], m.get("more_body", False)) for m in call.sent
              if m["type"] == "http.response.body"]
    assert bodies == [(b"0", True), (b"1", True), (b"2", True), (b"", False)]
    assert call.header("content-type") == "text/event-stream"
    assert results == [True] and closed == [True]


def test_stream_stops_the_producer_when_the_client_leaves():
    closed, results, sent = [], [], []

    async def forever():
        try:
            while True:
                yield b"tick"
                await asyncio.sleep(0.01)
        finally:
            closed.append(True)

    async def receive():
        await asyncio.sleep(0.05)
        return {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    async def main():
        results.append(await stream(send, receive, forever()))

    asyncio.run(main())
    assert results == [False] and closed == [True]
    assert sent[-1].get("more_body") is True  # no final message for a client that left


def test_stream_treats_an_oserror_from_send_as_the_client_leaving():
    async def send(message):
        if message["type"] == "http.response.body":
            raise ConnectionResetError("gone")

    async def receive():
        await asyncio.sleep(10)

    async def chunks_():
        yield b"x"

    assert asyncio.run(stream(send, receive, chunks_())) is False


def test_stream_reraises_a_bug_in_the_producer():
    async def broken():
        yield b"x"
        raise ZeroDivisionError

    async def app(scope, receive, send):
        await stream(send, receive, broken())

    call = barelab.call_asgi(app, raise_errors=False)
    assert isinstance(call.exception, ZeroDivisionError)


def test_wait_for_disconnect_skips_body_messages():
    receive = receive_from(*chunks(b"a", b"b"))
    asyncio.run(asyncio.wait_for(wait_for_disconnect(receive), 1))


def test_stream_over_a_socket_notices_the_client_leaving():
    log = []

    async def app(scope, receive, send):
        if scope["type"] != "http":
            raise RuntimeError("http only")

        async def ticks():
            try:
                while True:
                    yield sse_event("tick")
                    await asyncio.sleep(0.05)
            finally:
                log.append("closed")
        log.append(await stream(send, receive, ticks(), content_type="text/event-stream"))

    with barelab.serve(app, name="test_asgi_basics_stream") as server:
        with socket.create_connection((server.host, server.port), timeout=5) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            received = b""
            while received.count(b"data: tick") < 2:
                received += sock.recv(4096)
        deadline = time.monotonic() + 3
        while len(log) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
    assert log == ["closed", False]


def test_errors_are_http_errors_with_statuses():
    assert issubclass(ContentTooLarge, HTTPError) and ContentTooLarge.status == 413
    assert UnsupportedMediaType.status == 415
