"""Tests of barelab.built.http_objects, the Request and Response objects of chapter 09.

Unit tests pin each rule to what the chapter says it does (and to the RFC it quotes);
property tests round-trip urlencoded and multipart bodies through an encoder written here,
independently of the parser; a differential test compares the multipart parser with
Werkzeug's on the same bytes. Every app-level test runs its app inside
``wsgiref.validate.validator``, so a PEP 3333 slip fails the test even when the asserts pass.
"""

from __future__ import annotations

import io
import os
from datetime import datetime, timedelta, timezone
from urllib.parse import quote, urlencode
from wsgiref.validate import validator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import barelab
from barelab import build_environ, call_wsgi
from barelab.built.http_objects import (
    BadRequest, ContentTooLarge, Headers, HTTPError, JSONResponse, MethodNotAllowed,
    MultiDict, NotFound, RedirectResponse, Request, RequestHead, Response, UnsupportedMediaType,
    UploadedFile, parse_cookie_header, parse_json, parse_multipart, parse_options,
    parse_urlencoded, read_body, request_url, wsgi_app)

FAST = settings(max_examples=int(os.environ.get("HTTP_OBJECTS_EXAMPLES", "150")), deadline=None,
                database=None, suppress_health_check=[HealthCheck.too_slow])


def request_for(method="GET", path="/", *, body=b"", headers=(), **environ):
    env = build_environ(method, path, body=body, headers=headers)
    env.update(environ)
    return Request(env)


def status_of(call):
    """Run ``call``; return the HTTPError status it raised (or fail)."""
    with pytest.raises(HTTPError) as info:
        call()
    return info.value.status


def run(response, method="GET", path="/", **kwargs):
    """Send a Response (or any WSGI app) through validator and barelab.call_wsgi."""
    return call_wsgi(validator(response), method, path, **kwargs)


# -- MultiDict and Headers ------------------------------------------------------------------

def test_multidict_keeps_repeats_and_order():
    d = MultiDict([("a", "1"), ("b", ""), ("a", "2")])
    assert d["a"] == "1" and d.get("a") == "1" and d.getall("a") == ["1", "2"]
    assert d.getlist("a") == ["1", "2"] and d.getall("zz") == []
    assert list(d) == ["a", "b"] and len(d) == 2 and "b" in d and d["b"] == ""
    assert d.multi_items() == [("a", "1"), ("b", ""), ("a", "2")]
    with pytest.raises(KeyError):
        d["missing"]
    assert MultiDict({"x": "1"})["x"] == "1"


def test_headers_ignore_case_and_come_from_environ():
    env = build_environ("POST", "/", headers=[("X-Thing", "1"), ("Content-Type", "text/plain")],
                        body=b"abc")
    headers = Headers.from_environ(env)
    assert headers["x-thing"] == "1" and headers.get("X-THING") == "1"
    assert headers["content-type"] == "text/plain" and headers["Content-Length"] == "3"
    assert "HTTP_X_THING" not in headers and len(Headers([("A", "1"), ("a", "2")])) == 1
    assert Headers([("A", "1"), ("a", "2")]).getall("A") == ["1", "2"]


# -- the head of a request -------------------------------------------------------------------

def test_method_path_and_root_path_are_decoded_as_utf8():
    request = request_for("DELETE", "/caf%C3%A9/%E2%82%AC", SCRIPT_NAME="/app\xc3\xa9")
    assert request.method == "DELETE"
    assert request.path == "/café/€" and request.root_path == "/appé"


@pytest.mark.parametrize("path", ["/caf%E9", "/%FF", "/%C3", "/%ED%A0%80"])
def test_a_path_that_is_not_utf8_is_400(path):
    assert status_of(lambda: request_for("GET", path).path) == 400


def test_a_path_outside_latin1_from_a_broken_server_is_400():
    assert status_of(lambda: Request({"PATH_INFO": "/\u20ac", "REQUEST_METHOD": "GET"}).path) == 400


def test_query_is_a_multidict_with_blank_values_plus_and_percent():
    request = request_for("GET", "/?tag=a&tag=b&draft=&q=caf%C3%A9+au+lait&&flag&a%2Bb=1%2B1&x=%zz")
    query = request.query
    assert query.getall("tag") == ["a", "b"] and query["draft"] == "" and query["flag"] == ""
    assert query["q"] == "café au lait" and query["a+b"] == "1+1"
    assert query["x"] == "%zz", "an invalid escape stays as it is (URL Standard)"
    assert request.query_string.startswith("tag=a")


