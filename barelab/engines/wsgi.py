"""A threaded HTTP/1.1 server for WSGI apps, built on h11.

Design. h11 owns the protocol: it parses requests, frames responses (Content-Length,
chunked, or close-delimited for HTTP/1.0), sequences keep-alive and pipelined exchanges,
and knows which responses carry no body (HEAD, 204, 304). The engine moves bytes between
sockets and h11, and translates h11 events to and from the WSGI calling convention
(PEP 3333). What h11 leaves to the server -- the WSGI environ, limits, timeouts, the
request-smuggling checks it does not make itself, error responses -- is done by the engine,
with the rule it follows quoted where it happens.

The work is split by scope: ``wsgi_checks`` (the HTTP rules h11 leaves to the server),
``wsgi_environ`` (the environ, ``wsgi.input``, ``wsgi.errors``), ``wsgi_exchange`` (one
request/response through the app) and ``wsgi_connection`` (one client connection). This
module keeps the options and ``WSGIEngine`` -- accepting, turning away, stopping -- and
re-exports the public names of the others.

Threads: one accept thread and one thread per connection, all daemon, all joined by
``stop()``. Nothing polls on an interval: every wait selects on its socket plus the read
end of a socketpair; ``stop()`` writes one byte into it that nobody reads, so it stays
readable and wakes every idle waiter at once. Requests already in the app get up to
``timeout`` to finish; then their sockets are shut down under them.
"""

from __future__ import annotations

import selectors
import socket
import threading
import time

import h11

from ..errors import ServerStartError
from .base import Engine
from .http_common import http_date
from .wsgi_checks import (SERVER_SOFTWARE, check_request, parse_headers,
                          parse_status)
from .wsgi_connection import _LINGER_SECONDS, _RECV_SIZE, _Connection, _wait_readable
from .wsgi_environ import (ClientDisconnected, ErrorStream, RequestBody, RequestBodyError,
                           build_environ)

__all__ = ["WSGIEngine", "RequestBody", "ErrorStream", "ClientDisconnected",
           "RequestBodyError", "build_environ", "check_request", "parse_status",
           "parse_headers"]

DEFAULT_OPTIONS = {
    "max_header_bytes": 16 * 1024,      # request line + headers; above it: 431
    "max_body_bytes": 8 * 1024 * 1024,  # request body; above it: 413
    "keep_alive_timeout": 5.0,          # idle seconds before an unused connection is closed
    "max_connections": 64,              # one thread each; beyond it: 503 and close
    "io_timeout": 30.0,                 # a half-sent request or unread response may stall this long
}
_OPTION_ALIASES = {"max_threads": "max_connections"}

_GRACE_AFTER_FORCE = 1.0     # how long stop() waits for threads after shutting their sockets


# ---------------------------------------------------------------------------------------
# Options


def parse_options(options: dict) -> dict:
    """Merge ``options`` over the defaults; unknown names are a TypeError, like a bad kwarg."""
    unknown = sorted(set(options) - set(DEFAULT_OPTIONS) - set(_OPTION_ALIASES))
    if unknown:
        known = ", ".join(sorted(DEFAULT_OPTIONS) + sorted(_OPTION_ALIASES))
        raise TypeError(f"WSGIEngine got unknown option(s) {', '.join(unknown)}; "
                        f"known options: {known}")
    if "max_threads" in options and "max_connections" in options:
        raise TypeError("WSGIEngine: give max_connections or its alias max_threads, not both")
    values = dict(DEFAULT_OPTIONS)
    for name, value in options.items():
        values[_OPTION_ALIASES.get(name, name)] = value
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            raise ValueError(f"WSGIEngine option {name} must be a positive number, got {value!r}")
    return values


# ---------------------------------------------------------------------------------------
# The engine


