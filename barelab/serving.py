"""Start and stop servers from notebook cells, safely and repeatably.

A learner re-runs cells all the time. So every server has a name (by default its app's
name), and serving a name that already runs stops the old server first and binds the new
one to the same port: links printed by earlier cells keep working and nothing leaks. The
listening socket is bound here, not by the engine, which is what makes that port reuse
possible and lets a chapter's own server plug in through ``serve(app, server=...)``.
"""

from __future__ import annotations

import atexit
import errno
import html
import inspect
import os
import socket
import threading
import time

from .engines.base import Engine
from .errors import ServerStartError
from .logs import ServerLog

_registry: dict[str, "Server"] = {}
_registry_lock = threading.RLock()

# After a stop, the old port can stay busy for a moment (a connection still closing);
# a few short retries hide that from the learner.
_REBIND_ATTEMPTS = 20
_REBIND_PAUSE = 0.025


def _default_engine(kind: str) -> type:
    # Imported lazily: a chapter that only builds its own server needs neither engine.
    if kind == "wsgi":
        from .engines.wsgi import WSGIEngine
        return WSGIEngine
    from .engines.asgi import ASGIEngine
    return ASGIEngine


def detect_kind(app) -> str:
    """Tell an ASGI app (``async def app(scope, receive, send)``) from a WSGI one.

    ASGI 3 apps are coroutine functions, or objects whose ``__call__`` is one (Starlette,
    FastAPI). Everything else callable is taken for WSGI (Flask, Django, plain functions).
    """
    if not callable(app):
        raise TypeError(f"an app must be callable, got {type(app).__name__}")
    if inspect.iscoroutinefunction(app):
        return "asgi"
    call = getattr(app, "__call__", None)
    if call is not None and inspect.iscoroutinefunction(call):
        return "asgi"
    # functools.partial and friends around a coroutine function
    inner = getattr(app, "func", None)
    if inner is not None and inspect.iscoroutinefunction(inner):
        return "asgi"
    return "wsgi"


def _app_name(app) -> str:
    for candidate in (getattr(app, "__name__", None), getattr(app, "name", None)):
        if isinstance(candidate, str) and candidate:
            return candidate
    return type(app).__name__


def bind_listening_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to (host, port) and listening, as ``serve()`` hands to engines."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        # SO_REUSEADDR lets us rebind a port whose old connections sit in TIME_WAIT.
        # Never SO_REUSEPORT: two live servers must not share a port by accident.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
    except BaseException:
        sock.close()
        raise
    return sock


def proxy_prefix() -> str | None:
    """The URL prefix under which jupyter-server-proxy serves ports, if we run under a hub.

    JupyterHub (and so Binder) sets ``JUPYTERHUB_SERVICE_PREFIX`` to the user's server
    path, e.g. ``/user/alice/``; jupyter-server-proxy answers ``{prefix}proxy/{port}/``.
    """
    prefix = os.environ.get("JUPYTERHUB_SERVICE_PREFIX")
    if not prefix:
        return None
    return prefix if prefix.endswith("/") else prefix + "/"


