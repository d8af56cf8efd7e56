"""Blocking clients for notebook cells: one HTTP exchange, raw bytes, a WebSocket.

A cell that talks to a server must never hang the kernel, so every function here takes a
``timeout`` and every socket wait uses it. The HTTP and WebSocket clients are h11 and wsproto
driven over a plain blocking socket (sans-IO: the libraries decide what the bytes mean, this
module only moves them), and each result keeps the exact bytes that crossed the wire so a
cell can show them. ``raw_exchange`` parses nothing at all: it is for sending the bytes a
learner typed, broken ones included, and seeing what a server does with them.

A target is anything with ``.host`` and ``.port`` (a ``barelab.Server``) or a URL string
such as ``"http://127.0.0.1:8000/path?x=1"``.
"""

from __future__ import annotations

import html
import json as jsonlib
import re
import socket
import time
from collections.abc import Mapping
from urllib.parse import urlsplit

import h11
import wsproto
import wsproto.events as ws
from wsproto.utilities import LocalProtocolError as WSLocalProtocolError

from .display import HeadersTable, Transcript, show_bytes
from .errors import BarelabError

_NO_JSON = object()  # "json= not given" (None is a valid JSON document)
_BODY_PREVIEW_CHARS = 2000
_RECV_SIZE = 65536


# -- targets and sockets ---------------------------------------------------------------------

def _resolve(target, path: str | None) -> tuple[str, int, str]:
    """Return ``(host, port, path_and_query)`` for a Server-like object or a URL string."""
    if isinstance(target, str):
        parts = urlsplit(target)
        if parts.scheme not in ("http", "ws"):
            raise ValueError(f"barelab's clients speak plain http:// and ws:// only, got {target!r}")
        if not parts.hostname:
            raise ValueError(f"no host in {target!r}")
        host, port = parts.hostname, parts.port or 80
        url_path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    elif hasattr(target, "host") and hasattr(target, "port"):
        host, port, url_path = target.host, int(target.port), "/"
    else:
        raise TypeError(f"target must be a Server (with .host and .port) or a URL string, "
                        f"not {type(target).__name__}")
    return host, port, url_path if path is None else path


def _host_header(host: str, port: int) -> str:
    return host if port == 80 else f"{host}:{port}"


def _connect(host: str, port: int, timeout: float) -> socket.socket:
    try:
        return socket.create_connection((host, port), timeout=timeout)
    except ConnectionRefusedError as exc:
        raise ConnectionRefusedError(
            f"nothing is listening on {host}:{port}: is the server running?") from exc
    except TimeoutError as exc:
        raise TimeoutError(f"could not connect to {host}:{port} within {timeout}s") from exc


def _normalise_headers(headers) -> list[tuple[str, str]]:
    if isinstance(headers, Mapping):
        headers = headers.items()
    out = []
    for name, value in headers:
        name = name.decode("latin-1") if isinstance(name, bytes) else str(name)
        value = value.decode("latin-1") if isinstance(value, bytes) else str(value)
        out.append((name, value))
    return out


def _has(headers: list[tuple[str, str]], name: str) -> bool:
    return any(n.lower() == name for n, _ in headers)


# -- HTTP ------------------------------------------------------------------------------------

class HTTPResult:
    """One HTTP/1.1 response, with the exact bytes of the request and the response."""

    def __init__(self, *, method: str, target: str, status: int, reason: str,
                 http_version: str, headers: list[tuple[str, str]], body: bytes,
                 raw_request: bytes, raw_response: bytes):
        self.method = method
        self.target = target
        self.status = status
        self.reason = reason
        self.http_version = http_version
        self.headers = headers
        self.body = body
        self.raw_request = raw_request
        self.raw_response = raw_response

    @property
    def status_line(self) -> str:
        """``"HTTP/1.1 200 OK"``: the first line of the response."""
        return f"HTTP/{self.http_version} {self.status} {self.reason}".rstrip()

    def header(self, name: str) -> str | None:
        """The value of header ``name`` (any case); repeats joined with ``", "``; else None."""
        return _header(self.headers, name)

    @property
    def text(self) -> str:
        """The body decoded with the charset of Content-Type (UTF-8 if none given)."""
        return _decode_body(self.body, self.header("content-type"))

    def json(self):
        """The body parsed as JSON."""
        return jsonlib.loads(self.body)

    def show_raw(self) -> Transcript:
        """Both wires, byte for byte: what was sent and what came back."""
        return Transcript([("→ sent", self.raw_request), ("← received", self.raw_response)])

    def __repr__(self) -> str:
        parts = [self.status_line, str(HeadersTable(self.headers)) if self.headers else ""]
        preview = _body_preview(self.body, self.header("content-type"))
        return "\n".join(p for p in parts if p) + ("\n\n" + preview if preview else "")

    __str__ = __repr__

    def _repr_html_(self) -> str:
        preview = _body_preview(self.body, self.header("content-type"))
        body = (f'<pre style="margin:0">{html.escape(preview)}</pre>' if preview
                else "<p><em>(empty body)</em></p>")
        return (f"<p><strong><code>{html.escape(self.status_line)}</code></strong> "
                f"<small>({html.escape(self.method)} {html.escape(self.target)})</small></p>"
                f"{HeadersTable(self.headers)._repr_html_()}{body}")


