"""barelab: run WSGI and ASGI apps from notebook cells, and look inside them.

    server = barelab.serve(app)          # starts at once, shows a clickable link
    barelab.http_request(server, "GET", "/")
    server.log                           # what the server saw, shown in this cell
    barelab.stop_all()

The names below load their module on first use, so ``import barelab`` stays cheap.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    # serving: start, stop and find servers
    "serve": "serving", "Server": "serving", "stop_all": "serving", "running": "serving",
    # what servers saw, and what can go wrong
    "ServerLog": "logs", "LogEntry": "logs",
    "BarelabError": "errors", "LifespanStartupFailed": "errors", "ServerStartError": "errors",
    # clients for cells
    "http_request": "client", "get": "client", "post": "client", "HTTPResult": "client",
    "raw_exchange": "client", "RawExchange": "client",
    "websocket_connect": "client", "WebSocketClient": "client",
    "WebSocketRejected": "client", "WebSocketClosed": "client",
    # calling apps in-process, with transcripts
    "call_wsgi": "calling", "call_asgi": "calling", "acall_asgi": "calling",
    "call_lifespan": "calling", "WSGICall": "calling", "ASGICall": "calling",
    "build_environ": "calling", "build_scope": "calling", "CallTimeout": "calling",
    # display helpers
    "show_bytes": "display", "show_headers": "display", "show_transcript": "display",
    # exercise check cells
    "check": "exercises",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'barelab' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
