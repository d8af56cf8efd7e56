"""Tests of barelab.built.static_files, the file server of chapter 04.

Every app here runs inside ``wsgiref.validate.validator``, in-process through
``barelab.call_wsgi`` and over a socket through barelab's server (whose ``environ`` has a
percent-decoded ``PATH_INFO`` and a ``wsgi.file_wrapper``). The property that matters most
is checked with hypothesis: whatever path arrives, the app serves nothing but files under
its root, and answers every request with a 2xx, 3xx or 4xx, never an exception.
"""

from __future__ import annotations

import os
import warnings
from wsgiref.util import FileWrapper
from wsgiref.validate import WSGIWarning, validator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import barelab
from barelab.built.http_wire import BadRequest
from barelab.built.static_files import (
    FileChunks, NotFound, content_type, http_date, not_modified, path_segments,
    resolve_under, static_files)

SECRET = b"db_password=hunter2\n"


@pytest.fixture
def site(tmp_path):
    public = tmp_path / "public"
    (public / "css").mkdir(parents=True)
    (public / "empty").mkdir()
    (public / "index.html").write_bytes(b"<h1>Welcome</h1>\n")
    (public / "css" / "site.css").write_bytes(b"h1 { color: teal; }\n")
    (public / "menu.txt").write_text("café 2.50\n", encoding="utf-8")
    (public / "caf\u00e9.txt").write_bytes(b"accent\n")
    (public / ".env").write_bytes(b"TOKEN=1\n")
    (tmp_path / "secret.txt").write_bytes(SECRET)
    (tmp_path / "public-old").mkdir()
    (tmp_path / "public-old" / "x.txt").write_bytes(SECRET)
    (public / "leak.txt").symlink_to(tmp_path / "secret.txt")
    (public / "inside.txt").symlink_to(public / "menu.txt")
    return public


