"""One client connection of the WSGI engine, served on its own thread.

``_Connection`` reads request heads with h11, refuses what ``check_request`` refuses (a short
error response, then close), and runs one ``_Exchange`` per request, in order. The connection
is kept alive while h11 says both sides are DONE; a body the app left unread is drained first,
up to ``_DRAIN_LIMIT``. Waits are selects with a timeout: ``keep_alive_timeout`` while idle,
``io_timeout`` for a half-received head or a stalled body; waiting for a request also wakes
when the engine stops. Closing after a response lingers: stop sending, read until the client
closes too, so the kernel does not answer unread input with an RST that destroys the
response. The engine is known only by the small ``Server`` protocol, never imported.
"""

from __future__ import annotations

import selectors
import socket
import threading
import time
from typing import Callable, Protocol

import h11

from ..logs import ServerLog
from .http_common import http_date, reason_phrase, refused_coding_status
from .wsgi_checks import SERVER_SOFTWARE, check_request
from .wsgi_environ import ClientDisconnected, RequestBody, RequestBodyError, build_environ
from .wsgi_exchange import _DRAIN_LIMIT, _Exchange

_RECV_SIZE = 64 * 1024
_LINGER_SECONDS = 1.0        # how long a closing client may keep sending before we hang up


def _wait_readable(sock: socket.socket, timeout: float | None, wake=None) -> str:
    """Wait for ``sock`` to be readable: "ready", "timeout", or "stopping" (``wake`` fired)."""
    with selectors.DefaultSelector() as selector:
        selector.register(sock, selectors.EVENT_READ, "sock")
        if wake is not None:
            selector.register(wake, selectors.EVENT_READ, "wake")
        ready = {key.data for key, _ in
                 selector.select(None if timeout is None else max(timeout, 0.0))}
    if "wake" in ready:
        return "stopping"
    return "ready" if ready else "timeout"


class Server(Protocol):
    """What a connection needs from the engine that accepted it (``WSGIEngine``)."""

    app: Callable
    log: ServerLog
    options: dict
    stopping: bool
    server_address: tuple
    wake_fd: socket.socket | None

    def _forget(self, connection: _Connection) -> None: ...


# ---------------------------------------------------------------------------------------
# One connection, one thread


