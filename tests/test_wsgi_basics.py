"""Tests of barelab.built.wsgi_basics, the request and response helpers of chapter 05.

Each reader is pinned to the status it refuses with (400, 411, 413, 415), in-process with
``barelab.build_environ`` and over barelab's server (chunked bodies, real sockets). The
writers are checked inside ``wsgiref.validate.validator``, and parse_query is compared
with hypothesis against urllib's own encoder: whatever it encodes, we decode back.
"""

from __future__ import annotations

import io
import warnings
from urllib.parse import urlencode
from wsgiref.validate import WSGIWarning, validator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import barelab
from barelab import build_environ
from barelab.built.http_wire import BadRequest, ContentTooLarge, HTTPError
from barelab.built.static_files import MethodNotAllowed
from barelab.built.wsgi_basics import (
    LengthRequired, UnsupportedMediaType, error_response, json_response, media_type,
    parse_form, parse_query, read_body, read_json, text_response)


def status_of(function, *args, **kwargs) -> int | None:
    try:
        function(*args, **kwargs)
    except HTTPError as error:
        return error.status
    return None


def post(body=b"", content_type=None, **extra):
    headers = [("Content-Type", content_type)] if content_type else []
    environ = build_environ("POST", "/", headers=headers, body=body)
    environ.update(extra)
    return environ


# -- parse_query -------------------------------------------------------------------------------

@pytest.mark.parametrize("query, expected", [
    ("", {}), ("a=1", {"a": ["1"]}), ("a=1&a=2&b=3", {"a": ["1", "2"], "b": ["3"]}),
    ("q=caf%C3%A9+au+lait", {"q": ["café au lait"]}), ("s=1%2B1", {"s": ["1+1"]}),
    ("flag&e=", {"flag": [""], "e": [""]}), ("a=%26%3D", {"a": ["&="]}),
    ("caf\xc3\xa9=1", {"café": ["1"]}),  # raw UTF-8 bytes, as a lenient server passes them
])
def test_parse_query(query, expected):
    assert parse_query(query) == expected


@pytest.mark.parametrize("query", ["a=%FF", "a=%C3", "\xff=1"])
def test_parse_query_refuses_bad_utf8(query):
    assert status_of(parse_query, query) == 400


def test_parse_query_limits_fields():
    assert status_of(parse_query, "&".join(["a=1"] * 1001)) == 400
    assert parse_query("&".join(["a=1"] * 5), max_fields=5) == {"a": ["1"] * 5}


TEXT = st.text(st.characters(blacklist_categories=("Cs",)))  # no lone surrogates: not UTF-8


@settings(max_examples=200, deadline=None, database=None)
@given(st.lists(st.tuples(TEXT.filter(bool), TEXT), max_size=8))
def test_parse_query_undoes_urlencode(pairs):
    expected: dict[str, list[str]] = {}
    for name, value in pairs:
        expected.setdefault(name, []).append(value)
    assert parse_query(urlencode(pairs, encoding="utf-8")) == expected


# -- read_body -----------------------------------------------------------------------------------

def test_read_body_reads_exactly_content_length():
    environ = post(b"hello")
    environ["wsgi.input"] = io.BytesIO(b"helloEXTRA")
    assert read_body(environ) == b"hello"
    assert environ["wsgi.input"].read() == b"EXTRA"


def test_no_length_no_transfer_encoding_is_an_empty_body():
    assert read_body(build_environ("POST", "/")) == b""


def test_chunked_without_input_terminated_is_411():
    environ = build_environ("POST", "/", headers=[("Transfer-Encoding", "chunked")])
    assert status_of(read_body, environ) == 411


def test_input_terminated_reads_to_the_end_within_the_limit():
    environ = build_environ("POST", "/")
    environ.update({"wsgi.input": io.BytesIO(b"x" * 10), "wsgi.input_terminated": True})
    assert read_body(environ) == b"x" * 10
    environ["wsgi.input"] = io.BytesIO(b"x" * 11)
    assert status_of(read_body, environ, max_bytes=10) == 413


@pytest.mark.parametrize("length, status", [
    ("five", 400), ("-5", 400), ("+5", 400), (" 5", 400), ("5.0", 400), ("\u0665", 400),
    ("2000000", 413), ("9", 400),
])
def test_bad_lengths(length, status):
    assert status_of(read_body, post(b"hello", CONTENT_LENGTH=length)) == status


def test_too_large_is_refused_before_reading():
    class Exploding(io.BytesIO):
        def read(self, *args):
            raise AssertionError("read() must not be called")
    environ = post(b"x", CONTENT_LENGTH="5000", **{"wsgi.input": Exploding()})
    assert status_of(read_body, environ, max_bytes=4999) == 413


def test_read_body_uses_a_size_so_the_validator_is_happy():
    seen = []

    def app(environ, start_response):
        seen.append(read_body(environ))
        return text_response(start_response, "ok")

    barelab.call_wsgi(validator(app), "POST", "/", body=b"abc")
    assert seen == [b"abc"]