def _header(headers, name: str) -> str | None:
    values = [v for n, v in headers if n.lower() == name.lower()]
    return ", ".join(values) if values else None


def _charset(content_type: str | None) -> str:
    match = re.search(r"charset=\"?([\w.:-]+)", content_type or "", re.I)
    return match.group(1) if match else "utf-8"


def _decode_body(body: bytes, content_type: str | None) -> str:
    try:
        return body.decode(_charset(content_type), errors="replace")
    except LookupError:
        return body.decode("utf-8", errors="replace")


def _is_textual(content_type: str | None) -> bool:
    ct = (content_type or "").lower()
    return (not ct or ct.startswith("text/")
            or any(k in ct for k in ("json", "xml", "javascript", "x-www-form-urlencoded")))


def _body_preview(body: bytes, content_type: str | None) -> str:
    """The body as text for a repr, cut after ``_BODY_PREVIEW_CHARS``; "" if empty."""
    if not body:
        return ""
    if not _is_textual(content_type):
        return f"({len(body)} bytes of {content_type})"
    text = _decode_body(body, content_type)
    if len(text) > _BODY_PREVIEW_CHARS:
        text = text[:_BODY_PREVIEW_CHARS] + f"\n… ({len(text) - _BODY_PREVIEW_CHARS} more characters)"
    return text


def http_request(target, method: str = "GET", path: str | None = None, *, headers=(),
                 body: bytes | str = b"", json=_NO_JSON, timeout: float = 5.0) -> HTTPResult:
    """Make one HTTP/1.1 request over a fresh connection and return the whole response.

    ``target`` is a ``Server`` or a URL; ``path`` (with its query string) overrides the URL's.
    barelab sends ``Host``, your ``headers``, ``Content-Length`` when there is a body (or the
    method is POST, PUT or PATCH) and ``Connection: close``. ``json=`` encodes a body and sets
    ``Content-Type: application/json``. Raises ``TimeoutError`` if no complete response
    arrives within ``timeout`` seconds, and h11's ``RemoteProtocolError`` if the server's bytes
    are not valid HTTP/1.1 (the bytes received are attached as a note).
    """
    host, port, request_target = _resolve(target, path)
    # Sent exactly as given: methods are case-sensitive (RFC 9110 §9.1), and a cell may
    # want to show what a server does with `get`.
    extra = _normalise_headers(headers)
    if json is not _NO_JSON:
        if body:
            raise ValueError("give body= or json=, not both")
        body = jsonlib.dumps(json).encode()
        if not _has(extra, "content-type"):
            extra.append(("Content-Type", "application/json"))
    if isinstance(body, str):
        body = body.encode("utf-8")
    head = [] if _has(extra, "host") else [("Host", _host_header(host, port))]
    head += extra
    if (body or method in ("POST", "PUT", "PATCH")) and not _has(extra, "content-length") \
            and not _has(extra, "transfer-encoding"):
        head.append(("Content-Length", str(len(body))))
    if not _has(extra, "connection"):
        head.append(("Connection", "close"))

    conn = h11.Connection(our_role=h11.CLIENT)
    raw_request = conn.send(h11.Request(method=method, target=request_target, headers=head))
    if body:
        raw_request += conn.send(h11.Data(data=body))
    raw_request += conn.send(h11.EndOfMessage())

    raw_response = bytearray()
    response, chunks = None, []
    deadline = time.monotonic() + timeout
    with _connect(host, port, timeout) as sock:
        sock.sendall(raw_request)
        while True:
            try:
                event = conn.next_event()
            except h11.RemoteProtocolError as exc:
                _add_note(exc, "bytes received so far:\n" + show_bytes(bytes(raw_response)).text())
                raise
            if event is h11.NEED_DATA:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise _response_timeout(host, port, timeout, raw_response)
                sock.settimeout(remaining)
                try:
                    data = sock.recv(_RECV_SIZE)
                except TimeoutError:
                    raise _response_timeout(host, port, timeout, raw_response) from None
                except ConnectionResetError:
                    data = b""
                raw_response += data
                conn.receive_data(data)
            elif isinstance(event, h11.Response):
                response = event
            elif isinstance(event, h11.Data):
                chunks.append(bytes(event.data))
            elif isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
                break
            # h11.InformationalResponse (1xx) is skipped: raw_response still shows it.
    if response is None:
        raise h11.RemoteProtocolError(
            f"{host}:{port} closed the connection without answering "
            f"(received {len(raw_response)} bytes)")
    return HTTPResult(
        method=method, target=request_target, status=response.status_code,
        reason=response.reason.decode("latin-1"),
        http_version=response.http_version.decode("ascii"),
        headers=[(n.decode("latin-1"), v.decode("latin-1")) for n, v in response.headers.raw_items()],
        body=b"".join(chunks), raw_request=bytes(raw_request), raw_response=bytes(raw_response))


