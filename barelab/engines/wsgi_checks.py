"""The HTTP rules of the WSGI engine: what h11 lets through but a server must still refuse,
and what ``start_response`` may accept.

Pure functions over bytes and strings, no sockets, so each rule can be read and tested alone.
Request checks raise h11's own ``RemoteProtocolError`` carrying the status to answer with
(``error_status_hint``), so the connection answers our refusals and h11's on one code path;
response checks raise ``TypeError``/``ValueError`` into the app. Each message quotes the rule
it enforces: PEP 3333, RFC 9110 or RFC 9112.
"""

from __future__ import annotations

import re

import h11

SERVER_SOFTWARE = "barelab"


def _reject(message: str, status_code: int = 400) -> h11.RemoteProtocolError:
    # Our own checks raise the same error type as h11's, so one code path answers both.
    return h11.RemoteProtocolError(message, error_status_hint=status_code)


# ---------------------------------------------------------------------------------------
# Requests: what h11 accepts but a server must still refuse

_ABSOLUTE_FORM = re.compile(rb"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://(?P<authority>[^/?]*)"
                            rb"(?P<rest>.*)", re.DOTALL)
# RFC 9110 §7.2 / RFC 3986 §3.2.2: Host = uri-host [ ":" port ]; no userinfo, no path.
_HOST_VALUE = re.compile(rb"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._~!$&'()*+,;=%]*)(?::[0-9]*)?")


def _head_size(request: h11.Request) -> int:
    line = len(request.method) + len(request.target) + len(b"  HTTP/1.1\r\n")
    return line + sum(len(name) + len(value) + 4 for name, value in request.headers.raw_items())


def _check_target(method: bytes, target: bytes) -> tuple[bytes, bytes, bytes | None]:
    """Split a request-target into (path, query, authority); refuse what RFC 9112 §3.2 forbids."""
    if b"#" in target:
        raise _reject("a request-target never carries a #fragment (RFC 9112 §3.2)")
    if target.startswith(b"/"):  # origin-form, the usual case
        path, _, query = target.partition(b"?")
        return path, query, None
    if target == b"*":  # asterisk-form: server-wide OPTIONS only
        if method != b"OPTIONS":
            raise _reject("the request-target * is only valid for OPTIONS (RFC 9112 §3.2.4)")
        return b"*", b"", None
    match = _ABSOLUTE_FORM.fullmatch(target)
    if match is None:
        raise _reject("request-target must be /path, an absolute http URI or * (RFC 9112 §3.2)")
    # absolute-form: RFC 9112 §3.2.2 says a server MUST accept it and use its authority
    # in place of the Host header.
    if match["scheme"].lower() not in (b"http", b"https"):
        raise _reject("absolute-form request-target must be an http or https URI")
    authority = match["authority"]
    if b"@" in authority or not _HOST_VALUE.fullmatch(authority):
        raise _reject("invalid authority in the request-target (RFC 9110 §4.2.4)")
    path, _, query = match["rest"].partition(b"?")
    return path or b"/", query, authority


def check_request(request: h11.Request, max_header_bytes: int) -> tuple[bytes, bytes, bytes | None]:
    """Refuse what h11 lets through but RFC 9110/9112 says a server must not serve.

    h11 already refuses: a missing Host in HTTP/1.1, several Host fields, bad or
    conflicting Content-Length, any Transfer-Encoding but ``chunked`` (501), whitespace
    before a colon, bare CR, NUL and other illegal bytes. Returns (path, query, authority).
    """
    version = request.http_version
    if not version.startswith(b"1."):
        raise _reject(f"HTTP/{version.decode()} is not supported; this server speaks HTTP/1.1",
                      505)
    if len(request.target) > max_header_bytes:
        raise _reject(f"the request-target is over {max_header_bytes} bytes (max_header_bytes)",
                      414)
    if _head_size(request) > max_header_bytes:
        raise _reject(f"request head is over {max_header_bytes} bytes (max_header_bytes)", 431)
    hosts = [value for name, value in request.headers if name == b"host"]
    if version > b"1.1" and not hosts:  # h11 checks only the exact version 1.1
        raise _reject("an HTTP/1.1 request must carry a Host header (RFC 9112 §3.2)")
    if hosts and not _HOST_VALUE.fullmatch(hosts[0]):
        raise _reject("invalid Host header value (RFC 9112 §3.2: answer 400)")
    names = {name for name, _ in request.headers}
    if b"transfer-encoding" in names:
        # h11 lets Transfer-Encoding win over Content-Length, as RFC 9112 §6.3 says a
        # recipient may; a server that answers both is what request smuggling needs.
        if b"content-length" in names:
            raise _reject("Transfer-Encoding together with Content-Length "
                          "(RFC 9112 §6.1: possible request smuggling)")
        if version == b"1.0":
            raise _reject("Transfer-Encoding in an HTTP/1.0 request "
                          "(RFC 9112 §6.1: faulty framing)")
    if request.method == b"CONNECT":
        # A WSGI app cannot run a tunnel, and h11 would switch protocols on a 2xx answer.
        raise _reject("CONNECT is not supported by this server", 501)
    return _check_target(request.method, request.target)