def test_query_does_not_split_on_semicolons():
    assert request_for("GET", "/?a=1;b=2").query.multi_items() == [("a", "1;b=2")]


def test_raw_non_ascii_bytes_in_the_query_are_read_as_utf8_once():
    env = build_environ("GET", "/")
    env["QUERY_STRING"] = "q=caf\xc3\xa9"          # raw UTF-8 bytes, as latin-1 characters
    assert Request(env).query["q"] == "café"


def test_a_query_that_is_not_utf8_is_400():
    assert status_of(lambda: request_for("GET", "/?q=%E9").query) == 400


def test_parse_urlencoded_matches_urlencode_on_round_trip():
    pairs = [("a b", "c&d"), ("é", "=+%"), ("", ""), ("k", "")]
    assert parse_urlencoded(urlencode(pairs).encode()).multi_items() == pairs


_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=20)  # no lone surrogates


@FAST
@given(st.lists(st.tuples(_text, _text), max_size=8), st.booleans())
def test_urlencoded_round_trip_property(pairs, plus_for_space):
    encode = (lambda t: quote(t, safe="").replace("%20", "+")) if plus_for_space else \
        (lambda t: quote(t, safe=""))
    encoded = "&".join(f"{encode(k)}={encode(v)}" for k, v in pairs)
    # an empty pair encodes as "=", which is kept: only empty pieces are skipped
    assert parse_urlencoded(encoded.encode("ascii")).multi_items() == pairs


def test_cookies_first_wins_quotes_kept_malformed_skipped():
    cookies = request_for("GET", "/", headers=[
        ("Cookie", 'sid=new; theme=dark; sid=old; note="a\\012b"; broken; =x; e=')]).cookies
    assert cookies["sid"] == "new" and cookies.getall("sid") == ["new", "old"]
    assert cookies["note"] == '"a\\012b"', "no quote or escape magic"
    assert "broken" not in cookies and "" not in cookies and cookies["e"] == ""


def test_cookies_never_raise():
    assert parse_cookie_header("a=\xff\xfe; b=2")["b"] == "2"
    assert parse_cookie_header(";;;  ; =;").multi_items() == []
    assert request_for("GET", "/").cookies.multi_items() == []


def test_cookie_header_values_are_utf8():
    assert parse_cookie_header("name=Zo\xc3\xab")["name"] == "Zoë"


def test_url_reconstruction_follows_pep3333_and_quotes_bytes():
    env = build_environ("GET", "/caf%C3%A9?x=1")
    assert request_url(env) == "http://127.0.0.1/caf%C3%A9?x=1"
    del env["HTTP_HOST"]
    env.update(SERVER_NAME="example.org", SERVER_PORT="8080")
    assert request_url(env) == "http://example.org:8080/caf%C3%A9?x=1"
    env.update({"wsgi.url_scheme": "https", "SERVER_PORT": "443", "QUERY_STRING": "",
                "SCRIPT_NAME": "/app"})
    assert request_url(env) == "https://example.org/app/caf%C3%A9"
    env.update(SERVER_PORT="80")
    assert request_url(env) == "https://example.org:80/app/caf%C3%A9"
    assert RequestHead(env).url == request_url(env)


def test_a_question_mark_in_the_path_is_quoted_in_the_url():
    assert request_for("GET", "/a%3Fb").url == "http://127.0.0.1/a%3Fb"


# -- the body --------------------------------------------------------------------------------

def body_env(body, **keys):
    return {"wsgi.input": io.BytesIO(body), **keys}


def test_body_reads_exactly_content_length():
    stream = io.BytesIO(b"hello, and more")
    assert read_body({"wsgi.input": stream, "CONTENT_LENGTH": "5"}) == b"hello"
    assert stream.read() == b", and more", "nothing past CONTENT_LENGTH is read"


def test_no_content_length_reads_nothing_unless_input_terminated():
    assert read_body(body_env(b"hello")) == b""
    assert read_body(body_env(b"hello", CONTENT_LENGTH="")) == b""
    assert read_body(body_env(b"hello", **{"wsgi.input_terminated": True})) == b"hello"


