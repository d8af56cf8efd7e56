"""Tests of barelab.engines.wsgi: raw bytes in, raw bytes out, against a real socket."""

from __future__ import annotations

import socket
import sys
import threading
import time
import warnings
from urllib.parse import unquote_to_bytes
from wsgiref.validate import WSGIWarning, validator

import pytest

from rawclient import RawClient

from barelab.engines.wsgi import WSGIEngine, parse_headers, parse_status
from barelab.logs import ServerLog
from barelab.serving import bind_listening_socket


# ---------------------------------------------------------------------------------------
# Harness


class Running:
    """A WSGIEngine serving on 127.0.0.1:<port>, as serve() would start it."""

    def __init__(self, app, **options):
        self.sock = bind_listening_socket("127.0.0.1", 0)  # the socket serve() would make
        self.port = self.sock.getsockname()[1]
        self.log = ServerLog()
        self.engine = WSGIEngine(app, self.sock, self.log, **options)
        self.engine.start()

    def connect(self) -> "Client":
        return Client(self.port)

    def exchange(self, data: bytes, timeout: float = 2.0) -> bytes:
        """Send ``data``, return everything until the server closes (or ``timeout``)."""
        with self.connect() as client:
            client.send(data)
            return client.read_all(timeout)


Client = RawClient  # tests/rawclient.py


@pytest.fixture
def serve():
    """serve(app, **options) -> Running; every server is stopped at teardown."""
    running: list[Running] = []

    def start(app, **options) -> Running:
        server = Running(app, **options)
        running.append(server)
        return server

    yield start
    for server in running:
        server.engine.stop()


def hello(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"hello"]


def echo_environ(environ, start_response):
    """Answers with the interesting parts of the environ, one KEY=value per line."""
    keys = sorted(k for k in environ if k.isupper())
    body = "".join(f"{k}={environ[k]}\n" for k in keys).encode("latin-1")
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [body]


def echo_body(environ, start_response):
    body = environ["wsgi.input"].read()
    start_response("200 OK", [("Content-Type", "application/octet-stream")])
    return [body]


def environ_of(server: Running, request: bytes) -> dict[str, str]:
    with server.connect() as client:
        client.send(request)
        status, _, body = client.response()
    assert status == 200, body
    return dict(line.split("=", 1) for line in body.decode("latin-1").splitlines())


GET = b"GET / HTTP/1.1\r\nHost: t\r\n\r\n"


def wait_for(condition, timeout: float = 2.0):
    """Poll ``condition`` briefly: for effects the server has after the client got its bytes."""
    deadline = time.monotonic() + timeout
    while not (result := condition()) and time.monotonic() < deadline:
        time.sleep(0.005)
    return result


# ---------------------------------------------------------------------------------------
# Basic exchanges, keep-alive, pipelining


def test_simple_get_has_framing_date_and_server(serve):
    server = serve(hello)
    with server.connect() as client:
        client.send(GET)
        status, headers, body = client.response()
    assert (status, body) == (200, b"hello")
    assert headers["content-length"] == "5"  # len(result) == 1: computed, not chunked
    assert headers["server"] == "barelab"
    assert headers["date"].endswith(" GMT")
    # The server logs just after the last byte went out: give it that moment.
    assert wait_for(lambda: server.log.requests)
    [entry] = server.log.requests
    assert '"GET / HTTP/1.1" 200 5B' in entry.message


def test_keep_alive_serves_three_requests_on_one_connection(serve):
    server = serve(echo_environ)
    with server.connect() as client:
        ports = set()
        for n in range(3):
            client.send(b"GET /%d HTTP/1.1\r\nHost: t\r\n\r\n" % n)
            status, headers, body = client.response()
            assert status == 200 and b"PATH_INFO=/%d\n" % n in body
            assert "connection" not in headers
            ports.add(body.split(b"REMOTE_PORT=")[1].split(b"\n")[0])
    assert len(ports) == 1


def test_pipelined_requests_are_answered_in_order(serve):
    server = serve(echo_body)
    with server.connect() as client:
        client.send(b"POST /a HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\none"
                    b"POST /b HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\ntwo")
        assert client.response()[2] == b"one"
        assert client.response()[2] == b"two"


