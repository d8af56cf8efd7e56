"""What a server saw, kept by the server itself.

ipykernel sends output printed from a background thread to whichever cell happens to run
at that moment, and nbclient drops output that arrives after a cell finished. So engines
never print: they append to a ``ServerLog``, and a cell that wants to know asks for
``server.log``, which renders as a table in that very cell.
"""

from __future__ import annotations

import html
import threading
import time
import traceback
from collections import deque
from contextlib import contextmanager
from dataclasses import dataclass, field


@dataclass(frozen=True)
class LogEntry:
    """One line of a server log: a request answered, an app error, or a lifecycle event."""

    when: float
    kind: str  # "request", "error" or "info"
    message: str
    status: int | None = None
    details: str = ""  # a traceback, for errors

    def text(self) -> str:
        stamp = time.strftime("%H:%M:%S", time.localtime(self.when))
        line = f"{stamp} {self.kind.upper():7} {self.message}"
        if self.details:
            line += "\n" + self.details.rstrip()
        return line


@dataclass
class ServerLog:
    """A bounded, thread-safe log shared by a server's threads (or its event loop)."""

    maxlen: int = 1000
    _entries: deque = field(init=False, repr=False)
    _lock: threading.Lock = field(init=False, repr=False, default_factory=threading.Lock)
    _settled: threading.Condition = field(init=False, repr=False)
    _in_flight: int = field(init=False, repr=False, default=0)

    def __post_init__(self) -> None:
        self._entries = deque(maxlen=self.maxlen)
        self._settled = threading.Condition(self._lock)

    @contextmanager
    def in_flight(self):
        """Mark one request as being answered until the block ends.

        A client has the whole response a moment before the server thread gets to log it.
        Engines wrap each exchange in this block, so :meth:`settle` (and so a cell showing
        ``server.log``) can wait for that moment instead of showing a log one line short.
        """
        with self._lock:
            self._in_flight += 1
        try:
            yield
        finally:
            with self._lock:
                self._in_flight -= 1
                if not self._in_flight:
                    self._settled.notify_all()

    def settle(self, timeout: float = 0.5) -> bool:
        """Wait until no request is in flight (at most ``timeout``); True if none is."""
        with self._lock:
            return self._settled.wait_for(lambda: not self._in_flight, timeout)

    def _add(self, entry: LogEntry) -> None:
        with self._lock:
            self._entries.append(entry)

    def request(self, client, method: str, target: str, http_version: str,
                status: int, body_bytes: int, duration: float) -> None:
        """Record one response: who asked, what, the status and how long it took."""
        peer = f"{client[0]}:{client[1]}" if client else "-"
        message = (f'{peer} "{method} {target} HTTP/{http_version}" {status} '
                   f"{body_bytes}B {duration * 1000:.1f}ms")
        self._add(LogEntry(time.time(), "request", message, status=status))

    def error(self, message: str, exc: BaseException | None = None) -> None:
        """Record an error; with ``exc`` its traceback is kept too."""
        details = "".join(traceback.format_exception(exc)) if exc is not None else ""
        self._add(LogEntry(time.time(), "error", message, details=details))

    def info(self, message: str) -> None:
        self._add(LogEntry(time.time(), "info", message))

    @property
    def entries(self) -> list[LogEntry]:
        with self._lock:
            return list(self._entries)

    @property
    def requests(self) -> list[LogEntry]:
        return [e for e in self.entries if e.kind == "request"]

    @property
    def errors(self) -> list[LogEntry]:
        return [e for e in self.entries if e.kind == "error"]

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        return len(self.entries)

    def __str__(self) -> str:
        entries = self.entries
        return "\n".join(e.text() for e in entries) if entries else "(nothing logged yet)"

    def __repr__(self) -> str:
        return str(self)

    def _repr_html_(self) -> str:
        entries = self.entries
        if not entries:
            return "<p><em>(nothing logged yet)</em></p>"
        rows = []
        for e in entries:
            colour = {"error": "#b00020", "info": "#555"}.get(e.kind, "inherit")
            details = (f"<details><summary>traceback</summary><pre>{html.escape(e.details)}</pre>"
                       "</details>" if e.details else "")
            stamp = time.strftime("%H:%M:%S", time.localtime(e.when))
            rows.append(f'<tr style="color:{colour}"><td>{stamp}</td><td>{e.kind}</td>'
                        f'<td style="text-align:left"><code>{html.escape(e.message)}</code>'
                        f"{details}</td></tr>")
        return ('<table><thead><tr><th>time</th><th>kind</th><th style="text-align:left">'
                "message</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>")