def _add_note(exc: BaseException, note: str) -> None:
    if hasattr(exc, "add_note"):  # Python 3.11+
        exc.add_note(note)


def _response_timeout(host, port, timeout, received: bytes) -> TimeoutError:
    so_far = f"{len(received)} bytes so far" if received else "nothing at all"
    return TimeoutError(f"no complete response from {host}:{port} within {timeout}s "
                        f"(received {so_far})")


def get(target, path: str | None = None, **kwargs) -> HTTPResult:
    """``http_request(target, "GET", path, **kwargs)``."""
    return http_request(target, "GET", path, **kwargs)


def post(target, path: str | None = None, **kwargs) -> HTTPResult:
    """``http_request(target, "POST", path, **kwargs)``; pass ``body=`` or ``json=``."""
    return http_request(target, "POST", path, **kwargs)


# -- raw bytes -------------------------------------------------------------------------------

_STATUS_LINE = re.compile(rb"(?:^|\n)HTTP/\d\.\d (\d{3})")
_STATUS_AT = re.compile(rb"HTTP/\d\.\d (\d{3})")


def _scan_responses(data: bytes) -> tuple[list[int], bool]:
    """Loosely split ``data`` into responses: ``(status codes, ends on a response boundary)``.

    It follows Content-Length and chunked framing from one response to the next (pipelined
    responses need not start on a new line); where framing runs out it falls back to status
    lines at line starts. Loose on purpose: these are bytes a learner may have broken.
    """
    codes: list[int] = []
    pos = 0
    while pos < len(data):
        match = _STATUS_AT.match(data, pos)
        head_end = data.find(b"\r\n\r\n", pos)
        if not match or head_end < 0:
            break
        code = int(match.group(1))
        codes.append(code)
        head, body_start = data[pos:head_end].lower(), head_end + 4
        length = re.search(rb"\ncontent-length:[ \t]*(\d+)", head)
        if 100 <= code < 200 or code in (204, 304):
            end = body_start
        elif length:
            end = body_start + int(length.group(1))
        elif re.search(rb"\ntransfer-encoding:[^\n]*chunked", head):
            end = _chunked_end(data, body_start)
        else:
            end = None  # the body runs until the server closes
        if end is None or end > len(data):
            return codes + [int(c) for c in _STATUS_LINE.findall(data, body_start)], False
        pos = end
    rest = data[pos:]
    return codes + [int(c) for c in _STATUS_LINE.findall(rest)], bool(codes) and not rest


def _chunked_end(data: bytes, pos: int) -> int | None:
    """Where a chunked body starting at ``pos`` ends, or None if it is not all there."""
    while True:
        line_end = data.find(b"\r\n", pos)
        if line_end < 0:
            return None
        try:
            size = int(data[pos:line_end].split(b";")[0], 16)
        except ValueError:
            return None
        pos = line_end + 2
        if size == 0:
            while True:  # trailer fields, up to an empty line
                line_end = data.find(b"\r\n", pos)
                if line_end < 0:
                    return None
                pos, done = line_end + 2, line_end == pos
                if done:
                    return pos
        pos += size + 2


