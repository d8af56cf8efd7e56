"""Call a WSGI or ASGI app in-process, without sockets, and record everything that happens.

The spec chapters need to show the interface itself: the environ a server builds, the order
of ``start_response``/``write``/``yield``/``close()``, every ASGI message in each direction.
So these functions play the server's part of PEP 3333 and of the ASGI spec faithfully, keep
a transcript, and return it as an object that renders in the cell.

ASGI apps run on a private event loop in a worker thread: the kernel's main thread already
runs a loop (``asyncio.run`` fails there), and an app scheduled on that loop would block
the very cell waiting for it. Every wait has a timeout, so a stuck app cannot hang the kernel.
"""

from __future__ import annotations

import asyncio
import html
import io
import json as jsonlib
import textwrap
import threading
import traceback
from collections.abc import Mapping
from http import HTTPStatus
from urllib.parse import unquote, unquote_to_bytes, urlencode

from .display import HeadersTable, Transcript
from .errors import BarelabError

_PREVIEW_CHARS = 2000


class CallTimeout(BarelabError, TimeoutError):
    """An in-process ASGI call did not finish in time; ``.call`` holds what was recorded."""

    def __init__(self, message: str, call):
        super().__init__(message)
        self.call = call


# -- shared helpers --------------------------------------------------------------------------

def _pairs(headers) -> list[tuple[str, str]]:
    if isinstance(headers, Mapping):
        headers = headers.items()
    return [(n.decode("latin-1") if isinstance(n, bytes) else str(n),
             v.decode("latin-1") if isinstance(v, bytes) else str(v)) for n, v in headers]


def _split_path(path: str, query) -> tuple[str, str]:
    """``("/a?x=1", "")`` -> ``("/a", "x=1")``; a query given separately wins over the path's."""
    if isinstance(query, bytes):
        query = query.decode("latin-1")
    elif not isinstance(query, str):
        query = urlencode(list(query.items()) if isinstance(query, Mapping) else list(query))
    if "?" in path:
        path, _, path_query = path.partition("?")
        query = query or path_query
    return path or "/", query


def _header(headers, name: str) -> str | None:
    values = [v for n, v in headers if n.lower() == name.lower()]
    return ", ".join(values) if values else None


def _safe_repr(value) -> str:
    """A repr without memory addresses, so stored notebook outputs stay stable."""
    if _is_plain(value):
        return repr(value)
    if isinstance(value, io.BytesIO):
        return f"<BytesIO: {len(value.getvalue())} bytes>"
    return f"<{type(value).__name__}>"


def _is_plain(value) -> bool:
    """True for values whose repr is plain data (no object addresses anywhere inside)."""
    if isinstance(value, (str, bytes, int, float, bool, type(None))):
        return True
    if isinstance(value, (tuple, list)):
        return all(_is_plain(v) for v in value)
    if isinstance(value, dict):
        return all(_is_plain(k) and _is_plain(v) for k, v in value.items())
    return False


def _preview(body: bytes) -> str:
    text = body.decode("utf-8", errors="replace")
    if len(text) > _PREVIEW_CHARS:
        text = text[:_PREVIEW_CHARS] + f"\n… ({len(text) - _PREVIEW_CHARS} more characters)"
    return text


def _exception_text(exc: BaseException | None) -> str:
    return "".join(traceback.format_exception_only(type(exc), exc)).strip() if exc else ""


class _ResponseMixin:
    """``.header()``, ``.text``, ``.json()`` for calls with ``.headers`` and ``.body``."""

    headers: list
    body: bytes

    def header(self, name: str) -> str | None:
        """The response header ``name`` (any case); repeats joined with ``", "``; else None."""
        return _header(self.headers, name)

    @property
    def text(self) -> str:
        """The response body decoded as UTF-8."""
        return self.body.decode("utf-8", errors="replace")

    def json(self):
        """The response body parsed as JSON."""
        return jsonlib.loads(self.body)

    def _response_html(self, show_headers: bool = True) -> list[str]:
        """The response summary, headers, body preview and traceback, as HTML pieces."""
        parts = [f"<p><strong>response</strong>: <code>{html.escape(self._summary())}</code></p>"]
        if show_headers and self.headers:
            parts.append(HeadersTable(self.headers)._repr_html_())
        if self.body:
            parts.append(f'<pre style="margin:0">{html.escape(_preview(self.body))}</pre>')
        if self.exception is not None:
            tb = "".join(traceback.format_exception(self.exception))
            parts.append(f"<details><summary>traceback</summary><pre>{html.escape(tb)}</pre>"
                         "</details>")
        return parts


