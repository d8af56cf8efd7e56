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
#   in the response, while the traceback still reaches the server's log;
# - get the HTTP details right that frameworks are judged by: `HEAD` with no body, `204`
#   without `Content-Length`, `405` with `Allow`, several `Set-Cookie` lines, binary
#   WebSocket frames;
# - serve the same app on barelab, on the course's own ASGI server and on uvicorn, and test
#   it in-process without any socket.

# %% [markdown]
# ## What a framework adds
#
# Chapter 12 wrote ASGI apps by hand: one function that looks at `scope["path"]`, reads
# `receive()` in a loop and calls `send()` twice. That works, and it does not scale to
# forty endpoints. A framework is the code that every such app repeats, written once:
#
# ```mermaid
# flowchart LR
#     S["server"] --> M1["middleware 1"] --> M2["middleware 2"] --> C["bare core"]
#     C -- "lifespan" --> L["startup / shutdown hooks"]
#     C -- "http" --> R["router"] --> H["handler(request)"] --> V["Response"]
#     C -- "websocket" --> R2["router"] --> W["handler(websocket)"]
# ```
#
# Each box comes from an earlier chapter. This table is the map of the chapter:
#
# | part of `bare` | built from | chapter |
# | --- | --- | --- |
# | route templates `{id:int}`, converters, unreachable-route checks | `barelab.built.routing` | 08 |
# | query strings, forms, multipart uploads, cookies, `Set-Cookie` | `barelab.built.http_objects` | 09 |
# | reading a body within a limit, JSON with clear errors, streaming | `barelab.built.asgi_basics` | 12 |
# | the lifespan protocol around an async context manager | `barelab.built.app_lifespan` | 14 |
# | composing middleware, outermost first | `barelab.built.wsgi_middleware.compose` | 07, 16 |
#
# What is new here is the glue: objects that speak ASGI on one side and plain Python on the
# other, and the rules for when something goes wrong.

# %% [markdown]
# Everything below that is marked `#| export` is written to `barelab/built/bare.py`. The
# bonus chapters (21 to 25) import `bare` from there and extend it.

# %%
#| default_exp bare

# %% [markdown]
# The module opens with a comment on its design and its imports. Look at the imports: only
# six `from barelab.built...` lines bring in the work of six earlier chapters.

# %%
#| export
# bare: a small ASGI framework assembled from the course's parts. A Bare object is an ASGI
# app: its middleware (outermost first) wraps a core that answers lifespan scopes with
# chapter 14's run_lifespan, and http and websocket scopes with a router built on chapter
# 08's templates and converters. A handler gets a Request (or a WebSocket) and returns a
# Response or a plain value. Whatever goes wrong, the client gets a short answer without
# a traceback: an HTTPException is rendered as JSON or text, any other exception as a
# generic 500, and then re-raised so that the server logs the traceback.
import inspect
import json
from contextlib import asynccontextmanager
from functools import cached_property
from wsgiref.util import is_hop_by_hop

from barelab.built.app_lifespan import run_lifespan
from barelab.built.asgi_basics import RequestAborted, parse_json, read_body, stream
from barelab.built.http_objects import (Headers, MultiDict, delete_cookie, parse_cookie_header,
                                        parse_multipart, parse_options, parse_urlencoded,
                                        set_cookie)
from barelab.built.http_wire import format_field, reason_phrase
from barelab.built.routing import Mount, Route, unreachable_reason
from barelab.built.wsgi_middleware import compose

# %% [markdown]
# ## Errors first
#
# A framework is judged by what it does with bad input before anything else. The rule for
# `bare`: a handler that wants to refuse a request **raises** an `HTTPException` with a
# status and a detail for the client, anywhere below the handler, and the framework turns
# it into a response. Only 4xx and 5xx are errors; a redirect is a response, not an
# exception, so `HTTPException(302)` is refused.

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
# The detail defaults to the reason phrase. Here are two, and one mistake:

# %%
print(repr(HTTPException(404, "no note 7")), HTTPException(503), sep="\n")
try:
    HTTPException(302, "go elsewhere")
except ValueError as error:
    print("ValueError:", error)

# %% [markdown]
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
# For example, chapter 12's `parse_json` refusing a body:

# %%
from barelab.built.asgi_basics import parse_json as chapter12_parse_json

try:
    chapter12_parse_json(b'{"text": "hi",}')