class RawExchange:
    """What happened when exact bytes were sent: what came back and how it ended."""

    def __init__(self, sent: bytes, received: bytes, closed_by_server: bool,
                 reset: bool = False, timeout: float = 1.0, complete: bool = False):
        self.sent = sent
        self.received = received
        self.closed_by_server = closed_by_server
        self.reset = reset
        self.timeout = timeout
        self.complete = complete  # stopped at a complete response (read_until_close=False)

    @property
    def responses(self) -> list[int]:
        """Status codes of every response seen (several when requests were pipelined)."""
        return _scan_responses(self.received)[0]

    @property
    def status(self) -> int | None:
        """Status code of the first response, or None if nothing looked like one."""
        codes = self.responses
        return codes[0] if codes else None

    @property
    def ending(self) -> str:
        """How the exchange ended, in words: reset, closed, or still open after the silence."""
        if self.reset:
            return "the server reset the connection"
        if self.closed_by_server:
            return "the server closed the connection"
        if self.complete:
            return "a complete response arrived; the connection was left open"
        return f"the connection was still open after {self.timeout}s of silence"

    def transcript(self) -> Transcript:
        """Both directions, byte for byte, as a two-row table."""
        return Transcript([("→ sent", self.sent),
                           ("← received", self.received if self.received else "(nothing)")])

    def __repr__(self) -> str:
        return f"{self.transcript()!r}\n({self.ending})"

    __str__ = __repr__

    def _repr_html_(self) -> str:
        return f"{self.transcript()._repr_html_()}<p><em>{html.escape(self.ending)}</em></p>"


def raw_exchange(target, data: bytes, *, timeout: float = 1.0,
                 read_until_close: bool = True) -> RawExchange:
    """Send exactly ``data`` on a fresh connection and record what comes back.

    Reading stops when the server closes (or resets) the connection, or after ``timeout``
    seconds in which nothing arrives. With ``read_until_close=False`` it also stops as soon as
    what arrived ends with a complete response (useful against keep-alive servers); with
    pipelined requests that may be after the first response only, so end the last request
    with ``Connection: close`` and keep the default instead. A reset is recorded, not
    raised: seeing it is the point.
    """
    if isinstance(data, str):
        raise TypeError("raw_exchange() sends bytes; write b'...' (and \\r\\n line endings)")
    host, port, _ = _resolve(target, None)
    received = bytearray()
    closed = reset = complete = False
    with _connect(host, port, timeout) as sock:
        try:
            sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            reset = closed = True
        sock.settimeout(timeout)
        while not closed:
            try:
                chunk = sock.recv(_RECV_SIZE)
            except TimeoutError:
                break
            except ConnectionResetError:
                reset = closed = True
                break
            if not chunk:
                closed = True
                break
            received += chunk
            if not read_until_close and _scan_responses(bytes(received))[1]:
                complete = True
                break
    return RawExchange(bytes(data), bytes(received), closed, reset, timeout, complete)


# -- WebSocket -------------------------------------------------------------------------------

class WebSocketRejected(BarelabError):
    """The server answered the WebSocket handshake with something other than 101."""

    def __init__(self, status: int, headers: list[tuple[str, str]], body: bytes):
        super().__init__(f"the server refused the WebSocket handshake with {status}"
                         + (f": {body[:200].decode('utf-8', 'replace')}" if body else ""))
        self.status = status
        self.headers = headers
        self.body = body


class WebSocketClosed(BarelabError):
    """The WebSocket is closed; ``code`` and ``reason`` are from the close frame (RFC 6455 §7.4)."""

    def __init__(self, code: int, reason: str = ""):
        super().__init__(f"the WebSocket is closed (code {code}" + (f", {reason!r})" if reason else ")"))
        self.code = code
        self.reason = reason


def _short(value, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 4] + "…" + text[-3:]


