# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # 09. Request and Response
#
# Flask hands your view a `request` and takes back a `Response`; under them sit a dict and a
# callback. In this chapter you build both objects yourself, on top of the WSGI environ, and
# you make every rule about forms, JSON, cookies, redirects and empty responses explicit.
#
# ## Learning goals
#
# - Build `Request`, a lazy view of the environ: decoded path, query and form as multi-dicts,
#   case-insensitive headers, cookies, JSON, the body read once, the URL rebuilt.
# - Build `Response`, `JSONResponse` and `RedirectResponse`, which are WSGI apps themselves,
#   and `HTTPError`, an exception that is also a response.
# - Parse `multipart/form-data` by hand, and refuse malformed bodies with a 400.
# - Know the traps: a dict that loses your second `Set-Cookie`, a 204 with `Content-Length`,
#   a 304 with a body, invalid JSON that crashes instead of answering 400, a redirect that
#   lets a stranger inject headers.
# - Watch all of it on real bytes, with `wsgiref.validate.validator` checking every call.

# %% [markdown]
# ## The environ is not an API
#
# Chapter 04 showed the environ: a dict of strings, built by the server for one request.
# Everything the client sent is in there, but little of it is ready to use.
#
# You don't need a server to get one. `barelab.build_environ(method, target)` builds the
# environ a server would build for that request, with no network involved, so you can look
# at it in a cell. Build one for a request to `/café?tag=a&tag=b&draft=` (the `é` travels
# percent-encoded as its two UTF-8 bytes, `%C3%A9`) and look at three things: the path, the
# raw query string, and what the standard library makes of the query.

# %%
import barelab
from urllib.parse import parse_qs

environ = barelab.build_environ("GET", "/caf%C3%A9?tag=a&tag=b&draft=")
environ["PATH_INFO"], environ["QUERY_STRING"], parse_qs(environ["QUERY_STRING"])

# %% [markdown]
# Three problems, one per value:
#
# - `PATH_INFO` reads `/cafÃ©`. PEP 3333 stores each byte of the decoded path as one
#   latin-1 character ("bytes in a str"), so the two UTF-8 bytes of `é` show up as two
#   characters. Someone has to turn them back into bytes and decode them as UTF-8.
# - `QUERY_STRING` is still percent-encoded and unsplit.
# - `parse_qs`, the standard library's answer, silently dropped `draft`, because its value
#   is blank. An empty text field in a form sends exactly that, and "the field was there but
#   empty" is not the same as "the field was missing".
#   (`parse_qs(..., keep_blank_values=True)` keeps it; the default does not.)
#
# Every app needs the same dozen conversions, each with a trap in it. A `Request` object does
# them once, correctly, and a `Response` object does the same for the way back:
#
# ```mermaid
# flowchart LR
#     S["server"] -- "environ" --> R["Request(environ)<br/>path, query, form, json, cookies"]
#     R --> H["your handler"]
#     H -- "returns or raises" --> P["Response / HTTPError<br/>a WSGI app itself"]
#     P -- "start_response(status, headers)<br/>+ body iterable" --> S
# ```
#
# The chapter builds the right half first: `Response`, because the traps on the way out are
# the ones that can corrupt a whole connection. `Request` comes after it.
#
# As in earlier chapters, every cell that starts with `#| export` is saved to a module, so
# later chapters can import what you build here instead of pasting it again. This one is
# `barelab.built.http_objects`:

# %%
#| default_exp http_objects

# %% [markdown]
# The module opens with its imports. You don't need to study the list: each name is
# introduced where it is first used. Three come from chapter 02's `http_wire`, which
# already knows the reason phrase of every status code (`reason_phrase`), how to check a
# header line (`format_field`) and a sensible body limit (`MAX_BODY`, 8 MiB).

# %%
#| export
# Request and Response objects for WSGI. A Request reads the environ lazily and at most once,
# and refuses bad input by raising an HTTPError. Response, its subclasses and HTTPError are
# WSGI apps themselves (Werkzeug's design): a handler ends with
# `return response(environ, start_response)`, and an error can simply be raised.
import json
import re
from abc import update_abstractmethods
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from functools import cached_property, wraps
from urllib.parse import quote, unquote_to_bytes
from wsgiref.util import is_hop_by_hop

from barelab.built.http_wire import MAX_BODY, format_field, reason_phrase

# %% [markdown]
# ## A dict that keeps repeats
#
# Query strings, forms, headers and cookies all allow the same name twice: `?tag=a&tag=b` is
# two tags, not one. A plain `dict` keeps only the last. A *multi-dict* keeps every pair, in
# the order it arrived, and answers questions about them.
#
# The class stores a plain list of `(key, value)` pairs. It subclasses
# `collections.abc.Mapping`, which asks for three methods, `__getitem__`, `__iter__` and
# `__len__`, and in return gives you `get`, `in`, `keys`, `items` and `==` for free. Look
# for two choices in it:
#
# - `d[key]` gives the *first* value, as in Werkzeug (Flask's `request.args["tag"]`).
# - Every comparison of keys goes through `_key`, which returns the key unchanged. That one
#   hook is how the next class, `Headers`, will ignore case without touching anything else.

# %%
#| export
class MultiDict(Mapping):
    """A read-only mapping whose keys may repeat, in the order given.

    ``d[key]`` and ``d.get(key)`` give the first value; ``d.getall(key)`` gives all of them.
    """

    def __init__(self, pairs=()):
        self._pairs = list(pairs.items() if isinstance(pairs, Mapping) else pairs)

    @staticmethod
    def _key(key):              # Headers overrides this to ignore case
        return key

    def __getitem__(self, key):
        for k, v in self._pairs:
            if self._key(k) == self._key(key):
                return v
        raise KeyError(key)

# %% [markdown]
# `__iter__` lists each key once, in the order it first appeared, and `__len__` counts
# those distinct keys. They are written as plain functions and attached to the class
# afterwards: a Python class stays open after its `class` statement, so it can grow one
# cell at a time. You will see this pattern again for `Response`.

# %%
#| export
def _multidict_iter(self):      # each key once, in the order it first appeared
    first = {}
    for k, _ in self._pairs:
        first.setdefault(self._key(k), k)
    return iter(first.values())

MultiDict.__iter__ = _multidict_iter
MultiDict.__len__ = lambda self: len({self._key(k) for k, _ in self._pairs})
MultiDict = update_abstractmethods(MultiDict)   # Mapping's three methods now exist

# %% [markdown]
# The last line needs a word. `Mapping` marks its three methods as *abstract*, and Python
# refuses to create an instance while one is missing. It decides which are missing when the
# `class` statement runs, before the two methods above existed;
# `abc.update_abstractmethods` is the standard library's way to say "look again" (it returns
# the same class, which is why the line is an assignment). Now try the query from the start
# of the chapter:

# %%
tags = MultiDict([("tag", "a"), ("tag", "b"), ("draft", "")])
tags["tag"], tags.get("draft"), tags.get("missing", "-"), list(tags), len(tags), "draft" in tags

# %% [markdown]
# `tags["tag"]` is `'a'`, the first one; the blank `draft` is there, with `''` as its value,
# and `in` finds it; `list(tags)` has two keys, not three. What is still missing is a way
# to get *both* tags back, and the pairs themselves, repeats included:

# %%
#| export
def _multidict_getall(self, key) -> list:
    """Every value of ``key``, in order; [] if there is none."""
    return [v for k, v in self._pairs if self._key(k) == self._key(key)]

def _multidict_multi_items(self) -> list:
    """Every (key, value) pair, repeats included, in order."""
    return list(self._pairs)

MultiDict.getall = MultiDict.getlist = _multidict_getall   # getlist: Werkzeug's name
MultiDict.multi_items = _multidict_multi_items
MultiDict.__repr__ = lambda self: f"{type(self).__name__}({self._pairs!r})"

# %%
tags.getall("tag"), tags.getall("missing"), tags.multi_items()

# %% [markdown]
# Header names ignore case (RFC 9110 §5.1): `content-type`, `Content-Type` and
# `CONTENT-TYPE` are one field. So `Headers` is the same multi-dict with a different notion
# of "same key": its `_key` lower-cases.
#
# The other half of the class reads headers out of the environ, where the server has
# renamed them. Following CGI, as PEP 3333 asks, a request header `User-Agent` becomes
# `HTTP_USER_AGENT`, except `Content-Type` and `Content-Length`, which become
# `CONTENT_TYPE` and `CONTENT_LENGTH` with no prefix. `from_environ` undoes the renaming.

# %%
#| export
class Headers(MultiDict):
    """Header fields: a MultiDict whose keys ignore case (RFC 9110 §5.1)."""

    @staticmethod
    def _key(key):
        return key.lower()

    @classmethod
    def from_environ(cls, environ: dict) -> "Headers":
        """The request's fields, from HTTP_* keys, CONTENT_TYPE and CONTENT_LENGTH."""
        pairs = []
        for key, value in environ.items():
            if key.startswith("HTTP_"):
                pairs.append((key[5:].replace("_", "-").title(), value))
            elif key in ("CONTENT_TYPE", "CONTENT_LENGTH") and value:
                pairs.append((key.replace("_", "-").title(), value))
        return cls(pairs)

# %%
headers = Headers.from_environ(barelab.build_environ(
    "POST", "/", headers=[("Content-Type", "text/plain"), ("X-Trace", "a")], body=b"hi"))
headers, headers["content-TYPE"], headers.get("x-trace")

# %% [markdown]
# You passed two headers and got four: `build_environ` added the `Host` and `Content-Length`
# a real client would send with a two-byte body. The names come back in title case
# (`X-Trace`), since the environ kept only an upper-case spelling, and any spelling finds
# them.
#
# One thing a `Headers` built from an environ cannot give back: if a client sent `X-Trace`
# twice, the server has already joined the two values into one string with `", "` (RFC 9110
# §5.3), and `Cookie` lines with `"; "`. The environ has one key per name. Repeats survive
# in query strings, forms and cookies, which is where `getall` earns its keep.

# %% [markdown]
# ## Responses: the naive way
#
# Before building `Response`, look at the one most tutorials write. It keeps headers in a
# dict, because headers look like a dict, and always adds a `Content-Length`, because a body
# has a length. Calling the object is what makes it a WSGI app: it takes `environ` and
# `start_response` like any app from chapter 05.

# %%
class NaiveResponse:
    def __init__(self, body=b"", status="200 OK", headers=None):
        self.body, self.status, self.headers = body, status, dict(headers or {})

    def __call__(self, environ, start_response):
        self.headers["Content-Length"] = str(len(self.body))
        start_response(self.status, list(self.headers.items()))
        return [self.body]

# %% [markdown]
# Log a user in: the app wants to set two cookies, a session id and a theme. Each cookie
# needs its own `Set-Cookie` line. `barelab.call_wsgi(app)` calls a WSGI app directly, with
# a made-up environ and no server, and its `transcript` lists each step: the environ the app
# got, what it passed to `start_response`, and each chunk of body it yielded. Watch the
# `start_response()` row:

# %%
naive = NaiveResponse(b"welcome", headers=[("Content-Type", "text/plain"),
                                           ("Set-Cookie", "sid=abc123; HttpOnly"),
                                           ("Set-Cookie", "theme=dark")])
barelab.call_wsgi(naive).transcript

# %% [markdown]
# One `Set-Cookie` left: `theme=dark`. `dict(...)` kept the last value of each name, so the
# session cookie vanished without an error, and this user is never logged in. You cannot fix it by joining
# the two values with a comma either: RFC 9110 §5.3 singles out `Set-Cookie` as the field
# whose lines must not be combined, since a cookie's `Expires=Thu, 01 Jan 2026 ...` has a
# comma of its own (RFC 6265 §3). Headers are a *list of pairs*, and PEP 3333 says so too.
#
# Second trap. `204 No Content` means "done, nothing to send", and `304 Not Modified` means
# "your cached copy is still good". Ask the naive class for each, and put the two results
# side by side in one table (`barelab.show_transcript` draws rows of text as a table):