@pytest.mark.parametrize("length", ["-3", "five", "1e3", "+5", "0x10", "5, 5", "１"])
def test_bad_content_length_is_400(length):
    assert status_of(lambda: read_body(body_env(b"hello", CONTENT_LENGTH=length))) == 400


def test_short_body_is_400_and_limits_are_413():
    assert status_of(lambda: read_body(body_env(b"hello", CONTENT_LENGTH="9"))) == 400
    assert status_of(lambda: read_body(body_env(b"hello", CONTENT_LENGTH="5"), 4)) == 413
    terminated = body_env(b"x" * 100_000, **{"wsgi.input_terminated": True})
    assert status_of(lambda: read_body(terminated, 70_000)) == 413


def test_a_413_is_raised_before_reading():
    stream = io.BytesIO(b"hello")
    with pytest.raises(ContentTooLarge):
        read_body({"wsgi.input": stream, "CONTENT_LENGTH": "5"}, 4)
    assert stream.tell() == 0


class TrickleStream(io.BytesIO):
    """A wsgi.input that returns at most 3 bytes per read, as a slow socket may."""

    def read(self, size=-1):
        return super().read(min(size, 3) if size and size > 0 else 3)


def test_body_is_read_in_a_loop_from_a_stream_that_returns_short_reads():
    assert read_body({"wsgi.input": TrickleStream(b"0123456789"), "CONTENT_LENGTH": "10"}) == \
        b"0123456789"


def test_body_is_read_once_and_shared_by_requests_over_one_environ():
    env = build_environ("POST", "/", body=b"abc")
    first, second = Request(env), Request(env)
    assert first.body == b"abc" and second.body == b"abc" and first.body is second.body


def test_a_body_error_is_kept_and_raised_again():
    env = build_environ("POST", "/", body=b"abc")
    env["CONTENT_LENGTH"] = "9"
    request = Request(env)
    assert status_of(lambda: request.body) == 400
    assert status_of(lambda: Request(env).body) == 400


def test_max_body_option_gives_413():
    request = Request(build_environ("POST", "/", body=b"x" * 10), max_body=5)
    assert status_of(lambda: request.body) == 413


# -- parameters, forms and multipart ---------------------------------------------------------

@pytest.mark.parametrize("value, expected", [
    ("text/plain", ("text/plain", {})),
    ("Text/HTML; Charset=UTF-8", ("text/html", {"charset": "UTF-8"})),
    ('multipart/form-data; boundary="a b;c"', ("multipart/form-data", {"boundary": "a b;c"})),
    ('form-data; name="f"; filename="C:\\dir\\a.txt"',
     ("form-data", {"name": "f", "filename": "C:\\dir\\a.txt"})),
    ('form-data; name="a\\"b"', ("form-data", {"name": 'a"b'})),
    ("a/b ;  x=1 ; ; y=2", ("a/b", {"x": "1", "y": "2"})),
    ("", ("", {})),
])
def test_parse_options(value, expected):
    assert parse_options(value) == expected


@pytest.mark.parametrize("value", ["text/plain; charset", 'a/b; x="unterminated',
                                   "a/b; x=1; X=2", "a/b; x=a b", "a/b; =1"])
def test_parse_options_refuses_malformed_or_repeated_parameters(value):
    assert status_of(lambda: parse_options(value)) == 400


def test_urlencoded_form():
    request = request_for("POST", "/", body=b"a=1&a=2&b=&c=caf%C3%A9",
                          headers=[("Content-Type", "application/x-www-form-urlencoded")])
    assert request.form.getall("a") == ["1", "2"] and request.form["b"] == ""
    assert request.form["c"] == "café" and request.files.multi_items() == []


def test_form_is_empty_for_other_content_types():
    for content_type in ("text/plain", "application/json", ""):
        headers = [("Content-Type", content_type)] if content_type else []
        assert request_for("POST", "/", body=b"a=1", headers=headers).form.multi_items() == []


FORM = (b"--xyzzy\r\n"
        b'Content-Disposition: form-data; name="title"\r\n\r\n'
        b"Caf\xc3\xa9 notes\r\n"
        b"--xyzzy\r\n"
        b'Content-Disposition: form-data; name="upload"; filename="notes.txt"\r\n'
        b"Content-Type: text/plain\r\n\r\n"
        b"line one\r\nline two\r\n"
        b"\r\n--xyzzy--\r\n")