class WebSocketClient:
    """A blocking WebSocket client: use ``websocket_connect`` to make one.

    Everything sent and received is appended to ``.transcript`` (one row per message,
    fragments reassembled), so the cell can show the whole conversation.
    """

    def __init__(self, sock: socket.socket, conn: wsproto.WSConnection, url: str,
                 subprotocol: str | None, timeout: float, transcript: list):
        self._sock = sock
        self._ws = conn
        self.url = url
        self.subprotocol = subprotocol
        self.timeout = timeout
        self.transcript_rows = transcript
        self._messages: list = []    # whole messages received but not yet returned
        self._pongs: list[bytes] = []
        self._parts: list = []      # fragments of the message being received
        self.close_code: int | None = None
        self.close_reason: str = ""
        self._handle_events()  # frames that arrived together with the 101

    # sending
    def _send(self, event) -> None:
        if self.close_code is not None:
            raise WebSocketClosed(self.close_code, self.close_reason)
        self._sock.sendall(self._ws.send(event))

    def send_text(self, text: str) -> None:
        """Send one text message."""
        self._send(ws.TextMessage(data=text))
        self._note("→", "text", _short(text))

    def send_bytes(self, data: bytes) -> None:
        """Send one binary message."""
        self._send(ws.BytesMessage(data=bytes(data)))
        self._note("→", "bytes", _short(bytes(data)))

    def _note(self, direction: str, kind: str, detail: str = "") -> None:
        self.transcript_rows.append((direction, kind, detail))

    # receiving
    def _pump(self, deadline: float, what: str) -> None:
        """Read once from the socket (waiting until ``deadline``) and handle the events."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"no {what} from {self.url} within the timeout")
        self._sock.settimeout(remaining)
        try:
            data = self._sock.recv(_RECV_SIZE)
        except TimeoutError:
            raise TimeoutError(f"no {what} from {self.url} within the timeout") from None
        except ConnectionResetError:
            data = b""
        self._ws.receive_data(data or None)
        self._handle_events()

    def _handle_events(self) -> None:
        for event in self._ws.events():
            if isinstance(event, (ws.TextMessage, ws.BytesMessage)):
                self._parts.append(event.data)
                if event.message_finished:
                    parts, self._parts = self._parts, []
                    if isinstance(event, ws.TextMessage):
                        message = "".join(parts)
                    else:
                        message = b"".join(bytes(p) for p in parts)
                    frames = f" ({len(parts)} frames)" if len(parts) > 1 else ""
                    kind = "text" if isinstance(message, str) else "bytes"
                    self._note("←", kind, _short(message) + frames)
                    self._messages.append(message)
            elif isinstance(event, ws.Ping):
                self._note("←", "ping", _short(event.payload))
                self._sock.sendall(self._ws.send(event.response()))
                self._note("→", "pong", _short(event.payload))
            elif isinstance(event, ws.Pong):
                self._note("←", "pong", _short(event.payload))
                self._pongs.append(event.payload)
            elif isinstance(event, ws.CloseConnection):
                self._note("←", "close", f"{event.code} {event.reason or ''}".rstrip())
                if self._ws.state is wsproto.ConnectionState.REMOTE_CLOSING:
                    try:  # RFC 6455 §5.5.1: answer a close frame with a close frame
                        self._sock.sendall(self._ws.send(event.response()))
                        self._note("→", "close", f"{event.code}")
                    except OSError:
                        pass
                self.close_code, self.close_reason = event.code, event.reason or ""
                self._sock.close()
                return

    def receive(self, timeout: float | None = None) -> str | bytes:
        """Wait for the next whole message: ``str`` for text, ``bytes`` for binary.

        ``timeout`` defaults to the one given to ``websocket_connect``; ``TimeoutError`` if
        nothing arrives in time, ``WebSocketClosed`` once the server has closed.
        """
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while not self._messages:
            if self.close_code is not None:
                raise WebSocketClosed(self.close_code, self.close_reason)
            self._pump(deadline, "message")
        return self._messages.pop(0)

    def ping(self, payload: bytes = b"", timeout: float | None = None) -> bytes:
        """Send a ping and wait for its pong; return the pong's payload.

        Messages that arrive meanwhile are kept for ``receive()``.
        """
        self._send(ws.Ping(payload=bytes(payload)))
        self._note("→", "ping", _short(bytes(payload)))
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            if bytes(payload) in self._pongs:
                self._pongs.remove(bytes(payload))
                return bytes(payload)
            if self.close_code is not None:
                raise WebSocketClosed(self.close_code, self.close_reason)
            self._pump(deadline, "pong")

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Send a close frame, wait (up to the timeout) for the server's, then close the socket.

        Closing twice is harmless. Messages still in flight are recorded in the transcript.
        """
        if self.close_code is not None:
            return
        try:
            self._sock.sendall(self._ws.send(ws.CloseConnection(code=code, reason=reason or None)))
            self._note("→", "close", f"{code} {reason}".rstrip())
            deadline = time.monotonic() + self.timeout
            while self.close_code is None:
                self._pump(deadline, "close frame")
        except (OSError, WSLocalProtocolError):
            pass  # the server went away first: closed either way
        finally:
            if self.close_code is None:
                self.close_code, self.close_reason = code, reason
            self._sock.close()

    @property
    def closed(self) -> bool:
        """True once either side has closed the WebSocket."""
        return self.close_code is not None

    def __enter__(self) -> WebSocketClient:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    @property
    def transcript(self) -> Transcript:
        """The conversation so far, one row per message or control frame."""
        return Transcript(self.transcript_rows, columns=("", "kind", "data"))

    def _state(self) -> str:
        state = f"closed ({self.close_code})" if self.closed else "open"
        proto = f", subprotocol {self.subprotocol!r}" if self.subprotocol else ""
        return f"WebSocket {self.url} {state}{proto}"

    def __repr__(self) -> str:
        return f"{self._state()}\n{self.transcript!r}"

    def _repr_html_(self) -> str:
        return f"<p><code>{html.escape(self._state())}</code></p>{self.transcript._repr_html_()}"


