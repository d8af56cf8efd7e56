# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # 18. Roll your own framework: `bare`
#
# You have built every part of a web framework already, one chapter at a time: route
# templates with typed parameters (08), request parsing and cookies (09), reading bodies and
# streaming in ASGI (12), lifespan (14), WebSockets (15) and middleware (16). In this
# chapter you put them together into **`bare`**, a small ASGI framework that feels like
# Starlette or FastAPI from the outside, and you know every line of it from the inside.
# Then you serve one app on three servers and probe it with raw bytes.
#
# ## Learning goals
#
# By the end of this chapter you can:
#
# - explain what a framework adds on top of an ASGI app: routing, request and response
#   objects, error handling, a middleware stack, lifespan and WebSocket routes;
# - write handlers as `async def handler(request)` that return a `Response`, text, bytes,
#   JSON data or `None`, and say which response each one becomes;
# - make sure bad input gets a clear 4xx and a bug gets a plain 500, **never a traceback**
#   in the response, while the traceback still reaches the server's log, and change those
#   answers (or add work after them) with hooks instead of overriding the framework;
# - get the HTTP details right that frameworks are judged by: `HEAD` with no body, `204`
#   without `Content-Length`, `405` with `Allow`, several `Set-Cookie` lines, binary
#   WebSocket frames;
# - serve the same app on barelab, on the course's own ASGI server and on uvicorn, and test
#   it in-process without any socket.

# %% [markdown]
# ## What a framework adds
#
# Chapter 12 wrote ASGI apps by hand: one function that looks at `scope["path"]`, reads
# `receive()` in a loop and calls `send()` twice. That works for one endpoint. With forty,
# you would copy the same twenty lines forty times: parse the query, check the content
# type, read the body within a limit, turn a mistake into a 400, add `Content-Length`.
# A framework is that repeated code, written once, so that each endpoint shrinks to the
# few lines that are really about *your* app.
#
# Think of a request going down through `bare` and the response coming back up. Each
# layer is a piece you already wrote; the label says in which chapter:
#
# ```mermaid
# flowchart TB
#     S["a server: barelab, ch 13+15's WebSocketASGIServer, or uvicorn"]
#     S --> MW["middleware stack, outermost first: compose (ch 07), RequestID... (ch 16)"]
#     MW --> C["Bare.core: which kind of scope? (ch 11)"]
#     C -- "lifespan" --> L["run_lifespan around hooks and lifespan= (ch 14)"]
#     C -- "http / websocket" --> R["router: Route, Mount, converters, unreachable routes (ch 08)"]
#     R --> RQ["Request / WebSocket: query, headers, cookies, forms (ch 09), body and JSON (ch 12)"]
#     RQ --> H["your handler: async def handler(request)"]
#     H --> RS["Response: reason phrases, safe header lines (ch 02), Set-Cookie (ch 09), streaming (ch 12)"]
#     RS --> E["error rules: HTTPException to 4xx, anything else to a bare 500 (new here)"]
# ```
#
# The same map as a table, with the module each piece is imported from. You will see
# each one click into place in the section named on the right:
#
# | part of `bare` | imported from | chapter | used in |
# | --- | --- | --- | --- |
# | reason phrases, the header-line check that stops CR LF injection | `barelab.built.http_wire` | 02 | The response |
# | composing middleware, outermost first | `barelab.built.wsgi_middleware.compose` | 07 | The `Bare` app |
# | route templates `{id:int}`, converters, mounts, unreachable-route checks | `barelab.built.routing` | 08 | Adding routes |
# | query strings, forms, multipart uploads, cookies, `Set-Cookie` | `barelab.built.http_objects` | 09 | The request, the response |
# | reading a body within a limit, JSON with clear errors, streaming | `barelab.built.asgi_basics` | 12 | The body, streaming |
# | the lifespan protocol around an async context manager | `barelab.built.app_lifespan` | 14 | Lifespan |
#
# Three more chapters are *around* `bare` rather than inside it: the demo runs on chapter
# 13's server with chapter 15's WebSocket upgrade, it uses chapter 16's `RequestID`
# middleware, and it is tested with chapter 17's `TestClient`.
#
# What is new here is the glue: objects that speak ASGI on one side and plain Python on the
# other, and the rules for what happens when something goes wrong. The chapter builds it
# bottom-up: errors, then the request, then the response, then the `Bare` object that ties
# them together, then a real app served three ways.

# %% [markdown]
# Everything below that is marked `#| export` is written to `barelab/built/bare.py`. The
# bonus chapters (21 to 25) import `bare` from there and extend it.

# %%
#| default_exp bare

# %% [markdown]
# The module opens with a comment on its design, the same story as the diagram in a few
# lines, and the standard library it needs. Nothing here is third-party: `bare` runs on
# Python and the course's own code.

# %%
#| export
# bare: a small ASGI framework assembled from the course's parts. A Bare object is an ASGI
# app: its middleware (outermost first) wraps a core that answers lifespan scopes with
# chapter 14's run_lifespan, and http and websocket scopes with a router built on chapter
# 08's templates and converters. A handler gets a Request (or a WebSocket) and returns a
# Response or a plain value. Whatever goes wrong, the client gets a short answer without
# a traceback: an HTTPException is rendered as JSON or text, any other exception as a
# generic 500, and then re-raised so that the server logs the traceback. Hooks for what
# comes later: app.exception_handler, request.call_after_response, app.add_middleware.
import asyncio
import inspect
import json
import logging
from contextlib import asynccontextmanager
from functools import cached_property, partial
from wsgiref.util import is_hop_by_hop

# %% [markdown]
# Now the imports that matter. Six lines bring in the work of six earlier chapters; read
# the comment above each one and you have the table from the top of the chapter again.

# %%
#| export
from barelab.built.http_wire import format_field, reason_phrase           # chapter 02
from barelab.built.wsgi_middleware import compose                          # chapter 07
from barelab.built.routing import Mount, Route, unreachable_reason         # chapter 08
from barelab.built.http_objects import (Headers, MultiDict, delete_cookie,  # chapter 09
                                        parse_cookie_header, parse_multipart, parse_options,
                                        parse_urlencoded, set_cookie)
from barelab.built.asgi_basics import RequestAborted, parse_json, read_body, stream  # 12
from barelab.built.app_lifespan import run_lifespan                        # chapter 14

# %% [markdown]
# ## Errors first
#
# A framework is judged by what it does with bad input before anything else. The rule for
# `bare`: a handler that wants to refuse a request **raises** an `HTTPException` with a
# status and a detail for the client, anywhere below the handler, and the framework turns
# it into a response. Only 4xx and 5xx are errors; a redirect is a response, not an
# exception, so `HTTPException(302)` is refused.
#
# If you have used FastAPI, this is its `HTTPException`, and in Flask it is `abort(404)`.
# Here you see what is inside: a status, a detail, optional headers, and a check. The
# default detail comes from chapter 02's `reason_phrase`, the table of standard phrases.

# %%
#| export
class HTTPException(Exception):
    """Raise it anywhere below a handler to answer ``status`` (4xx or 5xx) with ``detail``."""

    def __init__(self, status: int, detail: str | None = None, headers=()):
        if type(status) is not int or not 400 <= status <= 599:
            raise ValueError(f"an HTTPException status is an int from 400 to 599, "
                             f"not {status!r}")
        self.status, self.headers = status, list(headers)
        self.detail = detail if detail is not None else reason_phrase(status)
        super().__init__(f"{status} {reason_phrase(status)}: {self.detail}")

# %% [markdown]
# Make two, and then make the mistake. Look at the second line: with no detail, the
# reason phrase is used twice, once as the phrase and once as the detail.

# %%
print(repr(HTTPException(404, "no note 7")), HTTPException(503), sep="\n")
try:
    HTTPException(302, "go elsewhere")
except ValueError as error:
    print("ValueError:", error)

# %% [markdown]
# The `ValueError` comes at once, in the line that made the mistake, rather than later as a
# strange response. That is a pattern you will see all through `bare`: check when an object
# is *made*, so the traceback points at your code.
#
# The parsers from earlier chapters raise their own errors: chapter 02's and 12's carry
# `.status` and `.message`, chapter 09's `.status` and `.detail`. `bare` turns each into an
# `HTTPException`, so a handler only ever has one kind to catch.

# %%
#| export
def as_http_exception(error: Exception) -> HTTPException:
    """The HTTPException for an error of the course's parsers (chapters 02, 09 and 12)."""
    detail = getattr(error, "detail", None) or getattr(error, "message", None) or str(error)
    return HTTPException(error.status, detail, getattr(error, "headers", ()))

# %% [markdown]
# For example, chapter 12's `parse_json` refusing a body with a trailing comma. Its error
# class is `BadRequest`; on the right of the arrow is what `bare` makes of it:

# %%
from barelab.built.asgi_basics import parse_json as chapter12_parse_json

try:
    chapter12_parse_json(b'{"text": "hi",}')
except Exception as error:
    print(type(error).__name__, "->", repr(as_http_exception(error)))

# %% [markdown]
# The status (400) and the parser's own words survive the trip. That message says *where*
# the JSON broke (line 1, column 15), which is what a client needs to fix it.

# %% [markdown]
# ## State: a dict you can dot into
#
# Lifespan state (chapter 14) is a plain dict in `scope["state"]`. Handlers read it a lot,
# and `request.state.notes` reads better than `request.scope["state"]["notes"]`. `State`
# gives attribute access to a dict it **shares**: it never copies it, so writing
# `state.db = ...` writes into the very dict the server keeps.
#
# Two details to look for in the class. It uses `object.__setattr__` in `__init__`,
# because its own `__setattr__` sends every attribute into the dict, `_data` included. And
# a missing name raises `AttributeError` (not `KeyError`), listing what *is* there.

# %%
#| export
class State:
    """Attribute access to a dict it shares: ``state.db`` is ``data["db"]``."""

    def __init__(self, data: dict | None = None):
        object.__setattr__(self, "_data", {} if data is None else data)

    def __getattr__(self, name):
        try:
            return self._data[name]
        except KeyError:
            raise AttributeError(f"the state has no {name!r}; it has "
                                 f"{sorted(self._data) or 'nothing'}") from None

    def __setattr__(self, name, value):
        self._data[name] = value

    def __repr__(self) -> str:
        return f"State({', '.join(sorted(self._data))})"

# %% [markdown]
# Wrap a dict, write one attribute through the `State`, then print the dict itself. Then
# ask for a name that is not there:

# %%
shared = {"notes": {}}
state = State(shared)
state.visits = 0
print(shared, state)
try:
    state.db
except AttributeError as error:
    print("AttributeError:", error)

# %% [markdown]
# `visits` is in `shared`: the `State` holds no data of its own. That matters later, when
# a startup hook writes `state.db = ...` and a request reads it back.

# %% [markdown]
# ## The request
#
# An http scope and a websocket scope have most things in common: a path, a query string,
# headers, cookies. So `Request` and `WebSocket` share a base class, `Connection`, with
# everything that only *reads the scope*, parsed with chapter 09's functions.
#
# First the URL the client asked for. An ASGI scope has no ready-made URL; it is rebuilt
# from the scheme, the `Host` header and the path as it was sent (`raw_path`). Why
# `raw_path` and not `path`? The server has already percent-decoded `path`, so `/a%20b`
# arrives as `/a b`; the URL should show what the client really sent. When there is no
# `Host` header (HTTP/1.0 clients may omit it), the server's own address stands in.

# %%
#| export
def request_url(scope: dict) -> str:
    """The URL the client asked for: scheme, Host (or server), path as sent, query."""
    host = dict(scope["headers"]).get(b"host", b"").decode("latin-1")
    if not host and scope.get("server"):
        host = "%s:%d" % tuple(scope["server"])
    raw = scope.get("raw_path") or scope["path"].encode("utf-8")
    query = scope.get("query_string", b"").decode("latin-1")
    return (f"{scope.get('scheme', 'http')}://{host}{raw.decode('latin-1')}"
            + (f"?{query}" if query else ""))

# %% [markdown]
# Two helpers come before the class. `_query` parses the query string with chapter 09's
# `parse_urlencoded`, and turns its refusal of a query that is not UTF-8 into a 400.
# `_state` wraps this request's `scope["state"]`, the copy of the lifespan state the
# server made for it (chapter 14).

# %%
#| export
def _query(self) -> MultiDict:
    """The query string as a MultiDict of str; 400 if it is not UTF-8."""
    try:
        return parse_urlencoded(self.scope.get("query_string", b""))
    except Exception as error:
        raise as_http_exception(error) from None

def _state(self) -> State:
    """This request's copy of the lifespan state, as a State."""
    return State(self.scope.setdefault("state", {}))

# %% [markdown]
# Now the base class. It is short because it only *reads* the scope, and the reading is
# done by chapter 09's functions. The properties are written as one-liners:
# `property(lambda self: ...)` is the same as a `@property` method with that body, and
# `cached_property` computes the value on first use and then stores it on the object, so
# the headers are parsed at most once however often a handler asks.
#
# Two details to look for: several `Cookie` lines are joined with `"; "` before parsing
# (HTTP/2 clients may split one cookie header into several, RFC 9113 §8.2.3), and
# `app_state` is the app's own `State`, which lives as long as the `Bare` object does,
# while `state` is this request's lifespan state.

# %%
#| export
class Connection:
    """What an http or websocket scope says about a request: path, query, headers..."""

    def __init__(self, scope: dict, receive, app=None):
        self.scope, self.receive, self.app = scope, receive, app

    path = property(lambda self: self.scope["path"])
    path_params = property(lambda self: self.scope.get("path_params", {}),
                           doc="The typed parameters the route template matched.")
    client = property(lambda self: self.scope.get("client"))
    app_state = property(lambda self: self.app.state)
    url = cached_property(lambda self: request_url(self.scope))
    query, state = cached_property(_query), cached_property(_state)
    headers = cached_property(lambda self: Headers(
        [(name.decode("latin-1"), value.decode("latin-1"))
         for name, value in self.scope["headers"]]))
    cookies = cached_property(lambda self: parse_cookie_header(
        "; ".join(self.headers.getall("cookie"))))

# %% [markdown]
# A scope written by hand is enough to try it; no server is needed to read a dict. This
# one is what a server would build for `GET /notes?tag=a&tag=b` with two cookies. The
# three values printed on the second line are a query parameter, a cookie and a header:

# %%
scope = {"type": "http", "method": "GET", "path": "/notes", "raw_path": b"/notes",
         "query_string": b"tag=a&tag=b", "scheme": "http", "root_path": "",
         "headers": [(b"host", b"example.org"), (b"cookie", b"sid=abc; theme=dark")]}
connection = Connection(scope, receive=None)
print(connection.url)
print(connection.query.getall("tag"), connection.cookies["theme"],
      connection.headers["Host"])

# %% [markdown]
# `query.getall` keeps both `tag` values, and `headers["Host"]` ignores case: these are
# chapter 09's `MultiDict` and `Headers`, doing the same job here as in chapter 09's WSGI
# `Request`. Only the source of the data changed: an ASGI scope instead of a WSGI environ.
#
# Now break it. `%E9` is `é` in Latin-1, not UTF-8, so the query cannot be decoded. The
# error must be a 400 (the client's fault), not a `UnicodeDecodeError` (which would be a
# 500, a bug of ours):