def call(app, method="GET", path="/", **kwargs):
    """Call through the validator, with its warnings turned into failures."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", WSGIWarning)
        return barelab.call_wsgi(validator(app), method, path, **kwargs)


# -- path_segments: the text check -----------------------------------------------------------

@pytest.mark.parametrize("path, segments", [
    ("/", []), ("", []), ("/a/b.txt", ["a", "b.txt"]), ("//a///b", ["a", "b"]),
    ("/caf\xc3\xa9", ["caf\u00e9"]), ("/a/b/", ["a", "b"]), ("/a..b", ["a..b"]),
])
def test_path_segments_accepts_plain_paths(path, segments):
    assert path_segments(path) == segments


@pytest.mark.parametrize("path", [
    "/..", "/../x", "/a/../../x", "/.", "/a/./b", "/..\\x", "/a\\b", "/x\x00", "/%2e%2e",
    "/%2E%2E%2Fx", "/a%2fb", "/a%5cb", "/a%00", "/\xff", "/\xc3",
])
def test_path_segments_refuses_what_could_leave_the_root(path):
    with pytest.raises(BadRequest):
        path_segments(path)


def test_hidden_names_are_not_found_not_bad():
    with pytest.raises(NotFound):
        path_segments("/.env")
    with pytest.raises(NotFound):
        path_segments("/.git/config")


# -- resolve_under: the file check -----------------------------------------------------------

def test_resolve_under_follows_symlinks_and_stays_inside(site):
    assert resolve_under(str(site), ["inside.txt"]) == os.path.realpath(site / "menu.txt")
    with pytest.raises(NotFound):
        resolve_under(str(site), ["leak.txt"])


def test_a_sibling_folder_with_a_common_prefix_is_outside(site):
    with pytest.raises(NotFound):
        resolve_under(str(site), ["..", "public-old", "x.txt"])


def test_root_given_through_a_symlink_still_works(site, tmp_path):
    (tmp_path / "alias").symlink_to(site)
    app = static_files(tmp_path / "alias")
    assert call(app, path="/menu.txt").status_code == 200
    assert call(app, path="/leak.txt").status_code == 404


def test_root_must_be_a_folder(site):
    with pytest.raises(ValueError):
        static_files(site / "menu.txt")


# -- serving ------------------------------------------------------------------------------------

def test_a_file_with_type_length_and_date(site):
    result = call(static_files(site), path="/menu.txt")
    assert result.status == "200 OK"
    assert result.body == "café 2.50\n".encode()
    assert result.header("Content-Type") == "text/plain; charset=utf-8"
    assert result.header("Content-Length") == str(len(result.body))
    mtime = int(os.stat(site / "menu.txt").st_mtime)
    assert result.header("Last-Modified") == http_date(mtime)


def test_a_utf8_name_is_found(site):
    result = call(static_files(site), path="/caf%C3%A9.txt")
    assert result.status_code == 200 and result.body == b"accent\n"


@pytest.mark.parametrize("path, status", [
    ("/../secret.txt", 400), ("/%2e%2e%2fsecret.txt", 400), ("/css/%2e%2e/%2e%2e/secret.txt", 400),
    ("/..%5csecret.txt", 400), ("/%00", 400), ("/menu.txt%00.html", 400), ("/%FF", 400),
    ("/leak.txt", 404), ("/.env", 404), ("/nothing.txt", 404), ("/empty/", 404),
    ("/menu.txt/", 404), ("/%252e%252e%252fsecret.txt", 400),
])
def test_attacks_and_misses_get_a_4xx_and_never_the_secret(site, path, status):
    result = call(static_files(site), path=path)
    assert result.status_code == status
    assert SECRET not in result.body
    assert result.header("Content-Type") == "text/plain; charset=utf-8"


def test_index_file_and_no_index(site):
    assert call(static_files(site), path="/").body == b"<h1>Welcome</h1>\n"
    assert call(static_files(site, index=None), path="/").status_code == 404


def test_folder_without_slash_redirects_keeping_query_and_prefix(site):
    result = call(static_files(site), path="/css", query="v=2",
                  environ={"SCRIPT_NAME": "/static"})
    assert result.status_code == 301
    assert result.header("Location") == "/static/css/?v=2"


def test_redirect_is_never_to_another_host(site):
    (site / "evil.example").mkdir()
    result = call(static_files(site), path="//evil.example")
    assert result.status_code == 301
    assert result.header("Location") == "/evil.example/"


def test_redirect_location_is_percent_encoded(site):
    (site / "caf\u00e9 menu").mkdir()
    result = call(static_files(site), path="/caf%C3%A9%20menu")
    assert result.header("Location") == "/caf%C3%A9%20menu/"


def test_empty_path_info_under_a_prefix_redirects_to_the_prefix(site):
    result = call(static_files(site), path="/", environ={"PATH_INFO": "", "SCRIPT_NAME": "/s"})
    assert result.status_code == 301 and result.header("Location") == "/s/"


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "OPTIONS", "PATCH"])
def test_other_methods_are_405_with_allow(site, method):
    result = call(static_files(site), method, "/index.html")
    assert result.status_code == 405
    assert result.header("Allow") == "GET, HEAD"


def test_head_has_the_headers_of_get_and_no_body(site):
    get = call(static_files(site), path="/css/site.css")
    head = call(static_files(site), "HEAD", "/css/site.css")
    assert head.status_code == 200 and head.body == b""
    assert head.headers == get.headers


def test_head_of_an_error_has_no_body(site):
    result = call(static_files(site), "HEAD", "/nothing")
    assert result.status_code == 404 and result.body == b""
    assert int(result.header("Content-Length")) > 0


# -- conditional requests -------------------------------------------------------------------------

def test_if_modified_since_gives_304_without_body_or_type(site):
    app = static_files(site)
    stamp = call(app, path="/menu.txt").header("Last-Modified")
    result = call(app, path="/menu.txt", headers=[("If-Modified-Since", stamp)])
    assert result.status_code == 304 and result.body == b""
    assert result.header("Content-Type") is None and result.header("Content-Length") is None
    assert result.header("Last-Modified") == stamp


def test_an_older_or_invalid_date_gets_the_file(site):
    app = static_files(site)
    mtime = int(os.stat(site / "menu.txt").st_mtime)
    for value in (http_date(mtime - 10), "not a date", "", "Mon, 32 Foo 2020 99:99:99 GMT"):
        result = call(app, path="/menu.txt", headers=[("If-Modified-Since", value)])
        assert result.status_code == 200, value


def test_not_modified_rules():
    assert not_modified({"HTTP_IF_MODIFIED_SINCE": http_date(100)}, 100)
    assert not not_modified({"HTTP_IF_MODIFIED_SINCE": http_date(99)}, 100)
    assert not not_modified({}, 100)
    assert not_modified({"HTTP_IF_NONE_MATCH": "*"}, 100)
    # If-None-Match wins over If-Modified-Since (RFC 9110 §13.1.3); no ETag ever matches.
    assert not not_modified({"HTTP_IF_NONE_MATCH": '"abc"',
                             "HTTP_IF_MODIFIED_SINCE": http_date(100)}, 100)


def test_a_future_modification_time_is_not_sent(site):
    future = 4_000_000_000
    os.utime(site / "menu.txt", (future, future))
    result = call(static_files(site), path="/menu.txt")
    assert result.header("Last-Modified") != http_date(future)


# -- the body and close() ----------------------------------------------------------------------------

def test_file_chunks_stop_at_the_size_and_close_the_file(site):
    file = open(site / "menu.txt", "rb")
    chunks = FileChunks(file, size=5, block_size=2)
    assert list(chunks) == [b"ca", b"f\xc3", b"\xa9"]
    chunks.close()
    assert file.closed


def test_file_chunks_closed_before_iteration_closes_the_file(site):
    file = open(site / "menu.txt", "rb")
    FileChunks(file, size=5).close()
    assert file.closed


def test_the_file_is_closed_after_the_response(site, monkeypatch):
    opened = []
    real_open = open

    def spy(*args, **kwargs):
        file = real_open(*args, **kwargs)
        opened.append(file)
        return file

    monkeypatch.setattr("builtins.open", spy)
    for method in ("GET", "HEAD"):
        call(static_files(site), method, "/menu.txt")
    stamp = http_date(int(os.stat(site / "menu.txt").st_mtime))
    call(static_files(site), path="/menu.txt", headers=[("If-Modified-Since", stamp)])
    assert len(opened) == 3 and all(file.closed for file in opened)


def test_file_wrapper_is_used_when_the_server_offers_one(site):
    used = []

    def wrapper(file, block_size):
        used.append(block_size)
        return FileWrapper(file, block_size)

    result = call(static_files(site), path="/menu.txt", environ={"wsgi.file_wrapper": wrapper})
    assert used and result.body == "café 2.50\n".encode()


def test_content_type_table_is_builtin():
    assert content_type("a.html") == "text/html; charset=utf-8"
    assert content_type("a.json") == "application/json"
    assert content_type("a.png") == "image/png"
    assert content_type("no-suffix") == "application/octet-stream"


def test_a_fifo_is_not_served(site):
    if not hasattr(os, "mkfifo"):
        pytest.skip("no FIFOs here")
    os.mkfifo(site / "pipe")
    assert call(static_files(site), path="/pipe").status_code == 404


# -- over a real socket ------------------------------------------------------------------------------

def GET(target: bytes) -> bytes:
    return b"GET " + target + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"


def test_over_the_wire_attacks_fail_and_files_stream(site):
    with barelab.serve(validator(static_files(site)), name="test-static") as server:
        for target in (b"/../secret.txt", b"/%2e%2e%2fsecret.txt", b"/%2e%2e/secret.txt",
                       b"/..%2f..%2fsecret.txt", b"/leak.txt", b"/%00", b"//../secret.txt"):
            received = barelab.raw_exchange(server, GET(target)).received
            assert received.startswith((b"HTTP/1.1 400 ", b"HTTP/1.1 404 ")), target
            assert SECRET not in received
        big = os.urandom(300_000)
        (site / "big.bin").write_bytes(big)
        reply = barelab.http_request(server, path="/big.bin")
        assert reply.status == 200 and reply.body == big
        assert reply.header("Content-Length") == str(len(big))
        assert not server.log.errors


# -- the property: nothing outside the root, ever ------------------------------------------------------

SEGMENT = st.sampled_from(["..", ".", "", "css", "site.css", "menu.txt", "leak.txt", "%2e%2e",
                           "%2f", "%00", "\\", "..\\..", "\x00", "\xff", "caf\xc3\xa9.txt",
                           "secret.txt", ".env", "public-old", "index.html", "%252e"])


@settings(max_examples=300, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(segments=st.lists(SEGMENT, max_size=6), method=st.sampled_from(["GET", "HEAD"]))
def test_no_path_reaches_outside_the_root(site, segments, method):
    path_info = "/" + "/".join(segments)
    result = call(static_files(site), method, "/", environ={"PATH_INFO": path_info})
    assert result.status_code in (200, 301, 400, 404)
    assert SECRET not in result.body
    if result.status_code == 200 and method == "GET":
        served = {(site / name).read_bytes() for name in ("index.html", "menu.txt",
                                                          "css/site.css", "caf\u00e9.txt")}
        assert result.body in served
