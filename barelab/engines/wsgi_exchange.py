"""One request/response cycle of the WSGI engine: the app's side of PEP 3333.

``_Exchange.run`` calls the app with ``start_response``, sends the iterable it returns (and
whatever ``write()`` is given) through h11, always calls the iterable's ``close()``, and turns
an app error into a plain 500 (traceback in the server log, never on the wire) or, once the
status line is out, into a dropped connection. The request body is read only as
``wsgi.input`` asks for it. No socket is touched here: everything goes through the connection
the exchange runs on, known only by the ``ExchangeConnection`` protocol below, so this module
does not import the connection module.
"""

from __future__ import annotations

import time
from typing import Protocol

import h11

from ..logs import ServerLog
from .http_common import http_date
from .wsgi_checks import SERVER_SOFTWARE, parse_headers, parse_status
from .wsgi_environ import ClientDisconnected, ErrorStream, RequestBodyError

_DRAIN_LIMIT = 64 * 1024     # unread request body we read and discard to keep a connection alive


class ExchangeConnection(Protocol):
    """What an exchange needs from its connection (``wsgi_connection._Connection``)."""

    log: ServerLog
    options: dict
    peer: str
    peer_closed: bool
    body_unreliable: bool
    h11: h11.Connection

    def receive_body_chunk(self, wait: bool = True) -> bytes | None: ...

    def send(self, event) -> None: ...

    def can_respond(self) -> bool: ...

    def must_close(self) -> bool: ...

    def send_error_response(self, status_code: int, detail: str = "", close: bool = True,
                            head: bool = False) -> int: ...


# ---------------------------------------------------------------------------------------
# One request and its response


