# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # 12. A first ASGI app
#
# Chapter 05 wrote a WSGI app with nothing but PEP 3333. This chapter does the same for
# ASGI: no Starlette, no FastAPI, only `scope`, `receive` and `send`. You will read a body
# that arrives in pieces, answer JSON with the right status codes, stream server-sent
# events that arrive one by one, and stop streaming the moment the client hangs up. Then
# you run the very same file on uvicorn and compare the bytes.
#
# ## Learning goals
#
# By the end of this chapter you can:
#
# - read a request body the ASGI way, looping on `receive()` until `more_body` is false,
#   with a size limit that answers **413** as soon as the body passes it;
# - take JSON in and give JSON out, with **400** and a clear reason for invalid JSON,
#   **415** for another format, **404** and **405** with `Allow` from a hand-written router;
# - stream a response as several `http.response.body` messages and watch server-sent
#   events arrive over time;
# - notice `http.disconnect` while streaming and stop producing when the client leaves;
# - serve one app on barelab and on uvicorn, and explain every difference in their bytes.

# %% [markdown]
# ## The plan
#
# The app is small on purpose. Each route shows one thing:
#
# | method | path | what it shows |
# | --- | --- | --- |
# | GET | `/` | a plain text answer |
# | POST | `/sum` | JSON in, JSON out: `{"numbers": [1, 2]}` gives `{"sum": 3}` |
# | POST | `/upload` | a body read in chunks, with a limit |
# | GET | `/events?count=3` | server-sent events, one every 0.2 s |
# | GET | `/ticker` | a stream that never ends, until the client leaves |
#
# In chapter 11 you saw the events one request is made of. Here is the app's side of a
# request with a body in two pieces, for `/sum`:
#
# ```mermaid
# sequenceDiagram
#     participant S as Server
#     participant A as App
#     S->>A: await app(scope, receive, send)
#     A->>S: await receive()
#     S-->>A: http.request, body=b'{"numb', more_body=True
#     A->>S: await receive()
#     S-->>A: http.request, body=b'ers": [1, 2]}', more_body=False
#     Note over A: the body is complete: parse it
#     A->>S: await send(http.response.start, status=200)
#     A->>S: await send(http.response.body, body=b'{"sum": 3}')
# ```
#
# Read it top to bottom. The server calls the app once. The app *asks* for the body,
# one piece per `receive()`, and the server answers each time. Only when a piece says
# `more_body=False` does the app know it has the whole body. Then it answers with two
# `send()` calls: the status and headers first, the bytes second.
#
# The tools you need for that come first, and they are worth keeping. They go into
# `barelab/built/asgi_basics.py`, so that later chapters can import them instead of
# pasting them again. This line names the module:

# %%
#| default_exp asgi_basics

# %% [markdown]
# Refusals work as in chapter 05. A helper that meets bad input raises an `HTTPError`
# that carries the status to answer with, and the app catches that one type and turns it
# into a response. You already have the classes: chapter 02 made `BadRequest` (400) and
# `ContentTooLarge` (413), chapter 04 `NotFound` (404) and `MethodNotAllowed` (405),
# chapter 05 `UnsupportedMediaType` (415). HTTP does not care whether the app speaks WSGI
# or ASGI, so the same classes serve here. The module opens by importing them:

# %%
#| export
# Helpers for ASGI apps written by hand: read a body that arrives in chunks (with a
# limit), read JSON, answer with text or JSON, and stream until the client leaves. Bad
# input raises an HTTPError that names the status to answer with, as in wsgi_basics.
import asyncio
import json
import re

from barelab.built.http_wire import BadRequest, ContentTooLarge, HTTPError
from barelab.built.static_files import MethodNotAllowed, NotFound
from barelab.built.wsgi_basics import UnsupportedMediaType

# %% [markdown]
# Each class knows its status, so code that catches an `HTTPError` never has to look the
# number up:

# %%
refusals = (BadRequest, ContentTooLarge, NotFound, MethodNotAllowed, UnsupportedMediaType)
{cls.__name__: cls("why").status for cls in refusals}

# %% [markdown]
# One case is new. The client may hang up while you are still reading its body. ASGI
# tells you with an `http.disconnect` message, and `RequestAborted` is the exception for
# it. It is not an `HTTPError`: there is nobody left to answer, so it has no status.
#
# `MAX_BODY` is the default limit on a body, one mebibyte. Pick your own per route; the
# point is that there is always one.

# %%
#| export
MAX_BODY = 1024 * 1024   # bytes; a bigger body is a 413

class RequestAborted(Exception):
    """The client went away (http.disconnect) before the request body was complete."""

# %% [markdown]
# ## Reading the body
#
# In WSGI the body is a file: `environ["wsgi.input"].read(n)`. In ASGI it is a series of
# `http.request` messages, each with some `body` bytes and a `more_body` flag (ASGI HTTP
# spec, "Request - receive event"). The server hands them over as they come off the
# network, so a large upload never has to sit in memory all at once.
#
# Here is the mistake everyone makes once: call `receive()` a single time and take its
# body as the whole body. `call_asgi` from chapter 11 runs an app without a server, and
# when you give it a list as the body, it hands the app one piece per `receive()`. Watch
# the transcript under the output: which messages went into the app, and what came out.

# %%
import barelab

async def naive_echo(scope, receive, send):
    message = await receive()                     # only the first piece!
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": message["body"]})

barelab.call_asgi(naive_echo, "POST", "/", body=[b"Hello, ", b"chunked ", b"world"])

# %% [markdown]
# Three `http.request` messages were ready, the app took one, and the answer is
# `Hello, `. The other two pieces were never read. Nothing failed, which is what makes the
# bug nasty: on a real server a small body usually arrives in one message, so every test
# you try by hand passes. A big upload never arrives in one message, and then the app
# silently works on a truncated body.
#
# The rule is a loop: keep calling `receive()` until a message says `more_body: False`.
# The loop needs two more things:
#
# - **A limit.** A server hands over whatever the client sends, and a client can send
#   gigabytes. `read_body` counts as it goes and raises `ContentTooLarge` the moment the
#   total passes `limit`, without waiting for the rest.
# - **A way out.** If `receive()` says `http.disconnect`, the client is gone and no more
#   body will come. Waiting for `more_body: False` would wait forever, so `read_body`
#   raises `RequestAborted`.
#
# Both keys of the message have defaults in the spec (`body` is `b""`, `more_body` is
# `False`), so the loop reads them with `.get`.

