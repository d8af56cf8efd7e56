"""barelab.client against throwaway servers started inside the tests (no barelab.serving)."""

import json
import re
import socket
import struct
import threading
import time
from wsgiref.simple_server import WSGIRequestHandler, make_server

import pytest
import wsproto
import wsproto.events as ws

from barelab.client import (HTTPResult, RawExchange, WebSocketClosed, WebSocketRejected, get,
                            http_request, post, raw_exchange, websocket_connect)


class Target:
    """What the clients need from a ``barelab.Server``: ``.host`` and ``.port``."""

    def __init__(self, host, port):
        self.host, self.port = host, port
        self.url = f"http://{host}:{port}/"


# -- a tiny WSGI server (wsgiref) -------------------------------------------------------------

def echo_app(environ, start_response):
    length = int(environ.get("CONTENT_LENGTH") or 0)
    body = environ["wsgi.input"].read(length)
    path = environ["PATH_INFO"]
    if path == "/big":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"x" * 10000]
    if path == "/png":
        start_response("200 OK", [("Content-Type", "image/png")])
        return [b"\x89PNG\r\n"]
    if path == "/latin":
        start_response("200 OK", [("Content-Type", "text/plain; charset=latin-1")])
        return ["café".encode("latin-1")]
    echoed = {
        "method": environ["REQUEST_METHOD"], "path": path, "query": environ["QUERY_STRING"],
        "body": body.decode(), "content_type": environ.get("CONTENT_TYPE", ""),
        "content_length": environ.get("CONTENT_LENGTH", ""),
        "host": environ.get("HTTP_HOST"), "x_test": environ.get("HTTP_X_TEST"),
    }
    start_response("201 Created", [("Content-Type", "application/json"),
                                   ("Set-Cookie", "a=1"), ("Set-Cookie", "b=2")])
    return [json.dumps(echoed).encode()]