except Exception as error:
    print(type(error).__name__, "->", repr(as_http_exception(error)))

# %% [markdown]
# ## State: a dict you can dot into
#
# Lifespan state (chapter 14) is a plain dict in `scope["state"]`. Handlers read it a lot,
# and `request.state.notes` reads better than `request.scope["state"]["notes"]`. `State`
# gives attribute access to a dict it **shares**: it never copies it, so writing
# `state.db = ...` writes into the very dict the server keeps.

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
# Writing through the `State` changes the dict; a name that is not there says what is:

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
# ## The request
#
# An http scope and a websocket scope have most things in common: a path, a query string,
# headers, cookies. So `Request` and `WebSocket` share a base class, `Connection`, with
# everything that only *reads the scope*, parsed with chapter 09's functions.
#
# First the URL the client asked for. An ASGI scope has no ready-made URL; it is rebuilt
# from the scheme, the `Host` header and the path as it was sent (`raw_path`).

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
# Now the base class. Every property parses on first use, at most once. Two details to
# look for: several `Cookie` lines are joined with `"; "` before parsing (HTTP/2 clients
# split them, RFC 9113 §8.2.3), and `app_state` is the app's own `State`, which lives as
# long as the `Bare` object does.

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
# A scope written by hand is enough to try it. This one is what a server would build for
# `GET /notes?tag=a&tag=b` with two cookies:

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
# chapter 09's `MultiDict` and `Headers`. And the 400 for a query that is not UTF-8:

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

# %%
#| export
MAX_BODY = 1024 * 1024      # bytes a Request reads at most (413 above), as in chapter 12


class Request(Connection):
    """One HTTP request. The body is read on first use, at most once, within ``max_body``."""

    def __init__(self, scope: dict, receive, app=None, *, max_body: int = MAX_BODY):
        super().__init__(scope, receive, app)
        self.max_body, self._body = max_body, None

    method = property(lambda self: self.scope["method"])
    content_type = property(lambda self: parse_options(self.headers.get("content-type", ""))[0],
                            doc="The body's media type, lower case, without parameters.")

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.path}>"

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
# `await` works at the top level of a notebook cell. Nothing here serves anything, so it
# may run on the kernel's own loop.

# %%
def receive_from(*chunks):
    messages = [{"type": "http.request", "body": chunk, "more_body": i < len(chunks) - 1}
                for i, chunk in enumerate(chunks)]
    async def receive():
        return messages.pop(0)
    return receive

post = {**scope, "method": "POST", "headers": [(b"content-type", b"application/json")]}
request = Request(post, receive_from(b'{"text": ', b'"hello"}'), max_body=64)
await request.body(), await request.body()

# %% [markdown]
# Two chunks joined, and the second call returns the same bytes without calling
# `receive()` again. Now over the limit, with no `Content-Length` to warn us, so the 413
# comes from counting:

# %%
try:
    await Request(post, receive_from(b"x" * 40, b"y" * 40), max_body=64).body()
except HTTPException as error:
    print(repr(error))

# %% [markdown]
# ### JSON and forms
#
# `json()` checks the content type (415 otherwise) and hands the body to chapter 12's
# `parse_json`, which says *where* the JSON is broken. The message never contains a
# traceback, only the parser's own words.

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
# A trailing comma is the most common JSON mistake. Look at the detail a client gets:

# %%
try:
    await Request(post, receive_from(b'{"text": "hi",}')).json()
except HTTPException as error:
    print(error.status, error.detail)

# %% [markdown]
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
# A multipart body with one field and one file, built by hand so you can see its shape:

# %%
multipart = (b"--XyZ\r\nContent-Disposition: form-data; name=\"title\"\r\n\r\nHoliday\r\n"
             b"--XyZ\r\nContent-Disposition: form-data; name=\"photo\"; filename=\"a.png\"\r\n"
             b"Content-Type: image/png\r\n\r\n\x89PNG\r\n--XyZ--\r\n")
upload = {**scope, "method": "POST",
          "headers": [(b"content-type", b"multipart/form-data; boundary=XyZ")]}
await Request(upload, receive_from(multipart)).form()

# %% [markdown]
# ## The response
#
# A `Response` holds a status, a list of header pairs and a body. It is also an **ASGI app**
# (the Werkzeug idea of chapter 09, in ASGI form): `await response(scope, receive, send)`
# sends it. So the framework never needs to know what kind of response a handler made; it
# only calls it.
#
# Subclasses change two things: `media_type`, the default `Content-Type`, and `render`,
# which turns the content into bytes.