@pytest.mark.parametrize("content_type", ['multipart/form-data; boundary="xyzzy"',
                                          "multipart/form-data; boundary=xyzzy",
                                          "Multipart/Form-Data; BOUNDARY=xyzzy"])
def test_multipart_fields_and_files(content_type):
    request = request_for("POST", "/", body=FORM, headers=[("Content-Type", content_type)])
    assert request.form.multi_items() == [("title", "Café notes")]
    upload = request.files["upload"]
    assert isinstance(upload, UploadedFile) and upload.filename == "notes.txt"
    assert upload.content_type == "text/plain" and upload.data == b"line one\r\nline two\r\n"
    assert upload.size == 20 and upload.headers["content-type"] == "text/plain"


def test_multipart_preamble_epilogue_padding_and_empty_values():
    body = (b"preamble\r\n--b \t\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n\r\n"
            b"--b\r\nContent-Disposition: form-data; name=\"f\"; filename=\"\"\r\n\r\n"
            b"\r\n--b--epilogue\r\n--b\r\njunk")
    fields, files = parse_multipart(body, "b")
    assert fields.multi_items() == [("a", "")]
    assert files["f"].filename == "" and files["f"].data == b""
    assert files["f"].content_type == "application/octet-stream"


def test_multipart_with_no_parts_is_empty():
    assert parse_multipart(b"--b--\r\n", "b")[0].multi_items() == []


@pytest.mark.parametrize("body, boundary", [
    (FORM, None), (FORM, ""), (FORM, "x" * 71), (FORM, "bad\x00"), (FORM, "ends with space "),
    (FORM[:-12], "xyzzy"),                                              # truncated
    (FORM.replace(b"line two", b"\r\n--xyzzyX"), "xyzzy"),              # boundary inside
    (FORM.replace(b"\r\n", b"\n"), "xyzzy"),                            # bare LF
    (FORM.replace(b'name="title"', b'id="title"'), "xyzzy"),            # no name
    (FORM.replace(b"form-data; name=\"title\"", b"attachment; name=\"t\""), "xyzzy"),
    (FORM.replace(b"Caf\xc3\xa9", b"Caf\xe9"), "xyzzy"),                # field not UTF-8
    (FORM.replace(b"Content-Type: text/plain", b"Content-Type text/plain"), "xyzzy"),
    (FORM.replace(b"Content-Type: text/plain\r\n\r\n", b"Content-Type: text/plain\r\n"),
     "xyzzy"),                                                          # no empty line
    (b"no boundary here", "xyzzy"), (b"", "xyzzy"),
    (b"--xyzzy\r\n\r\nno headers\r\n--xyzzy--", "xyzzy"),              # no Content-Disposition
    (FORM.replace(b'name="title"', b'name="title"; name="again"'), "xyzzy"),
])
def test_malformed_multipart_is_400(body, boundary):
    assert status_of(lambda: parse_multipart(body, boundary)) == 400


def test_too_many_parts_is_413():
    part = b'--b\r\nContent-Disposition: form-data; name="x"\r\n\r\n1\r\n'
    assert parse_multipart(part * 5 + b"--b--", "b", max_parts=5)[0].getall("x") == ["1"] * 5
    assert status_of(lambda: parse_multipart(part * 6 + b"--b--", "b", max_parts=5)) == 413


def test_multipart_without_boundary_parameter_in_request_is_400():
    request = request_for("POST", "/", body=FORM, headers=[("Content-Type", "multipart/form-data")])
    assert status_of(lambda: request.form) == 400


def encode_multipart(fields, files, boundary):
    """A small multipart/form-data encoder, written from RFC 7578 independently of the parser."""
    out = []
    for name, value in fields:
        out.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'
                   .encode() + value.encode("utf-8") + b"\r\n")
    for name, filename, content_type, data in files:
        out.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; '
                   f'filename="{filename}"\r\nContent-Type: {content_type}\r\n\r\n'
                   .encode() + data + b"\r\n")
    return b"".join(out) + f"--{boundary}--\r\n".encode()


_names = st.text(st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters='"\\'),
                 max_size=12)
_values = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)
_boundaries = st.from_regex(r"[0-9A-Za-z'()+_,\-./:=?]{1,40}", fullmatch=True)


@FAST
@given(st.lists(st.tuples(_names, _values), max_size=5),
       st.lists(st.tuples(_names, _names, st.sampled_from(["text/plain", "image/png"]),
                          st.binary(max_size=60)), max_size=3),
       _boundaries)