# -- WSGI ------------------------------------------------------------------------------------

_CGI_KEYS = ("REQUEST_METHOD", "SCRIPT_NAME", "PATH_INFO", "QUERY_STRING", "CONTENT_TYPE",
             "CONTENT_LENGTH", "SERVER_NAME", "SERVER_PORT", "SERVER_PROTOCOL")


def build_environ(method: str = "GET", path: str = "/", *, query="", headers=(),
                  body: bytes = b"") -> dict:
    """Build a PEP 3333 environ for one request, the way a server would.

    ``PATH_INFO`` is the percent-decoded path as "bytes in a str" (each byte one latin-1
    character); ``QUERY_STRING`` stays encoded; headers become ``HTTP_*`` keys, except
    ``Content-Type`` and ``Content-Length`` which become ``CONTENT_TYPE``/``CONTENT_LENGTH``.
    """
    path, query_string = _split_path(path, query)
    if isinstance(body, str):
        body = body.encode("utf-8")
    environ = {
        "REQUEST_METHOD": method,  # case-sensitive (RFC 9110 §9.1): as given
        "SCRIPT_NAME": "",
        "PATH_INFO": unquote_to_bytes(path).decode("latin-1"),
        "QUERY_STRING": query_string,
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "HTTP_HOST": "127.0.0.1",
    }
    given_host = False
    for name, value in _pairs(headers):
        if "_" in name:
            continue  # as barelab's servers do: X_User would pose as X-User (smuggling)
        key = name.upper().replace("-", "_")
        if key not in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            key = "HTTP_" + key
        if key == "HTTP_HOST" and not given_host:
            given_host = True  # the caller's Host replaces the default one
            environ[key] = value
        elif key in environ and key != "HTTP_HOST":
            # RFC 9110 §5.3: repeated fields combine with ", "; RFC 6265 §5.4: Cookie with "; ".
            separator = "; " if key == "HTTP_COOKIE" else ", "
            environ[key] = f"{environ[key]}{separator}{value}"
        else:
            environ[key] = value
    if body and "CONTENT_LENGTH" not in environ:
        environ["CONTENT_LENGTH"] = str(len(body))
    environ.update({
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": io.StringIO(),
        "wsgi.multithread": False,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    })
    return environ


