"""Tests of barelab.built.http_wire, the request parser and response formatter of chapter 02.

Two kinds: unit tests that pin each rule to the status it answers with, and differential
tests that run hypothesis-generated requests through both this parser and h11. The
property the differential tests check is the one chapter 02 states: on valid requests the
two agree field by field; whenever h11 refuses, this parser refuses too, with an HTTPError
whose status is 4xx/5xx; and on any bytes at all it raises nothing but HTTPError. The two
documented exceptions are the RFC 9112 §2.2 "SHOULD ignore" empty line before the request
line, which this parser skips and h11 refuses, and whitespace before the ';' of a chunk
extension (BWS, which RFC 9110 §5.6.3 says a recipient must accept). In the other direction
this parser is stricter, which the property allows: h11 checks that Host is there once, not
that its value is a host, so a value like 'a b' gets 400 here (RFC 9112 §3.2 MUST) and is
accepted by h11. The generator of valid requests therefore draws valid Host values only.
"""

from __future__ import annotations

import os
import re

import h11
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from barelab.built.http_wire import (
    BadRequest, ChunkedDecoder, ContentTooLarge, HeaderFieldsTooLarge, HTTPError,
    HTTPVersionNotSupported, Request, RequestReader, TransferCodingNotImplemented,
    URITooLong, check_host, decode_chunked, error_response, format_response,
    format_response_head, parse_request)

# HTTP_WIRE_EXAMPLES=5000 for a longer hunt; no example database, so nothing is written.
FAST = settings(max_examples=int(os.environ.get("HTTP_WIRE_EXAMPLES", "200")), deadline=None,
                database=None, suppress_health_check=[HealthCheck.too_slow])

GET = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
HEAD = b"POST /p HTTP/1.1\r\nHost: x\r\n"


def status_of(data: bytes, **limits) -> int | None:
    """The status parse_request refuses ``data`` with, or None if it accepts it."""
    try:
        parse_request(data, **limits)
    except HTTPError as error:
        return error.status
    return None


# -- what a parsed request looks like -----------------------------------------------------

def test_a_simple_get():
    assert parse_request(GET) == Request(b"GET", b"/", b"1.1", ((b"host", b"x"),), b"")


def test_a_post_with_a_body_and_bytes_after_it_left_unread():
    request = parse_request(HEAD + b"Content-Length: 5\r\n\r\nhelloGET /next")
    assert request.body == b"hello"
    assert request.headers == ((b"host", b"x"), (b"content-length", b"5"))


def test_names_are_lower_cased_values_stripped_order_and_repeats_kept():
    request = parse_request(b"GET / HTTP/1.1\r\nHOST: x\r\nAccept:a\r\nX: 1\r\n"
                            b"accept: \t b c \t\r\n\r\n")
    assert request.headers == ((b"host", b"x"), (b"accept", b"a"), (b"x", b"1"),
                               (b"accept", b"b c"))


def test_header_helper_is_case_insensitive_and_joins_repeats():
    request = parse_request(b"GET / HTTP/1.1\r\nHost: x\r\nAccept: a\r\nACCEPT: b\r\n\r\n")
    assert request.header("accept") == request.header(b"Accept") == b"a, b"
    assert request.header("missing") is None


def test_request_is_frozen():
    with pytest.raises(AttributeError):
        parse_request(GET).method = b"POST"


def test_empty_value_and_obs_text_are_legal():
    request = parse_request(b"GET / HTTP/1.1\r\nHost: x\r\nX-Empty:\r\nX-L: caf\xe9\r\n\r\n")
    assert request.header("x-empty") == b"" and request.header("x-l") == b"caf\xe9"


def test_http_1_0_needs_no_host_and_versions_are_stored_without_prefix():
    assert parse_request(b"GET / HTTP/1.0\r\n\r\n").http_version == b"1.0"


def test_leading_empty_lines_are_skipped():  # RFC 9112 §2.2 SHOULD
    assert parse_request(b"\r\n\r\n" + GET).target == b"/"


def test_identical_content_lengths_collapse():  # RFC 9110 §8.6 MAY
    assert parse_request(HEAD + b"Content-Length: 2, 2\r\nContent-Length: 2\r\n\r\nhi").body == b"hi"