def test_multipart_round_trip_property(fields, files, boundary):
    body = encode_multipart(fields, files, boundary)
    delimiter = b"\r\n--" + boundary.encode()
    contents = [v.encode() for _, v in fields] + [f[3] for f in files]
    if any(delimiter in b"\r\n" + c + b"\r\n" for c in contents):
        return  # the sender must pick a boundary absent from the content (RFC 2046 §5.1.1)
    parsed_fields, parsed_files = parse_multipart(body, boundary)
    assert parsed_fields.multi_items() == fields
    assert [(n, f.filename, f.content_type, f.data) for n, f in parsed_files.multi_items()] == files


@FAST
@given(st.binary(max_size=200), _boundaries)
def test_multipart_parser_raises_only_http_errors_on_any_bytes(body, boundary):
    try:
        parse_multipart(body, boundary)
    except HTTPError as error:
        assert error.status in (400, 413)


def test_multipart_agrees_with_werkzeug():
    formparser = pytest.importorskip("werkzeug.formparser")
    parser = formparser.MultiPartParser()
    fields, files = parser.parse(io.BytesIO(FORM), b"xyzzy", len(FORM))
    ours_fields, ours_files = parse_multipart(FORM, "xyzzy")
    assert list(fields.items(multi=True)) == ours_fields.multi_items()
    theirs = files["upload"]
    assert (theirs.filename, theirs.read()) == (ours_files["upload"].filename,
                                                ours_files["upload"].data)


# -- JSON ------------------------------------------------------------------------------------

def json_request(body, content_type="application/json"):
    return request_for("POST", "/", body=body, headers=[("Content-Type", content_type)])


@pytest.mark.parametrize("content_type", ["application/json", "application/json; charset=utf-8",
                                          "Application/JSON", "application/merge-patch+json",
                                          "application/problem+json"])
def test_json_accepts_json_media_types(content_type):
    assert json_request(b'{"a": [1, "\xc3\xa9"]}', content_type).json == {"a": [1, "é"]}


@pytest.mark.parametrize("content_type", ["text/plain", "", "application/x-www-form-urlencoded",
                                          "text/json+xml", "application/jsonx"])
def test_json_refuses_other_media_types_with_415(content_type):
    assert status_of(lambda: json_request(b"{}", content_type).json) == 415


@pytest.mark.parametrize("body", [b"", b"  ", b'{"a": 1', b"{'a': 1}", b'{"a": NaN}',
                                  b"[Infinity]", b"-Infinity", b'"\xe9"', b"[" * 50_000,
                                  b"\xef\xbb\xbf{}", b'{"a": 1} x'])
def test_invalid_json_is_400(body):
    assert status_of(lambda: json_request(body).json) == 400


def test_invalid_json_message_says_where():
    with pytest.raises(BadRequest) as info:
        parse_json(b'{\n  "a": 1,\n}')
    assert "line 3 column 1" in info.value.detail


def test_invalid_json_through_an_app_is_a_400_response():
    app = wsgi_app(lambda request: JSONResponse(request.json))
    bad = run(app, "POST", "/", body=b'{"a":', headers=[("Content-Type", "application/json")])
    assert bad.status_code == 400 and b"invalid JSON" in bad.body
    good = run(app, "POST", "/", body=b'{"a": 1}', headers=[("Content-Type", "application/json")])
    assert good.status_code == 200 and good.json() == {"a": 1}


# -- Response --------------------------------------------------------------------------------

def test_str_body_is_utf8_with_charset_and_length():
    call = run(Response("Zoë"))
    assert call.status == "200 OK" and call.body == "Zoë".encode()
    assert call.header("content-type") == "text/plain; charset=utf-8"
    assert call.header("content-length") == "4"
    assert run(Response("<p>", content_type="text/html")).header("content-type") == \
        "text/html; charset=utf-8"


def test_bytes_body_gets_content_length_and_octet_stream():
    call = run(Response(b"\x00\x01", 201, [("X-A", "1")]))
    assert call.status == "201 Created" and call.header("content-length") == "2"
    assert call.header("content-type") == "application/octet-stream"