# %%
#| export
BODYLESS = frozenset({204, 304})       # RFC 9110 §6.4.1: no content, no Content-Length


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
# `304`. It adds `Content-Type` only to responses that have a body.

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

def set_header(self, name: str, value: str) -> None:
    """Replace every line of header ``name`` with this one."""
    self.headers = [(n, v) for n, v in self.headers if n.lower() != name.lower()]
    self.add_header(name, value)

Response.add_header, Response.set_header = add_header, set_header
Response.set_cookie, Response.delete_cookie = set_cookie, delete_cookie     # chapter 09's

# %% [markdown]
# The last line reuses chapter 09's `set_cookie` and `delete_cookie` as they are: they
# only need `self.add_header`, which `Response` now has. Break the rules on purpose:

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
# The second one is a *header injection*: a value with CR LF in it would have added a
# `Set-Cookie` line of the attacker's choosing. It never reaches the wire.
#
# ### Sending it
#
# Now `__call__`. The head gets `Content-Length` unless the status is bodyless. And the body
# is dropped for `HEAD` (RFC 9110 §9.3.2: the same head as `GET`, no content) and for
# `204`/`304`. `bare` does this itself instead of trusting the server: chapter 12 showed
# barelab and uvicorn drop a `HEAD` body, but the ASGI spec does not require them to.

# %%
#| export
def encode_headers(headers) -> list[tuple[bytes, bytes]]:
    """(str, str) pairs as ASGI wants them: lowercase latin-1 bytes."""
    return [(name.lower().encode("latin-1"), value.encode("latin-1"))
            for name, value in headers]


async def send_response(self, scope, receive, send) -> None:
    headers = list(self.headers)
    if self.status not in BODYLESS:
        headers.append(("content-length", str(len(self.body))))
    await send({"type": "http.response.start", "status": self.status,
                "headers": encode_headers(headers)})
    head_only = scope.get("method") == "HEAD" or self.status in BODYLESS
    await send({"type": "http.response.body", "body": b"" if head_only else self.body})

Response.__call__ = send_response

# %% [markdown]
# Because a response is an ASGI app, `barelab.call_asgi` can call it directly and show
# every message. Here is a `GET`, with two cookies:

# %%
import barelab

hello = Response("Hello!\n")
hello.set_cookie("sid", "abc123", httponly=True)
hello.set_cookie("theme", "dark")
barelab.call_asgi(hello)

# %% [markdown]
# Two `set-cookie` lines, each with its own attributes: a cookie per line is the only
# form RFC 6265 §3 allows, because a comma may appear inside a cookie's `Expires` date, so
# the lines can never be joined. And the same response for `HEAD`:

# %%
head_call = barelab.call_asgi(hello, "HEAD")
head_call.headers[-1], head_call.body

# %% [markdown]
# `content-length: 7`, the length a `GET` would get, and an empty body. Finally a `204`:
# no `content-type`, no `content-length` (RFC 9110 §8.6: a server MUST NOT send one in a
# 204), no body.

# %%
barelab.call_asgi(Response(status=204)).sent

# %% [markdown]
# ### JSON, HTML and redirects
#
# Three small subclasses. `JSONResponse` renders with `ensure_ascii=False` (UTF-8 text,
# RFC 8259 §8.1) and `allow_nan=False`, because `NaN` is not JSON and a browser's
# `JSON.parse` would choke on it.

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


class RedirectResponse(Response):
    """Send the client to ``url``: 302 by default; 303 after a POST; 307/308 keep the method."""

    def __init__(self, url: str, status: int = 302, headers=()):
        if status not in (301, 302, 303, 307, 308):
            raise ValueError(f"a redirect status is 301, 302, 303, 307 or 308, not {status}")
        super().__init__(f"Redirecting to {url}\n", status, headers)
        self.set_header("location", url)

# %% [markdown]
# The `location` value goes through `add_header` too, so a URL with a line break in it is
# refused like any other header. A quick look at all three:

# %%
for response in (JSONResponse({"note": "café"}, status=201), HTMLResponse("<h1>Hi</h1>"),
                 RedirectResponse("/notes/1", 303)):
    print(response, response.headers, response.body)