def test_leading_zeros_in_content_length():
    assert parse_request(HEAD + b"Content-Length: 0002\r\n\r\nhi").body == b"hi"


def test_chunked_body_with_extensions_bws_and_trailers():
    body = b"5 ;a=b\r\nhello\r\n1A\r\n" + b"z" * 26 + b"\r\n0\r\nX-T: 1\r\n\r\n"
    request = parse_request(HEAD + b"Transfer-Encoding: Chunked\r\n\r\n" + body)
    assert request.body == b"hello" + b"z" * 26


# -- what it refuses, and with which status -----------------------------------------------

REFUSED = {
    # request line (RFC 9112 §3)
    "double space": (b"GET  / HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    "trailing space": (b"GET / HTTP/1.1 \r\nHost: x\r\n\r\n", 400),
    "two parts": (b"GET /\r\nHost: x\r\n\r\n", 400),
    "method not a token": (b"G(T / HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    "control in target": (b"GET /\x01 HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    "bad version": (b"GET / HTTP/1.10\r\nHost: x\r\n\r\n", 400),
    "lower-case version": (b"GET / http/1.1\r\nHost: x\r\n\r\n", 400),
    "HTTP/2.0": (b"GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505),
    "HTTP/0.9": (b"GET / HTTP/0.9\r\n\r\n", 505),
    # line endings (RFC 9112 §2.2)
    "bare LF": (b"GET / HTTP/1.1\nHost: x\n\n", 400),
    "bare LF in headers": (b"GET / HTTP/1.1\r\nHost: x\nX: y\r\n\r\n", 400),
    "bare LF at the end": (b"GET / HTTP/1.1\r\nHost: x\r\n\n", 400),
    "bare CR": (b"GET / HTTP/1.1\r\nHost: x\r\nX: a\rb\r\n\r\n", 400),
    # fields (RFC 9112 §5, RFC 9110 §5)
    "space before colon": (b"GET / HTTP/1.1\r\nHost : x\r\n\r\n", 400),
    "tab before colon": (b"GET / HTTP/1.1\r\nHost\t: x\r\n\r\n", 400),
    "obs-fold": (b"GET / HTTP/1.1\r\nHost: x\r\nX: a\r\n b\r\n\r\n", 400),
    "space before first field": (b"GET / HTTP/1.1\r\n Host: x\r\n\r\n", 400),
    "no colon": (b"GET / HTTP/1.1\r\nHost x\r\n\r\n", 400),
    "empty name": (b"GET / HTTP/1.1\r\nHost: x\r\n: y\r\n\r\n", 400),
    "NUL in value": (b"GET / HTTP/1.1\r\nHost: x\r\nX: a\x00b\r\n\r\n", 400),
    "DEL in value": (b"GET / HTTP/1.1\r\nHost: x\r\nX: a\x7fb\r\n\r\n", 400),
    # Host (RFC 9112 §3.2)
    "no Host": (b"GET / HTTP/1.1\r\n\r\n", 400),
    "two Host": (b"GET / HTTP/1.1\r\nHost: x\r\nhost: y\r\n\r\n", 400),
    "two Host in HTTP/1.0": (b"GET / HTTP/1.0\r\nHost: x\r\nhost: y\r\n\r\n", 400),
    "Host with a space": (b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400),
    "bad Host in HTTP/1.0": (b"GET / HTTP/1.0\r\nHost: a b\r\n\r\n", 400),
    # Content-Length (RFC 9112 §6.3, RFC 9110 §8.6)
    "CL words": (HEAD + b"Content-Length: five\r\n\r\n", 400),
    "CL negative": (HEAD + b"Content-Length: -1\r\n\r\n", 400),
    "CL plus": (HEAD + b"Content-Length: +1\r\n\r\na", 400),
    "CL underscore": (HEAD + b"Content-Length: 1_0\r\n\r\n", 400),
    "CL empty": (HEAD + b"Content-Length:\r\n\r\n", 400),
    "CL empty element": (HEAD + b"Content-Length: 1,\r\n\r\na", 400),
    "CL conflicting list": (HEAD + b"Content-Length: 1, 2\r\n\r\nab", 400),
    "CL conflicting lines": (HEAD + b"Content-Length: 1\r\nContent-Length: 2\r\n\r\nab", 400),
    "CL 5000 digits": (HEAD + b"Content-Length: " + b"9" * 5000 + b"\r\n\r\n", 413),
    "CL 5000 zeros": (HEAD + b"Content-Length: " + b"0" * 5000 + b"1\r\n\r\nx", None),
    "body too short": (HEAD + b"Content-Length: 9\r\n\r\nhi", 400),
    # Transfer-Encoding (RFC 9112 §6.1, §7)
    "CL and TE": (HEAD + b"Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    "TE gzip only": (HEAD + b"Transfer-Encoding: gzip\r\n\r\n", 400),
    "TE chunked twice": (HEAD + b"Transfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n", 400),
    "TE chunked not last": (HEAD + b"Transfer-Encoding: chunked, gzip\r\n\r\n", 400),
    "TE empty element": (HEAD + b"Transfer-Encoding: , chunked\r\n\r\n0\r\n\r\n", 400),
    "TE in HTTP/1.0": (b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    "TE gzip, chunked": (HEAD + b"Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 501),
    "TE two lines": (HEAD + b"Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n"
                     b"0\r\n\r\n", 501),
    "chunk size not hex": (HEAD + b"Transfer-Encoding: chunked\r\n\r\nzz\r\n\r\n", 400),
    "chunk longer than said": (HEAD + b"Transfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n0\r\n\r\n",
                               400),
    "no last chunk": (HEAD + b"Transfer-Encoding: chunked\r\n\r\n2\r\nab\r\n", 400),
    "bad trailer": (HEAD + b"Transfer-Encoding: chunked\r\n\r\n0\r\nX : y\r\n\r\n", 400),
    # nothing at all
    "empty": (b"", 400),
    "only CRLF": (b"\r\n\r\n", 400),
}


@pytest.mark.parametrize("name", REFUSED)
def test_refused_with_the_right_status(name):
    data, status = REFUSED[name]
    assert status_of(data) == status


@pytest.mark.parametrize("name", [n for n, (_, status) in REFUSED.items() if status])
def test_every_refusal_message_names_a_rule(name):
    with pytest.raises(HTTPError) as caught:
        parse_request(REFUSED[name][0])
    assert re.search(r"RFC \d+ §[\d.]+|over the limit|incomplete|after the end",
                     caught.value.message), caught.value.message


def test_error_classes_carry_their_status():
    assert [cls("x").status for cls in (BadRequest, ContentTooLarge, URITooLong,
                                         HeaderFieldsTooLarge, TransferCodingNotImplemented,
                                         HTTPVersionNotSupported)] == [400, 413, 414, 431, 501, 505]
    assert all(issubclass(cls, HTTPError) for cls in (BadRequest, URITooLong))


# -- limits ---------------------------------------------------------------------------------

def test_request_line_limit_is_414_even_before_the_line_ends():
    assert status_of(b"GET /" + b"a" * 100, max_line=50) == 414
    assert status_of(b"GET /" + b"a" * 36 + b" HTTP/1.1\r\nHost: x\r\n\r\n", max_line=50) is None


def test_header_section_limit_is_431_even_before_the_head_ends():
    assert status_of(b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X: y\r\n" * 100,
                     max_headers_bytes=200) == 431
    assert status_of(b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X: y\r\n" * 10 + b"\r\n",
                     max_headers_bytes=200) is None


def test_body_limit_is_413_for_content_length_and_for_chunked():
    assert status_of(HEAD + b"Content-Length: 11\r\n\r\n", max_body=10) == 413
    assert status_of(HEAD + b"Content-Length: 10\r\n\r\n" + b"x" * 10, max_body=10) is None
    chunks = b"6\r\nabcdef\r\n6\r\nabcdef\r\n0\r\n\r\n"
    assert status_of(HEAD + b"Transfer-Encoding: chunked\r\n\r\n" + chunks, max_body=10) == 413


def test_body_limit_applies_as_soon_as_a_chunk_announces_its_size():
    reader = RequestReader(max_body=10)
    reader.feed(HEAD + b"Transfer-Encoding: chunked\r\n\r\nff\r\n")
    with pytest.raises(ContentTooLarge):
        reader.next_request()


# -- the incremental reader -----------------------------------------------------------------

PIPELINE = (HEAD + b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
            + HEAD + b"Content-Length: 2\r\n\r\nhi" + b"\r\n" + GET)


def read_all(pieces, **limits) -> list[Request]:
    reader = RequestReader(**limits)
    requests = []
    for piece in pieces:
        reader.feed(piece)
        while (request := reader.next_request()) is not None:
            requests.append(request)
    return requests


def test_reader_returns_none_until_complete_then_the_request():
    reader = RequestReader()
    reader.feed(GET[:-1])
    assert reader.next_request() is None
    reader.feed(GET[-1:])
    assert reader.next_request() == parse_request(GET)
    assert reader.next_request() is None and reader.buffer == b""


def test_reader_handles_pipelining_byte_by_byte():
    one_by_one = read_all(PIPELINE[i:i + 1] for i in range(len(PIPELINE)))
    assert [r.body for r in one_by_one] == [b"abc", b"hi", b""]
    assert one_by_one == read_all([PIPELINE])


@FAST
@given(st.lists(st.integers(0, len(PIPELINE)), max_size=8))
def test_reader_gives_the_same_requests_however_the_bytes_are_split(cuts):
    bounds = [0, *sorted(cuts), len(PIPELINE)]
    pieces = [PIPELINE[a:b] for a, b in zip(bounds, bounds[1:])]
    assert read_all(pieces) == read_all([PIPELINE])


def test_reader_refuses_a_bare_lf_head_without_waiting_for_more():
    reader = RequestReader()
    reader.feed(b"GET / HTTP/1.1\nHost: x\n")
    with pytest.raises(BadRequest, match="bare LF"):
        reader.next_request()


# -- chunked decoding -----------------------------------------------------------------------

def test_decode_chunked():
    assert decode_chunked(b"5\r\nhello\r\n7;x=y\r\n, world\r\n0\r\nT: 1\r\n\r\n") == b"hello, world"
    assert decode_chunked(b"000\r\n\r\n") == b""
    with pytest.raises(BadRequest):
        decode_chunked(b"0\r\n\r\nextra")
    with pytest.raises(BadRequest):
        decode_chunked(b"1" * 17 + b"\r\n")


def test_chunked_decoder_resumes():
    decoder = ChunkedDecoder()
    data = b"3\r\nabc\r\n0\r\n\r\n"
    assert [decoder.advance(data[:n]) for n in range(1, len(data) + 1)][-2:] == [None, len(data)]
    assert decoder.body == b"abc"


# -- responses ------------------------------------------------------------------------------

def test_format_response_adds_content_length():
    assert format_response(200, [("Content-Type", "text/plain")], b"hi") == (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nhi")


@pytest.mark.parametrize("status", [100, 103, 204, 304])
def test_no_body_and_no_content_length_for_1xx_204_304(status):
    response = format_response(status, [("X", "y")], b"")
    assert b"content-length" not in response.lower() and response.endswith(b"X: y\r\n\r\n")
    with pytest.raises(ValueError):
        format_response(status, [], b"body")


def test_304_may_repeat_the_length_a_200_would_have_had():  # RFC 9110 §8.6
    assert b"Content-Length: 42\r\n" in format_response(304, [("Content-Length", "42")])
    with pytest.raises(ValueError):
        format_response(204, [("Content-Length", "0")])


def test_given_content_length_must_match():
    assert format_response(200, [("content-length", "2")], b"hi").count(b"ength") == 1
    with pytest.raises(ValueError):
        format_response(200, [("Content-Length", "3")], b"hi")


@pytest.mark.parametrize("value", ["a\r\nSet-Cookie: x=1", "a\rb", "a\nb", "a\x00b", " padded",
                                   "é€"])
def test_header_values_that_could_split_a_response_are_refused(value):
    with pytest.raises(ValueError):
        format_response(200, [("X", value)], b"")


@pytest.mark.parametrize("name", ["Bad Name", "X:Y", "", "X\r\n"])
def test_header_names_must_be_tokens(name):
    with pytest.raises(ValueError):
        format_response(200, [(name, "v")], b"")


def test_reason_phrases_status_checks_and_bytes_headers():
    assert format_response(413, [], b"").startswith(b"HTTP/1.1 413 Content Too Large\r\n")
    assert format_response(599, [], b"").startswith(b"HTTP/1.1 599 \r\n")
    assert format_response(200, [(b"X", b"\xe9")], b"", reason="Fine").startswith(
        b"HTTP/1.1 200 Fine\r\nX: \xe9\r\n")
    for status in (99, 1000, "200", True):
        with pytest.raises((ValueError, TypeError)):
            format_response_head(status, [])
    with pytest.raises(ValueError):
        format_response(200, [], b"", reason="OK\r\nX: y")
    with pytest.raises(ValueError):
        format_response(200, [("Transfer-Encoding", "chunked")], b"")


def test_error_response_closes_and_explains():
    with pytest.raises(HTTPError) as caught:
        parse_request(b"GET / HTTP/1.1\r\n\r\n")
    response = error_response(caught.value)
    assert response.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert b"Connection: close\r\n" in response and response.endswith(b"(RFC 9112 \xc2\xa73.2)\n")


# -- the Host value (RFC 9112 §3.2) -------------------------------------------------------

VALID_HOSTS = [b"example.org", b"example.org:8080", b"EXAMPLE.org.", b"127.0.0.1", b"127.0.0.1:80",
               b"[::1]", b"[::1]:443", b"[2001:db8::7]", b"[::ffff:127.0.0.1]", b"[v1.fe80::a+en1]",
               b"caf%C3%A9.test", b"a_b~c!$&'()*+,;=", b"x:", b":80", b""]
INVALID_HOSTS = [b"a b", b"a\tb", b"a/b", b"a?b", b"a#b", b"a@b", b"user@example.org", b"a:b",
                 b"a:80:80", b"a:-1", b"a:8o", b"[::1", b"::1", b"[::1]x", b"[g::1]", b"[]",
                 b"caf%zz", b"caf%C", b"caf\xc3\xa9", b"a\"b", b"<a>", b"a[b]"]


@pytest.mark.parametrize("value", VALID_HOSTS)
def test_valid_host_values_are_accepted(value):
    check_host([(b"host", value)], b"1.1")
    request = parse_request(b"GET / HTTP/1.1\r\nHost: " + value + b"\r\n\r\n")
    assert request.header("host") == value


@pytest.mark.parametrize("value", INVALID_HOSTS)
def test_invalid_host_values_are_400(value):
    with pytest.raises(BadRequest, match=r"RFC 9112 §3\.2"):
        check_host([(b"host", value)], b"1.1")
    assert status_of(b"GET / HTTP/1.1\r\nHost: " + value + b"\r\n\r\n") == 400


def test_host_count_rules():
    check_host([], b"1.0")
    with pytest.raises(BadRequest, match="must carry a Host"):
        check_host([(b"accept", b"*/*")], b"1.1")
    with pytest.raises(BadRequest, match="more than one Host"):
        check_host([(b"host", b"a"), (b"host", b"a")], b"1.0")


@pytest.mark.parametrize("value", [b"a b", b"a/b", b"a:b", b"caf%zz"])
def test_stricter_than_h11_on_host_values(value):
    # the one direction the differential property allows: h11 accepts, this parser refuses
    data = b"GET / HTTP/1.1\r\nHost: " + value + b"\r\n\r\n"
    assert h11_parse(data) is not None and status_of(data) == 400


# -- differential tests against h11 ---------------------------------------------------------

def h11_parse(data: bytes) -> Request | None:
    """h11's reading of ``data`` as a Request, or None if h11 sees no complete request.

    Raises h11.RemoteProtocolError when h11 refuses the bytes.
    """
    connection = h11.Connection(h11.SERVER)
    connection.receive_data(data)
    connection.receive_data(b"")
    request, body = None, b""
    while True:
        event = connection.next_event()
        if isinstance(event, h11.Request):
            request = event
        elif isinstance(event, h11.Data):
            body += bytes(event.data)
        elif isinstance(event, h11.EndOfMessage):
            return Request(request.method, request.target, request.http_version,
                           tuple(request.headers), body)
        else:  # ConnectionClosed, NEED_DATA, PAUSED: no whole request
            return None


TCHAR = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
tokens = st.text(TCHAR, min_size=1, max_size=12).map(str.encode)
targets = st.builds(lambda path: b"/" + path,
                    st.binary(max_size=30).map(lambda b: bytes(0x21 + x % 94 for x in b)))
field_vchar = st.sampled_from([bytes([c]) for c in [*range(0x21, 0x7F), *range(0x80, 0x100)]])
field_values = st.lists(st.tuples(st.sampled_from([b" ", b"\t", b"  "]), field_vchar),
                        max_size=8).map(lambda parts: b"".join(ws + c for ws, c in parts).lstrip(b" \t"))
ows = st.sampled_from([b"", b" ", b"\t", b" \t "])
RESERVED = {b"host", b"content-length", b"transfer-encoding"}
extra_fields = st.lists(st.tuples(tokens.filter(lambda n: n.lower() not in RESERVED),
                                  ows, field_values, ows), max_size=6)


def encode_chunked(body: bytes, sizes: list[int], extension: bytes) -> bytes:
    out, i = b"", 0
    for size in sizes:
        if i >= len(body):
            break
        piece, i = body[i:i + size], i + size
        out += b"%x%s\r\n%s\r\n" % (len(piece), extension, piece)
    if i < len(body):
        out += b"%x\r\n%s\r\n" % (len(body) - i, body[i:])
    return out + b"0\r\n\r\n"


# Host = uri-host [ ":" port ] (RFC 9112 §3.2, RFC 3986 §3.2.2-3.2.3)
REG_NAME_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~!$&'()*+,;="
reg_names = st.lists(st.one_of(st.sampled_from(list(REG_NAME_CHARS)),
                               st.integers(0, 255).map(lambda b: f"%{b:02x}")),
                     max_size=12).map("".join)
ipv4s = st.tuples(*[st.integers(0, 255)] * 4).map(lambda t: ".".join(map(str, t)))
ip_literals = st.sampled_from(["[::1]", "[2001:db8::7]", "[::ffff:127.0.0.1]", "[v1.fe80::a+en1]"])
ports = st.one_of(st.just(""), st.just(":"), st.integers(0, 65535).map(lambda p: f":{p}"))
host_values = st.tuples(st.one_of(st.just("example.org"), reg_names, ipv4s, ip_literals),
                        ports).map(lambda t: (t[0] + t[1]).encode("ascii"))


@st.composite
def valid_requests(draw) -> bytes:
    version = draw(st.sampled_from([b"1.1", b"1.1", b"1.0"]))
    fields = [name + b":" + before + value + after
              for name, before, value, after in draw(extra_fields)]
    if version == b"1.1" or draw(st.booleans()):
        host = draw(st.sampled_from([b"Host", b"host", b"HOST"]))
        fields.insert(draw(st.integers(0, len(fields))), host + b": " + draw(host_values))
    body = draw(st.binary(max_size=40))
    framing = draw(st.sampled_from(["length", "chunked", "none"]) if version == b"1.1"
                   else st.sampled_from(["length", "none"]))
    if framing == "none":
        body = b""
    elif framing == "length":
        fields.append(b"Content-Length: %d" % len(body))
    else:
        fields.append(b"Transfer-Encoding: chunked")
        sizes = draw(st.lists(st.integers(1, 16), max_size=4))
        body_bytes = encode_chunked(body, sizes, draw(st.sampled_from([b"", b";a=b", b";x"])))
    head = b"%s %s HTTP/%s\r\n" % (draw(tokens), draw(targets), version)
    head += b"".join(f + b"\r\n" for f in fields) + b"\r\n"
    return head + (body_bytes if framing == "chunked" else body)


@FAST
@given(valid_requests())
def test_agrees_with_h11_on_valid_requests(data):
    assert parse_request(data) == h11_parse(data)


def mutate(data: bytes, kind: str, position: int, junk: bytes) -> bytes:
    """One of the malformations chapter 02 discusses, or a blind byte edit."""
    head_end = data.index(b"\r\n\r\n")
    line_ends = [m.start() for m in re.finditer(rb"\r\n", data[:head_end + 2])]
    cut = line_ends[position % len(line_ends)] + 2   # the start of some line of the head
    if kind == "obs-fold":
        return data[:cut] + b" " + junk.strip(b"\r\n") + b"\r\n" + data[cut:]
    if kind == "space before colon":
        return data.replace(b":", b" :", 1) if b":" in data[:head_end] else data
    if kind == "bad content-length":
        return data[:cut] + b"Content-Length: " + junk + b"\r\n" + data[cut:]
    if kind == "CL and TE":
        return data[:cut] + b"Content-Length: 3\r\nTransfer-Encoding: chunked\r\n" + data[cut:]
    if kind == "NUL in a value":
        colon = data.find(b":")
        return data[:colon + 1] + b"a\x00b" + data[colon + 1:] if 0 < colon < head_end else data
    at = position % (len(data) + 1)
    if kind == "insert":
        return data[:at] + junk + data[at:]
    if kind == "delete":
        return data[:at] + data[at + len(junk) + 1:]
    return data[:at] + junk + data[at + len(junk):]          # overwrite


junk_bytes = st.one_of(st.binary(max_size=4),
                       st.lists(st.sampled_from([b"\r", b"\n", b"\r\n", b" ", b"\t", b":", b",",
                                                 b"-", b"0", b"9", b"\x00", b"a"]),
                                min_size=1, max_size=4).map(b"".join))
mutations = st.sampled_from(["obs-fold", "space before colon", "bad content-length",
                             "CL and TE", "NUL in a value", "insert", "delete", "overwrite"])


def ours(data: bytes):
    try:
        return parse_request(data)
    except HTTPError as error:
        assert 400 <= error.status < 600, error
        return error   # anything else propagates and fails the test


@FAST
@given(valid_requests(), mutations, st.integers(0, 10_000), junk_bytes)
def test_refuses_whatever_h11_refuses(data, kind, position, junk):
    data = mutate(data, kind, position, junk)
    result = ours(data)
    try:
        # documented difference 1: empty lines before the request line are skipped (§2.2)
        h11_result = h11_parse(re.sub(rb"\A(\r\n)+", b"", data))
    except h11.RemoteProtocolError:
        # documented difference 2: whitespace before a chunk extension's ';' is BWS, which
        # RFC 9110 §5.6.3 says a recipient MUST accept; h11 refuses it
        bws_in_chunk = re.search(rb"\r\n[0-9A-Fa-f]+[ \t]+;", data)
        assert isinstance(result, HTTPError) or bws_in_chunk, \
            f"h11 refuses {data!r}, parse_request accepts it"
        return
    if isinstance(result, Request) and h11_result is not None:
        assert comparable(result) == comparable(h11_result)


def comparable(request: Request) -> tuple:
    # h11 collapses identical Content-Length lines into one; compare everything else
    return (request.method, request.target, request.http_version, request.body,
            [field for field in request.headers if field[0] != b"content-length"])


@FAST
@given(st.binary(max_size=200))
def test_arbitrary_bytes_raise_nothing_but_http_error(data):
    ours(data)


@FAST
@given(st.lists(st.sampled_from([b"GET", b" ", b"/", b"HTTP/1.1", b"\r\n", b"\n", b"Host", b":",
                                 b"x", b"Content-Length", b"Transfer-Encoding", b"chunked",
                                 b"0", b"5", b"-", b",", b"\t", b"\x00", b";", b"\xff"]),
                max_size=40).map(b"".join))
def test_http_shaped_noise_raises_nothing_but_http_error(data):
    ours(data)


statuses = st.integers(200, 599).filter(lambda s: s not in (204, 304))


@FAST
@given(statuses, st.lists(st.tuples(tokens.filter(lambda n: n.lower() not in RESERVED
                                                   | {b"connection"}), field_values), max_size=5),
       st.binary(max_size=40))
def test_h11_as_a_client_reads_our_responses(status, headers, body):
    client = h11.Connection(h11.CLIENT)
    client.send(h11.Request(method="GET", target="/", headers=[("Host", "x")]))
    client.send(h11.EndOfMessage())
    client.receive_data(format_response(status, headers, body))
    response = client.next_event()
    assert response.status_code == status
    assert [(n, v) for n, v in response.headers if n != b"content-length"] == \
        [(n.lower(), v) for n, v in headers]
    received = b""
    while not isinstance(event := client.next_event(), h11.EndOfMessage):
        received += bytes(event.data)
    assert received == body
