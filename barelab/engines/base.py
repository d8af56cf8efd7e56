"""The engine protocol: what ``barelab.serve(app, server=...)`` expects of a server class.

``serve()`` binds the listening socket and hands it over, so an engine never chooses a port
and re-serving a name can reuse the old port. A chapter's own server plugs in by
subclassing ``Engine`` (or just having the same three methods).
"""

from __future__ import annotations

import socket

from ..logs import ServerLog


class Engine:
    """Base class of a server barelab can drive."""

    kind: str = "wsgi"  # or "asgi"

    def __init__(self, app, sock: socket.socket, log: ServerLog, **options):
        self.app = app
        self.sock = sock
        self.log = log
        self.options = options

    def start(self) -> None:
        """Start serving in the background; return once ready, raise if it cannot start."""
        raise NotImplementedError

    def stop(self, timeout: float = 2.0) -> None:
        """Stop promptly (a wake-up, not a poll), close ``self.sock`` and join threads."""
        raise NotImplementedError
