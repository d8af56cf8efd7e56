"""What a WSGI app is handed: the PEP 3333 environ, ``wsgi.input`` and ``wsgi.errors``.

``build_environ`` turns an accepted h11 request into the environ dict ("bytes in str",
latin-1). ``RequestBody`` knows nothing of sockets or h11: it is given a ``pull`` function
that returns the next piece of the body (b"" at its end), so the exchange decides when bytes
are read and which limits apply. ``ErrorStream`` turns what the app writes into log entries.
The two exceptions are what the app sees when the client or the request body fails it.
"""

from __future__ import annotations

from urllib.parse import unquote_to_bytes
from wsgiref.util import FileWrapper

import h11

from .wsgi_checks import SERVER_SOFTWARE


class ClientDisconnected(ConnectionError):
    """The client went away before the exchange finished.

    Raised into the app by ``wsgi.input`` reads and by ``write()``, so an app that is
    streaming to a vanished client stops instead of computing for nobody.
    """


class RequestBodyError(OSError):
    """``wsgi.input`` could not deliver the body: malformed, too large, or too slow.

    ``status_code`` is what the server answers with if the app lets this propagate.
    """

    def __init__(self, status_code: int, message: str):
        super().__init__(message)
        self.status_code = status_code


def _header_environ_key(name: bytes) -> str | None:
    if b"_" in name:
        # "X-Forwarded_For" and "X-Forwarded-For" would both become HTTP_X_FORWARDED_FOR:
        # a client could spoof a header a proxy in front of us vetted. Drop such names.
        return None
    if name == b"proxy":
        return None  # httpoxy: HTTP_PROXY is read as a proxy setting by some libraries
    if name == b"content-type":
        return "CONTENT_TYPE"
    if name == b"content-length":
        return "CONTENT_LENGTH"
    return "HTTP_" + name.decode("ascii").upper().replace("-", "_")


def build_environ(request: h11.Request, path: bytes, query: bytes, authority: bytes | None,
                  server: tuple, client: tuple, body, errors) -> dict:
    """The PEP 3333 environ of one request; strings are "bytes in str" (latin-1)."""
    target = request.target.decode("latin-1")
    environ = {
        "REQUEST_METHOD": request.method.decode("ascii"),
        "SCRIPT_NAME": "",
        # PEP 3333 / CGI: PATH_INFO is decoded; %2F becomes "/" like any other escape.
        "PATH_INFO": unquote_to_bytes(path).decode("latin-1"),
        "QUERY_STRING": query.decode("latin-1"),
        "SERVER_NAME": str(server[0]),
        "SERVER_PORT": str(server[1]),
        "SERVER_PROTOCOL": "HTTP/" + request.http_version.decode("ascii"),
        "SERVER_SOFTWARE": SERVER_SOFTWARE,
        "REMOTE_ADDR": str(client[0]),
        "REMOTE_PORT": str(client[1]),
        "REQUEST_URI": target,  # the raw target, as Werkzeug's and gunicorn's servers give it
        "RAW_URI": target,
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.input": body,
        "wsgi.errors": errors,
        "wsgi.multithread": True,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
        "wsgi.input_terminated": True,  # reading to EOF is safe: we simulate EOF at body end
        "wsgi.file_wrapper": FileWrapper,
    }
    for name, value in request.headers:
        key = _header_environ_key(name)
        if key is None:
            continue
        text = value.decode("latin-1")
        if key in environ:  # RFC 9110 §5.3: repeated fields combine into a list
            separator = "; " if key == "HTTP_COOKIE" else ", "  # RFC 6265 §5.4
            text = environ[key] + separator + text
        environ[key] = text
    if authority is not None:
        environ["HTTP_HOST"] = authority.decode("latin-1")
    return environ


class RequestBody:
    """``wsgi.input``: the request body, pulled from h11 only as the app reads it.

    Reads block until they are satisfied or the body ends, and never past its end (PEP 3333:
    "simulate an end-of-file condition"), whether the body is Content-Length or chunked.
    """

    def __init__(self, pull):
        self._pull = pull  # returns the next piece of body bytes, b"" once the body ended
        self._buffer = bytearray()
        self._ended = False

    def _fill(self) -> bool:
        if self._ended:
            return False
        chunk = self._pull()
        if not chunk:
            self._ended = True
            return False
        self._buffer += chunk
        return True

    def _take(self, size: int) -> bytes:
        data = bytes(self._buffer[:size])
        del self._buffer[:size]
        return data

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            while self._fill():
                pass
            return self._take(len(self._buffer))
        while len(self._buffer) < size and self._fill():
            pass
        return self._take(size)

    def readline(self, size: int | None = -1) -> bytes:
        limit = None if size is None or size < 0 else size
        searched = 0
        while True:
            newline = self._buffer.find(b"\n", searched)
            if newline >= 0:
                end = newline + 1
                break
            if limit is not None and len(self._buffer) >= limit:
                end = limit
                break
            searched = len(self._buffer)
            if not self._fill():
                end = len(self._buffer)
                break
        return self._take(end if limit is None else min(end, limit))

    def readlines(self, hint: int | None = -1) -> list[bytes]:
        lines, total = [], 0
        for line in self:
            lines.append(line)
            total += len(line)
            if hint is not None and 0 < hint <= total:
                break
        return lines

    def __iter__(self):
        return iter(self.readline, b"")


class ErrorStream:
    """``wsgi.errors``: what the app writes becomes server log entries, one per line."""

    def __init__(self, log, prefix: str = "wsgi.errors"):
        self._log = log
        self._prefix = prefix
        self._pending = ""

    def write(self, text: str) -> None:
        if not isinstance(text, str):
            raise TypeError(f"PEP 3333: wsgi.errors is a text stream; write() takes str, "
                            f"not {type(text).__name__}")
        self._pending += text
        while "\n" in self._pending:
            line, _, self._pending = self._pending.partition("\n")
            self._emit(line)

    def writelines(self, lines) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        if self._pending:
            self._emit(self._pending)
            self._pending = ""

    def _emit(self, line: str) -> None:
        if line.strip():
            self._log.error(f"{self._prefix}: {line}")