class WSGICall(_ResponseMixin):
    """What happened when a WSGI app was called once: the environ, each step, the response."""

    def __init__(self, environ: dict):
        self.environ = environ                 # as given to the app (a copy; see below)
        self.status: str | None = None
        self.headers: list[tuple[str, str]] = []
        self.body = b""
        self.steps: list[tuple[str, object]] = []
        self.exception: BaseException | None = None
        self.errors_output = ""

    @property
    def status_code(self) -> int | None:
        """The status as an int (``200`` for ``"200 OK"``); None before start_response."""
        return int(self.status.split(None, 1)[0]) if self.status else None

    def _step(self, action: str, detail: object = "") -> None:
        self.steps.append((action, detail))

    @property
    def transcript(self) -> Transcript:
        """The calls between server and app, in order."""
        return Transcript(self.steps, columns=("step", "detail"))

    def environ_groups(self) -> list[tuple[str, list[tuple[str, str]]]]:
        """The environ as ``(group, [(key, repr)])``: CGI keys, HTTP_ keys, wsgi.* keys, others."""
        groups = {"CGI variables": [], "HTTP_ headers": [], "wsgi.* keys": [], "other": []}
        order = {k: i for i, k in enumerate(_CGI_KEYS)}
        for key in sorted(self.environ, key=lambda k: (order.get(k, len(order)), k)):
            if key.startswith("HTTP_"):
                group = "HTTP_ headers"
            elif key.startswith("wsgi."):
                group = "wsgi.* keys"
            elif "." not in key:
                group = "CGI variables"
            else:
                group = "other"
            groups[group].append((key, _safe_repr(self.environ[key])))
        return [(g, rows) for g, rows in groups.items() if rows]

    def _summary(self) -> str:
        if self.exception is not None and self.status is None:
            return f"the app raised {_exception_text(self.exception)}"
        line = self.status or "(no status: start_response was never called)"
        if self.exception is not None:
            line += f"; then the app raised {_exception_text(self.exception)}"
        return line

    def __repr__(self) -> str:
        out = []
        for group, rows in self.environ_groups():
            width = max(len(k) for k, _ in rows)
            out.append(f"{group}:")
            out.extend(f"  {k:<{width}}  {v}" for k, v in rows)
        out += ["", "transcript:", _indent(repr(self.transcript)), "",
                "response: " + self._summary()]
        if self.headers:
            out.append(_indent(repr(HeadersTable(self.headers))))
        if self.body:
            out += ["", _indent(_preview(self.body))]
        if self.errors_output:
            out += ["", "wsgi.errors:", _indent(self.errors_output.rstrip())]
        return "\n".join(out)

    __str__ = __repr__

    def _repr_html_(self) -> str:
        env = "".join(
            f"<tr><th colspan=2 style='text-align:left'>{html.escape(group)}</th></tr>" + "".join(
                f'<tr><td style="text-align:left"><code>{html.escape(k)}</code></td>'
                f'<td style="text-align:left"><code>{html.escape(v)}</code></td></tr>'
                for k, v in rows)
            for group, rows in self.environ_groups())
        parts = [f"<details><summary><strong>environ</strong> ({len(self.environ)} keys)</summary>"
                 f"<table>{env}</table></details>",
                 "<p><strong>transcript</strong></p>", self.transcript._repr_html_(),
                 *self._response_html()]
        if self.errors_output:
            parts.append(f"<p><strong>wsgi.errors</strong></p><pre>"
                         f"{html.escape(self.errors_output)}</pre>")
        return "".join(parts)


def _wrap(text: str, width: int = 72) -> str:
    return textwrap.fill(text, width, break_on_hyphens=False)


def _indent(text: str, by: str = "  ") -> str:
    return "\n".join(by + line if line else line for line in text.split("\n"))


