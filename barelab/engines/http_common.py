"""Small HTTP facts both engines need: the Date header, reason phrases, and the status
for a Transfer-Encoding that h11 refused.

RFC 9110 §6.6.1: an origin server with a clock MUST send Date in 2xx, 3xx and 4xx
responses, with one-second resolution. Formatting it per response is wasted work at a few
thousand requests a second, so the value is kept until the second changes.
"""

from __future__ import annotations

import http
import re
import time
from email.utils import formatdate

_date_cache: tuple[int, bytes] = (0, b"")


def http_date() -> bytes:
    """The current time as an IMF-fixdate (RFC 9110 §5.6.7), e.g. ``Sun, 06 Nov 1994 ...``."""
    global _date_cache
    now = int(time.time())
    second, value = _date_cache
    if second != now:
        value = formatdate(now, usegmt=True).encode("ascii")
        _date_cache = (now, value)  # one tuple swap: safe to share between threads
    return value


# RFC 9110 renamed a few statuses; Python's HTTPStatus has the new names only from 3.13.
_RFC_9110_NAMES = {
    413: "Content Too Large",        # §15.5.14, was "Request Entity Too Large"
    414: "URI Too Long",             # §15.5.15, was "Request-URI Too Long"
    416: "Range Not Satisfiable",    # §15.5.17, was "Requested Range Not Satisfiable"
    422: "Unprocessable Content",    # §15.5.21, was "Unprocessable Entity"
}


def reason_phrase(status: int) -> str:
    """The reason phrase RFC 9110 §15 registers for ``status``, or "" if it has none."""
    if status in _RFC_9110_NAMES:
        return _RFC_9110_NAMES[status]
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return ""


_TRANSFER_ENCODING = re.compile(rb"(?im)^transfer-encoding[ \t]*:(.*?)\r?$")


def refused_coding_status(head: bytes) -> tuple[int, str]:
    """Status and reason for a request whose Transfer-Encoding h11 refused (h11 says 501).

    RFC 9112 §6.3: when chunked is not the final coding the length of the body cannot be
    known and the server MUST answer 400; §6.1: chunked applied twice is malformed too.
    Only a coding the server does not know, followed by chunked, earns 501 (RFC 9112 §6.1).
    """
    codings = [c.strip().lower() for value in _TRANSFER_ENCODING.findall(head)
               for c in value.split(b",") if c.strip()]
    if not codings or codings[-1] != b"chunked":
        return 400, ("RFC 9112 §6.3: chunked must be the final transfer coding, or the body "
                     "length cannot be determined")
    if codings.count(b"chunked") > 1:
        return 400, "RFC 9112 §6.1: a sender MUST NOT apply chunked more than once"
    return 501, "RFC 9112 §6.1: only the chunked transfer coding is implemented"