# %%
calls = {status: barelab.call_wsgi(NaiveResponse(body, status, {"Content-Type": "text/plain"}))
         for status, body in [("204 No Content", b""), ("304 Not Modified", b"cached page")]}
barelab.show_transcript([(s, repr(c.headers), c.body) for s, c in calls.items()],
                        columns=("status", "headers", "body"))

# %% [markdown]
# Both are wrong:
#
# - RFC 9110 §8.6: "A server MUST NOT send a Content-Length header field in any response with
#   a status code of 1xx (Informational) or 204 (No Content)." `Content-Length: 0` is still a
#   `Content-Length`.
# - RFC 9110 §15.4.5: a 304 "cannot contain content", and RFC 9112 §6.3 says its message
#   ends at the empty line after the headers. The client does not read `cached page` as a
#   body; it reads it as the start of the *next* response on this connection, and every
#   response after it is out of step.
#
# A good server saves you from some of this (barelab's drops the 304's body), but the
# spec puts the duty on whoever writes the response. `wsgiref.validate.validator`, the
# standard library's PEP 3333 checker, catches one more mistake: a 204 or 304 may not carry a
# `Content-Type`, since it has no content to describe.
#
# `validator(app)` returns a wrapped app that checks every call in both directions and
# raises `AssertionError` at the first violation. `raise_errors=False` tells `call_wsgi` to
# keep that exception in `.exception` instead of stopping the cell:

# %%
from wsgiref.validate import validator

result = barelab.call_wsgi(validator(NaiveResponse(b"", "204 No Content",
                                                   {"Content-Type": "text/plain"})),
                           raise_errors=False)
result.exception

# %% [markdown]
# ## Response, done right
#
# The rules the real `Response` follows, each from the spec:
#
# - headers are a list of `(str, str)` pairs; a name may repeat;
# - a `str` body is sent as UTF-8 and says so: `Content-Type: text/plain; charset=utf-8`;
# - a `bytes` body gets a computed `Content-Length`; an iterable body is streamed, chunk by
#   chunk, with no length (the server frames it, chapter 06);
# - 204 and 304 get no body, no `Content-Length` and no `Content-Type`.
#
# Every header line is checked when it is added, not when it is sent, so the error points
# at the line of your code that added it. `check_header` does four checks, in order:
#
# 1. Names and values are `str` (PEP 3333), not bytes or numbers.
# 2. No *hop-by-hop* field (`Connection`, `Transfer-Encoding`, ...). Those describe one
#    connection, which only the server knows about (PEP 3333 forbids them to apps).
# 3. No `Content-Length` on a 204 (RFC 9110 §8.6, the rule you just read).
# 4. Chapter 02's `format_field`: the name is a token and the value has no CR, LF or other
#    control byte, so it cannot split the response. A value that does not fit in latin-1 is
#    refused here too, with a hint.

# %%
#| export
BODYLESS = frozenset({204, 304})   # RFC 9110 §15.3.5, §15.4.5 (and 1xx, which WSGI cannot send)

def check_header(name: str, value: str, status: int) -> None:
    """ValueError (or TypeError) unless an app may send ``name: value`` with ``status``."""
    if type(name) is not str or type(value) is not str:
        raise TypeError(f"PEP 3333: header names and values are str, not {name!r}: {value!r}")
    if is_hop_by_hop(name):
        raise ValueError(f"{name} is hop-by-hop: the server sets it, never the app (PEP 3333)")
    if name.lower() == "content-length" and status == 204:
        raise ValueError("a 204 response must not carry Content-Length (RFC 9110 §8.6)")
    try:
        format_field(name, value)       # token name; no CR, LF or other control byte
    except UnicodeEncodeError:
        raise ValueError(f"WSGI header values are latin-1; percent-encode {value!r}") from None

# %% [markdown]
# To see many outcomes at once, this chapter uses `attempt`, the same small helper as in
# chapter 02: it calls a function and returns the result, or the exception as one line of
# text, so a whole table of good and bad inputs fits in one output.

# %%
def attempt(function, *args, **kwargs):
    """Call function; show the result, or the exception it raised."""
    try:
        return repr(function(*args, **kwargs))
    except Exception as error:
        return f"{type(error).__name__}: {error}"

# %% [markdown]
# Six headers, one per row. `None` means the check passed (the function returns nothing);
# every other row names the rule it broke:

# %%
barelab.show_transcript([(repr(args), attempt(check_header, *args)) for args in [
    ("X-Note", "fine", 200), ("Location", "/a\r\nSet-Cookie: admin=1", 302),
    ("Connection", "close", 200), ("Content-Length", "0", 204), ("X-Name", "Zoë", 200),
    ("X-Name", "日本", 200)]], columns=("header", "check_header"))

# %% [markdown]
# The second row is the attack from chapter 02: a value with `\r\n` in it would end the
# `Location` line and start a `Set-Cookie` line that the attacker wrote. `Zoë` passes
# because `ë` is a latin-1 character; `日本` does not, and a header that must carry such
# text percent-encodes it or uses the `filename*=UTF-8''...` form of RFC 8187.
#
# Next, the body. A `str` becomes UTF-8 bytes and its `Content-Type` gains a charset; `bytes`
# pass through; anything else iterable is kept as it is, to be streamed later.

# %%
#| export
def _encode_body(body, content_type: str | None):
    """``(body, content_type)`` with a str body encoded as UTF-8 and its charset named."""
    if isinstance(body, str):
        content_type = content_type or "text/plain"
        if content_type.startswith("text/") and "charset=" not in content_type.lower():
            content_type += "; charset=utf-8"
        return body.encode("utf-8"), content_type
    if isinstance(body, (bytes, bytearray, memoryview)):
        return bytes(body), content_type or "application/octet-stream"
    if not isinstance(body, Iterable):
        raise TypeError(f"a body is bytes, str or an iterable of chunks, not {type(body).__name__}")
    return body, content_type or "application/octet-stream"

# %%
_encode_body("Zoë", None), _encode_body(b"\x89PNG", "image/png"), _encode_body("<p>", "text/html")

# %% [markdown]
# `Zoë` became four bytes (`ë` is two in UTF-8) and `text/plain; charset=utf-8`; the PNG
# bytes kept the type you gave; `text/html` gained its charset. A body with no type at all
# would get `application/octet-stream`, which tells a browser "download this, don't show
# it".

# %% [markdown]
# Now the class, in three steps. A `Response` is three attributes: `status` (an int),
# `headers` (a list of pairs, never a dict) and `body`. The first cell holds the header
# methods, since everything else goes through them:
#
# - `add_header` appends a line, and checks it first; a name may repeat.
# - `set_header` replaces every line of that name: for fields like `Location` that must
#   appear once.
# - `header` reads the first value, ignoring case.

