"""What the ASGI engine makes of a request head: checks h11 leaves to us, and the scope.

h11 parses the request line and header fields and enforces most of RFC 9112, but some rules
are the server's to apply: the size of a head that arrived in one piece, the major version,
Content-Length together with Transfer-Encoding, the form of the request-target, the body size
limit. ``check_request_head`` applies them and raises ``RequestRejected`` carrying the status
to answer with (like h11's ``error_status_hint``). ``http_scope`` and ``websocket_scope``
build the ASGI connection scopes from an accepted head.
"""

from __future__ import annotations

import re
from urllib.parse import unquote_to_bytes

import h11

ASGI_VERSION = {"version": "3.0", "spec_version": "2.4"}

_ABSOLUTE_FORM = re.compile(rb"^[A-Za-z][A-Za-z0-9+.\-]*://([^/?#]*)(.*)$", re.DOTALL)
# RFC 9110 §7.2 / RFC 3986 §3.2.2: Host = uri-host [ ":" port ] (IP-literal or reg-name)
_HOST = re.compile(rb"^(\[[0-9A-Za-z:.\-+!$&'()*,;=~_]+\]|[A-Za-z0-9\-._~%!$&'()*+,;=]*)"
                   rb"(:[0-9]*)?$")


class RequestRejected(Exception):
    """The request cannot be served; answer ``status`` and close the connection."""

    def __init__(self, status: int, message: str, headers=()):
        super().__init__(message)
        self.status = status
        self.headers = list(headers)


def split_target(method: bytes, target: bytes) -> tuple[bytes, bytes, bytes | None]:
    """``(raw_path, query_string, authority)`` of a request-target (RFC 9112 §3.2);
    ``authority`` is None unless the target is in absolute-form."""
    if b"#" in target:
        raise RequestRejected(400, "RFC 9112 §3.2: the request-target never contains a "
                                   "fragment ('#')")
    if target.startswith(b"/"):  # origin-form
        raw_path, _, query = target.partition(b"?")
        return raw_path, query, None
    match = _ABSOLUTE_FORM.match(target)
    if match:  # absolute-form: RFC 9112 §3.2.2 says a server MUST accept it
        raw_path, _, query = match.group(2).partition(b"?")
        return raw_path or b"/", query, match.group(1)
    if target == b"*" and method == b"OPTIONS":  # asterisk-form
        return b"*", b"", None
    raise RequestRejected(400, "RFC 9112 §3.2: request-target must be origin-form ('/path'), "
                               "absolute-form, or '*' for OPTIONS")


def decode_path(raw_path: bytes) -> str:
    """ASGI: path is the target "with percent-encoded sequences and UTF-8 byte sequences
    decoded into characters"; bytes that are not UTF-8 become U+FFFD."""
    return unquote_to_bytes(raw_path).decode("utf-8", "replace")


def head_size(request: h11.Request) -> int:
    """Bytes the request head took on the wire, give or take optional whitespace."""
    line = len(request.method) + len(request.target) + len(b"  HTTP/1.1\r\n")
    return line + sum(len(n) + len(v) + 4 for n, v in request.headers) + 2


def header_values(request: h11.Request, name: bytes) -> list[bytes]:
    return [v for n, v in request.headers if n == name]


def header_tokens(request: h11.Request, name: bytes) -> list[bytes]:
    """Comma-separated tokens of every ``name`` field, lowercased."""
    tokens = []
    for value in header_values(request, name):
        tokens.extend(t.strip().lower() for t in value.split(b",") if t.strip())
    return tokens


def check_request_head(request: h11.Request, max_header_bytes: int, max_body_bytes: int):
    """Apply the rules h11 leaves to the server; return ``split_target``'s triple."""
    if len(request.target) > max_header_bytes // 2:
        raise RequestRejected(414, f"RFC 9112 §3: request-target longer than "
                                   f"{max_header_bytes // 2} bytes")
    if head_size(request) > max_header_bytes:
        raise RequestRejected(431, f"RFC 6585 §5: request header fields larger than "
                                   f"{max_header_bytes} bytes")
    major = request.http_version.split(b".")[0]
    if major != b"1":
        raise RequestRejected(505, "RFC 9110 §15.6.6: only HTTP/1.x is supported here, got "
                                   f"HTTP/{request.http_version.decode('ascii', 'replace')}")
    lengths = header_values(request, b"content-length")
    if lengths and header_values(request, b"transfer-encoding"):
        raise RequestRejected(400, "RFC 9112 §6.1: a request with both Content-Length and "
                                   "Transfer-Encoding is rejected as possible smuggling")
    if request.http_version == b"1.0" and header_values(request, b"transfer-encoding"):
        raise RequestRejected(400, "RFC 9112 §6.1: an HTTP/1.0 message with "
                                   "Transfer-Encoding has faulty framing")
    hosts = header_values(request, b"host")
    if hosts and not _HOST.match(hosts[0]):
        raise RequestRejected(400, "RFC 9112 §3.2: the Host header field value is invalid")
    if request.method == b"CONNECT":
        raise RequestRejected(501, "RFC 9110 §9.3.6: CONNECT is for proxies; this origin "
                                   "server does not implement it")
    target = split_target(request.method, request.target)
    if lengths and int(lengths[0]) > max_body_bytes:
        raise RequestRejected(413, f"RFC 9110 §15.5.14: request content larger than "
                                   f"{max_body_bytes} bytes")
    return target


def is_websocket_upgrade(request: h11.Request) -> bool:
    """An HTTP/1.1 GET asking to upgrade to websocket (RFC 6455 §4.1). Other upgrades, and an
    Upgrade field not named in Connection (RFC 9110 §7.8), are ignored: plain HTTP."""
    return (request.method == b"GET" and request.http_version == b"1.1"
            and b"websocket" in header_tokens(request, b"upgrade")
            and b"upgrade" in header_tokens(request, b"connection"))


def scope_headers(request: h11.Request, authority: bytes | None) -> list:
    """Lowercased (name, value) pairs in order, repeats kept. For an absolute-form target
    RFC 9112 §3.2.2 says the origin server MUST use its authority, not the Host field."""
    headers = [(bytes(n), bytes(v)) for n, v in request.headers]
    if authority is not None:
        headers = [(n, v) for n, v in headers if n != b"host"]
        headers.insert(0, (b"host", authority))
    return headers


def _common_scope(request, target, client, server, state) -> dict:
    raw_path, query, authority = target
    version = request.http_version.decode("ascii")
    return {
        "asgi": dict(ASGI_VERSION),
        "http_version": "1.0" if version == "1.0" else "1.1",
        "path": decode_path(raw_path),
        "raw_path": raw_path,
        "query_string": query,
        "root_path": "",
        "headers": scope_headers(request, authority),
        "client": client,
        "server": server,
        "state": dict(state),  # ASGI lifespan: a shallow copy per connection scope
    }


def http_scope(request, target, client, server, state) -> dict:
    """The ``http`` scope; ``target`` is ``check_request_head``'s triple."""
    scope = {"type": "http", "method": request.method.decode("ascii"), "scheme": "http"}
    scope.update(_common_scope(request, target, client, server, state))
    return scope


def websocket_scope(request, target, client, server, state, subprotocols) -> dict:
    scope = {"type": "websocket", "scheme": "ws", "subprotocols": list(subprotocols),
             "extensions": {"websocket.http.response": {}}}
    scope.update(_common_scope(request, target, client, server, state))
    return scope