# %% [markdown]
# ### Streaming, and noticing the client has gone
#
# A `StreamingResponse` takes an **async iterable**, usually an async generator, and sends
# each item as it comes. It reuses chapter 12's `stream`, which sends chunks while also
# listening for `http.disconnect`: as soon as the client goes away, the generator is closed
# (its `finally` runs) instead of producing into the void forever. For `HEAD` the generator
# is never started at all.

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
# loop ends. `__call__` hands them to `stream` with the headers, minus `content-type`,
# which `stream` adds itself.

# %%
#| export
async def _chunks(self):
    try:
        async for chunk in self.content:
            yield chunk.encode("utf-8") if isinstance(chunk, str) else bytes(chunk)
    finally:
        if hasattr(self.content, "aclose"):
            await self.content.aclose()


async def _send_stream(self, scope, receive, send) -> None:
    if scope.get("method") == "HEAD" or self.status in BODYLESS:
        if hasattr(self.content, "aclose"):
            await self.content.aclose()
        return await send_response(self, scope, receive, send)
    headers = [(n, v) for n, v in self.headers if n.lower() != "content-type"]
    await stream(send, receive, self.chunks(), status=self.status, headers=headers,
                 content_type=self.header("content-type"))

StreamingResponse.chunks, StreamingResponse.__call__ = _chunks, _send_stream

# %% [markdown]
# A generator that never ends, and a client that leaves at once. The `receive_events`
# argument tells `call_asgi` exactly what `receive()` returns: the request, then
# `http.disconnect`. Watch the generator's `finally`:

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

left = [{"type": "http.request"}, {"type": "http.disconnect"}]
call = barelab.call_asgi(StreamingResponse(ticks()), receive_events=left)
print(closed, "| last message:", call.sent[-1]["type"], call.sent[-1].get("more_body"))

# %% [markdown]
# The call returned although the generator never ends, the `finally` ran, and the last
# message still says `more_body: True`: no final empty body was sent, because nobody is
# there to read it. A server that sees the app return in the middle of a chunked body
# closes the connection, which is the right signal.

# %% [markdown]
# ## What a handler may return
#
# Most handlers do not need to build a `Response`. `to_response` turns the usual return
# values into one: `str` is text, `bytes` are `application/octet-stream`, a `dict` or `list`
# is JSON, and `None` means "nothing to say": **204 No Content**. Anything else is a bug in
# the handler, reported with its name so it is easy to find.

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

# %%
for value in ("hi", b"\x00\x01", {"ok": True}, [1, 2], None):
    response = to_response(value)
    print(f"{value!r:14} -> {response.status} {response.header('content-type')}")
try:
    to_response(42, handler=to_response)
except TypeError as error:
    print("TypeError:", error)

# %% [markdown]
# ## Error responses: JSON or text, never a traceback
#
# An `HTTPException` becomes a short response. Which format? An API client that sent
# `Accept: application/json` should get JSON it can parse; `curl` and browsers (which send
# `*/*` or `text/html`) get one line of text. `wants_json` ranks the two media types the
# way RFC 9110 §12.5.1 says, quality values (`q=`) and wildcards included.

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

# %%
for accept in (None, "*/*", "application/json", "text/html,*/*;q=0.8",
               "text/plain;q=0.5, application/json", "application/*"):
    print(f"{accept!r:38} -> {'JSON' if wants_json(accept) else 'text'}")

# %% [markdown]
# A tie goes to text. Now the response itself: `status`, `error` and `detail` in JSON, or
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
# uvicorn on its terminal). Starlette does the same.

# %% [markdown]
# ## The `Bare` app
#
# Now the framework object. It keeps the routes in one list in the order they were added
# (routes, WebSocket routes and mounts together: the first match wins, as in chapter 08),
# the app's own `state`, the lifespan pieces, and the middleware stack. The stack is built
# once, on the first call, with chapter 07's `compose`: `compose(core, A, B)` is `A(B(core))`, so the first
# middleware in the list is the **outermost**, the first to see a request and the last to
# see the response.

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

    async def __call__(self, scope, receive, send) -> None:
        if self.stack is None:        # built on the first call, once every part exists
            self.stack = compose(self.core, *self.middleware)
        await self.stack(scope, receive, send)

    def __repr__(self) -> str:
        return "\n".join(["<Bare>", *(f"  {entry!r}" for entry in self.routes)])

