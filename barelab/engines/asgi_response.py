"""ASGI response messages to HTTP/1.1 bytes, through h11.

``ResponseWriter`` takes ``http.response.start`` / ``http.response.body`` (and the WebSocket
denial response, which has the same shape) and lets h11 do the framing. The head is held back
until the first body message: if that message is the whole body and the app set no framing,
the response gets a Content-Length instead of chunked encoding. App-set Content-Length is kept
(h11 checks the body against it); an app-set ``Transfer-Encoding: chunked`` is left to h11,
which chunks the payload once. Bodies are dropped for HEAD, 204 and 304 (RFC 9110 §6.4.1).

``error_response`` builds a short plain-text response by hand, for answers the server gives
on its own when the h11 connection may already be unusable (400, 408, 413, 431, ...).
"""

from __future__ import annotations

import h11

from .asgi_stream import Stream
from .http_common import http_date, reason_phrase

SERVER_NAME = b"barelab"


def error_response(status: int, message: str = "", *, head_only: bool = False,
                   headers=()) -> bytes:
    """A complete ``Connection: close`` response with a one-line plain-text body."""
    phrase = reason_phrase(status).encode("ascii")
    body = phrase + (b": " + message.encode("utf-8", "replace") if message else b"") + b"\n"
    lines = [b"HTTP/1.1 %d %s" % (status, phrase),
             b"Content-Type: text/plain; charset=utf-8",
             b"Content-Length: %d" % len(body),
             b"Connection: close",
             b"Date: " + http_date(),
             b"Server: " + SERVER_NAME]
    lines += [bytes(n) + b": " + bytes(v) for n, v in headers]
    return b"\r\n".join(lines) + b"\r\n\r\n" + (b"" if head_only else body)


def validate_headers(headers, where: str) -> list[tuple[bytes, bytes]]:
    """ASGI: headers is an iterable of [name, value] two-item iterables of byte strings."""
    try:
        pairs = [tuple(pair) for pair in headers]
    except TypeError:
        raise TypeError(f"ASGI spec: {where} 'headers' must be an iterable of "
                        f"[name, value] pairs, got {headers!r}") from None
    result = []
    for pair in pairs:
        if len(pair) != 2 or not all(isinstance(x, (bytes, bytearray)) for x in pair):
            raise TypeError(f"ASGI spec: each header in {where} must be a [name, value] "
                            f"pair of byte strings, got {pair!r}")
        result.append((bytes(pair[0]), bytes(pair[1])))
    return result


def validate_status(status, where: str) -> int:
    if isinstance(status, bool) or not isinstance(status, int):
        raise TypeError(f"ASGI spec: {where} 'status' must be an int, got {status!r}")
    if not 200 <= status <= 599:
        raise ValueError(f"ASGI spec: {where} 'status' must be a final status code "
                         f"(200-599), got {status}")
    return status


class ResponseWriter:
    """One response on an h11 connection, from ASGI messages to bytes on the wire."""

    def __init__(self, conn: h11.Connection, stream: Stream, method: bytes, on_complete=None):
        self.on_complete = on_complete  # called when the last bytes reach the transport
        self.conn = conn
        self.stream = stream
        self.method = method
        self.status: int | None = None
        self.headers: list[tuple[bytes, bytes]] = []
        self.head_sent = False
        self.complete = False
        self.failed = False  # h11 refused something: the connection must close
        self.body_bytes = 0

    @property
    def started(self) -> bool:
        return self.status is not None

    def start(self, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        """Validate and record the head; it goes out with the first body message."""
        te = [v for n, v in headers if n.lower() == b"transfer-encoding"]
        codings = [c.strip().lower() for v in te for c in v.split(b",") if c.strip()]
        if te and codings != [b"chunked"]:
            raise ValueError("ASGI spec: the server does the framing; the only "
                             "Transfer-Encoding an app may set is 'chunked', got "
                             f"{b', '.join(te)!r}")
        try:  # h11 checks names and values (RFC 9110 §5.5: no CR, LF or NUL in a value)
            h11.Response(status_code=status, headers=headers)
        except h11.LocalProtocolError as exc:
            raise ValueError(f"ASGI spec: invalid 'http.response.start' headers: {exc}") from None
        self.status = status
        self.headers = headers

    def _body_allowed(self) -> bool:
        return self.method != b"HEAD" and self.status not in (204, 304)

    def _head(self, first_body: bytes, more_body: bool) -> h11.Response:
        names = [n.lower() for n, _ in self.headers]
        headers = list(self.headers)
        if self.status == 204:  # RFC 9110 §8.6: no Content-Length in a 204
            headers = [(n, v) for n, v in headers
                       if n.lower() not in (b"content-length", b"transfer-encoding")]
        te = [v for n, v in headers if n.lower() == b"transfer-encoding"]
        framed = b"content-length" in names or bool(te)
        if (not framed and not more_body and self.status not in (204, 304)
                and (self.method != b"HEAD" or first_body)):
            headers.append((b"content-length", b"%d" % len(first_body)))
        if b"date" not in names:
            headers.append((b"date", http_date()))
        if b"server" not in names:
            headers.append((b"server", SERVER_NAME))
        if self.conn.they_are_waiting_for_100_continue or self.stream.shutting_down:
            # RFC 9112 §9.6: say so when this response is the connection's last
            headers.append((b"connection", b"close"))
        return h11.Response(status_code=self.status, headers=headers,
                            reason=reason_phrase(self.status).encode("ascii"))

    def _send(self, event) -> bytes:
        try:
            return self.conn.send(event) or b""
        except h11.LocalProtocolError as exc:
            self.failed = True
            raise RuntimeError(f"HTTP/1.1 framing (RFC 9112 §6): {exc}") from None

    async def body(self, data: bytes, more_body: bool) -> None:
        """Send one ``http.response.body``; with ``more_body`` False the response ends."""
        out = b""
        first = not self.head_sent
        if first:
            out += self._send(self._head(data, more_body))
        if data and self._body_allowed():
            out += self._send(h11.Data(data=data))
        if not more_body:
            out += self._send(h11.EndOfMessage())
        # Only now is anything written: if h11 refused this first message (a body shorter
        # than the app's Content-Length, say), no byte went out and the server can still
        # answer 500 instead of closing on a response that claimed a 200.
        self.head_sent = True
        if data and self._body_allowed():
            self.body_bytes += len(data)
        self.complete = not more_body
        await self.stream.write(out, self.on_complete if self.complete else None)