class Server:
    """A server started by :func:`serve`; stop it with :meth:`stop` or a ``with`` block."""

    def __init__(self, app, *, name: str, host: str, kind: str, engine_cls: type,
                 options: dict):
        self.app = app
        self.name = name
        self.host = host
        self.kind = kind
        self.engine_cls = engine_cls
        self.options = options
        self._log = ServerLog()
        self.port: int | None = None
        self._engine = None
        self._lock = threading.Lock()

    # -- lifecycle --------------------------------------------------------------------
    def _start(self, port: int, *, port_is_fixed: bool) -> None:
        sock = self._bind_with_retry(port, port_is_fixed=port_is_fixed)
        self.port = sock.getsockname()[1]
        engine = self.engine_cls(self.app, sock, self._log, **self.options)
        try:
            engine.start()
        except BaseException:
            # The engine owns the socket once constructed, but a failed start must not
            # leak it either way.
            sock.close()
            raise
        self._engine = engine
        self._log.info(f"serving {self.name!r} ({self.kind}) on {self.url}")

    def _bind_with_retry(self, port: int, *, port_is_fixed: bool) -> socket.socket:
        last_error: OSError | None = None
        for _ in range(_REBIND_ATTEMPTS if port else 1):
            try:
                return bind_listening_socket(self.host, port)
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE:
                    raise
                last_error = exc
                time.sleep(_REBIND_PAUSE)
        if port_is_fixed:
            raise ServerStartError(
                f"port {port} on {self.host} is in use by another program; "
                f"pick another port or leave port=None for a free one") from last_error
        self._log.info(f"port {port} stayed busy; moved to a free port")
        return bind_listening_socket(self.host, 0)

    @property
    def log(self) -> ServerLog:
        """What this server saw: requests, app errors with tracebacks, lifecycle events.

        Asked for right after a response arrived, it waits a moment for the server to
        finish logging that response, so the cell shows it.
        """
        self._log.settle()
        return self._log

    @property
    def running(self) -> bool:
        return self._engine is not None

    def stop(self, timeout: float = 2.0) -> None:
        """Stop serving, close the socket and join the server's threads. Safe to repeat."""
        with self._lock:
            engine, self._engine = self._engine, None
        if engine is not None:
            engine.stop(timeout)
            self._log.info(f"stopped {self.name!r}")
        with _registry_lock:
            if _registry.get(self.name) is self:
                del _registry[self.name]

    def restart(self, app=None) -> "Server":
        """Stop and start again on the same port, optionally with a new app."""
        return serve(app if app is not None else self.app, name=self.name, port=self.port,
                     host=self.host, kind=self.kind, server=self.engine_cls, **self.options)

    def __enter__(self) -> "Server":
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()

    # -- addresses --------------------------------------------------------------------
    @property
    def url(self) -> str:
        """The address code in the kernel uses: ``http://127.0.0.1:PORT/``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    @property
    def ws_url(self) -> str:
        return "ws" + self.url[4:]

    @property
    def link(self) -> str:
        """The address a browser uses: through jupyter-server-proxy under a hub, else ``url``."""
        prefix = proxy_prefix()
        return f"{prefix}proxy/{self.port}/" if prefix else self.url

    # -- display ----------------------------------------------------------------------
    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<Server {self.name!r} {self.kind} at {self.url} ({state})>"

    def _repr_html_(self) -> str:
        name = html.escape(self.name)
        if not self.running:
            return f"<p>Server <code>{name}</code> ({self.kind}) is stopped.</p>"
        link = html.escape(self.link, quote=True)
        return (f'<p>Server <code>{name}</code> ({self.kind}) is serving at '
                f'<a href="{link}" target="_blank">{html.escape(self.link)}</a></p>')


def serve(app, *, name: str | None = None, port: int | None = None,
          host: str = "127.0.0.1", kind: str | None = None, server: type | None = None,
          **options) -> Server:
    """Serve ``app`` in the background and return its :class:`Server` at once.

    ``name`` defaults to the app's name (a function's ``__name__``, else its ``name``
    attribute, else its class name). Serving a name that is already running stops the old
    server and reuses its port: that is what makes re-running a cell safe. To serve two
    apps of the same class side by side (two Starlette apps, say), give each a ``name=``. ``kind`` is ``"wsgi"`` or ``"asgi"`` (detected when
    omitted); ``server`` is an :class:`~barelab.engines.base.Engine` class to use instead
    of barelab's own; other keyword arguments go to the engine (limits, lifespan, ...).
    """
    if server is not None:
        if not (isinstance(server, type) and all(
                callable(getattr(server, m, None)) for m in ("start", "stop"))):
            raise TypeError("server= takes an engine class with start() and stop() "
                            "(see barelab.engines.base.Engine)")
        # A chapter's own server may speak neither WSGI nor ASGI (a raw socket app, say):
        # its kind is then only a label, so any non-empty string is fine.
        kind = kind or getattr(server, "kind", None) or detect_kind(app)
        if not isinstance(kind, str) or not kind:
            raise ValueError(f"kind must be a non-empty string, not {kind!r}")
        engine_cls = server
    else:
        kind = kind or detect_kind(app)
        if kind not in ("wsgi", "asgi"):
            raise ValueError(f"kind must be 'wsgi' or 'asgi', not {kind!r}")
        engine_cls = _default_engine(kind)
    name = name or _app_name(app)

    with _registry_lock:
        old = _registry.get(name)
        port_is_fixed = port is not None
        if old is not None:
            if port is None:
                port = old.port
            old.stop()
        new = Server(app, name=name, host=host, kind=kind, engine_cls=engine_cls,
                     options=options)
        new._start(port or 0, port_is_fixed=port_is_fixed)
        _registry[name] = new
    return new


def running() -> list[Server]:
    """The servers started by :func:`serve` that are still running."""
    with _registry_lock:
        return list(_registry.values())


def stop_all(timeout: float = 2.0) -> int:
    """Stop every running server; return how many were stopped."""
    servers = running()
    for srv in servers:
        srv.stop(timeout)
    return len(servers)


# A kernel restart or interpreter exit should not leave threads blocking shutdown.
atexit.register(stop_all)


__all__ = ["Engine", "Server", "bind_listening_socket", "detect_kind", "proxy_prefix", "running",
           "serve", "stop_all"]
