"""One WebSocket connection: the ``receive`` and ``send`` of an ASGI ``websocket`` scope.

h11 has parsed the upgrade request; wsproto's server-side handshake (fed the same head)
checks it against RFC 6455 §4.2.1 and, when the app sends ``websocket.accept``, writes the
101 response. Before accepting, the app may refuse: ``websocket.close`` becomes a 403, and the
denial-response extension (``websocket.http.response.*``) sends any HTTP response through h11.

After the handshake a reader task owns the socket: it feeds wsproto, answers pings at once,
completes closing handshakes, reassembles fragmented messages (closing with 1009 above
``ws_max_message_bytes``) and queues whole messages for ``receive()``. The queue is bounded:
when the app stops receiving, the reader stops reading and TCP pushes back on the client.
Invalid UTF-8 closes with 1007 and other protocol errors with 1002 (wsproto's verdicts).
As in HTTP, ``send()`` on a closed connection raises ``ClientDisconnected`` (an OSError).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import time
from collections import deque
from contextlib import ExitStack

import h11
from wsproto import ConnectionType, WSConnection
from wsproto.connection import ConnectionState
from wsproto.events import (AcceptConnection, BytesMessage, CloseConnection, Message, Ping,
                            Request, TextMessage)
from wsproto.utilities import LocalProtocolError, RemoteProtocolError

from .asgi_context import CLOSE_TIMEOUT, ServerContext
from .asgi_http import caused_by_disconnect, log_target
from .asgi_request import websocket_scope
from .asgi_response import (SERVER_NAME, ResponseWriter, error_response, http_date,
                            validate_headers, validate_status)
from .asgi_stream import ClientDisconnected, Stream

QUEUE_LIMIT = 16  # whole messages waiting for the app before the reader stops reading
_HANDSHAKE_HEADERS = {b"sec-websocket-protocol", b"sec-websocket-accept", b"upgrade",
                      b"connection", b"sec-websocket-extensions"}


def _close_code_allowed(code: int) -> bool:
    """RFC 6455 §7.4: codes an endpoint may put in a Close frame."""
    return code in (1000, 1001, 1002, 1003) or 1007 <= code <= 1014 or 3000 <= code <= 4999


def _key_is_valid(request: h11.Request) -> bool:
    """RFC 6455 §4.2.1: exactly one Sec-WebSocket-Key, base64 of 16 bytes."""
    keys = [v for n, v in request.headers if n == b"sec-websocket-key"]
    if len(keys) != 1:
        return False
    try:
        return len(base64.b64decode(keys[0], validate=True)) == 16
    except (binascii.Error, ValueError):
        return False


class WebSocketCycle:
    """The ASGI side of one upgrade request, from handshake to the closed TCP connection."""

    def __init__(self, ctx: ServerContext, conn: h11.Connection, stream: Stream,
                 request: h11.Request, target: tuple):
        self.ctx = ctx
        self.conn = conn
        self.stream = stream
        self.request = request
        self.target = target
        self.ws = WSConnection(ConnectionType.SERVER)
        self.state = "handshake"  # -> "open" | "denying" (HTTP response) | "closed"
        self.response = ResponseWriter(conn, stream, b"GET", self._denied)
        self.started_at = time.perf_counter()
        self.trailing = b""
        self.connect_sent = False
        self.disconnect: dict | None = None
        self.messages: deque = deque()
        self.arrived = asyncio.Event()
        self.space = asyncio.Event()
        self.reader_task: asyncio.Task | None = None
        self._parts: list = []
        self._size = 0
        self._discarding = False  # after a 1009: ignore data until the peer's Close
        self._handshake_flight = ExitStack()  # log.in_flight() until the handshake is logged

    # -- the connection's side -------------------------------------------------------------

    async def serve(self) -> None:
        """Check the handshake, run the app, and close the connection when both sides are done."""
        self._handshake_flight.enter_context(self.ctx.in_flight())
        try:
            request = await self._check_handshake()
            if request is None:
                return
            scope = websocket_scope(self.request, self.target, self.stream.client,
                                    self.stream.server, self.ctx.state, request.subprotocols)
            try:
                await self.ctx.spawn(self._run_app(scope))
            finally:
                await self._finish()
        finally:
            self._handshake_flight.close()

    async def _check_handshake(self):
        if any(n in (b"content-length", b"transfer-encoding") and v != b"0"
               for n, v in self.request.headers):
            await self._reject(400, "RFC 6455 §4.1: the opening handshake is a GET "
                                    "without content", linger=True)
            return None
        while True:  # Request is followed by EndOfMessage; then h11 pauses for the switch
            event = self.conn.next_event()
            if event is h11.PAUSED or event is h11.NEED_DATA or isinstance(
                    event, h11.ConnectionClosed):
                break
        self.trailing = bytes(self.conn.trailing_data[0])
        head = (b"GET " + bytes(self.request.target) + b" HTTP/1.1\r\n"
                + b"".join(bytes(n) + b": " + bytes(v) + b"\r\n" for n, v in self.request.headers)
                + b"\r\n")
        try:
            self.ws.receive_data(head)
            request = next((e for e in self.ws.events() if isinstance(e, Request)), None)
        except RemoteProtocolError as exc:
            hint = exc.event_hint
            status = getattr(hint, "status_code", 400)
            await self._reject(status, f"RFC 6455 §4.2.1: {exc}", getattr(hint, "headers", ()),
                               linger=True)
            return None
        if request is None:
            await self._reject(400, "RFC 6455 §4.2.1: incomplete opening handshake", linger=True)
            return None
        if not _key_is_valid(self.request):
            await self._reject(400, "RFC 6455 §4.2.1: Sec-WebSocket-Key must be one base64 "
                                    "value of 16 bytes", linger=True)
            return None
        return request

    def shutdown(self) -> None:
        """The server is stopping: say Going Away (1001) and tell the app it is over."""
        if (self.state == "open" and self.ws.state is ConnectionState.OPEN
                and not self.stream.closed):
            going_away = CloseConnection(code=1001, reason="server shutting down")
            self.stream.writer.write(self.ws.send(going_away))
        self._set_disconnect(1001, "server shutting down")

    async def _finish(self) -> None:
        if self.state == "open" and self.ws.state is ConnectionState.OPEN:
            try:  # the app returned without closing: a normal closure
                await self.stream.write(self.ws.send(CloseConnection(code=1000)),
                                        timeout=CLOSE_TIMEOUT)
            except ClientDisconnected:
                pass
        if self.reader_task is not None:
            if not self.stream.shutting_down:  # let the peer answer our Close
                await asyncio.wait({self.reader_task}, timeout=CLOSE_TIMEOUT)
            self.reader_task.cancel()
            await asyncio.wait({self.reader_task}, timeout=CLOSE_TIMEOUT)
        self.state = "closed"
        self._set_disconnect(1006, "")
        self.stream.close()

    def _log(self, status: int, body_bytes: int = 0) -> None:
        self.ctx.log.request(self.stream.client, "GET", log_target(self.request), "1.1", status,
                             body_bytes, time.perf_counter() - self.started_at)
        self._handshake_flight.close()  # the handshake is answered; the session is not in flight

    async def _reject(self, status: int, message: str, headers=(), linger=False) -> None:
        """Refuse the handshake with a plain HTTP response and close the connection."""
        self.state = "closed"
        self._set_disconnect(1006, "")
        data = error_response(status, message, headers=headers)
        self._log(status, len(data) - data.index(b"\r\n\r\n") - 4)
        try:
            await self.stream.write(data)
        except ClientDisconnected:
            pass
        if linger:  # RFC 9112 §9.6, for requests we refuse before the app saw them
            await self.stream.close_gracefully()
        else:
            self.stream.close()

    async def _run_app(self, scope: dict) -> None:
        try:
            await self.ctx.app(scope, self.receive, self.send)
        except Exception as exc:
            if caused_by_disconnect(exc):
                self.ctx.log.info(f"WebSocket client went away ({log_target(self.request)}): "
                                  f"{type(exc).__name__} {exc}".rstrip())
                return
            self.ctx.log.error(f"Exception in ASGI application (WebSocket "
                               f"{log_target(self.request)})", exc)
            await self._app_failed()
        else:
            if self.state == "handshake":
                self.ctx.log.error("ASGI callable returned without accepting or closing the "
                                   "WebSocket (ASGI WebSocket spec: answer websocket.connect "
                                   "with websocket.accept or websocket.close)")
                await self._reject(500, "")
            elif self.state == "denying" and not self.response.complete:
                self.ctx.log.error("ASGI callable returned without completing the "
                                   "websocket.http.response")
                self.stream.close()

    async def _app_failed(self) -> None:
        if self.state == "handshake" or (self.state == "denying" and not self.response.head_sent):
            await self._reject(500, "")
        elif self.state == "open" and self.ws.state is ConnectionState.OPEN:
            self._set_disconnect(1011, "")
            try:  # RFC 6455 §7.4.1: 1011, the server hit an unexpected condition
                await self.stream.write(self.ws.send(CloseConnection(code=1011)),
                                        timeout=CLOSE_TIMEOUT)
            except ClientDisconnected:
                pass
        elif self.state == "denying":
            self.stream.close()

    # -- receive ---------------------------------------------------------------------------

    def _set_disconnect(self, code: int, reason: str) -> None:
        if self.disconnect is None:
            self.disconnect = {"type": "websocket.disconnect", "code": int(code),
                               "reason": reason or ""}
        self.arrived.set()
        self.space.set()

    async def receive(self) -> dict:
        if not self.connect_sent:
            self.connect_sent = True
            return {"type": "websocket.connect"}
        while True:
            if self.messages:
                self.space.set()
                return self.messages.popleft()
            if self.disconnect is not None:
                return self.disconnect
            self.arrived.clear()
            await self.arrived.wait()  # bounded by the peer, the app's own close, or stop()

    async def _push(self, message: dict) -> None:
        while len(self.messages) >= QUEUE_LIMIT and self.disconnect is None:
            self.space.clear()
            await self.space.wait()  # the app is behind: stop reading, let TCP push back
        self.messages.append(message)
        self.arrived.set()

    async def _read_frames(self) -> None:
        """The reader task: from bytes to queued ASGI messages, control frames answered."""
        try:
            if self.trailing:
                self.ws.receive_data(self.trailing)
            while True:
                if not await self._handle_events():
                    break
                closing = self.ws.state is ConnectionState.LOCAL_CLOSING
                data = await self.stream.read(CLOSE_TIMEOUT if closing else None)
                if not data:  # EOF, timeout or stop: no Close frame from the peer
                    self._set_disconnect(1001 if self.stream.shutting_down else 1006, "")
                    break
                self.ws.receive_data(data)
        except ClientDisconnected:
            self._set_disconnect(1006, "")
        except Exception as exc:  # a bug here must end this connection, not go unnoticed
            self.ctx.log.error("ASGI engine: WebSocket reader failed", exc)
            self._set_disconnect(1011, "")
        finally:
            if self.ws.state is not ConnectionState.OPEN or self.disconnect is not None:
                self.stream.close()  # RFC 6455 §7.1.1: the server closes the TCP connection first

    async def _handle_events(self) -> bool:
        """Process what wsproto parsed; False once the connection is done reading."""
        for event in self.ws.events():
            if isinstance(event, Message):
                if not await self._collect(event):
                    return self.ws.state is ConnectionState.LOCAL_CLOSING
            elif isinstance(event, Ping):
                if self.ws.state is ConnectionState.OPEN:
                    await self.stream.write(self.ws.send(event.response()))
            elif isinstance(event, CloseConnection):
                return await self._closed(event)
        return True

    async def _collect(self, event: Message) -> bool:
        if self._discarding or self.ws.state is not ConnectionState.OPEN:
            return True  # after a Close is sent, data is only read to reach the peer's Close
        data = event.data
        self._parts.append(data)
        self._size += len(data.encode("utf-8")) if isinstance(data, str) else len(data)
        if self._size > self.ctx.ws_max_message_bytes:
            self._discarding = True
            self._parts, self._size = [], 0
            await self._fail(1009, f"message larger than {self.ctx.ws_max_message_bytes} bytes")
            return False
        if event.message_finished:
            if isinstance(event, TextMessage):
                message = {"type": "websocket.receive", "text": "".join(self._parts)}
            else:
                message = {"type": "websocket.receive", "bytes": b"".join(self._parts)}
            self._parts, self._size = [], 0
            await self._push(message)
        return True

    async def _fail(self, code: int, reason: str) -> None:
        """We end the connection with ``code`` (RFC 6455 §7.4.1); the app hears it too."""
        self._set_disconnect(code, reason)
        if self.ws.state is ConnectionState.OPEN:
            await self.stream.write(self.ws.send(CloseConnection(code=code, reason=reason)),
                                    timeout=CLOSE_TIMEOUT)

    async def _closed(self, event: CloseConnection) -> bool:
        if self.ws.state is ConnectionState.REMOTE_CLOSING:  # the peer closes: echo its code
            self._set_disconnect(event.code, event.reason)
            await self.stream.write(self.ws.send(event.response()))
        elif self.ws.state is ConnectionState.CLOSED:  # the peer answered our Close
            self._set_disconnect(event.code, event.reason)
        else:  # wsproto found a protocol error (1002) or invalid UTF-8 (1007)
            await self._fail(event.code, event.reason)
        return False

    # -- send ------------------------------------------------------------------------------

    async def send(self, message) -> None:
        if not isinstance(message, dict) or "type" not in message:
            raise TypeError(f"ASGI spec: a message is a dict with a 'type' key, got {message!r}")
        kind = message["type"]
        handler = {
            "websocket.accept": self._send_accept,
            "websocket.send": self._send_message,
            "websocket.close": self._send_close,
            "websocket.http.response.start": self._send_response_start,
            "websocket.http.response.body": self._send_response_body,
        }.get(kind)
        if handler is None:
            raise RuntimeError(f"ASGI WebSocket spec: unexpected message type {kind!r}")
        await handler(message)

    def _require_handshake(self, kind: str) -> None:
        if self.state == "handshake" and not self.stream.closed:
            return
        if self.state == "closed" or self.stream.closed:
            raise ClientDisconnected(f"cannot send {kind!r}: the connection is closed")
        raise RuntimeError(f"ASGI WebSocket spec: {kind!r} is only valid before the "
                           f"handshake is answered (state: {self.state})")

    async def _send_accept(self, message: dict) -> None:
        self._require_handshake("websocket.accept")
        subprotocol = message.get("subprotocol")
        if subprotocol is not None and not isinstance(subprotocol, str):
            raise TypeError(f"ASGI WebSocket spec: 'subprotocol' must be a str or None, got "
                            f"{subprotocol!r}")
        headers = validate_headers(message.get("headers", ()), "'websocket.accept'")
        names = {n.lower() for n, _ in headers}
        if names & _HANDSHAKE_HEADERS:
            raise ValueError("ASGI WebSocket spec: 'websocket.accept' headers must not include "
                             f"{sorted(names & _HANDSHAKE_HEADERS)}; the server writes them "
                             "(use the 'subprotocol' key)")
        if b"date" not in names:
            headers.append((b"Date", http_date()))
        if b"server" not in names:
            headers.append((b"Server", SERVER_NAME))
        try:
            data = self.ws.send(AcceptConnection(subprotocol=subprotocol, extra_headers=headers))
        except LocalProtocolError as exc:
            raise ValueError(f"ASGI WebSocket spec: the subprotocol must be one the client "
                             f"offered in scope['subprotocols'] ({exc})") from None
        self.state = "open"
        await self.stream.write(data, lambda: self._log(101))
        self.reader_task = self.ctx.spawn(self._read_frames())

    async def _send_message(self, message: dict) -> None:
        if self.state == "handshake" or self.state == "denying":
            raise RuntimeError("ASGI WebSocket spec: 'websocket.send' before 'websocket.accept'")
        text, data = message.get("text"), message.get("bytes")
        if (text is None) == (data is None):
            raise ValueError("ASGI WebSocket spec: 'websocket.send' has exactly one of 'bytes' "
                             "and 'text' set (non-None)")
        if text is not None and not isinstance(text, str):
            raise TypeError(f"ASGI WebSocket spec: 'text' must be a str, got "
                            f"{type(text).__name__}")
        if data is not None and not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"ASGI WebSocket spec: 'bytes' must be a byte string, got "
                            f"{type(data).__name__}")
        if self.state != "open" or self.ws.state is not ConnectionState.OPEN:
            raise ClientDisconnected("cannot send 'websocket.send': the WebSocket is closed")
        event = TextMessage(data=text) if text is not None else BytesMessage(data=bytes(data))
        await self.stream.write(self.ws.send(event))

    async def _send_close(self, message: dict) -> None:
        code = message.get("code", 1000)
        reason = message.get("reason") or ""
        if isinstance(code, bool) or not isinstance(code, int) or not _close_code_allowed(code):
            raise ValueError(f"RFC 6455 §7.4: {code!r} is not a close code an endpoint may send")
        if not isinstance(reason, str):
            raise TypeError(f"ASGI WebSocket spec: 'reason' must be a str, got {reason!r}")
        if self.state == "handshake":  # ASGI: close before accept is an HTTP 403
            await self._reject(403, "")
        elif self.state == "open" and self.ws.state is ConnectionState.OPEN:
            # A client that stopped reading gets CLOSE_TIMEOUT, not WRITE_TIMEOUT: the app
            # is saying goodbye (often to drop that very client) and must not wait 30 s.
            try:
                await self.stream.write(self.ws.send(CloseConnection(code=code, reason=reason)),
                                        timeout=CLOSE_TIMEOUT)
            except ClientDisconnected:
                pass  # it is gone either way; the app asked for the end, and got it
        # otherwise the connection is already closing or closed: nothing more to say

    async def _send_response_start(self, message: dict) -> None:
        self._require_handshake("websocket.http.response.start")
        status = validate_status(message.get("status"), "'websocket.http.response.start'")
        headers = validate_headers(message.get("headers", ()), "'websocket.http.response.start'")
        if not any(n.lower() == b"connection" for n, _ in headers):
            headers.append((b"connection", b"close"))
        self.response.start(status, headers)
        self.state = "denying"

    async def _send_response_body(self, message: dict) -> None:
        if self.state != "denying" or self.response.complete:
            raise RuntimeError("ASGI WebSocket spec: 'websocket.http.response.body' goes after "
                               "'websocket.http.response.start' and before more_body False")
        body = message.get("body", b"")
        if not isinstance(body, (bytes, bytearray, memoryview)):
            raise TypeError(f"ASGI spec: 'body' must be a byte string, got "
                            f"{type(body).__name__}")
        await self.response.body(bytes(body), bool(message.get("more_body", False)))
        if self.response.complete:
            self._set_disconnect(1006, "")

    def _denied(self) -> None:
        self._log(self.response.status, self.response.body_bytes)