def call_wsgi(app, method: str = "GET", path: str = "/", *, query="", headers=(),
              body: bytes | str = b"", environ: dict | None = None,
              raise_errors: bool = True) -> WSGICall:
    """Call a WSGI app once, as a server would, and record every step (PEP 3333).

    The environ comes from ``build_environ`` (``environ=`` adds or replaces keys). The
    recorded ``start_response`` checks its arguments and honours ``exc_info``; its ``write``
    callable works; the returned iterable is iterated and its ``close()`` called.

    If the app raises, the exception is recorded in ``.exception`` and the transcript, then
    re-raised (with a note) unless ``raise_errors=False``, which returns the ``WSGICall``.
    """
    env = build_environ(method, path, query=query, headers=headers, body=body)
    env.update(environ or {})
    call = WSGICall(dict(env))
    call._step("environ", _wrap(f"{len(env)} keys: " + ", ".join(
        k for k in env if not k.startswith("wsgi.")) + ", wsgi.*"))
    chunks: list[bytes] = []
    started = {"headers_sent": False}

    def write(data: bytes) -> None:
        """PEP 3333's legacy write(): body bytes sent before the iterable's."""
        if call.status is None:
            raise AssertionError("PEP 3333: write() called before start_response()")
        if not isinstance(data, bytes):
            raise TypeError(f"PEP 3333: write() takes bytes, not {type(data).__name__}")
        call._step("write()", data)
        if data:
            started["headers_sent"] = True
        chunks.append(data)

    def start_response(status, response_headers, exc_info=None):
        """PEP 3333's start_response, recording each call."""
        shown = f"{status!r}, {response_headers!r}"
        if exc_info is not None:
            call._step("start_response(…, exc_info)", f"{shown}, {exc_info[0].__name__}")
            if started["headers_sent"]:
                # PEP 3333: "if the headers have already been sent, start_response must
                # re-raise the exception" (the server can no longer change the status).
                raise exc_info[1].with_traceback(exc_info[2])
        else:
            call._step("start_response()", shown)
            if call.status is not None:
                raise AssertionError("PEP 3333: start_response() called a second time "
                                     "without exc_info")
        if not isinstance(status, str):
            raise TypeError(f"PEP 3333: the status must be a str like '200 OK', not {status!r}")
        if not isinstance(response_headers, list) or not all(
                isinstance(h, tuple) and len(h) == 2 and all(type(x) is str for x in h)
                for h in response_headers):
            raise TypeError("PEP 3333: response_headers must be a list of (str, str) tuples")
        call.status, call.headers = status, list(response_headers)
        return write

    result = None
    try:
        result = app(env, start_response)
        for chunk in result:
            if not isinstance(chunk, bytes):
                raise TypeError(f"PEP 3333: the app must yield bytes, not "
                                f"{type(chunk).__name__} ({chunk!r:.40})")
            call._step("yield", chunk)
            if chunk:
                if call.status is None:
                    raise AssertionError("PEP 3333: the app yielded a body before calling "
                                         "start_response()")
                started["headers_sent"] = True
            chunks.append(chunk)
    except Exception as exc:
        call.exception = exc
    finally:
        if hasattr(result, "close"):
            try:
                result.close()
                call._step("close()")
            except Exception as exc:
                call._step("close()", f"raised {_exception_text(exc)}")
                call.exception = call.exception or exc
    if call.exception is not None:
        call._step("exception", _exception_text(call.exception))
    call.body = b"".join(chunks)
    call.errors_output = env["wsgi.errors"].getvalue() if isinstance(
        env.get("wsgi.errors"), io.StringIO) else ""
    if call.exception is not None and raise_errors:
        _add_note(call.exception, "barelab.call_wsgi: pass raise_errors=False to get the "
                                  "transcript of this call")
        raise call.exception
    return call


def _add_note(exc: BaseException, note: str) -> None:
    if hasattr(exc, "add_note") and note not in getattr(exc, "__notes__", ()):
        exc.add_note(note)


# -- ASGI ------------------------------------------------------------------------------------

def build_scope(type: str = "http", method: str = "GET", path: str = "/", *, query=b"",
                headers=()) -> dict:
    """Build an ASGI scope (spec 2.4) of type ``"http"``, ``"websocket"`` or ``"lifespan"``.

    ``path`` is percent-decoded; ``raw_path`` keeps the bytes as given; header names are
    lowercased bytes. A ``host`` header is added when none is given, as clients always send one.
    """
    if type == "lifespan":  # the Lifespan sub-spec has its own version: 2.0
        return {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"},
                "state": {}}
    asgi = {"version": "3.0", "spec_version": "2.4"}
    path, query_string = _split_path(path, query)
    pairs = _pairs(headers)
    if not any(n.lower() == "host" for n, _ in pairs):
        pairs.insert(0, ("host", "127.0.0.1"))
    scope = {
        "type": type,
        "asgi": asgi,
        "http_version": "1.1",
        "scheme": "ws" if type == "websocket" else "http",
        "path": unquote(path),
        "raw_path": path.encode("latin-1"),
        "query_string": query_string.encode("latin-1"),
        "root_path": "",
        "headers": [(n.lower().encode("latin-1"), v.encode("latin-1")) for n, v in pairs],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 80),
    }
    if type == "http":
        scope["method"] = method.upper()  # ASGI HTTP spec: "The HTTP method name, uppercased"
    elif type == "websocket":
        protocols = _header(pairs, "sec-websocket-protocol")
        scope["subprotocols"] = [p.strip() for p in protocols.split(",")] if protocols else []
    else:
        raise ValueError(f"unknown ASGI scope type {type!r} (http, websocket or lifespan)")
    return scope