# %%
try:
    Connection({**scope, "query_string": b"name=caf%E9"}, receive=None).query
except HTTPException as error:
    print(repr(error))

# %% [markdown]
# ### The body, read once and within a limit
#
# `Request` adds the method and the body. The body is read on first use and kept, because
# `receive()` hands each chunk out only once. Two guards come before any reading: a
# `Content-Length` that is not a number is a 400, and one over the limit is a **413**
# without reading a byte. Then chapter 12's `read_body` counts the chunks that really
# arrive, in case the client lied or sent no length at all.
#
# First the class itself: the constructor only stores the limit, an empty slot for the
# body, and an empty list of work to do after the response (a hook you will use later). The `method` and `content_type` properties follow the pattern of `Connection`.

# %%
#| export
MAX_BODY = 1024 * 1024      # bytes a Request reads at most (413 above), as in chapter 12


class Request(Connection):
    """One HTTP request. The body is read on first use, at most once, within ``max_body``."""

    def __init__(self, scope: dict, receive, app=None, *, max_body: int = MAX_BODY):
        super().__init__(scope, receive, app)
        self.max_body, self._body = max_body, None
        self.after_response = []    # (fn, args, kwargs) that respond runs once it has answered

    method = property(lambda self: self.scope["method"])
    content_type = property(lambda self: parse_options(self.headers.get("content-type", ""))[0],
                            doc="The body's media type, lower case, without parameters.")

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.path}>"

# %% [markdown]
# Then `body`, written as a function and attached to the class afterwards
# (`Request.body = body`), so that it gets a cell of its own. Read it top to bottom: the
# cached body is returned at once; otherwise the two guards; then the reading. A client
# that hangs up halfway (`RequestAborted`) is passed on unchanged: it is not an HTTP
# error, since there is nobody left to send a 400 to.

# %%
#| export
async def body(self) -> bytes:
    """The whole body; 413 when it is over ``max_body``, 400 when the length is not a number."""
    if self._body is None:
        declared = self.headers.get("content-length")
        if declared is not None and not declared.isdigit():
            raise HTTPException(400, f"Content-Length is not a number: {declared[:20]!r}")
        if declared is not None and int(declared) > self.max_body:
            raise HTTPException(413, f"the body is {declared} bytes; "
                                     f"the limit is {self.max_body}")
        try:
            self._body = await read_body(self.receive, self.max_body)
        except RequestAborted:
            raise                               # the client left: not an HTTP error
        except Exception as error:
            raise as_http_exception(error) from None
    return self._body

Request.body = body

# %% [markdown]
# To try it without a server, a `receive` that hands out a list of messages is enough.
# `receive_from` makes one: each chunk becomes an `http.request` message, and every one but
# the last says `more_body: True`, as a server does for a body that arrives in pieces.

# %%
def receive_from(*chunks):
    messages = [{"type": "http.request", "body": chunk, "more_body": i < len(chunks) - 1}
                for i, chunk in enumerate(chunks)]
    async def receive():
        return messages.pop(0)
    return receive

# %% [markdown]
# `await` works at the top level of a notebook cell, so you can call `body()` directly.
# Nothing here serves anything, so it may run on the kernel's own loop. Call it twice:

# %%
post = {**scope, "method": "POST", "headers": [(b"content-type", b"application/json")]}
request = Request(post, receive_from(b'{"text": ', b'"hello"}'), max_body=64)
await request.body(), await request.body()

# %% [markdown]
# Two chunks joined, and the second call returns the same bytes without calling
# `receive()` again. Now over the limit, with no `Content-Length` to warn us, so the 413
# comes from counting. The limit is 64 bytes; the two chunks are 80:

# %%
try:
    await Request(post, receive_from(b"x" * 40, b"y" * 40), max_body=64).body()
except HTTPException as error:
    print(repr(error))

# %% [markdown]
# The detail gives the limit, and nothing was kept: a client that sends 10 GB gets the same
# short answer after 64 bytes, instead of filling the server's memory first.
#
# ### JSON and forms
#
# `json()` checks the content type first: a body that does not *say* it is JSON is a
# **415 Unsupported Media Type**, even if it happens to parse. Types like
# `application/problem+json` count as JSON too (the `+json` suffix). Then it hands the
# body to chapter 12's `parse_json`, which says *where* the JSON is broken. The message
# never contains a traceback, only the parser's own words.

# %%
#| export
async def request_json(self):
    """The body as JSON: 415 unless it says it is JSON, 400 (with the reason) if it is not."""
    kind = self.content_type
    if kind != "application/json" and not (kind.startswith("application/")
                                           and kind.endswith("+json")):
        raise HTTPException(415, f"send Content-Type: application/json, not {kind or 'none'}")
    data = await self.body()
    try:
        return parse_json(data)
    except Exception as error:
        raise as_http_exception(error) from None

Request.json = request_json

# %% [markdown]
# A trailing comma is the most common JSON mistake (JavaScript allows it, JSON does not).
# Look at the detail a client gets:

# %%
try:
    await Request(post, receive_from(b'{"text": "hi",}')).json()
except HTTPException as error:
    print(error.status, error.detail)

# %% [markdown]
# The same words as the `BadRequest` earlier: `Request.json` added the content-type check
# and the conversion to `HTTPException`, nothing else.
#
# `form()` accepts both kinds of HTML form body. A urlencoded body goes to chapter 09's
# `parse_urlencoded`; a multipart one to `parse_multipart`, which returns text fields and
# uploaded files apart. `form()` puts them in one `MultiDict`: fields first, then files
# (as chapter 09's `UploadedFile`).

# %%
#| export
async def form(self) -> MultiDict:
    """Form fields (str) and uploads (UploadedFile) from an urlencoded or multipart body."""
    kind, params = parse_options(self.headers.get("content-type", ""))
    data = await self.body()
    try:
        if kind == "application/x-www-form-urlencoded":
            return parse_urlencoded(data)
        if kind == "multipart/form-data":
            fields, files = parse_multipart(data, params.get("boundary"))
            return MultiDict(fields.multi_items() + files.multi_items())
    except Exception as error:
        raise as_http_exception(error) from None
    raise HTTPException(415, "send a form: application/x-www-form-urlencoded or "
                             f"multipart/form-data, not {kind or 'none'}")

Request.form = form

# %% [markdown]
# The boundary (`XyZ` below) comes from the `Content-Type` header, which is why `form()`
# reads the header's parameters with `parse_options`. Here is a multipart body with one
# field and one file, built by hand so you can see its shape: each part starts with
# `--XyZ`, and the last boundary ends with `--`.

# %%
multipart = (b"--XyZ\r\nContent-Disposition: form-data; name=\"title\"\r\n\r\nHoliday\r\n"
             b"--XyZ\r\nContent-Disposition: form-data; name=\"photo\"; filename=\"a.png\"\r\n"
             b"Content-Type: image/png\r\n\r\n\x89PNG\r\n--XyZ--\r\n")
upload = {**scope, "method": "POST",
          "headers": [(b"content-type", b"multipart/form-data; boundary=XyZ")]}
await Request(upload, receive_from(multipart)).form()

# %% [markdown]
# One `MultiDict`: `title` is a plain `str`, `photo` an `UploadedFile` that knows its file
# name and type. A handler reads both with `form["title"]` and `form["photo"]`.

# %% [markdown]
# ## The response
#
# A `Response` holds a status, a list of header pairs and a body. It is also an **ASGI app**
# (the Werkzeug idea of chapter 09, in ASGI form): `await response(scope, receive, send)`
# sends it. So the framework never needs to know what kind of response a handler made; it
# only calls it.
#
# Subclasses change two things: `media_type`, the default `Content-Type`, and `render`,
# which turns the content into bytes. The first cell has only those two and two small
# helpers: `header(name)` finds a header whatever its case, and `__repr__` shows the
# status with chapter 02's reason phrase.

# %%
#| export
BODYLESS = frozenset({204, 304})       # no content (RFC 9110 §6.4.1), so no Content-Length


class Response:
    """A whole response: status, headers (a list of str pairs) and a body of bytes or str.
    It is an ASGI app: ``await response(scope, receive, send)`` sends it."""

    media_type = "text/plain; charset=utf-8"

    def render(self, content) -> bytes:
        if isinstance(content, str):
            return content.encode("utf-8")
        if isinstance(content, (bytes, bytearray, memoryview)):
            return bytes(content)
        raise TypeError(f"a Response body is bytes or str, not {type(content).__name__}")

    def header(self, name: str) -> str | None:
        return next((v for n, v in self.headers if n.lower() == name.lower()), None)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.status} {reason_phrase(self.status)}>"

# %% [markdown]
# The constructor refuses the two classic mistakes at once, where the stack trace points at
# the handler that made them: a status that is not a final one, and a body on a `204` or
# `304`. It adds `Content-Type` only to responses that have a body. Headers may be given as
# a dict or as a list of pairs; a list is the only way to repeat a name.

# %%
#| export
def _response_init(self, content=b"", status: int = 200, headers=(),
                   media_type: str | None = None):
    if type(status) is not int or not 200 <= status <= 599:
        raise ValueError(f"status is an int from 200 to 599, not {status!r}")
    self.status, self.headers = status, []
    for name, value in headers.items() if isinstance(headers, dict) else headers:
        self.add_header(name, value)
    self.body = self.render(content)
    if status in BODYLESS and self.body:
        raise ValueError(f"a {status} response has no body (RFC 9110 §6.4.1)")
    media_type = media_type or self.media_type
    if status not in BODYLESS and media_type and self.header("content-type") is None:
        self.add_header("content-type", media_type)

Response.__init__ = _response_init

# %% [markdown]
# `add_header` is the only door for headers, so it is where they are checked: names and
# values are `str`; no hop-by-hop field (`Connection`, `Transfer-Encoding`...: the server
# owns those, RFC 9110 §7.6.1); no `Content-Length` (computed from the body); and chapter
# 02's `format_field` refuses a bad name or a CR or LF in a value, which would let a value
# start a new header line.

# %%
#| export
def add_header(self, name: str, value: str) -> None:
    """Append one header line (names may repeat: Set-Cookie does); refuse what is unsafe."""
    if type(name) is not str or type(value) is not str:
        raise TypeError(f"header names and values are str, not {name!r}: {value!r}")
    if is_hop_by_hop(name):
        raise ValueError(f"{name} is about the connection: the server sets it "
                         "(RFC 9110 §7.6.1)")
    if name.lower() == "content-length":
        raise ValueError("Content-Length is computed from the body; do not set it")
    format_field(name, value)           # ValueError for a bad name, CR, LF or other controls
    self.headers.append((name, value))

# %% [markdown]
# `set_header` replaces instead of appending, for the headers that must appear once, like
# `Location`. It goes through `add_header` too, so it gets the same checks.

# %%
#| export
def set_header(self, name: str, value: str) -> None:
    """Replace every line of header ``name`` with this one."""
    self.headers = [(n, v) for n, v in self.headers if n.lower() != name.lower()]
    self.add_header(name, value)

Response.add_header, Response.set_header = add_header, set_header
Response.set_cookie, Response.delete_cookie = set_cookie, delete_cookie     # chapter 09's

# %% [markdown]
# The last line is a piece clicking into place: chapter 09's `set_cookie` and
# `delete_cookie` are attached to `Response` as they are. They were written to need only
# a `self.add_header`, and `Response` now has one.
#
# Break the rules on purpose. Four mistakes, one per line of output: a body on a 204, a
# line break in a header value, a header the server owns, and a body that is not text or
# bytes.

# %%
for attempt in (lambda: Response("gone", status=204),
                lambda: Response("x").add_header("X-Note", "a\r\nSet-Cookie: admin=1"),
                lambda: Response("x").add_header("Transfer-Encoding", "chunked"),
                lambda: Response(42)):
    try:
        attempt()
    except (ValueError, TypeError) as error:
        print(f"{type(error).__name__}: {error}")

# %% [markdown]
# The second one is a *header injection*: if that value came from user input (a name in a
# form, say), the CR LF in it would have ended the header line, and the rest would arrive
# as a `Set-Cookie` line of the attacker's choosing. Chapter 02's `format_field` refuses
# it, and it never reaches the wire.
#
# ### Sending it
#
# Now `__call__`. The head gets `Content-Length` unless the status is bodyless. And the body
# is dropped for `HEAD` (RFC 9110 §9.3.2: the same head as `GET`, no content) and for
# `204`/`304`. `bare` does this itself instead of trusting the server: chapter 12 showed
# barelab and uvicorn drop a `HEAD` body, but the ASGI spec does not require them to.
#
# `encode_headers` does the last conversion: the `(str, str)` pairs a handler works with
# become the lowercase `(bytes, bytes)` pairs of an ASGI message (chapter 11).

# %%
#| export
def encode_headers(headers) -> list[tuple[bytes, bytes]]:
    """(str, str) pairs as ASGI wants them: lowercase latin-1 bytes."""
    return [(name.lower().encode("latin-1"), value.encode("latin-1"))
            for name, value in headers]

# %% [markdown]
# A response only makes sense for an http scope. A handler that returns a `Response` from
# a WebSocket route, or mounts one as a websocket app, would otherwise send
# `http.response.start` to a server expecting `websocket.*` messages and get a confusing
# protocol error; `_check_http` names the real mistake first. Then `__call__` itself:

# %%
#| export
def _check_http(response, scope) -> None:
    if scope.get("type", "http") != "http":
        raise TypeError(f"a {type(response).__name__} answers an http scope, not a "
                        f"{scope['type']!r} one (a websocket handler sends with "
                        "websocket.send_text(...) and returns nothing)")


async def send_response(self, scope, receive, send) -> None:
    _check_http(self, scope)
    headers = list(self.headers)
    if self.status not in BODYLESS:
        headers.append(("content-length", str(len(self.body))))
    await send({"type": "http.response.start", "status": self.status,
                "headers": encode_headers(headers)})
    head_only = scope.get("method") == "HEAD" or self.status in BODYLESS
    await send({"type": "http.response.body", "body": b"" if head_only else self.body})

Response.__call__ = send_response

# %% [markdown]
# Because a response is an ASGI app, `barelab.call_asgi` (chapter 12's in-process caller)
# can call it directly and show every message. Here is a `GET`, with two cookies. Look at
# the order of the headers: `content-length` comes last, added by `__call__`:

# %%
import barelab

hello = Response("Hello!\n")
hello.set_cookie("sid", "abc123", httponly=True)
hello.set_cookie("theme", "dark")
barelab.call_asgi(hello)

# %% [markdown]
# Two `set-cookie` lines, each with its own attributes, and chapter 09's defaults
# (`Path=/; SameSite=Lax`) filled in. One cookie per line is what RFC 6265 §3 asks: servers
# should not fold several `Set-Cookie` fields into one, because a comma may appear inside a
# cookie's `Expires` date, so a joined line could not be split again.
#
# The same response object, asked for with `HEAD`. Print the last header and the body:

# %%
head_call = barelab.call_asgi(hello, "HEAD")
head_call.headers[-1], head_call.body

# %% [markdown]
# `content-length: 7`, the length a `GET` would get, and an empty body: exactly what RFC
# 9110 §9.3.2 asks of `HEAD`. Finally a `204`. Expect no `content-type` (there is no
# content to describe), no `content-length` (RFC 9110 §8.6: a server MUST NOT send one in a
# 204), and an empty body:

# %%
barelab.call_asgi(Response(status=204)).sent

# %% [markdown]
# An empty header list. The `body` message is still sent, empty: ASGI needs it to know the
# response is complete, and the server puts no bytes on the wire for it.
#
# And the guard: the same response, called with a websocket scope. `call_asgi` re-raises
# what the app raised, so print it:

# %%
try:
    barelab.call_asgi(Response("hi\n"), scope={"type": "websocket"})
except TypeError as error:
    print("TypeError:", error)

# %% [markdown]
# The message names the scope type and says what a WebSocket handler does instead.

# %% [markdown]
# ### JSON, HTML and redirects
#
# Three small subclasses. `JSONResponse` renders with `ensure_ascii=False` (UTF-8 text,
# RFC 8259 §8.1) and `allow_nan=False`, because `NaN` is not JSON and a browser's
# `JSON.parse` would choke on it. `HTMLResponse` changes only the media type.

# %%
#| export
class JSONResponse(Response):
    """``content`` as JSON in UTF-8 (RFC 8259 §8.1)."""

    media_type = "application/json"

    def render(self, content) -> bytes:
        return json.dumps(content, ensure_ascii=False, allow_nan=False).encode("utf-8")


class HTMLResponse(Response):
    """An HTML page: ``text/html; charset=utf-8``."""

    media_type = "text/html; charset=utf-8"

# %% [markdown]
# A redirect is a response with a `Location` header and a 3xx status. Which 3xx? `303`
# after a `POST` ("go and GET this"), `307` or `308` to repeat the same method elsewhere,
# `301` or `302` for a plain move. Any other status is refused. The short text body is
# for clients that do not follow redirects, like `curl` without `-L`.

# %%
#| export
class RedirectResponse(Response):
    """Send the client to ``url``: 302 by default; 303 after a POST; 307/308 keep the method."""

    def __init__(self, url: str, status: int = 302, headers=()):
        if status not in (301, 302, 303, 307, 308):
            raise ValueError(f"a redirect status is 301, 302, 303, 307 or 308, not {status}")
        super().__init__(f"Redirecting to {url}\n", status, headers)
        self.set_header("location", url)

# %% [markdown]
# The `location` value goes through `add_header` too, so a URL with a line break in it is
# refused like any other header. A quick look at all three. Watch the JSON body: `é` is
# two bytes of UTF-8 (`\xc3\xa9`), not the six characters `\u00e9`:

# %%
for response in (JSONResponse({"note": "café"}, status=201), HTMLResponse("<h1>Hi</h1>"),
                 RedirectResponse("/notes/1", 303)):
    print(response, response.headers, response.body)

# %% [markdown]
# The redirect has a `content-type` and a `location`: two headers from two places, the
# class default and `set_header`.

# %% [markdown]
# ### Streaming, and noticing the client has gone
#
# A `StreamingResponse` takes an **async iterable**, usually an async generator, and sends
# each item as it comes. It reuses chapter 12's `stream`, which sends chunks while also
# listening for `http.disconnect`: as soon as the client goes away, the generator is closed
# (its `finally` runs) instead of producing into the void forever. For `HEAD` the generator
# is never started at all.
#
# The constructor only checks that it got an async iterable. A list or a plain generator
# is refused with a `TypeError` that says what to pass instead.

# %%
#| export
class StreamingResponse(Response):
    """A body produced bit by bit by an async iterable of bytes or str. It stops, and the
    iterable is closed, as soon as the client goes away; HEAD never starts it."""

    def __init__(self, content, status: int = 200, headers=(), media_type: str | None = None):
        if not hasattr(content, "__aiter__"):
            raise TypeError(f"a StreamingResponse takes an async iterable (an async "
                            f"generator), not {type(content).__name__}")
        super().__init__(b"", status, headers, media_type)
        self.content = content

# %% [markdown]
# `chunks` encodes `str` items as UTF-8 and makes sure the source is closed however the
# loop ends: normally, by an error, or because nobody reads any more.

# %%
#| export
async def _chunks(self):
    try:
        async for chunk in self.content:
            yield chunk.encode("utf-8") if isinstance(chunk, str) else bytes(chunk)
    finally:
        if hasattr(self.content, "aclose"):
            await self.content.aclose()

# %% [markdown]
# `__call__` has two paths. For `HEAD` or a bodyless status, close the generator unstarted
# and send an ordinary empty response. Otherwise hand the chunks to chapter 12's `stream`
# with the headers, minus `content-type`, which `stream` adds itself.

# %%
#| export
async def _send_stream(self, scope, receive, send) -> None:
    _check_http(self, scope)
    if scope.get("method") == "HEAD" or self.status in BODYLESS:
        if hasattr(self.content, "aclose"):
            await self.content.aclose()
        return await send_response(self, scope, receive, send)
    headers = [(n, v) for n, v in self.headers if n.lower() != "content-type"]
    await stream(send, receive, self.chunks(), status=self.status, headers=headers,
                 content_type=self.header("content-type"))

StreamingResponse.chunks, StreamingResponse.__call__ = _chunks, _send_stream

# %% [markdown]
# Now a generator that never ends, and a client that leaves at once. The generator's
# `finally` appends to the list `closed`, so you can see whether it ran:

# %%
import asyncio

closed = []

async def ticks():
    try:
        n = 0
        while True:
            n += 1
            yield f"tick {n}\n"
            await asyncio.sleep(0.01)
    finally:
        closed.append("the generator was closed")

# %% [markdown]
# The `receive_events` argument tells `call_asgi` exactly what `receive()` returns: the
# request, then `http.disconnect`. Without the disconnect handling, this cell would never
# finish.

# %%
left = [{"type": "http.request"}, {"type": "http.disconnect"}]
call = barelab.call_asgi(StreamingResponse(ticks()), receive_events=left)
print(closed, "| last message:", call.sent[-1]["type"], call.sent[-1].get("more_body"))

# %% [markdown]
# The call returned although the generator never ends, the `finally` ran, and the last
# message still says `more_body: True`: no final empty body was sent, because nobody is
# there to read it. A server that sees the app return in the middle of a chunked body
# closes the connection, which is the right signal: a client that is still there learns
# the body was cut short.

# %% [markdown]
# ## What a handler may return
#
# Most handlers do not need to build a `Response`. `to_response` turns the usual return
# values into one: `str` is text, `bytes` are `application/octet-stream`, a `dict` or `list`
# is JSON, and `None` means "nothing to say": **204 No Content**. Anything else is a bug in
# the handler, reported with its name so it is easy to find. This is the rule FastAPI and
# Flask apply when your view returns a dict; here it is six `if`s.

# %%
#| export
def to_response(value, handler=None) -> Response:
    """What a handler returned, as a Response: str is text, bytes are bytes, a dict or list
    is JSON, None is 204 No Content. Anything else is the handler's bug: TypeError."""
    if isinstance(value, Response):
        return value
    if isinstance(value, str):
        return Response(value)
    if isinstance(value, (bytes, bytearray)):
        return Response(value, media_type="application/octet-stream")
    if isinstance(value, (dict, list)):
        return JSONResponse(value)
    if value is None:
        return Response(status=204)
    name = getattr(handler, "__qualname__", "the handler")
    raise TypeError(f"{name} returned {type(value).__name__}; a handler returns a Response, "
                    "str, bytes, dict, list or None")

# %% [markdown]
# Each usual value, with the status and content type it becomes, then the mistake. (The
# `handler=` argument names the culprit; `to_response` stands in for a handler here.)

# %%
for value in ("hi", b"\x00\x01", {"ok": True}, [1, 2], None):
    response = to_response(value)
    print(f"{value!r:14} -> {response.status} {response.header('content-type')}")
try:
    to_response(42, handler=to_response)
except TypeError as error:
    print("TypeError:", error)

# %% [markdown]
# `None` became a 204 with no content type at all, as the constructor promised. And the
# `TypeError` names the function, so in a log with forty endpoints you know where to look.

# %% [markdown]
# ## Error responses: JSON or text, never a traceback
#
# An `HTTPException` becomes a short response. Which format? An API client that sent
# `Accept: application/json` should get JSON it can parse; `curl` and browsers (which send
# `*/*` or `text/html`) get one line of text. `wants_json` ranks the two media types the
# way RFC 9110 §12.5.1 says, quality values (`q=`) and wildcards included.
#
# An `Accept` value is a list like `text/html, application/*;q=0.8`: each entry is a media
# range, optionally with a quality `q` from 0 to 1 (1 if absent). `_ranks` turns it into
# a dict from range to quality. A `q` that is not a number between 0 and 1 counts as 0.

# %%
#| export
def _ranks(accept: str) -> dict[str, float]:
    ranks = {}
    for entry in accept.split(","):
        kind, *params = [part.strip().lower() for part in entry.split(";")]
        q = next((value for name, _, value in (p.partition("=") for p in params)
                  if name.strip() == "q"), "1")
        try:
            ranks[kind] = float(q) if 0 <= float(q) <= 1 else 0.0
        except ValueError:
            ranks[kind] = 0.0                 # a broken q (RFC 9110 §12.4.2) is no preference
    return ranks

# %% [markdown]
# `_ranks` maps each media range to its quality. `wants_json` then asks how much the client
# likes each of the two types, looking for the exact type first, then its family
# (`application/*`), then `*/*`, and picks JSON only if it wins outright.

# %%
#| export
def wants_json(accept: str | None) -> bool:
    """Does this Accept field rank application/json above text/plain (RFC 9110 §12.5.1)?"""
    ranks = _ranks(accept or "")
    def rank(kind):
        family = kind.split("/")[0] + "/*"
        return ranks.get(kind, ranks.get(family, ranks.get("*/*", 0.0)))
    return rank("application/json") > rank("text/plain")

# %% [markdown]
# Six `Accept` values a client might send, from none at all to a family wildcard:

# %%
for accept in (None, "*/*", "application/json", "text/html,*/*;q=0.8",
               "text/plain;q=0.5, application/json", "application/*"):
    print(f"{accept!r:38} -> {'JSON' if wants_json(accept) else 'text'}")

# %% [markdown]
# A tie goes to text: `None` and `*/*` like both types equally, so `curl` and browsers get
# text. `text/html,*/*;q=0.8` likes text/plain at 0.8 (through `*/*`) and JSON at 0.8 too:
# another tie. `application/*` likes JSON and says nothing of text/plain, so JSON wins.
#
# Now the response itself: `status`, `error` and `detail` in JSON, or
# one line of text, with the exception's headers (a 405's `Allow`, for example) either way.

# %%
#| export
def error_response(error: HTTPException, accept: str | None = None) -> Response:
    """The response for an HTTPException: JSON for clients that prefer it, else text."""
    if wants_json(accept):
        return JSONResponse({"status": error.status, "error": reason_phrase(error.status),
                             "detail": error.detail}, error.status, error.headers)
    text = f"{error.status} {reason_phrase(error.status)}: {error.detail}\n"
    return Response(text, error.status, error.headers)

# %% [markdown]
# One exception, rendered for a client that sent no `Accept`, then for one that wants JSON:

# %%
missing = HTTPException(404, "no note 7")
print(error_response(missing).body)
print(error_response(missing, "application/json").body)

# %% [markdown]
# And an exception that is *not* an `HTTPException`? That is a bug, and its text may hold
# anything: a file path, a SQL query, a secret from a config. So the client gets a fixed
# `500 Internal Server Error` and nothing more. The traceback is for the developer, and it
# goes where developers look: `bare` re-raises the exception after sending the 500, and
# every ASGI server logs an exception that escapes the app (barelab in `server.log`,
# uvicorn on its terminal). Starlette does the same. You will see both sides of this
# once `bare` can run a handler, in "A first `bare` app" below.

# %% [markdown]
# ## The `Bare` app
#
# Now the framework object. It keeps the routes in one list in the order they were added
# (routes, WebSocket routes and mounts together: the first match wins, as in chapter 08),
# the app's own `state`, the lifespan pieces, and the middleware stack. The stack is built
# once, on the first call, with chapter 07's `compose`.
#
# The constructor only stores things. Each piece of state gets a comment saying who uses it.

# %%
#| export
class Bare:
    """A small ASGI framework: ``app = Bare()``, then routes with ``@app.get(...)``.

    ``name`` names the app (barelab.serve names its server after it). ``middleware`` lists
    ASGI middleware factories (a class, or functools.partial of one),
    outermost first: ``[A, B]`` makes ``A(B(core))``. ``lifespan`` is an async context
    manager factory ``lifespan(app)`` whose yielded dict goes into scope["state"].
    """

    def __init__(self, *, name: str = "bare", middleware=(), lifespan=None,
                 max_body: int = MAX_BODY):
        self.name = name              # barelab.serve names its server after it
        self.routes: list = []        # Route, WebSocketRoute and Mount, in declaration order
        self.state = State()          # the app's own, for request.app_state
        self.lifespan, self.max_body = lifespan, max_body
        self.startup_hooks, self.shutdown_hooks = [], []
        self.middleware, self.stack = list(middleware), None
        self.exception_handlers = {}  # {exception class: handler}, used by respond

    def __repr__(self) -> str:
        return "\n".join(["<Bare>", *(f"  {entry!r}" for entry in self.routes)])

# %% [markdown]
# Calling a `Bare` object is calling its middleware stack. Chapter 07's `compose(core, A, B)`
# is `A(B(core))`, so the first middleware in the list is the **outermost**: the first to see
# a request and the last to see the response. The stack is built on the first call rather
# than in `__init__`: `core`, the innermost app, is attached a few cells below, and in this
# notebook some `Bare` objects are made before that.

# %%
#| export
async def _call_stack(self, scope, receive, send) -> None:
    if self.stack is None:            # built on the first call, once every part exists
        self.stack = compose(self.core, *self.middleware)
    await self.stack(scope, receive, send)

Bare.__call__ = _call_stack

# %% [markdown]
# An empty app shows its route table, which has nothing in it yet:

# %%
Bare()

# %% [markdown]
# ### Adding routes
#
# A route is chapter 08's `Route`: a template such as `/notes/{id:int}`, compiled to a
# regular expression, with converters that turn the matched text into an `int` (or a
# `uuid.UUID`, or a `path`). It does not care that its "app" is now an async handler
# instead of a WSGI app. Two checks happen when a route is *added*, so that mistakes show
# up when the program starts, never on a request: the handler must be an `async def`, and
# the route must be reachable (chapter 08's `unreachable_reason`).
#
# Why insist on `async def`? A plain `def` handler would run on the event loop and block
# every other request while it works; a framework that quietly accepted it would hide the
# problem until the app was under load.

# %%
#| export
def _check_handler(handler, what: str) -> None:
    if not inspect.iscoroutinefunction(handler):
        raise TypeError(f"a {what} handler is an 'async def' function taking one argument, "
                        f"not {handler!r}")