# %% [markdown]
# ### Adding routes
#
# A route is chapter 08's `Route`: a template such as `/notes/{id:int}`, compiled to a
# regular expression, with converters that turn the matched text into an `int` (or a
# `uuid.UUID`, or a `path`). It does not care that its "app" is now an async handler
# instead of a WSGI app. Two checks happen when a route is *added*, so that mistakes show
# up when the program starts, never on a request: the handler must be an `async def`, and
# the route must be reachable (chapter 08's `unreachable_reason`).

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
# chapter 08's `allowed_methods` adds it.

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
# WebSocket routes live in the same list, as a subclass of `Route` so the router can tell
# them apart. A mount is chapter 08's `Mount`: a prefix and any ASGI app behind it.

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


def mount(self, prefix: str, app) -> Mount:
    """Hand ``prefix`` and every path below it (http and websocket) to another ASGI app."""
    entry = Mount(prefix, app)
    self.routes.append(entry)
    return entry

Bare.websocket, Bare.mount = websocket_route, mount

# %% [markdown]
# The mistakes, made on purpose. A plain `def` handler, a converter that does not exist,
# and a route hidden behind an earlier one:

# %%
demo = Bare()

@demo.get("/notes/{id:int}")
async def one_note(request):
    return {"id": request.path_params["id"]}

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
# first. Only the first route was added:

# %%
demo

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

# %%
#| export
@asynccontextmanager
async def _no_lifespan():
    yield None


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
# know is an error: that is how the ASGI spec says an app declines.

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
# `find` walks the list once. A mount takes its prefix and everything below it, on a
# segment boundary (`/admin` and `/admin/x`, never `/administrator`). A route of the other
# kind is skipped. A route whose template matches but whose methods do not adds its
# methods to `allowed`: that is how a 405 knows its `Allow` header.

# %%
#| export
def find(self, scope: dict):
    """What takes this scope: ``(Mount, None)``, ``(route, params)``, or ``(None, allowed)``
    with the methods other routes on this path allow (empty: nothing is here)."""
    path, allowed = route_path(scope), set()
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
# When nothing takes the request, `refusal` says what to answer: 404 if no route has this
# path; **405** with `Allow` if some route has it for other methods (RFC 9110 §15.5.6: the
# `Allow` header is a MUST); and for `OPTIONS`, a 204 that lists the methods, which is
# what the method is for (RFC 9110 §9.3.7).

# %%
#| export
def refusal(scope: dict, allowed: set):
    """The answer when no route takes the request: 404, 405 with Allow, or OPTIONS's 204."""
    if not allowed:
        return HTTPException(404, f"nothing here at {scope['path']}")
    allow = ", ".join(sorted(allowed | {"OPTIONS"}))
    if scope["method"] == "OPTIONS":
        return Response(status=204, headers=[("allow", allow)])
    return HTTPException(405, f"{scope['method']} is not allowed here; allowed: {allow}",
                         [("allow", allow)])

# %% [markdown]
# ### Answering an http scope
#
# `handle_http` first protects `HEAD` once more: whatever app answers (a `bare` handler or
# a mounted app that knows nothing about `HEAD`), every body byte is dropped on the way
# out. Then a mount gets the scope with its prefix added to `root_path`; anything else
# gets a `Request` with the matched `path_params`.

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
# Then the dispatch itself: find the entry, hand a mount its scope, or build the `Request`
# and let `respond` (next) run the handler.

# %%
#| export
async def handle_http(self, scope, receive, send) -> None:
    if scope["method"] == "HEAD":
        send = without_body(send)
    entry, found = self.find(scope)
    if isinstance(entry, Mount):
        root = scope.get("root_path", "") + entry.prefix
        return await entry.app({**scope, "root_path": root}, receive, send)
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

# %%
#| export
def watched(send):
    """A send that remembers whether the response has started: ``.started``."""
    async def watching_send(message):
        watching_send.started = True
        await send(message)
    watching_send.started = False
    return watching_send


async def respond(self, request: Request, route, found, send) -> None:
    watching = watched(send)
    try:
        outcome = refusal(request.scope, found) if route is None else \
            to_response(await route.app(request), route.app)
        if isinstance(outcome, HTTPException):
            raise outcome
        await outcome(request.scope, request.receive, watching)
    except HTTPException as error:
        if watching.started:
            raise
        await error_response(error, request.headers.get("accept"))(
            request.scope, request.receive, send)
    except RequestAborted:
        return                                  # the client left: nobody to answer
    except Exception:
        if watching.started:
            raise                               # the server cuts the connection
        await Response("500 Internal Server Error\n", 500)(request.scope, request.receive,
                                                           send)
        raise                                   # the server logs the traceback