def test_iterable_body_streams_without_length_and_close_reaches_the_source():
    closed = []

    def chunks():
        try:
            yield "a"
            yield b"b"
        finally:
            closed.append(True)

    call = run(Response(chunks(), content_type="text/plain"))
    assert call.body == b"ab" and call.header("content-length") is None and closed == [True]


def test_close_reaches_a_source_that_never_started():
    closed = []

    class Source:
        def __iter__(self):
            return iter([b"x"])

        def close(self):
            closed.append(True)

    Response(Source())({}, lambda *a: None).close()
    assert closed == [True]


@pytest.mark.parametrize("status", [204, 304])
def test_204_and_304_have_no_body_length_or_type(status):
    call = run(Response(status=status, headers=[("ETag", '"v1"')]))
    assert call.body == b"" and call.headers == [("ETag", '"v1"')]
    with pytest.raises(ValueError):
        Response("body", status)
    with pytest.raises(ValueError):
        Response([b"streamed"], status)


def test_content_length_on_204_is_refused_but_kept_on_304():
    with pytest.raises(ValueError):
        Response(status=204, headers=[("Content-Length", "0")])
    assert run(Response(status=304, headers=[("Content-Length", "120")])).header(
        "content-length") == "120"


def test_explicit_content_length_must_match():
    assert run(Response(b"abc", headers=[("Content-Length", "3")])).headers.count(
        ("Content-Length", "3")) == 1
    with pytest.raises(ValueError):
        Response(b"abc", headers=[("Content-Length", "4")])({}, lambda *a: None)


@pytest.mark.parametrize("name, value", [
    ("X-A", "a\r\nSet-Cookie: x=1"), ("X-A", "a\nb"), ("X-A", "a\x00"), ("Bad Name", "1"),
    ("X-A:", "1"), ("Connection", "close"), ("Transfer-Encoding", "chunked"),
    ("Keep-Alive", "5"), ("X-A", "日本"), ("X-A", " padded"),
])
def test_bad_headers_are_refused(name, value):
    with pytest.raises(ValueError):
        Response("x", headers=[(name, value)])


def test_header_types_and_status_are_checked():
    with pytest.raises(TypeError):
        Response("x", headers=[(b"X-A", "1")])
    for status in (100, 199, 600, "200", 200.0, True):
        with pytest.raises(ValueError):
            Response("x", status)


def test_header_helpers():
    response = Response("x", headers={"X-A": "1"})
    response.add_header("X-A", "2")
    assert response.header("x-a") == "1"
    response.set_header("x-a", "3")
    assert [v for n, v in response.headers if n.lower() == "x-a"] == ["3"]


def test_a_dict_would_lose_set_cookie_lines_but_response_keeps_them():
    response = Response("x")
    response.set_cookie("a", "1")
    response.set_cookie("b", "2")
    call = run(response)
    assert [v.split(";")[0] for n, v in call.headers if n == "Set-Cookie"] == ["a=1", "b=2"]
    assert len(dict(call.headers)) < len(call.headers), "the trap the chapter shows"


def test_set_cookie_attributes():
    response = Response("x")
    response.set_cookie("sid", "abc", max_age=timedelta(days=1), httponly=True, secure=True,
                        domain="example.org", path="/app", samesite="strict",
                        expires=datetime(2030, 1, 2, 3, 4, 5, tzinfo=timezone.utc))
    assert response.header("set-cookie") == (
        "sid=abc; Max-Age=86400; Expires=Wed, 02 Jan 2030 03:04:05 GMT; Path=/app; "
        "Domain=example.org; Secure; SameSite=Strict; HttpOnly")
    plain = Response("x")
    plain.set_cookie("a", '"quoted"', samesite=None, path=None)
    assert plain.header("set-cookie") == 'a="quoted"'


def test_delete_cookie_expires_it_at_the_same_path():
    response = Response("x")
    response.delete_cookie("sid", path="/app")
    assert response.header("set-cookie") == (
        "sid=; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Path=/app; SameSite=Lax")