def _compact(value, limit: int = 72) -> str:
    """A short, address-free rendering of one message value."""
    if isinstance(value, (bytes, bytearray)):
        text = repr(bytes(value))
    elif isinstance(value, (list, tuple)) and value and all(
            isinstance(p, (list, tuple)) and len(p) == 2 for p in value):
        text = "[" + ", ".join(f"{_dec(n)}: {_dec(v)}" for n, v in value) + "]"
    elif isinstance(value, (str, int, float, bool, type(None), list, tuple)):
        text = repr(value)
    else:
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 5] + "…" + text[-4:]


def _dec(value) -> str:
    return bytes(value).decode("latin-1") if isinstance(value, (bytes, bytearray)) else str(value)


def _message_detail(message: dict) -> str:
    return "  ".join(f"{k}={_compact(v)}" for k, v in message.items() if k != "type")


class ASGICall(_ResponseMixin):
    """What happened when an ASGI app was called once: the scope and every message."""

    def __init__(self, scope: dict):
        self.scope = scope
        self.events: list[tuple[str, dict]] = []
        self.exception: BaseException | None = None
        self.timed_out = False

    @property
    def sent(self) -> list[dict]:
        """The messages the app sent, in order."""
        return [m for d, m in self.events if d == "send"]

    @property
    def received(self) -> list[dict]:
        """The messages the app received, in order."""
        return [m for d, m in self.events if d == "receive"]

    @property
    def status(self) -> int | None:
        """The status of ``http.response.start`` (None if the app never sent it)."""
        for message in self.sent:
            if message.get("type") == "http.response.start":
                return message.get("status", 200)
        return None

    @property
    def headers(self) -> list[tuple[str, str]]:
        """The response headers, decoded (latin-1), in order."""
        for message in self.sent:
            if message.get("type") == "http.response.start":
                return [(_dec(n), _dec(v)) for n, v in message.get("headers", [])]
        return []

    @property
    def body(self) -> bytes:
        """Every ``http.response.body`` chunk, joined."""
        return b"".join(bytes(m.get("body", b"")) for m in self.sent
                        if m.get("type") == "http.response.body")

    @property
    def transcript(self) -> Transcript:
        """One row per message: direction, type, the other keys in short."""
        rows = [("→ app" if d == "receive" else "app →", m.get("type", "?"), _message_detail(m))
                for d, m in self.events]
        return Transcript(rows, columns=("", "type", "keys"))

    def _summary(self) -> str:
        kind = self.scope.get("type")
        if kind == "http":
            if self.status is None:
                line = "(no http.response.start)"
            else:
                try:
                    phrase = HTTPStatus(self.status).phrase
                except ValueError:
                    phrase = ""
                line = f"{self.status} {phrase}".rstrip()
        else:
            sent = ", ".join(m.get("type", "?") for m in self.sent)
            line = f"the app sent {sent}" if sent else "the app sent nothing"
        if self.timed_out:
            line += "; timed out"
        if self.exception is not None:
            line += f"; the app raised {_exception_text(self.exception)}"
        return line

    def _scope_line(self) -> str:
        s = self.scope
        if s.get("type") == "lifespan":
            return "scope: lifespan"
        query = f"?{_dec(s['query_string'])}" if s.get("query_string") else ""
        return f"scope: {s.get('type')} {s.get('method', '')} {s.get('path')}{query}".replace(
            "  ", " ")

    def __repr__(self) -> str:
        out = [self._scope_line(), repr(self.transcript), "", "response: " + self._summary()]
        if self.scope.get("type") == "http" and self.headers:
            out.append(_indent(repr(HeadersTable(self.headers))))
        if self.body:
            out += ["", _indent(_preview(self.body))]
        return "\n".join(out)

    __str__ = __repr__

    def _repr_html_(self) -> str:
        scope_rows = "".join(
            f'<tr><td style="text-align:left"><code>{html.escape(k)}</code></td>'
            f'<td style="text-align:left"><code>{html.escape(_safe_repr(v))}</code></td></tr>'
            for k, v in self.scope.items())
        parts = [f"<details><summary><strong>{html.escape(self._scope_line())}</strong>"
                 f"</summary><table>{scope_rows}</table></details>",
                 self.transcript._repr_html_(),
                 *self._response_html(show_headers=self.scope.get("type") == "http")]
        return "".join(parts)