# %%
#| export
class Response:
    """One HTTP response, and a WSGI app that sends it: ``response(environ, start_response)``.

    ``body`` is str (sent as UTF-8), bytes, or an iterable of bytes/str chunks (streamed).
    """

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (any case), or None."""
        return next((v for n, v in self.headers if n.lower() == name.lower()), None)

    def add_header(self, name: str, value: str) -> None:
        """Append one header line; a name may repeat (Set-Cookie does)."""
        check_header(name, value, self.status)
        self.headers.append((name, value))

    def set_header(self, name: str, value: str) -> None:
        """Replace every line of header ``name`` with this one."""
        check_header(name, value, self.status)
        self.headers = [(n, v) for n, v in self.headers if n.lower() != name.lower()]
        self.headers.append((name, value))

# %% [markdown]
# The constructor comes second, attached the way `MultiDict` got its methods. Read it top
# to bottom, as the checks happen:
#
# 1. The status is an int from 200 to 599. A WSGI app cannot send a 1xx: those are the
#    server's to send, before the final response.
# 2. Your headers go in one at a time through `add_header`, so each one is checked.
# 3. The body goes through `_encode_body`, and a 204 or 304 with a body is refused.
# 4. Any other response gets a `Content-Type`, unless you gave one.

# %%
#| export
def _response_init(self, body="", status: int = 200, headers=(), *, content_type=None):
    if type(status) is not int or not 200 <= status <= 599:
        raise ValueError(f"status is an int from 200 to 599, not {status!r}")
    self.status, self.headers = status, []
    for name, value in (headers.items() if isinstance(headers, Mapping) else headers):
        self.add_header(name, value)
    self.body, content_type = _encode_body(body, content_type)
    if status in BODYLESS and self.body != b"":
        raise ValueError(f"a {status} response has no body (RFC 9110 §6.4.1)")
    if status not in BODYLESS and self.header("content-type") is None:
        self.add_header("Content-Type", content_type)

Response.__init__ = _response_init

# %% [markdown]
# Build one, then replace a header and add a second line of another:

# %%
page = Response("<h1>Zoë</h1>", headers=[("X-Frame-Options", "SAMEORIGIN")],
                content_type="text/html")
page.set_header("X-Frame-Options", "DENY")
page.add_header("Vary", "Cookie")
page.status, page.headers, page.body

# %% [markdown]
# `set_header` removed the `SAMEORIGIN` line and appended `DENY`; the `Content-Type` came
# from `content_type=` and gained its charset. There is no `Content-Length` yet: it is
# computed when the response is sent, after every change you might still make.
#
# Sending is two steps. First the final header list: a `bytes` body gets its
# `Content-Length` (and a length you set yourself must match it); a 204 or 304 gets none.

# %%
#| export
def _final_headers(self) -> list[tuple[str, str]]:
    headers = list(self.headers)
    if isinstance(self.body, bytes) and self.status not in BODYLESS:
        length, given = str(len(self.body)), self.header("content-length")
        if given is None:
            headers.append(("Content-Length", length))
        elif given != length:
            raise ValueError(f"Content-Length is {given} but the body has {length} bytes")
    return headers

Response._final_headers = _final_headers

# %%
page._final_headers()[-1], attempt(Response(b"abc", headers=[("Content-Length", "5")])._final_headers)

# %% [markdown]
# `<h1>Zoë</h1>` is 13 bytes in UTF-8 (12 characters; `ë` takes two bytes). A wrong
# `Content-Length` that you set yourself is refused: sent as it is, it would make the client
# wait for two bytes that never come.
#
# Then `start_response` gets the status line and those headers, and the body goes back as an
# iterable: one chunk, nothing for a 204 or 304, or a stream. This `__call__` is what makes a
# `Response` a WSGI app.

# %%
#| export
def _call(self, environ, start_response):
    start_response(f"{self.status} {reason_phrase(self.status)}", self._final_headers())
    if isinstance(self.body, bytes):
        return [self.body] if self.status not in BODYLESS else []
    return _Stream(self.body)

Response.__call__ = _call
Response.__repr__ = lambda self: (f"<{type(self).__name__} {self.status} "
                                  f"{reason_phrase(self.status)}>")

# %% [markdown]
# A streamed body needs a small wrapper. It encodes `str` chunks, and it forwards `close()`:
# PEP 3333 has the server call `close()` on the iterable the app returned, and that is how a
# generator's `finally:` block (closing a file, a database cursor) gets to run. A generator
# wrapper would not do: closing a generator that never started skips the `finally:` of the
# generator inside it.

# %%
#| export
class _Stream:
    """The iterable of a streamed Response: str chunks become UTF-8; close() reaches the source."""

    def __init__(self, chunks):
        self._chunks = chunks

    def __iter__(self):
        for chunk in self._chunks:
            yield chunk.encode("utf-8") if isinstance(chunk, str) else bytes(chunk)

    def close(self) -> None:
        if hasattr(self._chunks, "close"):
            self._chunks.close()

# %% [markdown]
# Try the three kinds of body, a `str`, `bytes` and a stream, starting with the first two.
# Each `Response` goes through `validator` first, so any PEP 3333 slip would raise here. In
# each transcript, look at the `start_response()` row for the headers and at the `yield` row
# for the bytes.

# %%
for response in [Response("Zoë"), Response(b"\x00\x01", headers=[("X-Kind", "raw")])]:
    print(barelab.call_wsgi(validator(response)).transcript, "\n")

# %% [markdown]
# `Zoë` is four bytes in UTF-8, so `Content-Length: 4`, and the charset tells the client how
# to read them. The raw bytes kept your `X-Kind` header first and got
# `application/octet-stream`. The last row, `close()`, is the server's side of the deal:
# PEP 3333 has it call `close()` on whatever the app returned, once it is done.
#
# Now a stream: a generator that yields lines, with a `finally:` to show that
# `close()` reaches it. There is no `Content-Length`, since nobody knows the total in advance.

# %%
closed = []

def countdown():
    try:
        yield from (f"{n}...\n" for n in (3, 2, 1))
    finally:
        closed.append("countdown closed")

barelab.call_wsgi(validator(Response(countdown(), content_type="text/plain"))).transcript, closed

# %% [markdown]
# Three `yield` rows, one per chunk, then `close()`, and the list shows the generator's
# `finally:` ran. Had the client hung up after the first chunk, the server would still call
# `close()`, and the cleanup would still run.
#
# Now the two responses the naive class got wrong. Neither should send a body or a
# `Content-Length`; the 304 keeps its `ETag`, the header that lets the client match it with
# its cached copy.

# %%
barelab.show_transcript([(str(r.status), repr(barelab.call_wsgi(validator(r)).headers)) for r in
                         [Response(status=204), Response(status=304, headers={"ETag": '"v7"'})]],
                        columns=("status", "headers sent"))

# %% [markdown]
# Empty header lists for the 204, and only the `ETag` for the 304: no `Content-Type`, no
# `Content-Length`, and `validator` found nothing to complain about. A body where none
# belongs is refused when the response is built, not discovered by a confused client later:

# %%
attempt(Response, "cached page", 304)

# %% [markdown]
# What about `HEAD`? RFC 9110 §9.3.2 says the answer to `HEAD` has the same headers as the
# answer to `GET` (including the `Content-Length` the body would have), and no body. The
# *server* removes the body: it knows the method and it writes the bytes (chapter 06 does it
# in its own server). So a `Response` never looks at the method. An app that answered
# `HEAD` differently from `GET` would break exactly the rule `HEAD` exists for. You will see
# it on the wire at the end of the chapter.

# %% [markdown]
# ## Errors that are responses
#
# Deep inside a handler, the code that finds a malformed JSON body should not have to
# build a response and pass it back up through every caller. It should *raise*. Werkzeug's
# idea, which this chapter borrows: an HTTP error is an exception, and it is also a WSGI app
# that renders itself. (Flask's `abort(404)` raises exactly such a Werkzeug exception.)
#
# `HTTPError` keeps a status (4xx or 5xx only: a 200 is not an error), a `detail` for the
# client, and extra headers. `response()` turns it into a plain `Response`, and `__call__`
# sends that, so an `HTTPError` can go wherever a WSGI app can.

# %%
#| export
class HTTPError(Exception):
    """An error response you raise. It is a WSGI app too: ``error(environ, start_response)``."""

    def __init__(self, status: int, detail: str = "", *, headers=()):
        if type(status) is not int or not 400 <= status <= 599:
            raise ValueError(f"an HTTPError status is 4xx or 5xx, not {status!r}")
        super().__init__(f"{status} {reason_phrase(status)}" + (f": {detail}" if detail else ""))
        self.status, self.detail, self.headers = status, detail, list(headers)

    def response(self) -> Response:
        """The response this error stands for: status line and detail, as plain text."""
        text = f"{self.status} {reason_phrase(self.status)}\n"
        return Response(text + (f"{self.detail}\n" if self.detail else ""), self.status,
                        self.headers)

    def __call__(self, environ, start_response):
        return self.response()(environ, start_response)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.status}, {self.detail!r})"

# %% [markdown]
# The body is `text/plain`, so a `detail` that quotes the client's input cannot turn into
# HTML in a browser. The common statuses get a class each, whose constructor needs only the
# detail. `MethodNotAllowed` also takes the methods that *are* allowed, because a 405 MUST
# list them in an `Allow` header (RFC 9110 §15.5.6).

# %%
#| export
class _FixedStatus(HTTPError):
    status: int

    def __init__(self, detail: str = "", *, headers=()):
        super().__init__(type(self).status, detail, headers=headers)

class BadRequest(_FixedStatus): status = 400            # RFC 9110 §15.5.1
class Forbidden(_FixedStatus): status = 403             # RFC 9110 §15.5.4
class NotFound(_FixedStatus): status = 404              # RFC 9110 §15.5.5
class ContentTooLarge(_FixedStatus): status = 413       # RFC 9110 §15.5.14
class UnsupportedMediaType(_FixedStatus): status = 415  # RFC 9110 §15.5.16

class MethodNotAllowed(HTTPError):
    """405, with the Allow header that RFC 9110 §15.5.6 requires."""

    def __init__(self, allow, detail: str = ""):
        super().__init__(405, detail, headers=[("Allow", ", ".join(allow))])

# %% [markdown]
# `_FixedStatus` is a small trick: each subclass sets `status` as a class attribute, and the
# shared constructor reads it, so `NotFound("no such note")` needs no number.
#
# These are not chapter 02's `http_wire.BadRequest` and friends, although they share names.
# Those refuse *bytes* before any app runs, and the server catches them; these are raised by
# app code and turn into responses. Call one as an app:

# %%
barelab.call_wsgi(validator(MethodNotAllowed(["GET", "HEAD"], "this page is read-only"))).transcript

# %% [markdown]
# The status line, the `Allow` header the RFC asks for, and a two-line body a person can
# read: what went wrong, then why. `validator` checked it like any other app.

# %% [markdown]
# ## Reading a request: path, query, cookies, URL
#
# Now the other direction. Most of what a request carries is text that arrived as bytes and
# sits in the environ as latin-1 "bytes in a str". Two helpers turn it back into text:
#
# - `decode_utf8(data, what)` decodes bytes as UTF-8 and, when they are not, raises a
#   `BadRequest` that names the part of the request (`what`) and the first bad byte.
# - `wsgi_text(value, what)` first undoes the server's latin-1 step (`.encode("latin-1")`
#   gives back the exact bytes), then calls `decode_utf8`.
#
# The `what` argument exists for the person reading the 400: "the path is not UTF-8" is
# something a client developer can act on.

# %%
#| export
def decode_utf8(data: bytes, what: str) -> str:
    """``data`` as UTF-8 text, or a 400 that says which part of the request was not."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise BadRequest(f"the {what} is not UTF-8 (byte {error.start}: "
                         f"{data[error.start:error.start + 1]!r})") from None

def wsgi_text(value: str, what: str) -> str:
    """A WSGI "bytes in str" value (latin-1, PEP 3333) as the UTF-8 text the client sent."""
    try:
        return decode_utf8(value.encode("latin-1"), what)
    except UnicodeEncodeError:
        raise BadRequest(f"the {what} is not a latin-1 'bytes in str' (PEP 3333)") from None

# %%
attempt(wsgi_text, environ["PATH_INFO"], "path"), attempt(wsgi_text, "/caf\xe9", "path")

# %% [markdown]
# The first is the `/cafÃ©` from the start of the chapter, repaired. The second is a client
# that sent `/caf%E9`, latin-1 percent-encoded: not UTF-8, so a 400 rather than a guess.
# The message names the part (`the path`), the position (byte 4) and the byte itself.
# (Silently replacing the bad byte with `�` would make two different URLs look the same to
# your app.)
#
# ### The query string
#
# Query strings and urlencoded form bodies share one format, specified by the WHATWG URL
# Standard (§5, "application/x-www-form-urlencoded"): pairs split on `&`, empty pieces
# skipped, name and value split on the first `=`, `+` means a space, then `%XX` escapes are
# decoded and the bytes read as UTF-8. A piece without `=` is a name with an empty value.
# Only `&` separates pairs. Python's `parse_qs` used to accept `;` too, until a 2021
# security fix (Python 3.9.2, backported to older branches) removed it after it was used
# to poison web caches (CVE-2021-23336): a cache and an app that split the same query
# differently see different parameters.

# %%
#| export
def parse_urlencoded(data: bytes) -> MultiDict:
    """application/x-www-form-urlencoded (URL Standard §5.1) -> MultiDict, blank values kept."""
    pairs = []
    for piece in data.split(b"&"):
        if piece:
            name, _, value = piece.partition(b"=")
            pairs.append((_form_text(name), _form_text(value)))
    return MultiDict(pairs)

def _form_text(raw: bytes) -> str:
    return decode_utf8(unquote_to_bytes(raw.replace(b"+", b" ")), "form or query data")

# %% [markdown]
# It works on bytes, not on `str`. That matters: `urllib.parse.unquote_to_bytes` given a
# `str` first encodes it as UTF-8, and a query string from the environ is latin-1, so a raw
# non-ASCII byte would be encoded twice. The caller turns the environ string back into bytes.
#
# One test string holds every rule at once: a repeated name, a blank value, `+` and `%XX`
# escapes, an empty piece (`&&`), a name with no `=`, and an escaped `+` (`%2B`).

# %%
parse_urlencoded(b"tag=a&tag=b&draft=&q=caf%C3%A9+au+lait&&flag&a%2Bb=1%2B1")

# %% [markdown]
# All there: both tags, the blank `draft`, `+` as a space, `%2B` as a real `+`, the bare
# `flag`, and the empty piece between `&&` skipped.
#
# ### Cookies
#
# The browser sends its cookies in one header, `Cookie: sid=abc123; theme=dark` (RFC 6265
# §4.2.1, §5.4). Parsing it takes three decisions:
#
# - **No quote magic.** A value may be written inside double quotes, and the quotes are part
#   of the value (RFC 6265 §4.1.1, §5.2); no backslash escapes. Python's own
#   `http.cookies.SimpleCookie` strips them and decodes `\012`-style escapes, so it can read
#   a different value from the one that was set.
# - **The first value wins.** Two cookies may share a name, for different paths or domains.
#   §5.4 has the browser send longer paths first, so the first is the most specific one.
#   `getall` still gives every value. (Werkzeug agrees; Django and Starlette keep the last.)
# - **Never a 400.** Cookies come from other apps on your domain too, and a browser sends
#   them back on every request: refusing a bad one would lock the user out until they clear
#   their cookies. Malformed pieces are skipped, and bytes that are not UTF-8 are replaced.

# %%
#| export
def parse_cookie_header(value: str) -> MultiDict:
    """``Cookie: a=1; b=2`` (RFC 6265 §4.2.1) -> MultiDict; ``get`` gives the first value."""
    text = value.encode("latin-1").decode("utf-8", "replace")
    pairs = []
    for piece in text.split(";"):
        name, eq, content = piece.partition("=")
        if eq and name.strip(" \t"):
            pairs.append((name.strip(" \t"), content.strip(" \t")))
    return MultiDict(pairs)

# %% [markdown]
# Compare `parse_cookie_header` with `SimpleCookie` on the same header, which holds a
# repeated `sid` and a quoted value with a backslash escape in it. `simple_cookie` below only
# turns `SimpleCookie`'s result into a plain dict. The third result is `SimpleCookie` again,
# with one malformed piece added at the end:

# %%
from http.cookies import SimpleCookie

def simple_cookie(header):
    return {name: morsel.value for name, morsel in SimpleCookie(header).items()}

clean = 'sid=abc123; theme=dark; sid=old; note="a\\012b"'
parse_cookie_header(clean + "; broken; =x"), simple_cookie(clean), simple_cookie(clean + "; broken")