Bare.respond = respond

# %% [markdown]
# ## A first `bare` app, in-process
#
# Enough to try it. Three handlers on `demo` (which already has `/notes/{id:int}`): a
# greeting that reads the query, one that fails, and one that returns something it should
# not.

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
# The typed parameter arrives as an `int` (chapter 08's converter), and a path that does
# not fit the converter is not a match at all, so it is a 404:

# %%
for path in ("/notes/7", "/notes/seven"):
    call = barelab.call_asgi(demo, "GET", path)
    print(path, call.status, call.body)

# %% [markdown]
# Now the bug. `call_asgi` re-raises an exception that escapes the app, as a server would
# log it; `raise_errors=False` keeps it in `call.exception` so we can look at both sides:

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
# dropped the bytes). Ask for JSON and the same 405 comes as JSON:

# %%
barelab.call_asgi(demo, "DELETE", "/notes/7", headers=[("accept", "application/json")]).body

# %% [markdown]
# ### Mounting another ASGI app
#
# A mount hands a whole subtree to another ASGI app: another `Bare`, a Starlette app, or a
# hand-written one from chapter 12. This mounted app reports the two paths it sees:

# %%
async def where_am_i(scope, receive, send):
    text = f"root_path={scope['root_path']!r} path={scope['path']!r}\n"
    await Response(text)(scope, receive, send)

demo.mount("/legacy", where_am_i)
for path in ("/legacy", "/legacy/report", "/legacyx"):
    print(path, barelab.call_asgi(demo, "GET", path).text, end="")

# %% [markdown]
# `/legacyx` is not below `/legacy` (a segment boundary matters), so `bare` answered 404
# itself with its own text.

# %% [markdown]
# ## Middleware, outermost first
#
# `Bare(middleware=[...])` takes ASGI middleware factories: anything that, called with an
# app, returns an app. A class from chapter 16 is one; `functools.partial` adds options.
# The order is the one you read: the first is the outermost.
#
# A tiny middleware that notes in a list when it sees a request go in and its response
# start come out shows the order:

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
# The ids are 32 hex digits, new on every run. Note where `bare`'s own error handling sits:
# inside the middleware. A middleware always sees a proper response, even a 500, so an
# access log in chapter 16's style logs the 500 instead of a missing response.

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
    events.append(f"settings loaded, state has {sorted(state._data)}")

@life.on_shutdown
async def goodbye(state):
    events.append("shutdown hook ran")

# %% [markdown]
# `barelab.call_lifespan` plays the server's part: `lifespan.startup`, then
# `lifespan.shutdown`. The messages, then the order of events:

# %%
life_call = barelab.call_lifespan(life)
print([message["type"] for message in life_call.sent])
events

# %% [markdown]
# The context manager is entered first and left last, and the hooks run inside it. The
# server's state dict now holds both the database and the greeting:

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

    def __init__(self, scope: dict, receive, send, app=None):
        super().__init__(scope, receive, app)
        self._send, self.state_name = send, "connecting"    # then "open", then "closed"

    def __repr__(self) -> str:
        return f"<WebSocket {self.path} {self.state_name}>"

# %% [markdown]
# `accept` reads the `websocket.connect` message first (the spec's order), and checks
# that a chosen subprotocol is one the client offered: RFC 6455 §4.2.2 forbids choosing
# another, and browsers fail the connection if you do.

# %%
#| export
async def accept(self, subprotocol: str | None = None, headers=()) -> None:
    """Complete the handshake; ``subprotocol`` must be one the client offered."""
    message = await self.receive()
    if message["type"] == "websocket.disconnect":
        self.state_name = "closed"
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
# and turns `websocket.disconnect` into the exception. `close` works in both stages:
# before accept, the spec has the server refuse the handshake with a 403.

# %%
#| export
async def receive_message(self) -> dict:
    """The next websocket.receive message; WebSocketDisconnect once the client has gone."""
    if self.state_name != "open":
        raise RuntimeError(f"receive on a WebSocket that is {self.state_name}: accept it first")
    message = await self.receive()
    if message["type"] == "websocket.disconnect":
        self.state_name = "closed"
        raise WebSocketDisconnect(message.get("code", 1005), message.get("reason") or "")
    return message