# ---------------------------------------------------------------------------------------
# Responses: what start_response accepts

_STATUS = re.compile(r"([0-9]{3}) ([\t\x20-\x7e\x80-\xff]*)")
_TOKEN = re.compile(r"[-!#$%&'*+.^_`|~0-9A-Za-z]+")
_FIELD_VALUE = re.compile(r"[\t\x20-\x7e\x80-\xff]*")


def parse_status(status) -> tuple[int, bytes]:
    """``"200 OK"`` -> ``(200, b"OK")``, or a TypeError/ValueError quoting PEP 3333."""
    if not isinstance(status, str):
        raise TypeError(f'PEP 3333: "The status argument is a string, such as "200 OK"" '
                        f"-- got {type(status).__name__} {status!r}")
    match = _STATUS.fullmatch(status)
    if match is None:
        raise ValueError(f'PEP 3333: the status must be "a status code and reason phrase, '
                         f'separated by a single space", latin-1, no control characters '
                         f'-- got {status!r}')
    code = int(match[1])
    if not 200 <= code <= 599:
        raise ValueError(f"status {code}: an application's final response must be 200-599 "
                         f"(RFC 9110 §15; 1xx responses are the server's business, PEP 3333)")
    return code, match[2].encode("latin-1")


def _content_lengths(pairs) -> set[bytes]:
    return {value.strip() for name, value in pairs if name.lower() == b"content-length"
            for value in value.split(b",")}


def parse_headers(headers) -> list[tuple[bytes, bytes]]:
    """Check ``response_headers`` as PEP 3333 defines them; return latin-1 encoded pairs.

    A ``Transfer-Encoding: chunked`` header is dropped: framing is the server's choice
    (chunked for HTTP/1.1 clients, close-delimited for HTTP/1.0), and h11 makes it.
    """
    if type(headers) is not list:
        raise TypeError(f'PEP 3333: "response_headers ... must be a Python list; i.e. '
                        f'type(response_headers) is ListType" -- got {type(headers).__name__}')
    pairs = []
    for item in headers:
        if type(item) is not tuple or len(item) != 2:
            raise TypeError(f"PEP 3333: each response header is a (header_name, header_value) "
                            f"tuple -- got {item!r}")
        name, value = item
        if not isinstance(name, str) or not isinstance(value, str):
            raise TypeError(f"PEP 3333: header names and values must be native strings (str) "
                            f"-- got {item!r}")
        if not _TOKEN.fullmatch(name):
            raise ValueError(f"RFC 9110 §5.1: a header name is a token (no spaces, colons or "
                             f"control characters) -- got {name!r}")
        value = value.strip(" \t")
        if not _FIELD_VALUE.fullmatch(value):
            raise ValueError(f'PEP 3333: a header value "must not include any control '
                             f'characters, including carriage returns or linefeeds", and must '
                             f"be latin-1 -- got {name}: {value!r}")
        if name.lower() == "transfer-encoding":
            if value.lower() != "chunked":
                raise ValueError(f"Transfer-Encoding: {value}: this server applies no transfer "
                                 f"codings but chunked, and chooses framing itself (PEP 3333 "
                                 f"leaves hop-by-hop headers to the server)")
            continue
        pairs.append((name.encode("latin-1"), value.encode("latin-1")))
    lengths = _content_lengths(pairs)
    if len(lengths) > 1 or any(not length.isdigit() for length in lengths):
        raise ValueError(f"Content-Length must be one decimal number (RFC 9110 §8.6) "
                         f"-- got {sorted(lengths)!r}")
    return pairs