class _Connection:
    """Serves the requests of one client connection in order, on its own thread."""

    def __init__(self, engine: Server, sock: socket.socket, client: tuple):
        self.engine = engine
        self.log = engine.log
        self.options = engine.options
        self.sock = sock
        self.client = client[:2]
        self.peer = f"{client[0]}:{client[1]}"
        self.h11 = self._new_h11()
        self.peer_closed = False
        self.body_unreliable = False  # a body error left us unsure where the next request starts
        self.linger = False           # a complete response went out: close gently
        self.thread: threading.Thread | None = None

    def _new_h11(self) -> h11.Connection:
        # max_incomplete_event_size bounds the bytes h11 buffers for an unfinished head (431).
        return h11.Connection(h11.SERVER,
                              max_incomplete_event_size=self.options["max_header_bytes"])

    # -- the thread ---------------------------------------------------------------------

    def serve(self) -> None:
        try:
            self._serve_requests()
        except Exception as exc:  # a bug here must not take the server down
            self.log.error(f"{self.peer}: internal error in the connection handler", exc)
        finally:
            self._close()
            self.engine._forget(self)

    def _serve_requests(self) -> None:
        while True:
            head = self._read_request()
            if head is None:
                return
            if not self._respond(*head) or self.engine.stopping:
                return
            self.h11.start_next_cycle()
            self.linger = False  # nothing unread between exchanges: closing idle needs no linger

    def force_close(self) -> None:
        """Called by stop() from another thread: make this thread's socket I/O fail now."""
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass  # already closed by its own thread

    def _close(self) -> None:
        try:
            if self.linger and not self.peer_closed:
                self._linger()
        finally:
            self.sock.close()

    def _linger(self) -> None:
        # Closing with unread input makes the kernel send RST, which can destroy the
        # response before the client reads it. So: stop sending, then read and discard
        # until the client closes too, or for a short while.
        try:
            self.sock.shutdown(socket.SHUT_WR)
            deadline = time.monotonic() + _LINGER_SECONDS
            while True:
                outcome = _wait_readable(self.sock, deadline - time.monotonic(),
                                         self.engine.wake_fd)
                if outcome != "ready" or not self.sock.recv(_RECV_SIZE):
                    return
        except OSError:
            return

    # -- reading --------------------------------------------------------------------------

    def _receive(self, timeout: float | None, interruptible: bool) -> str:
        """Feed h11 the next bytes: "data", "timeout" or "stopping"."""
        outcome = _wait_readable(self.sock, timeout,
                                 self.engine.wake_fd if interruptible else None)
        if outcome != "ready":
            return outcome
        try:
            data = self.sock.recv(_RECV_SIZE)
        except OSError:
            data = b""  # a reset is just an abrupt close
        if not data:
            self.peer_closed = True
        self.h11.receive_data(data)  # b"" tells h11 the peer closed
        return "data"

    def _discard_leading_blank_lines(self) -> None:
        # RFC 9112 §2.2: a server SHOULD ignore at least one empty line received before
        # the request-line (old clients send CRLF after a POST body). h11 refuses it, so
        # give h11 a fresh connection fed only with what follows the blank lines.
        if self.h11.their_state is not h11.IDLE or self.h11.our_state is not h11.IDLE:
            return
        data, closed = self.h11.trailing_data
        stripped = data.lstrip(b"\r\n")
        if len(stripped) == len(data):
            return
        self.h11 = self._new_h11()
        if stripped:
            self.h11.receive_data(stripped)
        if closed:
            self.h11.receive_data(b"")

    def _read_request(self):
        """Wait for the next request head: (request, path, query, authority) or None to close."""
        deadline = None
        while True:
            self._discard_leading_blank_lines()
            event = None
            head = self.h11.trailing_data[0]  # kept to judge h11's Transfer-Encoding errors
            try:
                event = self.h11.next_event()
                if type(event) is h11.Request:
                    return (event, *check_request(event, self.options["max_header_bytes"]))
            except h11.RemoteProtocolError as exc:
                request = event if type(event) is h11.Request else None
                status, detail = exc.error_status_hint, str(exc)
                if status == 431 and request is None and b"\n" not in self.h11.trailing_data[0]:
                    # The request-line alone is over the limit: RFC 9112 §3 says 414.
                    status, detail = 414, "the request-target is too long (max_header_bytes)"
                elif status == 501 and "Transfer-Encoding" in detail:
                    status, detail = refused_coding_status(head)
                self._reject(status, detail, request)
                return None
            if event is not h11.NEED_DATA:
                return None  # ConnectionClosed: the client is done with us
            partial = bool(self.h11.trailing_data[0])
            if partial:
                # Someone is typing a request by hand, or dribbling it out (slowloris):
                # the whole head gets io_timeout, however slowly it arrives.
                deadline = deadline or time.monotonic() + self.options["io_timeout"]
                timeout = deadline - time.monotonic()
            else:
                timeout = self.options["keep_alive_timeout"]
            outcome = self._receive(timeout, interruptible=True)
            if outcome == "timeout" and partial:
                self._reject(408, "the request head did not arrive in time")
            if outcome != "data":
                return None

    def receive_body_chunk(self, wait: bool = True) -> bytes | None:
        """The next piece of the current request's body from h11, b"" at its end.

        With ``wait=False`` only bytes already received are parsed: None means "need more".
        """
        if wait and self.h11.they_are_waiting_for_100_continue and self.can_respond():
            # RFC 9110 §10.1.1: the client holds the body back until we ask for it;
            # we ask on the app's first read, so an app that refuses never receives it.
            self.send(h11.InformationalResponse(status_code=100, reason=b"Continue",
                                                headers=[]))
        deadline = time.monotonic() + self.options["io_timeout"]
        while True:
            try:
                event = self.h11.next_event()
            except h11.RemoteProtocolError as exc:
                if self.peer_closed:
                    raise ClientDisconnected("the client closed the connection "
                                             "in the middle of the request body") from None
                raise RequestBodyError(400, f"malformed request body: {exc}") from None
            if event is h11.NEED_DATA:
                if not wait:
                    return None
                if self._receive(deadline - time.monotonic(), interruptible=False) != "data":
                    raise RequestBodyError(408, "the request body stalled (io_timeout)")
                continue
            if type(event) is h11.Data:
                return bytes(event.data)
            return b""  # EndOfMessage: trailers, if any, are not part of WSGI

    # -- writing --------------------------------------------------------------------------

    def send(self, event) -> None:
        data = self.h11.send(event)
        try:
            self.sock.sendall(data)
        except OSError as exc:  # reset, broken pipe, or a client not reading (io_timeout)
            self.h11.send_failed()
            self.peer_closed = True
            raise ClientDisconnected(f"sending failed: {exc}") from None

    def can_respond(self) -> bool:
        return self.h11.our_state in (h11.IDLE, h11.SEND_RESPONSE)

    def must_close(self) -> bool:
        """Should the response being sent say Connection: close?"""
        # A client still waiting for 100 Continue has not sent the body we never asked
        # for, so we cannot tell where its next request would start.
        return (self.engine.stopping or self.body_unreliable
                or self.h11.they_are_waiting_for_100_continue)

    def send_error_response(self, status_code: int, detail: str = "", close: bool = True,
                            head: bool = False) -> int:
        """Answer with a short text/plain error (never a traceback); returns body bytes sent."""
        reason = reason_phrase(status_code)
        text = f"{status_code} {reason}\n"
        if detail:
            text += (detail if len(detail) <= 300 else detail[:300] + "...") + "\n"
        body = text.encode("utf-8")
        headers = [(b"Content-Type", b"text/plain; charset=utf-8"),
                   (b"Content-Length", b"%d" % len(body)),
                   (b"X-Content-Type-Options", b"nosniff"),
                   (b"Date", http_date()),
                   (b"Server", SERVER_SOFTWARE.encode())]
        if close or self.must_close():
            headers.append((b"Connection", b"close"))
        self.send(h11.Response(status_code=status_code, reason=reason.encode(), headers=headers))
        if not head:  # a HEAD response has the GET's headers and no body
            self.send(h11.Data(data=body))
        self.send(h11.EndOfMessage())
        return 0 if head else len(body)

    def _reject(self, status_code: int, detail: str, request: h11.Request | None = None) -> None:
        """Answer a request we will not serve, then close (after lingering)."""
        started = time.monotonic()
        if not self.can_respond():
            return
        with self.log.in_flight():
            # Even after EOF we try: a client that half-closed (shutdown(SHUT_WR)) still reads.
            try:
                size = self.send_error_response(
                    status_code, detail, head=request is not None and request.method == b"HEAD")
            except (ClientDisconnected, h11.LocalProtocolError):
                return
            self.linger = True
            self.log.request(self.client, request.method.decode() if request else "-",
                             request.target.decode("latin-1") if request else "-",
                             request.http_version.decode() if request else "-",
                             status_code, size, time.monotonic() - started)

    # -- one exchange -------------------------------------------------------------------

    def _respond(self, request: h11.Request, path: bytes, query: bytes,
                 authority: bytes | None) -> bool:
        """Run the app for one request; True if the connection can carry another."""
        declared = [int(v) for n, v in request.headers if n == b"content-length"]
        limit = self.options["max_body_bytes"]
        if declared and declared[0] > limit:
            # Checked before the app runs, and before any 100 Continue: the body is never read.
            self._reject(413, f"request body of {declared[0]} bytes is over {limit} bytes "
                              f"(max_body_bytes)", request)
            return False
        with self.log.in_flight():
            exchange = _Exchange(self, request)
            environ = build_environ(request, path, query, authority,
                                    self.engine.server_address, self.client,
                                    RequestBody(exchange.pull_body), exchange.errors)
            exchange.run(self.engine.app, environ)
            if exchange.status_sent is not None:
                self.log.request(self.client, exchange.method, exchange.target,
                                 request.http_version.decode(), exchange.status_sent,
                                 exchange.body_bytes, time.monotonic() - exchange.started)
        reusable = self._finish(exchange)
        exchange.finished = True
        return reusable

    def _finish(self, exchange: _Exchange) -> bool:
        if exchange.aborted or self.h11.our_state is not h11.DONE:
            return False  # drop it: close at once, no linger
        self.linger = True
        if self.engine.stopping or self.body_unreliable:
            return False
        if self.h11.their_state is h11.SEND_BODY:
            # The app left some body unread; read it so the next request parses, or give up.
            limit = exchange.body_received + _DRAIN_LIMIT
            try:
                while exchange.pull_body():
                    if exchange.body_received > limit:
                        return False
            except (ClientDisconnected, RequestBodyError):
                return False
        return self.h11.their_state is h11.DONE and self.h11.our_state is h11.DONE
