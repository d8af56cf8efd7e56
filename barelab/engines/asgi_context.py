"""What every connection of the ASGI engine shares: the app, the log, the limits, the state.

Kept apart so the HTTP, WebSocket and connection modules depend on it and not on each other.
"""

from __future__ import annotations

import asyncio
from contextlib import nullcontext
from dataclasses import dataclass, field

from ..logs import ServerLog

DEFAULT_OPTIONS = {
    "lifespan": "auto",
    "max_header_bytes": 16 * 1024,
    "max_body_bytes": 8 * 1024 * 1024,
    "keep_alive_timeout": 5.0,
    "ws_max_message_bytes": 16 * 1024 * 1024,
}

HEAD_TIMEOUT = 10.0  # seconds for a request head, once its first byte arrived (slowloris)
BODY_TIMEOUT = 30.0  # seconds without progress while the app waits for request body
CLOSE_TIMEOUT = 2.0  # seconds to wait for the peer's side of a WebSocket closing handshake


def check_options(options: dict) -> dict:
    """Defaults filled in; an unknown option is a TypeError, as for a keyword argument."""
    unknown = sorted(set(options) - set(DEFAULT_OPTIONS))
    if unknown:
        raise TypeError(f"ASGIEngine got unexpected option(s) {', '.join(unknown)}; "
                        f"known: {', '.join(DEFAULT_OPTIONS)}")
    merged = {**DEFAULT_OPTIONS, **options}
    if merged["lifespan"] not in ("auto", "on", "off"):
        raise ValueError(f"lifespan must be 'auto', 'on' or 'off', got {merged['lifespan']!r}")
    for name in ("max_header_bytes", "max_body_bytes", "ws_max_message_bytes"):
        if not isinstance(merged[name], int) or merged[name] <= 0:
            raise ValueError(f"{name} must be a positive int, got {merged[name]!r}")
    if not merged["keep_alive_timeout"] > 0:
        raise ValueError(f"keep_alive_timeout must be positive, got "
                         f"{merged['keep_alive_timeout']!r}")
    return merged


@dataclass
class ServerContext:
    app: object
    log: ServerLog
    max_header_bytes: int
    max_body_bytes: int
    keep_alive_timeout: float
    ws_max_message_bytes: int
    state: dict = field(default_factory=dict)  # filled by lifespan startup
    tasks: set = field(default_factory=set)  # every connection and app task, for stop()
    connections: set = field(default_factory=set)
    stopping: bool = False

    def in_flight(self):
        """``log.in_flight()``: marks an exchange whose log line is not written yet, so
        ``server.log`` asked for right after a response waits for it (a no-op for a log
        without that method)."""
        in_flight = getattr(self.log, "in_flight", None)
        return in_flight() if in_flight is not None else nullcontext()

    def spawn(self, coro) -> asyncio.Task:
        """Run ``coro`` as a task the engine can find (and cancel) when it stops."""
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task