class WSGIEngine(Engine):
    """Serve a WSGI app with one thread per connection, HTTP/1.1 by h11.

    Options (all optional): ``max_header_bytes`` (16 KiB, 431 above it), ``max_body_bytes``
    (8 MiB, 413 above it), ``keep_alive_timeout`` (5 s idle), ``max_connections`` (64;
    alias ``max_threads``; beyond it clients get 503), ``io_timeout`` (30 s a request or
    response may stall mid-way).
    """

    kind = "wsgi"

    def __init__(self, app, sock: socket.socket, log, **options):
        super().__init__(app, sock, log, **options)
        self.options = parse_options(options)
        self.stopping = False
        self.server_address: tuple = ("", 0)
        self.wake_fd: socket.socket | None = None
        self._wake_writer: socket.socket | None = None
        self._lock = threading.Lock()
        self._connections: set[_Connection] = set()
        self._accept_thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._stopped = False
        self._connection_count = 0

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        if self._accept_thread is not None:
            raise RuntimeError("WSGIEngine.start() was already called; engines are single-use")
        accepting = getattr(socket, "SO_ACCEPTCONN", None)  # missing on some platforms
        if accepting is not None and not self.sock.getsockopt(socket.SOL_SOCKET, accepting):
            raise ServerStartError("WSGIEngine needs a listening socket (call sock.listen())")
        self.sock.setblocking(False)
        self.server_address = self.sock.getsockname()[:2]
        self.wake_fd, self._wake_writer = socket.socketpair()
        self._accept_thread = threading.Thread(
            target=self._accept_loop, daemon=True,
            name=f"barelab-wsgi-{self.server_address[1]}-accept")
        self._accept_thread.start()
        if not self._ready.wait(5.0):
            raise ServerStartError("WSGIEngine: the accept thread did not start")

    def stop(self, timeout: float = 2.0) -> None:
        with self._lock:
            if self._stopped:
                return
            self._stopped = self.stopping = True
        if self._accept_thread is None:  # never started
            self.sock.close()
            return
        self._wake_writer.send(b"\0")  # never read: stays readable, wakes every waiter
        self._accept_thread.join()
        self.sock.close()
        with self._lock:
            connections = [c for c in self._connections
                           if c.thread is not threading.current_thread()]
        deadline = time.monotonic() + timeout
        for connection in connections:
            connection.thread.join(max(deadline - time.monotonic(), 0.0))
        forced = [c for c in connections if c.thread.is_alive()]
        for connection in forced:
            connection.force_close()
        for connection in forced:
            connection.thread.join(_GRACE_AFTER_FORCE)
        stuck = [c for c in forced if c.thread.is_alive()]
        if stuck:
            # Threads cannot be killed; an app computing forever keeps its thread (daemon).
            self.log.error(f"{len(stuck)} request(s) still inside the application after "
                           f"stop(); their threads are left running")
        else:
            self.wake_fd.close()
            self._wake_writer.close()
        if forced:
            self.log.info(f"force-closed {len(forced)} connection(s) still busy after "
                          f"{timeout:g}s")

    # -- accepting ------------------------------------------------------------------------

    def _accept_loop(self) -> None:
        selector = selectors.DefaultSelector()
        selector.register(self.sock, selectors.EVENT_READ, "listen")
        selector.register(self.wake_fd, selectors.EVENT_READ, "wake")
        turned_away: dict[socket.socket, float] = {}  # 503'd sockets -> when to close them
        self._ready.set()
        try:
            while True:
                timeout = (max(min(turned_away.values()) - time.monotonic(), 0.0)
                           if turned_away else None)
                for key, _ in selector.select(timeout):
                    if key.data == "wake":
                        return
                    try:
                        if key.data == "listen":
                            self._accept_all(selector, turned_away)
                        else:
                            self._drain_turned_away(key.fileobj, selector, turned_away)
                    except Exception as exc:  # one bad client must not stop the accepting
                        self.log.error("internal error while accepting a connection", exc)
                now = time.monotonic()
                for client in [c for c, until in turned_away.items() if until <= now]:
                    self._drop_turned_away(client, selector, turned_away)
        except Exception as exc:  # keep the traceback; stop() still works afterwards
            self.log.error("the accept loop failed; no new connections will be accepted", exc)
        finally:
            for client in turned_away:
                client.close()
            selector.close()

    def _accept_all(self, selector, turned_away) -> None:
        while True:
            try:
                client, address = self.sock.accept()
            except BlockingIOError:
                return
            except OSError as exc:  # EMFILE and friends: back off instead of spinning
                self.log.error(f"accept() failed: {exc}")
                _wait_readable(self.wake_fd, 0.1)
                return
            client.setblocking(True)
            client.settimeout(self.options["io_timeout"])  # bounds sendall to a stuck reader
            try:
                # Head and body go out in separate sends; Nagle would hold the second.
                client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass
            if not self._spawn(client, address):
                self._turn_away(client, address, selector, turned_away)

    def _spawn(self, client: socket.socket, address) -> bool:
        connection = _Connection(self, client, address)
        with self._lock:
            if len(self._connections) >= self.options["max_connections"]:
                return False
            self._connection_count += 1
            connection.thread = threading.Thread(
                target=connection.serve, daemon=True,
                name=f"barelab-wsgi-{self.server_address[1]}-conn-{self._connection_count}")
            self._connections.add(connection)
        try:
            connection.thread.start()
        except RuntimeError:  # "can't start new thread"
            self._forget(connection)
            return False
        return True

    def _forget(self, connection: _Connection) -> None:
        with self._lock:
            self._connections.discard(connection)

    def _turn_away(self, client, address, selector, turned_away) -> None:
        # Full: answer 503 at once rather than leave the client hanging in the backlog,
        # then linger (from this thread, without blocking it) so the answer is not lost to RST.
        body = b"503 Service Unavailable\nToo many connections; try again shortly.\n"
        headers = [(b"Content-Type", b"text/plain; charset=utf-8"),
                   (b"Content-Length", b"%d" % len(body)), (b"Retry-After", b"1"),
                   (b"Date", http_date()), (b"Server", SERVER_SOFTWARE.encode()),
                   (b"Connection", b"close")]
        # h11 lets a server answer before any request arrived (meant for error responses).
        response = h11.Connection(h11.SERVER).send(
            h11.Response(status_code=503, reason=b"Service Unavailable", headers=headers))
        try:
            client.setblocking(False)
            client.send(response + body)
            client.shutdown(socket.SHUT_WR)
        except OSError:
            client.close()
            return
        selector.register(client, selectors.EVENT_READ, "turned-away")
        turned_away[client] = time.monotonic() + _LINGER_SECONDS
        self.log.request(address[:2], "-", "-", "-", 503, len(body), 0.0)

    def _drain_turned_away(self, client, selector, turned_away) -> None:
        try:
            if client.recv(_RECV_SIZE):
                return
        except BlockingIOError:
            return
        except OSError:
            pass
        self._drop_turned_away(client, selector, turned_away)

    @staticmethod
    def _drop_turned_away(client, selector, turned_away) -> None:
        selector.unregister(client)
        del turned_away[client]
        client.close()