@pytest.mark.parametrize("name, value, options", [
    ("my cookie", "1", {}), ("a;b", "1", {}), ("", "1", {}), ("é", "1", {}),
    ("a", "two words", {}), ("a", '"two words"', {}), ("a", "x,y", {}), ("a", "x;y", {}),
    ("a", 'x"y', {}), ("a", "x\\y", {}), ("a", "Zoë", {}), ("a", '"unbalanced', {}),
    ("a", "1", {"samesite": "None"}), ("a", "1", {"samesite": "Sometimes"}),
    ("__Secure-a", "1", {}), ("__Host-a", "1", {}),
    ("__Host-a", "1", {"secure": True, "path": "/app"}),
    ("__Host-a", "1", {"secure": True, "domain": "example.org"}),
    ("a", "1", {"path": "/; Domain=evil"}), ("a", "1", {"domain": "x\r\nSet-Cookie: y=1"}),
    ("a", "1", {"expires": datetime(2030, 1, 1)}),
])
def test_set_cookie_refuses_what_browsers_would_drop_or_misread(name, value, options):
    with pytest.raises(ValueError):
        Response("x").set_cookie(name, value, **options)


def test_samesite_none_with_secure_and_host_prefix_done_right_are_fine():
    response = Response("x")
    response.set_cookie("embed", "1", samesite="None", secure=True)
    response.set_cookie("__Host-sid", "1", secure=True)
    assert [v for n, v in response.headers if n == "Set-Cookie"] == [
        "embed=1; Path=/; Secure; SameSite=None", "__Host-sid=1; Path=/; Secure; SameSite=Lax"]


def test_json_response_is_utf8_without_charset_and_refuses_nan():
    call = run(JSONResponse({"name": "Zoë", "n": [1]}, 201, [("X-A", "1")]))
    assert call.status_code == 201 and call.header("content-type") == "application/json"
    assert "Zoë".encode() in call.body and call.json() == {"name": "Zoë", "n": [1]}
    assert call.header("content-length") == str(len(call.body))
    with pytest.raises(ValueError):
        JSONResponse({"x": float("nan")})


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_redirects(status):
    call = run(RedirectResponse("/next?a=1#top", status))
    assert call.status_code == status and call.header("location") == "/next?a=1#top"
    assert call.header("content-type").startswith("text/plain")


def test_redirect_default_is_302_and_non_ascii_is_percent_encoded():
    call = run(RedirectResponse("/café?q=a b&x=%2F"))
    assert call.status_code == 302 and call.header("location") == "/caf%C3%A9?q=a%20b&x=%2F"


@pytest.mark.parametrize("location", ["/a\r\nSet-Cookie: x=1", "/a\nb", "/a\rb", "/a\x00",
                                      "/a\tb", "/a\x7f"])
def test_redirect_refuses_control_characters(location):
    with pytest.raises(ValueError):
        RedirectResponse(location)


@pytest.mark.parametrize("status", [200, 300, 304, 305, 400])
def test_redirect_refuses_non_redirect_statuses(status):
    with pytest.raises(ValueError):
        RedirectResponse("/", status)


# -- errors and wsgi_app ---------------------------------------------------------------------

def test_http_errors_are_exceptions_and_responses():
    error = NotFound("no page at /x")
    assert isinstance(error, Exception) and error.status == 404 and repr(error) == \
        "NotFound(404, 'no page at /x')"
    call = run(error)
    assert call.status == "404 Not Found" and call.body == b"404 Not Found\nno page at /x\n"
    assert call.header("content-type") == "text/plain; charset=utf-8"
    assert run(HTTPError(418, "short and stout")).status_code == 418
    assert run(UnsupportedMediaType()).body == b"415 Unsupported Media Type\n"
    with pytest.raises(ValueError):
        HTTPError(302)


def test_method_not_allowed_has_allow():
    call = run(MethodNotAllowed(["GET", "HEAD"]))
    assert call.status_code == 405 and call.header("allow") == "GET, HEAD"


def test_wsgi_app_turns_raised_http_errors_into_responses_and_keeps_the_name():
    def handler(request):
        raise BadRequest("nope")

    app = wsgi_app(handler)
    assert app.__name__ == "handler"
    assert run(app).status_code == 400