class QuietHandler(WSGIRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def wsgi_server():
    server = make_server("127.0.0.1", 0, echo_app, handler_class=QuietHandler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    yield Target("127.0.0.1", server.server_port)
    server.shutdown()
    server.server_close()
    thread.join(2)


# -- a raw socket server: one handler function per connection ---------------------------------

class RawServer:
    def __init__(self, handler):
        self.handler = handler
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.host, self.port = self.sock.getsockname()
        self.stop_event = threading.Event()
        self.threads = []
        self.conns = []
        self.accept_thread = threading.Thread(target=self._accept, daemon=True)
        self.accept_thread.start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)
            t = threading.Thread(target=self._run, args=(conn,), daemon=True)
            self.threads.append(t)
            t.start()

    def _run(self, conn):
        with conn:
            try:
                self.handler(conn, self.stop_event)
            except OSError:
                pass

    def close(self):
        self.stop_event.set()
        for sock in [self.sock, *self.conns]:  # shutdown wakes a thread blocked on it
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.sock.close()
        self.accept_thread.join(2)
        for t in self.threads:
            t.join(2)


@pytest.fixture
def raw_server():
    servers = []

    def start(handler):
        server = RawServer(handler)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


def read_until(conn, marker, count=1, limit=5.0):
    conn.settimeout(limit)
    data = b""
    while data.count(marker) < count:
        chunk = conn.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


# -- http_request ----------------------------------------------------------------------------

def test_get_parses_status_headers_and_body(wsgi_server):
    result = get(wsgi_server, "/hello?x=1", headers=[("X-Test", "yes")])
    assert isinstance(result, HTTPResult)
    assert (result.status, result.reason, result.http_version) == (201, "Created", "1.0")
    data = result.json()
    assert data["method"] == "GET" and data["path"] == "/hello" and data["query"] == "x=1"
    assert data["host"] == f"127.0.0.1:{wsgi_server.port}"
    assert data["x_test"] == "yes"
    assert result.header("set-cookie") == "a=1, b=2"
    assert [v for n, v in result.headers if n == "Set-Cookie"] == ["a=1", "b=2"]
    assert result.header("X-Missing") is None
    assert result.text == result.body.decode()


def test_raw_request_is_exact_and_closes(wsgi_server):
    result = get(wsgi_server, "/")
    assert result.raw_request == (f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{wsgi_server.port}\r\n"
                                  "Connection: close\r\n\r\n").encode()
    assert result.raw_response.startswith(b"HTTP/1.0 201 Created\r\n")
    assert result.raw_response.endswith(result.body)


def test_url_target_and_path_override(wsgi_server):
    url = f"http://127.0.0.1:{wsgi_server.port}/from-url?q=2"
    assert get(url).json()["path"] == "/from-url"
    assert get(url).json()["query"] == "q=2"
    assert get(url, "/other").json()["path"] == "/other"


def test_post_json_sets_type_and_length(wsgi_server):
    data = post(wsgi_server, "/items", json={"a": [1, 2]}).json()
    assert data["method"] == "POST"
    assert json.loads(data["body"]) == {"a": [1, 2]}
    assert data["content_type"] == "application/json"
    assert data["content_length"] == str(len(data["body"]))


def test_post_body_str_and_empty_post_has_content_length(wsgi_server):
    assert post(wsgi_server, "/", body="hé").json()["body"] == "hé"
    empty = post(wsgi_server, "/")
    assert b"Content-Length: 0\r\n" in empty.raw_request


def test_body_and_json_together_is_an_error(wsgi_server):
    with pytest.raises(ValueError, match="not both"):
        http_request(wsgi_server, "POST", body=b"x", json={})


def test_reprs_show_status_headers_and_truncated_body(wsgi_server):
    result = get(wsgi_server, "/big")
    text = repr(result)
    assert text.startswith("HTTP/1.0 200 OK\n")
    assert re.search(r"\nContent-Type: +text/plain\n", text)
    assert "more characters" in text and len(text) < 3000
    html = result._repr_html_()
    assert "HTTP/1.0 200 OK" in html and "<table>" in html and "more characters" in html
    assert "0x" not in text


def test_binary_body_preview_and_charset(wsgi_server):
    assert "(6 bytes of image/png)" in repr(get(wsgi_server, "/png"))
    assert get(wsgi_server, "/latin").text == "café"


def test_show_raw_shows_both_wires(wsgi_server):
    raw = get(wsgi_server, "/").show_raw()
    text = repr(raw)
    assert text.startswith("→ sent      GET / HTTP/1.1\\r\\n\n")
    assert "← received  HTTP/1.0 201 Created\\r\\n" in text
    assert "\\r\\n</span>" in raw._repr_html_()


def test_server_that_never_answers_times_out_quickly(raw_server):
    server = raw_server(lambda conn, stop: stop.wait(5))
    start = time.monotonic()
    with pytest.raises(TimeoutError, match="no complete response .* within 0.3s"):
        get(server, timeout=0.3)
    assert time.monotonic() - start < 1.5


def test_partial_response_times_out_too(raw_server):
    def handler(conn, stop):
        read_until(conn, b"\r\n\r\n")
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
        stop.wait(5)

    with pytest.raises(TimeoutError, match="received 42 bytes"):
        get(raw_server(handler), timeout=0.3)


def test_nothing_listening_is_a_clear_error():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    with pytest.raises(ConnectionRefusedError, match="is the server running"):
        get(f"http://127.0.0.1:{port}/", timeout=1)


def test_bad_targets():
    with pytest.raises(ValueError, match="http://"):
        get("https://example.com/")
    with pytest.raises(TypeError, match="Server"):
        get(8000)


def test_chunked_response_and_informational_skipped(raw_server):
    def handler(conn, stop):
        read_until(conn, b"\r\n\r\n")
        conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\n"
                     b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                     b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")
        stop.wait(5)  # keep-alive: the end of the chunked body, not the close, ends it

    result = get(raw_server(handler), timeout=2)
    assert result.status == 200 and result.body == b"abcde"
    assert result.raw_response.startswith(b"HTTP/1.1 100 Continue")


def test_garbage_response_raises_protocol_error_with_bytes(raw_server):
    import h11

    def handler(conn, stop):
        read_until(conn, b"\r\n\r\n")
        conn.sendall(b"SSH-2.0-nope\r\n\r\n")

    with pytest.raises(h11.RemoteProtocolError) as info:
        get(raw_server(handler), timeout=2)
    assert any("SSH-2.0-nope" in note for note in getattr(info.value, "__notes__", []))


# -- raw_exchange ----------------------------------------------------------------------------

def test_raw_exchange_pipelined_requests(raw_server):
    def handler(conn, stop):
        read_until(conn, b"\r\n\r\n", count=2)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\na"
                     b"HTTP/1.1 404 Not Found\r\nContent-Length: 1\r\n\r\nb")

    server = raw_server(handler)
    data = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n"
    exchange = raw_exchange(server, data)
    assert isinstance(exchange, RawExchange)
    assert exchange.sent == data
    assert exchange.responses == [200, 404]
    assert exchange.status == 200
    assert exchange.closed_by_server and not exchange.reset
    text = repr(exchange)
    assert "GET /a HTTP/1.1\\r\\n" in text and "HTTP/1.1 404 Not Found\\r\\n" in text
    assert text.endswith("(the server closed the connection)")
    assert "closed the connection" in exchange._repr_html_()