def test_connection_close_is_honoured(serve):
    server = serve(hello)
    with server.connect() as client:
        client.send(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        status, headers, body = client.response()
        assert headers["connection"] == "close"
        assert client.closed_by_server()


def test_http10_client_gets_close_delimited_stream_and_close(serve):
    def stream(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        yield b"a"
        yield b"b"

    server = serve(stream)
    raw = server.exchange(b"GET / HTTP/1.0\r\n\r\n")
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ")  # RFC 9110 §2.5: we send our own version
    assert b"chunked" not in head.lower()   # an HTTP/1.0 client cannot parse chunked
    assert b"connection: close" in head.lower()
    assert body == b"ab"


def test_head_has_get_headers_and_no_body(serve):
    def stream(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        yield b"streamed"

    for app, framing in ((hello, ("content-length", "5")),
                         (stream, ("transfer-encoding", "chunked"))):
        server = serve(app)
        with server.connect() as client:
            client.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\nHEAD / HTTP/1.1\r\nHost: t\r\n\r\n"
                        + GET)
            _, get_headers, _ = client.response()
            status, head_headers, _ = client.response("HEAD")
            assert status == 200
            assert head_headers[framing[0]] == get_headers[framing[0]] == framing[1]
            # The next response starts right after the HEAD's headers: no body was sent.
            assert client.response()[0] == 200


def test_204_and_304_carry_no_body(serve):
    def app(environ, start_response):
        status = "204 No Content" if environ["PATH_INFO"] == "/204" else "304 Not Modified"
        start_response(status, [("Content-Length", "12")])
        return [b"not sent"]

    server = serve(app)
    with server.connect() as client:
        client.send(b"GET /204 HTTP/1.1\r\nHost: t\r\n\r\nGET /304 HTTP/1.1\r\nHost: t\r\n\r\n"
                    + GET)
        status, headers, _ = client.response()
        assert status == 204 and "content-length" not in headers  # RFC 9110 §8.6
        status, headers, _ = client.response()
        assert status == 304 and headers["content-length"] == "12"  # describes the GET
        status, _, body = client.response()
        assert status == 304 and body == b""


def test_leading_blank_lines_before_a_request_are_ignored(serve):
    # RFC 9112 §2.2: a server SHOULD ignore at least one empty line before the request-line.
    server = serve(echo_body)
    with server.connect() as client:
        client.send(b"\r\nPOST / HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\n\r\nx\r\n" + GET)
        assert client.response()[2] == b"x"
        assert client.response()[0] == 200


def test_half_closed_client_still_gets_its_answers(serve):
    # printf '...' | nc -N: the request, then shutdown(SHUT_WR); the client still reads.
    server = serve(hello)
    with server.connect() as client:
        client.send(GET + b"GET / HTTP/1.1\r\nHost: t\r\nX-Cut: o")
        client.sock.shutdown(socket.SHUT_WR)
        assert client.response()[2] == b"hello"
        assert client.response()[0] == 400  # the cut-off second request
        assert client.closed_by_server()


def test_idle_keep_alive_connection_is_closed_after_timeout(serve):
    server = serve(hello, keep_alive_timeout=0.2)
    with server.connect() as client:
        client.send(GET)
        client.response()
        started = time.monotonic()
        assert client.closed_by_server(timeout=2)
        assert 0.1 < time.monotonic() - started < 1.5


# ---------------------------------------------------------------------------------------
# Request bodies


def test_chunked_request_body(serve):
    server = serve(echo_body)
    with server.connect() as client:
        client.send(b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                    b"5\r\nhello\r\n1;ext=1\r\n \r\n5\r\nworld\r\n0\r\nTrailer: x\r\n\r\n" + GET)
        assert client.response()[2] == b"hello world"
        assert client.response()[0] == 200  # keep-alive survives a chunked body


def test_wsgi_input_read_readline_readlines_and_iteration(serve):
    def app(environ, start_response):
        stream = environ["wsgi.input"]
        parts = [stream.read(2), stream.readline(), stream.readline(3), stream.readline()]
        rest = stream.readlines()
        parts += rest + [b"|".join(stream), stream.read(), stream.read(5)]  # at EOF: b""
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [repr(parts).encode()]

    server = serve(app)
    payload = b"abcd\nefghij\nk\nl\n"
    for framing in (b"Content-Length: %d\r\n\r\n%s" % (len(payload), payload),
                    b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n%x\r\n%s\r\n0\r\n\r\n"
                    % (len(payload) - 3, payload[3:])):
        with server.connect() as client:
            client.send(b"POST / HTTP/1.1\r\nHost: t\r\n" + framing)
            body = client.response()[2]
        assert body == repr([b"ab", b"cd\n", b"efg", b"hij\n", b"k\n", b"l\n",
                             b"", b"", b""]).encode()


def test_unread_body_is_drained_so_the_next_request_parses(serve):
    server = serve(hello)  # never reads wsgi.input
    with server.connect() as client:
        client.send(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\n0123456789" + GET)
        assert client.response()[0] == 200
        assert client.response()[0] == 200


def test_expect_100_continue_is_sent_on_first_read(serve):
    server = serve(echo_body)
    with server.connect() as client:
        client.send(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\n"
                    b"Expect: 100-continue\r\n\r\n")
        status, _ = client.head()
        assert status == 100  # before we sent a single body byte
        client.send(b"body")
        status, _, body = client.response()
        assert (status, body) == (200, b"body")


def test_expect_100_continue_not_sent_if_app_never_reads(serve):
    server = serve(hello)
    with server.connect() as client:
        client.send(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\n"
                    b"Expect: 100-continue\r\n\r\n")
        status, headers, body = client.response()
        # No 100: the final answer comes at once; the unsent body makes the connection
        # unusable, so the server says so and closes it.
        assert (status, body) == (200, b"hello")
        assert headers["connection"] == "close"
        assert client.closed_by_server()


def test_body_over_limit_by_content_length_is_413_without_reading_it(serve):
    server = serve(echo_body, max_body_bytes=100)
    with server.connect() as client:
        client.send(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 101\r\n"
                    b"Expect: 100-continue\r\n\r\n")
        status, headers, _ = client.response()
        assert status == 413 and headers["connection"] == "close"


def test_chunked_body_over_limit_is_413(serve):
    server = serve(echo_body, max_body_bytes=100)
    chunk = b"40\r\n" + b"x" * 64 + b"\r\n"
    raw = server.exchange(b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                          + chunk * 2 + b"0\r\n\r\n")
    assert raw.startswith(b"HTTP/1.1 413 ")
    assert b"connection: close" in raw.lower()


# ---------------------------------------------------------------------------------------
# Malformed and dangerous requests: what h11 refuses and what the engine adds


@pytest.mark.parametrize("request_bytes, status", [
    (b"GET / HTTP/1.1\r\nHost: t\r\nContent-Length: abc\r\n\r\n", 400),      # h11
    (b"GET / HTTP/1.1\r\nHost: t\r\nContent-Length: -1\r\n\r\n", 400),       # h11
    (b"GET / HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n"                     # engine
     b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    (b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),  # engine
    (b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501),
    (b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip\r\n\r\n", 400),  # §6.3
    (b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked, identity\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n"
     b"Transfer-Encoding: chunked\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost : t\r\n\r\n", 400),                              # h11
    (b"GET / HTTP/1.1\r\n\r\n", 400),                                          # h11: no Host
    (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),                    # h11
    (b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400),                             # engine
    (b"GET / HTTP/1.1\r\nHost: t\r\nX: a\rb\r\n\r\n", 400),                    # h11: bare CR
    (b" GET / HTTP/1.1\r\nHost: t\r\n\r\n", 400),                               # h11
    (b"GET /\r\n\r\n", 400),                                                   # HTTP/0.9
    (b"GET  / HTTP/1.1\r\nHost: t\r\n\r\n", 400),
    (b"GARBAGE\r\n\r\n", 400),
    (b"GET / HTTP/2.0\r\nHost: t\r\n\r\n", 505),                               # engine
    (b"GET /a#frag HTTP/1.1\r\nHost: t\r\n\r\n", 400),                         # engine
    (b"GET * HTTP/1.1\r\nHost: t\r\n\r\n", 400),                               # engine
    (b"GET t:80 HTTP/1.1\r\nHost: t\r\n\r\n", 400),                            # engine
    (b"CONNECT t:443 HTTP/1.1\r\nHost: t:443\r\n\r\n", 501),                   # engine
    (b"\r\n Host: t\r\nGET / HTTP/1.1\r\n\r\n", 400),
])
def test_malformed_requests_are_refused_and_connection_closed(serve, request_bytes, status):
    server = serve(hello)
    raw = server.exchange(request_bytes)
    assert raw.startswith(b"HTTP/1.1 %d " % status), raw
    head, _, body = raw.partition(b"\r\n\r\n")
    assert b"\r\nconnection: close" in head.lower()
    assert b"Traceback" not in body
    # ... and the server keeps serving others.
    assert server.exchange(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
                           ).endswith(b"hello")


def test_malformed_body_is_400_even_if_the_app_does_not_read_it(serve):
    # The body arrived with the head; the engine parses what is buffered before it sends
    # the app's response, so the client learns its request was bad instead of getting a 200.
    server = serve(hello)
    raw = server.exchange(b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                          b"zz\r\nhello\r\n0\r\n\r\n")
    assert raw.startswith(b"HTTP/1.1 400 ") and b"illegal chunk header" in raw


def test_too_long_request_target_is_414(serve):
    server = serve(hello, max_header_bytes=1024)
    assert server.exchange(b"GET /" + b"a" * 2000 + b" HTTP/1.1\r\nHost: t\r\n\r\n"
                           ).startswith(b"HTTP/1.1 414 ")
    # ... also when the request-line never ends (h11's buffer limit, renamed from 431).
    with server.connect() as client:
        client.send(b"GET /" + b"a" * 3000)
        assert client.response()[0] == 414


def test_upgrade_request_is_served_as_plain_http(serve):
    # A WSGI app cannot switch protocols; h11 drops the client's proposal when we answer
    # with a normal response, and the connection carries on.
    server = serve(echo_body)
    with server.connect() as client:
        client.send(b"POST / HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n"
                    b"Content-Length: 2\r\n\r\nhi" + GET)
        assert client.response()[2] == b"hi"
        assert client.response()[0] == 200


def test_obs_fold_is_unfolded_by_h11(serve):
    # RFC 9112 §5.2 lets a server either answer 400 or replace obs-fold with SP;
    # h11 (0.16) does the latter, so the app sees one value.
    server = serve(echo_environ)
    environ = environ_of(server, b"GET / HTTP/1.1\r\nHost: t\r\nX-Folded: a\r\n  b\r\n\r\n")
    assert environ["HTTP_X_FOLDED"] == "a b"


def test_huge_header_is_431(serve):
    server = serve(hello, max_header_bytes=1024)
    # Whole head in one send: the engine measures it (h11's own limit only sees
    # heads that are still incomplete when the buffer passes it).
    raw = server.exchange(b"GET / HTTP/1.1\r\nHost: t\r\nX-Big: " + b"a" * 2000 + b"\r\n\r\n")
    assert raw.startswith(b"HTTP/1.1 431 ")
    # A head that never ends is cut off by h11 once its buffer passes the limit.
    with server.connect() as client:
        client.send(b"GET / HTTP/1.1\r\nHost: t\r\n")
        try:
            for _ in range(50):
                client.send(b"X-More: " + b"b" * 100 + b"\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass
        assert client.response()[0] == 431


def test_absolute_form_target_uses_its_authority(serve):
    server = serve(echo_environ)
    environ = environ_of(server, b"GET http://example.org:8080/p%20q?x=1 HTTP/1.1\r\n"
                                 b"Host: ignored\r\n\r\n")
    assert environ["PATH_INFO"] == "/p q"
    assert environ["QUERY_STRING"] == "x=1"
    assert environ["HTTP_HOST"] == "example.org:8080"


def test_options_asterisk_is_served(serve):
    server = serve(echo_environ)
    environ = environ_of(server, b"OPTIONS * HTTP/1.1\r\nHost: t\r\n\r\n")
    assert environ["REQUEST_METHOD"] == "OPTIONS" and environ["PATH_INFO"] == "*"


def test_partial_head_times_out_with_408(serve):
    server = serve(hello, io_timeout=0.3)
    with server.connect() as client:
        client.send(b"GET / HTTP/1.1\r\nHost: t\r\n")  # ...and nothing more
        assert client.response()[0] == 408


# ---------------------------------------------------------------------------------------
# The environ


def test_environ_follows_pep_3333(serve):
    server = serve(echo_environ)
    environ = environ_of(server, b"POST /caf%C3%A9/a%2Fb?q=%41&r HTTP/1.1\r\nHost: t:1\r\n"
                                 b"Content-Type: text/plain\r\nContent-Length: 0\r\n"
                                 b"X-Multi: 1\r\nCookie: a=1\r\nX-Multi: 2\r\nCookie: b=2\r\n"
                                 b"X-Under_Score: evil\r\nX_Other: evil\r\nProxy: evil\r\n\r\n")
    assert environ["REQUEST_METHOD"] == "POST"
    assert environ["SCRIPT_NAME"] == ""
    assert environ["PATH_INFO"] == "/caf\xc3\xa9/a/b"  # bytes in str; %2F decoded too
    assert environ["QUERY_STRING"] == "q=%41&r"         # raw
    assert environ["CONTENT_TYPE"] == "text/plain"
    assert environ["CONTENT_LENGTH"] == "0"
    assert "HTTP_CONTENT_TYPE" not in environ and "HTTP_CONTENT_LENGTH" not in environ
    assert environ["HTTP_X_MULTI"] == "1, 2"
    assert environ["HTTP_COOKIE"] == "a=1; b=2"        # RFC 6265 §5.4
    assert not any("UNDER" in k or "OTHER" in k for k in environ)  # header smuggling
    assert "HTTP_PROXY" not in environ                  # httpoxy
    assert environ["HTTP_HOST"] == "t:1"
    assert environ["SERVER_NAME"] == "127.0.0.1"
    assert environ["SERVER_PORT"] == str(server.port)
    assert environ["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert environ["REMOTE_ADDR"] == "127.0.0.1" and environ["REMOTE_PORT"].isdigit()


def test_environ_omits_content_headers_when_absent_and_wsgi_keys(serve):
    seen = {}

    def app(environ, start_response):
        seen.update(environ)
        start_response("200 OK", [])
        return []

    server = serve(app)
    server.exchange(b"GET /x HTTP/1.0\r\n\r\n")
    assert "CONTENT_TYPE" not in seen and "CONTENT_LENGTH" not in seen
    assert seen["SERVER_PROTOCOL"] == "HTTP/1.0"
    assert seen["QUERY_STRING"] == ""
    assert seen["wsgi.version"] == (1, 0)
    assert seen["wsgi.url_scheme"] == "http"
    assert seen["wsgi.multithread"] is True and seen["wsgi.multiprocess"] is False
    assert seen["wsgi.run_once"] is False and seen["wsgi.input_terminated"] is True


def test_wsgi_errors_go_to_the_log_not_stdout(serve, capsys):
    def app(environ, start_response):
        environ["wsgi.errors"].write("first line\nsecond ")
        environ["wsgi.errors"].writelines(["line\n"])
        environ["wsgi.errors"].write("unterminated")
        start_response("200 OK", [])
        return []

    server = serve(app)
    server.exchange(b"GET / HTTP/1.0\r\n\r\n")
    assert wait_for(lambda: len(server.log.errors) == 3)  # the last line: flushed at the end
    messages = [e.message for e in server.log.errors]
    assert messages == ["wsgi.errors: first line", "wsgi.errors: second line",
                        "wsgi.errors: unterminated"]
    assert capsys.readouterr() == ("", "")


# ---------------------------------------------------------------------------------------
# start_response, write(), iterables


def test_write_callable_and_returned_iterable_both_sent(serve):
    def app(environ, start_response):
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"written ")
        return [b"and ", b"returned"]

    server = serve(app)
    with server.connect() as client:
        client.send(GET)
        status, headers, body = client.response()
    assert body == b"written and returned"
    assert headers["transfer-encoding"] == "chunked"


def test_app_content_length_is_honoured_and_enforced(serve):
    def app(environ, start_response):
        start_response("200 OK", [("Content-Length", "3")])
        return [b"a", b"b", b"c"] if environ["PATH_INFO"] == "/ok" else [b"ab", b"cd"]

    server = serve(app)
    with server.connect() as client:
        client.send(b"GET /ok HTTP/1.1\r\nHost: t\r\n\r\n")
        status, headers, body = client.response()
        assert (headers["content-length"], body) == ("3", b"abc")
        assert "transfer-encoding" not in headers
    with server.connect() as client:
        client.send(b"GET /long HTTP/1.1\r\nHost: t\r\n\r\n")
        # h11 refuses to send more than declared; the client sees a short message and a close.
        raw = client.read_all()
        assert raw.endswith(b"\r\n\r\nab")
    assert any("Too much data" in e.details for e in server.log.errors)


def test_exc_info_replaces_headers_before_they_are_sent(serve):
    def app(environ, start_response):
        start_response("200 OK", [("X-Was", "ok")])
        try:
            raise ValueError("boom")
        except ValueError:
            start_response("500 Oops", [("Content-Type", "text/plain")], sys.exc_info())
        return [b"handled"]

    server = serve(app)
    with server.connect() as client:
        client.send(GET)
        status, headers, body = client.response()
    assert (status, body) == (500, b"handled") and "x-was" not in headers


def test_exc_info_after_headers_sent_reraises(serve):
    seen = []

    def app(environ, start_response):
        write = start_response("200 OK", [])
        write(b"partial")
        try:
            raise KeyError("original")
        except KeyError:
            try:
                start_response("500 Oops", [], sys.exc_info())
            except KeyError as exc:
                seen.append(exc)
                raise

    server = serve(app)
    raw = server.exchange(GET)
    assert raw.startswith(b"HTTP/1.1 200 ") and b"partial" in raw
    assert not raw.endswith(b"0\r\n\r\n")  # the chunked message was left unfinished
    assert len(seen) == 1 and seen[0].args == ("original",)


def test_start_response_twice_without_exc_info_is_an_error(serve):
    errors = []

    def app(environ, start_response):
        start_response("200 OK", [])
        try:
            start_response("201 Created", [])
        except AssertionError as exc:
            errors.append(str(exc))
        return [b"x"]

    server = serve(app)
    assert server.exchange(b"GET / HTTP/1.0\r\n\r\n").startswith(b"HTTP/1.1 200 ")
    assert "PEP 3333" in errors[0]


@pytest.mark.parametrize("status, headers, error", [
    (b"200 OK", [], TypeError),
    ("200OK", [], ValueError),
    ("OK", [], ValueError),
    ("200 OK\r\nX: y", [], ValueError),
    ("101 Switching Protocols", [], ValueError),
    ("200 OK", (("A", "b"),), TypeError),
    ("200 OK", [["A", "b"]], TypeError),
    ("200 OK", [("A", b"b")], TypeError),
    ("200 OK", [("A b", "c")], ValueError),
    ("200 OK", [("A", "b\r\nSet-Cookie: x")], ValueError),
    ("200 OK", [("A", "\u20ac")], ValueError),
    ("200 OK", [("Content-Length", "ten")], ValueError),
    ("200 OK", [("Transfer-Encoding", "gzip")], ValueError),
])
def test_start_response_validation_quotes_the_rules(status, headers, error):
    with pytest.raises(error) as info:
        parse_status(status)
        parse_headers(headers)
    assert "PEP 3333" in str(info.value) or "RFC 9110" in str(info.value)


def test_invalid_start_response_becomes_500_with_log(serve):
    def app(environ, start_response):
        start_response("200 OK", [("X-Bad", "a\nb")])
        return [b"never"]

    server = serve(app)
    raw = server.exchange(b"GET / HTTP/1.0\r\n\r\n")
    assert raw.startswith(b"HTTP/1.1 500 ")
    assert "PEP 3333" in server.log.errors[0].message


def test_returning_bytes_instead_of_an_iterable_is_explained(serve):
    def app(environ, start_response):
        start_response("200 OK", [])
        return b"hello"  # should be [b"hello"]

    server = serve(app)
    assert server.exchange(b"GET / HTTP/1.0\r\n\r\n").startswith(b"HTTP/1.1 500 ")
    assert "iterable of bytes, such as [b'hello'], not bytes" in server.log.errors[0].message


def test_transfer_encoding_chunked_from_app_is_left_to_the_server(serve):
    def app(environ, start_response):
        start_response("200 OK", [("Transfer-Encoding", "chunked")])
        return iter([b"a", b"b"])

    server = serve(app)
    raw = server.exchange(b"GET / HTTP/1.0\r\n\r\n")
    assert b"chunked" not in raw.lower() and raw.endswith(b"\r\n\r\nab")


def test_empty_body_gets_content_length_zero(serve):
    def app(environ, start_response):
        start_response("200 OK", [])
        return iter([b"", b""])

    server = serve(app)
    with server.connect() as client:
        client.send(GET)
        status, headers, body = client.response()
    assert headers["content-length"] == "0" and body == b""


def test_streaming_generator_sends_chunks_as_they_are_yielded(serve):
    go_on = threading.Event()

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        yield b"first"
        go_on.wait(5)
        yield b"second"

    server = serve(app)
    with server.connect() as client:
        client.send(GET)
        status, headers = client.head()
        assert headers["transfer-encoding"] == "chunked"
        assert client.until(b"\r\n") == b"5" and client.exactly(7) == b"first\r\n"
        assert not go_on.is_set()  # the first chunk arrived while the generator waits
        go_on.set()
        assert client.chunked_body() == b"second"


# ---------------------------------------------------------------------------------------
# Errors and close()


class Tracked:
    """An iterable with close(), recording whether the server called it."""

    def __init__(self, chunks, fail_at=None, wait: threading.Event | None = None):
        self.chunks, self.fail_at, self.wait = chunks, fail_at, wait
        self.closed = threading.Event()

    def __iter__(self):
        for n, chunk in enumerate(self.chunks):
            if n == self.fail_at:
                raise RuntimeError("failed mid-stream")
            if self.wait is not None and n == 1:
                self.wait.wait(5)
            yield chunk

    def close(self):
        self.closed.set()


def test_close_is_called_on_success_error_and_disconnect(serve):
    made: dict[str, Tracked] = {}
    disconnected = threading.Event()

    def app(environ, start_response):
        path = environ["PATH_INFO"]
        start_response("200 OK", [])
        made[path] = {"/ok": Tracked([b"a", b"b"]),
                      "/error": Tracked([b"a", b"b"], fail_at=1),
                      "/gone": Tracked([b"a"] + [b"x" * 65536] * 200, wait=disconnected)}[path]
        return made[path]

    server = serve(app)
    assert server.exchange(b"GET /ok HTTP/1.0\r\n\r\n").endswith(b"ab")
    server.exchange(b"GET /error HTTP/1.0\r\n\r\n")
    with server.connect() as client:
        client.send(b"GET /gone HTTP/1.1\r\nHost: t\r\n\r\n")
        client.head()
    disconnected.set()  # the client is gone; the app now streams into a closed socket
    for path in ("/ok", "/error", "/gone"):
        assert made[path].closed.wait(5), path
    assert any("went away" in e.message for e in server.log.entries)
    assert not any("/gone" in e.message for e in server.log.errors)  # no traceback spam


def test_app_error_before_start_response_is_500_and_server_lives(serve):
    def app(environ, start_response):
        if environ["PATH_INFO"] == "/boom":
            raise RuntimeError("secret detail")
        return hello(environ, start_response)

    server = serve(app)
    with server.connect() as client:
        client.send(b"GET /boom HTTP/1.1\r\nHost: t\r\n\r\n" + GET)
        status, headers, body = client.response()
        assert status == 500
        assert b"secret detail" not in body and b"Traceback" not in body
        assert client.response()[2] == b"hello"  # same connection still usable
    [error] = server.log.errors
    assert "RuntimeError: secret detail" in error.message
    assert "Traceback" in error.details


def test_app_error_after_headers_closes_connection_and_logs(serve):
    def app(environ, start_response):
        start_response("200 OK", [])
        yield b"partial"
        raise RuntimeError("mid-stream")

    server = serve(app)
    with server.connect() as client:
        client.send(GET + GET)
        status, headers = client.head()
        assert status == 200
        raw = client.read_all()
        assert raw.startswith(b"7\r\npartial\r\n") and not raw.endswith(b"0\r\n\r\n")
        assert b"HTTP/1.1" not in raw  # the pipelined request was not answered
    [error] = server.log.errors
    assert "after the response started" in error.message
    assert "mid-stream" in error.details


def test_client_vanishing_mid_request_body_is_logged_briefly(serve):
    reached = threading.Event()

    def app(environ, start_response):
        reached.set()
        environ["wsgi.input"].read()
        start_response("200 OK", [])
        return [b""]

    server = serve(app)
    with server.connect() as client:
        client.send(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\nonly")
        assert reached.wait(2)
    assert wait_for(lambda: any("went away" in e.message for e in server.log.entries))
    assert server.log.errors == []
    assert server.exchange(b"GET / HTTP/1.0\r\n\r\n").startswith(b"HTTP/1.1 200 ")


# ---------------------------------------------------------------------------------------
# Interoperability: wsgiref.validate and Flask


def test_wsgiref_validator_finds_nothing(serve):
    problems = []

    def app(environ, start_response):
        data = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        start_response("200 OK", [("Content-Type", "text/plain"),
                                  ("Content-Length", str(len(data)))])
        return [data]

    checked = validator(app)

    def guarded(environ, start_response):
        try:
            result = checked(environ, start_response)
            return result
        except AssertionError as exc:
            problems.append(exc)
            raise

    server = serve(guarded)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with server.connect() as client:
            client.send(b"POST /v?x=1 HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n"
                        b"Content-Type: text/plain\r\n\r\nabc" + GET)
            assert client.response()[2] == b"abc"
            assert client.response()[2] == b""
    assert problems == [] and server.log.errors == []
    assert [str(w.message) for w in caught if issubclass(w.category, WSGIWarning)] == []


def test_flask_app_is_served(serve):
    flask = pytest.importorskip("flask")
    app = flask.Flask("demo")

    @app.post("/items/<name>")
    def create(name):
        return {"name": name, "got": flask.request.get_json(), "q": flask.request.args["q"]}, 201

    @app.get("/stream")
    def stream():
        return flask.Response(iter([b"a", b"b"]), mimetype="text/plain")

    server = serve(app)
    with server.connect() as client:
        client.send(b'POST /items/caf%C3%A9?q=1 HTTP/1.1\r\nHost: t\r\n'
                    b'Content-Type: application/json\r\nContent-Length: 8\r\n\r\n{"a": 1}'
                    b"GET /stream HTTP/1.1\r\nHost: t\r\n\r\n"
                    b"GET /missing HTTP/1.1\r\nHost: t\r\n\r\n")
        status, headers, body = client.response()
        assert status == 201 and headers["content-type"] == "application/json"
        assert flask.json.loads(body) == {"name": "café", "got": {"a": 1}, "q": "1"}
        assert client.response()[2] == b"ab"
        assert client.response()[0] == 404


# ---------------------------------------------------------------------------------------
# Concurrency, limits, lifecycle


def test_fifty_concurrent_clients_are_all_answered(serve):
    barrier = threading.Barrier(50, timeout=5)

    def app(environ, start_response):
        barrier.wait()  # all 50 requests are inside the app at the same time
        start_response("200 OK", [])
        return [environ["PATH_INFO"].encode()]

    server = serve(app)
    results = {}

    def one(n):
        results[n] = server.exchange(b"GET /%d HTTP/1.0\r\n\r\n" % n)

    threads = [threading.Thread(target=one, args=(n,)) for n in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert all(results[n].endswith(b"\r\n\r\n/%d" % n) for n in range(50))


def test_connections_beyond_the_limit_get_503(serve):
    server = serve(hello, max_connections=2)
    with server.connect() as one, server.connect() as two:
        one.send(b"GET / HTTP/1.1\r\nHost: t\r\n")  # both held open, mid-request
        two.send(b"GET / HTTP/1.1\r\nHost: t\r\n")
        time.sleep(0.05)
        raw = server.exchange(GET)
        assert raw.startswith(b"HTTP/1.1 503 ") and b"retry-after: 1" in raw.lower()
        one.send(b"\r\n")
        assert one.response()[0] == 200


def test_max_threads_is_an_alias_of_max_connections():
    sock = socket.socket()
    try:
        assert WSGIEngine(hello, sock, ServerLog(), max_threads=3).options["max_connections"] == 3
        with pytest.raises(TypeError, match="not both"):
            WSGIEngine(hello, sock, ServerLog(), max_threads=3, max_connections=3)
    finally:
        sock.close()


def test_unknown_option_is_a_type_error():
    sock = socket.socket()
    try:
        with pytest.raises(TypeError, match="max_bodybytes"):
            WSGIEngine(hello, sock, ServerLog(), max_bodybytes=1)
        with pytest.raises(ValueError):
            WSGIEngine(hello, sock, ServerLog(), keep_alive_timeout=-1)
    finally:
        sock.close()


def test_stop_is_fast_frees_the_port_and_leaks_no_threads():
    baseline = threading.active_count()
    server = Running(hello)
    with server.connect() as client:  # an idle keep-alive client is still connected
        client.send(GET)
        client.response()
        started = time.perf_counter()
        server.engine.stop()
        elapsed = time.perf_counter() - started
        assert client.closed_by_server(1)
    assert elapsed < 0.1
    assert threading.active_count() == baseline
    assert server.sock.fileno() == -1
    again = socket.socket()
    again.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    again.bind(("127.0.0.1", server.port))  # the port is free again
    again.close()


def test_stop_when_idle_is_fast():
    server = Running(hello)
    started = time.perf_counter()
    server.engine.stop()
    assert time.perf_counter() - started < 0.05
    server.engine.stop()  # idempotent


def test_stop_lets_in_flight_request_finish_then_closes():
    inside, release = threading.Event(), threading.Event()

    def slow(environ, start_response):
        inside.set()
        release.wait(5)
        start_response("200 OK", [])
        return [b"done"]

    baseline = threading.active_count()
    server = Running(slow)
    with server.connect() as client:
        client.send(GET)
        assert inside.wait(2)
        stopper = threading.Thread(target=server.engine.stop, kwargs={"timeout": 2.0})
        stopper.start()
        time.sleep(0.05)
        release.set()
        status, headers, body = client.response()
        assert (status, body) == (200, b"done") and headers["connection"] == "close"
        stopper.join(3)
    assert threading.active_count() == baseline


def test_stop_force_closes_requests_that_overrun_the_timeout():
    release = threading.Event()

    def stuck(environ, start_response):
        start_response("200 OK", [])
        yield b"begun"
        release.wait(5)
        yield b"late"

    server = Running(stuck)
    with server.connect() as client:
        client.send(GET)
        client.head()
        started = time.perf_counter()
        stopper = threading.Thread(target=server.engine.stop, kwargs={"timeout": 0.2})
        stopper.start()
        time.sleep(0.3)
        release.set()  # the app gets control back and finds its socket shut
        stopper.join(3)
        assert 0.2 <= time.perf_counter() - started < 2
    assert "force-closed 1 connection" in str(server.log)


# ---------------------------------------------------------------------------------------
# Property: any sequence of well-formed pipelined requests is answered in order


def test_pipelined_requests_property():
    from hypothesis import given, settings, strategies as st

    def echo(environ, start_response):
        body = environ["wsgi.input"].read()
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return [environ["REQUEST_METHOD"].encode(), b" ",
                environ["PATH_INFO"].encode("latin-1"), b" ", body]

    request = st.tuples(st.sampled_from(["GET", "POST", "PUT", "DELETE"]),
                        st.lists(st.sampled_from(["a", "b", "/", "%20", "%C3%A9", "%2F"]),
                                 max_size=5).map("".join),
                        st.binary(max_size=40),
                        st.sampled_from(["length", "chunked"]),
                        st.lists(st.integers(1, 16), max_size=4))

    def encode(method, path, body, framing, splits) -> bytes:
        head = f"{method} /{path} HTTP/1.1\r\nHost: t\r\n".encode()
        if framing == "length":
            return head + b"Content-Length: %d\r\n\r\n" % len(body) + body
        chunks, rest = [], body
        for size in splits:
            chunks.append(rest[:size])
            rest = rest[size:]
        chunks = [c for c in chunks + [rest] if c]
        return (head + b"Transfer-Encoding: chunked\r\n\r\n"
                + b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks) + b"0\r\n\r\n")

    server = Running(echo)
    try:
        @settings(max_examples=40, deadline=None, database=None)
        @given(st.lists(request, min_size=1, max_size=4))
        def check(requests):
            with server.connect() as client:
                client.send(b"".join(encode(*r) for r in requests))
                for method, path, body, _, _ in requests:
                    status, _, got = client.response()
                    expected = f"{method} /".encode() + unquote_to_bytes(path)
                    assert (status, got) == (200, expected + b" " + body)

        check()
    finally:
        server.engine.stop()
    assert server.log.errors == []
