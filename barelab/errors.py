"""Errors barelab raises in the learner's cell."""


class BarelabError(Exception):
    """Base class of every error barelab raises on purpose."""


class LifespanStartupFailed(BarelabError):
    """The ASGI app answered ``lifespan.startup`` with ``lifespan.startup.failed``.

    ASGI spec, Lifespan §startup.failed: the server must log the message and stop;
    barelab raises it in the cell that called ``serve()``, so the learner sees it there.
    """

    def __init__(self, message: str):
        super().__init__(message or "lifespan.startup.failed (no message)")
        self.app_message = message


class ServerStartError(BarelabError):
    """The server could not start (port taken, engine failed before it was ready)."""