def _default_events(kind: str, body) -> list[dict]:
    if kind == "http":
        chunks = [body] if isinstance(body, (bytes, bytearray, str)) else list(body)
        chunks = [c.encode("utf-8") if isinstance(c, str) else bytes(c) for c in chunks] or [b""]
        return [{"type": "http.request", "body": c, "more_body": i < len(chunks) - 1}
                for i, c in enumerate(chunks)]
    if kind == "websocket":
        return [{"type": "websocket.connect"}]
    return [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]


class _Channel:
    """The server side of one ASGI call: hands out receive events and checks what is sent."""

    def __init__(self, call: ASGICall, events: list[dict]):
        self.call = call
        self.pending = list(events)
        self.kind = call.scope["type"]
        self.response_started = False
        self.finished = asyncio.Event()       # response complete / socket closed
        self.startup_done = asyncio.Event()   # lifespan.startup.complete or .failed sent

    async def receive(self) -> dict:
        """The next event for the app, gated the way a real server's would be."""
        if self.pending:
            message = self.pending[0]
            if message.get("type") == "lifespan.shutdown":
                # ASGI lifespan: shutdown only comes after the app answered startup.
                await self.startup_done.wait()
            message = self.pending.pop(0)
        elif self.kind == "http":
            # ASGI HTTP: http.disconnect once the response is complete (or the client left).
            await self.finished.wait()
            message = {"type": "http.disconnect"}
        elif self.kind == "websocket":
            message = {"type": "websocket.disconnect", "code": 1000}
            self.finished.set()
        else:
            await asyncio.Event().wait()  # nothing more will come; the timeout ends this
        message = dict(message)
        self.call.events.append(("receive", message))
        return message

    async def send(self, message: dict) -> None:
        """Record a message from the app, checking the order the ASGI spec requires."""
        if not isinstance(message, Mapping) or "type" not in message:
            raise TypeError(f"ASGI: send() takes a dict with a 'type' key, not {message!r:.60}")
        message = dict(message)
        self.call.events.append(("send", message))
        kind = message["type"]
        if kind == "http.response.start":
            if self.response_started:
                raise RuntimeError("ASGI HTTP: http.response.start sent twice")
            self.response_started = True
        elif kind == "http.response.body":
            if not self.response_started:
                raise RuntimeError("ASGI HTTP: http.response.body sent before "
                                   "http.response.start")
            if self.finished.is_set():
                raise RuntimeError("ASGI HTTP: http.response.body sent after the response "
                                   "was complete (more_body was False)")
            if not message.get("more_body", False):
                self.finished.set()
        elif kind == "websocket.close":
            self.finished.set()
        elif kind in ("lifespan.startup.complete", "lifespan.startup.failed"):
            self.startup_done.set()


def _prepare(app, method, path, query, headers, body, scope, receive_events):
    kind = (scope or {}).get("type")
    if kind is None and receive_events:
        first = receive_events[0].get("type", "")
        kind = first.split(".", 1)[0] if first.startswith(("websocket.", "lifespan.")) else None
    kind = kind or "http"
    headers = _pairs(headers)
    if kind == "http" and receive_events is None and body and not _header(headers,
                                                                           "content-length"):
        # A client that knows the length says so (RFC 9112 §6.2); chunks add up.
        size = len(body) if isinstance(body, (bytes, bytearray, str)) else sum(map(len, body))
        headers.append(("content-length", str(size)))
    full_scope = build_scope(kind, method, path, query=query, headers=headers)
    full_scope.update(scope or {})
    call = ASGICall(full_scope)
    events = list(receive_events) if receive_events is not None else _default_events(kind, body)
    return call, events