class _Exchange:
    """One request/response cycle, as the app sees it through PEP 3333."""

    def __init__(self, connection: ExchangeConnection, request: h11.Request):
        self.connection = connection
        self.request = request
        self.method = request.method.decode("ascii")
        self.target = request.target.decode("latin-1")
        self.started = time.monotonic()
        self.status = None          # (code, reason) from the latest start_response
        self.headers = None         # encoded pairs from the latest start_response
        self.headers_sent = False
        self.status_sent = None     # the status the client actually got
        self.body_bytes = 0         # response body bytes sent
        self.body_received = 0
        self.body_ended = False
        self.body_error: Exception | None = None
        self.finished = False       # once set, wsgi.input is at EOF for good
        self.aborted = False        # the connection must be dropped without more bytes
        self.errors = ErrorStream(connection.log)
        self._prefetched: list[bytes] = []  # body read ahead of the app (see _send_head)

    # -- the request body -------------------------------------------------------------

    def pull_body(self) -> bytes:
        """The next piece of the request body, or b"" at its end; enforces max_body_bytes."""
        if self._prefetched:
            return self._prefetched.pop(0)
        if self.body_ended or self.finished:
            return b""  # never touch the bytes of the next pipelined request
        if self.body_error is not None:
            raise self.body_error
        return self._take_body(wait=True)

    def _take_body(self, wait: bool) -> bytes | None:
        try:
            chunk = self.connection.receive_body_chunk(wait)
        except (ClientDisconnected, RequestBodyError) as exc:
            self._body_failed(exc)
            raise
        if chunk is None:
            return None  # nothing buffered, and told not to wait
        if not chunk:
            self.body_ended = True
            return b""
        self.body_received += len(chunk)
        limit = self.connection.options["max_body_bytes"]
        if self.body_received > limit:
            # Chunked bodies announce no length, so the limit is counted as bytes arrive.
            self._body_failed(RequestBodyError(
                413, f"request body is over {limit} bytes (max_body_bytes)"))
            raise self.body_error
        return chunk

    def _body_failed(self, exc: Exception) -> None:
        self.body_error = exc
        # Where the next request would start is now unknown: this connection ends here.
        self.connection.body_unreliable = True

    def _prefetch_buffered_body(self) -> RequestBodyError | None:
        """Parse body bytes that already arrived but the app did not read; never waits.

        An app that answers without reading the body would otherwise have its 200 sent for
        a request whose body turns out malformed or oversized, followed by a silent close;
        this way the client gets the 400 or 413 the request deserves.
        """
        size = 0
        while not self.body_ended and self.body_error is None and size < _DRAIN_LIMIT:
            try:
                chunk = self._take_body(wait=False)
            except RequestBodyError as exc:
                return exc
            except ClientDisconnected:
                return None  # the send that follows finds out for itself
            if not chunk:
                return None
            self._prefetched.append(chunk)
            size += len(chunk)
        return None

    # -- start_response and write -------------------------------------------------------

    def start_response(self, status, headers, exc_info=None):
        if exc_info is not None:
            try:
                if self.headers_sent:
                    # PEP 3333: too late to change the status; re-raise into the app.
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None  # PEP 3333: avoid a frame <-> traceback reference cycle
        elif self.status is not None:
            raise AssertionError(
                "PEP 3333: start_response() was already called; calling it again is only "
                'allowed with exc_info ("it is a fatal error to call start_response without '
                'the exc_info argument if start_response has already been called")')
        parsed_status, parsed_headers = parse_status(status), parse_headers(headers)
        self.status, self.headers = parsed_status, parsed_headers
        return self.write

    def write(self, data: bytes) -> None:
        """PEP 3333's write() callable: deprecated, supported; sends at once."""
        if self.status is None:
            raise AssertionError("PEP 3333: write() called before start_response()")
        if not isinstance(data, bytes):
            raise TypeError(f"PEP 3333: write() takes bytes, not {type(data).__name__}")
        self._send_body(data)

    # -- sending ------------------------------------------------------------------------

    @property
    def _body_allowed(self) -> bool:
        # h11 frames HEAD, 204 and 304 responses with no body and refuses Data for them.
        return self.method != "HEAD" and self.status[0] not in (204, 304)

    def _send_head(self, length: int | None = None) -> None:
        if self.connection.h11.their_state is h11.SEND_BODY:
            error = self._prefetch_buffered_body()
            if error is not None:
                raise error  # answered by run() instead of the app's response
        code, reason = self.status
        headers = list(self.headers)
        names = {name.lower() for name, _ in headers}
        if code == 204:  # RFC 9110 §8.6: a server MUST NOT send Content-Length in a 204
            headers = [(n, v) for n, v in headers if n.lower() != b"content-length"]
        elif length is not None and code != 304 and b"content-length" not in names:
            # A 304's Content-Length describes the GET's body, so never compute one for it.
            headers.append((b"Content-Length", b"%d" % length))
        if b"date" not in names:
            headers.append((b"Date", http_date()))
        if b"server" not in names:
            headers.append((b"Server", SERVER_SOFTWARE.encode()))
        if self.connection.must_close():
            headers = _with_connection_close(headers)
        self.connection.send(h11.Response(status_code=code, reason=reason, headers=headers))
        self.headers_sent = True
        self.status_sent = code

    def _send_body(self, chunk: bytes, length: int | None = None) -> None:
        if not self.headers_sent:
            self._send_head(length)
        if chunk and self._body_allowed:
            self.connection.send(h11.Data(data=chunk))
            self.body_bytes += len(chunk)

    def _send_result(self, result) -> None:
        if result is None or isinstance(result, (bytes, str)):
            # The classic first mistake: iterating b"hi" would yield ints, "hi" strs.
            raise TypeError(f"PEP 3333: the application must return an iterable of bytes, "
                            f"such as [b'hello'], not {type(result).__name__}")
        try:
            single = len(result) == 1
        except TypeError:
            single = False
        for chunk in result:
            if not isinstance(chunk, bytes):
                raise TypeError(f"PEP 3333: the application's iterable must yield bytes, "
                                f"not {type(chunk).__name__}")
            if not chunk:
                continue  # PEP 3333: headers wait for the first non-empty bytestring
            if self.status is None:
                raise AssertionError("PEP 3333: the application yielded body data before "
                                     "calling start_response()")
            # PEP 3333: with len() == 1 the server may compute Content-Length itself.
            self._send_body(chunk, len(chunk) if single and not self.headers_sent else None)
            if not self._body_allowed:
                break  # the headers are out; nothing else of this body will be sent
        if not self.headers_sent:
            if self.status is None:
                raise AssertionError("PEP 3333: the application returned without calling "
                                     "start_response()")
            self._send_head(0)

    # -- running the app ----------------------------------------------------------------

    def run(self, app, environ) -> None:
        result = None
        try:
            result = app(environ, self.start_response)
            self._send_result(result)
            self.connection.send(h11.EndOfMessage())
        except ClientDisconnected as exc:
            self.aborted = True
            self.connection.log.info(f"{self.connection.peer}: client went away during "
                                     f"{self.method} {self.target} ({exc})")
        except RequestBodyError as exc:
            self._fail_body(exc)
        except Exception as exc:  # any app error: answer 500 or drop the connection
            self._fail(exc)
        finally:
            if result is not None:
                self._close_iterable(result)
            self.errors.flush()

    def _close_iterable(self, result) -> None:
        close = getattr(result, "close", None)
        if close is None:
            return
        try:
            close()  # PEP 3333: always, whether the response completed or not
        except Exception as exc:
            self.connection.log.error(f"the application's iterable failed in close() "
                                      f"({self.method} {self.target})", exc)

    def _fail_body(self, exc: RequestBodyError) -> None:
        self.connection.log.info(f"{self.connection.peer}: {exc}")
        if self.connection.can_respond():
            self.status_sent = exc.status_code
            self.body_bytes = self.connection.send_error_response(
                exc.status_code, str(exc), head=self.method == "HEAD")
        else:
            self.aborted = True

    def _fail(self, exc: Exception) -> None:
        if self.connection.peer_closed and isinstance(exc, OSError):
            # The app turned our ClientDisconnected into its own I/O error: no traceback.
            self.aborted = True
            self.connection.log.info(f"{self.connection.peer}: client went away during "
                                     f"{self.method} {self.target} ({exc})")
            return
        where = f"{self.method} {self.target}"
        if self.connection.can_respond():
            self.connection.log.error(f"application error in {where}: "
                                      f"{type(exc).__name__}: {exc}", exc)
            self.status_sent = 500
            self.body_bytes = self.connection.send_error_response(
                500, "The application raised an error; the details are in the server log.",
                close=False, head=self.method == "HEAD")
        else:
            # The status line is out; the only honest signal left is an incomplete message.
            self.aborted = True
            self.connection.log.error(f"application error in {where} after the response "
                                      f"started; closing the connection: "
                                      f"{type(exc).__name__}: {exc}", exc)


def _with_connection_close(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    tokens = {token.strip().lower() for name, value in headers
              if name.lower() == b"connection" for token in value.split(b",") if token.strip()}
    tokens.discard(b"keep-alive")
    tokens.add(b"close")
    kept = [(n, v) for n, v in headers if n.lower() != b"connection"]
    return kept + [(b"Connection", b", ".join(sorted(tokens)))]
