"""One HTTP request/response cycle: the ``receive`` and ``send`` of an ASGI ``http`` scope.

The request body is pulled from the socket only when the app calls ``receive()``, one h11
``Data`` event per ``http.request`` message, so a client can never push more than the app
consumes (plus the stream buffer). Once the body is complete, ``receive()`` blocks until the
client goes away or the response is complete, then returns ``http.disconnect`` (ASGI HTTP
spec: "Sent to the application if receive is called after a response has been sent or after
the HTTP connection has been closed").

``send()`` checks the message order the spec requires and hands the response to
``ResponseWriter``. When the client is gone, ``send()`` raises ``ClientDisconnected`` (an
``OSError``, as spec 2.4 asks); if it escapes the app, the engine logs it as information, not
as a crash. An exception before the head went out becomes a plain 500 (traceback in the
server log, never on the wire); after it, the connection is closed so the client can tell the
response is incomplete.
"""

from __future__ import annotations

import asyncio
import time

import h11

from .asgi_context import BODY_TIMEOUT, ServerContext
from .asgi_response import ResponseWriter, error_response, validate_headers, validate_status
from .asgi_stream import ClientDisconnected, Stream

DISCONNECT = {"type": "http.disconnect"}


def caused_by_disconnect(exc: BaseException) -> bool:
    """True if ``exc`` is, or was raised while handling, a ``ClientDisconnected``."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, ClientDisconnected):
            return True
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return False


def log_target(request: h11.Request) -> str:
    return bytes(request.target).decode("latin-1")


class HTTPCycle:
    """The ASGI side of one request on a connection."""

    def __init__(self, ctx: ServerContext, conn: h11.Connection, stream: Stream,
                 request: h11.Request, scope: dict):
        self.ctx = ctx
        self.conn = conn
        self.stream = stream
        self.request = request
        self.scope = scope
        self.response = ResponseWriter(conn, stream, request.method, self._completed)
        self.started_at = time.perf_counter()
        self.body_received = 0
        self.body_done = False
        self.disconnected = False  # receive() has reported (or will report) http.disconnect
        self.must_close = False  # the connection cannot carry another request
        self.taken_over = False  # the server answered this request itself (408/413/500...)
        self.expected_100 = conn.they_are_waiting_for_100_continue
        self.sent_100 = False
        self.receive_lock = asyncio.Lock()
        self.done = asyncio.get_running_loop().create_future()  # response over, one way or another
        self._lookahead = None
        self._logged = False

    # -- the connection's side -------------------------------------------------------------

    def finish(self) -> None:
        if not self.done.done():
            self.done.set_result(None)

    def shutdown(self) -> None:
        """The server is stopping: receive() now returns http.disconnect; send() still works."""
        self.disconnected = True
        self.must_close = True

    async def run(self) -> None:
        """Call the app and clean up after it, whatever it does."""
        try:
            await self.ctx.app(self.scope, self.receive, self.send)
        except Exception as exc:
            if caused_by_disconnect(exc):  # e.g. Starlette turns our OSError into its own
                self.must_close = True
                self.ctx.log.info(f"client went away during {self._describe()}: "
                                  f"{type(exc).__name__} {exc}".rstrip())
            else:
                self.ctx.log.error(f"Exception in ASGI application during "
                                   f"{self._describe()}", exc)
                await self._abandon(500)
        else:
            if not self.response.complete and not self.taken_over:
                where = "starting" if not self.response.started else "completing"
                message = (f"ASGI callable returned without {where} the response "
                           f"({self._describe()})")
                if self.stream.closed or self.stream.eof:
                    self.ctx.log.info(message + " after the client went away")
                else:
                    self.ctx.log.error(message + "; ASGI HTTP spec: a response ends with an "
                                       "http.response.body whose more_body is False")
                await self._abandon(500)
        finally:
            self.finish()

    def _describe(self) -> str:
        return f"{self.scope['method']} {log_target(self.request)}"

    def _log(self, status: int, body_bytes: int) -> None:
        if self._logged:
            return
        self._logged = True
        self.ctx.log.request(self.stream.client, self.scope["method"], log_target(self.request),
                             self.scope["http_version"], status, body_bytes,
                             time.perf_counter() - self.started_at)

    async def _abandon(self, status: int, message: str = "") -> None:
        """The server answers ``status`` itself if no head went out yet, and closes."""
        self.must_close = True
        self.disconnected = True
        if self.response.head_sent or self.taken_over or self.stream.closed:
            if not self.response.complete and self.response.started:
                self._log(self.response.status, self.response.body_bytes)
            self.finish()
            return
        self.taken_over = True
        data = error_response(status, message, head_only=self.request.method == b"HEAD")
        self._log(status, len(data) - data.index(b"\r\n\r\n") - 4)
        try:
            await self.stream.write(data)
        except ClientDisconnected:
            pass
        self.finish()

    # -- receive ---------------------------------------------------------------------------

    def _over(self) -> bool:
        return self.disconnected or self.done.done() or self.stream.shutting_down

    async def receive(self) -> dict:
        if self._over():
            return DISCONNECT
        async with self.receive_lock:  # concurrent receive() calls take turns
            if self._over():
                return DISCONNECT
            if self.body_done:
                await self._wait_for_disconnect()
                return DISCONNECT
            return await self._read_body()

    async def _wait_for_disconnect(self) -> None:
        """Block until the client leaves or the response is over. Bytes that arrive meanwhile
        are the next pipelined request: h11 keeps them (up to a limit) for the next cycle."""
        buffered = 0
        while not self._over():
            if buffered > self.ctx.max_header_bytes:
                await self.stream.wait_woken(self.done)
                break
            data = await self.stream.read(None, self.done)
            if not data:
                break
            self.conn.receive_data(data)
            buffered += len(data)
        if self.stream.eof:
            self.must_close = True
        self.disconnected = True

    def _next_event(self):
        if self._lookahead is not None:
            event, self._lookahead = self._lookahead, None
            return event
        return self.conn.next_event()

    async def _read_body(self) -> dict:
        if self.conn.they_are_waiting_for_100_continue:  # RFC 9110 §10.1.1
            self.sent_100 = True
            continue_ = h11.InformationalResponse(status_code=100, headers=[], reason=b"Continue")
            try:
                await self.stream.write(self.conn.send(continue_) or b"")
            except ClientDisconnected:
                self.disconnected = self.must_close = True
                return DISCONNECT
        while True:
            try:
                event = self._next_event()
            except h11.RemoteProtocolError as exc:
                await self._abandon(exc.error_status_hint, f"malformed request body: {exc}")
                return DISCONNECT
            if event is h11.NEED_DATA:
                data = await self.stream.read(BODY_TIMEOUT, self.done)
                if data is None:
                    await self._abandon(408, f"RFC 9110 §15.5.9: no request body received "
                                             f"for {BODY_TIMEOUT:g}s")
                    return DISCONNECT
                if not data:  # the client left, or the response is over, or we are stopping
                    if self.stream.eof:
                        self.must_close = True
                    self.disconnected = True
                    return DISCONNECT
                self.conn.receive_data(data)
                continue
            if isinstance(event, h11.Data):
                self.body_received += len(event.data)
                if self.body_received > self.ctx.max_body_bytes:
                    await self._abandon(413, f"RFC 9110 §15.5.14: request content larger than "
                                             f"{self.ctx.max_body_bytes} bytes")
                    return DISCONNECT
                more_body = True
                try:  # look one event ahead, so the last chunk says more_body False
                    following = self.conn.next_event()
                except h11.RemoteProtocolError:
                    following = None  # reported on the next receive()
                if isinstance(following, h11.EndOfMessage):
                    more_body = False
                    self.body_done = True
                elif following is not None and following is not h11.NEED_DATA:
                    self._lookahead = following
                return {"type": "http.request", "body": bytes(event.data),
                        "more_body": more_body}
            if isinstance(event, h11.EndOfMessage):
                self.body_done = True
                return {"type": "http.request", "body": b"", "more_body": False}
            # PAUSED or ConnectionClosed cannot happen before EndOfMessage
            self.disconnected = self.must_close = True
            return DISCONNECT

    # -- send ------------------------------------------------------------------------------

    async def send(self, message) -> None:
        if not isinstance(message, dict) or "type" not in message:
            raise TypeError(f"ASGI spec: a message is a dict with a 'type' key, got {message!r}")
        kind = message["type"]
        if kind not in ("http.response.start", "http.response.body"):
            raise RuntimeError(f"ASGI HTTP spec: an http app sends 'http.response.start' then "
                               f"'http.response.body', got {kind!r}")
        if self.taken_over or self.stream.closed:
            raise ClientDisconnected(f"cannot send {kind!r}: the client connection is closed")
        if kind == "http.response.start":
            if self.response.started:
                raise RuntimeError("ASGI HTTP spec: 'http.response.start' is sent once per "
                                   "response, and it was already sent")
            status = validate_status(message.get("status"), "'http.response.start'")
            headers = validate_headers(message.get("headers", ()), "'http.response.start'")
            if message.get("trailers", False):
                raise RuntimeError("ASGI HTTP spec: 'trailers' requires the "
                                   "http.response.trailers extension, which barelab does not "
                                   "offer (it is not in scope['extensions'])")
            self.response.start(status, headers)
            return
        if not self.response.started:
            raise RuntimeError("ASGI HTTP spec: 'http.response.body' sent before "
                               "'http.response.start'")
        if self.response.complete:
            raise RuntimeError("ASGI HTTP spec: 'http.response.body' sent after the response "
                               "was complete ('more_body': False)")
        body = message.get("body", b"")
        if not isinstance(body, (bytes, bytearray, memoryview)):
            raise TypeError(f"ASGI HTTP spec: 'body' must be a byte string, got "
                            f"{type(body).__name__}")
        more_body = message.get("more_body", False)
        try:
            await self.response.body(bytes(body), bool(more_body))
        except ClientDisconnected:
            self.disconnected = self.must_close = True
            self._log(self.response.status, self.response.body_bytes)
            self.finish()
            raise
        if self.response.complete:
            self.finish()

    def _completed(self) -> None:
        self._log(self.response.status, self.response.body_bytes)
