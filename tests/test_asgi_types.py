"""Tests of barelab.built.asgi_types, the ASGI message checker of chapter 11.

Unit tests pin each rule of the asgiref "HTTP & WebSocket ASGI Message Format" spec that the
checker applies to the message (or the order) that breaks it, and check that correct
responses, including streamed ones and messages with extra keys, pass without a word. A
differential test runs the same broken apps through barelab's ASGI server and the checker:
whatever the checker refuses, the server answers with a 500 too.
"""

from __future__ import annotations

import asyncio

import pytest

import barelab
from barelab.built.asgi_types import (ASGIMessageError, HTTPResponseChecker, checked_send,
                                      validate_http_send)

START = {"type": "http.response.start", "status": 200, "headers": []}
BODY = {"type": "http.response.body", "body": b"hello"}


def refusal(message) -> str:
    with pytest.raises(ASGIMessageError) as caught:
        validate_http_send(message)
    return str(caught.value)


# -- the shape of one message ----------------------------------------------------------------

@pytest.mark.parametrize("message", [
    START,
    {**START, "headers": [(b"content-type", b"text/plain"), [b"x-a", b"1"]]},
    {**START, "status": 599, "trailers": False},
    {"type": "http.response.start", "status": 204},            # headers default to []
    BODY,
    {"type": "http.response.body"},                            # body defaults to b""
    {**BODY, "more_body": True},
    {**BODY, "x-extra": object()},                             # extra keys are allowed
])
def test_valid_messages_pass(message):
    assert validate_http_send(message) is None


@pytest.mark.parametrize("message, words", [
    ("not a dict", "'Events'"),
    ({"body": b""}, "'type' key"),
    ({"type": 3}, "'type' key"),
    ({"type": "http.response.push"}, "not 'http.response.push'"),
    ({"type": "websocket.send", "text": "x"}, "not 'websocket.send'"),
    ({**START, "status": "200 OK"}, "'status' is an int"),
    ({**START, "status": True}, "'status' is an int"),
    ({**START, "status": None}, "'status' is an int"),
    ({**START, "status": 101}, "final status code"),
    ({**START, "status": 600}, "final status code"),
    ({**START, "headers": [("content-type", "text/plain")]}, "byte strings"),
    ({**START, "headers": [(b"content-type",)]}, "byte strings"),
    ({**START, "headers": [(b"a", b"b", b"c")]}, "byte strings"),
    ({**START, "headers": 5}, "iterable of [name, value] pairs"),
    ({**START, "headers": [(b"Content-Type", b"text/plain")]}, "lowercased"),
    ({**START, "headers": [(b":status", b"200")]}, "pseudo headers"),
    ({**START, "trailers": "yes"}, "'trailers' is a bool"),
    ({**START, "trailers": True}, "http.response.trailers extension"),
    ({**BODY, "body": "hello"}, "'body' is a byte string, got str"),
    ({**BODY, "body": bytearray(b"x")}, "'body' is a byte string"),
    ({**BODY, "more_body": 1}, "'more_body' is a bool"),
])
def test_each_shape_rule_is_refused_with_its_reason(message, words):
    text = refusal(message)
    assert words in text
    assert text.startswith("ASGI ")  # every refusal names the spec


# -- the order of messages -------------------------------------------------------------------

def run(messages, finish=True) -> HTTPResponseChecker:
    checker = HTTPResponseChecker()
    for message in messages:
        checker.check(message)
    if finish:
        checker.finish()
    return checker


def test_a_complete_response_ends_in_state_complete():
    assert run([START, BODY]).state == "complete"


def test_a_streamed_response_passes():
    chunks = [{**BODY, "more_body": True}] * 3 + [{"type": "http.response.body"}]
    assert run([START, *chunks]).state == "complete"


def test_states_follow_the_messages():
    checker = HTTPResponseChecker()
    assert checker.state == "waiting"
    checker.check(START)
    assert checker.state == "started"
    checker.check({**BODY, "more_body": True})
    assert checker.state == "started"
    checker.check(BODY)
    assert checker.state == "complete"


@pytest.mark.parametrize("messages, words", [
    ([BODY], "before http.response.start"),
    ([START, START], "already sent"),
    ([START, {**START, "status": 500}], "already sent"),
    ([START, BODY, BODY], "response is complete"),
    ([START, BODY, START], "already sent"),
    ([{**START, "trailers": True}], "http.response.trailers extension"),
])
def test_order_mistakes_are_refused(messages, words):
    with pytest.raises(ASGIMessageError, match=words):
        run(messages, finish=False)


@pytest.mark.parametrize("messages, words", [
    ([], "without starting the response"),
    ([START], "before completing the response"),
    ([START, {**BODY, "more_body": True}], "before completing the response"),
])
def test_finish_refuses_an_unfinished_response(messages, words):
    checker = run(messages, finish=False)
    with pytest.raises(ASGIMessageError, match=words):
        checker.finish()


def test_a_refused_message_does_not_change_the_state():
    checker = HTTPResponseChecker()
    checker.check(START)
    with pytest.raises(ASGIMessageError):
        checker.check({**BODY, "body": "text"})
    assert checker.state == "started"


# -- checked_send ----------------------------------------------------------------------------

def test_checked_send_passes_good_messages_on_in_order():
    sent = []

    async def send(message):
        sent.append(message)

    async def app_side():
        checked = checked_send(send)
        await checked(START)
        await checked(BODY)

    asyncio.run(app_side())
    assert sent == [START, BODY]


def test_checked_send_stops_a_bad_message_before_it_goes_out():
    sent = []

    async def send(message):
        sent.append(message)

    checker = HTTPResponseChecker()
    checked = checked_send(send, checker)
    with pytest.raises(ASGIMessageError, match="before http.response.start"):
        asyncio.run(checked(BODY))
    assert sent == [] and checker.state == "waiting"


def test_checked_send_uses_the_checker_it_is_given():
    checker = HTTPResponseChecker()

    async def nowhere(message):
        pass

    checked = checked_send(nowhere, checker)
    asyncio.run(checked(START))
    assert checker.state == "started"


# -- the checker agrees with barelab's server ------------------------------------------------

async def _body_first(send):
    await send(BODY)


async def _str_body(send):
    await send(START)
    await send({**BODY, "body": "hello"})


async def _start_twice(send):
    await send(START)
    await send(START)


async def _nothing(send):
    pass


async def _good(send):
    await send(START)
    await send({**BODY, "more_body": True})
    await send(BODY)


BEHAVIOURS = {"/body_first": _body_first, "/str_body": _str_body,
              "/start_twice": _start_twice, "/nothing": _nothing, "/good": _good}


async def _checked_verdict(behaviour) -> bool:
    checker = HTTPResponseChecker()

    async def nowhere(message):
        pass

    try:
        await behaviour(checked_send(nowhere, checker))
        checker.finish()
    except ASGIMessageError:
        return False
    return True


def test_the_checker_and_barelabs_server_agree():
    async def app(scope, receive, send):
        if scope["type"] != "http":
            raise RuntimeError("http only")
        await BEHAVIOURS[scope["path"]](send)

    server = barelab.serve(app, name="test-asgi-types-agree")
    try:
        for path, behaviour in BEHAVIOURS.items():
            accepted = asyncio.run(_checked_verdict(behaviour))
            status = barelab.http_request(server, path=path).status
            assert (status == 200) == accepted, (path, status, accepted)
    finally:
        server.stop()