async def _drive(app, call: ASGICall, events: list[dict], timeout: float) -> None:
    channel = _Channel(call, events)
    try:
        await asyncio.wait_for(app(call.scope, channel.receive, channel.send), timeout)
    except (asyncio.TimeoutError, TimeoutError):
        call.timed_out = True
    except Exception as exc:
        call.exception = exc


def _finish(call: ASGICall, timeout: float, raise_errors: bool) -> ASGICall:
    if call.timed_out:
        last = (f"; the last event was {call.events[-1][0]} {call.events[-1][1].get('type')}"
                if call.events else "; the app never called receive() or send()")
        raise CallTimeout(f"the ASGI app did not return within {timeout}s{last} "
                          "(is it waiting for a message that never comes?)", call)
    if call.exception is not None and raise_errors:
        _add_note(call.exception, "barelab.call_asgi: pass raise_errors=False to get the "
                                  "transcript of this call")
        raise call.exception
    return call


def call_asgi(app, method: str = "GET", path: str = "/", *, query=b"", headers=(),
              body=b"", scope: dict | None = None, receive_events: list | None = None,
              timeout: float = 5.0, raise_errors: bool = True) -> ASGICall:
    """Call an ASGI app once on a private event loop and record every message.

    ``body`` is bytes (one ``http.request``) or a list of chunks (one ``http.request`` each,
    ``more_body=True`` on all but the last). Once the body is consumed, ``receive()`` waits
    until the response is complete and then returns ``http.disconnect``. ``scope`` keys
    replace the built scope's (``scope={"type": "websocket"}`` for a WebSocket);
    ``receive_events`` replaces the default events, and its first event's type also picks
    the scope type. A WebSocket app that keeps receiving after the list ends gets
    ``websocket.disconnect``.

    The app runs on its own loop in a worker thread, so this works in a Jupyter cell (whose
    thread already runs a loop). ``CallTimeout`` (a ``TimeoutError``) if it takes longer
    than ``timeout``; app exceptions are recorded and re-raised unless ``raise_errors=False``.
    """
    call, events = _prepare(app, method, path, query, headers, body, scope, receive_events)

    def run() -> None:
        """The worker thread: a fresh event loop, only for this call."""
        asyncio.run(_drive(app, call, events, timeout))

    worker = threading.Thread(target=run, name="barelab-call-asgi", daemon=True)
    worker.start()
    worker.join(timeout + 0.5)  # wait_for fires at `timeout`; the rest is for cancelling
    if worker.is_alive():  # the app blocked the loop itself (time.sleep, a busy loop)
        call.timed_out = True
    return _finish(call, timeout, raise_errors)


async def acall_asgi(app, method: str = "GET", path: str = "/", *, query=b"", headers=(),
                     body=b"", scope: dict | None = None, receive_events: list | None = None,
                     timeout: float = 5.0, raise_errors: bool = True) -> ASGICall:
    """``call_asgi`` as a coroutine, for ``await`` in a cell: it runs the app on the caller's
    loop, so an app that blocks (``time.sleep``) blocks the caller too."""
    call, events = _prepare(app, method, path, query, headers, body, scope, receive_events)
    await _drive(app, call, events, timeout)
    return _finish(call, timeout, raise_errors)


def call_lifespan(app, *, timeout: float = 5.0, raise_errors: bool = True) -> ASGICall:
    """Run an app's lifespan protocol: ``lifespan.startup``, then (once the app answered it)
    ``lifespan.shutdown``; return the recorded ``ASGICall``.

    ASGI spec: an app that raises on the lifespan scope is saying it does not support it;
    that exception is recorded (and re-raised unless ``raise_errors=False``).
    """
    return call_asgi(app, scope={"type": "lifespan"}, timeout=timeout,
                     raise_errors=raise_errors)
