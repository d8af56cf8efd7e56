"""``ASGIEngine``: an HTTP/1.1 + WebSocket ASGI server on its own event loop, in its own thread.

Never the Jupyter kernel's loop: a cell that makes a blocking request (urllib, ``!curl``)
blocks the kernel's loop, and an app scheduled there could never answer it. So ``start()``
creates a daemon thread with a fresh loop, serves the already-bound socket there, runs the
lifespan startup, and returns once the server is ready, or raises in the caller's thread.

``stop()`` is a wake-up, not a poll: ``call_soon_threadsafe`` sets an event the loop is
waiting on. The loop then stops accepting (closing the listening socket), tells every
connection the server is going away (idle ones close; running apps get ``http.disconnect`` /
``websocket.disconnect`` with 1001), gives them half the timeout to finish, cancels the rest,
sends ``lifespan.shutdown``, and ends; the thread is joined.

The protocol work lives next door: ``asgi_connection`` (one TCP connection), ``asgi_http``
and ``asgi_websocket`` (one ASGI cycle each), ``asgi_response`` (framing through h11),
``asgi_request`` (checks and scopes), ``asgi_stream`` (bounded I/O), ``lifespan``.
"""

from __future__ import annotations

import asyncio
import socket
import threading

from ..errors import ServerStartError
from ..logs import ServerLog
from .asgi_connection import HTTPConnection
from .asgi_context import ServerContext, check_options
from .asgi_stream import ClientDisconnected
from .base import Engine
from .lifespan import STARTUP_TIMEOUT, Lifespan

__all__ = ["ASGIEngine", "ClientDisconnected"]


class ASGIEngine(Engine):
    """Serve an ASGI 3 app (HTTP/1.1 via h11, WebSocket via wsproto) on a private loop."""

    kind = "asgi"

    def __init__(self, app, sock: socket.socket, log: ServerLog, **options):
        options = check_options(options)
        super().__init__(app, sock, log, **options)
        self.ctx = ServerContext(app=app, log=log,
                                 max_header_bytes=options["max_header_bytes"],
                                 max_body_bytes=options["max_body_bytes"],
                                 keep_alive_timeout=float(options["keep_alive_timeout"]),
                                 ws_max_message_bytes=options["ws_max_message_bytes"])
        self.lifespan = Lifespan(app, log, options["lifespan"])
        self.loop: asyncio.AbstractEventLoop | None = None
        self.thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._startup_error: BaseException | None = None
        self._stop_requested: asyncio.Event | None = None
        self._stop_timeout = 2.0

    # -- the caller's thread ---------------------------------------------------------------

    def start(self) -> None:
        """Serve in a background thread; return once ready, raise if it cannot start."""
        if self.thread is not None:
            raise RuntimeError("ASGIEngine.start() called twice")
        self.thread = threading.Thread(target=self._thread_main, daemon=True,
                                       name=f"barelab-asgi-{self._port()}")
        self.thread.start()
        if not self._ready.wait(STARTUP_TIMEOUT + 5.0):
            self.stop(timeout=0.5)
            raise ServerStartError("ASGI engine did not become ready in time")
        if self._startup_error is not None:
            self.thread.join(timeout=5.0)
            self._close_socket()
            raise self._startup_error

    def stop(self, timeout: float = 2.0) -> None:
        """Stop promptly: wake the loop, let it shut down, join the thread, free the port."""
        thread, loop = self.thread, self.loop
        if thread is None:
            self._close_socket()
            return
        self._stop_timeout = timeout
        if loop is not None and thread.is_alive():
            try:
                loop.call_soon_threadsafe(self._request_stop)
            except RuntimeError:  # the loop closed in the meantime
                pass
        thread.join(timeout + 1.0)
        self._close_socket()
        if thread.is_alive():
            self.log.error(f"ASGI engine thread did not stop within {timeout + 1.0:g}s")

    def _port(self):
        try:
            return self.sock.getsockname()[1]
        except OSError:
            return "?"

    def _close_socket(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    # -- the engine's thread ---------------------------------------------------------------

    def _request_stop(self) -> None:
        if self._stop_requested is not None:
            self._stop_requested.set()

    def _thread_main(self) -> None:
        loop = asyncio.new_event_loop()
        self.loop = loop
        try:
            loop.run_until_complete(self._serve())
        except BaseException as exc:  # reported to start(); the thread must end cleanly
            if not self._ready.is_set():
                self._startup_error = exc if isinstance(exc, Exception) else ServerStartError(
                    f"ASGI engine failed to start: {exc!r}")
            else:
                self.log.error("ASGI engine loop failed", exc)
        finally:
            try:
                self._cancel_leftovers(loop)
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:  # close() lets asyncio.to_thread workers go without waiting for them
                loop.close()
                self._ready.set()

    @staticmethod
    def _cancel_leftovers(loop: asyncio.AbstractEventLoop) -> None:
        pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
        for task in pending:
            task.cancel()
        if pending:
            loop.run_until_complete(asyncio.wait(pending, timeout=1.0))

    async def _serve(self) -> None:
        self._stop_requested = asyncio.Event()
        # Startup first: clients that connect meanwhile wait in the listen backlog.
        await self.lifespan.startup()
        self.ctx.state = self.lifespan.state
        server = await asyncio.start_server(self._on_connection, sock=self.sock)
        self._ready.set()
        await self._stop_requested.wait()  # woken by stop() via call_soon_threadsafe
        await self._shutdown(server)

    def _on_connection(self, reader: asyncio.StreamReader,
                       writer: asyncio.StreamWriter) -> None:
        # A plain callback (not a coroutine), so every task is one the engine tracks.
        connection = HTTPConnection(self.ctx, reader, writer)
        if self.ctx.stopping:
            connection.stream.abort()
            return
        self.ctx.spawn(connection.run())

    async def _shutdown(self, server: asyncio.AbstractServer) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._stop_timeout
        self.ctx.stopping = True
        server.close()  # stop accepting; closes the listening socket
        for connection in list(self.ctx.connections):
            connection.shutdown()
        if self.ctx.tasks:
            await asyncio.wait(set(self.ctx.tasks), timeout=self._stop_timeout / 2)
        leftovers = [t for t in self.ctx.tasks if not t.done()]
        for task in leftovers:
            task.cancel()
        if leftovers:
            self.log.info(f"cancelled {len(leftovers)} task(s) that did not finish in time")
            await asyncio.wait(leftovers, timeout=max(0.05, (deadline - loop.time()) / 4))
        await self.lifespan.shutdown(max(0.05, deadline - loop.time()))
        for connection in list(self.ctx.connections):
            connection.stream.abort()