def add_route(self, path: str, handler, methods=("GET",), name: str | None = None) -> Route:
    """Answer ``methods`` on ``path`` (a chapter-08 template) with ``await handler(request)``."""
    _check_handler(handler, "route")
    route = Route(path, handler, methods, name)
    earlier = [entry for entry in self.routes if not isinstance(entry, WebSocketRoute)]
    reason = unreachable_reason(earlier, route)
    if reason:
        raise ValueError(f"route {path!r} can never be reached: {reason}")
    self.routes.append(route)
    return route

# %% [markdown]
# The decorators are thin layers over `add_route`. Each returns the handler unchanged, so
# a handler stays a plain function you can call in a test. `GET` routes answer `HEAD` too:
# chapter 08's `allowed_methods` adds it. The five one-line shortcuts at the end are the
# `@app.get(...)`, `@app.post(...)` you know from Flask and FastAPI.

# %%
#| export
def route(self, path: str, methods=("GET",), name: str | None = None):
    """Decorator form of add_route; the handler is returned unchanged."""
    def register(handler):
        self.add_route(path, handler, methods, name)
        return handler
    return register

Bare.add_route, Bare.route = add_route, route
Bare.get = lambda self, path, name=None: self.route(path, ["GET"], name)
Bare.post = lambda self, path, name=None: self.route(path, ["POST"], name)
Bare.put = lambda self, path, name=None: self.route(path, ["PUT"], name)
Bare.patch = lambda self, path, name=None: self.route(path, ["PATCH"], name)
Bare.delete = lambda self, path, name=None: self.route(path, ["DELETE"], name)

# %% [markdown]
# WebSocket routes live in the same list, as a subclass of chapter 08's `Route` so the
# router can tell them apart. The template, converters and matching are inherited
# unchanged; only the `repr` differs, and the method is always `GET`, because a WebSocket
# handshake is a `GET` request (RFC 6455 §4.1).

# %%
#| export
class WebSocketRoute(Route):
    """A route for websocket scopes (the handshake is a GET, RFC 6455 §4.1)."""

    def __repr__(self) -> str:
        return f"<WebSocketRoute {self.template} -> {self.name}>"


def websocket_route(self, path: str, name: str | None = None):
    """Decorator: accept WebSockets on ``path`` with ``await handler(websocket)``."""
    def register(handler):
        _check_handler(handler, "websocket")
        self.routes.append(WebSocketRoute(path, handler, ["GET"], name))
        return handler
    return register

# %% [markdown]
# A mount is chapter 08's `Mount`: a prefix and any ASGI app behind it. Chapter 08 mounted
# WSGI apps; the class does not care what the app is, so it mounts ASGI apps just as well.

# %%
#| export
def mount(self, prefix: str, app) -> Mount:
    """Hand ``prefix`` and every path below it (http and websocket) to another ASGI app."""
    entry = Mount(prefix, app)
    self.routes.append(entry)
    return entry

Bare.websocket, Bare.mount = websocket_route, mount

# %% [markdown]
# Time to use them. Make an app `demo` with one route whose template has a typed
# parameter. This app grows through the rest of the chapter:

# %%
demo = Bare()

@demo.get("/notes/{id:int}")
async def one_note(request):
    return {"id": request.path_params["id"]}

demo

# %% [markdown]
# `GET, HEAD`: the `HEAD` came for free. Now the mistakes, made on purpose: a plain `def`
# handler, a converter that does not exist, and a route hidden behind an earlier one.
# Each raises when the route is *added*:

# %%
def sync_handler(request):
    return "hi"

for attempt in (lambda: demo.add_route("/sync", sync_handler),
                lambda: demo.get("/notes/{id:float}")(one_note),
                lambda: demo.get("/notes/7")(one_note)):
    try:
        attempt()
    except (TypeError, ValueError) as error:
        print(f"{type(error).__name__}: {error}")

# %% [markdown]
# The third one is worth reading: `/notes/7` matches `/notes/{id:int}`, which was declared
# first, so the new route could never be reached. The fix is to declare the fixed path
# first. None of the three was added: `demo` still has its one route.

# %% [markdown]
# ### Lifespan: hooks or a context manager
#
# Chapter 14 ended with `run_lifespan`, which speaks the protocol around any async context
# manager. `bare` offers two ways to say what happens at startup and shutdown, and turns
# both into one context manager:
#
# - `Bare(lifespan=...)`: a function that takes the app and returns an async context
#   manager whose `yield` gives a dict of state (Starlette's `lifespan=`, exactly);
# - `@app.on_startup` and `@app.on_shutdown` hooks: `async def hook(state)`, where `state`
#   is a `State`, so `state.db = ...` adds to the state.

# %%
#| export
def on_startup(self, hook):
    """Decorator: ``async def hook(state)`` runs at startup; what it sets on ``state``
    goes into scope["state"], so every request finds it in ``request.state``."""
    self.startup_hooks.append(hook)
    return hook

def on_shutdown(self, hook):
    """Decorator: ``async def hook(state)`` runs at shutdown, in reverse order of adding."""
    self.shutdown_hooks.append(hook)
    return hook

Bare.on_startup, Bare.on_shutdown = on_startup, on_shutdown

# %% [markdown]
# The combined context manager enters the `lifespan=` one first, then runs the startup
# hooks; at shutdown it runs the shutdown hooks, then leaves the `lifespan=` one. What they
# made is yielded to `run_lifespan`, which **updates** `scope["state"]` with it, never
# replaces it (chapter 14's trap).

#
# An app without `lifespan=` still needs *something* to enter, so `_no_lifespan` is a
# context manager that yields nothing.

# %%
#| export
@asynccontextmanager
async def _no_lifespan():
    yield None

# %% [markdown]
# Now the combined one. Each hook gets a fresh `State` around the same `data` dict, so
# whatever a hook sets lands in `data`. `yield data or None` yields `None` when nothing
# was set: chapter 14's `run_lifespan` then leaves `scope["state"]` alone.

# %%
#| export
@asynccontextmanager
async def app_lifespan(app: "Bare"):
    """The lifespan= context manager (if any) around the hooks; yields the state they made."""
    data: dict = {}
    async with (app.lifespan(app) if app.lifespan else _no_lifespan()) as given:
        data.update(given or {})
        for hook in app.startup_hooks:
            await hook(State(data))
        try:
            yield data or None
        finally:
            for hook in reversed(app.shutdown_hooks):
                await hook(State(data))

# %% [markdown]
# ### The core: three kinds of scope
#
# The innermost app, below all middleware, looks at the scope type. `lifespan` goes to
# `run_lifespan`, `http` and `websocket` to their handlers. A scope type `bare` does not
# know is an error: that is how the ASGI spec says an app declines. This is chapter 11's
# picture of an ASGI app, three kinds of scope behind one callable, now with real work
# behind each branch.

# %%
#| export
async def core(self, scope, receive, send) -> None:
    """The innermost ASGI app: lifespan, then http and websocket dispatch."""
    if scope["type"] == "lifespan":
        await run_lifespan(scope, receive, send, app_lifespan(self))
    elif scope["type"] == "http":
        await self.handle_http(scope, receive, send)
    elif scope["type"] == "websocket":
        await self.handle_websocket(scope, receive, send)
    else:
        raise RuntimeError(f"bare speaks http, websocket and lifespan, not {scope['type']!r}")

Bare.core = core

# %% [markdown]
# The lifespan branch already works, because `run_lifespan` and `app_lifespan` exist. An
# app with no hooks at all completes startup and shutdown:

# %%
[message["type"] for message in barelab.call_lifespan(Bare()).sent]

# %% [markdown]
# ### Finding the route
#
# Which path do the routes match? The ASGI spec says `path` is the full path and
# `root_path` the prefix the app is mounted at ("`PATH_INFO` can be derived by stripping
# `root_path` from `path`"). So an app mounted at `/admin` gets `path="/admin/users"` and
# `root_path="/admin"`, and matches its routes against `/users`. Starlette and uvicorn
# follow the same rule.

# %%
#| export
def route_path(scope: dict) -> str:
    """The path below root_path: what the routes match (ASGI: path includes root_path)."""
    path, root = scope["path"], scope.get("root_path", "")
    if root and (path == root or path.startswith(root + "/")):
        return path[len(root):] or "/"
    return path

# %% [markdown]
# Three scopes: mounted at `/admin`, mounted but at the prefix itself, and not mounted:

# %%
[route_path({"path": p, "root_path": r})
 for p, r in (("/admin/users", "/admin"), ("/admin", "/admin"), ("/users", ""))]

# %% [markdown]
# `find` walks the list once. A mount takes its prefix and everything below it, on a
# segment boundary (`/admin` and `/admin/x`, never `/administrator`). A route of the other
# kind is skipped. A route whose template matches but whose methods do not adds its
# methods to `allowed`: that is how a 405 knows its `Allow` header.
#
# The result has three shapes, so read the docstring before the loop. The `:=` in the
# last branch stores the match and tests it in one line: `params` is the dict of typed
# parameters, or `None` when the template does not match.
#
# One path is no path at all: `OPTIONS *` asks about the server as a whole (RFC 9110
# §9.3.7, RFC 9112 §3.2.4). For it, every method of every HTTP route is "allowed".

# %%
#| export
def find(self, scope: dict):
    """What takes this scope: ``(Mount, None)``, ``(route, params)``, or ``(None, allowed)``
    with the methods other routes on this path allow (empty: nothing is here)."""
    path, allowed = route_path(scope), set()
    if path == "*":                             # OPTIONS *: the whole server
        return None, {method for entry in self.routes if isinstance(entry, Route)
                      and not isinstance(entry, WebSocketRoute) for method in entry.methods}
    for entry in self.routes:
        if isinstance(entry, Mount):
            if path == entry.prefix or path.startswith(entry.prefix + "/"):
                return entry, None
        elif isinstance(entry, WebSocketRoute) != (scope["type"] == "websocket"):
            continue                            # a route for the other kind of scope
        elif (params := entry.match(path)) is not None:
            if scope["type"] == "websocket" or scope["method"] in entry.methods:
                return entry, params
            allowed |= entry.methods
    return None, allowed

Bare.find = find

# %% [markdown]
# Ask `demo` about four requests: one that matches, one on the right path with the wrong
# method, one on no path at all, and `OPTIONS *`.

# %%
for method, path in (("GET", "/notes/7"), ("DELETE", "/notes/7"), ("GET", "/nowhere"),
                     ("OPTIONS", "*")):
    entry, found = demo.find({"type": "http", "method": method, "path": path})
    shown = sorted(found) if isinstance(found, set) else found    # a set prints in any order
    print(f"{method:6} {path:9} -> {entry}, {shown}")

# %% [markdown]
# A match gives the route and its parameters, `{'id': 7}`, already an `int`.
# The wrong method gives no route but the methods that *would* work. Nothing at all gives
# an empty list: that will be a 404. `*` gives every method the app routes anywhere.

# %% [markdown]
# When nothing takes the request, `refusal` says what to answer: 404 if no route has this
# path; **405** with `Allow` if some route has it for other methods (RFC 9110 §15.5.6: the
# `Allow` header is a MUST); and for `OPTIONS`, a 204 that lists the methods, which is
# what the method is for (RFC 9110 §9.3.7). It *returns* the exception rather than raising
# it, so the caller decides; you will see why in `respond`.
#
# The two refusals get their own `HTTPException` subclasses, so an exception handler can
# pick them out, and a 405 carries its methods as a list, `.allowed`, not only as text:

# %%
#| export
class NotFound(HTTPException):
    """404: nothing is at this path."""

    def __init__(self, detail: str | None = None, headers=()):
        super().__init__(404, detail, headers)


class MethodNotAllowed(HTTPException):
    """405: the path exists for other methods; ``.allowed`` lists them, sorted."""

    def __init__(self, allowed, detail: str | None = None):
        allowed = set(allowed) | ({"HEAD"} if "GET" in allowed else set())
        self.allowed = sorted(allowed)
        super().__init__(405, detail, [("allow", ", ".join(self.allowed))])

# %% [markdown]
# A `GET` route answers `HEAD` too, so the list says so even when you forget it:

# %%
refused = MethodNotAllowed({"POST", "GET"})
refused.allowed, refused.headers, isinstance(refused, HTTPException)

# %% [markdown]
# The header is made from the list, so the two cannot disagree, and it is still an
# `HTTPException`: everything that handles one handles a refusal the same way as before.

# %% [markdown]
# Now `refusal`. `OPTIONS` joins the allowed list because `bare` answers it everywhere:

# %%
#| export
def refusal(scope: dict, allowed: set):
    """The answer when no route takes the request: 404, 405 with Allow, or OPTIONS's 204."""
    if not allowed:
        return NotFound(f"nothing here at {scope['path']}")
    allowed = set(allowed) | {"OPTIONS"}
    if scope["method"] == "OPTIONS":
        return Response(status=204, headers=[("allow", ", ".join(sorted(allowed)))])
    return MethodNotAllowed(allowed, f"{scope['method']} is not allowed here; "
                                     f"allowed: {', '.join(sorted(allowed))}")

# %% [markdown]
# ### Answering an http scope
#
# `handle_http` first protects `HEAD` once more: whatever app answers (a `bare` handler or
# a mounted app that knows nothing about `HEAD`), every body byte is dropped on the way
# out. `without_body` is a *send wrapper*, the middleware trick of chapter 16: a function
# that looks like `send`, changes the message, and passes it on.

# %%
#| export
def without_body(send):
    """A send that drops every body byte: the answer to HEAD, whatever the app sends."""
    async def send_head_only(message):
        if message["type"] == "http.response.body" and message.get("body"):
            message = {**message, "body": b""}
        await send(message)
    return send_head_only

# %% [markdown]
# Handing a scope to a mounted app is the same for http and websocket: add the mount's
# prefix to `root_path`, so the mounted app's own router strips it (with `route_path`
# above), and call the app with everything else unchanged.

# %%
#| export
async def _call_mount(entry: Mount, scope, receive, send) -> None:
    root = scope.get("root_path", "") + entry.prefix
    await entry.app({**scope, "root_path": root}, receive, send)

# %% [markdown]
# Then the dispatch itself: find the entry, hand a mount its scope, or build the `Request`
# and let `respond` (next) run the handler. The `Request` gets the matched parameters in
# its scope, which is where `request.path_params` reads them.

# %%
#| export
async def handle_http(self, scope, receive, send) -> None:
    if scope["method"] == "HEAD":
        send = without_body(send)
    entry, found = self.find(scope)
    if isinstance(entry, Mount):
        return await _call_mount(entry, scope, receive, send)
    request = Request({**scope, "path_params": found or {}}, receive, self,
                      max_body=self.max_body)
    await self.respond(request, entry, found, send)

Bare.handle_http = handle_http

# %% [markdown]
# And `respond`, the heart of the error rules. It watches `send` to know whether the
# response has started, because that decides what can still be done:
#
# - an `HTTPException` before the start: send the error response;
# - the client left while we read its body (`RequestAborted`): nobody to answer;
# - any other exception before the start: send a generic 500, then re-raise for the log;
# - any exception *after* the start: the status line is already out, so re-raise, and the
#   server cuts the connection, which tells the client the response is incomplete.
#
# `watched` is another send wrapper. It sets a flag on itself the first time a message
# goes through:

# %%
#| export
def watched(send):
    """A send that remembers whether the response has started: ``.started``."""
    async def watching_send(message):
        watching_send.started = True
        await send(message)
    watching_send.started = False
    return watching_send

# %% [markdown]
# `_outcome` is the happy path: the refusal when no route matched, else the handler's
# return value made into a `Response` by `to_response`. A refusal that is an
# `HTTPException` is raised here, so that it goes through the same `except` as one raised
# by a handler.

# %%
#| export
async def _outcome(request: Request, route, found) -> Response:
    if route is None:
        outcome = refusal(request.scope, found)
        if isinstance(outcome, HTTPException):
            raise outcome
        return outcome
    return to_response(await route.app(request), route.app)

# %% [markdown]
# What should the answer to an error be? `bare` has defaults, and lets the app replace
# them for any class of error: `app.exception_handlers` maps an exception class to
# `async def handler(request, error)`. It starts empty; the section on hooks below fills
# it. `handler_for` walks the error's MRO, its class and then each base class, so a
# handler for `LookupError` also catches a `KeyError`. The walk stops at
# `HTTPException`: its default rendering counts as a handler there, so a catch-all
# handler for `Exception` never swallows a 404.

# %%
#| export
def handler_for(self, error: Exception):
    """The handler registered for the nearest class in the error's MRO, or None."""
    for kind in type(error).__mro__:
        if kind in self.exception_handlers:
            return self.exception_handlers[kind]
        if kind is HTTPException:
            return None                         # the default rendering is nearer
    return None

Bare.handler_for = handler_for

# %% [markdown]
# `answer_error` returns two things: the response to send, and the error to re-raise
# once it is sent (for the server's log), or `None`. Without a handler, the defaults:
# an `HTTPException` is rendered and that is all; anything else is a bug, so a bare 500
# and the error goes to the log. A handler's result goes through `to_response` like a
# route's. A handler that fails is a bug too: 500, and *its* error goes to the log.

# %%
#| export
SERVER_ERROR = "500 Internal Server Error\n"


async def answer_error(self, request: Request, error: Exception):
    """(the response for ``error``, the exception to re-raise after sending it, or None)."""
    handler = self.handler_for(error)
    if handler is None and isinstance(error, HTTPException):
        return error_response(error, request.headers.get("accept")), None
    if handler is None:
        return Response(SERVER_ERROR, 500), error
    try:
        result = handler(request, error)
        result = await result if inspect.isawaitable(result) else result
        return to_response(result, handler), None
    except Exception as handler_error:
        return Response(SERVER_ERROR, 500), handler_error

Bare.answer_error = answer_error

# %% [markdown]
# One more piece before `respond`: the work a handler asked to do *after* the response
# (`request.call_after_response`, below). Each callback may be sync or async, and a
# failing one is logged with the `logging` module and skipped, so the others still run.

# %%
#| export
logger = logging.getLogger("bare")


async def run_after_response(request: Request) -> None:
    """Run the request's after-response callbacks in order; log (never raise) failures."""
    for fn, args, kwargs in request.after_response:
        try:
            result = fn(*args, **kwargs)
            if inspect.isawaitable(result):
                await result
        except Exception:
            logger.exception("after-response callback %s failed",
                             getattr(fn, "__qualname__", repr(fn)))

# %% [markdown]
# And `respond`, with the bullets above. `RequestAborted` skips everything; so does an
# error after the start, which is re-raised. Otherwise `answer_error` decides, the answer
# goes out with the plain `send`, and the error to log is re-raised. The `finally` runs
# the after-response work in every case, once the last byte has left.

# %%
#| export
async def respond(self, request: Request, route, found, send) -> None:
    watching = watched(send)
    try:
        outcome = await _outcome(request, route, found)
        await outcome(request.scope, request.receive, watching)
    except RequestAborted:
        return                                  # the client left: nobody to answer
    except Exception as error:
        if watching.started:
            raise                               # the server cuts the connection
        response, to_log = await self.answer_error(request, error)
        await response(request.scope, request.receive, send)
        if to_log is not None:
            raise to_log                        # the server logs the traceback
    finally:
        await run_after_response(request)

Bare.respond = respond

# %% [markdown]
# ## A first `bare` app, in-process
#
# Every piece is in place: `demo` is a complete ASGI app. Add three handlers to it (it
# already has `/notes/{id:int}`): a greeting that reads the query, one that fails, and one
# that returns something it should not. The first request goes to the greeting.

# %%
@demo.get("/")
async def greet(request):
    return f"Hello, {request.query.get('name', 'world')}!\n"

@demo.get("/crash")
async def crash(request):
    return {"ratio": 1 / 0}

@demo.get("/oops")
async def oops(request):
    return 42

barelab.call_asgi(demo, "GET", "/", query="name=Ada")

# %% [markdown]
# Your handler was one line; `bare` parsed the query, made the text a response and added
# both headers. The typed parameter arrives as an `int` (chapter 08's converter), and a
# path that does not fit the converter is not a match at all, so it is a 404:

# %%
for path in ("/notes/7", "/notes/seven"):
    call = barelab.call_asgi(demo, "GET", path)
    print(path, call.status, call.body)

# %% [markdown]
# Now the bug. `call_asgi` re-raises an exception that escapes the app, as a server would
# log it; `raise_errors=False` keeps it in `call.exception` so you can look at both sides,
# what the client got and what the log gets:

# %%
call = barelab.call_asgi(demo, "GET", "/crash", raise_errors=False)
print("the client got:", call.status, call.body)
print("the log gets:  ", repr(call.exception))

# %% [markdown]
# The client learns nothing but "500", the developer gets the `ZeroDivisionError` with its
# traceback. The handler returning `42` is the same kind of bug, with a message that names
# the handler:

# %%
call = barelab.call_asgi(demo, "GET", "/oops", raise_errors=False)
print(call.status, call.body, "|", call.exception)

# %% [markdown]
# ### 404, 405 and OPTIONS
#
# `/notes/7` exists for `GET` only. Three requests to it, with three different methods, and
# one to a path that does not exist:

# %%
for method, path in (("DELETE", "/notes/7"), ("OPTIONS", "/notes/7"), ("HEAD", "/notes/7"),
                     ("GET", "/nowhere")):
    call = barelab.call_asgi(demo, method, path)
    print(f"{method:7} {path:9} {call.status} allow={dict(call.headers).get('allow')} "
          f"body={call.body!r}")

# %% [markdown]
# `DELETE` is a 405 that lists what *is* allowed; `OPTIONS` answers the same list with a
# 204; `HEAD` gets a 200 with no body (its `GET` handler ran, `without_body` and `Response`
# dropped the bytes). The path that does not exist has no `allow` at all. Ask for JSON and
# the same 405 comes as JSON, the format an API client can parse:

# %%
barelab.call_asgi(demo, "DELETE", "/notes/7", headers=[("accept", "application/json")]).body

# %% [markdown]
# ### Mounting another ASGI app
#
# A mount hands a whole subtree to another ASGI app: another `Bare`, a Starlette app, or a
# hand-written one from chapter 12. This mounted app is a bare ASGI function that reports
# the two paths it sees. It sends its answer with a `Response`, which works anywhere
# because a response is an ASGI app:

# %%
async def where_am_i(scope, receive, send):
    text = f"root_path={scope['root_path']!r} path={scope['path']!r}\n"
    await Response(text)(scope, receive, send)

demo.mount("/legacy", where_am_i)
for path in ("/legacy", "/legacy/report", "/legacyx"):
    print(path, barelab.call_asgi(demo, "GET", path).text, end="")

# %% [markdown]
# Below the mount, `path` is the full path and `root_path` the prefix: the mounted app
# would strip one from the other with `route_path`. `/legacyx` is not below `/legacy` (a
# segment boundary matters), so `bare` answered 404 itself with its own text.

# %% [markdown]
# ## Hooks: your own error answers, and work after the response
#
# The defaults are right for a small app, but a bigger one wants to decide, say, that a
# `KeyError` from its data layer is a 404, or to send an e-mail *after* the client has
# its answer. `respond` already consults `app.exception_handlers` and
# `request.after_response`; two small methods fill them.
#
# ### Exception handlers
#
# `add_exception_handler` stores one handler per class, and `exception_handler` is its
# decorator form, the same pair as `add_route` and `route`:

# %%
#| export
def add_exception_handler(self, kind: type, handler) -> None:
    """Answer errors of class ``kind`` (and its subclasses) with ``handler(request, error)``."""
    if not (isinstance(kind, type) and issubclass(kind, Exception)):
        raise TypeError(f"exception handlers are for Exception classes, not {kind!r}")
    self.exception_handlers[kind] = handler


def exception_handler(self, kind: type):
    """Decorator form of add_exception_handler; the handler is returned unchanged."""
    def register(handler):
        self.add_exception_handler(kind, handler)
        return handler
    return register

Bare.add_exception_handler, Bare.exception_handler = add_exception_handler, exception_handler

# %% [markdown]
# A shop whose handler looks items up in a dict, and a handler for `LookupError`, the
# base class of `KeyError`. It returns a dict, which `to_response` makes JSON, but JSON
# answers 200; a `JSONResponse` sets the status:

# %%
shop = Bare(name="shop")
items = {"apple": 3}

@shop.get("/items/{name}")
async def item(request):
    return {"name": request.path_params["name"], "stock": items[request.path_params["name"]]}

@shop.exception_handler(LookupError)
async def no_such_thing(request, error):
    return JSONResponse({"missing": error.args[0]}, 404)

for path in ("/items/apple", "/items/pear", "/nowhere"):
    call = barelab.call_asgi(shop, "GET", path)
    print(path, call.status, call.body)

# %% [markdown]
# The pear's `KeyError` found the `LookupError` handler through the MRO: a 404 in JSON,
# and nothing for the log (`call_asgi` would have raised it). `/nowhere` still got the
# default text 404: a router's `NotFound` is no `LookupError`. A handler can also pick
# out the router's refusals by their class. Here the 405 lists its methods as JSON:

# %%
@shop.exception_handler(MethodNotAllowed)
def wrong_method(request, error):                  # a plain def works too
    return JSONResponse({"allowed": error.allowed}, 405, error.headers)

call = barelab.call_asgi(shop, "DELETE", "/items/apple")
print(call.status, dict(call.headers)["allow"], call.body)

# %% [markdown]
# Passing `error.headers` on keeps the `Allow` header a 405 must carry; the body gives a
# client the same list as data it can parse. The handler was a plain `def`:
# `answer_error` awaits a result only when it is awaitable.

# %% [markdown]
# A handler that fails is a bug like any other: the client gets the plain 500, and the
# log gets the *handler's* error, with the original one attached as its context:

# %%
@shop.exception_handler(ZeroDivisionError)
async def broken(request, error):
    return error.no_such_attribute

@shop.get("/ratio")
async def ratio(request):
    return {"ratio": 1 / 0}

call = barelab.call_asgi(shop, "GET", "/ratio", raise_errors=False)
print(call.status, call.body, "|", repr(call.exception), "|", repr(call.exception.__context__))

# %% [markdown]
# ### Work after the response
#
# `request.call_after_response(fn, *args, **kwargs)` notes a call for later; `respond`'s
# `finally` runs it once the response is out (`run_after_response`, above). Sync and
# async functions both work, in the order they were added:

# %%
#| export
def call_after_response(self, fn, *args, **kwargs) -> None:
    """Call ``fn(*args, **kwargs)`` (sync or async) once the response has been sent."""
    self.after_response.append((fn, args, kwargs))

Request.call_after_response = call_after_response

# %% [markdown]
# To see *when* the callbacks run, a middleware notes in `events` when the last body
# message passes on its way to the client. The handler adds two callbacks, an async one
# and a sync one that fails, then an async one again:

# %%
events = []

class NoteSent:
    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        async def noting_send(message):
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body"):
                events.append("client has the response")
        await self.app(scope, receive, noting_send)

# %% [markdown]
# The failing callback will log its error on the `"bare"` logger. To read the log here,
# instead of on stderr, a tiny `logging.Handler` keeps the records in a list:

# %%
import logging

records = []

class KeepRecords(logging.Handler):
    def emit(self, record):
        records.append(record)

# %% [markdown]
# Now the app. `send_mail` stands for slow work the client should not wait for:

# %%
mailer = Bare(name="mailer", middleware=[NoteSent])

async def send_mail(to):
    events.append(f"mail sent to {to}")

@mailer.post("/signup")
async def signup(request):
    request.call_after_response(send_mail, "ada@example.org")
    request.call_after_response(lambda: 1 / 0)
    request.call_after_response(send_mail, to="admin@example.org")
    events.append("handler returns")
    return "welcome\n"

# %% [markdown]
# One request, with the handler on the logger only for its duration:

# %%
events.clear(), records.clear()
bare_log, keep = logging.getLogger("bare"), KeepRecords()
bare_log.addHandler(keep)
try:
    print(barelab.call_asgi(mailer, "POST", "/signup").status)
finally:
    bare_log.removeHandler(keep)
events

# %% [markdown]
# Read the list in order: the handler returned, the client had the whole response, and
# only then did the mails go out. The failing lambda between them did not stop the second
# mail and did not touch the response, a 200. Its error is in the log:

# %%
[(r.name, r.levelname, r.getMessage(), type(r.exc_info[1]).__name__) for r in records]

# %% [markdown]
# With no handler of your own, `logging` prints that record and its traceback to stderr,
# which is where a server's log goes.

# %% [markdown]
# ## Middleware, outermost first
#
# `Bare(middleware=[...])` takes ASGI middleware factories: anything that, called with an
# app, returns an app. A class from chapter 16 is one; `functools.partial` adds options.
# The order is the one you read: the first is the outermost.
#
# A tiny middleware shows the order. `Tracer` notes in a list when it sees a request go
# in and when its response starts coming out; `name` tells two of them apart:

# %%
import functools

trace = []

class Tracer:
    def __init__(self, app, name):
        self.app, self.name = app, name

    async def __call__(self, scope, receive, send):
        trace.append(f"{self.name} in")
        async def traced_send(message):
            if message["type"] == "http.response.start":
                trace.append(f"{self.name} out")
            await send(message)
        await self.app(scope, receive, traced_send)

# %% [markdown]
# Two tracers, `outer` listed first, around a handler that notes when it runs:

# %%
layered = Bare(middleware=[functools.partial(Tracer, name="outer"),
                           functools.partial(Tracer, name="inner")])

@layered.get("/")
async def layered_home(request):
    trace.append("handler")
    return "ok"

trace.clear()
barelab.call_asgi(layered)
trace

# %% [markdown]
# `outer` sees the request first and the response last: it wraps everything. Real
# middleware from chapter 16 plugs in the same way. `RequestID` gives each request an id,
# puts it in `scope["state"]` (so the handler sees it in `request.state`) and in a
# response header:

# %%
from barelab.built.asgi_middleware import RequestID

traced = Bare(middleware=[RequestID])