def test_short_reads_are_joined():
    class Trickle(io.BytesIO):
        def read(self, size=-1):
            return super().read(min(size, 2))
    environ = post(b"hello", **{"wsgi.input": Trickle(b"hello")})
    assert read_body(environ) == b"hello"


# -- forms and JSON ----------------------------------------------------------------------------------

FORM = "application/x-www-form-urlencoded"


def test_media_type():
    assert media_type({"CONTENT_TYPE": "Application/JSON; charset=UTF-8"}) == "application/json"
    assert media_type({}) == ""


def test_parse_form():
    assert parse_form(post(b"text=buy+milk&tag=a&tag=b", FORM)) == {
        "text": ["buy milk"], "tag": ["a", "b"]}
    assert parse_form(post(b"x=1", FORM + "; charset=utf-8")) == {"x": ["1"]}
    assert status_of(parse_form, post(b"x=1", "text/plain")) == 415
    assert status_of(parse_form, post(b"x=%FF", FORM)) == 400
    assert status_of(parse_form, post(b"\xff=1", FORM)) == 400
    assert status_of(parse_form, post(b"x" * 20, FORM), max_bytes=10) == 413


@pytest.mark.parametrize("body, expected", [
    (b'{"a": [1, 2.5, null, true]}', {"a": [1, 2.5, None, True]}),
    ('{"t": "é"}'.encode(), {"t": "é"}), (b" 42 ", 42), (b'"x"', "x"),
])
def test_read_json(body, expected):
    assert read_json(post(body, "application/json")) == expected


@pytest.mark.parametrize("body", [
    b"", b"   ", b"{", b'{"a": 1,}', b"{'a': 1}", b"NaN", b"[Infinity]", b"-Infinity",
    '{"t": "é"}'.encode("utf-16"), b"\xff", b"[" * 100_000, b"\xef\xbb\xbf{}",
    b'{"a": 1} trailing',
])
def test_read_json_refuses_with_400(body):
    assert status_of(read_json, post(body, "application/json")) == 400


def test_read_json_media_types():
    assert read_json(post(b"{}", "application/problem+json")) == {}
    assert status_of(read_json, post(b"{}", "text/plain")) == 415
    assert status_of(read_json, post(b"{}")) == 415


def test_invalid_json_message_says_where():
    with pytest.raises(BadRequest, match=r"line 1, column 9"):
        read_json(post(b'{"a": 1,}', "application/json"))


# -- responses --------------------------------------------------------------------------------------

def quiet_call(app, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("error", WSGIWarning)
        return barelab.call_wsgi(validator(app), *args, **kwargs)


def test_text_and_json_responses_pass_the_validator():
    text = quiet_call(lambda e, s: text_response(s, "héllo\n", 201, [("X-A", "1")]))
    assert text.status == "201 Created" and text.body == "héllo\n".encode()
    assert text.header("Content-Length") == str(len(text.body))
    assert text.header("X-A") == "1"
    data = quiet_call(lambda e, s: json_response(s, {"é": [1]}))
    assert data.header("Content-Type") == "application/json"
    assert data.json() == {"é": [1]} and data.header("Content-Length") == str(len(data.body))


@pytest.mark.parametrize("error, status_line", [
    (BadRequest("bad"), "400 Bad Request"), (LengthRequired("x"), "411 Length Required"),
    (ContentTooLarge("x"), "413 Content Too Large"),
    (UnsupportedMediaType("x"), "415 Unsupported Media Type"),
])
def test_error_response_uses_rfc_9110_reason_phrases(error, status_line):
    result = quiet_call(lambda e, s: error_response(s, error))
    assert result.status == status_line
    assert result.text == error.message + "\n"


def test_error_response_extra_headers():
    result = quiet_call(lambda e, s: error_response(s, MethodNotAllowed("no"), [("Allow", "GET")]))
    assert result.status_code == 405 and result.header("Allow") == "GET"


# -- over a real server -------------------------------------------------------------------------------

def echo(environ, start_response):
    try:
        return json_response(start_response, read_json(environ, max_bytes=100))
    except HTTPError as error:
        return error_response(start_response, error)


def test_over_the_wire_chunked_json_and_limits():
    with barelab.serve(validator(echo), name="test-wsgi-basics") as server:
        raw = (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
               b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
               b"3\r\n[1,\r\n2\r\n2]\r\n0\r\n\r\n")
        received = barelab.raw_exchange(server, raw).received
        assert received.startswith(b"HTTP/1.1 200 ") and received.endswith(b"[1, 2]\n")
        big = barelab.http_request(server, "POST", "/", json=["x" * 200])
        assert big.status == 413
        bad = barelab.http_request(server, "POST", "/", body=b"{",
                                   headers=[("Content-Type", "application/json")])
        assert bad.status == 400 and "invalid JSON" in bad.text
        assert not server.log.errors
