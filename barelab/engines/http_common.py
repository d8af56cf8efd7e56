"""Small HTTP facts both engines need: the Date header and reason phrases.

RFC 9110 §6.6.1: an origin server with a clock MUST send Date in 2xx, 3xx and 4xx
responses, with one-second resolution. Formatting it per response is wasted work at a few
thousand requests a second, so the value is kept until the second changes.
"""

from __future__ import annotations

import http
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


def reason_phrase(status: int) -> str:
    """The registered reason phrase of ``status`` (RFC 9110 §15), or "" if it has none."""
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return ""