async def close(self, code: int = 1000, reason: str = "") -> None:
    """Close: before accept the server refuses the handshake (403), after it sends Close."""
    if self.state_name == "connecting":
        await self.receive()                        # websocket.connect, as the spec orders
    if self.state_name != "closed":
        self.state_name = "closed"
        await self._send({"type": "websocket.close", "code": code, "reason": reason})

WebSocket.accept, WebSocket.receive_message, WebSocket.close = accept, receive_message, close

# %% [markdown]
# The typed receives. A text frame and a binary frame are different things in RFC 6455,
# so `receive_text` on a binary message is the *client's* mistake. The RFC has a close
# code for it: 1003, "received a type of data it cannot accept" (§7.4.1). Invalid JSON in
# a text message gets 1007, "data within a message that was not consistent with the type
# of the message". Either way the handler sees `WebSocketDisconnect`, as if the client had
# left.

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

async def send_text(self, text: str) -> None:
    await self._send({"type": "websocket.send", "text": text})

async def send_bytes(self, data: bytes) -> None:
    await self._send({"type": "websocket.send", "bytes": bytes(data)})

async def send_json(self, data) -> None:
    await self.send_text(json.dumps(data, ensure_ascii=False))

WebSocket.receive_json = receive_json
WebSocket.send_text, WebSocket.send_bytes, WebSocket.send_json = send_text, send_bytes, send_json

# %% [markdown]
# Last, `handle_websocket`. No route: close before accept, so the server answers 403.
# The handler's `WebSocketDisconnect` is a normal end. An `HTTPException` means "refused":
# 1008, policy violation (a 403 if it came before accept). Any other exception closes with
# 1011, "an unexpected condition" (RFC 6455 §7.4.1), and is re-raised for the log.

# %%
#| export
async def handle_websocket(self, scope, receive, send) -> None:
    entry, found = self.find(scope)
    if isinstance(entry, Mount):
        root = scope.get("root_path", "") + entry.prefix
        return await entry.app({**scope, "root_path": root}, receive, send)
    websocket = WebSocket({**scope, "path_params": found or {}}, receive, send, self)
    if entry is None:
        return await websocket.close(1008)      # before accept: the server answers 403
    try:
        await entry.app(websocket)
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
# An echo route, tried in-process. `receive_events` lists what the client "sends": the
# connect, a text message, a binary message. The handler shouts the text and reverses the
# bytes:

# %%
@demo.websocket("/echo/{mode}")
async def echo(websocket):
    await websocket.accept()
    while True:
        message = await websocket.receive_message()
        if message.get("text") is not None:
            await websocket.send_text(message["text"].upper())
        else:
            await websocket.send_bytes(message["bytes"][::-1])

client_says = [{"type": "websocket.connect"}, {"type": "websocket.receive", "text": "hi"},
               {"type": "websocket.receive", "bytes": b"\x01\x02\x03"}]
barelab.call_asgi(demo, path="/echo/loud", receive_events=client_says)

# %% [markdown]
# The binary message went out as `bytes` and came back as `bytes`, never through text.
# When the list ran out, `call_asgi` said `websocket.disconnect`, the loop's next receive
# raised `WebSocketDisconnect`, and the handler ended without a trace. A path without a
# WebSocket route is refused before accept:

# %%
barelab.call_asgi(demo, path="/nowhere", receive_events=client_says[:1]).sent

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
# Its state lives in the lifespan, so every server that runs it starts from empty.

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
# §15.5.21) and answers 201 with a `Location` header; deleting returns `None`, so 204.

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
# message goes to everyone in the room prefixed with the room's name; a binary message is
# passed on as it is. The `finally` takes the socket out of the room however the handler
# ends.

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
# Here is the whole route table:

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
# 201, a `location`, and the note as JSON. The rest of the API in one session, as a table
# of request, status and body. Look at the error lines especially:

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
# The count goes up because the client sent the `sid` cookie back each time. Last, a
# WebSocket in the `lobby`: a text message and a binary one, each coming back as it went
# in:

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
# `barelab.serve` runs the lifespan first, so the state exists before the first request:

# %%
served = barelab.serve(notes)
served