# %% [markdown]
# Yours kept both `sid` values in order and the quotes in `note`, and skipped the two
# malformed pieces at the end. `SimpleCookie` kept the *last* `sid` and turned `note` into a
# string with a real newline in it, a value the server never set. Given one malformed piece,
# it returned nothing at all: one bad cookie from a sibling app, and every user looks logged
# out. (Newer Python releases have changed `SimpleCookie`'s parsing more than once; what you
# see is the Python this notebook was built with.)
#
# ### The URL the client asked for
#
# PEP 3333 has a section "URL Reconstruction" with code to rebuild the full URL from the
# environ. It calls `quote(environ['PATH_INFO'])`. Copy that literally and look at a path
# with an `é` in it:

# %%
from urllib.parse import quote

quote(environ["PATH_INFO"]), quote(environ["PATH_INFO"].encode("latin-1"))

# %% [markdown]
# `quote` encodes a `str` as UTF-8 first, but this `str` holds *bytes* as latin-1
# characters, so each byte gets encoded again: `%C3%83%C2%A9` is the mojibake `Ã©`. The
# PEP's snippet dates from Python 2, where the path was already bytes. Quoting the bytes
# gives back `%C3%A9`, which is what the client sent. The rest follows the PEP: `Host` if
# present, else server name and port (left out when it is the scheme's default).

# %%
#| export
def request_url(environ: dict) -> str:
    """The URL the client asked for, rebuilt as PEP 3333 "URL Reconstruction" says."""
    scheme = environ["wsgi.url_scheme"]
    url = scheme + "://"
    if environ.get("HTTP_HOST"):
        url += environ["HTTP_HOST"]
    else:
        url += environ["SERVER_NAME"]
        if environ["SERVER_PORT"] != ("443" if scheme == "https" else "80"):
            url += ":" + environ["SERVER_PORT"]
    # quote() the bytes: quoting the latin-1 str would encode each byte a second time.
    url += quote(environ.get("SCRIPT_NAME", "").encode("latin-1"))
    url += quote(environ.get("PATH_INFO", "").encode("latin-1"))
    if environ.get("QUERY_STRING"):
        url += "?" + environ["QUERY_STRING"]
    return url

# %% [markdown]
# Rebuild the URL of the `/café` request twice: once as it came, with a `Host` header, and
# once as if the client had sent no `Host` and the server listened on port 8080.

# %%
request_url(environ), request_url({**environ, "HTTP_HOST": "", "SERVER_PORT": "8080"})

# %% [markdown]
# Both carry `%C3%A9`, the bytes the client sent. Without `Host`, the URL falls back to
# `SERVER_NAME` and adds `:8080`, since that is not port 80. Keep in mind that `Host` is whatever the client typed: never build a password-reset link
# from it without checking it against the hosts you serve.
#
# ### RequestHead
#
# Everything so far comes from the head of the request: the environ's strings, no body.
# `RequestHead` gathers it. Each property is computed on first use and kept
# (`functools.cached_property`), so an app that never looks at cookies never parses them.
#
# The class body uses the long form of decorators: `path = cached_property(f)` is exactly what
# `@cached_property` above a `def path(self)` does, and it lets each property fit on one line.
# Everything else is the helpers you just wrote.

# %%
#| export
class RequestHead:
    """What a request's head says: method, path, query, headers, cookies, URL."""

    def __init__(self, environ: dict):
        self.environ = environ

    method = property(lambda self: self.environ["REQUEST_METHOD"], doc="GET, POST, ...")
    query_string = property(lambda self: self.environ.get("QUERY_STRING", ""))
    path = cached_property(lambda self: wsgi_text(self.environ.get("PATH_INFO", ""), "path"))
    root_path = cached_property(lambda self: wsgi_text(self.environ.get("SCRIPT_NAME", ""),
                                                       "script name"))
    query = cached_property(lambda self: parse_urlencoded(self.query_string.encode("latin-1")))
    headers = cached_property(lambda self: Headers.from_environ(self.environ))
    cookies = cached_property(lambda self: parse_cookie_header(self.environ.get("HTTP_COOKIE", "")))
    url = cached_property(lambda self: request_url(self.environ))

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.method} {self.environ.get('PATH_INFO', '')!r}>"

# %% [markdown]
# Try it on the `/café` request, this time with a `Cookie` header. Nothing is parsed until
# the last line asks for it:

# %%
head = RequestHead(barelab.build_environ(
    "GET", "/caf%C3%A9?tag=a&tag=b&draft=", headers=[("Cookie", "sid=abc123; theme=dark")]))
head.path, head.query, head.cookies.get("sid"), head.url

# %% [markdown]
# Every problem from the start of the chapter is gone: the path reads `/café`, the query
# keeps both tags and the blank `draft`, and the URL is the one the client typed.

# %% [markdown]
# ## The body, read once
#
# The body arrives through `environ["wsgi.input"]`, a stream. Three rules from PEP 3333 and
# from experience decide how to read it:
#
# - Read exactly `CONTENT_LENGTH` bytes. The PEP says an app "should not attempt to read more
#   data than is specified by the CONTENT_LENGTH variable": on some servers a read past it
#   blocks forever, waiting for bytes the client never sends.
# - No `CONTENT_LENGTH` means no body, unless the server sets `wsgi.input_terminated`. That
#   key is not in PEP 3333; it is the extension gunicorn, mod_wsgi and Werkzeug use to say
#   "this stream ends where the body ends, read to the end", which is how a chunked body
#   (no length in advance) reaches an app. barelab's server sets it.
# - A limit. A body over `max_body` gets a 413 before a single byte is read, and a body that
#   ends early (the client went away) gets a 400.
#
# The stream can be read only once, so the body is kept, and kept in the environ: a
# middleware that checks a signature on the body and the app after it then see the same bytes.
# That part comes with `Request`; first, the reading itself.
#
# `read_body` decides *how much* to read. It accepts only digits as a length (`-3`, `1e3`
# or `0x10` would each mean something different to a different parser), and checks the
# limit before reading anything.

# %%
#| export
def read_body(environ: dict, max_body: int = MAX_BODY) -> bytes:
    """Read the request body from wsgi.input as PEP 3333 allows; 400 or 413 when it cannot."""
    raw = environ.get("CONTENT_LENGTH", "").strip()
    stream = environ["wsgi.input"]
    if not raw:
        return _read_to_end(stream, max_body) if environ.get("wsgi.input_terminated") else b""
    if not re.fullmatch(r"[0-9]{1,18}", raw):
        raise BadRequest(f"Content-Length is not a number of bytes: {raw[:20]!r}")
    if int(raw) > max_body:
        raise ContentTooLarge(f"the body is {raw} bytes; the limit is {max_body}")
    return _read_exactly(stream, int(raw))

# %% [markdown]
# Two helpers do the reading, both in pieces of at most 64 KiB. Every `read` gets a size:
# `wsgiref.validate` insists on it, since `read()` with no argument on a plain socket
# stream would wait for the client to close the connection.
#
# - `_read_exactly` reads the promised number of bytes, and an empty read before the end
#   means the client went away: a 400, not a short body passed off as whole.
# - `_read_to_end` reads until the stream says it is done, and stops as soon as the limit
#   is passed, so a client with no `Content-Length` cannot send you a gigabyte.

# %%
#| export
def _read_exactly(stream, size: int) -> bytes:
    chunks, missing = [], size
    while missing:
        chunk = stream.read(min(missing, 65536))
        if not chunk:
            raise BadRequest(f"the body ended after {size - missing} of {size} bytes")
        chunks.append(chunk)
        missing -= len(chunk)
    return b"".join(chunks)