def test_wsgi_app_lets_other_exceptions_through():
    app = wsgi_app(lambda request: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        call_wsgi(app)


# -- a whole app, in-process and over a real socket, under validator -------------------------

@wsgi_app
def sample_app(request):
    if request.path == "/echo":
        data = request.json if request.content_type == "application/json" else request.form
        return JSONResponse({"data": dict(data), "files": {k: f.data.decode()
                                                           for k, f in request.files.items()},
                             "query": request.query.multi_items(),
                             "cookie": request.cookies.get("sid")})
    if request.path == "/login":
        response = RedirectResponse("/me", 303)
        response.set_cookie("sid", "abc", httponly=True)
        response.set_cookie("theme", "dark")
        return response
    if request.path == "/ping":
        return Response(status=204)
    if request.path == "/page":
        if request.headers.get("if-none-match") == '"v1"':
            return Response(status=304, headers=[("ETag", '"v1"')])
        return Response("<p>page</p>", headers=[("ETag", '"v1"')], content_type="text/html")
    if request.path == "/stream":
        return Response((f"{n}\n" for n in range(3)), content_type="text/plain")
    raise NotFound(request.path)


@pytest.mark.parametrize("method, path, kwargs, status", [
    ("GET", "/echo?a=1&a=2", {"headers": [("Cookie", "sid=s1; sid=s2")]}, 200),
    ("POST", "/echo", {"body": b"x=1", "headers": [
        ("Content-Type", "application/x-www-form-urlencoded")]}, 200),
    ("POST", "/echo", {"body": FORM, "headers": [
        ("Content-Type", "multipart/form-data; boundary=xyzzy")]}, 200),
    ("POST", "/echo", {"body": b"{", "headers": [("Content-Type", "application/json")]}, 400),
    ("POST", "/echo", {"body": b"{}", "headers": [("Content-Type", "text/plain")]}, 200),
    ("GET", "/login", {}, 303), ("GET", "/ping", {}, 204), ("GET", "/page", {}, 200),
    ("GET", "/page", {"headers": [("If-None-Match", '"v1"')]}, 304),
    ("GET", "/stream", {}, 200), ("GET", "/nowhere", {}, 404), ("GET", "/caf%E9", {}, 400),
])
def test_validator_finds_nothing_in_process(method, path, kwargs, status):
    call = run(sample_app, method, path, **kwargs)   # validator raises on any PEP 3333 slip
    assert call.status_code == status
    assert call.errors_output == ""


@pytest.fixture
def server():
    handle = barelab.serve(validator(sample_app), name="test_http_objects")
    yield handle
    handle.stop()


def test_over_a_real_socket(server):
    login = barelab.raw_exchange(server, b"GET /login HTTP/1.1\r\nHost: x\r\n"
                                         b"Connection: close\r\n\r\n")
    head = login.received.partition(b"\r\n\r\n")[0]
    assert head.startswith(b"HTTP/1.1 303 ")
    assert head.count(b"\r\nSet-Cookie: ") == 2, "two separate Set-Cookie lines on the wire"
    me = barelab.http_request(server, "POST", "/echo?q=1", json={"k": "Zoë"},
                              headers=[("Cookie", "sid=abc; theme=dark")])
    assert me.status == 200 and me.json() == {"data": {"k": "Zoë"}, "files": {},
                                              "query": [["q", "1"]], "cookie": "abc"}
    upload = barelab.http_request(server, "POST", "/echo", body=FORM, headers=[
        ("Content-Type", 'multipart/form-data; boundary="xyzzy"')])
    assert upload.json()["files"] == {"upload": "line one\r\nline two\r\n"}
    empty = barelab.raw_exchange(server, b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n"
                                         b"GET /page HTTP/1.1\r\nHost: x\r\nIf-None-Match: \"v1\""
                                         b"\r\nConnection: close\r\n\r\n")
    assert empty.responses == [204, 304]
    assert b"Content-Length" not in empty.received, "204 and 304 carry no Content-Length"
    assert empty.received.endswith(b"\r\n\r\n"), "and no body"
    head_only = barelab.raw_exchange(server, b"HEAD /page HTTP/1.1\r\nHost: x\r\n"
                                             b"Connection: close\r\n\r\n")
    assert b"Content-Length: 11\r\n" in head_only.received
    assert head_only.received.endswith(b"\r\n\r\n"), "HEAD: the server drops the body"
    chunked = barelab.raw_exchange(server, b"POST /echo HTTP/1.1\r\nHost: x\r\n"
                                           b"Content-Type: application/x-www-form-urlencoded\r\n"
                                           b"Transfer-Encoding: chunked\r\nConnection: close\r\n"
                                           b"\r\n3\r\na=1\r\n0\r\n\r\n")
    assert chunked.status == 200 and b'"data": {"a": "1"}' in chunked.received, \
        "a chunked body is read through wsgi.input_terminated"
    assert server.log.errors == [], server.log