# %%
#| export
async def read_body(receive, limit: int = MAX_BODY) -> bytes:
    """Every ``http.request`` chunk joined; 413 as soon as the total passes ``limit``."""
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise RequestAborted("the client left before the body was complete")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise ContentTooLarge(f"the body is over {limit} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)

# %% [markdown]
# Two details in the order of the lines. The disconnect check comes before anything
# else, because an `http.disconnect` message has no `body` key to read. And the size is
# checked before the chunk is kept, so an oversized body never grows the list past one
# chunk beyond the limit.
#
# To try `read_body` without an app around it, you need something that plays the server:
# a `receive` that hands out chunks. `fake_receive` makes one from a few byte strings,
# and once they run out it says `http.disconnect`, as a server does once the client has
# gone. Here it is, asked three times for two chunks:

# %%
def fake_receive(*chunks):
    """A receive() that hands out these chunks as http.request messages, in order."""
    messages = [{"type": "http.request", "body": chunk, "more_body": i < len(chunks) - 1}
                for i, chunk in enumerate(chunks)]
    async def receive():
        return messages.pop(0) if messages else {"type": "http.disconnect"}
    return receive

receive = fake_receive(b"ab", b"c")
[await receive(), await receive(), await receive()]

# %% [markdown]
# `more_body` is `True` on every chunk but the last, and the third call is the
# disconnect. Notebook cells can use `await` at the top level, so there is no
# `asyncio.run` here. Now give `read_body` the three pieces `naive_echo` lost:

# %%
await read_body(fake_receive(b"Hello, ", b"chunked ", b"world"))

# %% [markdown]
# All three pieces, joined. Now the two ways a body can go wrong. Both raise, and a cell
# that raises stops there, so `attempt` calls a function and returns the result *or* the
# exception as text. It awaits the result when there is something to await, so it works
# for `read_body` and for plain functions alike.

# %%
import inspect

async def attempt(function, *args):
    """Call function(*args), await it if needed; the result or the exception, as text."""
    try:
        result = function(*args)
        return repr(await result if inspect.isawaitable(result) else result)
    except Exception as error:
        return repr(error)

await attempt(int, "42"), await attempt(int, "forty-two")

# %% [markdown]
# A result comes back as its `repr`, an exception as the exception's `repr`, and the
# cell goes on either way. First a body one byte over its limit, then a client that hangs up before sending any
# body at all:

# %%
barelab.show_transcript([
    ("11 bytes, limit 10", await attempt(read_body, fake_receive(b"Hello, ", b"ASGI"), 10)),
    ("client hangs up", await attempt(read_body, fake_receive())),
])

# %% [markdown]
# The first is a 413, raised after the second chunk pushed the count to 11: `read_body`
# never asked for a third. The second is the client leaving: `fake_receive()` with no
# chunks answers `http.disconnect` at once, the way a server does when the connection
# closes mid-upload.
#
# Why count at all, instead of trusting the `Content-Length` header? Because it may be
# absent: a chunked upload has none, as you will see over a real socket below. And
# because the count is what actually arrived. A server checks that the two agree; an app
# that counts is safe either way.
#
# Side by side with chapter 05, the body is the part of the request that changed most:
#
# | | WSGI | ASGI |
# | --- | --- | --- |
# | where the body is | `environ["wsgi.input"]`, a file | `http.request` messages from `receive()` |
# | how much at once | as many bytes as you `read(n)` | as much as the server chose to put in one message |
# | end of the body | `CONTENT_LENGTH` bytes read | a message with `more_body: False` |
# | client gone | a read error, or a short read | an `http.disconnect` message |
# | while waiting | a whole thread is blocked | the coroutine is parked; the thread serves others |

# %% [markdown]
# ## JSON in
#
# Before reading a JSON body, the app must check that the client *says* it is JSON. That
# is the `content-type` header, so you need to read headers first.
#
# An ASGI scope keeps the request headers as a list of `(name, value)` byte pairs, with
# names in lowercase (ASGI HTTP spec, "HTTP Connection Scope"). There is no dict,
# because a header can repeat. `header` finds a header by name, in any case, and joins
# the repeats with a comma, which is how RFC 9110 §5.3 says repeated field lines
# combine.

# %%
#| export
def header(scope: dict, name: str) -> str | None:
    """A request header (any case), repeats joined with ", "; None if absent."""
    wanted = name.lower().encode("latin-1")
    values = [value.decode("latin-1") for key, value in scope["headers"] if key == wanted]
    return ", ".join(values) if values else None

# %% [markdown]
# `barelab.build_scope` makes the scope a server would, with the header names in
# lowercase. Give it two `Accept` lines and ask for `ACCEPT`:

# %%
scope = barelab.build_scope("http", "GET", "/",
                            headers=[("Accept", "text/html"), ("Accept", "*/*")])
scope["headers"], header(scope, "ACCEPT"), header(scope, "cookie")

# %% [markdown]
# Two lines became one value, `'text/html, */*'`, and a header that is not there is
# `None`. The comma rule has one famous exception, `Cookie`, which a browser sends as a
# single line (RFC 6265 §5.4); chapter 09 reads cookies properly.
#
# A content type can carry parameters: `application/json; charset=utf-8` is still JSON.
# `media_type` keeps only the part before the `;`, lowercased, as in chapter 05:

# %%
#| export
def media_type(scope: dict) -> str:
    """'application/json; charset=utf-8' -> 'application/json'; '' if there is none."""
    return (header(scope, "content-type") or "").split(";", 1)[0].strip().lower()

# %% [markdown]
# A client that writes the type in capitals, with a charset, still sends JSON:

# %%
scope = barelab.build_scope("http", "POST", "/sum",
                            headers=[("Content-Type", "application/JSON; charset=utf-8")])
header(scope, "content-type"), media_type(scope)

# %% [markdown]
# Turning bytes into JSON has the traps chapter 05 listed, and the first one is Python's
# own `json` module. It is more generous than the JSON standard:

# %%
json.loads("[NaN, Infinity, -Infinity]")

# %% [markdown]
# Three floats that no other JSON parser would accept. RFC 8259 §6 says numeric values
# such as `Infinity` and `NaN` are not permitted, so a client that sends them is sending
# invalid JSON, and your app would compute with `nan` without noticing. `json.loads`
# calls its `parse_constant` argument for exactly these three words, and
# `_refuse_constant` turns each into an error:

# %%
#| export
def _refuse_constant(name: str):
    raise ValueError(f"{name} is not valid JSON (RFC 8259 §6)")

# %% [markdown]
# The same document again, with the refusal plugged in:

# %%
await attempt(lambda text: json.loads(text, parse_constant=_refuse_constant), "[NaN]")

# %% [markdown]
# A `ValueError` that names the rule. `parse_json` puts every trap in one place, and
# each one is the client's fault, so each becomes a 400 with a reason the client can act
# on:
#
# - an empty body is not a JSON document;
# - the bytes must be UTF-8 (RFC 8259 §8.1), so anything else fails in `decode`;
# - a syntax error names the line and column where the parser gave up;
# - the constants above are refused;
# - a document nested thousands of levels deep makes the parser recurse until Python
#   gives up with a `RecursionError`, which would otherwise be a 500.

# %%
#| export
def parse_json(body: bytes):
    """``body`` as JSON; BadRequest (400) with the reason when it is not valid UTF-8 JSON."""
    if not body.strip():
        raise BadRequest("the body is empty; send a JSON document")
    try:
        return json.loads(body.decode("utf-8"), parse_constant=_refuse_constant)
    except UnicodeError:
        raise BadRequest("JSON must be encoded in UTF-8 (RFC 8259 §8.1)") from None
    except json.JSONDecodeError as error:
        raise BadRequest(f"invalid JSON: {error.msg} (line {error.lineno}, "
                         f"column {error.colno})") from None
    except ValueError as error:
        raise BadRequest(f"invalid JSON: {error}") from None
    except RecursionError:
        raise BadRequest("invalid JSON: nested too deeply") from None

# %% [markdown]
# The order of the `except` clauses matters: `JSONDecodeError` is a subclass of
# `ValueError`, so it must come first to get its line and column. Try `parse_json` on one
# good body and one of each bad kind. The left column shows the first bytes of each body:

# %%
bodies = [b'{"numbers": [1, 2.5]}', b'{"numbers": [1, 2,]}', b"[NaN]", b"",
          '{"name": "Zoë"}'.encode("latin-1"), b"[" * 100_000]
barelab.show_transcript([(body[:22], await attempt(parse_json, body)) for body in bodies])

# %% [markdown]
# Read the reasons as the client would. The trailing comma is pinned to column 19. The
# latin-1 `ë` (the grey `\xeb`, one byte where UTF-8 would use two) is named as an
# encoding problem, not as a syntax error. And the hundred thousand brackets cost a 400,
# not a crashed request.
#
# `read_json` puts the steps in the order that costs least: first the content type, which
# is already in the scope; then the body, read with the limit; then the parse. A `+json`
# type such as `application/problem+json` (RFC 9457) is JSON too.

# %%
#| export
async def read_json(scope: dict, receive, limit: int = MAX_BODY):
    """The body as JSON: 415 unless the content type is JSON, then read_body, parse_json."""
    kind = media_type(scope)
    if kind != "application/json" and not kind.endswith("+json"):
        raise UnsupportedMediaType("send JSON with content-type: application/json")
    return parse_json(await read_body(receive, limit))

# %% [markdown]
# Checking the content type *before* reading means a 50 MB upload of the wrong type is
# refused without reading a byte of it. Here the same body goes in with three content
# types:

# %%
def json_scope(content_type):
    return barelab.build_scope("http", "POST", "/", headers=[("content-type", content_type)])

barelab.show_transcript([(kind, await attempt(read_json, json_scope(kind), fake_receive(b"[1]")))
                         for kind in ("application/json", "application/problem+json",
                                      "text/plain")])

# %% [markdown]
# The two JSON types parse; `text/plain` is a 415 before `receive()` is ever called.
#
# ## JSON out
#
# A response is two kinds of message: one `http.response.start` with the status and the
# headers, then `http.response.body` messages with the bytes. Header names and values are
# bytes, and names must be lowercase (ASGI HTTP spec, "Response Start - send event").
#
# Bytes are tedious to type, so the helpers take headers as `str` pairs, which are easier
# to write, and `encode_headers` turns them into what ASGI wants. Headers are latin-1 on
# the wire (chapter 02), so that is the encoding:

# %%
#| export
def encode_headers(headers) -> list[tuple[bytes, bytes]]:
    """(str, str) pairs as ASGI wants them: lowercase latin-1 bytes."""
    return [(name.lower().encode("latin-1"), value.encode("latin-1"))
            for name, value in headers]

# %% [markdown]
# A name in mixed case comes out lowercase; the value keeps its case:

# %%
encode_headers([("Content-Type", "text/plain"), ("X-Request-Id", "AbC")])

# %% [markdown]
# `send_response` sends one whole response whose body you already have. It adds
# `content-length`, so the server knows where the body ends and need not fall back to
# chunked framing (you will see that framing when the app streams).

# %%
#| export
async def send_response(send, status: int, body: bytes, headers=()) -> None:
    """One whole response: start (with content-length), then the body in one message."""
    await send({"type": "http.response.start", "status": status,
                "headers": encode_headers([*headers, ("content-length", str(len(body)))])})
    await send({"type": "http.response.body", "body": body})

# %% [markdown]
# To see what a helper sends, give it a `send` that only writes down each message.
# `recorder` returns such a `send` and the list it fills:

# %%
def recorder():
    """A send() that keeps every message it is given, and the list it keeps them in."""
    sent = []
    async def send(message):
        sent.append(message)
    return send, sent

send, sent = recorder()
await send_response(send, 201, b"made")
sent

# %% [markdown]
# Two messages, exactly the shape the spec asks for, with the length worked out for you.
#
# On top of `send_response` sits one helper per kind of answer. Each sets the
# `content-type` and encodes as UTF-8. Extra headers, such as a `location` or an
# `allow`, come through `headers`. `ensure_ascii=False` writes `ë` as UTF-8 bytes rather
# than as the escape `\u00eb`; both are valid JSON, and the first is shorter.

# %%
#| export
async def send_text(send, text: str, status: int = 200, headers=()) -> None:
    """Answer with UTF-8 text."""
    await send_response(send, status, text.encode("utf-8"),
                        [("content-type", "text/plain; charset=utf-8"), *headers])

async def send_json(send, data, status: int = 200, headers=()) -> None:
    """Answer with ``data`` as JSON (UTF-8)."""
    body = json.dumps(data, ensure_ascii=False).encode("utf-8")
    await send_response(send, status, body, [("content-type", "application/json"), *headers])

# %% [markdown]
# An error answer is plain text with the message that the `HTTPError` carries, and the
# status it names:

# %%
#| export
async def send_error(send, error: HTTPError, headers=()) -> None:
    """Answer with the status an HTTPError carries and its message as text."""
    await send_text(send, error.message + "\n", error.status, headers)

# %% [markdown]
# Hand it a refusal and look at the start message it sent:

# %%
send, sent = recorder()
await send_error(send, UnsupportedMediaType("send JSON"))
sent[0]

# %% [markdown]
# The 415 came from the class, the text type from `send_text`, the length from
# `send_response`. Each helper adds one thing to the one below it:
#
# | helper | adds |
# | --- | --- |
# | `encode_headers` | `str` pairs to lowercase latin-1 bytes |
# | `send_response` | the two messages, and `content-length` |
# | `send_text`, `send_json` | the encoding, and the `content-type` |
# | `send_error` | the status and the text, taken from an `HTTPError` |
#
# With these, an app that answers JSON is two lines. `call_asgi` shows
# the two messages it sent, with the `content-length` that `send_response` added:

# %%
async def hello_json(scope, receive, send):
    await send_json(send, {"hello": "ASGI", "path": scope["path"]})

barelab.call_asgi(hello_json, "GET", "/hi")

# %% [markdown]
# ## Routing by hand
#
# The router is a dict from path to `{method: handler}`, filled by a decorator. Each
# handler is an ASGI app of its own, `handler(scope, receive, send)`, so the router only
# has to pick one and pass the three arguments on. (Chapter 08 built a router with path
# parameters; exact paths are enough here.)
#
# The first route registers itself as soon as it is defined. Look at the shape of
# `ROUTES` after it:

# %%
ROUTES = {}   # path -> {method: handler}

def route(path, *methods):
    """Register the decorated handler for ``path`` and each of ``methods``."""
    def register(handler):
        for method in methods:
            ROUTES.setdefault(path, {})[method] = handler
        return handler
    return register

@route("/", "GET")
async def index(scope, receive, send):
    await send_text(send, "Hello from a bare ASGI app. Try /sum, /upload, /events, /ticker.\n")

ROUTES

# %% [markdown]
# One path, one method, one function. `register` returns the handler unchanged, so
# `index` is still an ordinary function you can call or test on its own; the decorator
# only wrote it into the table. When a path has no handler for the method asked
# for, the answer is a **405**, and RFC 9110 §15.5.6 says a 405 MUST carry an `Allow`
# header that lists the methods that would work. `HEAD` works wherever `GET` does: the
# app serves it with the `GET` handler, and the server drops the body of the answer.
# barelab and uvicorn both drop it (you will check both below); the ASGI spec does not
# say who must, so an app that wants to be sure can send an empty body for `HEAD` itself.

# %%
def allowed(handlers):
    """The Allow header for a path: its methods, plus HEAD where there is a GET."""
    return ", ".join(sorted({*handlers, "HEAD"} if "GET" in handlers else handlers))

allowed(ROUTES["/"]), allowed({"POST": None, "PUT": None})

# %% [markdown]
# The names are sorted so that the header is the same on every run, whatever order the
# routes were registered in. A path with only `POST` and `PUT` gets no `HEAD`.
#
# Now the app itself. It looks at the scope's `type` first. A server calls the same
# callable for HTTP requests, WebSockets and lifespan events (chapter 14), and the ASGI
# spec asks an app to "actively reject any protocol that they do not understand with an
# Exception" (chapter 11), rather than answer the wrong question.
#
# Then the path, then the method: an unknown path is a **404**, a wrong method a
# **405** with `allow`. Every refusal, whether the app raises it here or a handler raises
# it deep inside `read_json`, lands in the one `except HTTPError` at the bottom.

# %%
async def app(scope, receive, send):
    if scope["type"] != "http":
        raise RuntimeError(f"this app speaks HTTP only, not {scope['type']!r}")
    handlers = ROUTES.get(scope["path"], {})
    method = "GET" if scope["method"] == "HEAD" else scope["method"]
    try:
        if not handlers:
            raise NotFound(f"nothing at {scope['path']}")
        if method not in handlers:
            await send_error(send, MethodNotAllowed(f"{scope['method']} is not allowed here"),
                             headers=[("allow", allowed(handlers))])
            return
        await handlers[method](scope, receive, send)
    except HTTPError as error:
        await send_error(send, error)

barelab.call_asgi(app).text

# %% [markdown]
# With no method or path, `call_asgi` sends `GET /`, and the first route answers. One catch-all is only safe if nothing was sent before the
# error: a response that has started cannot become a 400. Every handler in this chapter
# raises only before it starts answering, so `send_error` never comes after a response
# has begun. (Chapter 13 shows what a server does when an app breaks that rule.)
#
# Now `/sum`. It reads JSON with `read_json` and answers JSON with `send_json`. In
# between it checks the *shape* of the data: valid JSON that is not what the route
# expects is still the client's mistake, a 400. (`True` is an `int` in Python, hence the
# `bool` test.)

# %%
@route("/sum", "POST")
async def sum_numbers(scope, receive, send):
    data = await read_json(scope, receive)
    numbers = data.get("numbers") if isinstance(data, dict) else None
    if not isinstance(numbers, list) or not all(
            isinstance(n, (int, float)) and not isinstance(n, bool) for n in numbers):
        raise BadRequest('send {"numbers": [...]} with a list of numbers')
    await send_json(send, {"sum": sum(numbers)})

sorted(ROUTES)

# %% [markdown]
# Notice what `sum_numbers` does *not* contain: no content-type check, no body loop, no
# `try`. `read_json` raises for a bad body and the app turns that into a response, so
# the handler reads as the happy path only.
#
# `/upload` shows the chunks themselves. It passes `read_body` a `receive` of its own: a
# wrapper that calls the real one and notes the size of each message on the way. Wrapping
# `receive` (and `send`) like this is how ASGI middleware works; chapter 16 builds on it.
# The upload limit is 64 bytes, small enough that a 413 is easy to see.

# %%
UPLOAD_LIMIT = 64   # bytes

@route("/upload", "POST")
async def upload(scope, receive, send):
    sizes = []
    async def receive_and_measure():
        message = await receive()
        sizes.append(len(message.get("body", b"")))
        return message
    body = await read_body(receive_and_measure, UPLOAD_LIMIT)
    await send_json(send, {"bytes": len(body), "chunk_sizes": sizes})

sorted(ROUTES)

# %% [markdown]
# `read_body` does not know it was given a wrapper: anything that can be awaited and
# returns messages will do. That is the whole contract of `receive`, and the reason
# `fake_receive` could stand in for a server earlier.
#
# Call the app in-process first, with the body in two pieces as in the diagram at the
# top of the chapter:

# %%
JSON = [("content-type", "application/json")]
barelab.call_asgi(app, "POST", "/sum", headers=JSON, body=[b'{"numb', b'ers": [1, 2]}'])

# %% [markdown]
# Exactly the diagram: two `http.request` messages in, `http.response.start` and
# `http.response.body` out, then the response as a client would read it: `{"sum": 3}`
# with the `content-length` that `send_response` worked out.
#
# Now the failures. `outcome` makes one in-process call and keeps the status (with the
# `allow` header, if there is one) and the text of the answer:

# %%
def outcome(method, path, **kwargs):
    call = barelab.call_asgi(app, method, path, **kwargs)
    allow = f" (allow: {call.header('allow')})" if call.header("allow") else ""
    return f"{call.status}{allow}", call.text.strip()

outcome("GET", "/nope")

# %% [markdown]
# One row per way to get it wrong:

# %%
failures = [("GET", "/sum", {}), ("DELETE", "/", {}),
            ("POST", "/sum", {"headers": JSON, "body": b'{"numbers": [1, 2,]}'}),
            ("POST", "/sum", {"headers": JSON, "body": b'{"numbers": "12"}'}),
            ("POST", "/sum", {"headers": [("content-type", "text/plain")], "body": b"1 2"}),
            ("POST", "/upload", {"body": [b"x" * 40, b"y" * 40, b"z" * 40]})]
barelab.show_transcript([(f"{m} {p}", *outcome(m, p, **kw)) for m, p, kw in failures])

# %% [markdown]
# From the top: 405 with the one method that works; 405 for `DELETE /` with `GET, HEAD`,
# since `HEAD` rides on `GET`; 400 with the exact place the JSON broke; 400 for valid
# JSON of the wrong shape; 415 for text; and 413 for 120 bytes against a limit of 64.
#
# That last one stopped early. The transcript of the same call shows how early:

# %%
barelab.call_asgi(app, "POST", "/upload", body=[b"x" * 40, b"y" * 40, b"z" * 40]).transcript

# %% [markdown]
# Two `http.request` messages in (80 bytes, over the limit), then the 413 out. The third
# chunk was never asked for. On a real server that third chunk would still be on its
# way, and it is the server's job to deal with it; you will see barelab do so below.

# %% [markdown]
# ## Streaming
#
# A WSGI app streams by returning a generator. An ASGI app streams by sending several
# `http.response.body` messages, each with `more_body: True` except the last (ASGI HTTP
# spec, "Response Body - send event"). The server writes each one to the socket as it
# comes. Since the app set no `content-length`, nobody knows the length up front, so an
# HTTP/1.1 server frames the body with `Transfer-Encoding: chunked` (RFC 9112 §7.1).
#
# You met **server-sent events** (SSE) in chapter 10: a response of type
# `text/event-stream` that a browser reads with `new EventSource(url)`. Each event is a
# few `field: value` lines followed by an empty line (HTML Living Standard,
# "Server-sent events", §9.2.5 and §9.2.6):
#
# ```
# event: tick
# id: 1
# data: {"n": 1}
#
# ```
#
# `event` names the type, `id` lets a browser that reconnects say where it got to, and
# `data` is the payload. The trap is a line break inside the data. The browser splits the
# stream on `\n`, `\r` or `\r\n`, so a data value with a newline in it must become
# several `data:` lines (the browser joins them back with `\n`). A newline in `event` or
# `id` would let whoever chose that value inject a field of their own, so `sse_event`
# refuses it.

# %%
#| export
_LINE_BREAK = re.compile(r"\r\n|\r|\n")

def sse_event(data: str, *, event: str | None = None, id: str | None = None) -> bytes:
    """One server-sent event: optional event and id lines, a data line per line of data."""
    for name, value in (("event", event), ("id", id)):
        if value is not None and _LINE_BREAK.search(value):
            raise ValueError(f"an SSE {name} field cannot contain a line break: {value!r}")
    lines = [] if event is None else [f"event: {event}"]
    lines += [] if id is None else [f"id: {id}"]
    lines += [f"data: {line}" for line in _LINE_BREAK.split(data)]
    return ("\n".join(lines) + "\n\n").encode("utf-8")

# %% [markdown]
# Three events, the last with a line break in its data. `show_bytes` prints each `\n`
# in grey, then breaks the line there:

# %%
barelab.show_bytes(sse_event('{"n": 1}', event="tick", id="1") + sse_event("bye")
                   + sse_event("two\nlines"))

# %% [markdown]
# Each event ends with an empty line, and `two\nlines` became two `data:` lines. And an
# `id` that tries to smuggle in a second field is refused:

# %%
print(await attempt(lambda: sse_event("x", id="7\ndata: forged")))

# %% [markdown]
# ### Stopping when the client leaves
#
# A stream can run for minutes. If the user closes the browser tab after two seconds,
# the app should stop producing at once: a stream that goes on computing events for
# nobody wastes the server, and a thousand forgotten streams take it down.
#
# How does the app find out? Chapter 11 showed two ways.
#
# - **From `receive()`.** Once the body has been read, the next `receive()` waits, and
#   returns `http.disconnect` when the connection closes (ASGI HTTP spec, "Disconnect -
#   receive event").
# - **From `send()`.** Since spec version 2.4, a `send()` on a closed connection should
#   raise an `OSError` ("Disconnected Client - send exception"). But older servers
#   silently drop the data, and a producer that is sleeping between events is not calling
#   `send()` at all.
#
# | how | when the app hears | on which servers |
# | --- | --- | --- |
# | `receive()` returns `http.disconnect` | soon after the connection closes, even while the app sleeps | every ASGI server |
# | `send()` raises an `OSError` | only at a `send()`, and maybe not the first one (you will see why) | spec 2.4 servers |
#
# So the reliable way is to listen. `wait_for_disconnect` keeps calling `receive()` until
# the disconnect comes, and drops anything else it gets.

# %%
#| export
async def wait_for_disconnect(receive) -> None:
    """Return once receive() says http.disconnect (body messages still unread are dropped)."""
    while (await receive())["type"] != "http.disconnect":
        pass

# %% [markdown]
# Two receives to try it on. `quiet_receive` is a client that is still connected and has
# nothing to say: it never answers. `fake_receive(b"unread")` has one chunk of body
# left, then the client leaves. `asyncio.wait_for` gives up after 0.2 s:

# %%
async def quiet_receive():
    await asyncio.sleep(3600)

barelab.show_transcript([
    ("client still there", await attempt(asyncio.wait_for,
                                         wait_for_disconnect(quiet_receive), 0.2)),
    ("client left", await attempt(wait_for_disconnect, fake_receive(b"unread"))),
])

# %% [markdown]
# While the client is there, `wait_for_disconnect` waits (the `TimeoutError` is
# `wait_for` giving up); once it leaves, it returns `None`. That wait is what a stream
# needs: it runs two tasks side by side, one that sends the chunks and one that listens.
# Whichever finishes first cancels the other.
#
# ```mermaid
# sequenceDiagram
#     participant C as Client
#     participant S as Server
#     participant P as App: producer task
#     participant L as App: listener task
#     L->>S: await receive()
#     P->>S: send(http.response.start)
#     P->>S: send(body=event 1, more_body=True)
#     S->>C: chunk: event 1
#     P->>S: send(body=event 2, more_body=True)
#     S->>C: chunk: event 2
#     C--xS: closes the connection
#     S-->>L: http.disconnect
#     L->>P: cancel()
#     Note over P: the generator's finally runs; nothing more is produced
# ```
#
# First the producer. It sends the head, then one body message per chunk, then an empty
# last message with `more_body: False`. Its `finally` closes the chunk generator, so the
# generator's own clean-up runs at once, even when the producer is cancelled in the
# middle of a `send`.

# %%
#| export
async def _send_chunks(send, chunks, status: int, headers: list) -> None:
    try:
        await send({"type": "http.response.start", "status": status,
                    "headers": encode_headers(headers)})
        async for chunk in chunks:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
    finally:
        if hasattr(chunks, "aclose"):
            await chunks.aclose()

# %% [markdown]
# Feed it an async generator of two chunks and a recording `send`, and keep only the
# part of each message that changes:

# %%
async def two_chunks():
    yield b"one "
    yield b"two"

send, sent = recorder()
await _send_chunks(send, two_chunks(), 200, [("content-type", "text/plain")])
[(m["type"], m.get("body"), m.get("more_body")) for m in sent]

# %% [markdown]
# A start, one body message per chunk with `more_body: True`, and the empty message that
# says the stream is over.
#
# Then the race. `stream` starts the producer and the listener as tasks, waits for the
# first one to finish, and cancels both (cancelling a finished task does nothing).
# Waiting for them again after `cancel()` matters: it lets the producer's `finally` run
# before `stream` returns.

# %%
#| export
async def stream(send, receive, chunks, *, status: int = 200, headers=(),
                 content_type: str = "text/plain; charset=utf-8") -> bool:
    """Send each bytes chunk of the async iterable ``chunks`` as it comes, until the end
    or until the client leaves; True if the whole stream went out."""
    head = [("content-type", content_type), *headers]
    producer = asyncio.ensure_future(_send_chunks(send, chunks, status, head))
    listener = asyncio.ensure_future(wait_for_disconnect(receive))
    try:
        await asyncio.wait({producer, listener}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (producer, listener):
            task.cancel()
        await asyncio.wait({producer, listener})
    return _stream_finished(producer)

# %% [markdown]
# Why two tasks and not one loop? Because the producer spends most of its time asleep
# between events, and a sleeping coroutine cannot also be waiting in `receive()`. Tasks
# let both waits run at once on the one event loop, and the first to finish decides.
#
# What `stream` returns depends on how the producer ended. Cancelled means the listener
# heard the disconnect first. An `OSError` means a spec 2.4 `send()` noticed it first.
# Either way the client left, and `stream` says `False`. Any other exception is a bug in
# the app's generator, and is raised, so it is not mistaken for a client that left.

# %%
#| export
def _stream_finished(producer: asyncio.Future) -> bool:
    """True if the producer sent everything, False if the client left; app errors raise."""
    if producer.cancelled() or isinstance(producer.exception(), OSError):
        return False
    if producer.exception() is not None:
        raise producer.exception()
    return True

# %% [markdown]
# Two streaming routes use it. `/events` sends `count` events (3 unless the query says
# otherwise), one every 0.2 s. The count comes from the query string, which the scope
# keeps as bytes; chapter 05's `parse_query` decodes it, and `query_count` checks that it
# is a sensible number. A bad count is a 400, raised before the stream starts:

# %%
from barelab.built.wsgi_basics import parse_query

def query_count(scope, default=3, most=20):
    """The ?count= query parameter as an int from 1 to ``most``; 400 otherwise."""
    text = parse_query(scope["query_string"].decode("latin-1")).get("count", [str(default)])[0]
    if not text.isdecimal() or not 1 <= int(text) <= most:
        raise BadRequest(f"count must be a whole number from 1 to {most}, not {text!r}")
    return int(text)

barelab.show_transcript([(q, await attempt(query_count, barelab.build_scope(
    "http", "GET", "/events", query=q))) for q in (b"", b"count=5", b"count=0")])

# %% [markdown]
# The default, a count, and a refusal. The route itself is short, because `stream` does
# the work. `ticks` is the async generator that makes the events; `cache-control:
# no-cache` tells caches not to hand a stored copy of the stream to a later client
# without asking the server first (RFC 9111 §5.2.2.4).

# %%
@route("/events", "GET")
async def events(scope, receive, send):
    count = query_count(scope)
    async def ticks():
        for n in range(1, count + 1):
            await asyncio.sleep(0.2)
            yield sse_event(json.dumps({"n": n}), event="tick", id=str(n))
    await stream(send, receive, ticks(), content_type="text/event-stream",
                 headers=[("cache-control", "no-cache")])

# %% [markdown]
# In-process, `call_asgi` records every message. Look for the order of the rows:

# %%
barelab.call_asgi(app, "GET", "/events?count=2").transcript

# %% [markdown]
# The producer ran first and sent the head. The second row is the listener: it asked
# for the body of this GET, got an empty `http.request`, and went back to waiting. Then
# one body message per event, and the empty last one. The final row is the disconnect
# that `call_asgi` sends once the response is complete, which ended the listener.
#
# `/ticker` never ends on its own: one event every 0.1 s, until the client leaves. It
# writes what happens into `ticker_log`, so you can see the app's side of a disconnect.
# The generator's `finally` is where a real app would release what the stream used (a
# database cursor, a subscription).

# %%
ticker_log = []

@route("/ticker", "GET")
async def ticker(scope, receive, send):
    async def forever():
        n = 0
        try:
            while True:
                n += 1
                yield sse_event(str(n), event="tick")
                await asyncio.sleep(0.1)
        finally:
            ticker_log.append("producer closed")
    finished = await stream(send, receive, forever(), content_type="text/event-stream")
    ticker_log.append("stream complete" if finished else "client left: stream stopped")

sorted(ROUTES)

# %% [markdown]
# ## Serve it
#
# Every route is registered. So far each request was a function call; now serve the app
# with barelab and talk to it over real sockets.

# %%
server = barelab.serve(app, name="bare_asgi")
server

# %% [markdown]
# JSON in and out with `curl`. `-d` sends the body as a POST, `-H` sets the content type,
# and `-i` shows the response head. The body sits in a Python variable first: in a `!`
# line, IPython would take the braces of a JSON object for a `{...}` to fill in.

# %%
numbers = '{"numbers": [1, 2, 3.5]}'
# !curl -s -i -H "Content-Type: application/json" -d '{numbers}' {server.url}sum

# %% [markdown]
# `{"sum": 6.5}`: JSON has one number type, so `1 + 2 + 3.5` comes back as a float. The
# `content-type` and `content-length` came from `send_json`; `date` and `server` were
# added by the server, which the app never asked for. Now a 405 over the wire, with
# its `Allow` header:

# %%
barelab.http_request(server, "PUT", "/sum")

# %% [markdown]
# The `allow: POST` the app set, and the text from `send_error`. The last header,
# `Connection: close`, is the server's answer to the `Connection: close` that
# `http_request` sends; it writes the name in the usual capitals, and since header names
# are case-insensitive, that is as good as lowercase on the wire.
#
# ### A chunked upload
#
# `call_asgi` made up the chunks. A real client sends a body in chunks with
# `Transfer-Encoding: chunked` (RFC 9112 §7.1): each chunk is its size in hex, CRLF, the
# bytes, CRLF, and a chunk of size 0 ends the body. Send one by hand, in three chunks of
# 5, 6 and 1 bytes, and keep only the body of the answer:

# %%
CHUNKED_UPLOAD = (b"POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                  b"Connection: close\r\n\r\n"
                  b"5\r\nhello\r\n6\r\n world\r\n1\r\n!\r\n0\r\n\r\n")
uploaded = barelab.raw_exchange(server, CHUNKED_UPLOAD)
uploaded.received.split(b"\r\n\r\n", 1)[1]

# %% [markdown]
# The server decoded the chunked framing and handed the app one `http.request` per
# chunk: 5, 6 and 1 bytes, 12 in all. The app never saw the hex sizes.
#
# There is no `Content-Length` in that request, so nothing tells the server or the app
# how big the body will be. Only counting, as `read_body` does, can enforce a limit. Send
# 100 bytes in ten chunks of 10 (`a` is 10 in hex), against the limit of 64:

# %%
head = CHUNKED_UPLOAD.split(b"\r\n\r\n")[0] + b"\r\n\r\n"
big = b"".join(b"a\r\n" + b"0123456789\r\n" for _ in range(10)) + b"0\r\n\r\n"
too_big = barelab.raw_exchange(server, head + big)
too_big.received.split(b"\r\n")[0], too_big.received.split(b"\r\n\r\n", 1)[1]

# %% [markdown]
# A 413, answered after the seventh chunk (70 bytes), while the rest of the body was
# still unread. The reason phrase "Content Too Large" is the name RFC 9110 §15.5.14
# gives 413. The app never chose it: an ASGI app sends only the number, and the server
# adds the phrase. What to do with the chunks nobody read is the server's business too,
# not the app's; chapter 13 deals with it when you write a server.
#
# The server log has a line per request so far, and no errors:

# %%
server.log

# %% [markdown]
# The first line is worth a look: barelab offered the app a `lifespan` scope, the app
# raised as it should, and barelab went on without lifespan. uvicorn will say the same.
#
# ### Events, arriving over time
#
# `raw_exchange` shows what arrived, not when. To see a stream *as* a stream you need a
# client that notes the time of each event. The first thing it needs is to find events
# in the bytes received so far: a line that starts with a field name, any more lines,
# then the empty line that ends the event. A regular expression does it:

# %%
import re
import socket
import time

SSE_EVENT = re.compile(rb"(?:event|id|data):[^\n]*\n(?:[^\n]+\n)*\n")
SSE_EVENT.findall(b"event: tick\ndata: 1\n\ndata: 2\n\ndata: 3")

# %% [markdown]
# Two complete events; `data: 3` has no empty line after it yet, so it is not an event
# until more bytes arrive. The client will run this on the raw bytes of the response,
# head and framing included; the pattern picks out the events and skips the rest.
#
# `sse_client` opens a socket, sends a GET, and after each `recv` counts the events
# found so far, noting the time of each new one. With `max_events` it hangs up after
# that many, like a user closing the tab. Ask `/events` for three. The times are real
# (the notebook masks them when it checks outputs, so yours may differ a little):

# %%
def sse_client(host, port, path, max_events=None, timeout=5.0):
    request = f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()
    rows, received, start = [], b"", time.monotonic()
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(request)
        while max_events is None or len(rows) < max_events:
            if not (chunk := sock.recv(4096)):
                break                                   # the server closed: stream over
            received += chunk
            for event in SSE_EVENT.findall(received)[len(rows):]:
                rows.append((f"{time.monotonic() - start:.2f} s", event))
    return barelab.show_transcript(rows[:max_events], columns=("after", "event"))

sse_client(server.host, server.port, "/events?count=3")

# %% [markdown]
# One event every 0.2 s, each sent the moment it was produced. Nothing waited for the
# end of the stream, which is the whole point of streaming.

# %% [markdown]
# ### The client leaves
#
# First the broken version. `naive_ticker` is what most first attempts look like: a loop
# of `send()` and `sleep()`, one event per second, that never looks at `receive()`. It
# writes in `naive` how many events it sent, and which exception ended it, if any. A
# client takes one event and hangs up:

# %%
naive = {"sent": 0, "ended by": None, "client left at": None, "ended at": None}

@route("/naive-ticker", "GET")
async def naive_ticker(scope, receive, send):
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/event-stream")]})
    try:
        while True:
            await send({"type": "http.response.body", "more_body": True,
                        "body": sse_event(str(naive["sent"] + 1))})
            naive["sent"] += 1
            await asyncio.sleep(1.0)
    except Exception as error:
        naive["ended by"], naive["ended at"] = type(error), time.monotonic()
        raise

sse_client(server.host, server.port, "/naive-ticker", max_events=1)

# %% [markdown]
# A moment later, is the app still at it?

# %%
naive["client left at"] = time.monotonic()
time.sleep(0.3)
naive["sent"], naive["ended by"]

# %% [markdown]
# One event sent, and nothing has ended it: the handler is asleep, about to send event 2
# to a client that is gone. It can only find out by sending. Wait for that (at most five
# seconds):

# %%
while naive["ended by"] is None and time.monotonic() < naive["client left at"] + 5:
    time.sleep(0.05)
print("ended by:", naive["ended by"].__name__,
      "- an OSError:", issubclass(naive["ended by"], OSError))
print("sends that went through after the client left:", naive["sent"] - 1)
print(f"noticed {naive['ended at'] - naive['client left at']:.1f} s after the client left")

# %% [markdown]
# barelab follows spec 2.4, so a `send()` raised `ClientDisconnected`, its `OSError`
# subclass, in the end. But not the first `send()` after the client left. Here is why,
# one step at a time:
#
# 1. The client closed its socket, and its operating system sent a FIN. A FIN means "I
#    will send nothing more". It does not mean "I will read nothing more": a client may
#    close only its sending half and still read the answer. So the server side cannot
#    treat the FIN as "gone", and the connection stays open for writing.
# 2. A second later, event 2: the server's operating system accepted the bytes and sent
#    them, and `send()` returned as if all was well. The client's operating system had
#    no socket left to deliver them to, so it answered with a reset (RST).
# 3. A second after that, event 3: now the server's side knows the connection was
#    reset, the write fails, and barelab's `send()` raises.
#
# That is TCP, not barelab: the first write after the peer has closed usually succeeds,
# and the next one fails. "Usually", because a client that closes with unread data still
# in its buffer sends a reset at once, and then even the first write fails. Either way,
# a handler that only learns from `send()` keeps producing for a while, here about two
# seconds. On a server that does not raise (before spec 2.4, none had to), nothing would
# ever stop it.
#
# Now the ticker that listens:

# %%
sse_client(server.host, server.port, "/ticker", max_events=3)

# %% [markdown]
# Three events, 0.1 s apart, then the client hung up. The app's side:

# %%
time.sleep(0.2)
ticker_log

# %% [markdown]
# The listener got `http.disconnect`, `stream` cancelled the producer in the middle of
# its `sleep`, the generator's `finally` ran, and `stream` returned `False`. Nothing was
# produced after the client left. Here the app did not have to send into a dead
# connection to find out: barelab saw the connection close and answered the `receive()`
# that the listener was waiting in. The server's log agrees:

# %%
for entry in server.log.entries[-2:]:
    print(entry.text())

# %% [markdown]
# The app returned without finishing the response, which is right when nobody is there
# to receive the end. barelab notes it as information, not as an error, and logs the
# request with the 63 bytes of events that went out.
#
# ## The same app on uvicorn
#
# `app` speaks only ASGI, so any ASGI server can run it. uvicorn, a server many FastAPI
# apps run on in production, is a program you start from a shell: `uvicorn module:app`.
# It imports the module and serves the `app` in it. So the app needs to live in a file.
#
# The cells above *are* that file. `inspect.getsource` returns the source of a function
# defined in a cell, decorator included:

# %%
print(inspect.getsource(index))

# %% [markdown]
# So the file is the chapter's own functions, after a header with the imports and the
# globals the handlers use:

# %%
HEADER = '''"""The app of chapter 12, written out of the notebook so that uvicorn can import it."""
import asyncio
import json

from barelab.built.asgi_basics import (BadRequest, HTTPError, MethodNotAllowed, NotFound,
    read_body, read_json, send_error, send_json, send_text, sse_event, stream)
from barelab.built.wsgi_basics import parse_query

ROUTES = {}
UPLOAD_LIMIT = 64
ticker_log = []
'''

# %% [markdown]
# The functions go in the order they were defined, `route` first, so that each
# decorator fills `ROUTES` again when uvicorn imports the file. The file goes into a
# temporary folder:

# %%
import sys
import tempfile
from pathlib import Path

parts = [route, allowed, app, index, sum_numbers, upload, query_count, events, ticker]
app_dir = tempfile.TemporaryDirectory(prefix="chapter12-")
app_file = Path(app_dir.name) / "bare_asgi_app.py"
app_file.write_text(HEADER + "".join("\n\n" + inspect.getsource(part) for part in parts))
print(app_file.name, "-", len(app_file.read_text().splitlines()), "lines")

# %% [markdown]
# About a hundred lines: the whole app, with not one line written twice. The notebook
# stays the only place where the code lives; the file is a copy made on demand.
#
# Now start uvicorn in a separate process, with the same Python as this kernel
# (`sys.executable`). Two details:
#
# - **The port.** Picking a free port and handing its number to another program is a
#   race: something else may take it in between. Instead, this cell binds the socket
#   itself and passes it to uvicorn already open: `--fd` takes a file descriptor, and
#   `pass_fds` lets the child process inherit it. Once the child has it, this process
#   closes its own copy.
# - **The output.** uvicorn logs to the terminal. Here it goes to a file, shown at the
#   end of the section.
#
# If you run the cell again, it first stops the uvicorn it started last time.

# %%
import subprocess

if "uvicorn_process" in globals() and uvicorn_process.poll() is None:
    uvicorn_process.terminate()
    uvicorn_process.wait(timeout=5)
listener = socket.create_server(("127.0.0.1", 0))
uvicorn_url = f"http://127.0.0.1:{listener.getsockname()[1]}/"
uvicorn_output = open(Path(app_dir.name) / "uvicorn.log", "w")
uvicorn_process = subprocess.Popen(
    [sys.executable, "-m", "uvicorn", "bare_asgi_app:app", "--app-dir", app_dir.name,
     "--fd", str(listener.fileno())],
    pass_fds=[listener.fileno()], stdout=uvicorn_output, stderr=subprocess.STDOUT)
listener.close()
uvicorn_process.poll() is None

# %% [markdown]
# `True`: the process is running. It needs a moment to import the app before it answers,
# though the socket already accepts connections, since this cell bound it. So
# `wait_until_up` asks for `/` until an answer comes. It gives up after ten seconds, or
# at once if uvicorn has exited (a typo in the file, say), and then stops the process
# rather than leave it behind.

# %%
def wait_until_up(url, timeout=10.0):
    deadline = time.monotonic() + timeout
    while True:
        try:
            return barelab.http_request(url, timeout=1.0)
        except OSError:
            if time.monotonic() > deadline or uvicorn_process.poll() is not None:
                uvicorn_process.kill()
                raise
            time.sleep(0.05)

wait_until_up(uvicorn_url).text

# %% [markdown]
# The same answer as from barelab. Now the same requests to both servers, side by side:
# the status from each, and whether the bodies are equal, byte for byte.

# %%
def side_by_side(method, path, **kwargs):
    ours = barelab.http_request(server, method, path, **kwargs)
    theirs = barelab.http_request(uvicorn_url, method, path, **kwargs)
    return f"{method} {path}", ours.status, theirs.status, ours.body == theirs.body

side_by_side("GET", "/")

# %% [markdown]
# Every kind of answer the app gives, the event stream included:

# %%
same_requests = [("POST", "/sum", {"json": {"numbers": [1, 2, 3.5]}}),
                 ("POST", "/sum", {"body": b"{oops", "headers": JSON}),
                 ("PUT", "/sum", {}), ("GET", "/nope", {}), ("GET", "/events?count=0", {}),
                 ("POST", "/upload", {"body": b"x" * 100}), ("GET", "/events?count=2", {})]
barelab.show_transcript([side_by_side(m, p, **kw) for m, p, kw in same_requests],
                        columns=("request", "barelab", "uvicorn", "same body"))

# %% [markdown]
# Every status and every body agrees: the app makes every decision, and both servers
# carry them out. The heads differ, though. Here are the header names of `GET /` from
# each, in the order they arrived, then the values side by side:

# %%
ours, theirs = barelab.http_request(server), barelab.http_request(uvicorn_url)
print("barelab:", [name for name, _ in ours.headers])
print("uvicorn:", [name for name, _ in theirs.headers])
barelab.show_transcript([(name, ours.header(name), theirs.header(name))
                         for name, _ in ours.headers], columns=("header", "barelab", "uvicorn"))

# %% [markdown]
# - Both servers add `date` and `server`, each with its own name. RFC 9110 §6.6.1 says an
#   origin server with a clock MUST send `date` in its 2xx, 3xx and 4xx responses. The
#   two dates differ by the clock only.
# - uvicorn puts its own headers first, barelab after the app's. Order between
#   different header names carries no meaning (RFC 9110 §5.3).
# - Both echo `Connection: close`, because `http_request` asked for it.
#
# ### Where the servers differ
#
# The chunked upload again. The bytes sent are identical; the answers are not:

# %%
[barelab.raw_exchange(target, CHUNKED_UPLOAD).received.split(b"\r\n\r\n", 1)[1]
 for target in (server, uvicorn_url)]

# %% [markdown]
# barelab hands each chunk to the app as it was decoded; uvicorn collects what has
# arrived and hands it over in one `http.request`. Both are allowed. The spec lets a
# server split a body however it likes, and HTTP gives chunk boundaries no meaning: RFC
# 9112 §7 calls chunking a transfer coding, "a property of the message rather than a
# property of the representation", which any hop may undo and redo. Only an app that
# loops, like `read_body`, works the same on both.
#
# And `HEAD`: the app sends the same body as for `GET`, and both servers drop it. Each
# response below should end right after the blank line that closes the head:

# %%
HEAD = b"HEAD / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
[barelab.raw_exchange(target, HEAD).received.endswith(b"\r\n\r\n")
 for target in (server, uvicorn_url)]

# %% [markdown]
# ### Stopping uvicorn
#
# A process you started is yours to stop. `terminate()` sends it `SIGTERM`, which uvicorn
# treats as "finish the open requests, then exit". `wait` gives it five seconds to do so;
# a process that is still there after that gets `kill()`, which cannot be ignored.

# %%
uvicorn_process.terminate()
try:
    exit_status = uvicorn_process.wait(timeout=5)
except subprocess.TimeoutExpired:
    uvicorn_process.kill()
    exit_status = uvicorn_process.wait()
uvicorn_output.close()
exit_status

# %% [markdown]
# The exit status is `-15`. A negative status is how `subprocess` reports a process
# ended by a signal, here signal 15, `SIGTERM`: after shutting down cleanly, uvicorn
# raises the `SIGTERM` it caught once more, so the parent can tell why it stopped.
#
# Its log, with the process id masked since it changes on every run:

# %%
print(re.sub(r"\[\d+\]", "[PID]", (Path(app_dir.name) / "uvicorn.log").read_text()))

# %% [markdown]
# It reads like barelab's:
#
# - "ASGI 'lifespan' protocol appears unsupported": `app` raised on the `lifespan` scope,
#   as an app without lifespan should, and uvicorn went on without it, just as barelab
#   did. Chapter 14 is about lifespan.
# - One access line per request, the `GET /` from `wait_until_up` first. The
#   `GET /events?count=2` line is logged when the response *starts*, not when it ends.
# - The 413 line says "Request Entity Too Large", the name RFC 7231 gave that status;
#   barelab used the newer "Content Too Large". The number is what counts: a client
#   should ignore the reason phrase (RFC 9112 §4).
#
# Nothing answers at that address any more. Remove the temporary folder too:

# %%
app_dir.cleanup()
try:
    barelab.http_request(uvicorn_url, timeout=1)
except ConnectionRefusedError:
    print("connection refused: uvicorn is gone")

# %% [markdown]
# ## Summary
#
# - An ASGI app reads its body from `http.request` messages: loop on `receive()` until
#   `more_body` is false, count as you go, and refuse with **413** the moment the total
#   passes a limit. A single `receive()` gets only the first piece.
# - You built `barelab.built.asgi_basics`: `read_body`, `header`, `media_type`,
#   `parse_json`, `read_json`, `encode_headers`, `send_response`, `send_text`,
#   `send_json`, `send_error`, `sse_event`, `wait_for_disconnect`, `stream`, and
#   `RequestAborted` for a client that leaves mid-body. Refusals reuse the `HTTPError`
#   classes of chapters 02, 04 and 05.
# - Routing by hand: 404 for an unknown path, 405 with `Allow` for a wrong method, HEAD
#   served by GET (barelab and uvicorn both drop the body). An app raises on a scope type it does not
#   handle.
# - A response is `http.response.start` plus `http.response.body` messages; several body
#   messages with `more_body: True` make a stream, which the server sends chunked.
#   Server-sent events are `text/event-stream` with one `data:` line per line of data.
# - A client that leaves shows up as `http.disconnect` from `receive()`. Listen for it
#   while streaming and cancel the producer; spec 2.4 servers also raise `OSError` from
#   `send()`, but only when you send.
# - `send()` raising is no substitute for listening: the first write after the client
#   closed usually succeeds (TCP only learns from the reset it provokes), so a loop that
#   only sends finds out a send late, and on a server older than spec 2.4 never.
# - The same file ran on barelab and on uvicorn with the same statuses and bodies; the
#   servers differ in their own headers, their reason phrases, and how they split a
#   chunked body. An app that loops on `receive()` and lets the status number speak
#   works the same on both.

# %% [markdown]
# ## Exercises
#
# Each exercise has a cell for your answer and a check cell below it. The checks call your
# code in-process with `barelab.call_asgi`.
#
# ### Exercise 1 — shout
#
# Write an ASGI app `shout_app` that reads the whole body (at most 20 bytes) and answers
# `200` with the body in capitals as UTF-8 text. A body over 20 bytes gets a 413, and a
# body that is not UTF-8 a 400. Use the helpers from `asgi_basics`.

# %% tags=["solution"]
async def shout_app(scope, receive, send):
    ### BEGIN SOLUTION
    try:
        body = await read_body(receive, limit=20)
        try:
            text = body.decode("utf-8")
        except UnicodeError:
            raise BadRequest("send UTF-8 text") from None
        await send_text(send, text.upper())
    except HTTPError as error:
        await send_error(send, error)
    ### END SOLUTION

# %% tags=["check"]
from barelab.exercises import check

with check("Exercise 1"):
    call = barelab.call_asgi(shout_app, "POST", "/", body=[b"hello, ", b"asgi"])
    assert call.status == 200, f"status {call.status} for a 11-byte body, expected 200"
    assert call.body == b"HELLO, ASGI", f"the body is {call.body!r}: read every chunk"
    call = barelab.call_asgi(shout_app, "POST", "/", body=[b"x" * 15, b"y" * 15])
    assert call.status == 413, f"status {call.status} for 30 bytes, expected 413"
    call = barelab.call_asgi(shout_app, "POST", "/", body=b"caf\xe9")
    assert call.status == 400, f"status {call.status} for a latin-1 body, expected 400"

# %% [markdown]
# ### Exercise 2 — a mean route
#
# Register a handler for `POST /mean` on the chapter's `app` with `@route`. It reads
# `{"numbers": [...]}` like `/sum` and answers `{"mean": ...}`. An empty list has no
# mean: answer 400 with a message that says so.

# %% tags=["solution"]
### BEGIN SOLUTION
@route("/mean", "POST")
async def mean(scope, receive, send):
    data = await read_json(scope, receive)
    numbers = data.get("numbers") if isinstance(data, dict) else None
    if not isinstance(numbers, list) or not all(
            isinstance(n, (int, float)) and not isinstance(n, bool) for n in numbers):
        raise BadRequest('send {"numbers": [...]} with a list of numbers')
    if not numbers:
        raise BadRequest("the mean of no numbers is undefined: send at least one")
    await send_json(send, {"mean": sum(numbers) / len(numbers)})
### END SOLUTION
sorted(ROUTES)

# %% tags=["check"]
with check("Exercise 2"):
    call = barelab.call_asgi(app, "POST", "/mean", headers=JSON, body=b'{"numbers": [1, 2, 6]}')
    assert call.status == 200, f"status {call.status}: {call.text}"
    assert call.json() == {"mean": 3.0}, f"the answer is {call.json()}, expected {{'mean': 3.0}}"
    call = barelab.call_asgi(app, "POST", "/mean", headers=JSON, body=b'{"numbers": []}')
    assert call.status == 400, f"status {call.status} for an empty list, expected 400"
    call = barelab.call_asgi(app, "GET", "/mean")
    assert call.status == 405 and "POST" in call.header("allow"), "GET /mean should be a 405"

# %% [markdown]
# ### Exercise 3 — a countdown stream
#
# Write an async generator `countdown(n)` that yields one server-sent event per number
# from `n` down to 1 (the number as the data), then a last event with data `liftoff` and
# event type `done`. No need to sleep between them. `countdown_app` below streams it.

# %% tags=["solution"]
async def countdown(n):
    ### BEGIN SOLUTION
    for i in range(n, 0, -1):
        yield sse_event(str(i))
    yield sse_event("liftoff", event="done")
    ### END SOLUTION

async def countdown_app(scope, receive, send):
    await stream(send, receive, countdown(3), content_type="text/event-stream")

# %% tags=["check"]
with check("Exercise 3"):
    call = barelab.call_asgi(countdown_app)
    print(call.body)
    bodies = [m["body"] for m in call.sent if m["type"] == "http.response.body" and m["body"]]
    assert len(bodies) == 4, f"{len(bodies)} events were sent, expected 4 (3, 2, 1, liftoff)"
    assert bodies[0] == b"data: 3\n\n", f"the first event is {bodies[0]!r}"
    assert bodies[-1] == b"event: done\ndata: liftoff\n\n", f"the last event is {bodies[-1]!r}"

# %% [markdown]
# ## Clean up
#
# Stop every server this chapter started. The number is how many were still running.

# %%
barelab.stop_all()
