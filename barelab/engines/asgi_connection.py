"""One client connection of the ASGI engine: read request heads, serve them one at a time.

Each request gets a fresh ``h11.Connection``, fed what the previous one left over
(``trailing_data``), so pipelined requests are answered in order and the empty lines RFC 9112
§2.2 asks a server to ignore before a request-line can be stripped first. The head is checked
(``check_request_head``), then either an ``HTTPCycle`` or a ``WebSocketCycle`` takes over.
After a complete response the connection is reused if h11 says both sides are DONE; an unread
request body is drained first (up to ``max_body_bytes``), except after an unanswered
``Expect: 100-continue``, where the client may never send it, so the connection closes.

Timeouts: ``keep_alive_timeout`` while idle between requests, ``HEAD_TIMEOUT`` for a head
once it started (408 when it expires), and every wait also ends when the server stops.
"""

from __future__ import annotations

import asyncio
import time

import h11

from .asgi_context import HEAD_TIMEOUT, ServerContext
from .asgi_http import HTTPCycle, log_target
from .asgi_request import (RequestRejected, check_request_head, http_scope,
                           is_websocket_upgrade)
from .http_common import refused_coding_status
from .asgi_response import error_response
from .asgi_stream import ClientDisconnected, Stream
from .asgi_websocket import WebSocketCycle


class HTTPConnection:
    """Serves one accepted TCP connection until either side closes it."""

    def __init__(self, ctx: ServerContext, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter):
        self.ctx = ctx
        self.stream = Stream(reader, writer)
        self.cycle: HTTPCycle | WebSocketCycle | None = None

    def shutdown(self) -> None:
        """The server is stopping: wake every wait; running apps hear a disconnect."""
        if self.cycle is not None:
            self.cycle.shutdown()
        self.stream.wake()

    async def run(self) -> None:
        self.ctx.connections.add(self)
        try:
            leftover = b""
            while not self.stream.shutting_down:
                conn = h11.Connection(h11.SERVER,
                                      max_incomplete_event_size=self.ctx.max_header_bytes)
                request = await self._read_head(conn, leftover)
                if request is None:
                    break
                leftover = await self._serve(conn, request)
                if leftover is None:
                    break
        except Exception as exc:  # a bug in the engine must end this connection, visibly
            self.ctx.log.error("ASGI engine: connection handler failed", exc)
        finally:
            self.ctx.connections.discard(self)
            self.stream.close()

    async def _read_head(self, conn: h11.Connection, leftover: bytes) -> h11.Request | None:
        """The next request head, or None when the connection should end."""
        loop = asyncio.get_running_loop()
        data = leftover.lstrip(b"\r\n")  # RFC 9112 §2.2: ignore empty lines before a request
        started = bool(data)
        fed = [data]  # what h11 was given, to look at again if it refuses the head
        if started:
            conn.receive_data(data)
        deadline = loop.time() + HEAD_TIMEOUT
        while True:
            try:
                event = conn.next_event()
            except h11.RemoteProtocolError as exc:  # no request to speak of: refuse it
                status, message = exc.error_status_hint, str(exc)
                if status == 431 and b"\n" not in conn.trailing_data[0]:
                    status = 414  # still in the request-line: it is the target that is long
                    message = "RFC 9112 §3: request-target too long"
                elif status == 501:  # h11's verdict on any coding but chunked
                    status, message = refused_coding_status(b"".join(fed))
                await self._reject(status, message)
                return None
            if isinstance(event, h11.Request):
                return event
            if event is not h11.NEED_DATA:  # ConnectionClosed
                return None
            if started:
                timeout = deadline - loop.time()
                if timeout <= 0:
                    await self._reject(408, f"RFC 9110 §15.5.9: request head not received "
                                            f"within {HEAD_TIMEOUT:g}s")
                    return None
            else:
                timeout = self.ctx.keep_alive_timeout
            chunk = await self.stream.read(timeout)
            if chunk is None and not started:
                return None  # idle keep-alive connection timed out: close quietly
            if chunk is None:
                continue  # the deadline check above answers 408
            if not chunk:
                return None  # EOF or server stopping
            if not started:
                chunk = chunk.lstrip(b"\r\n")
                if not chunk:
                    continue
                started = True
                deadline = loop.time() + HEAD_TIMEOUT
            fed.append(chunk)
            conn.receive_data(chunk)

    async def _reject(self, status: int, message: str, request: h11.Request | None = None,
                      headers=()) -> None:
        """Answer a request the server refuses by itself, then close (lingering)."""
        started = time.perf_counter()
        method = request.method.decode("ascii", "replace") if request is not None else "-"
        data = error_response(status, message, head_only=method == "HEAD", headers=headers)
        version = request.http_version.decode("ascii", "replace") if request is not None else "1.1"
        target = log_target(request) if request is not None else "-"
        with self.ctx.in_flight():  # logged before the bytes leave: nothing left to wait for
            self.ctx.log.request(self.stream.client, method, target, version, status,
                                 len(data) - data.index(b"\r\n\r\n") - 4,
                                 time.perf_counter() - started)
        try:
            await self.stream.write(data)
        except ClientDisconnected:
            return
        await self.stream.close_gracefully()

    async def _serve(self, conn: h11.Connection, request: h11.Request) -> bytes | None:
        """Serve one request; return the bytes left for the next one, or None to close."""
        try:
            target = check_request_head(request, self.ctx.max_header_bytes,
                                        self.ctx.max_body_bytes)
        except RequestRejected as exc:
            await self._reject(exc.status, str(exc), request, exc.headers)
            return None
        if is_websocket_upgrade(request):
            self.cycle = WebSocketCycle(self.ctx, conn, self.stream, request, target)
            await self.cycle.serve()
            return None
        scope = http_scope(request, target, self.stream.client, self.stream.server,
                           self.ctx.state)
        cycle = self.cycle = HTTPCycle(self.ctx, conn, self.stream, request, scope)
        with self.ctx.in_flight():  # until the response is over and its line logged
            self.ctx.spawn(cycle.run())
            await cycle.done  # the response is over (the app may still be running)
        self.cycle = None
        async with cycle.receive_lock:  # a receive() in flight has seen `done` and let go
            pass
        if cycle.taken_over:
            await self.stream.close_gracefully()
            return None
        if cycle.must_close or not cycle.response.complete or self.stream.shutting_down:
            return None
        if conn.their_state is h11.SEND_BODY:
            if cycle.expected_100 and not cycle.sent_100:
                return None  # RFC 9110 §10.1.1: the client may never send the body
            if not await self._drain_body(conn, cycle.body_received):
                return None
        if conn.our_state is h11.DONE and conn.their_state is h11.DONE:
            return bytes(conn.trailing_data[0])
        return None

    async def _drain_body(self, conn: h11.Connection, received: int) -> bool:
        """Read and drop the rest of a request body the app did not read."""
        while True:
            try:
                event = conn.next_event()
            except h11.RemoteProtocolError:
                return False
            if isinstance(event, h11.EndOfMessage):
                return True
            if isinstance(event, h11.Data):
                received += len(event.data)
                if received > self.ctx.max_body_bytes:
                    return False
            elif event is h11.NEED_DATA:
                data = await self.stream.read(self.ctx.keep_alive_timeout)
                if not data:
                    return False
                conn.receive_data(data)
            else:
                return False