def websocket_connect(target, path: str = "/", *, subprotocols=(), headers=(),
                      origin: str | None = None, timeout: float = 5.0) -> WebSocketClient:
    """Open a WebSocket (RFC 6455) to ``target`` and return a blocking ``WebSocketClient``.

    ``path`` is used unless the URL target carries its own path. Raises
    ``WebSocketRejected`` (with ``.status``, ``.headers``, ``.body``) when the server answers
    the handshake with anything but ``101 Switching Protocols``, and ``TimeoutError`` when it
    does not answer within ``timeout`` seconds.
    """
    host, port, url_path = _resolve(target, None)
    if not isinstance(target, str) or url_path == "/":
        url_path = path
    extra = _normalise_headers(headers)
    if origin is not None:
        extra.append(("Origin", origin))
    conn = wsproto.WSConnection(wsproto.ConnectionType.CLIENT)
    request = ws.Request(host=_host_header(host, port), target=url_path,
                         subprotocols=list(subprotocols), extra_headers=extra)
    url = f"ws://{_host_header(host, port)}{url_path}"
    transcript = [("→", "handshake", f"GET {url_path}")]
    sock = _connect(host, port, timeout)
    try:
        sock.sendall(conn.send(request))
        deadline = time.monotonic() + timeout
        reject, reject_body = None, b""
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no WebSocket handshake answer from {url} within {timeout}s")
            sock.settimeout(remaining)
            try:
                data = sock.recv(_RECV_SIZE)
            except TimeoutError:
                raise TimeoutError(
                    f"no WebSocket handshake answer from {url} within {timeout}s") from None
            if not data and reject is None:
                raise ConnectionError(f"{url} closed the connection during the handshake")
            conn.receive_data(data or None)
            for event in conn.events():
                if isinstance(event, ws.AcceptConnection):
                    shown = f"101, subprotocol {event.subprotocol!r}" if event.subprotocol else "101"
                    transcript.append(("←", "accept", shown))
                    # Bytes after the 101 belong to the WebSocket: wsproto keeps them already.
                    return WebSocketClient(sock, conn, url, event.subprotocol, timeout,
                                           transcript)
                if isinstance(event, ws.RejectConnection):
                    reject = event
                    if not event.has_body:
                        raise _rejected(reject, b"")
                elif isinstance(event, ws.RejectData):
                    reject_body += event.data
                    if event.body_finished:
                        raise _rejected(reject, reject_body)
            if not data:  # closed in the middle of a rejection body
                raise _rejected(reject, reject_body)
    except BaseException:
        sock.close()
        raise


def _rejected(event: ws.RejectConnection, body: bytes) -> WebSocketRejected:
    headers = [(n.decode("latin-1"), v.decode("latin-1")) for n, v in event.headers]
    return WebSocketRejected(event.status_code, headers, bytes(body))