@traced.get("/")
async def show_id(request):
    return {"request_id": request.state.request_id}

call = barelab.call_asgi(traced)
print(call.body.decode(), dict(call.headers)["x-request-id"])

# %% [markdown]
# The same id twice: in the JSON body (the handler read `request.state`) and in the
# `x-request-id` header (the middleware added it on the way out). The ids are 32 hex
# digits, new on every run. Note where `bare`'s own error handling sits:
# inside the middleware. A middleware always sees a proper response, even a 500, so an
# access log in chapter 16's style logs the 500 instead of a missing response.

# %% [markdown]
# ### Adding middleware later, and when it is too late
#
# A plugin (chapter 23's background tasks, say) wants to add its middleware to an app that
# already exists. `add_middleware` appends one factory, with options through
# `functools.partial`, as innermost so far. But the stack is built once, on the first
# call: a middleware added after that would silently never run. `stack_built` says
# whether that moment has passed, and `add_middleware` refuses once it has:

# %%
#| export
Bare.stack_built = property(lambda self: self.stack is not None,
                            doc="True once the first call has built the middleware stack.")


def add_middleware(self, factory, **options) -> None:
    """Append a middleware factory (innermost so far); ``options`` go to it as keywords."""
    name = getattr(factory, "__qualname__", repr(factory))
    if self.stack_built:
        raise RuntimeError(f"cannot add {name}: {self.name!r} built its middleware stack on "
                           "its first call; add middleware before the app serves")
    self.middleware.append(partial(factory, **options) if options else factory)

Bare.add_middleware = add_middleware

# %% [markdown]
# A fresh app takes a tracer; after one request it refuses another:

# %%
late = Bare(name="late")
late.add_middleware(Tracer, name="added")
trace.clear()
print(late.stack_built, barelab.call_asgi(late).status, late.stack_built, trace)
try:
    late.add_middleware(Tracer, name="too late")
except RuntimeError as error:
    print("RuntimeError:", error)

# %% [markdown]
# The tracer ran on the first request (a 404: `late` has no routes, and the answer still
# went through the middleware). The second one was refused with a message that says why.

# %% [markdown]
# ## Lifespan in action
#
# Both ways of writing a lifespan, in one app. The `lifespan=` function opens a "database"
# (a dict, with a counter to prove it opens once); a startup hook adds a setting; a
# shutdown hook records that it ran.

# %%
from contextlib import asynccontextmanager

events = []

@asynccontextmanager
async def database(app):
    events.append("database opened")
    yield {"db": {"notes": 0}}
    events.append("database closed")

life = Bare(lifespan=database)

@life.on_startup
async def load_settings(state):
    state.greeting = "hello"
    events.append(f"settings loaded into {state!r}")

@life.on_shutdown
async def goodbye(state):
    events.append("shutdown hook ran")

# %% [markdown]
# `barelab.call_lifespan` plays the server's part: it sends `lifespan.startup`, then
# `lifespan.shutdown`, and keeps what the app answered. First the answers, then the list
# of events in the order they happened:

# %%
life_call = barelab.call_lifespan(life)
print([message["type"] for message in life_call.sent])
events

# %% [markdown]
# The context manager is entered first and left last, and the hooks run inside it: the
# order of nested `with` blocks. The startup hook already saw `db`, because the `lifespan=`
# function had yielded it. The server's state dict now holds both:

# %%
life_call.scope["state"]

# %% [markdown]
# A request finds them in `request.state`. In-process, you play the server once more: it
# hands each request a *copy* of that dict (chapter 14), which you can pass to `call_asgi`
# in `scope=`:

# %%
@life.get("/")
async def life_home(request):
    request.state.db["notes"] += 1
    return f"{request.state.greeting}, notes={request.state.db['notes']}\n"

for _ in range(2):
    print(barelab.call_asgi(life, scope={"state": dict(life_call.scope["state"])}).text,
          end="")

# %% [markdown]
# `notes` went up across the two requests: the dict was copied, but the `db` object in it
# is shared, exactly as with a real server. A startup that fails is reported as
# `lifespan.startup.failed` with the exception's type and text, and the server refuses to
# start (chapter 14):

# %%
broken = Bare()

@broken.on_startup
async def need_secret(state):
    raise RuntimeError("SECRET_KEY is not set")

barelab.call_lifespan(broken).sent

# %% [markdown]
# ## WebSocket routes
#
# A WebSocket handler gets a `WebSocket` object instead of a request. It shares
# `Connection` with `Request` (path, `path_params`, query, headers, cookies, state) and
# adds the conversation: accept, receive and send whole messages, close. Its life has three
# stages, kept in `state_name`:
#
# ```mermaid
# stateDiagram-v2
#     [*] --> connecting
#     connecting --> open: accept()
#     connecting --> closed: close() before accept, the server answers 403
#     open --> closed: close(code), or the client's Close
#     closed --> [*]
# ```
#
# When the client leaves, the next receive raises `WebSocketDisconnect` with the close
# code, so a handler's `while True` loop ends by itself.

# %%
#| export
class WebSocketDisconnect(Exception):
    """The WebSocket is closed: by the client, or by us because of what it sent."""

    def __init__(self, code: int = 1000, reason: str = ""):
        super().__init__(f"WebSocket closed with code {code}" + (f": {reason}" if reason else ""))
        self.code, self.reason = code, reason


class WebSocket(Connection):
    """One WebSocket: accept, then receive and send whole messages, then close."""

    close_timeout = 1.0     # seconds receive_message waits for the client's answer to our Close

    def __init__(self, scope: dict, receive, send, app=None):
        super().__init__(scope, receive, app)
        self._send, self.state_name = send, "connecting"    # then "open", then "closed"
        self.client_gone = None     # (code, reason) once the client's disconnect arrived

    def __repr__(self) -> str:
        return f"<WebSocket {self.path} {self.state_name}>"

# %% [markdown]
# `WebSocketDisconnect` carries the close code (1000 is a normal close, RFC 6455 §7.4.1)
# so a handler can tell a goodbye from a failure. `state_name` is the stage in the
# diagram, and every method below checks it or moves it on.
#
# `accept` reads the `websocket.connect` message first (the spec's order), and checks
# that a chosen subprotocol is one the client offered: RFC 6455 §4.2.2 forbids choosing
# another, and browsers fail the connection if you do.

# %%
#| export
async def accept(self, subprotocol: str | None = None, headers=()) -> None:
    """Complete the handshake; ``subprotocol`` must be one the client offered."""
    message = await self.receive()
    if message["type"] == "websocket.disconnect":
        self.state_name, self.client_gone = "closed", (message.get("code", 1000), "")
        raise WebSocketDisconnect(message.get("code", 1000))
    offered = self.scope.get("subprotocols", [])
    if subprotocol is not None and subprotocol not in offered:
        raise ValueError(f"the client offered {offered}, not {subprotocol!r} "
                         "(RFC 6455 §4.2.2)")
    await self._send({"type": "websocket.accept", "subprotocol": subprotocol,
                      "headers": encode_headers(headers)})
    self.state_name = "open"

# %% [markdown]
# `receive_message` returns the raw `websocket.receive` message (it has `text` or `bytes`)
# and turns `websocket.disconnect` into the exception, every time it is called after
# that. `close` works in both stages: before accept, the spec has the server refuse the
# handshake with a 403. Calling it on a socket that is already closed does nothing, so a
# handler may close twice safely.
#
# Closing is a handshake too (RFC 6455 §5.5.1): after our Close, the client answers with
# its own, and messages it sent before it saw ours may still arrive. So a
# `receive_message` after our `close` calls `_await_goodbye`, which drops those and waits,
# at most `close_timeout` seconds, for the client's disconnect. A client that never
# answers gets code 1006, which RFC 6455 §7.4.1 keeps for "closed abnormally, without a
# Close frame". Either way the code lands in `client_gone`:

# %%
#| export
async def _await_goodbye(self) -> None:
    """After our close: drop late messages until the client's disconnect (or a timeout)."""
    try:
        while True:
            message = await asyncio.wait_for(self.receive(), self.close_timeout)
            if message["type"] == "websocket.disconnect":
                break
    except asyncio.TimeoutError:
        message = {"code": 1006, "reason": "the client did not answer our Close"}
    self.client_gone = (message.get("code", 1005), message.get("reason") or "")

# %% [markdown]
# `receive_message` then has three cases. Before `accept` there is nothing to receive: a
# bug in the handler, so a `RuntimeError`. While the socket is open, the next message, or
# the client's disconnect. And once `client_gone` is set, every call raises
# `WebSocketDisconnect` with the client's code, so a handler that keeps looping after a
# close still ends the way it would if the client had left first.

# %%
#| export
async def receive_message(self) -> dict:
    """The next websocket.receive message; WebSocketDisconnect once the client has gone."""
    if self.state_name == "connecting":
        raise RuntimeError("receive on a WebSocket that is connecting: accept it first")
    if self.state_name == "closed" and self.client_gone is None:
        await _await_goodbye(self)                  # we closed: wait for the client's answer
    if self.client_gone is None:
        message = await self.receive()
        if message["type"] != "websocket.disconnect":
            return message
        self.state_name = "closed"
        self.client_gone = (message.get("code", 1005), message.get("reason") or "")
    raise WebSocketDisconnect(*self.client_gone)

# %% [markdown]
# A disconnect with no code becomes 1005, "no status code was present" (RFC 6455 §7.4.1).
# Then `close`:

# %%
#| export
async def close(self, code: int = 1000, reason: str = "") -> None:
    """Close: before accept the server refuses the handshake (403), after it sends Close."""
    if self.state_name == "connecting":
        await self.receive()                        # websocket.connect, as the spec orders
    if self.state_name != "closed":
        self.state_name = "closed"
        await self._send({"type": "websocket.close", "code": code, "reason": reason})

WebSocket.accept, WebSocket.receive_message, WebSocket.close = accept, receive_message, close

# %% [markdown]
# A quick look at the stages, in-process with a hand-written scope and a `receive` that
# plays the client: connect, then leave. Accepting moves the socket to `open`, and the next
# receive raises:

# %%
client_says = [{"type": "websocket.connect"}, {"type": "websocket.disconnect", "code": 1001}]

async def client_connects_then_leaves():
    return client_says.pop(0)

async def ignore(message):
    pass

ws = WebSocket({"type": "websocket", "path": "/", "headers": []},
               client_connects_then_leaves, ignore)
await ws.accept()
print(ws)
try:
    await ws.receive_message()
except WebSocketDisconnect as error:
    print(f"{type(error).__name__}: {error} -> {ws}")

# %% [markdown]
# The typed receives. A text frame and a binary frame are different things in RFC 6455,
# so `receive_text` on a binary message is the *client's* mistake. The RFC has a close
# code for it: 1003, "received a type of data it cannot accept" (§7.4.1). Invalid JSON in
# a text message gets 1007, "data within a message that was not consistent with the type
# of the message". Either way the handler sees `WebSocketDisconnect`, as if the client had
# left.
#
# `_receive_kind` does the work for both; `receive_text` and `receive_bytes` only say which
# key they want.

# %%
#| export
async def _receive_kind(self, key: str) -> str | bytes:
    message = await self.receive_message()
    if message.get(key) is None:
        wanted, got = ("text", "binary") if key == "text" else ("binary", "text")
        reason = f"expected a {wanted} message, got a {got} one"
        await self.close(1003, reason)              # RFC 6455 §7.4.1: data it cannot accept
        raise WebSocketDisconnect(1003, reason)
    return message[key]

async def receive_text(self) -> str:
    """The next text message (a binary one closes the socket with 1003)."""
    return await _receive_kind(self, "text")

async def receive_bytes(self) -> bytes:
    """The next binary message (a text one closes the socket with 1003)."""
    return await _receive_kind(self, "bytes")

WebSocket.receive_text, WebSocket.receive_bytes = receive_text, receive_bytes

# %%
#| export
async def receive_json(self):
    """The next text message, as JSON (invalid JSON closes the socket with 1007)."""
    text = await self.receive_text()
    try:
        return json.loads(text)
    except ValueError as error:
        await self.close(1007, "invalid JSON")       # RFC 6455 §7.4.1: inconsistent data
        raise WebSocketDisconnect(1007, f"invalid JSON: {error}") from None

WebSocket.receive_json = receive_json

# %% [markdown]
# The sends are one line each: a `websocket.send` message carries either `text` or `bytes`,
# never both. `send_json` keeps non-ASCII text as it is, like `JSONResponse`.

# %%
#| export
async def send_text(self, text: str) -> None:
    await self._send({"type": "websocket.send", "text": text})

async def send_bytes(self, data: bytes) -> None:
    await self._send({"type": "websocket.send", "bytes": bytes(data)})

async def send_json(self, data) -> None:
    await self.send_text(json.dumps(data, ensure_ascii=False))

WebSocket.send_text, WebSocket.send_bytes, WebSocket.send_json = send_text, send_bytes, send_json

# %% [markdown]
# Last, `handle_websocket`. No route: close before accept, so the server answers 403.
# The handler's `WebSocketDisconnect` is a normal end. An `HTTPException` means "refused":
# 1008, policy violation (a 403 if it came before accept). Any other exception closes with
# 1011, "an unexpected condition" (RFC 6455 §7.4.1), and is re-raised for the log. These
# are the same rules as for http, translated: a close code instead of a status, and the
# traceback still goes only to the log.
#
# A websocket handler answers through the socket, so it should return `None`. One that
# returns something else (a `Response`, out of HTTP habit) has a bug that would otherwise
# pass in silence, so `handle_websocket` raises a `TypeError` naming the route, and the
# 1011 rule above closes the socket.

# %%
#| export
async def handle_websocket(self, scope, receive, send) -> None:
    entry, found = self.find(scope)
    if isinstance(entry, Mount):
        return await _call_mount(entry, scope, receive, send)
    websocket = WebSocket({**scope, "path_params": found or {}}, receive, send, self)
    if entry is None:
        return await websocket.close(1008)      # before accept: the server answers 403
    try:
        returned = await entry.app(websocket)
        if returned is not None:
            raise TypeError(f"the websocket route {entry.template!r} ({entry.name}) returned "
                            f"{type(returned).__name__} {returned!r:.60}; a websocket handler "
                            "answers through the socket (send_text, send_json...) and "
                            "returns None")
    except WebSocketDisconnect:
        return                                  # the client left, or we closed it
    except HTTPException:
        return await websocket.close(1008)
    except Exception:
        await websocket.close(1011)
        raise
    await websocket.close(1000)

Bare.handle_websocket = handle_websocket

# %% [markdown]
# An echo route. It loops until the client leaves, shouting text back in capitals and
# sending bytes back reversed:

# %%
@demo.websocket("/echo")
async def echo(websocket):
    await websocket.accept()
    while True:
        message = await websocket.receive_message()
        if message.get("text") is not None:
            await websocket.send_text(message["text"].upper())
        else:
            await websocket.send_bytes(message["bytes"][::-1])

# %% [markdown]
# Try it in-process. `receive_events` lists what the client "sends": the connect, a text
# message, a binary message. In the transcript, `→ app` lines go in and `app →` lines
# come out:

# %%
client_says = [{"type": "websocket.connect"}, {"type": "websocket.receive", "text": "hi"},
               {"type": "websocket.receive", "bytes": b"\x01\x02\x03"}]
barelab.call_asgi(demo, path="/echo", receive_events=client_says)

# %% [markdown]
# The binary message went out as `bytes` and came back as `bytes`, never through text.
# When the list ran out, `call_asgi` said `websocket.disconnect`, the loop's next receive
# raised `WebSocketDisconnect`, and the handler ended without a trace. A path without a
# WebSocket route is refused before accept. The app's only message is a close; a server
# turns that into an HTTP 403 (you will see it on the wire later):

# %%
barelab.call_asgi(demo, path="/nowhere", receive_events=client_says[:1]).sent

# %% [markdown]
# Now the slip the `TypeError` is for: a handler on a separate app, `slip`, that returns
# a `Response` the way an http route would. Look at what the client gets and what the
# log gets:

# %%
slip = Bare()

@slip.websocket("/hello")
async def hello_socket(websocket):
    return Response("hello\n")

call = barelab.call_asgi(slip, path="/hello", receive_events=client_says[:1], raise_errors=False)
print("the client got:", call.sent)
print("the log gets:  ", call.exception)

# %% [markdown]
# The handler never accepted, so its close came before accept, which a server turns into
# the 403 refusal: the client learns only that it was turned away. The log names the
# route and what came back, and says where the answer should have gone.

# %% [markdown]
# One more case: a handler that closes the socket itself and then, by mistake or by
# design, loops on `receive_message`. The late text message below was "sent" by the
# client before it saw our Close. Look for what the loop gets, and how it ends:

# %%
got = []

@demo.websocket("/short")
async def short(websocket):
    await websocket.accept()
    await websocket.close(4000, "enough")
    while True:
        try:
            got.append(await websocket.receive_message())
        except WebSocketDisconnect as gone:
            got.append(repr(gone))
            raise

got.clear()
call = barelab.call_asgi(demo, path="/short", receive_events=client_says[:2])
got, call.sent[-1]

# %% [markdown]
# The late `hi` was dropped, and the loop ended with the client's disconnect (code 1000
# here, the code `call_asgi` sends), not with a hang.
#
# A real client answers our Close with a Close of its own, carrying the same code (RFC
# 6455 §5.5.1), and chapter 17's `TestClient` plays that part in-process. So through it
# the loop ends at once with our own 4000, while the test sees the close it was sent:

# %%
import barelab.built.testing as testing

got.clear()
with testing.TestClient(demo).websocket_connect("/short") as ws:
    try:
        ws.receive_text()
    except testing.WebSocketDisconnect as closed:
        print("the test saw:", closed.code, closed.reason)
got

# %% [markdown]
# Only a client that never answers makes `_await_goodbye` wait: after `close_timeout`
# seconds the loop ends with 1006, the code for a close without a Close frame.

# %% [markdown]
# ## The demo app: notes and a chat room
#
# Time for a real app, written the way you would write one in any framework. It has:
#
# - a JSON API for notes: list, create, read, delete, with `{id:int}`;
# - a visit counter that keeps a session in cookies (two `Set-Cookie` lines per response);
# - a streaming endpoint that counts, one line at a time;
# - a WebSocket chat room per name in the URL, `/ws/{room}`, that passes text and binary
#   messages to everyone in the room.
#
# Its state lives in the lifespan, so every server that runs it starts from empty: the
# notes by id, a counter for new ids, visits per session, and the set of sockets in each
# chat room. `max_body=4096` is plenty for a note and keeps abusive bodies out.

# %%
import itertools
import uuid
from collections import Counter, defaultdict

@asynccontextmanager
async def notes_lifespan(app):
    yield {"notes": {}, "ids": itertools.count(1), "sessions": Counter(),
           "rooms": defaultdict(set)}

notes = Bare(name="notes", lifespan=notes_lifespan, max_body=4096)

# %% [markdown]
# The notes API. Creating validates the JSON it gets (422 for the wrong shape, RFC 9110
# §15.5.21) and answers 201 with a `Location` header. Notice what the handler does *not*
# do: check the content type, catch JSON errors, pick a status for them. `request.json()`
# did that.

# %%
@notes.get("/notes")
async def list_notes(request):
    return list(request.state.notes.values())

@notes.post("/notes")
async def create_note(request):
    data = await request.json()
    if not isinstance(data, dict) or not isinstance(data.get("text"), str):
        raise HTTPException(422, 'send an object like {"text": "..."}')
    note = {"id": next(request.state.ids), "text": data["text"]}
    request.state.notes[note["id"]] = note
    return JSONResponse(note, 201, [("location", f"/notes/{note['id']}")])

# %% [markdown]
# Reading and deleting one note. Both raise a 404 for an id that is not there; deleting
# returns `None`, so a success is a 204.

# %%
@notes.get("/notes/{id:int}")
async def read_note(request):
    note = request.state.notes.get(request.path_params["id"])
    if note is None:
        raise HTTPException(404, f"no note {request.path_params['id']}")
    return note

@notes.route("/notes/{id:int}", methods=["DELETE"])
async def delete_note(request):
    if request.state.notes.pop(request.path_params["id"], None) is None:
        raise HTTPException(404, f"no note {request.path_params['id']}")

# %% [markdown]
# The session counter. A new visitor gets a random session id (`uuid4().hex`); the server
# counts visits per session; the response sets the session cookie (`HttpOnly`: no
# JavaScript may read it) and a `visits` cookie a page could display.

# %%
@notes.get("/visits")
async def visits(request):
    session = request.cookies.get("sid") or uuid.uuid4().hex
    request.state.sessions[session] += 1
    count = request.state.sessions[session]
    response = Response(f"visit number {count}\n")
    response.set_cookie("sid", session, httponly=True)
    response.set_cookie("visits", str(count))
    return response

# %% [markdown]
# The stream: `/count?to=3` sends one line every 10 ms. `to` is checked, since a query
# string is user input: not a number, or too big, is a 400.

# %%
@notes.get("/count")
async def count(request):
    to = request.query.get("to", "3")
    if not to.isdigit() or int(to) > 100:
        raise HTTPException(400, "to is a whole number from 0 to 100")
    async def numbers():
        for number in range(1, int(to) + 1):
            yield f"{number}\n"
            await asyncio.sleep(0.01)
    return StreamingResponse(numbers())

# %% [markdown]
# The chat room. Each room is a set of open WebSockets in the lifespan state. A text
# message goes to everyone in the room (the sender too) prefixed with the room's name; a
# binary message is passed on as it is. The `finally` takes the socket out of the room
# however the handler ends, so a client that vanishes is not sent to again.

# %%
@notes.websocket("/ws/{room}")
async def chat(websocket):
    room = websocket.path_params["room"]
    members = websocket.state.rooms[room]
    await websocket.accept()
    members.add(websocket)
    try:
        while True:
            message = await websocket.receive_message()
            for member in list(members):
                if message.get("text") is not None:
                    await member.send_text(f"{room}: {message['text']}")
                else:
                    await member.send_bytes(message["bytes"])
    finally:
        members.discard(websocket)

# %% [markdown]
# Here is the whole route table, in the order the routes were added. The `HEAD`s came
# from chapter 08's rule, the `WebSocketRoute` from the subclass:

# %%
notes

# %% [markdown]
# ### Tested in-process
#
# Before any socket, test the app in-process with chapter 17's `TestClient`. It plays the
# server's part without a socket: `with TestClient(notes) as client:` runs the lifespan
# startup before the block and its shutdown after it, hands each request its copy of the
# state, and keeps cookies like a browser. Its responses have `status_code`, `headers`,
# `text` and `json()`, like the `requests` library's.

# %%
from barelab.built.testing import TestClient

with TestClient(notes) as client:
    created = client.post("/notes", json={"text": "buy milk"})
created, created.headers, created.json()

# %% [markdown]
# 201, a `location`, and the note as JSON; `content-length` was added by `bare`. Now the
# rest of the API in one session: create a note, then eight requests, shown as a table of
# request, status and body. The list `api_checks` has a wrong shape (`"text": 5`), broken
# JSON, a second delete and a method no route has. Look at the error lines especially:

# %%
JSON = [("content-type", "application/json")]
api_checks = [("GET", "/notes", {}), ("GET", "/notes/1", {}), ("GET", "/notes/2", {}),
              ("POST", "/notes", {"json": {"text": 5}}),
              ("POST", "/notes", {"content": b'{"text": "x",}', "headers": dict(JSON)}),
              ("DELETE", "/notes/1", {}), ("DELETE", "/notes/1", {}), ("PUT", "/notes/1", {})]
with TestClient(notes) as client:
    client.post("/notes", json={"text": "buy milk"})
    rows = [(f"{m} {p}", (r := client.request(m, p, **o)).status_code, r.text.strip())
            for m, p, o in api_checks]
barelab.show_transcript(rows, columns=("request", "status", "body"))

# %% [markdown]
# Every line is a clear answer: the 422 says what shape to send, the 400 says where the
# JSON broke, the second `DELETE` is a 404, and `PUT` is a 405 with the allowed methods.
# The session counter needs a client that sends cookies back, which `TestClient` does:

# %%
with TestClient(notes) as client:
    print([client.get("/visits").text.strip() for _ in range(3)])
    print(client.get("/visits").headers.get_list("set-cookie")[1])

# %% [markdown]
# The count goes up because the client sent the `sid` cookie back each time; the second
# line is the fourth response's `visits` cookie. Last, a WebSocket in the `lobby`: a text
# message and a binary one. The only member of the room is this client, so each comes
# back to it, the text with the room's name in front:

# %%
with TestClient(notes) as client:
    with client.websocket_connect("/ws/lobby") as websocket:
        websocket.send_text("hi")
        websocket.send_bytes(b"\xff\x00")
        print(repr(websocket.receive_text()), websocket.receive_bytes())

# %% [markdown]
# ## Served three ways
#
# In-process tests prove the app's logic. Serving proves that `bare` speaks ASGI the way
# real servers expect, and only bytes on a socket can show `HEAD`, `204` and `Set-Cookie`
# as a client sees them.
#
# ### On barelab
#
# `barelab.serve` runs the lifespan first, so the state exists before the first request.
# Nothing about `notes` changes: the same object that `TestClient` called is now served.

# %%
served = barelab.serve(notes)
served

# %% [markdown]
# Three requests through a real socket: create a note, stream a count, and read the
# cookies of a first visit:

# %%
print(barelab.http_request(served, "POST", "/notes", json={"text": "served"}).text)
print(barelab.http_request(served, "GET", "/count?to=3").text, end="")
print(barelab.http_request(served, "GET", "/visits").header("set-cookie"))

# %% [markdown]
# The count arrived as one body although it was sent in three chunks: the client waits for
# the end. (`header` joins repeated fields with a comma, as RFC 9110 §5.3 allows for most fields
# but never for `Set-Cookie`; on the wire, below, they are two lines.) Now a bug on
# purpose, on a live server: a small app whose only route raises an exception with a
# secret in its text, as a failed database connection might.

# %%
crashy = Bare(name="crashy")

@crashy.get("/")
async def crashy_home(request):
    secret = "db-password-123"
    raise RuntimeError(f"cannot connect with {secret}")

crash_server = barelab.serve(crashy)
print(barelab.http_request(crash_server).text, end="")

# %% [markdown]
# The client gets the generic line. The secret in the exception's text is only in the
# server's log, with the traceback, where the developer looks:

# %%
print(crash_server.log.errors[0].details.strip().splitlines()[-1])
crash_server.stop()

# %% [markdown]
# ### On the course's own server
#
# Chapter 13 wrote an ASGI server from scratch, and chapter 15 gave it WebSockets:
# `WebSocketASGIServer` is chapter 13's `ASGIServer` plus the upgrade. `bare` runs on it
# unchanged: your framework on your server, with nothing borrowed. This is the server the
# raw-byte probes below go to.

# %%
from barelab.built.websocket import WebSocketASGIServer

course = barelab.serve(notes, name="notes_on_course_server", server=WebSocketASGIServer)
barelab.http_request(course, "GET", "/notes").text

# %% [markdown]
# An empty list: this server ran its own lifespan, so it has its own state. Now the
# probes, each a few raw bytes. `raw` sends bytes with `barelab.raw_exchange` and returns
# the bytes that came back. First invalid JSON. Look for the status line, the length and
# a body with the parser's reason and nothing else:

# %%
def raw(data: bytes) -> bytes:
    return barelab.raw_exchange(course, data).received

bad_json = b'{"text": oops}'
barelab.show_bytes(raw(b"POST /notes HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                       b"Content-Type: application/json\r\n"
                       b"Content-Length: %d\r\n\r\n%s" % (len(bad_json), bad_json)))

# %% [markdown]
# A 400 with a one-line reason: no `Traceback`, no file name. `connection` and `date` were
# added by the server, not by `bare`: those headers belong to the connection. Next, `HEAD`
# on the list of notes. The head must carry the same `content-length` as a `GET` (the list
# is `[]`, two bytes), and the response must end right after the empty line:

# %%
head = raw(b"HEAD /notes HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
barelab.show_bytes(head)

# %% [markdown]
# The bytes above stop at the blank line. To be sure nothing follows it, test the end:

# %%
print("ends after the head:", head.endswith(b"\r\n\r\n"))

# %% [markdown]
# A `DELETE` that works is a 204. There must be no `content-length` (RFC 9110 §8.6) and no
# body. (Note 1 was created through barelab, on the other server: each server has its own
# notes, so create one here first.)

# %%
barelab.http_request(course, "POST", "/notes", json={"text": "to delete"})
deleted = raw(b"DELETE /notes/1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
print("has content-length:", b"content-length" in deleted.lower(),
      "| ends after the head:", deleted.endswith(b"\r\n\r\n"))
barelab.show_bytes(deleted)

# %% [markdown]
# The session counter. This client sends a session cookie the server has never seen, as
# a browser would after a server restart. Two `set-cookie` lines come back, one per
# cookie, each with its own attributes.

# %%
barelab.show_bytes(raw(b"GET /visits HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                       b"Cookie: sid=0123456789abcdef0123456789abcdef\r\n\r\n"))

# %% [markdown]
# `visit number 1`: the server had not seen that session, so it counted it as new and kept
# the id the client sent. And 404 against 405, the first two lines of each head:

# %%
for request_line in (b"GET /nothing HTTP/1.1", b"PATCH /notes/1 HTTP/1.1"):
    answer = raw(request_line + b"\r\nHost: x\r\nConnection: close\r\n\r\n")
    print(answer.split(b"\r\n\r\n")[0].decode().splitlines()[:2])

# %% [markdown]
# The 405 carries `allow` on its second line, as RFC 9110 §15.5.6 requires; the 404 has
# none, since no method would help.
#
# Last, WebSocket frames on the wire. Two clients join the `kitchen` room; one sends text
# and then three bytes that are not valid UTF-8. Both messages reach both clients, and the
# binary one stays binary:

# %%
alice = barelab.websocket_connect(course, "/ws/kitchen")
bob = barelab.websocket_connect(course, "/ws/kitchen")
alice.send_text("dinner at 8")
alice.send_bytes(b"\xff\xfe\x00")
print([alice.receive(), alice.receive()], [bob.receive(), bob.receive()])
alice.close()
bob.close()

# %% [markdown]
# A WebSocket handshake for a path with no route is refused with a 403 before accept, as
# the ASGI spec says a server must when the app closes first:

# %%
try:
    barelab.websocket_connect(course, "/ws")
except barelab.WebSocketRejected as error:
    print(error)

# %% [markdown]
# The course server's log shows each exchange: the 400, the `HEAD` with `0B` of body, the
# 204, the 101 of each WebSocket and the 403 of the refused one:

# %%
course.log

# %% [markdown]
# ### On uvicorn
#
# uvicorn imports the app from a module, so the app must be in a file. As in chapter 12,
# `inspect.getsource` gives back the source of the cells above; the file is a header with
# the imports, plus those sources. First the header: the imports the handlers need, with
# `bare` imported from `barelab/built/bare.py`, the file this chapter exported.

# %%
HEADER = '''"""Chapter 18's demo app, written out of the notebook so that uvicorn can import it."""
import asyncio
import itertools
import uuid
from collections import Counter, defaultdict
from contextlib import asynccontextmanager

from barelab.built.bare import Bare, HTTPException, JSONResponse, Response, StreamingResponse
'''

# %% [markdown]
# Then the body of the module: the lifespan, the line that makes `notes`, and each handler
# with its decorator, written into a temporary folder.

# %%
import inspect
import sys
import tempfile
from pathlib import Path

handlers = [list_notes, create_note, read_note, delete_note, visits, count, chat]
app_dir = tempfile.TemporaryDirectory(prefix="chapter18-")
source = (HEADER + "\n\n" + inspect.getsource(notes_lifespan)
          + '\n\nnotes = Bare(name="notes", lifespan=notes_lifespan, max_body=4096)\n'
          + "".join("\n\n" + inspect.getsource(handler) for handler in handlers))
(Path(app_dir.name) / "notes_app.py").write_text(source)
print(len(source.splitlines()), "lines")

# %% [markdown]
# Start uvicorn in its own process, with the same Python as this kernel. As in chapter
# 12, this cell binds the socket itself and hands it over already open (`--fd` and
# `pass_fds`), so no other program can take the port in between, and uvicorn's output
# goes to a file instead of the notebook. `--no-access-log` keeps that file to what
# uvicorn says about itself: how many polls it took to find the server up varies from run
# to run, and each would otherwise add a line.

# %%
import socket
import subprocess
import time

listener = socket.create_server(("127.0.0.1", 0))
uvicorn_url = f"http://127.0.0.1:{listener.getsockname()[1]}"
uvicorn_log = open(Path(app_dir.name) / "uvicorn.log", "w")
uvicorn = subprocess.Popen(
    [sys.executable, "-m", "uvicorn", "notes_app:notes", "--app-dir", app_dir.name,
     "--fd", str(listener.fileno()), "--no-access-log"],
    pass_fds=[listener.fileno()], stdout=uvicorn_log, stderr=subprocess.STDOUT)
listener.close()
uvicorn.poll() is None

# %% [markdown]
# `True`: the process is running. A server needs a moment to start, so ask it for
# `/notes` until it answers (at most ten seconds), as chapter 12 did:

# %%
def wait_until_up(url, timeout=10.0):
    deadline = time.monotonic() + timeout
    while True:
        try:
            return barelab.http_request(url, path="/notes", timeout=1.0)
        except OSError:
            if time.monotonic() > deadline or uvicorn.poll() is not None:
                raise
            time.sleep(0.05)

wait_until_up(uvicorn_url).text

# %% [markdown]
# Now the same requests to the course server and to uvicorn, side by side. Each server has
# its own notes, and the course server already has some. `restart()` stops it and starts
# it again on the same port: a new lifespan, so both servers start from an empty list.

# %%
course = course.restart()
barelab.http_request(course, "GET", "/notes").text

# %%
same = [("POST", "/notes", {"json": {"text": "same"}}), ("GET", "/notes/1", {}),
        ("POST", "/notes", {"body": b"{oops", "headers": JSON}), ("GET", "/nothing", {}),
        ("PATCH", "/notes/1", {}), ("DELETE", "/notes/1", {}), ("GET", "/count?to=2", {}),
        ("GET", "/count?to=x", {}), ("HEAD", "/notes", {})]

def both(method, path, **options):
    ours = barelab.http_request(course, method, path, **options)
    theirs = barelab.http_request(uvicorn_url, method, path, **options)
    return f"{method} {path}", ours.status, theirs.status, ours.body == theirs.body

barelab.show_transcript([both(m, p, **o) for m, p, o in same],
                        columns=("request", "course server", "uvicorn", "same body"))

# %% [markdown]
# Every status and every body agrees: `bare` made each decision, and both servers carried
# it out. The binary WebSocket frame, through uvicorn:

# %%
with barelab.websocket_connect(uvicorn_url, "/ws/kitchen") as carol:
    carol.send_bytes(b"\x00\x01\x02")
    print(carol.receive())

# %% [markdown]
# Stop uvicorn: `terminate()` sends `SIGTERM`, and uvicorn runs the lifespan shutdown
# before it exits. Its log, with the process id masked:

# %%
import re

uvicorn.terminate()
print("exit status:", uvicorn.wait(timeout=5))
uvicorn_log.close()
print(re.sub(r"\[\d+\]", "[PID]", (Path(app_dir.name) / "uvicorn.log").read_text()))
app_dir.cleanup()

# %% [markdown]
# The exit status `-15` means the process ended on signal 15, `SIGTERM`: uvicorn shuts
# down cleanly and then lets the signal end it, so whoever started it knows why it
# stopped. "Waiting for application startup", "Application startup complete": uvicorn found
# `bare`'s lifespan and ran it, and ran its shutdown on the way out. No "Exception in ASGI application" anywhere: every request
# above, the broken ones included, got an answer from `bare` itself.

# %% [markdown]
# ## Summary
#
# - `bare` is about 860 lines with its comments and docstrings, and most of it is glue:
#   reason phrases and header checks are chapter 02's, middleware composition chapter
#   07's, routing chapter 08's, parsing and cookies chapter 09's, body reading and
#   streaming chapter 12's, lifespan chapter 14's. It lives in `barelab/built/bare.py`.
# - `Bare` is an ASGI app: middleware (outermost first) around a core that dispatches
#   `lifespan`, `http` and `websocket` scopes.
# - Handlers are `async def handler(request)`; they return a `Response` (or
#   `JSONResponse`, `HTMLResponse`, `RedirectResponse`, `StreamingResponse`), a `str`,
#   `bytes`, a `dict` or `list`, or `None` for 204. Anything else is a `TypeError` naming
#   the handler.
# - Refusing is raising: `HTTPException(status, detail)` becomes JSON or text depending on
#   `Accept`. Any other exception is a bare `500 Internal Server Error` for the client and
#   a traceback in the server's log, never the other way round.
# - Hooks let an app change that without overriding `respond`: `@app.exception_handler(
#   Kind)` answers a class of error and its subclasses (found through the MRO; a handler
#   that fails is a 500 plus its traceback); the router refuses with `NotFound` and
#   `MethodNotAllowed`, whose `.allowed` lists the methods;
#   `request.call_after_response(fn, ...)` runs work once the client has its answer,
#   logging failures on the `"bare"` logger; `app.add_middleware(factory, **options)`
#   adds middleware until `app.stack_built` says the stack exists.
# - `bare` gets the HTTP details right by itself, whatever the server: `HEAD` sends no
#   body, 204/304 carry no `Content-Length`, 405 carries `Allow`, each cookie gets its own
#   `Set-Cookie` line, a body over the limit is a 413 before it is read.
# - WebSocket routes get a `WebSocket` with `accept`, `receive_text/bytes/json`,
#   `send_text/bytes/json` and `close`; a client that leaves raises `WebSocketDisconnect`.
# - The same app ran in-process (`call_asgi`), on barelab, on the course's own server and
#   on uvicorn, with the same answers.

# %% [markdown]
# ## Exercises
#
# Each exercise has a cell for your answer and a check cell below it. Run the check cell:
# it prints ✅ when your answer works and says what is wrong when it does not.
#
# ### Exercise 1 — search the notes
#
# Add a route `GET /search` to a new app `search_app = Bare()`. It reads the query
# parameter `q` and returns a JSON list of the words in `WORDS` that contain it. Without
# `q` it raises `HTTPException(400, ...)` with a detail that mentions `q`.

# %% tags=["solution"]
WORDS = ["apple", "banana", "grape", "pineapple"]
search_app = Bare()

### BEGIN SOLUTION
@search_app.get("/search")
async def search(request):
    q = request.query.get("q")
    if not q:
        raise HTTPException(400, "add ?q=... to say what to search for")
    return [word for word in WORDS if q in word]
### END SOLUTION

# %% tags=["check"]
from barelab.exercises import check

with check("Exercise 1"):
    found = barelab.call_asgi(search_app, "GET", "/search", query="q=apple")
    assert found.status == 200, f"GET /search?q=apple answered {found.status}"
    assert found.json() == ["apple", "pineapple"], f"the body is {found.body!r}"
    missing_q = barelab.call_asgi(search_app, "GET", "/search",
                                  headers=[("accept", "application/json")])
    assert missing_q.status == 400, f"without q the status is {missing_q.status}, not 400"
    assert "q" in missing_q.json()["detail"], f"the detail is {missing_q.json()['detail']!r}"
    assert b"Traceback" not in missing_q.body, "a traceback reached the client"

# %% [markdown]
# ### Exercise 2 — a security-headers middleware
#
# Write an ASGI middleware class `NoSniff` (its `__init__` takes the app) that adds
# `x-content-type-options: nosniff` to the `http.response.start` of every HTTP response
# and passes every other scope through untouched. Then make `guarded = Bare(middleware=[NoSniff])`
# with a `GET /` that returns `"ok"`.

# %% tags=["solution"]
### BEGIN SOLUTION
class NoSniff:
    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        async def send_with_header(message):
            if message["type"] == "http.response.start":
                headers = [*message.get("headers", []), (b"x-content-type-options", b"nosniff")]
                message = {**message, "headers": headers}
            await send(message)
        await self.app(scope, receive, send_with_header)

guarded = Bare(middleware=[NoSniff])

@guarded.get("/")
async def guarded_home(request):
    return "ok"
### END SOLUTION

# %% tags=["check"]
with check("Exercise 2"):
    for path, status in (("/", 200), ("/missing", 404)):
        call = barelab.call_asgi(guarded, "GET", path)
        assert call.status == status, f"GET {path} answered {call.status}, not {status}"
        assert dict(call.headers).get("x-content-type-options") == "nosniff", \
            f"GET {path}: no x-content-type-options: nosniff in {call.headers}"
    lifespan_types = [m["type"] for m in barelab.call_lifespan(guarded).sent]
    assert lifespan_types == ["lifespan.startup.complete", "lifespan.shutdown.complete"], \
        f"the lifespan did not pass through: {lifespan_types}"

# %% [markdown]
# ### Exercise 3 — a WebSocket calculator
#
# Add a WebSocket route `/sum` to `calculator = Bare()`. It accepts, then for each message
# reads JSON with `receive_json` (a list of numbers) and sends back `{"sum": ...}` with
# `send_json`. Invalid JSON must end the connection with close code 1007: `receive_json`
# already does that; just do not catch the exception.

# %% tags=["solution"]
calculator = Bare()

### BEGIN SOLUTION
@calculator.websocket("/sum")
async def sum_socket(websocket):
    await websocket.accept()
    while True:
        numbers = await websocket.receive_json()
        await websocket.send_json({"sum": sum(numbers)})
### END SOLUTION

# %% tags=["check"]
with check("Exercise 3"):
    talk = [{"type": "websocket.connect"}, {"type": "websocket.receive", "text": "[1, 2, 3]"},
            {"type": "websocket.receive", "text": "[1, oops"}]
    sent = barelab.call_asgi(calculator, path="/sum", receive_events=talk).sent
    kinds = [message["type"] for message in sent]
    assert kinds == ["websocket.accept", "websocket.send", "websocket.close"], kinds
    assert json.loads(sent[1]["text"]) == {"sum": 6}, f"the answer was {sent[1]}"
    assert sent[2]["code"] == 1007, f"invalid JSON closed with {sent[2]['code']}, not 1007"

# %% [markdown]
# ### Exercise 4 — HEAD and 204 on the wire
#
# Serve `notes` on the course server as `probe_server` (use `name="notes_probe"`), and write
# `head_then_delete()` that returns the raw bytes of two exchanges: a `HEAD /notes` and a
# `DELETE /notes/999`, each with `Connection: close`. The check reads the bytes.

# %% tags=["solution"]
### BEGIN SOLUTION
probe_server = barelab.serve(notes, name="notes_probe", server=WebSocketASGIServer)

def head_then_delete():
    return [barelab.raw_exchange(probe_server, request).received for request in
            (b"HEAD /notes HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
             b"DELETE /notes/999 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")]
### END SOLUTION

# %% tags=["check"]
with check("Exercise 4"):
    head_bytes, delete_bytes = head_then_delete()
    assert head_bytes.startswith(b"HTTP/1.1 200"), head_bytes[:40]
    assert head_bytes.endswith(b"\r\n\r\n"), "the HEAD response has body bytes after its head"
    assert delete_bytes.startswith(b"HTTP/1.1 404"), delete_bytes[:40]
    assert b"Traceback" not in delete_bytes, "a traceback reached the client"
    probe_server.stop()

# %% [markdown]
# ### Exercise 5 — bad input as a 422, with a hook
#
# The handler of `GET /age` below trusts its input: `int("seven")` raises a `ValueError`,
# which `bare` answers with a 500 (a bug, says the default). Register an exception handler
# on `ages` so that any `ValueError` becomes a 422 with the JSON body
# `{"error": <the error's message>}`, without changing the route.

# %% tags=["solution"]
ages = Bare()

@ages.get("/age")
async def age(request):
    return {"next_year": int(request.query.get("age", "")) + 1}

### BEGIN SOLUTION
@ages.exception_handler(ValueError)
async def bad_value(request, error):
    return JSONResponse({"error": str(error)}, 422)
### END SOLUTION

# %% tags=["check"]
with check("Exercise 5"):
    good = barelab.call_asgi(ages, "GET", "/age", query="age=41")
    assert good.status == 200 and good.json() == {"next_year": 42}, good.body
    bad = barelab.call_asgi(ages, "GET", "/age", query="age=seven", raise_errors=False)
    assert bad.exception is None, f"the ValueError still reached the log: {bad.exception!r}"
    assert bad.status == 422, f"age=seven answered {bad.status}, not 422"
    assert "seven" in bad.json()["error"], f"the body is {bad.body!r}"
    assert barelab.call_asgi(ages, "GET", "/nowhere").status == 404, "the 404 changed"

# %% [markdown]
# ## Clean up
#
# Stop every server this chapter started. The number is how many were still running.

# %%
barelab.stop_all()