# %%
#| export
def _read_to_end(stream, limit: int) -> bytes:
    chunks, size = [], 0
    while chunk := stream.read(65536):
        size += len(chunk)
        if size > limit:
            raise ContentTooLarge(f"the body is over the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)

# %% [markdown]
# Try every case on hand-made environs: a `wsgi.input` made from bytes with `io.BytesIO`,
# and only the keys `read_body` looks at. The first argument of `body_of` is what the client
# sent; the keys after it are what the server put in the environ.

# %%
import io

def body_of(body, max_body=MAX_BODY, **keys):
    return attempt(read_body, {"wsgi.input": io.BytesIO(body), **keys}, max_body)

barelab.show_transcript([
    ("length 5", body_of(b"hello, and more", CONTENT_LENGTH="5")),
    ("no length", body_of(b"hello")),
    ("no length, input_terminated", body_of(b"hello", **{"wsgi.input_terminated": True})),
    ("length 99, 5 sent", body_of(b"hello", CONTENT_LENGTH="99")),
    ("length -3", body_of(b"hello", CONTENT_LENGTH="-3")),
    ("over the limit", body_of(b"hello", 4, CONTENT_LENGTH="5")),
], columns=("case", "read_body"))

# %% [markdown]
# The first row read five bytes and left the rest alone, as the length said. Without a
# length, nothing is read, unless the server promised the stream ends with the body. A
# client that promised 99 bytes and sent 5 gets a 400 that says so, and the 413 came
# before a single byte was read.
#
# ## Forms
#
# An HTML form sends its fields in one of two formats, chosen by its `enctype`:
#
# - `application/x-www-form-urlencoded` (the default): the body is a query string.
#   `parse_urlencoded` already reads it.
# - `multipart/form-data` (needed to upload files): each field is a *part* with its own
#   small headers, and parts are separated by a *boundary* line that the client chose and
#   named in the `Content-Type`.
#
# For years Python code parsed multipart bodies with the standard library's `cgi` module.
# It was deprecated in Python 3.11 and removed in 3.13 (PEP 594), so you write the parser.
# It starts with the header that carries the boundary: `Content-Type` has *parameters*
# after its media type (RFC 9110 §5.6.6), and `Content-Disposition`, which names each
# field, has the same shape:
#
# ```
# Content-Type: multipart/form-data; boundary="----formdata 7d"
# Content-Disposition: form-data; name="upload"; filename="notes.txt"
# ```
#
# A parameter value is a *token* (the characters allowed in a header name) or a quoted
# string. Inside quotes RFC 9110 §5.6.4 allows backslash escapes, but browsers do not write
# them: they send `%22` for a `"` in a file name, and a backslash as itself. So only `\"`
# and `\\` are unescaped, and a Windows path like `C:\notes.txt` survives. A parameter
# that appears twice is refused: two parsers choosing different copies of a boundary is how
# upload filters get bypassed.
#
# Start with the regular expression for one `; name=value` step: optional spaces, the `;`,
# then an optional `name=` followed by either a quoted string (`"..."`, where `\\.` lets one
# escaped character through) or a token. Its two groups are the name and the raw value.

# %%
#| export
_TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_PARAMETER = re.compile(rf'[ \t]*;[ \t]*(?:({_TOKEN})=("(?:[^"\\]|\\.)*"|{_TOKEN}))?')

# %%
(_PARAMETER.match('; boundary="----formdata 7d"').groups(),
 _PARAMETER.match(";charset=UTF-8").groups(), _PARAMETER.match("; =x").group(0))

# %% [markdown]
# The quoted value comes back with its quotes; the parser strips them and undoes `\"` and
# `\\`. The last one, a `=` with no name, matched only the `; ` and stopped in front of
# `=x`. That is where a strict parser differs from a forgiving one: `parse_options` applies
# the pattern again from where the last match ended, finds no `;` at `=x`, and answers 400,
# instead of skipping what it does not understand.

# %%
#| export
def parse_options(value: str) -> tuple[str, dict[str, str]]:
    """``'text/html; charset="utf-8"'`` -> ``('text/html', {'charset': 'utf-8'})``; 400 if bad."""
    value = value.strip(" \t")
    end = value.find(";") if ";" in value else len(value)
    main, params, pos = value[:end].strip(" \t").lower(), {}, end
    while pos < len(value):
        match = _PARAMETER.match(value, pos)
        if not match:
            raise BadRequest(f"malformed parameters in a header: {value[pos:pos + 40]!r}")
        name, raw = match.groups()
        if name and name.lower() in params:
            raise BadRequest(f"parameter {name!r} appears twice: {value[:80]!r}")
        if name:
            params[name.lower()] = re.sub(r'\\(["\\])', r"\1", raw[1:-1]) if raw[:1] == '"' else raw
        pos = match.end()
    return main, params

# %% [markdown]
# Five header values: the boundary with a space in it, a charset written without spaces, a
# Windows file name with backslashes, a parameter with no value, and a repeated one:

# %%
barelab.show_transcript([(v, attempt(parse_options, v)) for v in [
    'multipart/form-data; boundary="----formdata 7d"', "text/plain;charset=UTF-8",
    'form-data; name="upload"; filename="C:\\notes\\a.txt"', "text/plain; charset",
    "a/b; boundary=x; BOUNDARY=y"]], columns=("header value", "parse_options"))

# %% [markdown]
# The first three came out right: `----formdata 7d` with its space, the charset, and
# `C:\notes\a.txt` with its backslashes intact. The last two are 400s. `BOUNDARY=y` is a
# repeat because parameter names ignore case, just as header names do.
#
# ### The shape of a multipart body
#
# RFC 7578 defines `multipart/form-data` on top of RFC 2046 §5.1.1. With the boundary
# `xyzzy`, a form with one text field and one file looks like this, every line ending in
# CRLF:

# %%
form_body = (b"--xyzzy\r\n"
             b'Content-Disposition: form-data; name="title"\r\n'
             b"\r\n"
             b"Caf\xc3\xa9 notes\r\n"
             b"--xyzzy\r\n"
             b'Content-Disposition: form-data; name="upload"; filename="notes.txt"\r\n'
             b"Content-Type: text/plain\r\n"
             b"\r\n"
             b"line one\r\nline two\r\n"
             b"\r\n--xyzzy--\r\n")
barelab.show_bytes(form_body)

# %% [markdown]
# Read it as RFC 2046 does. The *delimiter* is CRLF, `--`, then the boundary. It belongs to
# the delimiter, not to the part before it. So the file's content is
# `line one\r\nline two\r\n`, ending in its own CRLF, and the CRLF just before `--xyzzy--` is
# the delimiter's. Get that wrong and every uploaded file gains or loses two bytes.
#
# ```mermaid
# flowchart TB
#     A["--xyzzy CRLF"] --> B["part headers CRLF ... CRLF<br/>empty line CRLF"]
#     B --> C["part content (any bytes)"]
#     C --> D["CRLF --xyzzy CRLF: next part"]
#     D --> B
#     C --> E["CRLF --xyzzy-- : the end; anything after is ignored"]
# ```
#
# A boundary line may carry spaces or tabs after the boundary ("transport padding"), and
# nothing else; the text before the first boundary line (a "preamble") and after the last
# one (the "epilogue") is ignored. A boundary is 1 to 70 characters from a small set (§5.1.1).
#
# The parser comes in three layers: cut the body into parts, read one part's headers, turn
# a part into a field or a file. The first layer finds delimiters with `bytes.find`, and uses
# one trick: it puts a CRLF in front of the body, so the first boundary line looks like every
# later delimiter and needs no special case. After each delimiter comes either `--` (the
# end) or optional padding and a CRLF (another part). Anything else means the boundary
# string appeared inside a part, which RFC 2046 forbids, or the body is not what it claims
# to be.

# %%
#| export
def _split_parts(body: bytes, boundary: str):
    """Yield the bytes of each part between the delimiters (RFC 2046 §5.1.1); 400 if malformed."""
    delimiter = b"\r\n--" + boundary.encode("ascii")
    data = b"\r\n" + body                  # now the first boundary line is a delimiter too
    pos = data.find(delimiter)
    if pos < 0:
        raise BadRequest(f"the body has no --{boundary} line")
    while not data.startswith(b"--", pos + len(delimiter)):      # "--" ends the body
        pos += len(delimiter)
        line_end = data.find(b"\r\n", pos)
        if line_end < 0 or data[pos:line_end].strip(b" \t"):
            raise BadRequest(f"a --{boundary} line must end right after the boundary")
        end = data.find(delimiter, line_end)
        if end < 0:
            raise BadRequest(f"the body ends inside a part: no closing --{boundary}--")
        yield data[line_end + 2:end]
        pos = end

# %% [markdown]
# It is a generator, so it hands over one part at a time. Run it on the body above and look
# at where each part ends:

# %%
list(_split_parts(form_body, "xyzzy"))

# %% [markdown]
# Two parts, each still holding its own header lines. The file's content ends in
# `line two\r\n`: one CRLF, its own, while the CRLF that came before `--xyzzy--` went to the
# delimiter. A body that ends before `--xyzzy--` raises instead of yielding a last part: it
# was cut off in transit, and accepting it would hand the app a truncated file as if it
# were whole.
#
# A part becomes a field (`str`, UTF-8) or, when its `Content-Disposition` has a `filename`,
# an `UploadedFile`. The file stays in memory: the body is already limited by `max_body`.
# It is a frozen dataclass, and its `repr` leaves out the data, which may be megabytes.

# %%
#| export
@dataclass(frozen=True)
class UploadedFile:
    """A file from a multipart/form-data body, in memory. Never trust ``filename`` as a path."""
    filename: str
    content_type: str
    data: bytes = field(repr=False)
    headers: Headers = field(repr=False, default_factory=Headers)

    @property
    def size(self) -> int:
        return len(self.data)

# %% [markdown]
# Each part starts with header lines of its own, in the same `Name: value` shape as HTTP
# headers. `_part_field` reads one, and refuses a line with no colon or a name that is not a
# token:

# %%
#| export
def _part_field(line: bytes) -> tuple[str, str]:
    name, colon, value = line.partition(b":")
    if not colon or not re.fullmatch(_TOKEN.encode(), name):
        raise BadRequest(f"malformed header line in a part: {line[:40]!r}")
    return name.decode("ascii"), decode_utf8(value.strip(b" \t"), "part header")

# %%
_part_field(b"Content-Type: text/plain"), attempt(_part_field, b"Content Type text/plain")

# %% [markdown]
# Parsing one part: split its headers from its content at the first empty line, parse the
# header lines, then read `name` and `filename` from `Content-Disposition` with
# `parse_options`. RFC 7578 §4.2 requires `form-data` and a `name` in every part; a part
# without them is a 400. A part's `Content-Type` defaults to `text/plain` for fields
# (§4.4); browsers send one for every file, and a file without one is taken as
# `application/octet-stream`.

# %%
#| export
def _parse_part(part: bytes):
    if part.startswith(b"\r\n"):                   # a part with no header lines at all
        head, content = b"", part[2:]
    else:
        head, sep, content = part.partition(b"\r\n\r\n")
        if not sep:
            raise BadRequest("a part has no empty line between its headers and its content")
    headers = Headers([_part_field(line) for line in head.split(b"\r\n")] if head else [])
    kind, params = parse_options(headers.get("content-disposition", ""))
    if kind != "form-data" or "name" not in params:
        raise BadRequest('each part needs "Content-Disposition: form-data; name=..." '
                         "(RFC 7578 §4.2)")
    if "filename" in params:
        return params["name"], UploadedFile(params["filename"], headers.get(
            "content-type", "application/octet-stream"), content, headers)
    return params["name"], decode_utf8(content, f"field {params['name']!r}")

# %%
[_parse_part(part) for part in _split_parts(form_body, "xyzzy")]

# %% [markdown]
# The title came back as text, with `é` decoded from UTF-8, and the upload as an
# `UploadedFile` named `notes.txt`.
#
# The last layer checks the boundary, runs the two others, and sorts the results into
# fields and files. `max_parts` caps the number of parts: each costs a little parsing and
# memory, and a form with a million empty parts fits in a few megabytes.

# %%
#| export
BOUNDARY = re.compile(r"[0-9A-Za-z'()+_,\-./:=? ]{0,69}[0-9A-Za-z'()+_,\-./:=?]")  # RFC 2046

def parse_multipart(body: bytes, boundary: str | None, *, max_parts: int = 1000):
    """multipart/form-data (RFC 7578, RFC 2046 §5.1.1) -> ``(fields, files)`` MultiDicts."""
    if not boundary or not BOUNDARY.fullmatch(boundary):
        raise BadRequest(f"multipart/form-data needs a valid boundary (RFC 2046 §5.1.1), "
                         f"not {boundary!r}")
    fields, files = [], []
    for number, part in enumerate(_split_parts(body, boundary)):
        if number == max_parts:
            raise ContentTooLarge(f"more than {max_parts} parts in one form")
        name, value = _parse_part(part)
        (files if isinstance(value, UploadedFile) else fields).append((name, value))
    return MultiDict(fields), MultiDict(files)

# %%
fields, files = parse_multipart(form_body, "xyzzy")
fields, files, files["upload"].data

# %% [markdown]
# Two multi-dicts, and the file's bytes with its two lines and its final CRLF, nothing more.
#
# Now the broken bodies. Each one is the good body with one thing wrong:

# %%
def parts_of(body, boundary="xyzzy"):
    return attempt(lambda: parse_multipart(body, boundary)[0].multi_items())

barelab.show_transcript([
    ("no boundary given", parts_of(form_body, None)),
    ("boundary of 71 characters", parts_of(form_body, "x" * 71)),
    ("cut off before the end", parts_of(form_body[:-12])),
    ("boundary inside the content", parts_of(form_body.replace(b"line two", b"\r\n--xyzzyX"))),
    ("LF instead of CRLF", parts_of(form_body.replace(b"\r\n", b"\n"))),
    ("no name", parts_of(form_body.replace(b'name="title"', b'id="title"'))),
    ("field not UTF-8", parts_of(form_body.replace(b"Caf\xc3\xa9", b"Caf\xe9"))),
    ("preamble and epilogue", parts_of(b"ignore me\r\n" + form_body + b"and me")),
], columns=("body", "parse_multipart"))

# %% [markdown]
# Every malformed body is a 400 that says what was wrong, and the last row shows the parts
# the RFC says to ignore being ignored. Bare LF line endings are refused: RFC 2046 requires
# CRLF, and every browser and HTTP library sends it. The "boundary inside the content" row
# is the attack a lenient parser invites: whoever controls a file's content could end the
# file early and add a field of their choosing.

# %% [markdown]
# ## JSON
#
# A JSON body has two ways to go wrong, and a 500 is the right answer to neither.
#
# - It is not valid JSON: a 400 that says where, so the client's developer can fix it.
#   RFC 8259 also requires UTF-8 (§8.1) and has no `NaN` or `Infinity` (§6), which Python's
#   `json.loads` accepts unless told otherwise.
# - It is not declared as JSON. This chapter chooses **415 Unsupported Media Type** unless
#   `Content-Type` is `application/json` or `application/<something>+json` (RFC 6839 §3.1),
#   as Flask does. It is also a security measure: an HTML form on another site, or a
#   cross-site `fetch` without a CORS preflight, can send a JSON-shaped body only as
#   `text/plain`, so an endpoint that accepts any content type can be driven by another
#   site with your user's cookies.
#
# `parse_json` handles the first kind; `Request.json`, later, handles the second. Three
# things can go wrong inside `json.loads` besides a syntax error, and each gets caught: bytes
# that are not UTF-8, a `NaN` (`parse_constant` is called for `NaN`, `Infinity` and
# `-Infinity`, and here it refuses them), and nesting so deep that the parser runs out of
# stack.

# %%
#| export
def parse_json(body: bytes):
    """The body as JSON (RFC 8259): UTF-8, no NaN or Infinity; anything else is a 400."""
    if not body.strip():
        raise BadRequest("the body is empty; a JSON document was expected")
    try:
        return json.loads(decode_utf8(body, "JSON body (RFC 8259 §8.1)"),
                          parse_constant=_reject_constant)
    except json.JSONDecodeError as error:
        raise BadRequest(f"invalid JSON at line {error.lineno} column {error.colno}: "
                         f"{error.msg}") from None
    except (ValueError, RecursionError) as error:
        raise BadRequest(f"invalid JSON: {error}") from None

def _reject_constant(name: str):
    raise ValueError(f"{name} is not a JSON value (RFC 8259 §6)")

# %% [markdown]
# Six bodies, from valid to hostile:

# %%
barelab.show_transcript([(label, attempt(parse_json, body)) for label, body in [
    ("valid", b'{"name": "Zo\xc3\xab", "tags": [1, 2]}'), ("trailing comma", b'{"name": "Zoe",}'),
    ("empty", b""), ("NaN", b'{"x": NaN}'), ("latin-1, not UTF-8", b'"Zo\xeb"'),
    ("100 000 open brackets", b"[" * 100_000)]], columns=("body", "parse_json"))

# %% [markdown]
# The trailing comma is the mistake people make by hand, and the message says where:
# line 1, column 16, the `}` after the comma. In the last row, Python's parser recursed once
# per bracket and hit the recursion limit. Uncaught, that is a 500 and a traceback in your
# logs for a 100 KB request; caught and turned into a 400, it costs the server nothing.

# %% [markdown]
# ## Request
#
# `Request` is `RequestHead` plus everything that needs the body. The body is read once and
# stored in the environ under `barelab.body` (a key with a dot: PEP 3333 leaves those to
# extensions). A refusal is stored too, so asking again gives the same 400 instead of reading
# a half-consumed stream.
#
# As with `RequestHead`, the pieces are functions first, and the class only names them.
# Each takes the request as its one argument, so each can become a property.

# %%
#| export
def _request_body(request) -> bytes:
    environ = request.environ
    if "barelab.body" not in environ:
        try:
            environ["barelab.body"] = read_body(environ, request.max_body)
        except HTTPError as error:
            environ["barelab.body"] = error
    if isinstance(environ["barelab.body"], HTTPError):
        raise environ["barelab.body"]
    return environ["barelab.body"]

# %% [markdown]
# Forms and JSON sit on top of the body. `_form_and_files` picks the parser from the
# `Content-Type`, and passes the multipart boundary along. A body that is not a form gives
# an empty `form`, as in Flask: a GET request has no form fields, which is not an error.
# `_request_json`, on the other hand, insists on its content type, as decided above, before
# it looks at a single byte of the body.

# %%
#| export
def _form_and_files(request) -> tuple[MultiDict, MultiDict]:
    kind, params = parse_options(request.environ.get("CONTENT_TYPE", ""))
    if kind == "application/x-www-form-urlencoded":
        return parse_urlencoded(request.body), MultiDict()
    if kind == "multipart/form-data":
        return parse_multipart(request.body, params.get("boundary"), max_parts=request.max_parts)
    return MultiDict(), MultiDict()

def _request_json(request):
    kind = request.content_type
    if kind != "application/json" and not (kind.startswith("application/")
                                           and kind.endswith("+json")):
        raise UnsupportedMediaType(f"send Content-Type: application/json, not {kind or 'none'}")
    return parse_json(request.body)

# %% [markdown]
# The class itself only names these, the way `RequestHead` did. Two limits come in through
# the constructor, `max_body` and `max_parts`, so one route can accept large uploads while
# the rest keep the default. Note which properties are cached: `body` is a plain
# `property`, because its cache lives in the environ, where other `Request` objects can see
# it; `form` and `files` share one cached parse.

# %%
#| export
class Request(RequestHead):
    """A view of one WSGI request. Parsing happens on first use, at most once; what cannot
    be parsed raises an HTTPError (400, 413 or 415)."""

    def __init__(self, environ: dict, *, max_body: int = MAX_BODY, max_parts: int = 1000):
        super().__init__(environ)
        self.max_body, self.max_parts = max_body, max_parts

    content_type = property(lambda self: parse_options(self.environ.get("CONTENT_TYPE", ""))[0],
                            doc="The body's media type, lower-cased, no parameters; '' if none.")
    body = property(_request_body, doc="The whole body (see read_body), read once.")
    _form_data = cached_property(_form_and_files)
    form = property(lambda self: self._form_data[0], doc="Form fields: MultiDict of str.")
    files = property(lambda self: self._form_data[1], doc="Uploads: MultiDict of UploadedFile.")
    json = cached_property(_request_json)

# %% [markdown]
# Here is a urlencoded form, and the body read once by two `Request` objects over the same
# environ. Think of `first` as a middleware's request and `second` as the app's:

# %%
env = barelab.build_environ("POST", "/notes", body=b"title=Caf%C3%A9&tag=a&tag=b",
                            headers=[("Content-Type", "application/x-www-form-urlencoded")])
first, second = Request(env), Request(env)
first.form, second.form.getall("tag"), second.body

# %% [markdown]
# `second` found the body in `environ["barelab.body"]`, where `first` left it. Had it read
# `wsgi.input` again, it would have found nothing there, and the app would have seen an
# empty form with no error at all.

# %% [markdown]
# And the multipart body from before, with its boundary in the `Content-Type`. The
# request's `form` gets the text fields and `files` gets the uploads:

# %%
upload = Request(barelab.build_environ(
    "POST", "/upload", body=form_body,
    headers=[("Content-Type", 'multipart/form-data; boundary="xyzzy"')]))
upload.form["title"], upload.files["upload"], upload.files["upload"].size

# %% [markdown]
# Finally JSON, right and wrong, through `request.json`. The first three content types are
# all JSON (a `charset` parameter is harmless, and `+json` types count); the last two are
# the two kinds of failure. Each error is an `HTTPError`, ready to be sent:

# %%
def json_of(body, content_type="application/json"):
    request = Request(barelab.build_environ("POST", "/", body=body,
                                            headers=[("Content-Type", content_type)]))
    return attempt(lambda: request.json)

barelab.show_transcript([
    ("application/json", json_of(b'{"a": [1, 2]}')),
    ("application/json; charset=utf-8", json_of(b'{"a": 1}', "application/json; charset=utf-8")),
    ("application/merge-patch+json", json_of(b'{"a": null}', "application/merge-patch+json")),
    ("text/plain", json_of(b'{"a": 1}', "text/plain")),
    ("application/json, bad body", json_of(b'{"a": 1')),
], columns=("Content-Type", "request.json"))

# %% [markdown]
# ## Cookies out
#
# A server sets a cookie with one `Set-Cookie` line per cookie (RFC 6265 §4.1):
# `name=value`, then attributes separated by `; `. What the name and value may contain is
# narrow (§4.1.1):
#
# - the name is a token, the same characters as a header name;
# - the value is printable ASCII except space, `"`, `,`, `;` and `\`, and it may be wrapped
#   in one pair of double quotes, which do **not** make those characters legal. A value
#   with a space or a `;` must be encoded first (percent-encoding, base64), by you, on
#   purpose.
#
# So `set_cookie` refuses such values instead of quoting them the way `SimpleCookie` does.
# The rule fits in a regular expression: `_COOKIE_OCTETS` lists the allowed bytes as
# ranges, skipping `"` (`\x22`), `,` (`\x2c`), `;` (`\x3b`) and `\` (`\x5c`).

# %%
#| export
_COOKIE_OCTETS = r"[\x21\x23-\x2b\x2d-\x3a\x3c-\x5b\x5d-\x7e]*"    # RFC 6265 §4.1.1
COOKIE_VALUE = re.compile(rf'{_COOKIE_OCTETS}|"{_COOKIE_OCTETS}"')
ATTRIBUTE_VALUE = re.compile(r"[\x20-\x3a\x3c-\x7e]*")          # any CHAR but CTLs or ";"

def check_cookie(name: str, value: str) -> None:
    """ValueError unless ``name=value`` is a cookie-pair of RFC 6265 §4.1.1."""
    if not re.fullmatch(_TOKEN, name):
        raise ValueError(f"a cookie name is a token (RFC 6265 §4.1.1), not {name!r}")
    if not COOKIE_VALUE.fullmatch(value):
        raise ValueError(f"a cookie value has no space, '\"', ',', ';', '\\' or non-ASCII, "
                         f"quoted or not (RFC 6265 §4.1.1); encode it first: {value!r}")

# %% [markdown]
# Seven cookies; `None` means the pair is fine:

# %%
barelab.show_transcript([(f"{n}={v}", attempt(check_cookie, n, v)) for n, v in [
    ("sid", "abc123"), ("sid", '"abc123"'), ("note", "two words"), ("note", '"two words"'),
    ("list", "a,b"), ("my cookie", "x"), ("name", "Zoë")]], columns=("cookie", "check_cookie"))

# %% [markdown]
# Quotes are allowed around a value, but they change nothing: `"two words"` is as illegal as
# `two words`. `Zoë` fails too, since a cookie value is ASCII only; a value that holds text
# like that is percent-encoded or base64-encoded by the app before it is set.
#
# The attributes have rules of their own, and browsers drop a cookie that breaks them, with no
# error anywhere but the browser's developer console:
#
# - `SameSite` is `Strict`, `Lax` or `None`. `None` lets the cookie ride along on cross-site
#   requests, and since the 2020 revision of draft-ietf-httpbis-rfc6265bis (the successor to
#   RFC 6265, still a draft), its storage model ignores a `SameSite=None` cookie that is not
#   also `Secure`. Chrome has enforced it since version 80, in 2020. This `set_cookie`
#   defaults to `SameSite=Lax`: Chrome assumes `Lax` when the attribute is missing, but
#   Firefox and Safari do not, so writing it out gives the same behaviour everywhere.
# - Names starting with `__Secure-` or `__Host-` are promises (rfc6265bis §4.1.3): both
#   require `Secure`, and `__Host-` also requires `Path=/` and no `Domain`.
# - `Path` and `Domain` may not contain `;` or control characters.

# %%
#| export
def _check_prefix(name: str, secure: bool, path, domain) -> None:
    if name.startswith(("__Secure-", "__Host-")) and not secure:
        raise ValueError(f"browsers drop a {name[:name.index('-', 2) + 1]} cookie without "
                         "Secure (rfc6265bis §4.1.3)")
    if name.startswith("__Host-") and (path != "/" or domain is not None):
        raise ValueError("a __Host- cookie needs Path=/ and no Domain (rfc6265bis §4.1.3.2)")

# %% [markdown]
# The other attributes are checked and written in the order a reader expects: `Path`,
# `Domain`, `Secure`, `SameSite`. The function returns the pieces; `set_cookie` below joins
# them with `; `.

# %%
#| export
SAMESITE = {"strict": "Strict", "lax": "Lax", "none": "None"}

def _cookie_attributes(name, secure, path, domain, samesite) -> list[str]:
    _check_prefix(name, secure, path, domain)
    parts = []
    for attribute, value in (("Path", path), ("Domain", domain)):
        if value is not None and not ATTRIBUTE_VALUE.fullmatch(value):
            raise ValueError(f"{attribute} holds ';' or a control byte: {value!r}")
        parts += [f"{attribute}={value}"] if value is not None else []
    parts += ["Secure"] * secure
    if samesite is not None and samesite.lower() not in SAMESITE:
        raise ValueError(f"SameSite is Strict, Lax or None, not {samesite!r}")
    if samesite is not None and samesite.lower() == "none" and not secure:
        raise ValueError("browsers drop a SameSite=None cookie without Secure (rfc6265bis)")
    return parts + ([f"SameSite={SAMESITE[samesite.lower()]}"] if samesite else [])

# %% [markdown]
# A cookie lives until the browser closes, unless it says otherwise: `Max-Age` in seconds, or
# `Expires` as a date. The date has one format, the IMF-fixdate of RFC 9110 §5.6.7
# (`Sun, 06 Nov 1994 08:49:37 GMT`), always in GMT, which `email.utils.format_datetime`
# writes. A datetime without a time zone is refused: nobody can tell which hour it means.

# %%
#| export
def http_date(when) -> str:
    """An IMF-fixdate (RFC 9110 §5.6.7) from an aware datetime or a Unix timestamp."""
    if isinstance(when, (int, float)):
        when = datetime.fromtimestamp(when, timezone.utc)
    if when.tzinfo is None:
        raise ValueError("give an aware datetime (with tzinfo) or a Unix timestamp")
    return format_datetime(when.astimezone(timezone.utc), usegmt=True)

# %%
http_date(0), http_date(datetime(2030, 1, 2, 3, 4, 5, tzinfo=timezone.utc))

# %% [markdown]
# The first is the Unix epoch, the second the date you gave. (The notebook's output checker
# masks every HTTP date, so stored outputs do not depend on the clock; you see the real ones
# when you run the cell.)
#
# Now `set_cookie` itself. It builds the line from left to right: the checked `name=value`,
# then the lifetime (`Max-Age`, `Expires`), then the attributes from `_cookie_attributes`,
# then `HttpOnly`. The line goes in with `add_header`, never `set_header`, since each cookie
# is a line of its own.

# %%
#| export
def set_cookie(self, name: str, value: str = "", *, max_age: int | timedelta | None = None,
               expires=None, path: str | None = "/", domain: str | None = None,
               secure: bool = False, httponly: bool = False, samesite: str | None = "Lax"):
    """Add one Set-Cookie line (RFC 6265 §4.1), refusing what a browser would drop."""
    check_cookie(name, value)
    parts = [f"{name}={value}"]
    if max_age is not None:
        seconds = max_age.total_seconds() if isinstance(max_age, timedelta) else max_age
        parts.append(f"Max-Age={int(seconds)}")
    if expires is not None:
        parts.append(f"Expires={http_date(expires)}")
    parts += _cookie_attributes(name, secure, path, domain, samesite)
    parts += ["HttpOnly"] * httponly
    self.add_header("Set-Cookie", "; ".join(parts))

Response.set_cookie = set_cookie

# %% [markdown]
# Log a user in properly this time: a session cookie that JavaScript cannot read and that
# never travels over plain HTTP, and a theme that lasts thirty days.

# %%
welcome = Response("welcome")
welcome.set_cookie("sid", "abc123", httponly=True, secure=True)
welcome.set_cookie("theme", "dark", max_age=timedelta(days=30))
barelab.show_headers(welcome.headers)

# %% [markdown]
# Two separate `Set-Cookie` lines, which the naive class could not send. `Max-Age=2592000`
# is thirty days in seconds. `HttpOnly` hides `sid` from JavaScript (a script injected into
# your page cannot read it); `Secure` keeps it off plain HTTP.
#
# There is no "delete" in the protocol. To make a browser forget a cookie, you set it again
# with an empty value that has already expired: `Max-Age=0` for current browsers, and an
# `Expires` in 1970 for old ones. The browser must recognise it as the same cookie, so the
# name, `Path` and `Domain` must be those it was set with.

# %%
#| export
def delete_cookie(self, name: str, *, path: str | None = "/", domain: str | None = None,
                  secure: bool = False, httponly: bool = False, samesite: str | None = "Lax"):
    """Ask the browser to forget a cookie; path and domain must be those it was set with."""
    self.set_cookie(name, "", max_age=0, expires=0, path=path, domain=domain, secure=secure,
                    httponly=httponly, samesite=samesite)

Response.delete_cookie = delete_cookie

# %%
welcome.delete_cookie("old_session")
welcome.headers[-1]

# %% [markdown]
# A third line, the one that removes `old_session`, with both kinds of expiry.
#
# Last, the cookies a browser would drop. Each is refused here, with a reason, instead of
# vanishing silently in the browser:

# %%
barelab.show_transcript([(call, attempt(eval, call)) for call in [
    'welcome.set_cookie("embed", "1", samesite="None")',
    'welcome.set_cookie("__Host-sid", "1", secure=True, path="/app")',
    'welcome.set_cookie("sid", "a b")',
    'welcome.set_cookie("sid", "1", path="/; Domain=evil.example")']], columns=("call", "result"))

# %% [markdown]
# The last row is an injection one level down: a `Path` taken from user input that carries
# its own `; Domain=...` would add an attribute of the attacker's choosing to your cookie.
# `ATTRIBUTE_VALUE` has no `;` in it, so the attempt fails.

# %% [markdown]
# ## JSON responses and redirects
#
# `JSONResponse` writes its data with `ensure_ascii=False`, so `Zoë` travels as UTF-8 bytes
# instead of `\u00eb`. RFC 8259 §8.1 requires UTF-8, and §11 defines no `charset` parameter
# for `application/json`, so the `Content-Type` has none. `allow_nan=False` refuses `NaN`,
# which Python would otherwise write and no other JSON parser reads.

# %%
#| export
class JSONResponse(Response):
    """A JSON body in UTF-8 (RFC 8259 §8.1) with ``Content-Type: application/json``."""

    def __init__(self, data, status: int = 200, headers=()):
        text = json.dumps(data, ensure_ascii=False, allow_nan=False)
        super().__init__(text.encode("utf-8"), status, headers, content_type="application/json")

# %% [markdown]
# Send a `201 Created` with a name that is not ASCII, then try to build one with a `NaN`:

# %%
call = barelab.call_wsgi(validator(JSONResponse({"name": "Zoë", "tags": ["a"]}, 201)))
call.status, call.headers, call.body, attempt(JSONResponse, {"x": float("nan")})

# %% [markdown]
# `ë` is the two bytes `\xc3\xab` in the body, and `Content-Length: 31` counts bytes, not
# characters. The `NaN` never left the server: better a `ValueError` in your code than a
# body that the client's parser rejects.

# %% [markdown]
# A redirect is a 3xx status and a `Location` header. The codes differ in two ways: whether
# the move is permanent (301, 308) or not (302, 303, 307), and whether the client may turn a
# POST into a GET (301, 302 and, on purpose, 303) or must repeat the same method and body
# (307, 308). RFC 9110 §15.4 has the details; 302 is the default here, as in most frameworks,
# and 303 is the one to use after handling a form (the "post/redirect/get" pattern).
#
# The target often comes from the request (`?next=/account`), which makes it dangerous. Here
# is the attack from chapter 02 again, this time through a redirect helper that trusts its
# input and a server that writes headers as they come. Put the target in the `Location`
# line by hand and look at the bytes:

# %%
next_url = "/home\r\nSet-Cookie: admin=1"
barelab.show_bytes(b"HTTP/1.1 302 Found\r\nLocation: " + next_url.encode() + b"\r\n\r\n")

# %% [markdown]
# A second header, chosen by whoever wrote the link: the browser stores `admin=1` as if your
# site had set it. `check_header` would already refuse this value, but a redirect deserves
# its own message. `RedirectResponse` refuses any control
# character in the target with a clear error. Non-ASCII characters are legal in a link but
# not in a header, so they are percent-encoded as UTF-8 (RFC 3986 §2.1); characters that
# already mean something in a URL (`/ ? # & = %` and the like) are left alone.

# %%
#| export
REDIRECTS = frozenset({301, 302, 303, 307, 308})
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

class RedirectResponse(Response):
    """A redirect: status 301, 302 (the default), 303, 307 or 308, and a Location header."""

    def __init__(self, location: str, status: int = 302, headers=()):
        if status not in REDIRECTS:
            raise ValueError(f"a redirect status is one of {sorted(REDIRECTS)}, not {status!r}")
        if _CONTROL.search(location):
            raise ValueError(f"a control character in a redirect target would let it "
                             f"inject headers (RFC 9112 §11.1): {location!r}")
        location = quote(location, safe=":/?#[]@!$&'()*+,;=%~")  # non-ASCII -> %XX of UTF-8
        super().__init__(f"Redirecting to {location}\n", status, headers)
        self.set_header("Location", location)

# %% [markdown]
# Four calls: a plain redirect, one with non-ASCII and a space in the target, the injected
# target from above, and a status that is not a redirect:

# %%
barelab.show_transcript([(call, attempt(lambda: eval(call).headers)) for call in [
    'RedirectResponse("/account")', 'RedirectResponse("/café?next=/a b", 303)',
    "RedirectResponse(next_url)", 'RedirectResponse("/account", 200)']],
    columns=("call", "headers"))

# %% [markdown]
# The short text body is there because RFC 9110 §15.4 suggests one, for clients that do not
# follow redirects, and because `wsgiref.validate` insists on a `Content-Type`. One more
# check is yours, not the class's: a `next` parameter like `https://evil.example/` is a legal
# URL, and redirecting to it makes your site a springboard for phishing (an "open
# redirect"). Exercise 3 handles it.

# %% [markdown]
# ## Everything over a real socket
#
# The last piece is a decorator that turns a function `handler(request) -> Response` into a
# WSGI app. It builds the `Request` and calls the `Response`; an `HTTPError` raised anywhere
# in the handler becomes the response. Any other exception is a bug, and goes to the server,
# which answers 500 and logs it.
#
# This is the whole of what Flask does between the server and your view, minus routing,
# and it is seven lines. `functools.wraps` copies the handler's name onto the app, so logs
# and tracebacks still say `notes_app`.

# %%
#| export
def wsgi_app(handler):
    """Turn ``handler(request) -> Response`` into a WSGI app; an HTTPError raised is the answer."""
    @wraps(handler)
    def app(environ, start_response):
        try:
            response = handler(Request(environ))
        except HTTPError as error:
            response = error
        return response(environ, start_response)
    return app

# %% [markdown]
# A small notes app uses everything, one handler per path. Each handler takes a `Request`
# and returns a `Response`, the shape of a Flask view with the `request` passed in instead
# of imported. First `/notes`: a GET lists the notes, a POST adds one, from a form or from
# JSON, and answers `201 Created`.

# %%
notes = ["first note"]

def notes_page(request):
    if request.method == "POST":
        data = request.json if request.content_type == "application/json" else request.form
        notes.append(data.get("text") or "")
        return JSONResponse({"notes": notes}, 201)
    return JSONResponse({"notes": notes[: int(request.query.get("limit", 10))]})

# %% [markdown]
# `/login` sets two cookies and redirects with 303, as a login form's handler would (the
# theme comes from the query, so you can see it travel). `/me` reads both back.

# %%
def login_page(request):
    response = RedirectResponse("/me", 303)
    response.set_cookie("sid", "abc123", httponly=True)
    response.set_cookie("theme", request.query.get("theme", "light"))
    return response

def me_page(request):
    return Response(f"sid={request.cookies.get('sid')} theme={request.cookies.get('theme')}\n")

# %% [markdown]
# Two pages for the empty responses. `/ping` answers 204. `/page` supports a conditional GET:
# its 200 carries an `ETag`, a version label, and a client that already has version `"v1"`
# says so in `If-None-Match` and gets a 304 with no body.

# %%
def ping_page(request):
    return Response(status=204)

def versioned_page(request):
    if request.headers.get("If-None-Match") == '"v1"':
        return Response(status=304, headers=[("ETag", '"v1"')])
    return Response("<h1>Page, version 1</h1>", headers=[("ETag", '"v1"')],
                    content_type="text/html")

# %% [markdown]
# A dict is router enough for five paths (chapter 08 builds a real one). An unknown path
# raises `NotFound`, which `wsgi_app` turns into the 404. The app is served wrapped in
# `validator`: any PEP 3333 violation in any exchange below would turn into an error in the
# server's log.

# %%
PAGES = {"/notes": notes_page, "/login": login_page, "/me": me_page,
         "/ping": ping_page, "/page": versioned_page}

@wsgi_app
def notes_app(request):
    if request.path not in PAGES:
        raise NotFound(f"no page at {request.path}")
    return PAGES[request.path](request)

server = barelab.serve(validator(notes_app), name="notes")
server

# %% [markdown]
# Start with the login. `barelab.raw_exchange` sends the bytes you give it over a socket and
# shows both directions exactly as they travelled, so you can see the two `Set-Cookie` lines
# on the wire:

# %%
barelab.raw_exchange(server, b"GET /login?theme=dark HTTP/1.1\r\nHost: x\r\n"
                             b"Connection: close\r\n\r\n")

# %% [markdown]
# Two lines, in the order they were set, and a 303 to `/me`. The server added `Date`,
# `Server` and `Connection` itself: those are its business, not the app's. A browser stores
# both cookies, follows the redirect with a GET, and sends them back in one `Cookie` header:

# %%
barelab.http_request(server, "GET", "/me", headers=[("Cookie", "sid=abc123; theme=dark")])

# %% [markdown]
# `request.cookies` split the one header back into two values. Next, add a note from a form
# and one from JSON, then send JSON that is broken and JSON that is labelled as text. Each
# row is one request, and the response's status and body:

# %%
barelab.show_transcript([
    (f"POST {label}", f"{r.status} {r.text.strip()}") for label, r in [
        ("form", barelab.http_request(server, "POST", "/notes", body="text=Caf%C3%A9+at+9",
                                      headers=[("Content-Type",
                                                "application/x-www-form-urlencoded")])),
        ("json", barelab.http_request(server, "POST", "/notes", json={"text": "Zoë's note"})),
        ("bad json", barelab.http_request(server, "POST", "/notes", body='{"text": "x"',
                                          headers=[("Content-Type", "application/json")])),
        ("text/plain", barelab.http_request(server, "POST", "/notes", body='{"text": "x"}',
                                            headers=[("Content-Type", "text/plain")])),
    ]], columns=("request", "response"))

# %% [markdown]
# The form's `Caf%C3%A9+at+9` arrived as `Café at 9`, and the JSON's `Zoë` intact. The bad
# JSON got a 400 whose body (starting with its own status line, hence `400 400`) tells the
# client's developer where to look. The `text/plain` body was neither a form nor JSON, so
# `request.form` was empty and the app stored an empty note: your handler decides what a
# missing field means, and this one should have refused it.
#
# Now a real multipart upload, sent by `curl -F`, which picks its own boundary. The
# scratch file has two lines with CRLF endings, and the app echoes what it received as
# JSON; a second server keeps it apart from the notes.

# %%
from pathlib import Path
import tempfile

scratch = Path(tempfile.mkdtemp()) / "todo.txt"
scratch.write_bytes(b"buy milk\r\ncall Zo\xc3\xab\r\n")

@wsgi_app
def upload_app(request):
    file = request.files["file"]
    return JSONResponse({"who": request.form.get("who"), "filename": file.filename,
                         "type": file.content_type, "data": file.data.decode()})

uploads = barelab.serve(validator(upload_app), name="uploads")
uploads

# %% [markdown]
# `-F name=value` adds a field, `-F name=@path` a file; either makes `curl` send
# `multipart/form-data`.

# %%
# !curl -s -F who=Zoë -F file=@{scratch} {uploads.url}

# %% [markdown]
# The file's CRLFs came through intact, `Zoë` in the form field was decoded, and `curl`
# labelled the file `text/plain` from its extension. Now the empty responses, on the wire, sent as two
# requests on one connection (the second one asks the server to close afterwards). The 204
# has no `Content-Length`; the 304, asked for with the `ETag` the client already has, has no
# body.

# %%
barelab.raw_exchange(server, b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n"
                             b"GET /page HTTP/1.1\r\nHost: x\r\nIf-None-Match: \"v1\"\r\n"
                             b"Connection: close\r\n\r\n")

# %% [markdown]
# Two responses, and the second begins right after the first one's empty line: with no
# stray `Content-Length` or body, the client finds every response where it starts. Now
# `HEAD /page`: the app ran exactly as for a GET, and the server kept the headers
# (`Content-Length: 24` included) and dropped the body.

# %%
barelab.raw_exchange(server, b"HEAD /page HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")

# %% [markdown]
# Finally, two requests that fail before any page handler runs: an unknown page, and a path
# whose `%E9` is a latin-1 `é`, not UTF-8. Both are answered by `HTTPError` responses, the
# second one raised by `request.path` inside `notes_app`.

# %%
barelab.http_request(server, "GET", "/nowhere").status, \
    barelab.http_request(server, "GET", "/caf%E9").text

# %% [markdown]
# The server's log has one line per request, every status you have seen above, and no
# error from `validator` anywhere:

# %%
server.log

# %% [markdown]
# ## Summary
#
# - You built `barelab.built.http_objects`: `Request` (and `RequestHead`), `Response`,
#   `JSONResponse`, `RedirectResponse`, the `HTTPError` family, `MultiDict`, `Headers`,
#   `UploadedFile`, the parsers `parse_urlencoded`, `parse_options`, `parse_multipart`,
#   `parse_json`, `parse_cookie_header`, and `read_body`, `request_url`, `wsgi_app`.
# - Request data is text that arrived as bytes: the path, query and form are decoded as
#   UTF-8, and bytes that are not UTF-8 get a 400, not a guess. Repeated names are kept
#   (`getall`); blank values are kept.
# - The body is read once, never past `CONTENT_LENGTH`, to the end only with
#   `wsgi.input_terminated`, under a limit (413), and kept in the environ.
# - A multipart delimiter is CRLF + `--boundary`; the CRLF belongs to the delimiter. Truncated
#   bodies, missing names and stray boundaries are 400s.
# - Invalid JSON is a 400 with its position; JSON not labelled `application/json` is a 415.
# - Headers are a list of pairs: several `Set-Cookie` lines stay separate. Cookie names are
#   tokens, values have no space, `;`, `,` or `"` even when quoted; `SameSite=None` needs
#   `Secure`.
# - 204 and 304 carry no body and no `Content-Length` (RFC 9110 §8.6, §15.4.5); `HEAD` is the
#   server's job; redirect targets with control characters are refused.
# - Errors are exceptions that are responses: raise `BadRequest("why")` anywhere in a handler.

# %% [markdown]
# ## Exercises
#
# Each exercise has a solution cell (replace its body with your own) and a check cell that
# tells you whether your answer works.
#
# ### Exercise 1 — Conditional GET
#
# Write `conditional(request, body: str, etag: str) -> Response`. If the request's
# `If-None-Match` header lists `etag` (it is a comma-separated list, and `*` matches any
# version; RFC 9110 §13.1.2), answer 304 with the `ETag` header; otherwise 200 with the body
# as `text/html` and the `ETag` header.

# %% tags=["solution"]
### BEGIN SOLUTION
def conditional(request, body: str, etag: str) -> Response:
    listed = [tag.strip() for tag in request.headers.get("If-None-Match", "").split(",")]
    if etag in listed or "*" in listed:
        return Response(status=304, headers=[("ETag", etag)])
    return Response(body, headers=[("ETag", etag)], content_type="text/html")
### END SOLUTION

# %% tags=["check"]
from barelab.exercises import check

def _conditional_call(*headers):
    app = validator(wsgi_app(lambda request: conditional(request, "<p>hi</p>", '"v2"')))
    return barelab.call_wsgi(app, headers=list(headers))

with check("Exercise 1"):
    fresh = _conditional_call()
    assert fresh.status_code == 200 and fresh.body == b"<p>hi</p>", "no If-None-Match: a 200"
    assert fresh.header("etag") == '"v2"', "send the ETag with the 200"
    cached = _conditional_call(("If-None-Match", '"v1", "v2"'))
    assert cached.status_code == 304, "If-None-Match is a list: any matching tag gives a 304"
    assert cached.body == b"" and cached.header("content-length") is None, "a 304 has no body"
    assert cached.header("etag") == '"v2"', "a 304 repeats the ETag"
    assert _conditional_call(("If-None-Match", "*")).status_code == 304, "'*' matches"
    assert _conditional_call(("If-None-Match", '"v1"')).status_code == 200, "old tag: 200"

# %% [markdown]
# ### Exercise 2 — A visit counter in a cookie
#
# Write a handler `visits(request) -> Response` that reads the cookie `visits` (missing or
# not a whole number counts as 0), adds one, answers `"visit N\n"` and sets the cookie to the
# new number with `HttpOnly` and a `Max-Age` of one day. It must never fail on a bad cookie.

# %% tags=["solution"]
### BEGIN SOLUTION
def visits(request) -> Response:
    raw = request.cookies.get("visits", "0")
    count = (int(raw) if raw.isascii() and raw.isdigit() else 0) + 1
    response = Response(f"visit {count}\n")
    response.set_cookie("visits", str(count), httponly=True, max_age=timedelta(days=1))
    return response
### END SOLUTION

# %% tags=["check"]
def _visit(cookie=None):
    headers = [("Cookie", cookie)] if cookie else []
    return barelab.call_wsgi(validator(wsgi_app(visits)), headers=headers)

with check("Exercise 2"):
    first_visit = _visit()
    assert first_visit.text == "visit 1\n", "no cookie: this is visit 1"
    set_line = first_visit.header("set-cookie") or ""
    assert set_line.startswith("visits=1;"), "set the cookie 'visits' to the new count"
    assert "HttpOnly" in set_line and "Max-Age=86400" in set_line, "HttpOnly, one day"
    assert _visit("theme=dark; visits=41").text == "visit 42\n", "read the cookie among others"
    assert _visit("visits=lots").text == "visit 1\n", "a bad cookie counts as 0, never a 500"

# %% [markdown]
# ### Exercise 3 — A safe `next` redirect
#
# After login, sites redirect to `?next=...`. Write `safe_redirect(request) -> Response`: a
# 303 to `next` if it is a path on this site (it starts with `/` but not `//` or `/\`, which
# browsers read as "another host"), otherwise a 303 to `/`. A `next` with a control character
# must not raise: send the user to `/`.

# %% tags=["solution"]
### BEGIN SOLUTION
def safe_redirect(request) -> Response:
    target = request.query.get("next", "/")
    local = target.startswith("/") and not target.startswith(("//", "/\\"))
    if not local or _CONTROL.search(target):
        target = "/"
    return RedirectResponse(target, 303)
### END SOLUTION

# %% tags=["check"]
def _next(query):
    return barelab.call_wsgi(validator(wsgi_app(safe_redirect)), "GET", "/login?" + query)

with check("Exercise 3"):
    assert _next("next=/account").header("location") == "/account", "a local path is fine"
    assert _next("next=/account").status_code == 303, "use 303 after a login"
    for bad in ("next=https://evil.example/", "next=//evil.example", "next=/%5Cevil.example",
                "next=javascript:alert(1)", "next=/a%0d%0aSet-Cookie:x=1", ""):
        assert _next(bad).header("location") == "/", f"?{bad} must go to /"

# %% [markdown]
# ### Exercise 4 — A safe file name
#
# `UploadedFile.filename` is whatever the client wrote: `../../etc/passwd`, `C:\Users\x\a.txt`
# (old browsers sent whole paths), or nothing at all. Write `safe_filename(name: str) -> str`
# that keeps only the last path component (after any `/` or `\`), and raises `BadRequest`
# if what is left is empty, `.` or `..`, or holds a control character.

# %% tags=["solution"]
### BEGIN SOLUTION
def safe_filename(name: str) -> str:
    base = re.split(r"[/\\]", name)[-1]
    if base in ("", ".", "..") or _CONTROL.search(base):
        raise BadRequest(f"unusable file name: {name!r}")
    return base
### END SOLUTION

# %% tags=["check"]
with check("Exercise 4"):
    assert safe_filename("notes.txt") == "notes.txt"
    assert safe_filename("../../etc/passwd") == "passwd", "drop the directories"
    assert safe_filename("C:\\Users\\x\\a.txt") == "a.txt", "backslashes separate too"
    for bad in ("", "..", "dir/", "a\x00b"):
        try:
            safe_filename(bad)
        except BadRequest:
            continue
        raise AssertionError(f"{bad!r} must raise BadRequest")

# %% [markdown]
# ## Clean up
#
# Stop every server this chapter started (the number is how many were running), and remove
# the scratch file.

# %%
scratch.unlink()
barelab.stop_all()