def test_raw_exchange_against_wsgiref(wsgi_server):
    exchange = raw_exchange(wsgi_server, b"GET /x HTTP/1.0\r\n\r\n", timeout=2)
    assert exchange.status == 201
    assert exchange.received.endswith(b'"x_test": null}')


def test_raw_exchange_records_a_reset(raw_server):
    def handler(conn, stop):
        read_until(conn, b"\r\n")
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        conn.close()  # linger 0: the kernel sends RST instead of FIN

    exchange = raw_exchange(raw_server(handler), b"HELLO\r\n", timeout=2)
    assert exchange.reset and exchange.closed_by_server
    assert exchange.status is None and exchange.responses == []
    assert "reset the connection" in repr(exchange)
    assert "(nothing)" in repr(exchange)


def test_raw_exchange_silence_ends_reading(raw_server):
    def handler(conn, stop):
        read_until(conn, b"\r\n\r\n")
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        stop.wait(5)

    server = raw_server(handler)
    start = time.monotonic()
    exchange = raw_exchange(server, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", timeout=0.3)
    assert 0.25 < time.monotonic() - start < 1.5
    assert not exchange.closed_by_server and exchange.status == 200
    assert "still open after 0.3s of silence" in repr(exchange)
    # Without waiting for the close, a complete response ends reading at once.
    start = time.monotonic()
    exchange = raw_exchange(server, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", timeout=2,
                            read_until_close=False)
    assert time.monotonic() - start < 1.0
    assert exchange.received.endswith(b"ok")
    assert exchange.complete and "complete response arrived" in repr(exchange)


def test_raw_exchange_wants_bytes(wsgi_server):
    with pytest.raises(TypeError, match="bytes"):
        raw_exchange(wsgi_server, "GET / HTTP/1.1\r\n\r\n")


# -- a wsproto server for the WebSocket client ------------------------------------------------

def ws_handler(conn, stop):
    """Echo server: rejects /reject, picks the first offered subprotocol, answers pings.

    Text "fragments" is answered with a 3-frame message; "close-me" makes it close with 4000.
    """
    server = wsproto.WSConnection(wsproto.ConnectionType.SERVER)
    conn.settimeout(5)
    while True:
        data = conn.recv(4096)
        server.receive_data(data or None)
        for event in server.events():
            if isinstance(event, ws.Request):
                if event.target == "/reject":
                    conn.sendall(server.send(ws.RejectConnection(
                        status_code=403, headers=[(b"content-length", b"9")], has_body=True)))
                    conn.sendall(server.send(ws.RejectData(data=b"forbidden")))
                    return
                origin = dict(event.extra_headers).get(b"origin", b"").decode()
                conn.sendall(server.send(ws.AcceptConnection(
                    subprotocol=event.subprotocols[0] if event.subprotocols else None)))
                if origin:
                    conn.sendall(server.send(ws.TextMessage(data=f"origin {origin}")))
            elif isinstance(event, ws.TextMessage):
                if event.data == "fragments":
                    for i, part in enumerate(["ab", "cd", "ef"]):
                        conn.sendall(server.send(ws.TextMessage(data=part,
                                                                message_finished=i == 2)))
                elif event.data == "close-me":
                    conn.sendall(server.send(ws.CloseConnection(code=4000, reason="bye")))
                elif event.data == "ping-me":
                    conn.sendall(server.send(ws.Ping(payload=b"srv")))
                else:
                    conn.sendall(server.send(ws.TextMessage(data=event.data)))
            elif isinstance(event, ws.BytesMessage):
                conn.sendall(server.send(ws.BytesMessage(data=bytes(event.data)[::-1])))
            elif isinstance(event, ws.Ping):
                conn.sendall(server.send(event.response()))
            elif isinstance(event, ws.CloseConnection):
                if server.state is wsproto.ConnectionState.REMOTE_CLOSING:
                    conn.sendall(server.send(event.response()))
                return
        if not data:
            return


@pytest.fixture
def ws_server(raw_server):
    return raw_server(ws_handler)


def test_websocket_text_and_binary(ws_server):
    with websocket_connect(ws_server, "/chat") as sock:
        sock.send_text("hello")
        assert sock.receive() == "hello"
        sock.send_bytes(b"\x01\x02\x03")
        assert sock.receive() == b"\x03\x02\x01"
    assert sock.closed and sock.close_code == 1000
    rows = sock.transcript.rows
    assert rows[0] == ("→", "handshake", "GET /chat")
    assert rows[1] == ("←", "accept", "101")
    assert ("→", "text", "'hello'") in rows and ("←", "bytes", "b'\\x03\\x02\\x01'") in rows
    assert rows[-2:] == [("→", "close", "1000"), ("←", "close", "1000")]
    text = repr(sock)
    assert text.startswith(f"WebSocket ws://127.0.0.1:{ws_server.port}/chat closed (1000)")
    assert "<table>" in sock._repr_html_()


def test_websocket_fragmented_message_is_reassembled(ws_server):
    with websocket_connect(f"ws://127.0.0.1:{ws_server.port}/", timeout=2) as sock:
        sock.send_text("fragments")
        assert sock.receive() == "abcdef"
        assert ("←", "text", "'abcdef' (3 frames)") in sock.transcript.rows


def test_websocket_server_close_raises_closed(ws_server):
    sock = websocket_connect(ws_server, timeout=2)
    sock.send_text("close-me")
    with pytest.raises(WebSocketClosed) as info:
        sock.receive()
    assert (info.value.code, info.value.reason) == (4000, "bye")
    assert ("→", "close", "4000") in sock.transcript.rows  # we answered the close frame
    with pytest.raises(WebSocketClosed):
        sock.receive()
    with pytest.raises(WebSocketClosed):
        sock.send_text("too late")
    sock.close()  # harmless after the server closed


def test_websocket_ping_pong_both_ways(ws_server):
    with websocket_connect(ws_server, timeout=2) as sock:
        assert sock.ping(b"abc") == b"abc"
        sock.send_text("ping-me")
        sock.send_text("after")
        assert sock.receive() == "after"
        rows = sock.transcript.rows
        assert ("←", "ping", "b'srv'") in rows and ("→", "pong", "b'srv'") in rows


def test_websocket_subprotocol_and_origin(ws_server):
    with websocket_connect(ws_server, subprotocols=["chat.v2", "chat.v1"],
                           origin="http://example.org", timeout=2) as sock:
        assert sock.subprotocol == "chat.v2"
        assert sock.receive() == "origin http://example.org"
        assert "subprotocol 'chat.v2'" in repr(sock)


def test_websocket_rejection(ws_server):
    with pytest.raises(WebSocketRejected, match="403: forbidden") as info:
        websocket_connect(ws_server, "/reject", timeout=2)
    assert info.value.status == 403
    assert info.value.body == b"forbidden"
    assert ("content-length", "9") in info.value.headers


def test_websocket_receive_times_out(ws_server):
    with websocket_connect(ws_server, timeout=2) as sock:
        start = time.monotonic()
        with pytest.raises(TimeoutError, match="no message"):
            sock.receive(timeout=0.2)
        assert time.monotonic() - start < 1.0


def test_websocket_handshake_times_out(raw_server):
    server = raw_server(lambda conn, stop: stop.wait(5))
    with pytest.raises(TimeoutError, match="handshake"):
        websocket_connect(server, timeout=0.3)


def test_websocket_abrupt_close_is_1006(raw_server):
    def handler(conn, stop):
        server = wsproto.WSConnection(wsproto.ConnectionType.SERVER)
        server.receive_data(read_until(conn, b"\r\n\r\n"))
        for event in server.events():
            if isinstance(event, ws.Request):
                conn.sendall(server.send(ws.AcceptConnection()))

    sock = websocket_connect(raw_server(handler), timeout=2)
    with pytest.raises(WebSocketClosed) as info:
        sock.receive()
    assert info.value.code == 1006


def test_websocket_url_path_wins(ws_server):
    with websocket_connect(f"ws://127.0.0.1:{ws_server.port}/room?id=1", timeout=2) as sock:
        assert sock.url.endswith("/room?id=1")
        assert sock.transcript.rows[0] == ("→", "handshake", "GET /room?id=1")


def test_raw_exchange_response_framing_is_followed():
    received = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\n\r\n"
                b"HTTP/1.1 304 Not Modified\r\n\r\n"
                b"HTTP/1.1 201 Created\r\nContent-Length: 3\r\n\r\nxyz"
                b"HTTP/1.0 500 Oops\r\n\r\nclose-delimited body\nHTTP/1.1 999 not a response")
    exchange = RawExchange(b"", received, closed_by_server=True)
    assert exchange.responses == [200, 304, 201, 500, 999]  # loose: the last is in a body
    assert RawExchange(b"", b"garbage", True).responses == []


def test_http_request_sends_the_method_exactly_as_written(wsgi_server):
    result = http_request(wsgi_server, "get", "/")
    assert result.raw_request.startswith(b"get / HTTP/1.1\r\n")  # RFC 9110 §9.1
