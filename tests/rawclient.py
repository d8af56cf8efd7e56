"""A raw-socket HTTP/1.1 client for the server tests: send exact bytes, read framed replies.

Shared by the engine and conformance tests. It parses just enough of a response to check
framing (status, headers, Content-Length or chunked body) and says plainly when a server
closes early, so a test failure shows the bytes that were there.
"""

from __future__ import annotations

import socket


class RawClient:
    """One connection to ``target`` (a server with .host/.port, or a port on 127.0.0.1)."""

    def __init__(self, target, timeout: float = 3.0):
        host, port = ("127.0.0.1", target) if isinstance(target, int) else (target.host,
                                                                           target.port)
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.buffer = b""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _more(self) -> bytes:
        data = self.sock.recv(65536)
        self.buffer += data
        return data

    def until(self, marker: bytes) -> bytes:
        """The bytes before ``marker`` (consumed with it)."""
        while marker not in self.buffer:
            if not self._more():
                raise EOFError(f"closed before {marker!r}; got {self.buffer!r}")
        data, _, self.buffer = self.buffer.partition(marker)
        return data

    def exactly(self, size: int) -> bytes:
        while len(self.buffer) < size:
            if not self._more():
                raise EOFError(f"closed after {len(self.buffer)} of {size} bytes")
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data

    def head(self) -> tuple[int, dict[str, str]]:
        """One status line and header block: (status, {lower-name: value})."""
        lines = self.until(b"\r\n\r\n").decode("latin-1").split("\r\n")
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            assert name.lower() not in headers, f"repeated response header {name}"
            headers[name.lower()] = value.strip()
        return int(lines[0].split(" ")[1]), headers

    def response(self, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
        """The next final response (1xx skipped), its body framed as RFC 9112 §6.3 says."""
        status, headers = self.head()
        while 100 <= status < 200:
            status, headers = self.head()
        if method == "HEAD" or status in (204, 304):
            return status, headers, b""
        if headers.get("transfer-encoding") == "chunked":
            assert "content-length" not in headers, "RFC 9112 §6.2: never both"
            return status, headers, self.chunked_body()
        if "content-length" in headers:
            return status, headers, self.exactly(int(headers["content-length"]))
        return status, headers, self.read_all()

    def chunked_body(self) -> bytes:
        body = b""
        while size := int(self.until(b"\r\n").split(b";")[0], 16):
            body += self.exactly(size)
            assert self.exactly(2) == b"\r\n"
        assert self.until(b"\r\n") == b""
        return body

    def read_all(self, timeout: float = 2.0) -> bytes:
        """Everything until the server closes (or resets), or ``timeout`` of silence."""
        self.sock.settimeout(timeout)
        try:
            while self._more():
                pass
        except (TimeoutError, ConnectionResetError):
            pass
        data, self.buffer = self.buffer, b""
        return data

    def closed_by_server(self, timeout: float = 2.0) -> bool:
        self.sock.settimeout(timeout)
        try:
            return not self._more()
        except ConnectionResetError:
            return True
        except TimeoutError:
            return False