# %%
print(barelab.http_request(served, "POST", "/notes", json={"text": "served"}).text)
print(barelab.http_request(served, "GET", "/count?to=3").text, end="")
print(barelab.http_request(served, "GET", "/visits").header("set-cookie"))

# %% [markdown]
# (`header` joins repeated fields with a comma, as RFC 9110 §5.3 allows for most fields
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
# unchanged. This is the server the raw-byte probes below go to.

# %%
from barelab.built.websocket import WebSocketASGIServer

course = barelab.serve(notes, name="notes_on_course_server", server=WebSocketASGIServer)
barelab.http_request(course, "GET", "/notes").text

# %% [markdown]
# An empty list: this server ran its own lifespan, so it has its own state. Now the
# probes, each a few raw bytes. First invalid JSON. Look for the status line, the length
# and a body with the parser's reason and nothing else:

# %%
def raw(data: bytes) -> bytes:
    return barelab.raw_exchange(course, data).received

bad_json = b'{"text": oops}'
barelab.show_bytes(raw(b"POST /notes HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                       b"Content-Type: application/json\r\n"
                       b"Content-Length: %d\r\n\r\n%s" % (len(bad_json), bad_json)))

# %% [markdown]
# A 400 with a one-line reason: no `Traceback`, no file name. Next, `HEAD` on the list of
# notes. The head must carry the same `content-length` as a `GET`, and the response must
# end right after the empty line:

# %%
head = raw(b"HEAD /notes HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
barelab.show_bytes(head)

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
# `visit number 1`: the server had not seen that session. And 404 against 405:

# %%
for request_line in (b"GET /nothing HTTP/1.1", b"PATCH /notes/1 HTTP/1.1"):
    answer = raw(request_line + b"\r\nHost: x\r\nConnection: close\r\n\r\n")
    print(answer.split(b"\r\n\r\n")[0].decode().splitlines()[:2])

# %% [markdown]
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
# The course server's log shows each exchange, the 101 of the WebSockets included:

# %%
course.log

# %% [markdown]
# ### On uvicorn
#
# uvicorn imports the app from a module, so the app must be in a file. As in chapter 12,
# `inspect.getsource` gives back the source of the cells above; the file is a header with
# the imports, plus those sources.

# %%
import inspect
import sys
import tempfile
from pathlib import Path

HEADER = '''"""Chapter 18's demo app, written out of the notebook so that uvicorn can import it."""
import asyncio
import itertools
import uuid
from collections import Counter, defaultdict
from contextlib import asynccontextmanager

from barelab.built.bare import Bare, HTTPException, JSONResponse, Response, StreamingResponse
'''
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
# goes to a file instead of the notebook.

# %%
import socket
import subprocess
import time

listener = socket.create_server(("127.0.0.1", 0))
uvicorn_url = f"http://127.0.0.1:{listener.getsockname()[1]}"
uvicorn_log = open(Path(app_dir.name) / "uvicorn.log", "w")
uvicorn = subprocess.Popen(
    [sys.executable, "-m", "uvicorn", "notes_app:notes", "--app-dir", app_dir.name,
     "--fd", str(listener.fileno())],
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
# "Waiting for application startup", "Application startup complete": uvicorn found
# `bare`'s lifespan and ran it. No "Exception in ASGI application" anywhere: every request
# above, the broken ones included, got an answer from `bare` itself.

# %% [markdown]
# ## Summary
#
# - `bare` is about 700 lines with its comments and docstrings, and most of it is glue: routing is chapter 08's, parsing
#   and cookies chapter 09's, body reading and streaming chapter 12's, lifespan chapter
#   14's, middleware composition chapter 07's. It lives in `barelab/built/bare.py`.
# - `Bare` is an ASGI app: middleware (outermost first) around a core that dispatches
#   `lifespan`, `http` and `websocket` scopes.
# - Handlers are `async def handler(request)`; they return a `Response` (or
#   `JSONResponse`, `HTMLResponse`, `RedirectResponse`, `StreamingResponse`), a `str`,
#   `bytes`, a `dict` or `list`, or `None` for 204. Anything else is a `TypeError` naming
#   the handler.
# - Refusing is raising: `HTTPException(status, detail)` becomes JSON or text depending on
#   `Accept`. Any other exception is a bare `500 Internal Server Error` for the client and
#   a traceback in the server's log, never the other way round.
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
# ## Clean up
#
# Stop every server this chapter started. The number is how many were still running.

# %%
barelab.stop_all()
